//! The renewal loop: queues CSR jobs for certificates close to expiry (and retries failed
//! first issuances). Every replica runs it; the unique pending-job index makes that safe.

use time::OffsetDateTime;

use crate::state::{AppState, Startup};
use crate::store::jobs;

/// Runs one pass; returns how many jobs were queued.
///
/// # Errors
/// Database failures.
pub async fn run_once(state: &AppState) -> Result<u64, sqlx::Error> {
    // The configuration bounds renew_before (config::bounds), so this cannot overflow.
    let renew_before = time::Duration::try_from(state.scheduler().renew_before).unwrap_or(time::Duration::days(30));
    let threshold = OffsetDateTime::now_utc().saturating_add(renew_before);
    let queued = jobs::queue_renewals(state.pool(), threshold).await?;
    if queued > 0 {
        state.metrics().renewal_jobs_queued.inc_by(queued);
        tracing::info!(queued, "renewal jobs queued");
    }
    Ok(queued)
}

/// Loops forever at the configured interval, skipping passes until start-up is done.
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.scheduler().renewal_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.startup() != Startup::Ready {
            continue;
        }
        if let Err(e) = run_once(&state).await {
            tracing::warn!(error = %e, "renewal pass failed; will retry next interval");
        }
    }
}
