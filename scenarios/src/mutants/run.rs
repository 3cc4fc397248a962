//! The runner: every killer first passes on an unmutated copy (a control), then each
//! mutant is applied to its own scratch copy and its killers run, cheapest first, until
//! one fails.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::libtest::{self, Binaries, LibtestError, Outcome, Target};
use super::scratch::{Scratch, ScratchError};
use super::steps::failed_steps_of;
use super::{Killer, Mutant, Tier};
use crate::modes::CHART_DIR_ENV;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workspace whose chart, server and tests are mutated and run.
    pub workspace: PathBuf,
    /// Tiers whose killers may run; a mutant with none of them is reported as not run.
    pub tiers: BTreeSet<Tier>,
    /// Mutant ids to run; empty runs the whole catalogue.
    pub only: Vec<String>,
    /// Where live killers write their artifacts (one directory per mutant).
    pub out: PathBuf,
}

/// Why the run as a whole could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An id the catalogue does not hold.
    #[error("no mutant {0} in the catalogue (`--list` names them)")]
    UnknownMutant(String),
    /// A test binary could not be built or run.
    #[error("test binary")]
    Libtest(#[from] LibtestError),
    /// A scratch copy could not be made.
    #[error("scratch copy")]
    Scratch(#[from] ScratchError),
    /// A killer fails without any mutant: its kills would prove nothing.
    #[error("control: {killer} fails on the unmutated copy ({failed}); fix the suite before scoring it")]
    ControlFailed {
        /// The killer.
        killer: String,
        /// What failed.
        failed: String,
    },
}

/// What became of one mutant.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A killer failed.
    Killed {
        /// The killer that failed.
        by: Killer,
        /// Its failed tests, each with the first line of its panic.
        tests: Vec<(String, String)>,
        /// For a live killer, the failed steps of its scenario.
        steps: Vec<String>,
        /// Killers tried before it that passed on the mutant.
        missed: Vec<Killer>,
    },
    /// Every killer tried passed on the mutant: a gap in the proof.
    Survived {
        /// The killers that passed.
        tried: Vec<Killer>,
    },
    /// Its target text moved: the mutant must follow the file.
    NotApplied(String),
    /// No killer in the selected tiers.
    NotRun(Tier),
    /// Something else went wrong while running it.
    Error(String),
}

/// One mutant's verdict and wall time.
#[derive(Debug, Clone)]
pub struct MutantResult {
    /// The mutant.
    pub mutant: Mutant,
    /// What became of it.
    pub verdict: Verdict,
    /// Apply and run time.
    pub elapsed: Duration,
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Run {
    /// In catalogue order.
    pub results: Vec<MutantResult>,
    /// Time spent on builds and controls.
    pub setup: Duration,
    /// Wall time of the whole run.
    pub total: Duration,
}

impl Run {
    /// Whether every mutant that ran was killed and every selected one ran.
    pub fn all_killed(&self) -> bool {
        self.results.iter().all(|r| matches!(r.verdict, Verdict::Killed { .. } | Verdict::NotRun(_)))
    }
}

/// Runs the selected mutants of `catalogue`.
///
/// # Errors
/// [`RunError`] when the run cannot be scored at all (unknown id, build failure, a
/// failing control); a mutant's own trouble is its [`Verdict`].
pub fn run(opts: &Options, catalogue: &[Mutant]) -> Result<Run, RunError> {
    let started = Instant::now();
    let selected = select(opts, catalogue)?;
    let killers: Vec<&Killer> = selected.iter().flat_map(|m| m.killers.iter()).filter(|k| opts.tiers.contains(&k.tier)).collect();
    let targets: Vec<Target> = killers.iter().map(|k| Target::from(*k)).collect();
    let binaries = Binaries::build(&opts.workspace, &targets)?;
    controls(opts, &binaries, &killers)?;
    let setup = started.elapsed();
    let mut results = Vec::new();
    for mutant in selected {
        let t = Instant::now();
        let verdict = judge(opts, &binaries, mutant);
        let result = MutantResult { mutant: mutant.clone(), verdict, elapsed: t.elapsed() };
        eprintln!("mutant {}: {} ({:.1}s)", mutant.id, super::report::verdict_text(&result.verdict), result.elapsed.as_secs_f64());
        results.push(result);
    }
    Ok(Run { results, setup, total: started.elapsed() })
}

fn select<'a>(opts: &Options, catalogue: &'a [Mutant]) -> Result<Vec<&'a Mutant>, RunError> {
    if opts.only.is_empty() {
        return Ok(catalogue.iter().collect());
    }
    opts.only.iter().map(|id| catalogue.iter().find(|m| m.id == id).ok_or_else(|| RunError::UnknownMutant(id.clone()))).collect()
}

/// Each distinct killer passes on an unmutated chart copy.
fn controls(opts: &Options, binaries: &Binaries, killers: &[&Killer]) -> Result<(), RunError> {
    let clean = Scratch::chart(&opts.workspace)?;
    let mut seen = BTreeSet::new();
    for killer in killers {
        if !seen.insert((killer.package, killer.test, killer.filter)) {
            continue;
        }
        let artifacts = opts.out.join("control").join(killer.test);
        let outcome = run_killer(binaries, killer, (&opts.workspace, &opts.workspace), &chart_env(&clean, &artifacts, killer))?;
        if outcome.failed_run() {
            let failed = outcome.failed.iter().map(|(t, why)| format!("{t}: {why}")).collect::<Vec<_>>().join("; ");
            let failed = if failed.is_empty() { format!("exit {}", outcome.status) } else { failed };
            return Err(RunError::ControlFailed { killer: killer.to_string(), failed });
        }
    }
    Ok(())
}

/// Applies `mutant` to its own scratch copy and tries its killers.
fn judge(opts: &Options, binaries: &Binaries, mutant: &Mutant) -> Verdict {
    let killers: Vec<&Killer> = mutant.killers.iter().filter(|k| opts.tiers.contains(&k.tier)).collect();
    if killers.is_empty() {
        return Verdict::NotRun(mutant.tier());
    }
    let prepared = if mutant.chart_only() { Scratch::chart(&opts.workspace) } else { Scratch::workspace(&opts.workspace) };
    let scratch = match prepared {
        Ok(s) => s,
        Err(e) => return Verdict::Error(e.to_string()),
    };
    match scratch.apply(mutant) {
        Ok(()) => {}
        Err(e @ ScratchError::NotApplied { .. }) => return Verdict::NotApplied(e.to_string()),
        Err(e) => return Verdict::Error(e.to_string()),
    }
    // A mutated server is rebuilt from the copy; the suite's own test binaries run
    // against it (CERTCTL_TEST_SERVER_BIN; live: the images the copy's ensure.sh builds).
    let mut env = Vec::new();
    if !mutant.chart_only() {
        let target_dir = mutant_target_dir();
        if killers.iter().any(|k| k.tier == Tier::Server) {
            match libtest::build_bin(scratch.root(), "certctl-server", "certctl-server", &target_dir) {
                Ok(bin) => env.push(("CERTCTL_TEST_SERVER_BIN", bin.into_os_string())),
                Err(e) => return Verdict::Error(format!("building the mutated server: {e}")),
            }
        }
        env.push(("CARGO_TARGET_DIR", target_dir.into_os_string()));
    }
    let root = if mutant.chart_only() { opts.workspace.as_path() } else { scratch.root() };
    let mut missed = Vec::new();
    for killer in killers {
        let artifacts = opts.out.join(mutant.id).join(killer.test);
        let mut env = env.clone();
        env.extend(if mutant.chart_only() { chart_env(&scratch, &artifacts, killer) } else { artifacts_env(&artifacts) });
        let _images = (!mutant.chart_only() && killer.tier == Tier::Live).then(ImagesEnvGuard::save);
        let outcome = match run_killer(binaries, killer, (&opts.workspace, root), &env) {
            Ok(o) => o,
            Err(e) => return Verdict::Error(e.to_string()),
        };
        if outcome.failed_run() {
            let steps = killer.scenario.and_then(|s| failed_steps_of(&artifacts, s)).unwrap_or_default();
            return Verdict::Killed { by: killer.clone(), tests: failed_tests(&outcome), steps, missed };
        }
        missed.push(killer.clone());
    }
    Verdict::Survived { tried: missed }
}

/// Where a mutated server is built: never the shared target directory, whose artifacts
/// every checkout reuses when their sources look older.
fn mutant_target_dir() -> PathBuf {
    certctl_harness::tools::cache_dir().join("cargo-target-mutants")
}

/// The image set a mutated workspace's live run writes (its server image) is the one
/// every other run reads: put back what was there when the run ends.
struct ImagesEnvGuard {
    path: PathBuf,
    saved: Option<Vec<u8>>,
}

impl ImagesEnvGuard {
    fn save() -> Self {
        let path = certctl_harness::images::images_env_path();
        let saved = std::fs::read(&path).ok();
        Self { path, saved }
    }
}

impl Drop for ImagesEnvGuard {
    fn drop(&mut self) {
        let restored = match &self.saved {
            Some(bytes) => std::fs::write(&self.path, bytes),
            None => std::fs::remove_file(&self.path).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }),
        };
        if let Err(e) = restored {
            eprintln!("could not restore {} after a mutated server's live run: {e}; run ci/offline/ensure.sh", self.path.display());
        }
    }
}

/// Runs a killer's binary; `(built_in, run_in)`: the workspace it was built in and the
/// one it runs against (a scratch workspace for a mutated server).
fn run_killer(
    binaries: &Binaries,
    killer: &Killer,
    (built_in, run_in): (&Path, &Path),
    env: &[(&str, OsString)],
) -> Result<Outcome, LibtestError> {
    let target = Target::from(killer);
    let built =
        binaries.get(&target).ok_or_else(|| LibtestError::NoExecutable { package: killer.package.into(), test: killer.test.into() })?;
    let package_dir = built.package_dir.strip_prefix(built_in).map_or_else(|_| built.package_dir.clone(), |rel| run_in.join(rel));
    libtest::run(&built.exe, &package_dir, killer.filter, env)
}

/// A chart copy for the tests to read, and where a live killer's reports go.
fn chart_env(scratch: &Scratch, artifacts: &Path, killer: &Killer) -> Vec<(&'static str, OsString)> {
    let mut env = vec![(CHART_DIR_ENV, scratch.chart_dir().into_os_string())];
    if killer.tier == Tier::Live {
        env.extend(artifacts_env(artifacts));
    }
    env
}

fn artifacts_env(artifacts: &Path) -> Vec<(&'static str, OsString)> {
    vec![("CERTCTL_ARTIFACTS", artifacts.as_os_str().to_owned())]
}

/// The failed tests, or the exit status when the binary failed without naming one.
fn failed_tests(outcome: &Outcome) -> Vec<(String, String)> {
    if !outcome.failed.is_empty() {
        return outcome.failed.clone();
    }
    let last = outcome.output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    vec![(format!("(exit {})", outcome.status), last.chars().take(200).collect())]
}
