//! certctl-server: the HTTPS API of certctl — api-key auth, a bounded PostgreSQL pool,
//! migrations, a local CA that signs agents' CSRs, a renewal scheduler and Prometheus metrics.
//!
//! The binary reads its configuration from the CERTCTL_* environment ([`config`]) and calls
//! [`run`].

pub mod agent_credential;
pub mod api;
pub mod auth;
pub mod ca;
pub mod config;
pub mod db;
pub mod duration;
pub mod fd_limit;
pub mod logging;
pub mod metrics;
pub mod scheduler;
pub mod secret_target;
pub mod serve;
pub mod startup;
pub mod state;
pub mod store;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use config::Config;
use state::AppState;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The TLS pair is unusable; the server refuses to start.
    #[error("TLS configuration refused")]
    Tls(#[from] tls::TlsError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} (CERTCTL_SERVER_HOST / CERTCTL_SERVER_PORT)")]
    Bind {
        /// host:port.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
}

/// Starts everything and serves until `shutdown` resolves, then drains and returns.
///
/// Order: TLS pair loaded (refusal is fatal) → listener bound (/health answers at once) →
/// database brought up in the background (see [`startup`]) → renewal scheduler.
/// SIGHUP re-reads the TLS pair; so does a change of the files, checked every
/// `tls_reload_interval`.
///
/// # Errors
/// An unusable TLS pair, an unbindable address, or signal setup failure.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let started = Instant::now();
    let cert = Arc::new(tls::ReloadableCert::load(&config.tls_cert_path, &config.tls_key_path)?);
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|source| RunError::Bind { addr: addr.clone(), source })?;
    let local = listener.local_addr().map_or(addr, |a| a.to_string());

    let pool = db::lazy_pool(&config.database);
    let state = AppState::new(&config, pool.clone());
    let mut limits = config.limits.clone();
    let (capacity, open_files) = fd_limit::connection_capacity(limits.max_connections, config.database.max_connections);
    if capacity < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            capacity,
            open_file_limit = open_files,
            "the open-file limit allows fewer client connections than CERTCTL_SERVER_MAX_CONNECTIONS; holding at most {capacity}"
        );
    }
    limits.max_connections = capacity;
    tracing::info!(
        listen = %local,
        database = %state.target(),
        max_connections = config.database.max_connections,
        idle_floor = config.database.min_connections,
        client_connections = capacity,
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        "certctl-server listening (HTTPS, TLS 1.3 only)"
    );

    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(RunError::Signals)?;
    let reload_cert = cert.clone();
    let reloader = tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match reload_cert.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                Err(e) => tracing::error!(
                    "SIGHUP: TLS certificate reload failed; still serving the previous certificate: {}",
                    startup::error_chain(&e)
                ),
            }
        }
    });
    let watch_cert = cert.clone();
    let interval = config.tls_reload_interval;
    let watcher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match watch_cert.reload_if_changed() {
                Ok(true) => tracing::info!("TLS files changed: certificate reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(
                    "TLS files changed but do not load; still serving the previous certificate: {}",
                    startup::error_chain(&e)
                ),
            }
        }
    });
    let bring_up = tokio::spawn(startup::bring_up(state.clone(), config.database.clone(), started));
    let scheduler = tokio::spawn(scheduler::run(state.clone()));

    serve::serve(listener, tls::server_config(cert), api::router(state), shutdown, config.shutdown_timeout, &limits).await;

    reloader.abort();
    watcher.abort();
    bring_up.abort();
    scheduler.abort();
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
///
/// # Errors
/// Signal handlers could not be installed.
pub fn termination() -> Result<impl Future<Output = ()>, RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    })
}
