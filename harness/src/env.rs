//! The shared test environment of one test binary: tools located, host
//! checked, images ensured, one kind cluster created (or reused) and loaded —
//! once, however many tests ask. A [`Watchdog`] deletes a created cluster
//! when the process ends (success, panic, Ctrl-C or kill), unless the keep
//! policy says otherwise; this is the global teardown libtest lacks.
//!
//! Environment:
//! - `CERTCTL_KEEP` = `on-failure` (default) | `always` | `never`
//! - `CERTCTL_CLUSTER` = kind cluster name (default `certctl-e2e`, or
//!   `certctl-k8s-<minor>` when `CERTCTL_KUBERNETES` selects a version); an
//!   existing cluster of that name is reused and never deleted
//! - `CERTCTL_KUBERNETES` / `CERTCTL_HELM_MAJOR` = the Kubernetes version and
//!   helm major of the run (see [`crate::tools`])
//! - `CERTCTL_KUBECONFIG` = use the cluster this kubeconfig points at
//!   (images must already be there)
//! - `CERTCTL_IMAGES` = `ensure` (default: run `ci/offline/ensure.sh`, which
//!   skips unchanged stages) | `skip` (read the existing `images.env` only)
//! - `CERTCTL_ARTIFACTS` = where bundles and JUnit go

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::cluster::{Cluster, ClusterSpec, Origin};
use crate::images::{self, ImageSet};
use crate::keep::KeepPolicy;
use crate::preflight::{self, Requirements};
use crate::timing::{Outcome, Timings};
use crate::tools::Tools;
use crate::watchdog::Watchdog;

/// Why the environment could not be set up (shared by every test that asked).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the e2e environment could not be set up in phase {phase}:\n{message}")]
pub struct EnvError {
    /// preflight, tools, images, cluster or load-images.
    pub phase: &'static str,
    /// What went wrong and how to fix it.
    pub message: String,
}

/// Everything tests share.
#[derive(Debug)]
pub struct TestEnv {
    /// The pinned tools.
    pub tools: Tools,
    /// The images in use.
    pub images: ImageSet,
    /// The cluster.
    pub cluster: Cluster,
    /// What to keep.
    pub keep: KeepPolicy,
    /// Where bundles and reports go.
    pub artifacts: PathBuf,
    /// The workspace root (chart/ and scenarios/ live here).
    pub workspace: PathBuf,
    /// The worker set aside for node disruption (tainted [`crate::disruption::TAINT`]),
    /// when the cluster has two workers or more.
    pub disruptable: Option<String>,
    watchdog: Mutex<Option<Watchdog>>,
}

/// Cluster shape of the shared environment; the first caller's wins.
///
/// # Example
/// ```
/// let s = certctl_harness::env::Shape { workers: 2 };
/// assert_eq!(s.workers, 2);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Worker nodes besides the control plane.
    pub workers: usize,
}

/// The live tier's cluster: a control plane and two workers, so HA runs on
/// more than one node and one worker can be set aside to be drained and
/// killed (see [`crate::disruption`]).
impl Default for Shape {
    fn default() -> Self {
        Self { workers: 2 }
    }
}

impl TestEnv {
    /// The shared environment, set up on first call (blocking: call it from
    /// a blocking context, or use [`TestEnv::shared_async`]).
    ///
    /// # Errors
    /// The same [`EnvError`] for every caller when setup failed.
    ///
    /// # Example
    /// ```no_run
    /// let env = certctl_harness::env::TestEnv::shared(Default::default()).unwrap();
    /// println!("cluster {} kubeconfig {}", env.cluster.name, env.cluster.kubeconfig.display());
    /// ```
    pub fn shared(shape: Shape) -> Result<&'static TestEnv, EnvError> {
        static ENV: OnceLock<Result<TestEnv, EnvError>> = OnceLock::new();
        ENV.get_or_init(|| Self::setup(shape)).as_ref().map_err(Clone::clone)
    }

    /// [`TestEnv::shared`] from async code.
    ///
    /// # Errors
    /// See [`TestEnv::shared`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn f() {
    /// let env = certctl_harness::env::TestEnv::shared_async(Default::default()).await.unwrap();
    /// # }
    /// ```
    pub async fn shared_async(shape: Shape) -> Result<&'static TestEnv, EnvError> {
        tokio::task::spawn_blocking(move || Self::shared(shape))
            .await
            .map_err(|e| EnvError { phase: "setup", message: format!("setup thread died: {e}") })?
    }

    fn setup(shape: Shape) -> Result<TestEnv, EnvError> {
        let t = Timings::global();
        let fail = |phase: &'static str, e: &dyn std::fmt::Display| EnvError { phase, message: e.to_string() };
        let keep = KeepPolicy::from_env().map_err(|e| fail("config", &e))?;
        let workspace = crate::workspace::root();
        let artifacts = crate::diagnostics::artifacts_root();
        let kubeconfig = std::env::var_os("CERTCTL_KUBECONFIG").filter(|v| !v.is_empty()).map(PathBuf::from);

        let start = Instant::now();
        let tools = Tools::locate().map_err(|e| fail("tools", &e));
        t.record("run", "tools", start.elapsed(), if tools.is_ok() { Outcome::Ok } else { Outcome::Failed });
        let tools = tools?;

        let start = Instant::now();
        let mut req = Requirements {
            tools: vec![
                ("kind".into(), tools.kind.path.clone()),
                ("helm".into(), tools.helm.path.clone()),
                ("kubectl".into(), tools.kubectl.path.clone()),
            ],
            disk_paths: vec![crate::tools::cache_dir()],
            min_free_gib: preflight::min_free_gib().map_err(|e| fail("preflight", &e))?,
            ..Requirements::default()
        };
        if kubeconfig.is_some() {
            // Someone else's cluster: no local nodes, so only tools matter.
            req.min_inotify_watches = 0;
            req.min_inotify_instances = 0;
        }
        let pre = preflight::run(&req).map_err(|e| fail("preflight", &e));
        t.record("run", "preflight", start.elapsed(), if pre.is_ok() { Outcome::Ok } else { Outcome::Failed });
        pre?;

        let start = Instant::now();
        let skip_images = std::env::var("CERTCTL_IMAGES").is_ok_and(|v| v == "skip");
        let images = if skip_images {
            ImageSet::read(&images::images_env_path())
        } else {
            let mut cmd = Command::new("bash");
            cmd.arg(workspace.join("ci/offline/ensure.sh")).current_dir(&workspace);
            images::build(&mut cmd)
        }
        .map_err(|e| fail("images", &e));
        t.record(
            "run",
            "images",
            start.elapsed(),
            match &images {
                Ok(_) if skip_images => Outcome::Reused,
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Failed,
            },
        );
        let images = images?;
        // kubectl's pin is the Kubernetes version the run selected.
        images.require_kubernetes(&tools.kubectl.version, &images::images_env_path()).map_err(|e| fail("images", &e))?;

        std::fs::create_dir_all(&artifacts).map_err(|e| fail("cluster", &format!("cannot create {}: {e}", artifacts.display())))?;
        let start = Instant::now();
        let mut watchdog = None;
        let cluster = match kubeconfig {
            Some(path) => Ok(Cluster::from_kubeconfig(&path)),
            None => {
                let name = std::env::var("CERTCTL_CLUSTER")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| default_cluster_name(std::env::var("CERTCTL_KUBERNETES").ok().as_deref()));
                let spec = ClusterSpec::new(&name, &images.node).workers(shape.workers);
                let probe =
                    Cluster { name: name.clone(), kubeconfig: PathBuf::new(), kind: tools.kind.path.clone(), origin: Origin::Created };
                // Arm the watchdog before creating, so an interrupted create leaks nothing.
                if !probe.exists().map_err(|e| fail("cluster", &e))? {
                    let cmd = probe.delete_command();
                    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
                    let mut wd = Watchdog::spawn(&format!("kind cluster {name}"), &args).map_err(|e| fail("cluster", &e))?;
                    if keep == KeepPolicy::Always {
                        wd.keep().map_err(|e| fail("cluster", &e))?;
                    }
                    watchdog = Some(wd);
                }
                Cluster::create_or_reuse(&tools.kind.path, &spec, &artifacts)
            }
        }
        .map_err(|e| fail("cluster", &e));
        let outcome = match &cluster {
            Ok(c) if c.origin == Origin::Created => Outcome::Ok,
            Ok(_) => Outcome::Reused,
            Err(_) => Outcome::Failed,
        };
        t.record("run", "cluster", start.elapsed(), outcome);
        let cluster = cluster?;
        eprintln!("e2e cluster: {} ({:?}); kubeconfig {}; keep={keep}", cluster.name, cluster.origin, cluster.kubeconfig.display());

        let start = Instant::now();
        let loaded = cluster.load_images(&images.app_images()).map_err(|e| fail("load-images", &e));
        t.record(
            "run",
            "load-images",
            start.elapsed(),
            match &loaded {
                Ok(l) if l.is_empty() => Outcome::Reused,
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Failed,
            },
        );
        loaded?;

        let mut disruptable = None;
        if cluster.origin != Origin::Kubeconfig {
            let start = Instant::now();
            let nodes = cluster.nodes().map_err(|e| fail("storage", &e))?;
            // A node stopped by a node-loss scenario keeps its volumes; it is topped up next time.
            let running = cluster.running_nodes().map_err(|e| fail("storage", &e))?;
            let prepared = crate::storage::ensure(&tools.kubectl.path, &cluster.kubeconfig, &running).map_err(|e| fail("storage", &e));
            t.record("run", "storage", start.elapsed(), if prepared.is_ok() { Outcome::Ok } else { Outcome::Failed });
            eprintln!("e2e storage: {:?}", prepared.as_ref().map_err(|e| e.message.clone()));
            prepared?;
            let workers = crate::disruption::workers(&nodes);
            disruptable =
                crate::disruption::set_aside(&tools.kubectl.path, &cluster.kubeconfig, &workers).map_err(|e| fail("nodes", &e))?;
            eprintln!("e2e nodes: {} worker(s) {workers:?}; set aside for node disruption: {disruptable:?}", workers.len());
        }

        Ok(TestEnv { disruptable, tools, images, cluster, keep, artifacts, workspace, watchdog: Mutex::new(watchdog) })
    }

    /// Records that a scenario failed: with `on-failure` (or `always`) the
    /// cluster outlives the process. Returns whether it will be kept.
    ///
    /// # Example
    /// ```no_run
    /// # let env = certctl_harness::env::TestEnv::shared(Default::default()).unwrap();
    /// if env.mark_failed() { eprintln!("{}", env.cluster.reproduce_commands()); }
    /// ```
    pub fn mark_failed(&self) -> bool {
        let keep = self.keep.keeps(true);
        if keep {
            if let Some(wd) = self.watchdog.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                let _ = wd.keep();
            }
        }
        keep || self.cluster.origin != Origin::Created
    }

    /// Ends the run's hold on a cluster this process created: kept when the keep
    /// policy says so for a run that `failed`, else deleted now (not at process exit,
    /// so a runner can report after it). Returns whether the cluster is kept. A
    /// cluster this process did not create is never deleted.
    ///
    /// # Errors
    /// [`EnvError`] when the watchdog is gone or `kind delete` fails.
    ///
    /// # Example
    /// ```no_run
    /// # let env = certctl_harness::env::TestEnv::shared(Default::default()).unwrap();
    /// if env.release(false)? { eprintln!("{}", env.cluster.reproduce_commands()); }
    /// # Ok::<(), certctl_harness::env::EnvError>(())
    /// ```
    pub fn release(&self, failed: bool) -> Result<bool, EnvError> {
        let fail = |e: &dyn std::fmt::Display| EnvError { phase: "teardown", message: e.to_string() };
        let Some(mut wd) = self.watchdog.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(self.cluster.origin != Origin::Created || self.keep.keeps(failed));
        };
        if self.keep.keeps(failed) {
            wd.keep().map_err(|e| fail(&e))?;
            return Ok(true);
        }
        let status = wd.finish().map_err(|e| fail(&e))?;
        if !status.success() {
            return Err(fail(&format!("deleting cluster {} failed ({status})", self.cluster.name)));
        }
        Ok(false)
    }

    /// A client for the shared cluster (one per test: clients are tied to
    /// the runtime that made them, and each `#[tokio::test]` has its own).
    ///
    /// # Errors
    /// [`EnvError`] when the kubeconfig is unusable.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f() {
    /// let env = certctl_harness::env::TestEnv::shared_async(Default::default()).await.unwrap();
    /// let client = env.client().await.unwrap();
    /// # }
    /// ```
    pub async fn client(&self) -> Result<kube::Client, EnvError> {
        self.cluster.client().await.map_err(|e| EnvError { phase: "client", message: e.to_string() })
    }

    /// helm bound to the shared cluster.
    ///
    /// # Example
    /// ```no_run
    /// # let env = certctl_harness::env::TestEnv::shared(Default::default()).unwrap();
    /// let helm = env.helm();
    /// ```
    pub fn helm(&self) -> crate::helm::Helm {
        crate::helm::Helm::new(&self.tools.helm.path, &self.cluster.kubeconfig)
    }
}

/// `certctl-e2e`, or `certctl-k8s-<minor>` for a selected Kubernetes version, so a
/// cluster of one version is never reused for another.
fn default_cluster_name(selected_kubernetes: Option<&str>) -> String {
    match selected_kubernetes.filter(|v| !v.is_empty()) {
        Some(v) => format!("certctl-k8s-{}", v.split('.').nth(1).unwrap_or(v)),
        None => "certctl-e2e".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::default_cluster_name;

    #[test]
    fn a_selected_kubernetes_version_gets_its_own_cluster() {
        assert_eq!(default_cluster_name(None), "certctl-e2e");
        assert_eq!(default_cluster_name(Some("")), "certctl-e2e");
        assert_eq!(default_cluster_name(Some("v1.37.2")), "certctl-k8s-37");
    }
}
