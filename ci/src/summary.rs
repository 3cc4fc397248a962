//! The Markdown summary a person reads after a run: verdict, phase table, test counts
//! per tier, failures and flaky tests, every live scenario's steps (outcome, time, the
//! diagnostics bundle of a failure) and where the artifacts are. Printed at the end,
//! written to `target/e2e-artifacts/summary.md` and appended to `$GITHUB_STEP_SUMMARY`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::TestCaseStatus;

use crate::outcomes::{self, ReadError, Status, TestOutcome};
use crate::phase::{human, Phases};
use crate::verdict::Verdict;

/// One step of a live scenario, from the harness's step-level JUnit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    /// The scenario (one JUnit file, `junit-<scenario>.xml`).
    pub scenario: String,
    /// The step.
    pub step: String,
    /// `None` when it passed, else the first line of its failure.
    pub failure: Option<String>,
    /// Wall time.
    pub time: Duration,
    /// The scenario's diagnostics bundle, when it wrote one.
    pub bundle: Option<PathBuf>,
}

/// Reads every `junit-*.xml` the scenarios wrote under `dir` (none is an empty list).
///
/// # Errors
/// [`ReadError`] for a file that cannot be read or parsed.
pub fn scenario_steps(dir: &Path) -> Result<Vec<StepRow>, ReadError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("junit-") && n.ends_with(".xml")))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut rows = Vec::new();
    for file in files {
        let report = outcomes::read_report(&file)?;
        for suite in &report.test_suites {
            let bundle = suite.properties.iter().find(|p| p.name.as_str() == "diagnostics-bundle").map(|p| PathBuf::from(p.value.as_str()));
            for case in &suite.test_cases {
                let failure = match &case.status {
                    TestCaseStatus::NonSuccess { message, .. } => {
                        Some(message.as_ref().map(|m| m.as_str().to_string()).unwrap_or_else(|| "failed".into()))
                    }
                    _ => None,
                };
                rows.push(StepRow {
                    scenario: suite.name.as_str().to_string(),
                    step: case.name.as_str().to_string(),
                    failure,
                    time: case.time.unwrap_or_default(),
                    bundle: bundle.clone(),
                });
            }
        }
    }
    Ok(rows)
}

/// Everything the summary shows.
#[derive(Debug)]
pub struct Summary<'a> {
    /// `fast`, `e2e` or `gate`.
    pub tier: String,
    /// The run's result.
    pub passed: bool,
    /// Why it failed, when it did (phase errors).
    pub errors: Vec<String>,
    /// The phases.
    pub phases: &'a Phases,
    /// Test outcomes per nextest profile that ran.
    pub suites: Vec<(String, Vec<TestOutcome>)>,
    /// The flaky verdict.
    pub verdict: &'a Verdict,
    /// Live scenario steps.
    pub steps: Vec<StepRow>,
    /// Further Markdown sections (the bench report), before the artifacts.
    pub sections: Vec<String>,
    /// Where things were written: (what, path).
    pub artifacts: Vec<(String, PathBuf)>,
}

/// Renders the summary as Markdown.
///
/// # Example
/// ```
/// use certctl_ci::{phase::Phases, summary::{render, Summary}, verdict::Verdict};
/// let phases = Phases::default();
/// let verdict = Verdict::default();
/// let md = render(&Summary { tier: "fast".into(), passed: true, errors: vec![], phases: &phases, suites: vec![],
///     verdict: &verdict, steps: vec![], sections: vec![], artifacts: vec![] });
/// assert!(md.starts_with("## certctl fast: passed"));
/// ```
pub fn render(s: &Summary<'_>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## certctl {}: {}\n", s.tier, if s.passed { "passed" } else { "FAILED" });
    for e in &s.errors {
        let _ = writeln!(md, "- **error:** {}", one_line(e));
    }
    for f in &s.verdict.failures {
        let _ = writeln!(md, "- **fails the run:** {f}");
    }
    for w in &s.verdict.warnings {
        let _ = writeln!(md, "- warning: {w}");
    }
    if !(s.errors.is_empty() && s.verdict.failures.is_empty() && s.verdict.warnings.is_empty()) {
        md.push('\n');
    }
    md.push_str("### Phases\n\n");
    md.push_str(&s.phases.markdown());
    if !s.suites.is_empty() {
        md.push_str("\n### Tests (nextest)\n\n| profile | passed | flaky | failed | skipped | time |\n|---|---:|---:|---:|---:|---:|\n");
        for (profile, outcomes) in &s.suites {
            let c = outcomes::counts(outcomes);
            let time: Duration = outcomes.iter().map(|o| o.time).sum();
            let _ = writeln!(md, "| {profile} | {} | {} | {} | {} | {} |", c.passed, c.flaky, c.failed, c.skipped, human(time));
        }
        let notable: Vec<&TestOutcome> =
            s.suites.iter().flat_map(|(_, o)| o).filter(|o| matches!(o.status, Status::Failed(_) | Status::Flaky { .. })).collect();
        if !notable.is_empty() {
            md.push_str("\n| test | outcome | time |\n|---|---|---:|\n");
            for o in notable {
                let outcome = match &o.status {
                    Status::Failed(m) => format!("FAILED: {}", cell(m)),
                    Status::Flaky { failed_attempts } => format!("flaky: passed on attempt {}", failed_attempts + 1),
                    _ => unreachable!("filtered above"),
                };
                let _ = writeln!(md, "| `{}` | {outcome} | {} |", o.id, human(o.time));
            }
        }
    }
    if !s.steps.is_empty() {
        md.push_str("\n### Live scenarios (steps)\n\n| scenario | step | outcome | time | bundle |\n|---|---|---|---:|---|\n");
        for r in &s.steps {
            let outcome = r.failure.as_deref().map_or_else(|| "ok".to_string(), |m| format!("FAILED: {}", cell(m)));
            let bundle = match (&r.failure, &r.bundle) {
                (Some(_), Some(b)) => format!("`{}`", b.display()),
                _ => String::new(),
            };
            let _ = writeln!(md, "| {} | {} | {outcome} | {} | {bundle} |", r.scenario, cell(&r.step), human(r.time));
        }
    }
    for section in &s.sections {
        md.push('\n');
        md.push_str(section);
    }
    if !s.artifacts.is_empty() {
        md.push_str("\n### Artifacts\n\n");
        for (what, path) in &s.artifacts {
            let _ = writeln!(md, "- {what}: `{}`", path.display());
        }
    }
    md
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" — ")
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcomes::TestId;

    #[test]
    fn a_failed_step_shows_its_bundle_and_a_flake_its_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle-default");
        let steps = [
            certctl_harness::junit::StepRecord { name: "install".into(), elapsed: Duration::from_secs(30), failure: None },
            certctl_harness::junit::StepRecord {
                name: "securityContext server".into(),
                elapsed: Duration::from_secs(2),
                failure: Some("touch / succeeded | not read-only".into()),
            },
        ];
        certctl_harness::junit::write(dir.path(), "default", &steps, Some(&bundle)).unwrap();
        let rows = scenario_steps(dir.path()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].bundle.as_deref(), Some(bundle.as_path()));

        let phases = Phases::default();
        let verdict = Verdict { failures: vec!["FLAKY b t: passed only on attempt 2".into()], warnings: vec![] };
        let flaky = TestOutcome { id: TestId::new("b", "t"), status: Status::Flaky { failed_attempts: 1 }, time: Duration::ZERO };
        let md = render(&Summary {
            tier: "gate".into(),
            passed: false,
            errors: vec![],
            phases: &phases,
            suites: vec![("e2e".into(), vec![flaky])],
            verdict: &verdict,
            steps: rows,
            sections: vec![],
            artifacts: vec![("bundles".into(), dir.path().to_path_buf())],
        });
        assert!(md.starts_with("## certctl gate: FAILED"), "{md}");
        assert!(md.contains("**fails the run:** FLAKY b t"), "{md}");
        assert!(md.contains("| `b t` | flaky: passed on attempt 2 |"), "{md}");
        assert!(
            md.contains(&format!(
                "| default | securityContext server | FAILED: touch / succeeded \\| not read-only (bundle: {}) | 2.0s | `{}` |",
                bundle.display(),
                bundle.display()
            )),
            "{md}"
        );
        assert!(md.contains("| default | install | ok | 30.0s |  |"), "{md}");
    }

    #[test]
    fn no_artifacts_dir_means_no_steps() {
        assert!(scenario_steps(Path::new("/nonexistent/certctl")).unwrap().is_empty());
    }
}
