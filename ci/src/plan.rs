//! Which phases each tier runs, in which order. `gate` is `fast` then `e2e` with the
//! shared set-up done once — the fast tier runs once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A tier the runner knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Lint and the fast tests: unit, real PostgreSQL, real helm renders.
    Fast,
    /// The live matrix on kind, with everything it needs set up first.
    E2e,
    /// `fast` then `e2e`: what the release gate and `.ci/run` run.
    Gate,
    /// The live matrix on a cluster it creates, against its floor and `ct install`.
    Bench,
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fast" => Ok(Self::Fast),
            "e2e" => Ok(Self::E2e),
            "gate" => Ok(Self::Gate),
            "bench" => Ok(Self::Bench),
            other => Err(format!("unknown tier `{other}`: expected fast, e2e, gate or bench")),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fast => "fast",
            Self::E2e => "e2e",
            Self::Gate => "gate",
            Self::Bench => "bench",
        })
    }
}

/// One phase of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Packages, a running docker daemon, inotify limits, disk (`ci/host-bootstrap.sh`).
    Host,
    /// helm, cargo-nextest, actionlint and the CRDs (`ci/tools.sh`).
    FastTools,
    /// `cargo fmt --all --check`.
    Fmt,
    /// `cargo clippy --workspace --all-targets -- -D warnings`.
    Clippy,
    /// actionlint over `.github/workflows/`.
    Actionlint,
    /// The fast tests under nextest (profile `ci`).
    Tests,
    /// Doc examples (nextest does not run them).
    Doctests,
    /// Cluster and application images (`ci/offline/ensure.sh`).
    Images,
    /// kind and kubectl (after the images: the offline Kubernetes build yields kubectl).
    LiveTools,
    /// A 3-node cluster: nodes Ready, DNS, NetworkPolicy enforced (`ci/smoke-cluster.sh`).
    Smoke,
    /// The shared kind cluster, created and loaded before any live test runs.
    Cluster,
    /// The live tests under nextest (profile `e2e`).
    Live,
    /// chart-testing's `ct` (`ci/tools.sh ct`), for the bench.
    BenchTools,
    /// The bench scenario: `helm install --wait` and `ct install` per mode (profile `bench`).
    Bench,
}

impl Step {
    /// Its name in progress lines and the phase table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::FastTools => "tools",
            Self::Fmt => "fmt",
            Self::Clippy => "clippy",
            Self::Actionlint => "actionlint",
            Self::Tests => "tests",
            Self::Doctests => "doctests",
            Self::Images => "images",
            Self::LiveTools => "live-tools",
            Self::Smoke => "smoke",
            Self::Cluster => "cluster",
            Self::Live => "live",
            Self::BenchTools => "bench-tools",
            Self::Bench => "bench",
        }
    }

    /// Its time budget: past it the phase is stopped and the run fails, saying so.
    /// Cold numbers on a 2-core host, with room.
    pub fn budget(self) -> Duration {
        let min = |m: u64| Duration::from_secs(m * 60);
        match self {
            Self::Host => min(15),
            Self::FastTools => min(30),
            Self::Fmt => min(2),
            Self::Clippy => min(30),
            Self::Actionlint => min(2),
            Self::Tests => min(40),
            Self::Doctests => min(30),
            Self::Images => min(75),
            Self::LiveTools => min(20),
            Self::Smoke => min(10),
            Self::Cluster => min(15),
            Self::Live => min(60),
            Self::BenchTools => min(15),
            Self::Bench => min(40),
        }
    }
}

/// The phases of a tier, in order.
///
/// # Example
/// ```
/// use certctl_ci::plan::{plan, Step, Tier};
/// let gate = plan(Tier::Gate);
/// assert_eq!(gate.iter().filter(|s| **s == Step::Tests).count(), 1);
/// ```
pub fn plan(tier: Tier) -> Vec<Step> {
    use Step::*;
    let fast = [Host, FastTools, Fmt, Clippy, Actionlint, Tests, Doctests];
    let live = [Host, Images, FastTools, LiveTools, Smoke, Cluster, Live];
    let mut steps: Vec<Step> = match tier {
        Tier::Fast => fast.to_vec(),
        Tier::E2e => live.to_vec(),
        Tier::Gate => fast.iter().chain(&live).copied().collect(),
        // The bench's cluster is created by it (its creation is measured), the installs
        // are measured on it before the matrix runs there.
        Tier::Bench => vec![Host, Images, FastTools, LiveTools, BenchTools, Cluster, Bench, Live],
    };
    // Set-up shared by both halves of the gate runs once.
    let mut seen = Vec::new();
    steps.retain(|s| {
        let first = !seen.contains(s);
        seen.push(*s);
        first
    });
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use Step::*;

    fn position(steps: &[Step], s: Step) -> usize {
        steps.iter().position(|x| *x == s).unwrap_or_else(|| panic!("{s:?} missing from {steps:?}"))
    }

    #[test]
    fn the_gate_runs_every_phase_once_fast_tier_first() {
        let gate = plan(Tier::Gate);
        for s in [Host, FastTools, Fmt, Clippy, Actionlint, Tests, Doctests, Images, LiveTools, Smoke, Cluster, Live] {
            assert_eq!(gate.iter().filter(|x| **x == s).count(), 1, "{s:?} in {gate:?}");
        }
        assert!(position(&gate, Doctests) < position(&gate, Images), "fast tier before the live one: {gate:?}");
    }

    #[test]
    fn the_cluster_exists_before_live_tests_and_after_images() {
        for tier in [Tier::E2e, Tier::Gate] {
            let p = plan(tier);
            assert!(position(&p, Images) < position(&p, LiveTools));
            assert!(position(&p, LiveTools) < position(&p, Cluster));
            assert!(position(&p, Cluster) < position(&p, Live));
        }
    }

    #[test]
    fn fast_needs_no_cluster_and_e2e_no_lint() {
        let fast = plan(Tier::Fast);
        assert!(!fast.contains(&Images) && !fast.contains(&Cluster) && !fast.contains(&Live));
        let e2e = plan(Tier::E2e);
        assert!(!e2e.contains(&Clippy) && !e2e.contains(&Tests));
    }

    #[test]
    fn the_bench_measures_on_its_own_cluster_before_the_matrix() {
        let b = plan(Tier::Bench);
        assert!(position(&b, BenchTools) < position(&b, Cluster));
        assert!(position(&b, Cluster) < position(&b, Bench));
        assert!(position(&b, Bench) < position(&b, Live));
        assert!(!b.contains(&Tests) && !b.contains(&Smoke));
    }

    #[test]
    fn tiers_parse_by_name() {
        assert_eq!("gate".parse::<Tier>().unwrap(), Tier::Gate);
        assert!("all".parse::<Tier>().unwrap_err().contains("fast, e2e, gate or bench"));
    }
}
