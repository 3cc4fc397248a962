//! Cleanup that survives the test process: a small `sh` child in its own
//! process group holds the read end of a pipe. When the test process ends for
//! any reason — success, panic, Ctrl-C, SIGKILL — the kernel closes the write
//! end, the child reads EOF and runs the cleanup command (e.g. `kind delete
//! cluster`), unless it was told `keep` first. This is the global teardown
//! libtest lacks.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

/// The child's program: ignore terminal signals, read messages until EOF,
/// then clean up unless asked to keep.
const SCRIPT: &str = r#"trap '' INT TERM HUP PIPE
keep=0
while IFS= read -r line; do
  case "$line" in
    keep) keep=1 ;;
  esac
done
if [ "$keep" = 1 ]; then
  echo "certctl watchdog: keeping ($WATCHDOG_WHAT)" >&2
  exit 0
fi
echo "certctl watchdog: cleaning up ($WATCHDOG_WHAT): $*" >&2
exec "$@"
"#;

/// Errors starting or talking to the watchdog.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// `sh` could not be started.
    #[error("cannot start the cleanup watchdog for {what}: {source}")]
    Spawn {
        /// What it guards.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pipe to the child broke (it died early).
    #[error("the cleanup watchdog for {what} is gone: {source}")]
    Gone {
        /// What it guards.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running watchdog. Dropping it (or the process ending) triggers cleanup.
///
/// # Example
/// ```
/// use certctl_harness::watchdog::Watchdog;
/// let marker = std::env::temp_dir().join(format!("wd-doc-{}", std::process::id()));
/// let wd = Watchdog::spawn("a doc example", &["touch", marker.to_str().unwrap()]).unwrap();
/// let status = wd.finish().unwrap(); // closes the pipe: cleanup runs
/// assert!(status.success() && marker.exists());
/// # std::fs::remove_file(marker).unwrap();
/// ```
#[derive(Debug)]
pub struct Watchdog {
    what: String,
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog that runs `cleanup` (program and arguments) when this
    /// process's end closes the pipe. Its stderr is this process's stderr.
    ///
    /// # Errors
    /// [`WatchdogError::Spawn`] when `sh` cannot start.
    ///
    /// # Example
    /// ```no_run
    /// let _wd = certctl_harness::watchdog::Watchdog::spawn(
    ///     "cluster certctl-e2e", &["kind", "delete", "cluster", "--name", "certctl-e2e"]).unwrap();
    /// ```
    pub fn spawn(what: &str, cleanup: &[&str]) -> Result<Self, WatchdogError> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .arg("certctl-watchdog")
            .args(cleanup)
            .env("WATCHDOG_WHAT", what)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Own process group: Ctrl-C in the terminal must not kill it.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| WatchdogError::Spawn { what: what.to_string(), source })?;
        let pipe = child.stdin.take();
        Ok(Self { what: what.to_string(), child, pipe })
    }

    /// Tells the watchdog to keep the guarded thing when the process ends.
    ///
    /// # Errors
    /// [`WatchdogError::Gone`] if the child already exited.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::watchdog::Watchdog;
    /// let marker = std::env::temp_dir().join(format!("wd-keep-{}", std::process::id()));
    /// let mut wd = Watchdog::spawn("kept", &["touch", marker.to_str().unwrap()]).unwrap();
    /// wd.keep().unwrap();
    /// wd.finish().unwrap();
    /// assert!(!marker.exists());
    /// ```
    pub fn keep(&mut self) -> Result<(), WatchdogError> {
        let what = self.what.clone();
        match self.pipe.as_mut() {
            Some(p) => p.write_all(b"keep\n").and_then(|()| p.flush()).map_err(|source| WatchdogError::Gone { what, source }),
            None => Ok(()),
        }
    }

    /// Closes the pipe now and waits for the cleanup to finish.
    ///
    /// # Errors
    /// [`WatchdogError::Gone`] when waiting fails.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::watchdog::Watchdog;
    /// assert!(Watchdog::spawn("true", &["true"]).unwrap().finish().unwrap().success());
    /// ```
    pub fn finish(mut self) -> Result<ExitStatus, WatchdogError> {
        drop(self.pipe.take());
        let what = self.what.clone();
        self.child.wait().map_err(|source| WatchdogError::Gone { what, source })
    }

    /// The watchdog's process id (for logs).
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::watchdog::Watchdog;
    /// let wd = Watchdog::spawn("true", &["true"]).unwrap();
    /// assert!(wd.pid() > 0);
    /// # wd.finish().unwrap();
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The real case: the owning process dies by SIGKILL (no destructors run)
    /// and the cleanup still happens. The owner is a bash holding the pipe's
    /// write end on fd 3.
    #[test]
    fn cleanup_runs_when_the_owner_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("cleaned");
        let mut owner = Command::new("bash")
            .arg("-c")
            .arg(r#"exec 3> >(sh -c "$SCRIPT" certctl-watchdog touch "$MARKER"); echo started; sleep 30 3>&-"#)
            .env("SCRIPT", SCRIPT)
            .env("MARKER", &marker)
            .env("WATCHDOG_WHAT", "test")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(owner.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "started");
        assert!(!marker.exists(), "cleanup ran while the owner was alive");
        owner.kill().unwrap();
        owner.wait().unwrap();
        let start = Instant::now();
        while !marker.exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(marker.exists(), "the watchdog did not clean up after its owner was killed");
    }

    #[test]
    fn finish_runs_cleanup_and_reports_its_status() {
        let wd = Watchdog::spawn("false", &["false"]).unwrap();
        assert!(!wd.finish().unwrap().success());
    }
}
