//! Child commands of a phase: output to the console or to a log file (noted for the
//! phase's progress lines either way), killed with their process group when the
//! phase's budget runs out.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::phase::{human, Progress};

/// Where a command's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Straight to the console (test runners, which report their own progress).
    Console,
    /// To this log file only; its tail is printed when the command fails.
    Log(PathBuf),
}

/// Errors running a child command.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// It could not start.
    #[error("cannot start `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its log file could not be written.
    #[error("cannot write the log {path}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("`{cmd}` failed ({status}){}", log_hint(.log))]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its log, if it had one.
        log: Option<PathBuf>,
    },
    /// It outlived the phase's budget and was killed.
    #[error("`{cmd}` still running after its budget of {}; killed. Last output: {last}{}", human(*.budget), log_hint(.log))]
    Timeout {
        /// The command line.
        cmd: String,
        /// The budget.
        budget: Duration,
        /// Its last line of output.
        last: String,
        /// Its log, if it had one.
        log: Option<PathBuf>,
    },
}

fn log_hint(log: &Option<PathBuf>) -> String {
    log.as_ref().map(|p| format!("; full log: {}", p.display())).unwrap_or_default()
}

/// A command line as a person would type it.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` to completion within the phase's deadline.
///
/// # Errors
/// [`ExecError`]: could not start, failed (with the log's tail printed), or timed out
/// (its process group killed).
///
/// # Example
/// ```
/// use std::process::Command;
/// use std::time::Duration;
/// use certctl_ci::{exec, phase::Progress};
/// let p = Progress::detached("echo", Duration::from_secs(10));
/// exec::run(Command::new("echo").arg("hello"), &exec::Output::Console, &p).unwrap();
/// assert_eq!(p.last_line(), "hello");
/// ```
pub fn run(cmd: &mut Command, output: &Output, progress: &Progress) -> Result<(), ExecError> {
    let line = display(cmd);
    let log_path = match output {
        Output::Log(p) => Some(p.clone()),
        Output::Console => None,
    };
    let log = match &log_path {
        Some(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|source| ExecError::Log { path: p.clone(), source })?;
            }
            let mut f = File::create(p).map_err(|source| ExecError::Log { path: p.clone(), source })?;
            let _ = writeln!(f, "$ {line}");
            eprintln!("$ {line}   (log: {})", p.display());
            Some(Arc::new(Mutex::new(f)))
        }
        None => {
            eprintln!("$ {line}");
            None
        }
    };
    // Its own process group, so a timeout can end everything it started.
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| ExecError::Spawn { cmd: line.clone(), source })?;
    let (tx, rx) = mpsc::channel::<()>();
    let result = std::thread::scope(|scope| {
        let pipes: [Box<dyn Read + Send>; 2] =
            [Box::new(child.stdout.take().expect("stdout is piped")), Box::new(child.stderr.take().expect("stderr is piped"))];
        for (i, pipe) in pipes.into_iter().enumerate() {
            let tx = tx.clone();
            let log = log.clone();
            scope.spawn(move || {
                for text in BufReader::new(pipe).lines().map_while(Result::ok) {
                    progress.note(&text);
                    match &log {
                        Some(f) => {
                            let _ = writeln!(f.lock().unwrap_or_else(|e| e.into_inner()), "{text}");
                        }
                        None if i == 0 => {
                            println!("{text}");
                            progress.printed();
                        }
                        None => {
                            eprintln!("{text}");
                            progress.printed();
                        }
                    }
                }
                drop(tx);
            });
        }
        drop(tx);
        // Both readers end when the child (and everything holding its pipes) exits.
        let remaining = progress.deadline().saturating_duration_since(Instant::now());
        let timed_out = matches!(rx.recv_timeout(remaining), Err(mpsc::RecvTimeoutError::Timeout));
        let status = if timed_out { terminate(&mut child) } else { child.wait() };
        (timed_out, status)
    });
    let (timed_out, status) = result;
    let status = status.map_err(|source| ExecError::Spawn { cmd: line.clone(), source })?;
    if timed_out {
        return Err(ExecError::Timeout { cmd: line, budget: progress.budget(), last: progress.last_line(), log: log_path });
    }
    if status.success() {
        return Ok(());
    }
    if let Some(p) = &log_path {
        print_tail(p, 40);
    }
    Err(ExecError::Failed { cmd: line, status, log: log_path })
}

/// Runs `cmd` and returns its stdout (stderr goes to the console), within the
/// phase's deadline.
///
/// # Errors
/// As [`run`].
pub fn capture(cmd: &mut Command, progress: &Progress) -> Result<String, ExecError> {
    let line = display(cmd);
    let out_file = tempfile_path(&line);
    let file = File::create(&out_file).map_err(|source| ExecError::Log { path: out_file.clone(), source })?;
    cmd.stdout(file);
    eprintln!("$ {line}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| ExecError::Spawn { cmd: line.clone(), source })?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel::<()>();
    let timed_out = std::thread::scope(|scope| {
        scope.spawn(move || {
            for text in BufReader::new(stderr).lines().map_while(Result::ok) {
                progress.note(&text);
                eprintln!("{text}");
                progress.printed();
            }
            drop(tx);
        });
        let remaining = progress.deadline().saturating_duration_since(Instant::now());
        let timed_out = matches!(rx.recv_timeout(remaining), Err(mpsc::RecvTimeoutError::Timeout));
        let status = if timed_out { terminate(&mut child) } else { child.wait() };
        (timed_out, status)
    });
    let (timed_out, status) = timed_out;
    let status = status.map_err(|source| ExecError::Spawn { cmd: line.clone(), source })?;
    let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    if timed_out {
        return Err(ExecError::Timeout { cmd: line, budget: progress.budget(), last: progress.last_line(), log: None });
    }
    if !status.success() {
        return Err(ExecError::Failed { cmd: line, status, log: None });
    }
    Ok(stdout)
}

fn tempfile_path(line: &str) -> PathBuf {
    let tag: String = line.chars().filter(char::is_ascii_alphanumeric).take(24).collect();
    std::env::temp_dir().join(format!("certctl-ci-{}-{tag}.out", std::process::id()))
}

/// Ends a child's whole process group: TERM, then KILL if it has not exited within
/// ten seconds; returns once the child is reaped.
fn terminate(child: &mut Child) -> std::io::Result<ExitStatus> {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let (exited_tx, exited_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let group = &group;
        scope.spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = exited_rx.recv_timeout(Duration::from_secs(10)) {
                let _ = Command::new("kill").args(["-KILL", "--", group]).status();
            }
        });
        let status = child.wait();
        let _ = exited_tx.send(());
        status
    })
}

fn print_tail(path: &Path, n: usize) {
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("--- last {} lines of {}:", n.min(lines.len()), path.display());
    for l in &lines[lines.len().saturating_sub(n)..] {
        eprintln!("  {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_names_itself_and_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/x.log");
        let p = Progress::detached("x", Duration::from_secs(10));
        let err = run(Command::new("sh").args(["-c", "echo built; echo oops >&2; exit 3"]), &Output::Log(log.clone()), &p).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`sh -c echo built; echo oops >&2; exit 3` failed (exit status: 3)"), "{text}");
        assert!(text.contains(&format!("full log: {}", log.display())), "{text}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("built") && logged.contains("oops"), "{logged}");
    }

    #[test]
    fn a_command_past_its_budget_is_killed_with_its_children() {
        let p = Progress::detached("slow", Duration::from_millis(300));
        let start = Instant::now();
        let err = run(Command::new("sh").args(["-c", "echo waiting; sleep 30 & wait"]), &Output::Console, &p).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(15), "the child was not killed");
        let text = err.to_string();
        assert!(text.contains("still running after its budget") && text.contains("Last output: waiting"), "{text}");
    }

    #[test]
    fn capture_returns_stdout_only() {
        let p = Progress::detached("c", Duration::from_secs(10));
        let out = capture(Command::new("sh").args(["-c", "echo A=1; echo noise >&2"]), &p).unwrap();
        assert_eq!(out, "A=1\n");
    }
}
