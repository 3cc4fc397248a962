//! The pinned command-line tools (helm, kind, kubectl): where they are and which version.
//!
//! Versions come from `ci/versions.env`. A tool is accepted only if the binary itself
//! reports exactly the pinned version, so a machine's unrelated `/usr/bin/kubectl` is never
//! used by accident. Two switches pick among the pins:
//! - `CERTCTL_HELM_MAJOR` = `3` (default) | `4`: Helm 3 (`HELM_VERSION`) or Helm 4
//!   (`HELM4_VERSION`) as *the* helm of a run;
//! - `CERTCTL_KUBERNETES` = one of `KUBERNETES_OTHER_VERSIONS`: its `K8S_<version>_<KEY>`
//!   pins replace `KEY` (kind, kubectl, the node image's components), the rule
//!   `ci/lib.sh` applies to the same file.
//!
//! Candidates, in order: `$CERTCTL_<NAME>` (an explicit path), every `<name>` on `PATH`,
//! then the cache `$CERTCTL_CACHE/tools/<name>/<version>/<name>` that `bash ci/tools.sh`
//! fills. Nothing here downloads or builds: a missing tool is an error that says to run
//! `bash ci/tools.sh`.
//!
//! # Example
//! ```no_run
//! let tools = certctl_harness::tools::Tools::locate()?;
//! let out = tools.helm.command().arg("version").output()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors locating a pinned tool or reading the pins.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// `ci/versions.env` could not be read.
    #[error("cannot read pinned versions from {path}")]
    VersionsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `ci/versions.env` lacks a key.
    #[error("{path} has no {key}= line")]
    MissingPin {
        /// The file.
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A switch has a value it does not know.
    #[error("{var}={value}: {expected}")]
    Switch {
        /// The environment variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it accepts.
        expected: String,
    },
    /// No candidate reported the pinned version.
    #[error(
        "{name} {version} not found; checked: {}. Run `bash ci/tools.sh` to provision it \
         (CERTCTL_TOOLS_SOURCE=download|build|auto)",
        .checked.join("; ")
    )]
    NotFound {
        /// The tool.
        name: ToolName,
        /// The pinned version.
        version: String,
        /// Every candidate looked at and what it was.
        checked: Vec<String>,
    },
}

/// The tools the harness drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolName {
    /// Helm 3, renders and installs the chart.
    Helm,
    /// Helm 4 (server-side apply, kstatus waits), the same binary name.
    Helm4,
    /// kind, creates the clusters.
    Kind,
    /// kubectl, the cluster client used for exec, logs and port-forward.
    Kubectl,
}

impl ToolName {
    /// All tools, in provisioning order.
    pub const ALL: [ToolName; 4] = [ToolName::Helm, ToolName::Helm4, ToolName::Kind, ToolName::Kubectl];

    /// The helm a run uses: Helm 3 unless `CERTCTL_HELM_MAJOR` says 4.
    ///
    /// # Errors
    /// [`ToolError::Switch`] for a value other than 3 or 4.
    pub fn selected_helm() -> Result<ToolName, ToolError> {
        Self::helm_for_major(&std::env::var(HELM_MAJOR_VAR).unwrap_or_default())
    }

    /// The helm a `CERTCTL_HELM_MAJOR` value names (`3`, `v3`, `4`, `v4`; empty is 3).
    ///
    /// # Errors
    /// [`ToolError::Switch`] for anything else.
    pub fn helm_for_major(value: &str) -> Result<ToolName, ToolError> {
        match value.trim_start_matches('v') {
            "" | "3" => Ok(ToolName::Helm),
            "4" => Ok(ToolName::Helm4),
            _ => Err(ToolError::Switch {
                var: HELM_MAJOR_VAR,
                value: value.to_owned(),
                expected: "expected 3 (Helm 3, the default) or 4 (Helm 4)".into(),
            }),
        }
    }

    /// Both helms, the selected one first.
    ///
    /// # Errors
    /// See [`ToolName::selected_helm`].
    pub fn helms() -> Result<[ToolName; 2], ToolError> {
        Ok(match Self::selected_helm()? {
            ToolName::Helm4 => [ToolName::Helm4, ToolName::Helm],
            _ => [ToolName::Helm, ToolName::Helm4],
        })
    }

    /// Binary name.
    pub fn binary(self) -> &'static str {
        match self {
            ToolName::Helm | ToolName::Helm4 => "helm",
            ToolName::Kind => "kind",
            ToolName::Kubectl => "kubectl",
        }
    }

    /// The `ci/versions.env` key holding this tool's pinned version.
    pub fn pin_key(self) -> &'static str {
        match self {
            ToolName::Helm => "HELM_VERSION",
            ToolName::Helm4 => "HELM4_VERSION",
            ToolName::Kind => "KIND_VERSION",
            // kubectl follows the cluster it talks to.
            ToolName::Kubectl => "KUBERNETES_VERSION",
        }
    }

    /// Environment variable that may name an explicit binary.
    pub fn override_var(self) -> &'static str {
        match self {
            ToolName::Helm => "CERTCTL_HELM",
            ToolName::Helm4 => "CERTCTL_HELM4",
            ToolName::Kind => "CERTCTL_KIND",
            ToolName::Kubectl => "CERTCTL_KUBECTL",
        }
    }

    /// The version a binary reports, or why it reported none.
    pub fn probe_version(self, binary: &Path) -> Result<String, String> {
        let mut cmd = Command::new(binary);
        match self {
            ToolName::Helm | ToolName::Helm4 => cmd.args(["version", "--template", "{{.Version}}"]),
            ToolName::Kind => cmd.arg("version"),
            ToolName::Kubectl => cmd.args(["version", "--client", "-o", "json"]),
        };
        let out = cmd.output().map_err(|e| format!("cannot run: {e}"))?;
        if !out.status.success() {
            return Err(format!("version query failed ({})", out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let version = match self {
            ToolName::Helm | ToolName::Helm4 => Some(text.trim().to_owned()),
            // "kind v0.30.0 go1.26.8 linux/amd64"
            ToolName::Kind => text.split_whitespace().nth(1).map(str::to_owned),
            ToolName::Kubectl => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["clientVersion"]["gitVersion"].as_str().map(str::to_owned)),
        };
        version.filter(|v| !v.is_empty()).ok_or_else(|| format!("unparseable version output {:?}", text.trim()))
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolName::Helm4 => f.write_str("helm 4"),
            other => f.write_str(other.binary()),
        }
    }
}

const HELM_MAJOR_VAR: &str = "CERTCTL_HELM_MAJOR";
const KUBERNETES_VAR: &str = "CERTCTL_KUBERNETES";

/// The `KEY=VALUE` pins of `ci/versions.env`.
#[derive(Debug, Clone)]
pub struct PinnedVersions {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl PinnedVersions {
    /// This workspace's `ci/versions.env`.
    pub fn default_path() -> PathBuf {
        crate::workspace::root().join("ci/versions.env")
    }

    /// Reads this workspace's `ci/versions.env`, with the Kubernetes version
    /// `CERTCTL_KUBERNETES` selects applied (see [`PinnedVersions::select_kubernetes`]).
    ///
    /// # Errors
    /// [`ToolError::VersionsFile`] when the file cannot be read, [`ToolError::Switch`]
    /// when `CERTCTL_KUBERNETES` names a version the file does not pin.
    pub fn load() -> Result<Self, ToolError> {
        let pins = Self::from_file(&Self::default_path())?;
        match std::env::var(KUBERNETES_VAR) {
            Ok(v) if !v.is_empty() => pins.select_kubernetes(&v),
            _ => Ok(pins),
        }
    }

    /// These pins for Kubernetes `version`: the default `KUBERNETES_VERSION` as is, or one
    /// of `KUBERNETES_OTHER_VERSIONS` with its `K8S_<version, dots as _>_<KEY>` values
    /// replacing `KEY`.
    ///
    /// # Errors
    /// [`ToolError::Switch`] listing the pinned versions when `version` is not one.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::tools::PinnedVersions;
    /// let pins = PinnedVersions::parse_str("KUBERNETES_VERSION=v1.34.2\nKIND_VERSION=v0.30.0\n\
    ///     KUBERNETES_OTHER_VERSIONS=\"v1.37.2\"\nK8S_V1_37_2_KIND_VERSION=v0.33.0\n");
    /// let newer = pins.clone().select_kubernetes("v1.37.2").unwrap();
    /// assert_eq!(newer.get("KIND_VERSION").unwrap(), "v0.33.0");
    /// assert_eq!(newer.get("KUBERNETES_VERSION").unwrap(), "v1.37.2");
    /// assert!(pins.select_kubernetes("v1.99.0").is_err());
    /// ```
    pub fn select_kubernetes(mut self, version: &str) -> Result<Self, ToolError> {
        let default = self.get("KUBERNETES_VERSION")?.to_owned();
        if version == default {
            return Ok(self);
        }
        let others = self.values.get("KUBERNETES_OTHER_VERSIONS").cloned().unwrap_or_default();
        if !others.split_whitespace().any(|v| v == version) {
            return Err(ToolError::Switch {
                var: KUBERNETES_VAR,
                value: version.to_owned(),
                expected: format!("not pinned; {} offers {default} (default) {others}", self.path.display()),
            });
        }
        let prefix = format!("K8S_{}_", version.to_ascii_uppercase().replace('.', "_"));
        let overrides: Vec<(String, String)> =
            self.values.iter().filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone()))).collect();
        self.values.extend(overrides);
        self.values.insert("KUBERNETES_VERSION".into(), version.to_owned());
        Ok(self)
    }

    /// Parses the text of a versions file (for examples and tests).
    pub fn parse_str(text: &str) -> Self {
        Self::parse(Path::new("versions.env"), text)
    }

    /// Reads a versions file: `KEY=VALUE` lines; `#` comments and blank lines ignored.
    ///
    /// # Errors
    /// [`ToolError::VersionsFile`] when the file cannot be read.
    pub fn from_file(path: &Path) -> Result<Self, ToolError> {
        let text = std::fs::read_to_string(path).map_err(|source| ToolError::VersionsFile { path: path.to_owned(), source })?;
        Ok(Self::parse(path, &text))
    }

    fn parse(path: &Path, text: &str) -> Self {
        let values = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            .collect();
        Self { path: path.to_owned(), values }
    }

    /// The value of `key`.
    ///
    /// # Errors
    /// [`ToolError::MissingPin`] when the file has no such key.
    pub fn get(&self, key: &str) -> Result<&str, ToolError> {
        self.values.get(key).map(String::as_str).ok_or_else(|| ToolError::MissingPin { path: self.path.clone(), key: key.to_owned() })
    }
}

/// `$CERTCTL_CACHE`, default `~/.cache/certctl-proof`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CERTCTL_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/certctl-proof")
}

/// One located tool at its pinned version.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Which tool.
    pub name: ToolName,
    /// Absolute path of the binary.
    pub path: PathBuf,
    /// The version it reports (equal to the pin).
    pub version: String,
}

impl Tool {
    /// Finds `name` at the version pinned in `pins`.
    ///
    /// # Errors
    /// [`ToolError::MissingPin`] or [`ToolError::NotFound`] (listing every candidate seen).
    pub fn locate(name: ToolName, pins: &PinnedVersions) -> Result<Self, ToolError> {
        let version = pins.get(name.pin_key())?.to_owned();
        let mut checked = Vec::new();
        for candidate in candidates(name, &version) {
            if !candidate.is_file() {
                checked.push(format!("{} (absent)", candidate.display()));
                continue;
            }
            match name.probe_version(&candidate) {
                Ok(v) if v == version => return Ok(Self { name, path: candidate, version }),
                Ok(v) => checked.push(format!("{} (reports {v})", candidate.display())),
                Err(why) => checked.push(format!("{} ({why})", candidate.display())),
            }
        }
        Err(ToolError::NotFound { name, version, checked })
    }

    /// A `Command` running this binary.
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }

    /// Path of the binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its version.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// Where to look, in order: explicit override, every PATH entry, the cache.
fn candidates(name: ToolName, version: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(name.override_var()).filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|d| d.join(name.binary())));
    }
    out.push(cache_dir().join("tools").join(name.binary()).join(version).join(name.binary()));
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// helm, kind and kubectl, each at its pinned version.
#[derive(Debug, Clone)]
pub struct Tools {
    /// helm.
    pub helm: Tool,
    /// kind.
    pub kind: Tool,
    /// kubectl.
    pub kubectl: Tool,
}

impl Tools {
    /// Locates all three with the pins of this workspace; helm is the one
    /// [`ToolName::selected_helm`] names.
    ///
    /// # Errors
    /// The first tool that cannot be found, see [`Tool::locate`].
    pub fn locate() -> Result<Self, ToolError> {
        let pins = PinnedVersions::load()?;
        Ok(Self {
            helm: Tool::locate(ToolName::selected_helm()?, &pins)?,
            kind: Tool::locate(ToolName::Kind, &pins)?,
            kubectl: Tool::locate(ToolName::Kubectl, &pins)?,
        })
    }

    /// Only the selected helm (the render tier needs nothing else).
    ///
    /// # Errors
    /// See [`Tool::locate`].
    pub fn helm() -> Result<Tool, ToolError> {
        Tool::locate(ToolName::selected_helm()?, &PinnedVersions::load()?)
    }

    /// Helm 3 and Helm 4, the selected one first.
    ///
    /// # Errors
    /// The first that cannot be found, see [`Tool::locate`].
    pub fn helms() -> Result<Vec<Tool>, ToolError> {
        let pins = PinnedVersions::load()?;
        ToolName::helms()?.into_iter().map(|name| Tool::locate(name, &pins)).collect()
    }

    /// The tool by name.
    pub fn get(&self, name: ToolName) -> &Tool {
        match name {
            ToolName::Helm | ToolName::Helm4 => &self.helm,
            ToolName::Kind => &self.kind,
            ToolName::Kubectl => &self.kubectl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parses_pins_ignoring_comments_and_quotes() {
        let pins = PinnedVersions::parse(Path::new("v.env"), "# c\n\nHELM_VERSION=v3.19.0\nKIND_VERSION=\"v0.30.0\"\n");
        assert_eq!(pins.get("HELM_VERSION").unwrap(), "v3.19.0");
        assert_eq!(pins.get("KIND_VERSION").unwrap(), "v0.30.0");
        let err = pins.get("KUBERNETES_VERSION").unwrap_err().to_string();
        assert!(err.contains("KUBERNETES_VERSION"), "{err}");
    }

    #[test]
    fn workspace_pins_name_every_tool() {
        let pins = PinnedVersions::load().unwrap();
        for name in ToolName::ALL {
            assert!(pins.get(name.pin_key()).unwrap().starts_with('v'));
        }
    }

    #[test]
    fn helm_major_switch_names_a_helm_or_says_what_it_accepts() {
        assert_eq!(ToolName::helm_for_major("").unwrap(), ToolName::Helm);
        assert_eq!(ToolName::helm_for_major("3").unwrap(), ToolName::Helm);
        assert_eq!(ToolName::helm_for_major("v4").unwrap(), ToolName::Helm4);
        let err = ToolName::helm_for_major("5").unwrap_err().to_string();
        assert_eq!(err, "CERTCTL_HELM_MAJOR=5: expected 3 (Helm 3, the default) or 4 (Helm 4)");
    }

    #[test]
    fn both_helm_majors_are_pinned_apart() {
        let pins = PinnedVersions::from_file(&PinnedVersions::default_path()).unwrap();
        assert!(pins.get(ToolName::Helm.pin_key()).unwrap().starts_with("v3."));
        assert!(pins.get(ToolName::Helm4.pin_key()).unwrap().starts_with("v4."));
    }

    #[test]
    fn another_kubernetes_version_replaces_only_its_own_keys() {
        let text = "KUBERNETES_VERSION=v1.34.2\nETCD_VERSION=v3.6.5\nHELM_VERSION=v3.19.0\n\
                    KUBERNETES_OTHER_VERSIONS=\"v1.27.16 v1.37.2\"\n\
                    K8S_V1_37_2_ETCD_VERSION=v3.7.0\nK8S_V1_27_16_ETCD_VERSION=v3.5.12\n";
        let pins = PinnedVersions::parse_str(text);
        let newest = pins.clone().select_kubernetes("v1.37.2").unwrap();
        assert_eq!(newest.get("KUBERNETES_VERSION").unwrap(), "v1.37.2");
        assert_eq!(newest.get("ETCD_VERSION").unwrap(), "v3.7.0");
        assert_eq!(newest.get("HELM_VERSION").unwrap(), "v3.19.0");
        let default = pins.clone().select_kubernetes("v1.34.2").unwrap();
        assert_eq!(default.get("ETCD_VERSION").unwrap(), "v3.6.5");
        let err = pins.select_kubernetes("v1.33.0").unwrap_err().to_string();
        assert!(err.starts_with("CERTCTL_KUBERNETES=v1.33.0: not pinned;"), "{err}");
        assert!(err.ends_with("offers v1.34.2 (default) v1.27.16 v1.37.2"), "{err}");
    }

    /// Every other version the workspace pins has the components its kubeadm lists.
    #[test]
    fn workspace_pins_each_other_kubernetes_version_completely() {
        let pins = PinnedVersions::from_file(&PinnedVersions::default_path()).unwrap();
        let others = pins.get("KUBERNETES_OTHER_VERSIONS").unwrap().to_owned();
        assert!(!others.is_empty());
        for v in others.split_whitespace() {
            let prefix = format!("K8S_{}_", v.to_ascii_uppercase().replace('.', "_"));
            for key in ["ETCD_VERSION", "COREDNS_VERSION", "PAUSE_VERSION"] {
                assert!(pins.get(&format!("{prefix}{key}")).is_ok(), "{v} has no {prefix}{key} in ci/versions.env");
            }
        }
    }

    /// A binary that reports the wrong version is refused and named in the error.
    #[test]
    fn wrong_version_is_refused_with_what_was_seen() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("helm-wrong-version");
        std::fs::write(&fake, "#!/bin/sh\necho v0.0.1\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(ToolName::Helm.probe_version(&fake).unwrap(), "v0.0.1");
        let pins = PinnedVersions::parse(Path::new("v.env"), "HELM_VERSION=v9.9.9-none\n");
        let err = Tool::locate(ToolName::Helm, &pins).unwrap_err().to_string();
        assert!(err.contains("helm v9.9.9-none not found"), "{err}");
        assert!(err.contains("bash ci/tools.sh"), "{err}");
    }
}
