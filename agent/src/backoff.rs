//! Failure backoff: the n-th consecutive failure waits about n x base, capped, jittered.

use std::time::Duration;

use rand::Rng;

/// Share of the delay that jitter may take off, so that many agents failing together
/// (a server restart) do not retry in lockstep. Jitter only shortens, so the cap holds.
pub const JITTER_FRACTION: f64 = 0.25;

/// Backoff state for consecutive failures against the server.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff with step `base` and cap `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, failures: 0 }
    }

    /// Number of consecutive failures recorded since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        jittered(self.delay_without_jitter(), rand::rng().random_range(0.0..JITTER_FRACTION))
    }

    /// Records a success: the next failure starts again at one step.
    pub fn succeed(&mut self) {
        self.failures = 0;
    }

    /// The un-jittered delay for the current failure count: min(n x base, max).
    pub fn delay_without_jitter(&self) -> Duration {
        self.base.saturating_mul(self.failures).min(self.max)
    }
}

/// Takes `fraction` (0 <= fraction < 1) of `delay` off.
pub fn jittered(delay: Duration, fraction: f64) -> Duration {
    delay.mul_f64(1.0 - fraction.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_n_times_thirty_seconds_capped_at_five_minutes() {
        let mut b = Backoff::new(Duration::from_secs(30), Duration::from_secs(300));
        let expected: Vec<u64> = vec![30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300];
        let seen: Vec<u64> = expected
            .iter()
            .map(|_| {
                b.fail();
                b.delay_without_jitter().as_secs()
            })
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_a_quarter() {
        let mut b = Backoff::new(Duration::from_secs(30), Duration::from_secs(300));
        for _ in 0..200 {
            let d = b.fail();
            let full = b.delay_without_jitter();
            assert!(d <= full, "{d:?} > {full:?}");
            assert!(d >= full.mul_f64(1.0 - JITTER_FRACTION), "{d:?} too short for {full:?}");
        }
    }

    #[test]
    fn success_resets_the_count() {
        let mut b = Backoff::new(Duration::from_secs(30), Duration::from_secs(300));
        b.fail();
        b.fail();
        b.succeed();
        assert_eq!(b.failures(), 0);
        b.fail();
        assert_eq!(b.delay_without_jitter(), Duration::from_secs(30));
    }

    #[test]
    fn jittered_is_exact() {
        assert_eq!(jittered(Duration::from_secs(100), 0.25), Duration::from_secs(75));
        assert_eq!(jittered(Duration::from_secs(100), 0.0), Duration::from_secs(100));
    }
}
