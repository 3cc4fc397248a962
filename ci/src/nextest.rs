//! cargo-nextest runs for each tier: the command line and where its JUnit report is.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A nextest profile of `.config/nextest.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The fast tier.
    Ci,
    /// The live tier (`--features e2e`, e2e binaries only).
    E2e,
    /// The flaky fixture, for the verdict's own test.
    FlakyFixture,
    /// The bench scenario (ignored by the others: it measures, it does not check).
    Bench,
}

impl Profile {
    /// Its name in `.config/nextest.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ci => "ci",
            Self::E2e => "e2e",
            Self::FlakyFixture => "flaky-fixture",
            Self::Bench => "bench",
        }
    }

    /// Cargo features the profile's tests are compiled with.
    pub fn features(self) -> &'static str {
        match self {
            Self::Ci => "",
            Self::E2e | Self::Bench => "e2e",
            Self::FlakyFixture => "certctl-ci/flaky-fixture",
        }
    }

    /// The JUnit report nextest writes for this profile (its store is under the
    /// workspace's `target/nextest`, see `.config/nextest.toml`).
    ///
    /// # Example
    /// ```
    /// use certctl_ci::nextest::Profile;
    /// assert!(Profile::E2e.junit("/w".as_ref()).ends_with("target/nextest/e2e/junit.xml"));
    /// ```
    pub fn junit(self, workspace: &Path) -> PathBuf {
        workspace.join("target/nextest").join(self.name()).join("junit.xml")
    }

    /// `cargo-nextest nextest run` over the whole workspace with this profile.
    ///
    /// # Example
    /// ```
    /// use certctl_ci::nextest::Profile;
    /// let cmd = Profile::E2e.command("/c/cargo-nextest".as_ref(), "/w".as_ref());
    /// let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
    /// assert_eq!(args, ["nextest", "run", "--workspace", "--profile", "e2e", "--features", "e2e"]);
    /// ```
    pub fn command(self, nextest: &Path, workspace: &Path) -> Command {
        let mut cmd = Command::new(nextest);
        cmd.args(["nextest", "run", "--workspace", "--profile", self.name()]).current_dir(workspace);
        if !self.features().is_empty() {
            cmd.args(["--features", self.features()]);
        }
        if self == Self::Bench {
            cmd.args(["--run-ignored", "only"]);
        }
        cmd
    }
}
