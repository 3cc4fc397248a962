//! Whether a connection is busy: requests in flight, and since when it has had none.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Requests in flight on one connection and when the count last dropped to zero.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
struct State {
    in_flight: usize,
    idle_since: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Self { state: Mutex::new(State { in_flight: 0, idle_since: Instant::now() }), changed: Notify::new() }
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
        self.changed.notify_waiters();
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
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before reading the state, so no change between the two is missed.
            changed.as_mut().enable();
            let state = self.snapshot();
            if state.in_flight > 0 {
                changed.await;
                continue;
            }
            let deadline = state.idle_since + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = changed => {}
            }
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
