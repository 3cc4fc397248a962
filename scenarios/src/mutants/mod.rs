//! The proof proves itself: a catalogue of mutants, each putting back one defect the
//! chart's audit closed (or breaking one promise the suite proves), and a runner that
//! applies one mutant to a scratch copy and runs the tests expected to kill it.
//!
//! - [`catalogue`]: the mutants, as data.
//! - [`scratch`]: a scratch copy of `chart/` (or of the workspace) with a mutant's edits.
//! - [`libtest`]: one test binary run against a scratch copy; which tests failed.
//! - [`steps`]: the failed steps of a live scenario, read from its JUnit.
//! - [`run`]: controls first (the unmutated copy passes), then every mutant.
//! - [`report`]: the score as a Markdown table and JUnit.

pub mod catalogue;
pub mod libtest;
pub mod report;
pub mod run;
pub mod scratch;
pub mod steps;

use std::fmt;

/// One defect put back: small, named edits of files of the workspace.
#[derive(Debug, Clone)]
pub struct Mutant {
    /// Stable id (`d3-server-read-only-root-at-pod-scope`).
    pub id: &'static str,
    /// The audit finding or promise it re-introduces (`D3: ...`).
    pub reintroduces: &'static str,
    /// Applied in order; each must apply exactly once.
    pub edits: Vec<Edit>,
    /// Tried in order, cheapest first; the first that fails kills the mutant.
    pub killers: Vec<Killer>,
}

impl Mutant {
    /// Whether every edit touches `chart/` only: such a mutant needs a scratch chart,
    /// anything else a scratch workspace (a rebuilt server).
    pub fn chart_only(&self) -> bool {
        self.edits.iter().all(|e| e.file.starts_with("chart/"))
    }

    /// The cheapest tier among its killers.
    pub fn tier(&self) -> Tier {
        self.killers.iter().map(|k| k.tier).min().unwrap_or(Tier::Live)
    }
}

/// A text replacement in one file; `find` must occur exactly once, so a target that moved
/// or doubled makes the mutant fail as "did not apply", never pass.
#[derive(Debug, Clone)]
pub struct Edit {
    /// Workspace-relative path (`chart/templates/_helpers.tpl`).
    pub file: &'static str,
    /// The text to replace.
    pub find: String,
    /// What replaces it.
    pub replace: String,
}

impl Edit {
    /// Replaces `find` (exactly one occurrence) with `replace` in `file`.
    pub fn new(file: &'static str, find: impl Into<String>, replace: impl Into<String>) -> Self {
        Self { file, find: find.into(), replace: replace.into() }
    }
}

/// Where a killer runs, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// `helm template` tests of this crate: seconds.
    Render,
    /// The server's own tests against a real PostgreSQL, rebuilt from a scratch workspace.
    Server,
    /// A scenario on the kind cluster.
    Live,
}

impl Tier {
    /// Every tier.
    pub const ALL: [Tier; 3] = [Tier::Render, Tier::Server, Tier::Live];

    /// Lower-case name, as the command line takes it.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Render => "render",
            Tier::Server => "server",
            Tier::Live => "live",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A test binary of the workspace, optionally filtered, expected to fail on a mutant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Killer {
    /// Where it runs.
    pub tier: Tier,
    /// Cargo package (`certctl-scenarios`).
    pub package: &'static str,
    /// `--test` target (`render_values`).
    pub test: &'static str,
    /// Cargo features the target needs (`e2e`).
    pub features: &'static [&'static str],
    /// libtest filter (a test path or part of one); empty runs the whole binary.
    pub filter: &'static str,
    /// The live scenario whose JUnit names the failed steps (`ha`).
    pub scenario: Option<&'static str>,
}

impl Killer {
    /// A render-tier test binary of this crate, filtered.
    pub const fn render(test: &'static str, filter: &'static str) -> Self {
        Self { tier: Tier::Render, package: "certctl-scenarios", test, features: &[], filter, scenario: None }
    }

    /// A test of the server's own suite.
    pub const fn server(test: &'static str, filter: &'static str) -> Self {
        Self { tier: Tier::Server, package: "certctl-server", test, features: &[], filter, scenario: None }
    }

    /// A live scenario of the e2e binary: `filter` selects its test, `scenario` names
    /// its JUnit file.
    pub const fn live(filter: &'static str, scenario: &'static str) -> Self {
        Self { tier: Tier::Live, package: "certctl-scenarios", test: "e2e", features: &["e2e"], filter, scenario: Some(scenario) }
    }
}

impl fmt::Display for Killer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.test)?;
        if !self.filter.is_empty() {
            write!(f, " {}", self.filter)?;
        }
        Ok(())
    }
}
