//! A scenario: one namespace in the shared cluster, named steps that are
//! timed and recorded (a failing step — error or panic — is caught, so later
//! independent steps still run), and a finish that writes JUnit, prints the
//! phase table, and on failure writes the diagnostics bundle, keeps what the
//! policy says, and fails with a message naming the bundle and the commands
//! to reproduce.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Instant;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};

use crate::diagnostics::Collect;
use crate::env::TestEnv;
use crate::helm::Helm;
use crate::junit::{self, StepRecord};
use crate::timing::{Outcome, Timings};
use crate::wait::Deadline;

/// Any error a step may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

/// A step failed; the scenario goes on with independent steps.
///
/// # Example
/// ```
/// let f = certctl_harness::scenario::StepFailed { step: "install".into() };
/// assert_eq!(f.to_string(), "step `install` failed (see the scenario report)");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("step `{step}` failed (see the scenario report)")]
pub struct StepFailed {
    /// The step.
    pub step: String,
}

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

/// One scenario in the shared cluster.
///
/// # Example
/// ```no_run
/// use certctl_harness::{env::TestEnv, scenario::Scenario};
/// # async fn f() {
/// let env = TestEnv::shared_async(Default::default()).await.unwrap();
/// let mut s = Scenario::start(env, "default").await.unwrap();
/// let ns = s.namespace.clone();
/// s.step("namespace exists", async move { certctl_harness::ensure!(!ns.is_empty(), "no namespace"); Ok(()) }).await.ok();
/// s.finish().await.unwrap();
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
    /// The helm release to collect in a bundle, once one is installed.
    pub release: Option<String>,
    steps: Vec<StepRecord>,
    expect_failure: bool,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario").field("name", &self.name).field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl Scenario {
    /// Creates the scenario's namespace (replacing a leftover from a kept
    /// earlier run).
    ///
    /// # Errors
    /// API errors creating or clearing the namespace.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(env: &'static certctl_harness::env::TestEnv) {
    /// let s = certctl_harness::scenario::Scenario::start(env, "default").await.unwrap();
    /// assert_eq!(s.namespace, "e2e-default");
    /// # }
    /// ```
    pub async fn start(env: &'static TestEnv, name: &str) -> Result<Self, BoxError> {
        let client = env.client().await?;
        let namespace = format!("e2e-{name}");
        let nss: Api<Namespace> = Api::all(client.clone());
        if nss.get_opt(&namespace).await?.is_some() {
            eprintln!("scenario {name}: deleting leftover namespace {namespace}");
            let _ = nss.delete(&namespace, &DeleteParams::default()).await;
            crate::pods::wait_deleted(&nss, &namespace, Deadline::secs(180)).await?;
        }
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": "certctl-e2e", "certctl-e2e/scenario": name}}
        }))?;
        nss.create(&PostParams::default(), &ns).await?;
        Ok(Self {
            name: name.to_string(),
            namespace,
            env,
            helm: env.helm(),
            client,
            release: None,
            steps: Vec::new(),
            expect_failure: false,
        })
    }

    /// Runs one named step: timed, recorded for JUnit and the phase table;
    /// an `Err` or a panic inside is caught and recorded as its failure.
    ///
    /// # Errors
    /// [`StepFailed`] so dependent steps can stop with `?`.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(mut s: certctl_harness::scenario::Scenario) -> Result<(), certctl_harness::scenario::StepFailed> {
    /// let n = s.step("count", async { Ok(2 + 2) }).await?;
    /// s.step("a check that panics is recorded, not fatal", async { assert_eq!(1, 2); Ok(()) }).await.ok();
    /// # Ok(()) }
    /// ```
    pub async fn step<T>(&mut self, name: &str, fut: impl Future<Output = StepResult<T>>) -> Result<T, StepFailed> {
        eprintln!("[{}] step {name} ...", self.name);
        let start = Instant::now();
        let result = AssertUnwindSafe(fut).catch_unwind().await;
        let elapsed = start.elapsed();
        let (value, failure) = match result {
            Ok(Ok(v)) => (Some(v), None),
            Ok(Err(e)) => (None, Some(error_chain(e.as_ref()))),
            Err(panic) => (None, Some(format!("panicked: {}", panic_text(panic.as_ref())))),
        };
        let outcome = if failure.is_some() { Outcome::Failed } else { Outcome::Ok };
        Timings::global().record(&self.name, name, elapsed, outcome);
        match &failure {
            None => eprintln!("[{}] step {name}: ok ({:.1}s)", self.name, elapsed.as_secs_f64()),
            Some(f) => eprintln!("[{}] step {name}: FAILED ({:.1}s)\n{}", self.name, elapsed.as_secs_f64(), indent(f)),
        }
        self.steps.push(StepRecord { name: name.to_string(), elapsed, failure });
        value.ok_or_else(|| StepFailed { step: name.to_string() })
    }

    /// Marks a run meant to fail (a deliberately broken chart): its failure
    /// still writes the bundle and returns [`ScenarioFailure`], but does not
    /// keep the cluster, and its namespace is removed.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(mut s: certctl_harness::scenario::Scenario) {
    /// s.expect_failure();
    /// let failure = s.finish().await.unwrap_err();
    /// assert!(failure.bundle.join("README.txt").exists());
    /// # }
    /// ```
    pub fn expect_failure(&mut self) {
        self.expect_failure = true;
    }

    /// Whether any step failed so far.
    ///
    /// # Example
    /// ```no_run
    /// # fn f(s: &certctl_harness::scenario::Scenario) { if s.failed() { eprintln!("already failing"); } }
    /// ```
    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.failure.is_some())
    }

    /// Ends the scenario: JUnit and the phase table always; on failure the
    /// bundle, keep decision and reproduce commands; on success (unless
    /// `CERTCTL_KEEP=always`) the release and namespace are removed.
    ///
    /// # Errors
    /// [`ScenarioFailure`] naming failed steps and the bundle path.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(s: certctl_harness::scenario::Scenario) {
    /// s.finish().await.unwrap(); // panics with the full report on failure
    /// # }
    /// ```
    pub async fn finish(self) -> Result<(), ScenarioFailure> {
        let dir = self.env.artifacts.join(&self.name);
        let failed = self.failed();
        let bundle = dir.join("bundle");
        if failed {
            let reason: Vec<String> =
                self.steps.iter().filter_map(|s| s.failure.as_ref().map(|f| format!("step `{}`: {f}", s.name))).collect();
            let collect = Collect { namespace: self.namespace.clone(), release: self.release.clone() };
            collect.write(&self.client, Some(&self.helm), &bundle, &reason.join("\n\n")).await;
        }
        let junit = junit::write(&self.env.artifacts, &self.name, &self.steps, failed.then_some(bundle.as_path()));
        eprintln!("\n=== e2e {} summary: {} ===", self.name, if failed { "FAILED" } else { "passed" });
        for s in &self.steps {
            eprintln!("  {:<48} {}", s.name, if s.failure.is_some() { "FAILED" } else { "ok" });
        }
        eprintln!("per-phase wall time:\n{}", Timings::global().table(Some(&self.name)));
        match &junit {
            Ok(p) => eprintln!("junit: {}", p.display()),
            Err(e) => eprintln!("junit could not be written: {e}"),
        }
        if (!failed || self.expect_failure) && self.env.keep != crate::keep::KeepPolicy::Always {
            if let Some(release) = &self.release {
                let _ = self.helm.uninstall(release, &self.namespace).await;
            }
            let nss: Api<Namespace> = Api::all(self.client.clone());
            let _ = nss.delete(&self.namespace, &DeleteParams::default()).await;
        }
        if !failed {
            return Ok(());
        }
        let kept = !self.expect_failure && self.env.mark_failed();
        let failures: Vec<(String, String)> = self.steps.iter().filter_map(|s| s.failure.clone().map(|f| (s.name.clone(), f))).collect();
        let mut text = format!("scenario {} failed in {} step(s):\n", self.name, failures.len());
        for (step, f) in &failures {
            text.push_str(&format!("- {step}:\n{}\n", indent(f)));
        }
        text.push_str(&format!("diagnostics bundle: {}\n", bundle.display()));
        if kept {
            text.push_str(&format!(
                "cluster kept (CERTCTL_KEEP={}); reproduce and inspect:\n{}  kubectl -n {ns} get all,events\n  {helm} --kubeconfig {kc} -n {ns} get values {rel}\n  CERTCTL_CLUSTER={name} cargo test -p certctl-scenarios --features e2e {rerun}\n",
                self.env.keep,
                self.env.cluster.reproduce_commands(),
                ns = self.namespace,
                helm = self.env.tools.helm.path.display(),
                kc = self.env.cluster.kubeconfig.display(),
                rel = self.release.clone().unwrap_or_default(),
                name = self.env.cluster.name,
                rerun = rerun_filter(),
            ));
        } else {
            text.push_str(&format!(
                "cluster not kept (CERTCTL_KEEP={}); rerun with CERTCTL_KEEP=on-failure to inspect it\n",
                self.env.keep
            ));
        }
        Err(ScenarioFailure { failures, bundle, text })
    }
}

/// An error and its sources, one per line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(&format!("\n  caused by: {next}"));
        }
        cur = c.source();
    }
    s
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// `--test <binary> -- <test>` for the running test: the binary from the
/// executable's name (`e2e_modes-<hash>`), the test from libtest's thread
/// name (the test's own future runs on it).
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

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chains_show_every_cause_once() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer\n  caused by: inner");
    }

    #[test]
    fn panic_payloads_become_text() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_text(p.as_ref()), "boom 1");
    }
}
