//! Install modes: each is a values file under `scenarios/modes/`.

use std::fmt;
use std::path::PathBuf;

/// One way of installing the chart that the project proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Bundled PostgreSQL, TLS from an existing Secret, api-key auth.
    Default,
    /// `postgresql.enabled=false`; the server uses a database outside the cluster.
    ExternalDb,
    /// cert-manager issues the server certificate.
    CertManager,
    /// Three replicas, ServiceMonitor, PodDisruptionBudget, NetworkPolicy.
    Ha,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 4] = [Mode::Default, Mode::ExternalDb, Mode::CertManager, Mode::Ha];

    /// Stable name (also the values file stem).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::ExternalDb => "external-db",
            Mode::CertManager => "cert-manager",
            Mode::Ha => "ha",
        }
    }

    /// The values file the live tier installs for this mode.
    pub fn values_file(self) -> PathBuf {
        modes_dir().join(format!("{}.yaml", self.name()))
    }

    /// Parses a mode name.
    pub fn from_name(name: &str) -> Option<Mode> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn workspace_root() -> PathBuf {
    certctl_harness::workspace::root()
}

/// `scenarios/modes/`.
pub fn modes_dir() -> PathBuf {
    workspace_root().join("scenarios/modes")
}

/// Names a chart directory that every test reads instead of `chart/`: the
/// mutation runner points it at a scratch copy with one defect put back.
pub const CHART_DIR_ENV: &str = "CERTCTL_CHART_DIR";

/// The chart directory: `$CERTCTL_CHART_DIR` when set, else `chart/`.
pub fn chart_dir() -> PathBuf {
    match std::env::var_os(CHART_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("chart"),
    }
}
