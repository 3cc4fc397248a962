//! Per-phase wall time, recorded process-wide and printed as a table at the
//! end of a scenario, so cold and warm runs can be compared phase by phase.

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did its work.
    Ok,
    /// It found its result already there (reused cluster, cached images).
    Reused,
    /// It failed.
    Failed,
}

/// One timed phase.
#[derive(Debug, Clone)]
pub struct PhaseRecord {
    /// Who the phase belongs to: `run` for shared phases, else the scenario name.
    pub scope: String,
    /// Phase name, e.g. `cluster` or `assert securityContext`.
    pub name: String,
    /// Wall time.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// A recorder of phases. Use [`Timings::global`] to share one across a test
/// binary.
///
/// # Example
/// ```
/// use certctl_harness::timing::{Timings, Outcome};
/// let t = Timings::default();
/// let v = t.time_sync("run", "preflight", || 42);
/// assert_eq!(v, 42);
/// t.record("run", "images", std::time::Duration::from_secs(3), Outcome::Reused);
/// let table = t.table(None);
/// assert!(table.contains("preflight") && table.contains("reused"));
/// ```
#[derive(Debug, Default)]
pub struct Timings {
    records: Mutex<Vec<PhaseRecord>>,
}

impl Timings {
    /// The process-wide recorder.
    ///
    /// # Example
    /// ```
    /// certctl_harness::timing::Timings::global().record(
    ///     "run", "preflight", std::time::Duration::ZERO,
    ///     certctl_harness::timing::Outcome::Ok);
    /// ```
    pub fn global() -> &'static Timings {
        static GLOBAL: OnceLock<Timings> = OnceLock::new();
        GLOBAL.get_or_init(Timings::default)
    }

    /// Adds a finished phase.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::timing::*;
    /// Timings::default().record("s", "install", std::time::Duration::from_millis(5), Outcome::Ok);
    /// ```
    pub fn record(&self, scope: &str, name: &str, elapsed: Duration, outcome: Outcome) {
        self.lock().push(PhaseRecord { scope: scope.to_string(), name: name.to_string(), elapsed, outcome });
    }

    /// Times a synchronous closure as one phase (outcome `Ok`).
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::timing::*;
    /// assert_eq!(Timings::default().time_sync("s", "p", || 1 + 1), 2);
    /// ```
    pub fn time_sync<T>(&self, scope: &str, name: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let v = f();
        self.record(scope, name, start.elapsed(), Outcome::Ok);
        v
    }

    /// Times a fallible future; an `Err` is recorded as `Failed`.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::timing::*;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let t = Timings::default();
    /// let r: Result<u8, String> = t.time("s", "p", async { Err("no".into()) }).await;
    /// assert!(r.is_err());
    /// assert!(t.table(Some("s")).contains("FAILED"));
    /// # });
    /// ```
    pub async fn time<T, E>(&self, scope: &str, name: &str, fut: impl std::future::Future<Output = Result<T, E>>) -> Result<T, E> {
        let start = Instant::now();
        let r = fut.await;
        let outcome = if r.is_ok() { Outcome::Ok } else { Outcome::Failed };
        self.record(scope, name, start.elapsed(), outcome);
        r
    }

    /// All records so far.
    ///
    /// # Example
    /// ```
    /// assert!(certctl_harness::timing::Timings::default().records().is_empty());
    /// ```
    pub fn records(&self) -> Vec<PhaseRecord> {
        self.lock().clone()
    }

    /// A printable table of the shared `run` phases plus those of `scope`
    /// (all scopes when `None`), with a total.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::timing::*;
    /// let t = Timings::default();
    /// t.record("run", "cluster", std::time::Duration::from_secs(60), Outcome::Ok);
    /// assert!(t.table(Some("default")).contains("total"));
    /// ```
    pub fn table(&self, scope: Option<&str>) -> String {
        let records: Vec<PhaseRecord> =
            self.lock().iter().filter(|r| scope.is_none_or(|s| r.scope == s || r.scope == "run")).cloned().collect();
        let width = records.iter().map(|r| r.scope.len() + r.name.len() + 1).max().unwrap_or(5).max(5);
        let mut out = String::new();
        let mut total = Duration::ZERO;
        for r in &records {
            total += r.elapsed;
            let label = format!("{}/{}", r.scope, r.name);
            let outcome = match r.outcome {
                Outcome::Ok => "ok",
                Outcome::Reused => "reused",
                Outcome::Failed => "FAILED",
            };
            let _ = writeln!(out, "  {label:<width$}  {:>8.1}s  {outcome}", r.elapsed.as_secs_f64());
        }
        let _ = writeln!(out, "  {:<width$}  {:>8.1}s", "total", total.as_secs_f64());
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PhaseRecord>> {
        // A panic while holding the lock leaves valid data behind; keep using it.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_filters_by_scope_but_keeps_shared_phases() {
        let t = Timings::default();
        t.record("run", "images", Duration::from_secs(2), Outcome::Reused);
        t.record("a", "install", Duration::from_secs(3), Outcome::Ok);
        t.record("b", "install", Duration::from_secs(4), Outcome::Failed);
        let a = t.table(Some("a"));
        assert!(a.contains("run/images") && a.contains("a/install") && !a.contains("b/install"));
        assert!(a.contains("5.0s"), "total of shared + own phases: {a}");
        assert!(t.table(None).contains("FAILED"));
    }
}
