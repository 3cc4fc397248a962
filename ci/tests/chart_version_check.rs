//! The release gate's version check against real git history: a tag must name the
//! chart's version, and that version must rise over the previous chart-v* tag.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A repository holding the script and a chart, with the chart at `versions[i]`
/// committed and tagged `chart-v<version>` in turn.
fn repo(versions: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("ci")).unwrap();
    std::fs::create_dir_all(d.join("chart")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("chart-version-check.sh");
    std::fs::copy(script, d.join("ci/chart-version-check.sh")).unwrap();
    git(d, &["init", "-q"]);
    for v in versions {
        std::fs::write(d.join("chart/Chart.yaml"), format!("apiVersion: v2\nname: certctl\nversion: {v}\n")).unwrap();
        git(d, &["add", "-A"]);
        git(d, &["-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", v]);
        git(d, &["tag", &format!("chart-v{v}")]);
    }
    dir
}

fn check(dir: &Path, tag: &str) -> (bool, String) {
    let out = Command::new("bash").arg("ci/chart-version-check.sh").arg(tag).current_dir(dir).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_higher_version_passes_and_the_first_tag_has_nothing_to_compare() {
    let dir = repo(&["1.0.0", "1.0.10"]);
    let (ok, text) = check(dir.path(), "chart-v1.0.10");
    assert!(ok && text.contains("chart 1.0.10 > 1.0.0 (chart-v1.0.0)"), "{text}");
    let first = repo(&["1.0.0"]);
    let (ok, text) = check(first.path(), "chart-v1.0.0");
    assert!(ok && text.contains("first chart-v* tag"), "{text}");
}

#[test]
fn a_lower_version_is_refused() {
    let dir = repo(&["1.2.0", "1.1.9"]);
    let (ok, text) = check(dir.path(), "chart-v1.1.9");
    assert!(!ok && text.contains("1.1.9 does not increase over 1.2.0 (chart-v1.2.0)"), "{text}");
}

#[test]
fn a_tag_that_does_not_name_the_chart_version_is_refused() {
    let dir = repo(&["2.0.0"]);
    git(dir.path(), &["tag", "chart-v2.0.1"]);
    let (ok, text) = check(dir.path(), "chart-v2.0.1");
    assert!(!ok && text.contains("does not name the chart's version 2.0.0"), "{text}");
}
