//! What nextest's JUnit report says about each test: passed, failed, skipped, or
//! flaky (passed only after failing on an earlier attempt).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{Report, TestCaseStatus};

/// A test as nextest names it: the binary id and the test's name in it.
///
/// # Example
/// ```
/// let id = certctl_ci::outcomes::TestId::new("certctl-scenarios::e2e", "ha::pdb_holds");
/// assert_eq!(id.to_string(), "certctl-scenarios::e2e ha::pdb_holds");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TestId {
    /// nextest's binary id (`crate::test-binary`, or the crate for unit tests).
    pub binary: String,
    /// The test's path inside the binary.
    pub name: String,
}

impl TestId {
    /// A test id from its two parts.
    pub fn new(binary: impl Into<String>, name: impl Into<String>) -> Self {
        Self { binary: binary.into(), name: name.into() }
    }
}

impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.binary, self.name)
    }
}

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Passed on the first attempt.
    Passed,
    /// Passed after `failed_attempts` failed attempts.
    Flaky {
        /// Attempts that failed before the passing one.
        failed_attempts: usize,
    },
    /// Failed on every attempt; the first line of the failure.
    Failed(String),
    /// Not run.
    Skipped,
}

/// One test's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// Which test.
    pub id: TestId,
    /// How it ended.
    pub status: Status,
    /// Wall time of the last attempt.
    pub time: Duration,
}

/// Errors reading a JUnit report.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("cannot read JUnit report {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JUnit XML.
    #[error("{path} is not a JUnit report")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: quick_junit::DeserializeError,
    },
}

/// Reads a JUnit file.
///
/// # Errors
/// [`ReadError`] naming the file.
pub fn read_report(path: &Path) -> Result<Report, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io { path: path.to_path_buf(), source })?;
    Report::deserialize_from_str(&text).map_err(|source| ReadError::Parse { path: path.to_path_buf(), source })
}

/// Every test case of a nextest report (one suite per test binary).
///
/// # Example
/// ```
/// use quick_junit::{Report, TestCase, TestCaseStatus, TestSuite};
/// let mut suite = TestSuite::new("certctl-ci::fixture");
/// suite.add_test_case(TestCase::new("passes", TestCaseStatus::success()));
/// let mut report = Report::new("nextest-run");
/// report.add_test_suite(suite);
/// let outcomes = certctl_ci::outcomes::from_report(&report);
/// assert_eq!(outcomes[0].status, certctl_ci::outcomes::Status::Passed);
/// ```
pub fn from_report(report: &Report) -> Vec<TestOutcome> {
    let mut out = Vec::new();
    for suite in &report.test_suites {
        for case in &suite.test_cases {
            let status = match &case.status {
                TestCaseStatus::Success { flaky_runs } if flaky_runs.is_empty() => Status::Passed,
                TestCaseStatus::Success { flaky_runs } => Status::Flaky { failed_attempts: flaky_runs.len() },
                TestCaseStatus::NonSuccess { message, description, .. } => {
                    let text = message.as_ref().or(description.as_ref()).map(|m| m.as_str()).unwrap_or("failed");
                    Status::Failed(text.lines().next().unwrap_or("failed").to_string())
                }
                TestCaseStatus::Skipped { .. } => Status::Skipped,
            };
            out.push(TestOutcome { id: TestId::new(suite.name.as_str(), case.name.as_str()), status, time: case.time.unwrap_or_default() });
        }
    }
    out
}

/// Counts by status, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed first time.
    pub passed: usize,
    /// Passed on a retry.
    pub flaky: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
}

/// Counts the outcomes by status.
///
/// # Example
/// ```
/// use certctl_ci::outcomes::*;
/// let o = TestOutcome { id: TestId::new("b", "t"), status: Status::Flaky { failed_attempts: 1 }, time: Default::default() };
/// assert_eq!(counts(&[o]).flaky, 1);
/// ```
pub fn counts(outcomes: &[TestOutcome]) -> Counts {
    let mut c = Counts::default();
    for o in outcomes {
        match o.status {
            Status::Passed => c.passed += 1,
            Status::Flaky { .. } => c.flaky += 1,
            Status::Failed(_) => c.failed += 1,
            Status::Skipped => c.skipped += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape nextest writes: a flaky test is a success carrying `flakyFailure`
    /// elements, a failure carries its retries as `rerunFailure`.
    const NEXTEST_JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0" uuid="45c50d1b-3a43-4aa9-b1a6-b4e5c8d5f1a0" timestamp="2026-12-02T02:00:00.000+00:00" time="1.5">
    <testsuite name="certctl-ci::fixture" tests="3" disabled="0" errors="0" failures="1">
        <testcase name="steady" classname="certctl-ci::fixture" timestamp="2026-12-02T02:00:00.000+00:00" time="0.010">
        </testcase>
        <testcase name="fails_once" classname="certctl-ci::fixture" timestamp="2026-12-02T02:00:00.000+00:00" time="0.020">
            <flakyFailure timestamp="2026-12-02T02:00:00.000+00:00" time="0.010" type="test failure">first attempt</flakyFailure>
        </testcase>
        <testcase name="always_fails" classname="certctl-ci::fixture" timestamp="2026-12-02T02:00:00.000+00:00" time="0.030">
            <failure type="test failure" message="assertion failed: broken">thread panicked</failure>
            <rerunFailure timestamp="2026-12-02T02:00:00.000+00:00" time="0.010" type="test failure">again</rerunFailure>
        </testcase>
    </testsuite>
</testsuites>
"#;

    #[test]
    fn flaky_failed_and_passed_tests_are_told_apart() {
        let report = Report::deserialize_from_str(NEXTEST_JUNIT).unwrap();
        let outcomes = from_report(&report);
        let status = |name: &str| outcomes.iter().find(|o| o.id.name == name).unwrap().status.clone();
        assert_eq!(status("steady"), Status::Passed);
        assert_eq!(status("fails_once"), Status::Flaky { failed_attempts: 1 });
        assert_eq!(status("always_fails"), Status::Failed("assertion failed: broken".into()));
        assert_eq!(outcomes[0].id.binary, "certctl-ci::fixture");
        assert_eq!(counts(&outcomes), Counts { passed: 1, flaky: 1, failed: 1, skipped: 0 });
    }

    #[test]
    fn a_file_that_is_not_junit_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        std::fs::write(&path, "not xml at all <").unwrap();
        let err = read_report(&path).unwrap_err();
        assert!(err.to_string().contains("junit.xml is not a JUnit report"), "{err}");
    }
}
