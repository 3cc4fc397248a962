//! The flaky verdict end to end: the real cargo-nextest runs a fixture test that fails
//! on its first attempt and passes on the retry; the runner's `judge` then fails the
//! run and names the test, passes it with a warning when allow-listed, and fails it
//! again when the entry has expired.
//!
//! Needs the pinned cargo-nextest (`bash ci/tools.sh nextest`); the runner passes its
//! path in CERTCTL_NEXTEST.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use certctl_ci::nextest::Profile;
use certctl_ci::outcomes::{self, Status};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn nextest() -> PathBuf {
    if let Some(p) = std::env::var_os("CERTCTL_NEXTEST").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let pins = certctl_harness::tools::PinnedVersions::from_file(&workspace().join("ci/versions.env")).unwrap();
    let version = pins.get("NEXTEST_VERSION").unwrap();
    let cached = certctl_harness::tools::cache_dir().join("tools/cargo-nextest").join(version).join("cargo-nextest");
    assert!(
        cached.is_file(),
        "cargo-nextest {version} not found at {}: run `bash ci/tools.sh nextest` (or set CERTCTL_NEXTEST)",
        cached.display()
    );
    cached
}

/// Runs the fixture once under nextest (retries from the profile) and returns its JUnit.
fn fixture_report() -> &'static Path {
    static REPORT: OnceLock<PathBuf> = OnceLock::new();
    REPORT.get_or_init(|| {
        let state = tempfile::tempdir().unwrap();
        let ws = workspace();
        let mut cmd = Profile::FlakyFixture.command(&nextest(), &ws);
        certctl_harness::images::without_cargo_crate_env(&mut cmd);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("NEXTEST_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd.env("CERTCTL_FLAKY_FIXTURE_STATE", state.path()).output().expect("cargo-nextest runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "nextest must pass the fixture on its retry:\n{text}");
        assert!(text.contains("FLAKY"), "nextest did not see a flaky test:\n{text}");
        // Copied out: another run of the profile would overwrite it.
        let kept = std::env::temp_dir().join(format!("certctl-flaky-fixture-{}.xml", std::process::id()));
        std::fs::copy(Profile::FlakyFixture.junit(&ws), &kept).unwrap();
        kept
    })
}

fn judge(allow_list: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("allow.txt");
    std::fs::write(&list, allow_list).unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_certctl-ci")).arg("judge").arg(fixture_report()).arg("--allow-list").arg(&list).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

const FIXTURE: &str = "certctl-ci::flaky_fixture fails_on_the_first_attempt_then_passes";

fn day(offset: i64) -> String {
    (certctl_ci::run::today() + time::Duration::days(offset)).to_string()
}

#[test]
fn nextest_reports_the_fixture_as_flaky() {
    let report = outcomes::read_report(fixture_report()).unwrap();
    let fixture = outcomes::from_report(&report).into_iter().find(|o| o.id.to_string() == FIXTURE).expect("the fixture ran");
    assert_eq!(fixture.status, Status::Flaky { failed_attempts: 1 });
}

#[test]
fn an_unlisted_flaky_test_fails_the_gate_by_name() {
    let (passed, text) = judge("");
    assert!(!passed, "{text}");
    assert!(text.contains(&format!("error: FLAKY {FIXTURE}: passed only on attempt 2")), "{text}");
}

#[test]
fn an_allow_listed_flaky_test_passes_with_a_warning() {
    let (passed, text) = judge(&format!("{FIXTURE} | {} | fixture, retried on purpose\n", day(0)));
    assert!(passed, "{text}");
    assert!(text.contains(&format!("warning: FLAKY {FIXTURE}")) && text.contains("(fixture, retried on purpose)"), "{text}");
}

#[test]
fn an_expired_entry_fails_the_gate() {
    let (passed, text) = judge(&format!("{FIXTURE} | {} | fixture, retried on purpose\n", day(-1)));
    assert!(!passed, "{text}");
    assert!(text.contains(&format!("its allow-list entry expired on {}", day(-1))), "{text}");
}
