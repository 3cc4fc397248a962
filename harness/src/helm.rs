//! Typed helm: install, upgrade, uninstall and template a release with values
//! as `serde_json`, and capture what was installed (manifest and values).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::command::{self, CommandError};

/// Errors from helm.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// helm could not run, or failed (its stderr says why: template refusals land here).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A values file could not be written.
    #[error("cannot write the values file: {0}")]
    Values(#[source] std::io::Error),
    /// helm printed something that is not the JSON asked for.
    #[error("helm printed unparsable JSON for {what}: {source}")]
    Json {
        /// What was asked for.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// helm bound to one cluster.
///
/// # Example
/// ```no_run
/// use certctl_harness::helm::{Helm, Release};
/// # async fn f() -> Result<(), certctl_harness::helm::HelmError> {
/// let helm = Helm::new("/usr/local/bin/helm".as_ref(), "/tmp/kubeconfig".as_ref());
/// let rel = Release::new("c", "default-mode", "chart".as_ref())
///     .values_file("scenarios/modes/default.yaml".as_ref())
///     .set(serde_json::json!({"server": {"auth": {"apiKey": "k"}}}));
/// let installed = helm.install(&rel).await?;
/// assert!(installed.manifest.contains("kind: Deployment"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Helm {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

/// A release to install: name, namespace, chart and values.
///
/// # Example
/// ```
/// use certctl_harness::helm::Release;
/// let r = Release::new("c", "ns", "chart".as_ref())
///     .set(serde_json::json!({"a": {"b": 1}}))
///     .set(serde_json::json!({"a": {"c": 2}}));
/// assert_eq!(r.values, serde_json::json!({"a": {"b": 1, "c": 2}}));
/// ```
#[derive(Debug, Clone)]
pub struct Release {
    /// Release name.
    pub name: String,
    /// Namespace (must exist, or add `--create-namespace` via `extra_args`).
    pub namespace: String,
    /// Chart directory or archive.
    pub chart: PathBuf,
    /// Values files, applied in order before `values`.
    pub values_files: Vec<PathBuf>,
    /// Values applied last (deep-merged by [`Release::set`]).
    pub values: serde_json::Value,
    /// helm's `--timeout`.
    pub timeout: Duration,
    /// Whether helm itself waits for readiness (`--wait`).
    pub wait: bool,
    /// Further helm arguments.
    pub extra_args: Vec<String>,
}

impl Release {
    /// A release with no values, 5 min timeout, no helm-side wait (the
    /// harness waits itself, with better messages).
    ///
    /// # Example
    /// ```
    /// let r = certctl_harness::helm::Release::new("c", "ns", "chart".as_ref());
    /// assert!(!r.wait);
    /// ```
    pub fn new(name: &str, namespace: &str, chart: &Path) -> Self {
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            chart: chart.to_path_buf(),
            values_files: Vec::new(),
            values: serde_json::json!({}),
            timeout: Duration::from_secs(300),
            wait: false,
            extra_args: Vec::new(),
        }
    }

    /// Adds a values file.
    ///
    /// # Example
    /// ```
    /// let r = certctl_harness::helm::Release::new("c", "ns", "chart".as_ref()).values_file("v.yaml".as_ref());
    /// assert_eq!(r.values_files.len(), 1);
    /// ```
    pub fn values_file(mut self, path: &Path) -> Self {
        self.values_files.push(path.to_path_buf());
        self
    }

    /// Deep-merges `values` into the release's values (objects merge, other
    /// values replace).
    ///
    /// # Example
    /// ```
    /// let r = certctl_harness::helm::Release::new("c", "ns", "chart".as_ref())
    ///     .set(serde_json::json!({"x": [1]})).set(serde_json::json!({"x": [2]}));
    /// assert_eq!(r.values["x"], serde_json::json!([2]));
    /// ```
    pub fn set(mut self, values: serde_json::Value) -> Self {
        merge(&mut self.values, values);
        self
    }

    /// Adds a raw helm argument.
    ///
    /// # Example
    /// ```
    /// let r = certctl_harness::helm::Release::new("c", "ns", "chart".as_ref()).arg("--disable-openapi-validation");
    /// assert_eq!(r.extra_args, ["--disable-openapi-validation"]);
    /// ```
    pub fn arg(mut self, a: &str) -> Self {
        self.extra_args.push(a.to_string());
        self
    }
}

/// Deep merge: objects merge key by key, anything else replaces.
///
/// # Example
/// ```
/// let mut a = serde_json::json!({"s": {"r": 1, "k": "x"}});
/// certctl_harness::helm::merge(&mut a, serde_json::json!({"s": {"r": 3}}));
/// assert_eq!(a, serde_json::json!({"s": {"r": 3, "k": "x"}}));
/// ```
pub fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

/// What an install or upgrade left in the cluster, as helm reports it.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The release as requested.
    pub release: Release,
    /// `helm get manifest`.
    pub manifest: String,
    /// `helm get values --all -o json` (computed values).
    pub values: serde_json::Value,
    /// What helm printed on stderr though it succeeded: the API server's
    /// warnings (Pod Security "would violate", deprecations).
    pub warnings: Vec<String>,
    /// How long the `helm install`/`upgrade` call took (with `--wait`, until
    /// helm saw the release ready).
    pub took: Duration,
}

impl Helm {
    /// helm at `bin`, talking to the cluster of `kubeconfig`.
    ///
    /// # Example
    /// ```
    /// let h = certctl_harness::helm::Helm::new("helm".as_ref(), "/k".as_ref());
    /// # let _ = h;
    /// ```
    pub fn new(bin: &Path, kubeconfig: &Path) -> Self {
        Self { bin: bin.to_path_buf(), kubeconfig: kubeconfig.to_path_buf() }
    }

    /// `helm install`, then captures the manifest and values.
    ///
    /// # Errors
    /// [`HelmError::Command`] with helm's stderr (template refusals land here).
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(helm: certctl_harness::helm::Helm, r: certctl_harness::helm::Release) -> Result<(), certctl_harness::helm::HelmError> {
    /// let installed = helm.install(&r).await?;
    /// println!("{}", installed.values);
    /// # Ok(()) }
    /// ```
    pub async fn install(&self, r: &Release) -> Result<Installed, HelmError> {
        self.apply("install", r).await
    }

    /// `helm upgrade`, then captures the manifest and values.
    ///
    /// # Errors
    /// [`HelmError::Command`] with helm's stderr.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(helm: certctl_harness::helm::Helm, r: certctl_harness::helm::Release) -> Result<(), certctl_harness::helm::HelmError> {
    /// let r = r.set(serde_json::json!({"postgresql": {"auth": {"password": "new"}}}));
    /// helm.upgrade(&r).await?;
    /// # Ok(()) }
    /// ```
    pub async fn upgrade(&self, r: &Release) -> Result<Installed, HelmError> {
        self.apply("upgrade", r).await
    }

    async fn apply(&self, verb: &str, r: &Release) -> Result<Installed, HelmError> {
        let values = values_file(&r.values)?;
        let mut cmd = self.command();
        cmd.arg(verb).arg(&r.name).arg(&r.chart).args(["--namespace", &r.namespace]);
        for f in &r.values_files {
            cmd.arg("-f").arg(f);
        }
        cmd.arg("-f").arg(values.path()).arg(format!("--timeout={}s", r.timeout.as_secs())).args(&r.extra_args);
        if r.wait {
            cmd.arg("--wait");
        }
        let started = std::time::Instant::now();
        let (_, stderr) = output_and_stderr(&mut cmd).await?;
        let took = started.elapsed();
        Ok(Installed {
            took,
            warnings: stderr.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
            release: r.clone(),
            manifest: self.manifest(&r.name, &r.namespace).await?,
            values: self.values(&r.name, &r.namespace).await?,
        })
    }

    /// `helm uninstall --wait`.
    ///
    /// # Errors
    /// [`HelmError::Command`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(helm: certctl_harness::helm::Helm) -> Result<(), certctl_harness::helm::HelmError> {
    /// helm.uninstall("c", "default-mode").await?;
    /// # Ok(()) }
    /// ```
    pub async fn uninstall(&self, name: &str, namespace: &str) -> Result<(), HelmError> {
        output(self.command().args(["uninstall", name, "--namespace", namespace, "--wait"])).await.map(|_| ())
    }

    /// `helm rollback` of release `name` to `revision`.
    ///
    /// # Errors
    /// [`HelmError::Command`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(helm: certctl_harness::helm::Helm) -> Result<(), certctl_harness::helm::HelmError> {
    /// helm.rollback("c", "ns", 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rollback(&self, name: &str, namespace: &str, revision: u32) -> Result<(), HelmError> {
        output(self.command().args(["rollback", name, &revision.to_string(), "--namespace", namespace])).await.map(drop)
    }

    /// The release's current revision (`helm status -o json`).
    ///
    /// # Errors
    /// [`HelmError::Command`] or [`HelmError::Json`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(helm: certctl_harness::helm::Helm) -> Result<(), certctl_harness::helm::HelmError> {
    /// let before = helm.revision("c", "ns").await?;
    /// # Ok(()) }
    /// ```
    pub async fn revision(&self, name: &str, namespace: &str) -> Result<u32, HelmError> {
        let text = output(self.command().args(["status", name, "-o", "json", "--namespace", namespace])).await?;
        let status: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| HelmError::Json { what: format!("status of {name}"), source })?;
        Ok(status["version"].as_u64().unwrap_or(0) as u32)
    }

    /// `helm template`: the rendered manifest, no cluster needed.
    ///
    /// # Errors
    /// [`HelmError::Command`] with the refusal message.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(helm: certctl_harness::helm::Helm, r: certctl_harness::helm::Release) -> Result<(), certctl_harness::helm::HelmError> {
    /// let yaml = helm.template(&r).await?;
    /// assert!(yaml.contains("kind: Service"));
    /// # Ok(()) }
    /// ```
    pub async fn template(&self, r: &Release) -> Result<String, HelmError> {
        let values = values_file(&r.values)?;
        let mut cmd = self.command();
        cmd.arg("template").arg(&r.name).arg(&r.chart).args(["--namespace", &r.namespace]);
        for f in &r.values_files {
            cmd.arg("-f").arg(f);
        }
        cmd.arg("-f").arg(values.path()).args(&r.extra_args);
        output(&mut cmd).await
    }

    /// `helm get manifest`.
    ///
    /// # Errors
    /// [`HelmError::Command`] (e.g. no such release).
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(helm: certctl_harness::helm::Helm) -> Result<(), certctl_harness::helm::HelmError> {
    /// let m = helm.manifest("c", "ns").await?;
    /// # Ok(()) }
    /// ```
    pub async fn manifest(&self, name: &str, namespace: &str) -> Result<String, HelmError> {
        output(self.command().args(["get", "manifest", name, "--namespace", namespace])).await
    }

    /// `helm get values --all -o json`.
    ///
    /// # Errors
    /// [`HelmError::Command`] or [`HelmError::Json`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(helm: certctl_harness::helm::Helm) -> Result<(), certctl_harness::helm::HelmError> {
    /// let v = helm.values("c", "ns").await?;
    /// println!("{}", v["server"]["replicas"]);
    /// # Ok(()) }
    /// ```
    pub async fn values(&self, name: &str, namespace: &str) -> Result<serde_json::Value, HelmError> {
        let text = output(self.command().args(["get", "values", name, "--all", "-o", "json", "--namespace", namespace])).await?;
        serde_json::from_str(&text).map_err(|source| HelmError::Json { what: format!("values of {name}"), source })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }
}

/// Values as a temp file; JSON is YAML, so helm reads it with `-f`.
fn values_file(values: &serde_json::Value) -> Result<tempfile::NamedTempFile, HelmError> {
    let mut f = tempfile::Builder::new().suffix(".json").tempfile().map_err(HelmError::Values)?;
    std::io::Write::write_all(&mut f, values.to_string().as_bytes()).map_err(HelmError::Values)?;
    Ok(f)
}

async fn output(cmd: &mut Command) -> Result<String, HelmError> {
    output_and_stderr(cmd).await.map(|(stdout, _)| stdout)
}

/// stdout and stderr of a command that succeeded.
async fn output_and_stderr(cmd: &mut Command) -> Result<(String, String), HelmError> {
    let out = command::run_async(cmd).await?;
    Ok((command::stdout(&out), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_replaces_scalars_and_arrays_and_merges_objects() {
        let mut a = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge(&mut a, serde_json::json!({"a": {"c": [3], "e": null}, "d": {"f": 1}}));
        assert_eq!(a, serde_json::json!({"a": {"b": 1, "c": [3], "e": null}, "d": {"f": 1}}));
    }

    #[tokio::test]
    async fn helm_failures_carry_stderr_and_the_command() {
        let h = Helm::new("sh".as_ref(), "/nonexistent".as_ref());
        let err = output(h.command().args(["-c", "echo 'Error: refused: set server.auth.apiKey' >&2; exit 1"])).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("set server.auth.apiKey") && text.contains("sh -c"), "{text}");
    }

    #[test]
    fn values_file_is_json_helm_can_read() {
        let f = values_file(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(std::fs::read_to_string(f.path()).unwrap(), r#"{"a":1}"#);
    }
}
