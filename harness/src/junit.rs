//! JUnit XML through `quick-junit`: one file per scenario, one testcase per
//! step; a failed step's message names the diagnostics bundle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

/// The result of one step, as JUnit will show it.
///
/// # Example
/// ```
/// let s = certctl_harness::junit::StepRecord { name: "install".into(), elapsed: std::time::Duration::from_secs(9), failure: None };
/// assert!(s.failure.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// Wall time.
    pub elapsed: Duration,
    /// The failure text, if it failed.
    pub failure: Option<String>,
}

/// Renders a scenario as a JUnit report. `bundle` (when set) is attached as
/// a suite property and appended to every failure message.
///
/// # Example
/// ```
/// use certctl_harness::junit::{render, StepRecord};
/// use std::time::Duration;
/// let xml = render("default", &[
///     StepRecord { name: "install".into(), elapsed: Duration::from_secs(30), failure: None },
///     StepRecord { name: "securityContext".into(), elapsed: Duration::from_secs(2), failure: Some("touch / succeeded".into()) },
/// ], Some("/tmp/bundle".as_ref()));
/// assert!(xml.contains("tests=\"2\"") && xml.contains("failures=\"1\""));
/// assert!(xml.contains("bundle: /tmp/bundle"));
/// ```
pub fn render(scenario: &str, steps: &[StepRecord], bundle: Option<&Path>) -> String {
    let mut suite = TestSuite::new(scenario);
    if let Some(b) = bundle {
        suite.add_property(Property::new("diagnostics-bundle", b.display().to_string()));
    }
    for s in steps {
        let status = match &s.failure {
            None => TestCaseStatus::success(),
            Some(msg) => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let first = msg.lines().next().unwrap_or_default();
                let note = bundle.map(|b| format!(" (bundle: {})", b.display())).unwrap_or_default();
                st.set_message(format!("{first}{note}"));
                st.set_description(format!(
                    "{msg}{}",
                    bundle.map(|b| format!("\n\ndiagnostics bundle: {}", b.display())).unwrap_or_default()
                ));
                st
            }
        };
        let mut case = TestCase::new(s.name.as_str(), status);
        case.set_classname(format!("e2e.{scenario}"));
        case.set_time(s.elapsed);
        suite.add_test_case(case);
    }
    suite.set_time(steps.iter().map(|s| s.elapsed).sum());
    let mut report = Report::new("certctl-e2e");
    report.add_test_suite(suite);
    report.to_string().unwrap_or_else(|e| format!("<!-- junit serialization failed: {e} -->"))
}

/// Writes [`render`]'s output to `<dir>/junit-<scenario>.xml`.
///
/// # Errors
/// File system errors.
///
/// # Example
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = certctl_harness::junit::write(dir.path(), "default", &[], None).unwrap();
/// assert!(p.ends_with("junit-default.xml") && p.exists());
/// ```
pub fn write(dir: &Path, scenario: &str, steps: &[StepRecord], bundle: Option<&Path>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("junit-{scenario}.xml"));
    std::fs::write(&path, render(scenario, steps, bundle))?;
    Ok(path)
}
