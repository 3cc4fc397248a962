//! The bench tier's report: one run, one machine. The full live matrix (the shared
//! cluster's creation and loading, then every live test) against its floor — bare
//! cluster creation plus one `helm install --wait` per mode — and against the peer a
//! team would otherwise run, chart-testing's `ct install` of the same chart with the
//! same values on the same cluster. Numbers, never a verdict on time.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::phase::human;

/// One mode's installs, as the bench scenario measured them (`bench.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModeTimes {
    /// The mode's name.
    pub mode: String,
    /// `helm install --wait` of the mode as the matrix installs it.
    pub helm_install_wait: Duration,
    /// `ct install` with the same values (its `helm test` and clean-up included).
    pub ct_install: Duration,
}

/// Everything the report compares.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchNumbers {
    /// `kind create cluster` of the shared cluster's shape, up to Ready nodes.
    pub cluster_create: Duration,
    /// The matrix: the cluster phase (creation, image loading, storage) plus the live phase.
    pub matrix: Duration,
    /// Per mode.
    pub modes: Vec<ModeTimes>,
}

/// Errors reading the bench scenario's numbers.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The file is missing or unreadable.
    #[error("cannot read {path} (the bench scenario writes it)")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not the shape the scenario writes.
    #[error("{path} is not the bench scenario's report: {why}")]
    Shape {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// Reads `bench.json`: `{"modes": [{"mode", "helm_install_wait_secs", "ct_install_secs"}]}`.
///
/// # Errors
/// [`BenchError`] naming the file.
pub fn read_modes(path: &Path) -> Result<Vec<ModeTimes>, BenchError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Read { path: shown.clone(), source })?;
    let shape = |why: String| BenchError::Shape { path: shown.clone(), why };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| shape(e.to_string()))?;
    let modes = json["modes"].as_array().ok_or_else(|| shape("no modes array".into()))?;
    let secs = |m: &serde_json::Value, key: &str| {
        m[key]
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| shape(format!("a mode without {key}")))
    };
    let out = modes
        .iter()
        .map(|m| {
            Ok(ModeTimes {
                mode: m["mode"].as_str().ok_or_else(|| shape("a mode without a name".into()))?.to_string(),
                helm_install_wait: secs(m, "helm_install_wait_secs")?,
                ct_install: secs(m, "ct_install_secs")?,
            })
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    if out.is_empty() {
        return Err(shape("no mode measured".into()));
    }
    Ok(out)
}

impl BenchNumbers {
    /// Bare cluster creation plus every mode's `helm install --wait`.
    pub fn floor(&self) -> Duration {
        self.cluster_create + self.modes.iter().map(|m| m.helm_install_wait).sum::<Duration>()
    }

    /// Bare cluster creation plus every mode's `ct install`.
    pub fn ct(&self) -> Duration {
        self.cluster_create + self.modes.iter().map(|m| m.ct_install).sum::<Duration>()
    }
}

/// The report as Markdown.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use certctl_ci::bench::{render, BenchNumbers, ModeTimes};
/// let s = Duration::from_secs;
/// let n = BenchNumbers { cluster_create: s(60), matrix: s(900),
///     modes: vec![ModeTimes { mode: "default".into(), helm_install_wait: s(30), ct_install: s(90) }] };
/// let md = render(&n);
/// assert!(md.contains("| the full live matrix | 15m00s | 10.00x | 6.00x |"), "{md}");
/// ```
pub fn render(n: &BenchNumbers) -> String {
    let ratio = |a: Duration, b: Duration| if b.is_zero() { "-".to_string() } else { format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64()) };
    let (floor, ct) = (n.floor(), n.ct());
    let mut md = String::from("### Bench (one run, this machine)\n\n| mode | helm install --wait | ct install |\n|---|---:|---:|\n");
    for m in &n.modes {
        let _ = writeln!(md, "| {} | {} | {} |", m.mode, human(m.helm_install_wait), human(m.ct_install));
    }
    let _ = writeln!(md, "| bare cluster creation | {} | {} |", human(n.cluster_create), human(n.cluster_create));
    md.push_str("\n| what | wall time | vs floor | vs ct install |\n|---|---:|---:|---:|\n");
    let _ = writeln!(md, "| floor: cluster + helm install --wait per mode | {} | 1.00x | {} |", human(floor), ratio(floor, ct));
    let _ = writeln!(md, "| peer: cluster + ct install per mode | {} | {} | 1.00x |", human(ct), ratio(ct, floor));
    let _ = writeln!(md, "| the full live matrix | {} | {} | {} |", human(n.matrix), ratio(n.matrix, floor), ratio(n.matrix, ct));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_scenario_writes_and_refuses_what_it_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bench.json");
        std::fs::write(&file, r#"{"modes":[{"mode":"ha","helm_install_wait_secs":41.5,"ct_install_secs":97.25}]}"#).unwrap();
        let modes = read_modes(&file).unwrap();
        assert_eq!(
            modes,
            [ModeTimes { mode: "ha".into(), helm_install_wait: Duration::from_millis(41_500), ct_install: Duration::from_millis(97_250) }]
        );

        std::fs::write(&file, r#"{"modes":[{"mode":"ha","helm_install_wait_secs":-1,"ct_install_secs":2}]}"#).unwrap();
        let err = read_modes(&file).unwrap_err().to_string();
        assert!(err.contains("without helm_install_wait_secs") && err.contains("bench.json"), "{err}");
        std::fs::write(&file, r#"{"modes":[]}"#).unwrap();
        assert!(read_modes(&file).unwrap_err().to_string().contains("no mode measured"));
        assert!(read_modes(&dir.path().join("absent.json")).unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn the_floor_and_the_peer_share_the_cluster_creation() {
        let s = Duration::from_secs;
        let n = BenchNumbers {
            cluster_create: s(60),
            matrix: s(600),
            modes: vec![
                ModeTimes { mode: "default".into(), helm_install_wait: s(20), ct_install: s(50) },
                ModeTimes { mode: "ha".into(), helm_install_wait: s(40), ct_install: s(70) },
            ],
        };
        assert_eq!((n.floor(), n.ct()), (s(120), s(180)));
        let md = render(&n);
        assert!(md.contains("| peer: cluster + ct install per mode | 3m00s | 1.50x | 1.00x |"), "{md}");
        assert!(md.contains("| the full live matrix | 10m00s | 5.00x | 3.33x |"), "{md}");
    }
}
