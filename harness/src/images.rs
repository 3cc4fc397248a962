//! The image set a run uses: built (or found cached) by the CI images entry
//! point, which writes `$CERTCTL_CACHE/images.env`; this module runs that
//! entry point and reads the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors reading or producing the image set.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// The entry point could not be started.
    #[error("cannot run the images entry point `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The entry point failed.
    #[error("the images entry point `{cmd}` failed with {status}; its output is above. Run it by hand to see why")]
    Build {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// images.env is missing or unreadable.
    #[error("cannot read {path}: {source} (the images entry point should have written it)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image set was built for another Kubernetes version than the run selects.
    #[error(
        "{path} holds images for Kubernetes {found}, this run wants {wanted}; run `CERTCTL_KUBERNETES={wanted} \
         bash ci/offline/ensure.sh` (or leave CERTCTL_IMAGES unset so the run does)"
    )]
    WrongKubernetes {
        /// The file.
        path: PathBuf,
        /// The version it records (`unrecorded` when absent).
        found: String,
        /// The version the pins select.
        wanted: String,
    },
    /// A required key is absent.
    #[error("{path} has no {key}= line (keys present: {present})")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The missing key.
        key: &'static str,
        /// What the file does hold.
        present: String,
    },
}

/// An image reference split for chart values.
///
/// # Example
/// ```
/// use certctl_harness::images::ImageRef;
/// let i = ImageRef::parse("localhost:5000/certctl/server:abc123");
/// assert_eq!(i.repository, "localhost:5000/certctl/server");
/// assert_eq!(i.tag, "abc123");
/// assert_eq!(ImageRef::parse("postgres").tag, "latest");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag.
    pub repository: String,
    /// The tag (`latest` when none was given).
    pub tag: String,
}

impl ImageRef {
    /// Splits `repo[:tag]`, taking care of registry ports.
    ///
    /// # Example
    /// ```
    /// assert_eq!(certctl_harness::images::ImageRef::parse("a/b:1").to_string(), "a/b:1");
    /// ```
    pub fn parse(s: &str) -> Self {
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        match s[slash..].rfind(':') {
            Some(i) => Self { repository: s[..slash + i].to_string(), tag: s[slash + i + 1..].to_string() },
            None => Self { repository: s.to_string(), tag: "latest".to_string() },
        }
    }

    /// Chart values for an `image:` block, with `pullPolicy: IfNotPresent`
    /// (images are loaded into the nodes, never pulled).
    ///
    /// # Example
    /// ```
    /// let v = certctl_harness::images::ImageRef::parse("x/y:2").values();
    /// assert_eq!(v["tag"], "2");
    /// ```
    pub fn values(&self) -> serde_json::Value {
        serde_json::json!({"repository": self.repository, "tag": self.tag, "pullPolicy": "IfNotPresent"})
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// The images of one run, from `images.env`.
///
/// # Example
/// ```
/// use certctl_harness::images::ImageSet;
/// let set = ImageSet::parse_env(
///     "NODE_IMAGE=certctl/node:v1.34.2\nSERVER_IMAGE=certctl/server:1\nAGENT_IMAGE=certctl/agent:1\nPOSTGRES_IMAGE=certctl/postgres:16\nIMAGE_SOURCE=offline\n",
///     "images.env".as_ref()).unwrap();
/// assert_eq!(set.server.tag, "1");
/// assert_eq!(set.app_images().len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// The kind node image.
    pub node: String,
    /// The Kubernetes version of the node image, if recorded.
    pub kubernetes: Option<String>,
    /// certctl-server.
    pub server: ImageRef,
    /// certctl-agent.
    pub agent: ImageRef,
    /// The postgres image the chart's bundled database uses.
    pub postgres: ImageRef,
    /// A Prometheus image (the real scraper), if the image set has one.
    pub prometheus: Option<ImageRef>,
    /// The network probe image (offline node image only), if any.
    pub netprobe: Option<ImageRef>,
    /// `offline` or `online`.
    pub source: String,
    /// The offline cert-manager build (online, the official chart is installed instead).
    pub cert_manager: Option<OfflineCertManager>,
}

/// cert-manager as `ci/offline/cert-manager.sh` builds it: our controller's
/// image, the cert-manager.io CRDs and the manifests that run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineCertManager {
    /// The controller image (loaded into the nodes).
    pub image: ImageRef,
    /// Directory of CRD files (apply server-side, wait for Established).
    pub crds: PathBuf,
    /// Namespace, RBAC and Deployment (apply after the CRDs).
    pub manifests: PathBuf,
}

impl ImageSet {
    /// Parses `KEY=VALUE` lines (comments, blanks and quotes allowed).
    ///
    /// # Errors
    /// [`ImagesError::MissingKey`] naming the key and what the file holds.
    ///
    /// # Example
    /// ```
    /// let err = certctl_harness::images::ImageSet::parse_env("NODE_IMAGE=n\n", "f".as_ref()).unwrap_err();
    /// assert!(err.to_string().contains("SERVER_IMAGE"));
    /// ```
    pub fn parse_env(text: &str, path: &Path) -> Result<Self, ImagesError> {
        let map: BTreeMap<String, String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches(['"', '\'']).to_string()))
            .collect();
        let get = |key: &'static str| {
            map.get(key).filter(|v| !v.is_empty()).cloned().ok_or_else(|| ImagesError::MissingKey {
                path: path.to_path_buf(),
                key,
                present: map.keys().cloned().collect::<Vec<_>>().join(", "),
            })
        };
        Ok(Self {
            node: get("NODE_IMAGE")?,
            kubernetes: map.get("KUBERNETES_VERSION").filter(|v| !v.is_empty()).cloned(),
            server: ImageRef::parse(&get("SERVER_IMAGE")?),
            agent: ImageRef::parse(&get("AGENT_IMAGE")?),
            postgres: ImageRef::parse(&get("POSTGRES_IMAGE")?),
            prometheus: map.get("PROMETHEUS_IMAGE").filter(|v| !v.is_empty()).map(|v| ImageRef::parse(v)),
            netprobe: map.get("NETPROBE_IMAGE").filter(|v| !v.is_empty()).map(|v| ImageRef::parse(v)),
            source: map.get("IMAGE_SOURCE").cloned().unwrap_or_else(|| "offline".into()),
            cert_manager: match (map.get("CERT_MANAGER_IMAGE"), map.get("CERT_MANAGER_CRDS"), map.get("CERT_MANAGER_MANIFESTS")) {
                (Some(i), Some(c), Some(m)) if !i.is_empty() && !c.is_empty() && !m.is_empty() => {
                    Some(OfflineCertManager { image: ImageRef::parse(i), crds: PathBuf::from(c), manifests: PathBuf::from(m) })
                }
                _ => None,
            },
        })
    }

    /// Reads `images.env`.
    ///
    /// # Errors
    /// [`ImagesError::Read`] or [`ImagesError::MissingKey`].
    ///
    /// # Example
    /// ```no_run
    /// let set = certctl_harness::images::ImageSet::read(&certctl_harness::images::images_env_path()).unwrap();
    /// println!("server image {}", set.server);
    /// ```
    pub fn read(path: &Path) -> Result<Self, ImagesError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImagesError::Read { path: path.to_path_buf(), source })?;
        Self::parse_env(&text, path)
    }

    /// Refuses an image set whose node image is not of Kubernetes `wanted`'s minor (the
    /// online node image is kind's own patch release of the default minor).
    ///
    /// # Errors
    /// [`ImagesError::WrongKubernetes`] saying how to build the right one.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::images::*;
    /// let set = ImageSet::parse_env("NODE_IMAGE=n\nSERVER_IMAGE=s\nAGENT_IMAGE=a\nPOSTGRES_IMAGE=p\nKUBERNETES_VERSION=v1.34.2\n", "f".as_ref()).unwrap();
    /// assert!(set.require_kubernetes("v1.34.2", "f".as_ref()).is_ok());
    /// assert!(set.require_kubernetes("v1.37.2", "f".as_ref()).is_err());
    /// ```
    pub fn require_kubernetes(&self, wanted: &str, path: &Path) -> Result<(), ImagesError> {
        match &self.kubernetes {
            Some(found) if minor(found) == minor(wanted) => Ok(()),
            found => Err(ImagesError::WrongKubernetes {
                path: path.to_path_buf(),
                found: found.clone().unwrap_or_else(|| "unrecorded".into()),
                wanted: wanted.to_owned(),
            }),
        }
    }

    /// The application images to load into cluster nodes.
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::images::*;
    /// # let set = ImageSet::parse_env("NODE_IMAGE=n\nSERVER_IMAGE=s\nAGENT_IMAGE=a\nPOSTGRES_IMAGE=p\n", "f".as_ref()).unwrap();
    /// assert_eq!(set.app_images(), ["s:latest", "a:latest", "p:latest"]);
    /// ```
    pub fn app_images(&self) -> Vec<String> {
        let mut images = vec![self.server.to_string(), self.agent.to_string(), self.postgres.to_string()];
        images.extend(self.prometheus.as_ref().map(ToString::to_string));
        images.extend(self.cert_manager.as_ref().map(|c| c.image.to_string()));
        // Preloaded in the offline node image (so skipped there); loaded into kind's
        // upstream node image on the online path.
        images.extend(self.netprobe.as_ref().map(ToString::to_string));
        images
    }
}

/// `v1.34` of `v1.34.2`.
fn minor(version: &str) -> &str {
    version.match_indices('.').nth(1).map_or(version, |(i, _)| &version[..i])
}

/// Where the images entry point writes the image set: `images.env`, or
/// `images-<version>.env` for the version `CERTCTL_KUBERNETES` selects.
///
/// # Example
/// ```
/// let path = certctl_harness::images::images_env_path();
/// assert!(path.file_name().unwrap().to_str().unwrap().starts_with("images"));
/// ```
pub fn images_env_path() -> PathBuf {
    crate::tools::cache_dir().join(images_env_name(std::env::var("CERTCTL_KUBERNETES").ok().as_deref()))
}

fn images_env_name(selected_kubernetes: Option<&str>) -> String {
    match selected_kubernetes.filter(|v| !v.is_empty()) {
        Some(v) => format!("images-{v}.env"),
        None => "images.env".into(),
    }
}

/// Runs the images entry point (which skips unchanged stages), its output
/// streamed to this process's stderr, then reads the image set it wrote.
///
/// # Errors
/// [`ImagesError`] naming the command and what failed.
///
/// # Example
/// ```no_run
/// use std::process::Command;
/// let mut cmd = Command::new("ci/offline/ensure.sh");
/// let set = certctl_harness::images::build(&mut cmd).unwrap();
/// println!("{set:?}");
/// ```
pub fn build(cmd: &mut Command) -> Result<ImageSet, ImagesError> {
    let line = format!("{cmd:?}");
    without_cargo_crate_env(cmd);
    let status = cmd
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status()
        .map_err(|source| ImagesError::Spawn { cmd: line.clone(), source })?;
    if !status.success() {
        return Err(ImagesError::Build { cmd: line, status });
    }
    ImageSet::read(&images_env_path())
}

/// Removes from `cmd` the variables cargo sets for the crate under test
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...), for a child that runs cargo
/// itself (the images script runs `cargo build --release`): inheriting them
/// changes what build scripts such as ring's watch (`rerun-if-env-changed`), so
/// every dependency would rebuild once under the tests and again under plain `cargo`.
///
/// # Example
/// ```
/// let mut cmd = std::process::Command::new("cargo");
/// certctl_harness::images::without_cargo_crate_env(&mut cmd);
/// ```
pub fn without_cargo_crate_env(cmd: &mut Command) -> &mut Command {
    for key in std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).filter(|k| is_cargo_crate_var(k)) {
        cmd.env_remove(key);
    }
    cmd
}

fn is_cargo_crate_var(key: &str) -> bool {
    const PREFIXES: [&str; 4] = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CRATE_"];
    const NAMES: [&str; 5] = ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR", "OUT_DIR", "CARGO"];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_crate_variables_are_dropped_for_the_images_script() {
        for k in ["CARGO_PKG_NAME", "CARGO_MANIFEST_DIR", "CARGO_CRATE_NAME", "OUT_DIR", "CARGO"] {
            assert!(is_cargo_crate_var(k), "{k}");
        }
        for k in ["CARGO_TARGET_DIR", "CARGO_HOME", "CARGO_TERM_COLOR", "CERTCTL_CACHE", "PATH"] {
            assert!(!is_cargo_crate_var(k), "{k}");
        }
    }

    #[test]
    fn parses_quotes_comments_and_export() {
        let text =
            "# made by ci\nexport NODE_IMAGE=\"n:1\"\nSERVER_IMAGE='s:2'\nAGENT_IMAGE=a:3\nPOSTGRES_IMAGE=p:4\nIMAGE_SOURCE=online\n";
        let s = ImageSet::parse_env(text, Path::new("x")).unwrap();
        assert_eq!(s.node, "n:1");
        assert_eq!(s.server, ImageRef { repository: "s".into(), tag: "2".into() });
        assert_eq!(s.source, "online");
    }

    #[test]
    fn registry_port_is_not_a_tag() {
        let i = ImageRef::parse("localhost:5000/x");
        assert_eq!((i.repository.as_str(), i.tag.as_str()), ("localhost:5000/x", "latest"));
    }

    #[test]
    fn each_selected_kubernetes_version_has_its_own_image_set() {
        assert_eq!(images_env_name(None), "images.env");
        assert_eq!(images_env_name(Some("")), "images.env");
        assert_eq!(images_env_name(Some("v1.37.2")), "images-v1.37.2.env");
    }

    #[test]
    fn kubernetes_versions_compare_by_minor() {
        let set = ImageSet::parse_env(
            "NODE_IMAGE=kindest/node:v1.34.0\nSERVER_IMAGE=s\nAGENT_IMAGE=a\nPOSTGRES_IMAGE=p\nKUBERNETES_VERSION=v1.34.0\n",
            Path::new("images.env"),
        )
        .unwrap();
        assert!(set.require_kubernetes("v1.34.2", Path::new("images.env")).is_ok());
        let err = set.require_kubernetes("v1.37.2", Path::new("images.env")).unwrap_err().to_string();
        assert!(err.starts_with("images.env holds images for Kubernetes v1.34.0, this run wants v1.37.2;"), "{err}");
        assert!(err.contains("CERTCTL_KUBERNETES=v1.37.2 bash ci/offline/ensure.sh"), "{err}");
        let unrecorded = ImageSet::parse_env("NODE_IMAGE=n\nSERVER_IMAGE=s\nAGENT_IMAGE=a\nPOSTGRES_IMAGE=p\n", Path::new("f")).unwrap();
        assert!(matches!(unrecorded.require_kubernetes("v1.34.2", Path::new("f")), Err(ImagesError::WrongKubernetes { .. })));
    }

    #[test]
    fn empty_value_counts_as_missing() {
        let err = ImageSet::parse_env("NODE_IMAGE=\n", Path::new("f")).unwrap_err();
        assert!(matches!(err, ImagesError::MissingKey { key: "NODE_IMAGE", .. }));
    }
}
