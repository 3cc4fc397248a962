//! Bringing the database side up: ping (with diagnostics) until it answers, migrate, load the
//! CA, then mark the server ready.
//!
//! Choice: the process never exits because the database is unreachable or rejects it. It keeps
//! retrying with capped exponential backoff, logs the full diagnostic on every attempt (so a
//! log window of any length shows it), answers /health 200 (the process is fine, restarting it
//! would not help) and /ready 503 with the diagnostic as the reason. Kubernetes then keeps the
//! pod out of the Service without a crash loop hiding the cause.

use std::time::{Duration, Instant};

use crate::ca::LocalCa;
use crate::config::DatabaseConfig;
use crate::db::{migrate, ping_direct};
use crate::state::{AppState, Startup};

/// First retry delay.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Retry delay ceiling.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Capped exponential backoff.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: INITIAL_BACKOFF }
    }
}

impl Backoff {
    /// The delay before the next attempt; doubles each call up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        d
    }
}

/// Renders an error and its sources as `a: b: c`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Runs until the server is ready. Never returns an error: every failure is logged and retried.
pub async fn bring_up(state: AppState, db: DatabaseConfig, started: Instant) {
    let mut backoff = Backoff::default();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match ping_direct(&db).await {
            Ok(()) => break,
            Err(diagnosis) => {
                let retry_in = backoff.next_delay();
                tracing::error!(
                    problem = diagnosis.problem.as_str(),
                    sqlstate = diagnosis.sqlstate.as_deref().unwrap_or(""),
                    attempt,
                    retry_in_s = retry_in.as_secs(),
                    "{}",
                    diagnosis.message
                );
                state.set_startup(Startup::Connecting(Some(diagnosis.message)));
                tokio::time::sleep(retry_in).await;
            }
        }
    }
    tracing::info!(target_db = %state.target(), attempt, "database reachable");
    state.set_startup(Startup::Preparing(None));

    let mut backoff = Backoff::default();
    let ca = loop {
        match prepare(&state).await {
            Ok(ca) => break ca,
            Err(reason) => {
                let retry_in = backoff.next_delay();
                tracing::error!(retry_in_s = retry_in.as_secs(), "start-up preparation failed: {reason}");
                state.set_startup(Startup::Preparing(Some(reason)));
                tokio::time::sleep(retry_in).await;
            }
        }
    };
    state.set_ca(ca);
    state.set_startup(Startup::Ready);
    tracing::info!(elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), "ready");
}

async fn prepare(state: &AppState) -> Result<LocalCa, String> {
    let applied = migrate::run(state.pool()).await.map_err(|e| error_chain(&e))?;
    tracing::info!(applied, "migrations up to date");
    LocalCa::load_or_create(state.pool()).await.map_err(|e| error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
