//! kind clusters: created from a config with retry and backoff, or reused by
//! name or from a kubeconfig; images loaded into every node (skipped when a
//! node already holds them); exact reproduce commands for a kept cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub(crate) use crate::command::run;
use crate::command::CommandError;
use crate::wait::Backoff;

/// Errors creating, reusing or using a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// docker or kind could not run, or failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A restarted node came back on another address.
    #[error("node {node} came back on {now}, not {was}: its kubelet cannot serve on the new address")]
    NodeMoved {
        /// The node.
        node: String,
        /// Its addresses before.
        was: String,
        /// Its addresses now.
        now: String,
    },
    /// Creation failed on every attempt.
    #[error("kind could not create cluster {name} in {attempts} attempts; last error: {last}")]
    CreateExhausted {
        /// The cluster.
        name: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<ClusterError>,
    },
    /// A file could not be written or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig was unusable.
    #[error("kubeconfig {path} is unusable: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What cluster to make.
///
/// # Example
/// ```
/// use certctl_harness::cluster::ClusterSpec;
/// let spec = ClusterSpec::new("certctl-e2e", "certctl/node:v1.34.2").workers(2);
/// let cfg = spec.kind_config();
/// assert_eq!(cfg["nodes"].as_array().unwrap().len(), 3);
/// assert_eq!(cfg["nodes"][1]["role"], "worker");
/// ```
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Cluster name (`kind --name`).
    pub name: String,
    /// Node image for every node.
    pub node_image: String,
    /// Worker nodes besides the control plane.
    pub workers: usize,
    /// Extra top-level kind config (e.g. `networking`), merged in.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Creation attempts before giving up.
    pub attempts: u32,
    /// `kind create --wait`.
    pub wait: Duration,
}

impl ClusterSpec {
    /// One control-plane node, no workers, 3 attempts, 5 min wait.
    ///
    /// # Example
    /// ```
    /// let s = certctl_harness::cluster::ClusterSpec::new("c", "img");
    /// assert_eq!((s.workers, s.attempts), (0, 3));
    /// ```
    pub fn new(name: &str, node_image: &str) -> Self {
        Self {
            name: name.to_string(),
            node_image: node_image.to_string(),
            workers: 0,
            extra: serde_json::Map::new(),
            attempts: 3,
            wait: Duration::from_secs(300),
        }
    }

    /// Sets the number of worker nodes.
    ///
    /// # Example
    /// ```
    /// assert_eq!(certctl_harness::cluster::ClusterSpec::new("c", "i").workers(2).workers, 2);
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Merges a top-level kind config key, e.g. `networking`.
    ///
    /// # Example
    /// ```
    /// let s = certctl_harness::cluster::ClusterSpec::new("c", "i")
    ///     .with("networking", serde_json::json!({"podSubnet": "10.244.0.0/16"}));
    /// assert_eq!(s.kind_config()["networking"]["podSubnet"], "10.244.0.0/16");
    /// ```
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// The kind `Cluster` config (JSON, which kind reads as YAML).
    ///
    /// # Example
    /// ```
    /// let cfg = certctl_harness::cluster::ClusterSpec::new("c", "i").kind_config();
    /// assert_eq!(cfg["apiVersion"], "kind.x-k8s.io/v1alpha4");
    /// ```
    pub fn kind_config(&self) -> serde_json::Value {
        let node = |role: &str| serde_json::json!({"role": role, "image": self.node_image});
        let mut nodes = vec![node("control-plane")];
        nodes.extend((0..self.workers).map(|_| node("worker")));
        let mut cfg = serde_json::json!({
            "kind": "Cluster",
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "nodes": nodes,
        });
        if let Some(obj) = cfg.as_object_mut() {
            obj.extend(self.extra.clone());
        }
        cfg
    }
}

/// Where a cluster came from, which decides who may delete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Created by this run: deleted at the end unless kept.
    Created,
    /// An existing kind cluster found by name: never deleted.
    ReusedByName,
    /// Any cluster a kubeconfig points at: never deleted, images not loaded.
    Kubeconfig,
}

/// A usable cluster.
///
/// # Example
/// ```no_run
/// use certctl_harness::cluster::{Cluster, ClusterSpec};
/// let kind = std::path::Path::new("/usr/local/bin/kind");
/// let dir = tempfile::tempdir().unwrap();
/// let c = Cluster::create_or_reuse(kind, &ClusterSpec::new("certctl-e2e", "certctl/node:x"), dir.path()).unwrap();
/// println!("{}", c.reproduce_commands());
/// ```
#[derive(Debug, Clone)]
pub struct Cluster {
    /// kind name (empty for [`Origin::Kubeconfig`]).
    pub name: String,
    /// A kubeconfig file for this cluster only.
    pub kubeconfig: PathBuf,
    /// The kind binary.
    pub kind: PathBuf,
    /// Where it came from.
    pub origin: Origin,
}

impl Cluster {
    /// Reuses the kind cluster `spec.name` if it exists, else creates it,
    /// retrying with backoff (a failed attempt's leftovers are deleted before
    /// the next). The kubeconfig is written under `work_dir`.
    ///
    /// # Errors
    /// [`ClusterError::CreateExhausted`] with the last attempt's error.
    ///
    /// # Example
    /// ```no_run
    /// # use certctl_harness::cluster::*;
    /// let c = Cluster::create_or_reuse("kind".as_ref(), &ClusterSpec::new("x", "img").workers(2), "/tmp".as_ref())?;
    /// assert_eq!(c.origin, Origin::Created);
    /// # Ok::<(), ClusterError>(())
    /// ```
    pub fn create_or_reuse(kind: &Path, spec: &ClusterSpec, work_dir: &Path) -> Result<Self, ClusterError> {
        let kubeconfig = work_dir.join(format!("kubeconfig-{}", spec.name));
        let mut cluster = Self { name: spec.name.clone(), kubeconfig, kind: kind.to_path_buf(), origin: Origin::ReusedByName };
        if cluster.exists()? {
            cluster.export_kubeconfig()?;
            return Ok(cluster);
        }
        cluster.origin = Origin::Created;
        let config_path = work_dir.join(format!("kind-{}.json", spec.name));
        write(&config_path, &serde_json::to_vec_pretty(&spec.kind_config()).unwrap_or_default())?;
        let mut backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        let mut last = None;
        for attempt in 1..=spec.attempts.max(1) {
            let mut cmd = Command::new(kind);
            cmd.args(["create", "cluster", "--name", &spec.name, "--config"])
                .arg(&config_path)
                .arg("--kubeconfig")
                .arg(&cluster.kubeconfig)
                .arg(format!("--wait={}s", spec.wait.as_secs()));
            match run(&mut cmd) {
                Ok(_) => return Ok(cluster),
                Err(e) => {
                    eprintln!("kind create cluster {} attempt {attempt}/{} failed: {e}", spec.name, spec.attempts);
                    let _ = cluster.delete();
                    last = Some(e);
                    if attempt < spec.attempts {
                        std::thread::sleep(backoff.next_delay());
                    }
                }
            }
        }
        Err(ClusterError::CreateExhausted {
            name: spec.name.clone(),
            attempts: spec.attempts,
            last: Box::new(last.expect("at least one attempt ran").into()),
        })
    }

    /// Uses whatever cluster `kubeconfig` points at. Nothing is created,
    /// loaded or deleted: the images must already be available to it.
    ///
    /// # Example
    /// ```
    /// let c = certctl_harness::cluster::Cluster::from_kubeconfig("/home/me/.kube/config".as_ref());
    /// assert_eq!(c.origin, certctl_harness::cluster::Origin::Kubeconfig);
    /// ```
    pub fn from_kubeconfig(kubeconfig: &Path) -> Self {
        Self { name: String::new(), kubeconfig: kubeconfig.to_path_buf(), kind: PathBuf::from("kind"), origin: Origin::Kubeconfig }
    }

    /// Whether kind knows a cluster of this name.
    ///
    /// # Errors
    /// When `kind get clusters` fails.
    ///
    /// # Example
    /// ```no_run
    /// # let c = certctl_harness::cluster::Cluster::from_kubeconfig("k".as_ref());
    /// let alive = c.exists()?;
    /// # Ok::<(), certctl_harness::cluster::ClusterError>(())
    /// ```
    pub fn exists(&self) -> Result<bool, ClusterError> {
        let out = run(Command::new(&self.kind).args(["get", "clusters"]))?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == self.name))
    }

    fn export_kubeconfig(&self) -> Result<(), ClusterError> {
        let out = run(Command::new(&self.kind).args(["get", "kubeconfig", "--name", &self.name]))?;
        write(&self.kubeconfig, &out.stdout)
    }

    /// Node container names (`kind get nodes`).
    ///
    /// # Errors
    /// When kind fails.
    ///
    /// # Example
    /// ```no_run
    /// # let c = certctl_harness::cluster::Cluster::from_kubeconfig("k".as_ref());
    /// for node in c.nodes()? { println!("{node}"); }
    /// # Ok::<(), certctl_harness::cluster::ClusterError>(())
    /// ```
    pub fn nodes(&self) -> Result<Vec<String>, ClusterError> {
        let out = run(Command::new(&self.kind).args(["get", "nodes", "--name", &self.name]))?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
    }

    /// The nodes whose containers run now. A node-loss scenario stops one for
    /// a while; a test process starting meanwhile must not trip over it (the
    /// runner loaded the images into every node before any test ran).
    ///
    /// # Errors
    /// When `kind get nodes` or `docker inspect` fails.
    pub fn running_nodes(&self) -> Result<Vec<String>, ClusterError> {
        let mut running = Vec::new();
        for node in self.nodes()? {
            let out = run(Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", &node]))?;
            if String::from_utf8_lossy(&out.stdout).trim() == "true" {
                running.push(node);
            }
        }
        Ok(running)
    }

    /// Loads docker images into every running node, skipping images every node
    /// already holds under the same name (tags are content hashes). Returns
    /// the images actually loaded.
    ///
    /// # Errors
    /// When `kind load docker-image` fails.
    ///
    /// # Example
    /// ```no_run
    /// # let c = certctl_harness::cluster::Cluster::from_kubeconfig("k".as_ref());
    /// let loaded = c.load_images(&["certctl/server:abc".to_string()])?;
    /// # Ok::<(), certctl_harness::cluster::ClusterError>(())
    /// ```
    pub fn load_images(&self, images: &[String]) -> Result<Vec<String>, ClusterError> {
        if self.origin == Origin::Kubeconfig {
            return Ok(Vec::new());
        }
        let nodes = self.running_nodes()?;
        let mut present: Option<Vec<String>> = None;
        for node in &nodes {
            let out = run(Command::new("docker").args(["exec", node, "ctr", "-n", "k8s.io", "images", "ls", "-q"]))?;
            let names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
            present = Some(match present {
                None => names,
                Some(p) => p.into_iter().filter(|n| names.contains(n)).collect(),
            });
        }
        let present = present.unwrap_or_default();
        let missing: Vec<String> =
            images.iter().filter(|i| i.ends_with(":latest") || !present.contains(&normalize_image(i))).cloned().collect();
        if !missing.is_empty() {
            run(Command::new(&self.kind).args(["load", "docker-image", "--name", &self.name, "--nodes", &nodes.join(",")]).args(&missing))?;
        }
        Ok(missing)
    }

    /// Deletes the kind cluster (a no-op for clusters not made by kind).
    ///
    /// # Errors
    /// When `kind delete cluster` fails.
    ///
    /// # Example
    /// ```no_run
    /// # let c = certctl_harness::cluster::Cluster::from_kubeconfig("k".as_ref());
    /// c.delete()?;
    /// # Ok::<(), certctl_harness::cluster::ClusterError>(())
    /// ```
    pub fn delete(&self) -> Result<(), ClusterError> {
        if self.origin == Origin::Kubeconfig {
            return Ok(());
        }
        run(Command::new(&self.kind).args(["delete", "cluster", "--name", &self.name]).arg("--kubeconfig").arg(&self.kubeconfig))?;
        Ok(())
    }

    /// The command deleting this cluster, for the watchdog.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::cluster::*;
    /// let c = Cluster { name: "x".into(), kubeconfig: "/k".into(), kind: "/bin/kind".into(), origin: Origin::Created };
    /// assert_eq!(c.delete_command(), ["/bin/kind", "delete", "cluster", "--name", "x"]);
    /// ```
    pub fn delete_command(&self) -> Vec<String> {
        vec![self.kind.display().to_string(), "delete".into(), "cluster".into(), "--name".into(), self.name.clone()]
    }

    /// A client for this cluster from its kubeconfig.
    ///
    /// # Errors
    /// [`ClusterError::Kubeconfig`] when it cannot be read or used.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(c: certctl_harness::cluster::Cluster) -> Result<(), Box<dyn std::error::Error>> {
    /// let client = c.client().await?;
    /// let v = client.apiserver_version().await?;
    /// # Ok(()) }
    /// ```
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        let bad = |e: Box<dyn std::error::Error + Send + Sync>| ClusterError::Kubeconfig { path: self.kubeconfig.clone(), source: e };
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).map_err(|e| bad(Box::new(e)))?;
        let mut cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await.map_err(|e| bad(Box::new(e)))?;
        // kube retries 429/503/504 by default. A 429 is also how the Eviction
        // API says "a PodDisruptionBudget refuses": retried, it becomes a 201
        // once a replacement is Ready and the refusal is never seen. The
        // harness's waits retry (and count) transient errors themselves.
        cfg.default_retry = false;
        kube::Client::try_from(cfg).map_err(|e| bad(Box::new(e)))
    }

    /// Shell lines to inspect (and finally delete) this cluster by hand.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::cluster::*;
    /// let c = Cluster { name: "x".into(), kubeconfig: "/k".into(), kind: "kind".into(), origin: Origin::Created };
    /// let text = c.reproduce_commands();
    /// assert!(text.contains("export KUBECONFIG=/k") && text.contains("kind delete cluster --name x"));
    /// ```
    pub fn reproduce_commands(&self) -> String {
        let mut s = format!("  export KUBECONFIG={}\n  kubectl get pods -A -o wide\n", self.kubeconfig.display());
        if self.origin != Origin::Kubeconfig {
            s.push_str(&format!(
                "  {kind} export logs --name {n} ./kind-logs-{n}\n  {kind} delete cluster --name {n}   # when done\n",
                kind = self.kind.display(),
                n = self.name
            ));
        }
        s
    }
}

/// The name containerd shows for a docker image name (`x/y:t` ->
/// `docker.io/x/y:t`, `y:t` -> `docker.io/library/y:t`).
///
/// # Example
/// ```
/// use certctl_harness::cluster::normalize_image;
/// assert_eq!(normalize_image("certctl/server:1"), "docker.io/certctl/server:1");
/// assert_eq!(normalize_image("postgres:16"), "docker.io/library/postgres:16");
/// assert_eq!(normalize_image("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
/// ```
pub fn normalize_image(image: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    let has_registry = image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        image.to_string()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    }
}

/// Writes through a temporary file and a rename: under nextest every test process
/// reuses the cluster and exports its kubeconfig to the same path, and a reader must
/// never see another process's half-written file.
fn write(path: &Path, bytes: &[u8]) -> Result<(), ClusterError> {
    let io = |source| ClusterError::Io { what: "cannot write", path: path.to_path_buf(), source };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_config_is_merged() {
        let cfg = ClusterSpec::new("c", "i").with("networking", serde_json::json!({"disableDefaultCNI": false})).kind_config();
        assert_eq!(cfg["networking"]["disableDefaultCNI"], false);
        assert_eq!(cfg["nodes"][0]["image"], "i");
    }

    /// Retry with a kind that always fails: every attempt is made, and the
    /// error names the attempts and carries the last failure.
    #[test]
    fn creation_retries_then_reports_the_last_error() {
        let dir = tempfile::tempdir().unwrap();
        let fake_kind = dir.path().join("kind");
        // A stand-in kind (named so): `get clusters` lists nothing, `create` fails.
        std::fs::write(&fake_kind, "#!/bin/sh\ncase \"$1\" in get) exit 0;; create) echo \"boom $*\" >&2; exit 1;; *) exit 0;; esac\n")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake_kind, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut spec = ClusterSpec::new("t", "img");
        spec.attempts = 2;
        let start = std::time::Instant::now();
        let err = Cluster::create_or_reuse(&fake_kind, &spec, dir.path()).unwrap_err();
        assert!(matches!(err, ClusterError::CreateExhausted { attempts: 2, .. }), "{err}");
        assert!(err.to_string().contains("boom create cluster --name t"), "{err}");
        assert!(start.elapsed() >= Duration::from_secs(5), "backoff between attempts");
        assert!(dir.path().join("kind-t.json").exists());
    }
}
