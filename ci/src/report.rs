//! Where a run's words end up: an error with its causes on one line, the summary on
//! the console, in `target/e2e-artifacts/summary.md` and in `$GITHUB_STEP_SUMMARY`.

use std::io::Write as _;
use std::path::Path;

/// An error and its sources, outermost first, joined with `: ` — the one place the
/// chain is rendered.
///
/// # Example
/// ```
/// let io = std::io::Error::other("disk full");
/// let err = certctl_ci::exec::ExecError::Log { path: "/l".into(), source: io };
/// assert_eq!(certctl_ci::report::error_chain(&err), "cannot write the log /l: disk full");
/// ```
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Prints the summary and writes it to `file` and, when set, `$GITHUB_STEP_SUMMARY`.
/// Failing to write either is reported, never fatal: the console has it.
pub fn publish(markdown: &str, file: &Path) {
    println!("\n{markdown}");
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(file, markdown) {
        eprintln!("warning: cannot write {}: {e}", file.display());
    }
    if let Some(step_summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty()) {
        let appended =
            std::fs::OpenOptions::new().create(true).append(true).open(&step_summary).and_then(|mut f| f.write_all(markdown.as_bytes()));
        if let Err(e) = appended {
            eprintln!("warning: cannot append to GITHUB_STEP_SUMMARY {}: {e}", Path::new(&step_summary).display());
        }
    }
}
