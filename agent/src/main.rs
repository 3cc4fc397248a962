//! `certctl-agent` — run the agent (default), or `certctl-agent health` for the liveness probe.

use std::process::ExitCode;

use certctl_agent::agent::chain;
use certctl_agent::liveness::Liveness;
use certctl_agent::{logging, Agent, Config, Exit};
use tracing::{error, info, warn};

const USAGE: &str = "usage: certctl-agent [run | health | version]
  run      run the agent (default); configured by CERTCTL_* environment variables
  health   exit 0 if the running agent's loop is alive, 1 with a reason otherwise
  version  print the version
See docs/agent.md for the variables.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["run"] => run(),
        ["health"] => health(),
        ["version" | "--version" | "-V"] => {
            println!("certctl-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("certctl-agent: unknown arguments {args:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn load_config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|e| {
        eprintln!("certctl-agent: refusing to start: {e}");
        ExitCode::from(2)
    })
}

fn health() -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    match Liveness::for_config(&config).check() {
        Ok(age) => {
            println!("ok: agent loop alive (last stamp {}s ago)", age.as_secs());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    logging::init(config.log_format, &config.log_level);
    if config.insecure_skip_verify {
        warn!(
            "CERTCTL_INSECURE_SKIP_VERIFY is on: the server's TLS certificate is NOT verified; anyone on the \
             network path can impersonate the server and receive the API key. Never use this in production."
        );
    }
    // One thread is plenty for an agent that sleeps most of the time, and keeps RSS small.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let agent = match Agent::new(config.clone()) {
            Ok(agent) => agent,
            Err(e) => {
                error!(error = %chain(&e), "refusing to start");
                return ExitCode::FAILURE;
            }
        };
        info!(
            name = %config.agent_name,
            server = %config.api_base,
            key_dir = %config.key_dir.display(),
            heartbeat_interval = ?config.heartbeat_interval,
            poll_interval = ?config.poll_interval,
            version = env!("CARGO_PKG_VERSION"),
            "certctl-agent starting"
        );
        match agent.run(shutdown_signal()).await {
            Exit::Shutdown | Exit::Retired => ExitCode::SUCCESS,
        }
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            error!(error = %e, "cannot install signal handlers; stop the agent with SIGKILL");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
