//! The score: a Markdown table (mutant | re-introduces | killed by | time) and JUnit, one
//! testcase per mutant, a survivor a failure.

use std::path::{Path, PathBuf};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::run::{MutantResult, Run, Verdict};

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Score {
    /// Mutants that ran (killed + survived + not applied + errors).
    pub ran: usize,
    /// Killed by a test.
    pub killed: usize,
    /// No expected killer failed.
    pub survived: usize,
    /// Target text moved.
    pub not_applied: usize,
    /// Failed for another reason.
    pub errors: usize,
    /// No killer in the selected tiers.
    pub not_run: usize,
}

impl Score {
    /// Counts `run`'s verdicts.
    pub fn of(run: &Run) -> Self {
        let mut s = Score::default();
        for r in &run.results {
            match r.verdict {
                Verdict::Killed { .. } => s.killed += 1,
                Verdict::Survived { .. } => s.survived += 1,
                Verdict::NotApplied(_) => s.not_applied += 1,
                Verdict::Error(_) => s.errors += 1,
                Verdict::NotRun(_) => s.not_run += 1,
            }
        }
        s.ran = s.killed + s.survived + s.not_applied + s.errors;
        s
    }

    /// `killed/ran (percent)`.
    pub fn summary(&self) -> String {
        let pct = if self.ran == 0 { 0.0 } else { 100.0 * self.killed as f64 / self.ran as f64 };
        format!(
            "{}/{} killed ({pct:.0}%), {} survived, {} did not apply, {} errors, {} not run in the selected tiers",
            self.killed, self.ran, self.survived, self.not_applied, self.errors, self.not_run
        )
    }
}

/// One line of what became of a mutant.
pub fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Killed { by, tests, steps, missed } => {
            let tests = tests.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ");
            let mut text = format!("killed by {} [{}] ({tests})", by.test, by.tier);
            if !steps.is_empty() {
                text.push_str(&format!(", step {}", steps.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")));
            }
            if !missed.is_empty() {
                text.push_str(&format!("; passed first: {}", missed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")));
            }
            text
        }
        Verdict::Survived { tried } => {
            format!("SURVIVED: passed {}", tried.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        }
        Verdict::NotApplied(why) => format!("DID NOT APPLY: {why}"),
        Verdict::NotRun(tier) => format!("not run (its killers are in tier {tier})"),
        Verdict::Error(why) => format!("ERROR: {why}"),
    }
}

/// The Markdown report.
pub fn markdown(run: &Run) -> String {
    let mut md = format!(
        "# Mutation score\n\n{}\n\nTotal {:.1}s (builds and controls {:.1}s).\n\n| mutant | re-introduces | tier | killed by | time |\n|---|---|---|---|---|\n",
        Score::of(run).summary(),
        run.total.as_secs_f64(),
        run.setup.as_secs_f64()
    );
    for r in &run.results {
        md.push_str(&format!(
            "| `{}` | {} | {} | {} | {:.1}s |\n",
            r.mutant.id,
            cell(r.mutant.reintroduces),
            r.mutant.tier(),
            cell(&killed_by(r)),
            r.elapsed.as_secs_f64()
        ));
    }
    md
}

fn killed_by(r: &MutantResult) -> String {
    match &r.verdict {
        Verdict::Killed { by, tests, steps, .. } => {
            let mut text = format!("{} `{}`", by.tier, by.test);
            let names: Vec<String> = tests.iter().map(|(t, _)| format!("`{t}`")).collect();
            text.push_str(&format!(": {}", names.join(", ")));
            if !steps.is_empty() {
                text.push_str(&format!(" — step {}", steps.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")));
            }
            text
        }
        other => format!("**{}**", verdict_text(other)),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The JUnit report: suite `mutants`, one testcase per mutant.
pub fn junit(run: &Run) -> String {
    let mut suite = TestSuite::new("mutants");
    for r in &run.results {
        let text = verdict_text(&r.verdict);
        let status = match &r.verdict {
            Verdict::Killed { .. } => TestCaseStatus::success(),
            Verdict::NotRun(_) => {
                let mut st = TestCaseStatus::skipped();
                st.set_message(text);
                st
            }
            v => {
                let kind = if matches!(v, Verdict::Survived { .. }) { NonSuccessKind::Failure } else { NonSuccessKind::Error };
                let mut st = TestCaseStatus::non_success(kind);
                st.set_message(text);
                st.set_description(format!("re-introduces: {}", r.mutant.reintroduces));
                st
            }
        };
        let mut case = TestCase::new(r.mutant.id, status);
        case.set_classname(format!("mutants.{}", r.mutant.tier()));
        case.set_time(r.elapsed);
        suite.add_test_case(case);
    }
    suite.set_time(run.total);
    let mut report = Report::new("certctl-mutants");
    report.add_test_suite(suite);
    report.to_string().unwrap_or_else(|e| format!("<!-- junit serialization failed: {e} -->"))
}

/// Writes `mutants.md` and `junit-mutants.xml` into `dir`; their paths.
///
/// # Errors
/// File system errors.
pub fn write(run: &Run, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let (md, xml) = (dir.join("mutants.md"), dir.join("junit-mutants.xml"));
    std::fs::write(&md, markdown(run))?;
    std::fs::write(&xml, junit(run))?;
    Ok((md, xml))
}
