//! Whether a connection is busy: requests in flight, and since when it has had none.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Requests in flight on one connection and when the count last dropped to zero. Requests
/// only update it; the watcher looks at it when its deadline passes, so a busy connection
/// costs no extra wake-ups.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    in_flight: usize,
    idle_since: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Self { state: Mutex::new(State { in_flight: 0, idle_since: Instant::now() }) }
    }
}

/// A request in flight; ends when dropped (also when the request future is cancelled).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.in_flight -= 1;
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}

impl Activity {
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn snapshot(&self) -> State {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a request as started.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.update(|s| s.in_flight += 1);
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let state = self.snapshot();
            // Busy: look again in `limit`; the connection then has to stay idle a full `limit`.
            let deadline = if state.in_flight > 0 { Instant::now() + limit } else { state.idle_since + limit };
            if state.in_flight == 0 && Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_after_the_last_request_ends_plus_the_limit() {
        let activity = Arc::new(Activity::default());
        let request = activity.begin();
        let limit = Duration::from_millis(200);
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(limit).await }
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!idle.is_finished(), "a connection with a request in flight is never idle");
        let ended = Instant::now();
        drop(request);
        idle.await.unwrap();
        assert!(ended.elapsed() >= limit, "idle counts from the end of the last request");
    }
}
