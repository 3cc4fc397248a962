//! The one way the harness runs the host's tools (docker, kind, helm, kubectl): the
//! command line as it ran, its exit status and the tail of its stderr in every
//! failure, whether the caller blocks or awaits.
//!
//! # Example
//! ```
//! use certctl_harness::command::{run, CommandError};
//! let out = run(std::process::Command::new("sh").args(["-c", "echo hi"]))?;
//! assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
//! let err = run(std::process::Command::new("sh").args(["-c", "echo no >&2; exit 3"])).unwrap_err();
//! assert!(matches!(err, CommandError::Failed { ref stderr, .. } if stderr == "no"));
//! # Ok::<(), CommandError>(())
//! ```

use std::io::Write;
use std::process::{Command, ExitStatus, Output, Stdio};

/// Lines of stderr a failure keeps: enough for helm's and kind's explanations,
/// not a whole build log.
const STDERR_LINES: usize = 40;

/// A command that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not start (or its input could not be written).
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed; its stderr says why.
    #[error("`{cmd}` failed ({status}):\n{stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Exit status.
        status: ExitStatus,
        /// The tail of its stderr.
        stderr: String,
    },
}

/// The command line as a reader would type it (program and arguments, unquoted).
///
/// ```
/// let mut cmd = std::process::Command::new("kind");
/// cmd.args(["get", "clusters"]);
/// assert_eq!(certctl_harness::command::line(&cmd), "kind get clusters");
/// ```
pub fn line(cmd: &Command) -> String {
    format!("{cmd:?}").replace('"', "")
}

/// Runs `cmd` to its end; its output if it succeeded.
///
/// # Errors
/// [`CommandError::Spawn`] or [`CommandError::Failed`].
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    let out = cmd.output().map_err(|source| CommandError::Spawn { cmd: line(cmd), source })?;
    checked(line(cmd), out)
}

/// Runs `cmd` with `input` on its stdin (e.g. a manifest for `kubectl apply -f -`).
///
/// # Errors
/// As [`run`].
///
/// # Example
/// ```
/// use certctl_harness::command::{run_with_input, stdout};
/// let out = run_with_input(&mut std::process::Command::new("wc").arg("-c"), b"12345")?;
/// assert_eq!(stdout(&out).trim(), "5");
/// # Ok::<(), certctl_harness::command::CommandError>(())
/// ```
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<Output, CommandError> {
    let cmd_line = line(cmd);
    let spawn_err = |source| CommandError::Spawn { cmd: cmd_line.clone(), source };
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(spawn_err)?;
    // Dropping the handle closes stdin, so the command sees the end of its input.
    let written = child.stdin.take().expect("stdin is piped").write_all(input);
    let out = child.wait_with_output().map_err(spawn_err)?;
    // A command that failed before reading all its input says why on stderr: that, not
    // the broken pipe, is the error worth showing.
    let out = checked(cmd_line.clone(), out)?;
    written.map_err(spawn_err)?;
    Ok(out)
}

/// [`run`] for async callers.
///
/// # Errors
/// As [`run`].
///
/// # Example
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), certctl_harness::command::CommandError> {
/// use certctl_harness::command::{run_async, stdout};
/// let out = run_async(tokio::process::Command::new("echo").arg("ok")).await?;
/// assert_eq!(stdout(&out), "ok\n");
/// # Ok(()) }
/// ```
pub async fn run_async(cmd: &mut tokio::process::Command) -> Result<Output, CommandError> {
    let cmd_line = line(cmd.as_std());
    let out = cmd.output().await.map_err(|source| CommandError::Spawn { cmd: cmd_line.clone(), source })?;
    checked(cmd_line, out)
}

/// Standard output as text (lossy: the tools print UTF-8).
///
/// ```
/// let out = certctl_harness::command::run(&mut std::process::Command::new("true"))?;
/// assert_eq!(certctl_harness::command::stdout(&out), "");
/// # Ok::<(), certctl_harness::command::CommandError>(())
/// ```
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn checked(cmd: String, out: Output) -> Result<Output, CommandError> {
    if out.status.success() {
        Ok(out)
    } else {
        let stderr = tail(&String::from_utf8_lossy(&out.stderr), STDERR_LINES);
        Err(CommandError::Failed { cmd, status: out.status, stderr })
    }
}

/// The last `n` lines of `s`, trailing blank space dropped.
///
/// ```
/// assert_eq!(certctl_harness::command::tail("a\nb\nc\n\n", 2), "b\nc");
/// ```
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_carry_the_command_status_and_stderr_tail() {
        let script = "for i in $(seq 1 50); do echo line$i >&2; done; exit 3";
        let text = run(Command::new("sh").args(["-c", script])).unwrap_err().to_string();
        assert!(text.starts_with("`sh -c for i in"), "{text}");
        assert!(text.contains("exit status: 3") && text.contains("line11\n") && text.ends_with("line50"), "{text}");
        assert!(!text.contains("line10\n"), "only the last {STDERR_LINES} lines: {text}");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error_naming_it() {
        let err = run(&mut Command::new("certctl-no-such-program")).unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }) && err.to_string().contains("certctl-no-such-program"), "{err}");
    }

    #[test]
    fn input_reaches_stdin() {
        let out = run_with_input(&mut Command::new("cat"), b"manifest").unwrap();
        assert_eq!(stdout(&out), "manifest");
    }

    #[tokio::test]
    async fn async_callers_get_the_same_errors() {
        let err = run_async(tokio::process::Command::new("sh").args(["-c", "echo bad >&2; exit 1"])).await.unwrap_err();
        assert_eq!(err.to_string(), "`sh -c echo bad >&2; exit 1` failed (exit status: 1):\nbad");
    }
}
