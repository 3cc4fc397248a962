//! Polling with a deadline that always says what it waited for and what it
//! last saw, and that tells transient API errors (retried) from real ones
//! (returned at once).

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// Result of one poll: done with a value, or not yet with a description of
/// the state seen (shown if the wait times out).
#[derive(Debug)]
pub enum Poll<T> {
    /// The condition holds.
    Ready(T),
    /// Not yet; the string says what was observed.
    Pending(String),
}

/// Any error a probe may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A probe's failure, with the caller's explicit choice whether waiting
/// longer can help. Kubernetes API errors classify themselves
/// ([`is_transient`]); any other error says which it is with
/// [`Classify::transient`] or [`Classify::fatal`], so a failing `psql` or
/// exec is never retried silently until the deadline.
#[derive(Debug)]
pub enum PollError {
    /// Retried (and counted) until the deadline.
    Transient(BoxError),
    /// Ends the wait at once.
    Fatal(BoxError),
}

impl From<kube::Error> for PollError {
    fn from(e: kube::Error) -> Self {
        if is_transient(&e) {
            PollError::Transient(e.into())
        } else {
            PollError::Fatal(e.into())
        }
    }
}

/// Marks an error for a wait: retry it, or stop.
///
/// # Example
/// ```
/// use certctl_harness::wait::{Classify, PollError};
/// let r: Result<(), std::io::Error> = Err(std::io::Error::other("psql: syntax error"));
/// assert!(matches!(r.fatal(), Err(PollError::Fatal(_))));
/// ```
pub trait Classify<T> {
    /// A failure that may pass (a pod not yet exec-able, a connection refused while starting).
    fn transient(self) -> Result<T, PollError>;
    /// A failure waiting cannot fix (bad SQL, a missing binary).
    fn fatal(self) -> Result<T, PollError>;
}

impl<T, E: Into<BoxError>> Classify<T> for Result<T, E> {
    fn transient(self) -> Result<T, PollError> {
        self.map_err(|e| PollError::Transient(e.into()))
    }
    fn fatal(self) -> Result<T, PollError> {
        self.map_err(|e| PollError::Fatal(e.into()))
    }
}

/// Why a wait ended without its condition.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed.
    #[error("timed out after {after:?} waiting for {what}; last saw: {last_seen}{}",
        transient_note(*.transient_errors))]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it waited.
        after: Duration,
        /// The last observation (or last transient error).
        last_seen: String,
        /// How many transient errors were retried on the way.
        transient_errors: u32,
    },
    /// A fatal error: waiting longer would not help.
    #[error("while waiting for {what}")]
    Failed {
        /// What was awaited.
        what: String,
        /// The error.
        #[source]
        source: BoxError,
    },
}

fn transient_note(n: u32) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} transient errors retried)")
    }
}

/// Whether a kube error is worth retrying: throttling, server-side
/// unavailability, timeouts and broken connections, as opposed to
/// refusals (4xx) that a retry cannot fix.
///
/// # Example
/// ```
/// use certctl_harness::wait::is_transient;
/// use kube::core::Status;
/// let busy = kube::Error::Api(Box::new(Status::failure("etcd busy", "ServiceUnavailable").with_code(503)));
/// assert!(is_transient(&busy));
/// let gone = kube::Error::Api(Box::new(Status::failure("nope", "Forbidden").with_code(403)));
/// assert!(!is_transient(&gone));
/// ```
pub fn is_transient(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => {
            matches!(s.code, 429 | 500 | 502 | 503 | 504)
                || s.reason == "ServerTimeout"
                || s.reason == "Timeout"
                || s.reason == "TooManyRequests"
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        kube::Error::HttpError(_) => true,
        _ => false,
    }
}

/// Exponential backoff with a cap: `initial * 2^n`, at most `max`.
///
/// # Example
/// ```
/// use certctl_harness::wait::Backoff;
/// use std::time::Duration;
/// let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
/// let d: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
/// assert_eq!(d, [1, 2, 4, 5, 5]);
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles each time, never beyond `max`.
    ///
    /// # Example
    /// ```
    /// let _ = certctl_harness::wait::Backoff::new(std::time::Duration::from_millis(100), std::time::Duration::from_secs(2));
    /// ```
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The delay to sleep before the next attempt.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::wait::Backoff; use std::time::Duration;
    /// assert_eq!(Backoff::new(Duration::from_secs(3), Duration::from_secs(3)).next_delay(), Duration::from_secs(3));
    /// ```
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        d
    }
}

/// How to poll: total timeout and interval between polls.
///
/// # Example
/// ```
/// use certctl_harness::wait::Deadline;
/// let d = Deadline::secs(120).every_millis(500);
/// assert_eq!(d.timeout.as_secs(), 120);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// Give up after this long.
    pub timeout: Duration,
    /// Pause between polls.
    pub interval: Duration,
}

impl Deadline {
    /// A deadline of `secs` seconds polling every second.
    ///
    /// # Example
    /// ```
    /// assert_eq!(certctl_harness::wait::Deadline::secs(5).interval.as_secs(), 1);
    /// ```
    pub fn secs(secs: u64) -> Self {
        Self { timeout: Duration::from_secs(secs), interval: Duration::from_secs(1) }
    }

    /// Same deadline, polling every `ms` milliseconds.
    ///
    /// # Example
    /// ```
    /// assert_eq!(certctl_harness::wait::Deadline::secs(5).every_millis(200).interval.as_millis(), 200);
    /// ```
    pub fn every_millis(mut self, ms: u64) -> Self {
        self.interval = Duration::from_millis(ms);
        self
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (every {:?})", self.timeout, self.interval)
    }
}

/// Polls `probe` until it returns [`Poll::Ready`], a fatal error, or the
/// deadline passes. Transient errors are retried and counted.
///
/// # Errors
/// [`WaitError::Timeout`] with the last observation, or
/// [`WaitError::Failed`] for an error a retry cannot fix.
///
/// # Example
/// ```
/// use certctl_harness::wait::{wait_until, Classify, Deadline, Poll, PollError};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut n = 0;
/// let v = wait_until("the counter to reach 3", Deadline::secs(5).every_millis(1), || {
///     n += 1;
///     let seen = n;
///     async move { Ok::<_, PollError>(if seen >= 3 { Poll::Ready(seen) } else { Poll::Pending(format!("counter={seen}")) }) }
/// }).await.unwrap();
/// assert_eq!(v, 3);
///
/// let err = wait_until("never", Deadline::secs(0).every_millis(1), || async {
///     Ok::<Poll<()>, kube::Error>(Poll::Pending("still no".into()))
/// }).await.unwrap_err().to_string();
/// assert!(err.contains("waiting for never") && err.contains("last saw: still no"));
///
/// // A non-API error chooses: this one ends the wait at once.
/// let err = wait_until("a query", Deadline::secs(60), || async {
///     Err::<Poll<()>, _>(std::io::Error::other("syntax error")).fatal()
/// }).await.unwrap_err();
/// assert!(matches!(err, certctl_harness::wait::WaitError::Failed { .. }));
/// # });
/// ```
pub async fn wait_until<T, E, F, Fut>(what: &str, deadline: Deadline, mut probe: F) -> Result<T, WaitError>
where
    E: Into<PollError>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, E>>,
{
    let start = Instant::now();
    let mut transient_errors = 0;
    loop {
        let last_seen = match probe().await.map_err(Into::into) {
            Ok(Poll::Ready(v)) => return Ok(v),
            Ok(Poll::Pending(seen)) => seen,
            Err(PollError::Transient(e)) => {
                transient_errors += 1;
                format!("transient error: {}", crate::report::chain(e.as_ref()))
            }
            Err(PollError::Fatal(source)) => return Err(WaitError::Failed { what: what.to_string(), source }),
        };
        if start.elapsed() >= deadline.timeout {
            return Err(WaitError::Timeout { what: what.to_string(), after: start.elapsed(), last_seen, transient_errors });
        }
        tokio::time::sleep(deadline.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("m", reason).with_code(code)))
    }

    #[tokio::test]
    async fn transient_errors_are_retried_and_counted() {
        let mut n = 0;
        let err = wait_until("x", Deadline::secs(0).every_millis(1), || {
            n += 1;
            async { Err::<Poll<()>, _>(api(503, "ServiceUnavailable")) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, WaitError::Timeout { transient_errors: 1, .. }), "{err}");
        assert!(err.to_string().contains("1 transient errors retried"));
    }

    #[tokio::test]
    async fn real_errors_end_the_wait_at_once() {
        let err = wait_until("x", Deadline::secs(60), || async { Err::<Poll<()>, _>(api(403, "Forbidden")) }).await.unwrap_err();
        assert!(matches!(err, WaitError::Failed { .. }));
    }

    #[tokio::test]
    async fn other_errors_are_classified_by_the_caller() {
        let mut n = 0;
        let v = wait_until("x", Deadline::secs(5).every_millis(1), || {
            n += 1;
            let seen = n;
            async move {
                if seen < 3 {
                    Err(std::io::Error::other("not yet")).transient()
                } else {
                    Ok(Poll::Ready(seen))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn classification() {
        assert!(is_transient(&api(429, "TooManyRequests")));
        assert!(is_transient(&api(504, "Timeout")));
        assert!(!is_transient(&api(404, "NotFound")));
        assert!(!is_transient(&api(422, "Invalid")));
    }
}
