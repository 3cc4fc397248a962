//! Phases of a run: each timed, each with a time budget, each saying what it is doing
//! while it runs (a progress line after every quiet interval, with the last thing its
//! work said), and all of them in one table at the end.

use std::fmt::Write as _;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An error a phase ends with; [`crate::report::error_chain`] renders it once.
pub type PhaseError = Box<dyn std::error::Error + Send + Sync>;

/// How a phase ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseOutcome {
    /// It did its work.
    Ok,
    /// It failed.
    Failed,
}

/// One finished phase.
#[derive(Debug, Clone)]
pub struct PhaseRecord {
    /// Its name.
    pub name: String,
    /// Wall time.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: PhaseOutcome,
    /// A short note (what it used, where its log is).
    pub note: String,
}

/// What a running phase shares with its work: the deadline, and the last line of
/// output, shown in progress lines.
#[derive(Debug)]
pub struct Progress {
    name: String,
    started: Instant,
    deadline: Instant,
    last_line: Mutex<String>,
    last_console: Mutex<Instant>,
}

impl Progress {
    fn new(name: &str, budget: Duration) -> Self {
        let now = Instant::now();
        Self {
            name: name.to_string(),
            started: now,
            deadline: now + budget,
            last_line: Mutex::new(String::new()),
            last_console: Mutex::new(now),
        }
    }

    /// A progress value for work run outside a [`Phases`] (tests, small tools).
    pub fn detached(name: &str, budget: Duration) -> Self {
        Self::new(name, budget)
    }

    /// When the phase's budget runs out.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The budget the phase was given.
    pub fn budget(&self) -> Duration {
        self.deadline - self.started
    }

    /// Records the latest line of output (shown in the next progress line).
    pub fn note(&self, line: &str) {
        let line = line.trim();
        if !line.is_empty() {
            *lock(&self.last_line) = line.chars().take(160).collect();
        }
    }

    /// The last line noted.
    pub fn last_line(&self) -> String {
        lock(&self.last_line).clone()
    }

    /// Says that the console just got output, so no progress line is due.
    pub fn printed(&self) {
        *lock(&self.last_console) = Instant::now();
    }

    fn heartbeat_due(&self, every: Duration) -> bool {
        lock(&self.last_console).elapsed() >= every
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The phases of one run.
#[derive(Debug)]
pub struct Phases {
    records: Vec<PhaseRecord>,
    heartbeat: Duration,
    started: Instant,
}

impl Default for Phases {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl Phases {
    /// Progress lines after `heartbeat` of console silence.
    pub fn new(heartbeat: Duration) -> Self {
        Self { records: Vec::new(), heartbeat, started: Instant::now() }
    }

    /// Runs `work` as the phase `name` with a time budget, printing a start line, a
    /// progress line after every quiet interval, and an end line.
    ///
    /// # Errors
    /// Whatever `work` returns.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// let mut phases = certctl_ci::phase::Phases::new(Duration::from_secs(30));
    /// let n = phases.run("count", Duration::from_secs(5), |_| Ok(3)).unwrap();
    /// assert_eq!(n, 3);
    /// assert!(phases.table().contains("count"));
    /// ```
    pub fn run<T: Send>(
        &mut self,
        name: &str,
        budget: Duration,
        work: impl FnOnce(&Progress) -> Result<T, PhaseError> + Send,
    ) -> Result<T, PhaseError> {
        eprintln!("\n=== {name} (budget {})", human(budget));
        let progress = Progress::new(name, budget);
        let result = std::thread::scope(|scope| {
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let p = &progress;
            let worker = scope.spawn(move || {
                let r = work(p);
                let _ = done_tx.send(());
                r
            });
            loop {
                match done_rx.recv_timeout(self.heartbeat) {
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) if progress.heartbeat_due(self.heartbeat) => {
                        let last = progress.last_line();
                        let last = if last.is_empty() { String::new() } else { format!("; last: {last}") };
                        eprintln!("... {} running for {}{last}", progress.name, human(progress.started.elapsed()));
                        progress.printed();
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
            }
            worker.join().unwrap_or_else(|panic| Err(format!("phase {name} panicked: {panic:?}").into()))
        });
        let elapsed = progress.started.elapsed();
        let outcome = if result.is_ok() { PhaseOutcome::Ok } else { PhaseOutcome::Failed };
        eprintln!("=== {name}: {} in {}", if result.is_ok() { "ok" } else { "FAILED" }, human(elapsed));
        self.records.push(PhaseRecord { name: name.to_string(), elapsed, outcome, note: String::new() });
        result
    }

    /// Adds a note to the last phase recorded (what it reused, where its log is).
    pub fn annotate_last(&mut self, note: &str) {
        if let Some(r) = self.records.last_mut() {
            r.note = note.to_string();
        }
    }

    /// The phases so far.
    pub fn records(&self) -> &[PhaseRecord] {
        &self.records
    }

    /// The phase table for the console, with the run's wall time.
    pub fn table(&self) -> String {
        let width = self.records.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
        let mut out = String::new();
        for r in &self.records {
            let _ = writeln!(out, "  {:<width$}  {:>9}  {:<7}  {}", r.name, human(r.elapsed), outcome_word(&r.outcome), r.note);
        }
        let _ = writeln!(out, "  {:<width$}  {:>9}", "total", human(self.started.elapsed()));
        out
    }

    /// The phase table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| phase | time | outcome | note |\n|---|---:|---|---|\n");
        for r in &self.records {
            let _ = writeln!(out, "| {} | {} | {} | {} |", r.name, human(r.elapsed), outcome_word(&r.outcome), r.note);
        }
        let _ = writeln!(out, "| **total** | {} | | |", human(self.started.elapsed()));
        out
    }
}

fn outcome_word(o: &PhaseOutcome) -> &'static str {
    match o {
        PhaseOutcome::Ok => "ok",
        PhaseOutcome::Failed => "FAILED",
    }
}

/// `1h02m03s`, `4m05s`, `6.7s`.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use certctl_ci::phase::human;
/// assert_eq!(human(Duration::from_millis(6_700)), "6.7s");
/// assert_eq!(human(Duration::from_secs(245)), "4m05s");
/// assert_eq!(human(Duration::from_secs(3723)), "1h02m03s");
/// ```
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_phase_gets_progress_lines_and_failures_are_recorded() {
        let mut phases = Phases::new(Duration::from_millis(20));
        let (tx, rx) = mpsc::channel::<()>();
        // The work waits until the test has seen it noted a line; then it fails.
        let r: Result<(), PhaseError> = phases.run("quiet", Duration::from_secs(5), move |p| {
            p.note("step 1 of 2");
            let _ = rx.recv_timeout(Duration::from_millis(100));
            Err("broken".into())
        });
        drop(tx);
        assert_eq!(r.unwrap_err().to_string(), "broken");
        assert_eq!(phases.records()[0].outcome, PhaseOutcome::Failed);
        assert!(phases.table().contains("FAILED"));
        phases.annotate_last("log x.log");
        assert!(phases.markdown().contains("| FAILED | log x.log |"), "{}", phases.markdown());
    }

    #[test]
    fn progress_keeps_the_last_non_empty_line() {
        let p = Progress::detached("x", Duration::from_secs(1));
        p.note("one");
        p.note("   ");
        assert_eq!(p.last_line(), "one");
    }
}
