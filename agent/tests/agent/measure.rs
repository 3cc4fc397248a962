//! Footprint measurement (a benchmark, not a pass/fail test): idle RSS and CPU of the agent
//! and time from start to certificate on disk, against the real server. Run with
//! `cargo test -p certctl-agent --test agent measure -- --ignored --nocapture`; set
//! CERTCTL_AGENT_BIN to measure another build (e.g. target/release/certctl-agent).

use std::time::{Duration, Instant};

use crate::support::{AgentRun, Stack};

/// Resident set size of `pid` in KiB, from /proc.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc status")
}

/// CPU time (user + system) of `pid`, from /proc.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
async fn measure_idle_footprint_and_time_to_certificate() {
    let stack = Stack::start().await;
    let work = tempfile::tempdir().unwrap();
    let idle_window = std::env::var("CERTCTL_MEASURE_IDLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(120u64);
    // Production intervals (60 s heartbeat, 30 s poll) so "idle" is what a deployed agent does.
    let run = AgentRun::new(&stack, "bench-node", work.path()).set("CERTCTL_HEARTBEAT_INTERVAL", "60s").set("CERTCTL_POLL_INTERVAL", "30s");
    let agent = run.spawn();
    agent.wait_for_file("agent.crt", Duration::from_secs(60)).await;
    let to_cert = agent.started.elapsed();
    let pid = agent.pid();
    let rss_after_issue = rss_kib(pid);
    let cpu_start = cpu_time(pid);
    let t0 = Instant::now();
    let mut peak = rss_after_issue;
    while t0.elapsed() < Duration::from_secs(idle_window) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peak = peak.max(rss_kib(pid));
    }
    let cpu = cpu_time(pid).saturating_sub(cpu_start);
    let wall = t0.elapsed();
    println!("agent binary: {}", run.command().get_program().to_string_lossy());
    println!("time from start to certificate on disk: {:.3}s", to_cert.as_secs_f64());
    println!("RSS after issuance: {rss_after_issue} KiB; idle RSS (end of window): {} KiB; peak: {peak} KiB", rss_kib(pid));
    println!(
        "idle CPU over {:.0}s: {:.2}s ({:.3}% of one core)",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
}
