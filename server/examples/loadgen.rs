//! Benchmark: starts a throwaway PostgreSQL and the real `certctl-server` binary, then measures
//! start-to-ready time, idle RSS, authenticated GET throughput with p50/p99 latency, and RSS
//! under load.
//!
//! ```text
//! cargo build --release -p certctl-server --bins --examples
//! target/release/examples/loadgen [--concurrency 64] [--seconds 10] [--max-conns 25] [--path /api/v1/certificates]
//!     [--idle-conns 1000] [--idle-wait 90]
//! ```
//! After the load, `--idle-conns N` (0 to skip) TLS connections are opened and left without a
//! request: RSS and `/health` latency (fresh connection per request) are measured while they
//! are held, then how long until the server closes them (at most `--idle-wait` seconds).
//! The load generator shares the machine with the server and PostgreSQL, so the numbers are a
//! floor for what the server alone would do.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certctl_harness::postgres::TestPostgres;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

struct Args {
    concurrency: usize,
    seconds: u64,
    max_conns: u32,
    path: String,
    server: PathBuf,
    idle_conns: usize,
    idle_wait: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        concurrency: 64,
        seconds: 10,
        max_conns: 25,
        path: "/api/v1/certificates".into(),
        idle_conns: 1000,
        idle_wait: 90,
        server: std::env::current_exe()
            .expect("current exe")
            .parent()
            .and_then(|p| p.parent())
            .expect("examples dir has a parent")
            .join("certctl-server"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--concurrency" => args.concurrency = value.parse().expect("--concurrency N"),
            "--seconds" => args.seconds = value.parse().expect("--seconds N"),
            "--max-conns" => args.max_conns = value.parse().expect("--max-conns N"),
            "--path" => args.path = value,
            "--server" => args.server = value.into(),
            "--idle-conns" => args.idle_conns = value.parse().expect("--idle-conns N"),
            "--idle-wait" => args.idle_wait = value.parse().expect("--idle-wait SECONDS"),
            other => panic!("unknown flag {other}; see the example's header"),
        }
    }
    args
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    assert!(
        args.server.is_file(),
        "server binary {} not found: cargo build --release -p certctl-server --bins --examples",
        args.server.display()
    );
    let pg = TestPostgres::start().await.expect("PostgreSQL fixture");
    pg.create_role("certctl", "bench").await.unwrap();
    pg.create_database("certctl", "certctl").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.path().join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), key.serialize_pem()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    let started = Instant::now();
    let mut child = Command::new(&args.server)
        .env_clear()
        .env("CERTCTL_SERVER_HOST", "127.0.0.1")
        .env("CERTCTL_SERVER_PORT", port.to_string())
        .env("CERTCTL_SERVER_TLS_CERT_PATH", dir.path().join("tls.crt"))
        .env("CERTCTL_SERVER_TLS_KEY_PATH", dir.path().join("tls.key"))
        .env("CERTCTL_DATABASE_URL", pg.url("certctl", "bench", "certctl"))
        .env("CERTCTL_DATABASE_MAX_CONNS", args.max_conns.to_string())
        .env("CERTCTL_AUTH_SECRET", "bench-key")
        .env("CERTCTL_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start certctl-server");
    let pid = child.id();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = |tls: rustls::ClientConfig| {
        reqwest::Client::builder().use_preconfigured_tls(tls).http1_only().timeout(Duration::from_secs(30)).build().unwrap()
    };
    let http = client(tls.clone());
    let base = format!("https://localhost:{port}");
    let ready_after = loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                break started.elapsed();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "server not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    // A few rows so the GET does real work: 5 agents, each with its own certificate.
    for i in 0..5 {
        let r = http
            .post(format!("{base}/api/v1/agents"))
            .bearer_auth("bench-key")
            .json(&serde_json::json!({"name": format!("bench-node-{i}")}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "seeding failed: {}", r.status());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(pid);

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let url = format!("{base}{}", args.path);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let http = client(tls.clone());
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match http.get(&url).bearer_auth("bench-key").send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut peak_rss = 0;
    while Instant::now() < deadline {
        peak_rss = peak_rss.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    all.sort();
    let n = all.len();
    let db_conns = pg.count_connections("certctl-server").await.unwrap_or(-1);

    println!("| metric | value |");
    println!("|---|---|");
    println!("| GET {} concurrency | {} |", args.path, args.concurrency);
    println!("| duration | {} s |", args.seconds);
    println!("| requests ok / errors | {n} / {errors} |");
    println!("| throughput | {:.0} req/s |", n as f64 / args.seconds as f64);
    println!("| latency p50 | {:.2} ms |", percentile(&all, 0.50).as_secs_f64() * 1000.0);
    println!("| latency p99 | {:.2} ms |", percentile(&all, 0.99).as_secs_f64() * 1000.0);
    println!("| start to ready | {} ms |", ready_after.as_millis());
    println!("| RSS idle | {:.1} MiB |", idle_rss as f64 / 1024.0);
    println!("| RSS peak under load | {:.1} MiB |", peak_rss as f64 / 1024.0);
    println!("| server DB connections after load (max {}) | {db_conns} |", args.max_conns);
    if args.idle_conns > 0 {
        idle_phase(&args, pid, &tls, port).await;
    }

    let _ = child.kill();
    let _ = child.wait();
}

/// Holds `--idle-conns` handshaken connections that send nothing and reports what they cost.
async fn idle_phase(args: &Args, pid: u32, tls: &rustls::ClientConfig, port: u16) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.clone()));
    let before = rss_kib(pid);
    let opened = Instant::now();
    let mut handshakes = Vec::new();
    for _ in 0..args.idle_conns {
        let connector = connector.clone();
        handshakes.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio::time::timeout(Duration::from_secs(30), connector.connect(name, tcp)).await.ok()?.ok()
        }));
    }
    let mut held = Vec::new();
    for h in handshakes {
        if let Some(stream) = h.await.unwrap() {
            held.push(stream);
        }
    }
    let opened_in = opened.elapsed();
    let idle_since = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let holding = rss_kib(pid);
    let mut latencies = Vec::new();
    let mut failures = 0;
    for _ in 0..50 {
        // A fresh client (and connection) per request: what a kubelet probe does.
        let http = reqwest::Client::builder().use_preconfigured_tls(tls.clone()).timeout(Duration::from_secs(10)).build().unwrap();
        let t = Instant::now();
        match http.get(format!("https://localhost:{port}/health")).send().await {
            Ok(r) if r.status() == 200 => latencies.push(t.elapsed()),
            _ => failures += 1,
        }
    }
    latencies.sort();
    println!(
        "| idle TLS connections held / asked | {} / {} (handshakes took {:.1} s) |",
        held.len(),
        args.idle_conns,
        opened_in.as_secs_f64()
    );
    println!("| RSS before / while holding them | {:.1} / {:.1} MiB |", before as f64 / 1024.0, holding as f64 / 1024.0);
    println!(
        "| /health while holding them, fresh connection, 50 requests | p50 {:.2} ms, p99 {:.2} ms, {failures} failed |",
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    );
    let limit = Duration::from_secs(args.idle_wait);
    let closes: Vec<_> = held
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 256];
                let closed = tokio::time::timeout(limit, async {
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
                closed.await.ok().map(|()| idle_since.elapsed())
            })
        })
        .collect();
    let mut closed_after = Vec::new();
    for c in closes {
        closed_after.extend(c.await.unwrap());
    }
    closed_after.sort();
    match (closed_after.first(), closed_after.last()) {
        (Some(first), Some(last)) => println!(
            "| idle connections closed by the server | {} of them, {:.1} s to {:.1} s after they went idle |",
            closed_after.len(),
            first.as_secs_f64(),
            last.as_secs_f64()
        ),
        _ => println!("| idle connections closed by the server | none within {} s |", args.idle_wait),
    }
    println!("| RSS after the idle phase | {:.1} MiB |", rss_kib(pid) as f64 / 1024.0);
}
