//! One run of a tier: the phases of its plan in order (the first failure ends the
//! run; the cluster is released and the report written whatever happened), then the
//! flaky verdict and the summary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use certctl_harness::env::{Shape, TestEnv};

use crate::allowlist::{self, AllowList};
use crate::bench::{self, BenchNumbers, ModeTimes};
use crate::exec::{self, Output};
use crate::nextest::Profile;
use crate::outcomes::{self, Status, TestOutcome};
use crate::phase::{PhaseError, Phases, Progress};
use crate::plan::{self, Step, Tier};
use crate::report;
use crate::source::{self, ImageSource};
use crate::summary::{self, Summary};
use crate::tools::ToolPaths;
use crate::verdict::{self, FlakyPolicy, Verdict};

/// Settings of one run, from the environment (see docs/ci.md).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The workspace root.
    pub workspace: PathBuf,
    /// Which tier.
    pub tier: Tier,
    /// What flaky tests do.
    pub flaky: FlakyPolicy,
    /// Where images come from.
    pub source: ImageSource,
    /// The kind cluster the live tier creates and every test process reuses
    /// (`CERTCTL_CLUSTER`; unset, the harness's default name).
    pub cluster: Option<String>,
    /// A nextest filterset narrowing the live phase (`--filter`).
    pub filter: Option<String>,
}

impl Settings {
    /// Bundles, JUnit, logs and the summary.
    pub fn artifacts(&self) -> PathBuf {
        self.workspace.join("target/e2e-artifacts")
    }

    /// Phase logs (image builds, host bootstrap, smoke).
    pub fn logs(&self) -> PathBuf {
        self.artifacts().join("logs")
    }

    /// Exports what every script, cargo and test process must agree on. Call before
    /// any thread starts.
    pub fn export(&self) {
        let set = |k: &str, v: &str| std::env::set_var(k, v);
        set(source::ENV, self.source.as_str());
        if std::env::var_os("CERTCTL_TOOLS_SOURCE").is_none() {
            set("CERTCTL_TOOLS_SOURCE", self.source.default_tools_source());
        }
        set("CERTCTL_ARTIFACTS", &self.artifacts().to_string_lossy());
        if let Some(cluster) = &self.cluster {
            set("CERTCTL_CLUSTER", cluster);
            set("CERTCTL_SMOKE_CLUSTER", &format!("{cluster}-smoke"));
        }
        // The images phase ensured them; test processes only read images.env.
        set("CERTCTL_IMAGES", "skip");
    }
}

/// What a run gathered.
#[derive(Default)]
struct State {
    tools: ToolPaths,
    env: Option<&'static TestEnv>,
    suites: Vec<(String, Vec<TestOutcome>)>,
    errors: Vec<String>,
    artifacts: Vec<(String, PathBuf)>,
    bench: Option<Vec<ModeTimes>>,
}

/// Runs the tier; returns whether it passed.
pub fn run(settings: &Settings) -> bool {
    let mut phases = Phases::default();
    let mut state = State::default();
    eprintln!(
        "certctl-ci {}: image source {}, cluster {}, flaky tests {}",
        settings.tier,
        settings.source,
        settings.cluster.as_deref().unwrap_or("(the harness's default)"),
        if settings.flaky == FlakyPolicy::Fail { "fail the run" } else { "are recorded" }
    );
    if let Some(filter) = &settings.filter {
        eprintln!("certctl-ci {}: live tests narrowed to `{filter}`", settings.tier);
    }
    for step in plan::plan(settings.tier) {
        let r = phases.run(step.name(), step.budget(), |p| run_step(step, settings, &mut state, p));
        match r {
            Ok(note) => phases.annotate_last(&note),
            Err(e) => {
                let text = report::error_chain(&*e);
                eprintln!("ERROR in phase {}: {text}", step.name());
                state.errors.push(format!("phase {}: {text}", step.name()));
                break;
            }
        }
    }
    let failed_so_far = !state.errors.is_empty() || any_failed(&state.suites);
    if let Some(env) = state.env {
        let r = phases.run("teardown", Duration::from_secs(300), |p| release_cluster(env, settings, failed_so_far, p));
        let kind_logs = settings.artifacts().join("kind-logs");
        if failed_so_far && kind_logs.is_dir() {
            state.artifacts.push(("kind logs".into(), kind_logs));
        }
        match r {
            Ok(note) => phases.annotate_last(&note),
            Err(e) => state.errors.push(format!("phase teardown: {}", report::error_chain(&*e))),
        }
    }
    let verdict = match AllowList::read(&settings.workspace.join(allowlist::PATH)) {
        Ok(list) => verdict::judge(settings.flaky, &all_outcomes(&state.suites), &list, today()),
        Err(e) => Verdict { failures: vec![report::error_chain(&e)], warnings: vec![] },
    };
    let mut sections = Vec::new();
    if let Some(modes) = state.bench.take() {
        match bench_numbers(&phases, modes) {
            Ok(numbers) => {
                let md = bench::render(&numbers);
                let file = settings.artifacts().join("bench.md");
                report::publish(&md, &file);
                state.artifacts.push(("bench report".into(), file));
                sections.push(md);
            }
            Err(e) => state.errors.push(e),
        }
    }
    let steps = summary::scenario_steps(&settings.artifacts()).unwrap_or_else(|e| {
        state.errors.push(report::error_chain(&e));
        Vec::new()
    });
    let passed = state.errors.is_empty() && !any_failed(&state.suites) && verdict.passed();
    let summary_file = settings.artifacts().join("summary.md");
    let mut artifacts = state.artifacts.clone();
    artifacts.push(("summary".into(), summary_file.clone()));
    let md = summary::render(&Summary {
        tier: settings.tier.to_string(),
        passed,
        errors: state.errors.clone(),
        phases: &phases,
        suites: state.suites.clone(),
        verdict: &verdict,
        steps,
        sections,
        artifacts,
    });
    report::publish(&md, &summary_file);
    eprintln!("phases:\n{}", phases.table());
    let c = outcomes::counts(&all_outcomes(&state.suites));
    // The plain closing line: flaky tests passed (in the end) and are counted as such.
    println!("{}: {} passed, {} failed, {} skipped", settings.tier, c.passed + c.flaky, c.failed, c.skipped);
    passed
}

fn run_step(step: Step, s: &Settings, state: &mut State, p: &Progress) -> Result<String, PhaseError> {
    let ws = &s.workspace;
    let bash = |script: &str| {
        let mut c = Command::new("bash");
        c.arg(ws.join(script)).current_dir(ws);
        c
    };
    let cargo = |args: &[&str]| {
        let mut c = Command::new("cargo");
        c.args(args).current_dir(ws);
        c
    };
    match step {
        Step::Host => {
            let log = s.logs().join("host.log");
            exec::run(&mut bash("ci/host-bootstrap.sh"), &Output::Log(log.clone()), p)?;
            Ok(format!("log {}", log.display()))
        }
        Step::FastTools => {
            let out = exec::capture(bash("ci/tools.sh").args(["helm", "helm4", "nextest", "actionlint", "crds"]), p)?;
            state.tools.extend(ToolPaths::parse(&out));
            Ok(format!("nextest {}", state.tools.require("NEXTEST")?.display()))
        }
        Step::LiveTools => {
            let out = exec::capture(bash("ci/tools.sh").args(["kind", "kubectl"]), p)?;
            state.tools.extend(ToolPaths::parse(&out));
            Ok(String::new())
        }
        Step::BenchTools => {
            let out = exec::capture(bash("ci/tools.sh").arg("ct"), p)?;
            state.tools.extend(ToolPaths::parse(&out));
            Ok(format!("ct {}", state.tools.require("CT")?.display()))
        }
        Step::Fmt => {
            exec::run(&mut cargo(&["fmt", "--all", "--check"]), &Output::Console, p)?;
            Ok(String::new())
        }
        Step::Clippy => {
            // Every feature: the live tests and the fixture are linted too.
            exec::run(
                &mut cargo(&["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]),
                &Output::Console,
                p,
            )?;
            Ok(String::new())
        }
        Step::Actionlint => {
            let actionlint = state.tools.require("ACTIONLINT")?.clone();
            exec::run(Command::new(actionlint).arg("-no-color").current_dir(ws), &Output::Console, p)?;
            Ok(".github/workflows".into())
        }
        Step::Tests => nextest(Profile::Ci, s, state, p, &[], None),
        Step::Doctests => {
            exec::run(&mut cargo(&["test", "--workspace", "--doc"]), &Output::Console, p)?;
            Ok(String::new())
        }
        Step::Images => {
            let log = s.logs().join("images.log");
            state.artifacts.push(("image-build log".into(), log.clone()));
            exec::run(&mut bash("ci/offline/ensure.sh"), &Output::Log(log), p)?;
            Ok(s.source.images_note().into())
        }
        Step::Smoke => {
            let log = s.logs().join("smoke.log");
            state.artifacts.push(("smoke log".into(), log.clone()));
            let ran = exec::run(&mut bash("ci/smoke-cluster.sh"), &Output::Log(log.clone()), p);
            // Written by the script on failure only (its cluster is gone afterwards).
            let kind_logs = s.artifacts().join("kind-logs-smoke");
            if ran.is_err() && kind_logs.is_dir() {
                state.artifacts.push(("smoke cluster's kind logs".into(), kind_logs));
            }
            ran?;
            Ok(format!("log {}", log.display()))
        }
        Step::Cluster => {
            if s.tier == Tier::Bench {
                // Its creation is measured: the bench's own cluster is made anew.
                let name = s.cluster.as_deref().ok_or("the bench tier names its cluster")?;
                let kind = state.tools.require("KIND")?.clone();
                p.note(&format!("deleting an earlier {name}, if any"));
                exec::run(
                    Command::new(kind).args(["delete", "cluster", "--name", name]),
                    &Output::Log(s.logs().join("bench-cluster.log")),
                    p,
                )?;
            }
            p.note("creating (or reusing) the kind cluster and loading images");
            let env = TestEnv::shared(Shape::default())?;
            state.env = Some(env);
            Ok(format!("{} ({:?})", env.cluster.name, env.cluster.origin))
        }
        Step::Bench => {
            let ct = state.tools.require("CT")?.clone();
            let report = s.artifacts().join("bench.json");
            let _ = std::fs::remove_file(&report);
            let note = nextest(Profile::Bench, s, state, p, &[("CERTCTL_CT", ct.as_path())], None)?;
            state.bench = Some(bench::read_modes(&report)?);
            Ok(note)
        }
        Step::Live => {
            clear_scenario_junit(&s.artifacts());
            state.artifacts.push(("bundles and step-level JUnit".into(), s.artifacts()));
            nextest(Profile::E2e, s, state, p, &[], s.filter.as_deref())
        }
    }
}

/// Runs a nextest profile (narrowed by `filter`, a filterset), then reads its JUnit
/// report (also after failures, so the summary names what failed).
fn nextest(
    profile: Profile,
    s: &Settings,
    state: &mut State,
    p: &Progress,
    envs: &[(&str, &Path)],
    filter: Option<&str>,
) -> Result<String, PhaseError> {
    let nextest = state.tools.require("NEXTEST")?.clone();
    let junit = profile.junit(&s.workspace);
    let _ = std::fs::remove_file(&junit);
    let mut cmd = profile.command(&nextest, &s.workspace);
    if let Some(expr) = filter {
        cmd.args(["-E", expr]);
    }
    // The flaky verdict's own test runs this same nextest on its fixture.
    cmd.env("CERTCTL_NEXTEST", &nextest).envs(envs.iter().copied());
    let ran = exec::run(&mut cmd, &Output::Console, p);
    let read = outcomes::read_report(&junit);
    if let Ok(report) = &read {
        state.suites.push((profile.name().to_string(), outcomes::from_report(report)));
        state.artifacts.push((format!("nextest JUnit ({})", profile.name()), junit.clone()));
    }
    ran?;
    let outcomes = outcomes::from_report(&read?);
    Ok(format!("{} tests", outcomes.len()))
}

/// Exports the kind logs of a failed run, then keeps or deletes the cluster by the
/// keep policy.
fn release_cluster(env: &TestEnv, s: &Settings, failed: bool, p: &Progress) -> Result<String, PhaseError> {
    if failed && env.cluster.origin != certctl_harness::cluster::Origin::Kubeconfig {
        let dir = s.artifacts().join("kind-logs");
        // Only this run's logs: an earlier failure's would be merged in otherwise.
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new(&env.cluster.kind);
        cmd.args(["export", "logs", "--name", &env.cluster.name]).arg(&dir);
        if let Err(e) = exec::run(&mut cmd, &Output::Log(s.logs().join("kind-export.log")), p) {
            eprintln!("warning: {}", report::error_chain(&e));
        }
    }
    let kept = env.release(failed)?;
    if kept {
        eprintln!("cluster {} kept (CERTCTL_KEEP={}); to inspect it:\n{}", env.cluster.name, env.keep, env.cluster.reproduce_commands());
        Ok(format!("{} kept", env.cluster.name))
    } else {
        Ok(format!("{} deleted", env.cluster.name))
    }
}

/// The bench's numbers: the bare `kind create` the harness timed in this process,
/// the cluster and live phases, and what the bench scenario measured per mode.
fn bench_numbers(phases: &Phases, modes: Vec<ModeTimes>) -> Result<BenchNumbers, String> {
    let phase = |name: &str| {
        phases.records().iter().find(|r| r.name == name).map(|r| r.elapsed).ok_or_else(|| format!("bench: no {name} phase ran"))
    };
    let created = certctl_harness::timing::Timings::global()
        .records()
        .into_iter()
        .find(|r| r.scope == "run" && r.name == "cluster" && r.outcome == certctl_harness::timing::Outcome::Ok)
        .ok_or("bench: the cluster was not created by this run, so its creation was not measured")?;
    Ok(BenchNumbers { cluster_create: created.elapsed, matrix: phase("cluster")? + phase("live")?, modes })
}

fn clear_scenario_junit(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("junit-") && name.ends_with(".xml") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn all_outcomes(suites: &[(String, Vec<TestOutcome>)]) -> Vec<TestOutcome> {
    suites.iter().flat_map(|(_, o)| o.iter().cloned()).collect()
}

fn any_failed(suites: &[(String, Vec<TestOutcome>)]) -> bool {
    suites.iter().flat_map(|(_, o)| o).any(|o| matches!(o.status, Status::Failed(_)))
}

/// Today in UTC, for allow-list expiry.
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// `judge`: the flaky verdict on existing reports; returns whether they pass.
///
/// # Errors
/// When a report or the allow-list cannot be read.
pub fn judge(reports: &[PathBuf], allow_list: &Path, policy: FlakyPolicy) -> Result<bool, PhaseError> {
    let list = AllowList::read(allow_list)?;
    let mut all = Vec::new();
    for r in reports {
        all.extend(outcomes::from_report(&outcomes::read_report(r)?));
    }
    let v = verdict::judge(policy, &all, &list, today());
    for w in &v.warnings {
        eprintln!("warning: {w}");
    }
    for f in &v.failures {
        eprintln!("error: {f}");
    }
    let failed: Vec<&TestOutcome> = all.iter().filter(|o| matches!(o.status, Status::Failed(_))).collect();
    for o in &failed {
        eprintln!("error: FAILED {}", o.id);
    }
    let c = outcomes::counts(&all);
    println!("judge: {} passed, {} failed, {} skipped", c.passed + c.flaky, c.failed, c.skipped);
    Ok(v.passed() && failed.is_empty())
}
