//! A scenario: one namespace in the shared cluster and a body of named steps
//! that read like the promise they prove.
//!
//! - [`Scenario::require`]: a step the rest depends on; its failure ends the
//!   body (`?`).
//! - [`Scenario::check`]: a step whose failure is recorded; the body goes on.
//! - Everything the scenario creates besides its release — extra namespaces,
//!   probe pods, CRDs, containers beside the cluster — is registered with it
//!   ([`Scenario::namespace`], [`Scenario::probe_pod`], [`Scenario::own`]), so
//!   the keep policy keeps or deletes it and the bundle collects it.
//! - The end always runs, whatever the body did (an error, a panic): JUnit
//!   and the phase table; on failure the diagnostics bundle, the keep
//!   decision and the commands to reproduce.
//!
//! Steps take `&self`, so a step's future borrows the scenario and whatever
//! else the body holds: no clones before each step.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, PostParams};

use crate::diagnostics::Collect;
use crate::env::{Shape, TestEnv};
use crate::helm::Helm;
use crate::junit::{self, StepRecord};
use crate::names::ReleaseNames;
use crate::probe::{ProbePod, ProbeTool};
use crate::report::{chain, indent};
use crate::timing::{Outcome, Timings};
use crate::wait::Deadline;

pub use crate::wait::BoxError;

/// What a step returns.
pub type StepResult<T = ()> = Result<T, BoxError>;

/// Returns early from a step with a message when a condition does not hold.
///
/// # Example
/// ```
/// fn check(n: u32) -> certctl_harness::scenario::StepResult {
///     certctl_harness::ensure!(n == 0, "CapEff should be 0, was {n:x}");
///     Ok(())
/// }
/// assert_eq!(check(5).unwrap_err().to_string(), "CapEff should be 0, was 5");
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+).into());
        }
    };
}

/// A required step failed: the scenario body stops here (its end still runs).
///
/// # Example
/// ```
/// let f = certctl_harness::scenario::Stopped { step: "install".into() };
/// assert_eq!(f.to_string(), "required step `install` failed (see the scenario report)");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("required step `{step}` failed (see the scenario report)")]
pub struct Stopped {
    /// The step.
    pub step: String,
}

/// What a scenario body returns: `Err` only through a failed [`Scenario::require`].
pub type Flow = Result<(), Stopped>;

/// A finished scenario that failed: the text names every failed step, the
/// bundle and how to look at the kept cluster.
#[derive(Clone, thiserror::Error)]
#[error("{text}")]
pub struct ScenarioFailure {
    /// Failed steps and their messages.
    pub failures: Vec<(String, String)>,
    /// The diagnostics bundle.
    pub bundle: PathBuf,
    text: String,
}

impl fmt::Debug for ScenarioFailure {
    // `unwrap()` prints Debug: make it the readable report.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Something beside the cluster that a scenario owns (a container on kind's
/// network): collected into the bundle, and at the end either kept (the keep
/// policy) or released — dropping the last handle removes it.
pub trait Owned: Send + Sync {
    /// What it is, for the report ("docker container x-external-db").
    fn describe(&self) -> String;
    /// Writes what explains it (logs, state) into `dir`.
    fn collect<'a>(&'a self, dir: &'a Path) -> LocalBoxFuture<'a, Result<(), BoxError>>;
    /// Keeps it past its handle's drop; returns the command that removes it later.
    fn keep(&self) -> String;
}

/// What a scenario registered besides its main namespace.
enum Registered {
    Namespace(String),
    Pod { namespace: String, name: String },
    Crd(String),
    Owned(Arc<dyn Owned>),
}

#[derive(Default)]
struct State {
    steps: Vec<StepRecord>,
    releases: Vec<ReleaseNames>,
    registered: Vec<Registered>,
}

/// One scenario in the shared cluster.
///
/// # Example
/// ```no_run
/// use certctl_harness::scenario::Scenario;
/// # async fn f() {
/// Scenario::run("smoke", async |s| {
///     let ns = s.require("namespace exists", async { Ok(s.namespace.clone()) }).await?;
///     s.check("namespace is named after the scenario", async { certctl_harness::ensure!(ns == "e2e-smoke", "{ns}"); Ok(()) }).await;
///     Ok(())
/// })
/// .await
/// .unwrap();
/// # }
/// ```
pub struct Scenario {
    /// Scenario name (JUnit suite, artifacts subdirectory, timing scope).
    pub name: String,
    /// Its namespace, `e2e-<name>`.
    pub namespace: String,
    /// The shared environment.
    pub env: &'static TestEnv,
    /// A client for this test's runtime.
    pub client: kube::Client,
    /// helm bound to the cluster.
    pub helm: Helm,
    state: Mutex<State>,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario").field("name", &self.name).field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl Scenario {
    /// Runs `body` as scenario `name` in the shared environment and ends it.
    ///
    /// # Errors
    /// [`ScenarioFailure`] naming every failed step, the bundle and, when the
    /// cluster is kept, how to inspect it. A setup failure (environment,
    /// namespace) is reported the same way.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f() {
    /// certctl_harness::scenario::Scenario::run("default", async |s| {
    ///     s.require("install", async { Ok(()) }).await?;
    ///     Ok(())
    /// }).await.unwrap(); // panics with the full report on failure
    /// # }
    /// ```
    pub async fn run(name: &str, body: impl AsyncFnOnce(&Scenario) -> Flow) -> Result<(), ScenarioFailure> {
        Self::run_inner(name, false, body).await
    }

    /// Runs a scenario meant to fail (a deliberately broken chart): its
    /// failure still writes the bundle and returns [`ScenarioFailure`], but
    /// keeps nothing. Success is an error: the proof could not fail.
    ///
    /// # Errors
    /// The scenario's failure — the expected outcome.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f() {
    /// let failure = certctl_harness::scenario::Scenario::run_expecting_failure("broken", async |s| {
    ///     s.check("a promise the broken chart breaks", async { Err::<(), _>("broken".into()) }).await;
    ///     Ok(())
    /// }).await;
    /// assert!(failure.bundle.join("README.txt").exists());
    /// # }
    /// ```
    pub async fn run_expecting_failure(name: &str, body: impl AsyncFnOnce(&Scenario) -> Flow) -> ScenarioFailure {
        match Self::run_inner(name, true, body).await {
            Err(failure) => failure,
            Ok(()) => ScenarioFailure {
                failures: Vec::new(),
                bundle: PathBuf::new(),
                text: format!("scenario {name} was expected to fail and passed every step: its checks cannot fail"),
            },
        }
    }

    async fn run_inner(name: &str, expect_failure: bool, body: impl AsyncFnOnce(&Scenario) -> Flow) -> Result<(), ScenarioFailure> {
        let setup_failed = |text: String| ScenarioFailure { failures: vec![("setup".into(), text.clone())], bundle: PathBuf::new(), text };
        let env = TestEnv::shared_async(Shape::default()).await.map_err(|e| setup_failed(chain(&e)))?;
        let s =
            Self::start(env, name).await.map_err(|e| setup_failed(format!("scenario {name} could not start: {}", chain(e.as_ref()))))?;
        let outcome = AssertUnwindSafe(body(&s)).catch_unwind().await;
        if let Err(panic) = outcome {
            // A panic outside any step is a failure of the scenario itself.
            s.record("scenario body", std::time::Duration::ZERO, Some(format!("panicked: {}", panic_text(panic.as_ref()))));
        }
        s.finish(expect_failure).await
    }

    /// Creates the scenario's namespace, after deleting every namespace a
    /// kept earlier run of it left (its own and the extra ones, all labelled
    /// with the scenario): a rerun starts from nothing.
    async fn start(env: &'static TestEnv, name: &str) -> Result<Self, BoxError> {
        let client = env.client().await?;
        let namespace = format!("e2e-{name}");
        let nss: Api<Namespace> = Api::all(client.clone());
        let labelled = nss.list(&kube::api::ListParams::default().labels(&format!("certctl-e2e/scenario={name}"))).await?;
        let mut leftovers: Vec<String> = labelled.items.into_iter().filter_map(|n| n.metadata.name).collect();
        if !leftovers.contains(&namespace) && nss.get_opt(&namespace).await?.is_some() {
            leftovers.push(namespace.clone());
        }
        for ns in &leftovers {
            eprintln!("scenario {name}: deleting leftover namespace {ns}");
            let _ = nss.delete(ns, &DeleteParams::default()).await;
        }
        for ns in &leftovers {
            crate::pods::wait_deleted(&nss, ns, Deadline::secs(180)).await?;
        }
        nss.create(&PostParams::default(), &namespace_object(&namespace, name)).await?;
        Ok(Self { name: name.to_string(), namespace, env, helm: env.helm(), client, state: Mutex::new(State::default()) })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a step the rest of the scenario depends on: timed and recorded;
    /// an `Err` or a panic inside fails it.
    ///
    /// # Errors
    /// [`Stopped`]: propagate it with `?` to end the body.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(s: &certctl_harness::scenario::Scenario) -> certctl_harness::scenario::Flow {
    /// let n = s.require("count", async { Ok(2 + 2) }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn require<T>(&self, name: &str, step: impl Future<Output = StepResult<T>>) -> Result<T, Stopped> {
        self.step(name, step).await.ok_or_else(|| Stopped { step: name.to_string() })
    }

    /// Runs a step whose failure is recorded while the scenario goes on.
    /// Returns the step's value when it passed.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(s: &certctl_harness::scenario::Scenario) {
    /// s.check("a check that panics is recorded, not fatal", async { assert_eq!(1, 2); Ok(()) }).await;
    /// # }
    /// ```
    pub async fn check<T>(&self, name: &str, step: impl Future<Output = StepResult<T>>) -> Option<T> {
        self.step(name, step).await
    }

    async fn step<T>(&self, name: &str, step: impl Future<Output = StepResult<T>>) -> Option<T> {
        eprintln!("[{}] step {name} ...", self.name);
        let start = Instant::now();
        let result = AssertUnwindSafe(step).catch_unwind().await;
        let (value, failure) = match result {
            Ok(Ok(v)) => (Some(v), None),
            Ok(Err(e)) => (None, Some(chain(e.as_ref()))),
            Err(panic) => (None, Some(format!("panicked: {}", panic_text(panic.as_ref())))),
        };
        self.record(name, start.elapsed(), failure);
        value
    }

    fn record(&self, name: &str, elapsed: std::time::Duration, failure: Option<String>) {
        let outcome = if failure.is_some() { Outcome::Failed } else { Outcome::Ok };
        Timings::global().record(&self.name, name, elapsed, outcome);
        match &failure {
            None => eprintln!("[{}] step {name}: ok ({:.1}s)", self.name, elapsed.as_secs_f64()),
            Some(f) => eprintln!("[{}] step {name}: FAILED ({:.1}s)\n{}", self.name, elapsed.as_secs_f64(), indent(f)),
        }
        self.state().steps.push(StepRecord { name: name.to_string(), elapsed, failure });
    }

    /// Whether any step failed so far.
    pub fn failed(&self) -> bool {
        self.state().steps.iter().any(|s| s.failure.is_some())
    }

    /// The names of release `release` in the scenario's namespace, recorded
    /// so the bundle collects its values and manifest and the end uninstalls it.
    ///
    /// # Example
    /// ```no_run
    /// # fn f(s: &certctl_harness::scenario::Scenario) {
    /// let names = s.release("c");
    /// assert_eq!(names.server(), "c-certctl-server");
    /// # }
    /// ```
    pub fn release(&self, release: &str) -> ReleaseNames {
        let names = ReleaseNames::new(release, &self.namespace);
        let mut state = self.state();
        if !state.releases.contains(&names) {
            state.releases.push(names.clone());
        }
        names
    }

    /// Creates namespace `<namespace>-<suffix>`, owned by this scenario
    /// (kept or deleted with it, collected into the bundle); returns its name.
    ///
    /// # Errors
    /// API errors (an existing namespace of that name is reused).
    pub async fn namespace(&self, suffix: &str) -> StepResult<String> {
        let name = format!("{}-{suffix}", self.namespace);
        self.state().registered.push(Registered::Namespace(name.clone()));
        let nss: Api<Namespace> = Api::all(self.client.clone());
        match nss.create(&PostParams::default(), &namespace_object(&name, &self.name)).await {
            Ok(_) => Ok(name),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(name),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a probe pod owned by this scenario (see [`ProbePod::start`]).
    ///
    /// # Errors
    /// The probe pod's creation or start.
    pub async fn probe_pod(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        image: &str,
        tool: ProbeTool,
    ) -> StepResult<ProbePod> {
        self.state().registered.push(Registered::Pod { namespace: namespace.to_string(), name: name.to_string() });
        Ok(ProbePod::start(self.client.clone(), namespace, name, labels, image, tool).await?)
    }

    /// Records a CRD this scenario installed (deleted with it unless kept).
    pub fn crd(&self, name: &str) {
        self.state().registered.push(Registered::Crd(name.to_string()));
    }

    /// Registers something beside the cluster; returns the shared handle.
    pub fn own<T: Owned + 'static>(&self, thing: T) -> Arc<T> {
        let thing = Arc::new(thing);
        self.state().registered.push(Registered::Owned(thing.clone()));
        thing
    }

    /// The end: JUnit and the phase table always; on failure the bundle,
    /// the keep decision and the reproduce commands; what is not kept is
    /// removed.
    async fn finish(self, expect_failure: bool) -> Result<(), ScenarioFailure> {
        let State { steps, releases, registered } = std::mem::take(&mut *self.state());
        let failed = steps.iter().any(|s| s.failure.is_some());
        let dir = self.env.artifacts.join(&self.name);
        let bundle = dir.join("bundle");
        if failed {
            let reason: Vec<String> = steps.iter().filter_map(|s| s.failure.as_ref().map(|f| format!("step `{}`: {f}", s.name))).collect();
            self.collect(&bundle, &releases, &registered, &reason.join("\n\n")).await;
        }
        let junit = junit::write(&self.env.artifacts, &self.name, &steps, failed.then_some(bundle.as_path()));
        eprintln!("\n=== e2e {} summary: {} ===", self.name, if failed { "FAILED" } else { "passed" });
        for s in &steps {
            eprintln!("  {:<64} {}", s.name, if s.failure.is_some() { "FAILED" } else { "ok" });
        }
        eprintln!("per-phase wall time:\n{}", Timings::global().table(Some(&self.name)));
        match &junit {
            Ok(p) => eprintln!("junit: {}", p.display()),
            Err(e) => eprintln!("junit could not be written: {e}"),
        }

        let keep = if expect_failure { false } else { self.env.keep.keeps(failed) };
        let kept_notes = if keep {
            keep_all(&registered)
        } else {
            self.remove(&releases, registered).await;
            Vec::new()
        };
        if !failed {
            return Ok(());
        }
        let cluster_kept = !expect_failure && self.env.mark_failed();
        let failures: Vec<(String, String)> = steps.iter().filter_map(|s| s.failure.clone().map(|f| (s.name.clone(), f))).collect();
        let mut text = format!("scenario {} failed in {} step(s):\n", self.name, failures.len());
        for (step, f) in &failures {
            text.push_str(&format!("- {step}:\n{}\n", indent(f)));
        }
        text.push_str(&format!("diagnostics bundle: {}\n", bundle.display()));
        if cluster_kept {
            let release = releases.first().map(|r| r.release.clone()).unwrap_or_default();
            text.push_str(&format!(
                "cluster kept (CERTCTL_KEEP={}); reproduce and inspect:\n{}  kubectl -n {ns} get all,events\n  {helm} --kubeconfig {kc} -n {ns} get values {release}\n  CERTCTL_CLUSTER={name} cargo test -p certctl-scenarios --features e2e {rerun}\n",
                self.env.keep,
                self.env.cluster.reproduce_commands(),
                ns = self.namespace,
                helm = self.env.tools.helm.path.display(),
                kc = self.env.cluster.kubeconfig.display(),
                name = self.env.cluster.name,
                rerun = rerun_filter(),
            ));
            for note in kept_notes {
                text.push_str(&format!("  {note}\n"));
            }
        } else {
            text.push_str(&format!(
                "cluster not kept (CERTCTL_KEEP={}); rerun with CERTCTL_KEEP=on-failure to inspect it\n",
                self.env.keep
            ));
        }
        Err(ScenarioFailure { failures, bundle, text })
    }

    /// The bundle: the main namespace with its releases, every extra
    /// namespace under `namespaces/`, every owned thing under `owned/`.
    async fn collect(&self, bundle: &Path, releases: &[ReleaseNames], registered: &[Registered], reason: &str) {
        let main = Collect { namespace: self.namespace.clone(), releases: releases.iter().map(|r| r.release.clone()).collect() };
        main.write(&self.client, Some(&self.helm), bundle, reason).await;
        let mut errors = Vec::new();
        for (i, r) in registered.iter().enumerate() {
            match r {
                Registered::Namespace(ns) => {
                    let extra = Collect { namespace: ns.clone(), releases: Vec::new() };
                    extra.write(&self.client, None, &bundle.join("namespaces").join(ns), reason).await;
                }
                Registered::Owned(thing) => {
                    let dir = bundle.join("owned").join(i.to_string());
                    let _ = std::fs::create_dir_all(&dir);
                    let _ = std::fs::write(dir.join("what.txt"), thing.describe());
                    if let Err(e) = thing.collect(&dir).await {
                        errors.push(format!("{}: {}", thing.describe(), chain(e.as_ref())));
                    }
                }
                Registered::Pod { .. } | Registered::Crd(_) => {}
            }
        }
        if !errors.is_empty() {
            let _ = std::fs::write(bundle.join("owned-collection-errors.txt"), errors.join("\n"));
        }
    }

    /// Uninstalls the releases and deletes what was registered, newest first;
    /// failures to clean up are printed, never fatal.
    async fn remove(&self, releases: &[ReleaseNames], registered: Vec<Registered>) {
        for r in releases {
            if let Err(e) = self.helm.uninstall(&r.release, &r.namespace).await {
                eprintln!("scenario {}: uninstall {}: {}", self.name, r.release, chain(&e));
            }
        }
        let nss: Api<Namespace> = Api::all(self.client.clone());
        for r in registered.into_iter().rev() {
            let result = match &r {
                Registered::Namespace(ns) => nss.delete(ns, &DeleteParams::background()).await.map(|_| ()),
                Registered::Pod { namespace, name } => {
                    Api::<Pod>::namespaced(self.client.clone(), namespace).delete(name, &DeleteParams::background()).await.map(|_| ())
                }
                Registered::Crd(name) => {
                    Api::<CustomResourceDefinition>::all(self.client.clone()).delete(name, &DeleteParams::background()).await.map(|_| ())
                }
                Registered::Owned(_) => Ok(()), // dropping the last handle removes it
            };
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => eprintln!("scenario {}: cleanup: {}", self.name, chain(&e)),
            }
        }
        let _ = nss.delete(&self.namespace, &DeleteParams::background()).await;
    }
}

/// Keeps everything: returns, per owned thing, how to remove it later.
fn keep_all(registered: &[Registered]) -> Vec<String> {
    registered
        .iter()
        .filter_map(|r| match r {
            Registered::Owned(thing) => Some(format!("kept {}: remove with `{}`", thing.describe(), thing.keep())),
            Registered::Namespace(ns) => Some(format!("kept namespace {ns}: kubectl get all,events -n {ns}")),
            _ => None,
        })
        .collect()
}

/// Every scenario namespace enforces Pod Security "restricted" (and warns and
/// audits at it): what the chart promises must hold where teams run it.
fn namespace_object(name: &str, scenario: &str) -> Namespace {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/part-of": "certctl-e2e",
            "certctl-e2e/scenario": scenario,
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
        }}
    }))
    .expect("static namespace shape")
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// `--test <binary> -- --exact <test>` for the running test: the binary from
/// the executable's name (`e2e-<hash>`), the test from libtest's thread name
/// (the test's own future runs on it).
fn rerun_filter() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| stem.rsplit_once('-').map_or(stem.clone(), |(name, _)| name.to_string()));
    let test = std::thread::current().name().filter(|n| *n != "main" && !n.starts_with("tokio")).map(String::from);
    match (binary, test) {
        (Some(b), Some(t)) => format!("--test {b} -- --exact {t}"),
        (Some(b), None) => format!("--test {b}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payloads_become_text() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_text(p.as_ref()), "boom 1");
    }

    struct Thing(Arc<Mutex<bool>>);
    impl Owned for Thing {
        fn describe(&self) -> String {
            "a thing".into()
        }
        fn collect<'a>(&'a self, _dir: &'a Path) -> LocalBoxFuture<'a, Result<(), BoxError>> {
            async { Ok(()) }.boxed_local()
        }
        fn keep(&self) -> String {
            *self.0.lock().unwrap() = true;
            "rm thing".into()
        }
    }

    #[test]
    fn keeping_marks_owned_things_and_says_how_to_remove_them() {
        let kept = Arc::new(Mutex::new(false));
        let notes = keep_all(&[Registered::Owned(Arc::new(Thing(kept.clone()))), Registered::Namespace("ns-x".into())]);
        assert!(*kept.lock().unwrap());
        assert_eq!(notes[0], "kept a thing: remove with `rm thing`");
        assert!(notes[1].contains("ns-x"));
    }
}
