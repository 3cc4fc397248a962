//! certctl-server binary: configuration from the environment, then [`certctl_server::run`].

use std::process::ExitCode;

use certctl_server::config::{Config, LogConfig, ProcessEnv};
use certctl_server::startup::error_chain;

fn main() -> ExitCode {
    let log = match LogConfig::from_env(&ProcessEnv) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("certctl-server: refusing to start: {e}");
            return ExitCode::from(2);
        }
    };
    certctl_server::logging::init(&log);
    let config = match Config::from_env(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("refusing to start: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = certctl_server::termination()?;
        certctl_server::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("refusing to start: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}
