//! The chart as users run it before they upgrade: the newest `chart-v*` tag
//! before the chart under test, else the chart before its last change — exported from git, so an upgrade
//! test installs it and then upgrades to the working tree's chart.
//!
//! chart-testing upgrades only from the previous git revision; a tag is what
//! users actually installed, so it wins when there is one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors finding or exporting the previous chart.
#[derive(Debug, thiserror::Error)]
pub enum PreviousChartError {
    /// git could not run or failed.
    #[error("`git {args}` in {repo}: {detail}")]
    Git {
        /// The arguments.
        args: String,
        /// The repository.
        repo: PathBuf,
        /// Its stderr or the spawn error.
        detail: String,
    },
    /// A shallow clone lacks the history.
    #[error(
        "{repo} is a shallow clone: the chart's previous revision is not in it. Fetch the full history \
         (actions/checkout with `fetch-depth: 0`, or `git fetch --unshallow`)"
    )]
    Shallow {
        /// The repository.
        repo: PathBuf,
    },
    /// No commit ever changed the chart before this one.
    #[error("no earlier revision of chart/ in {repo}: there is nothing to upgrade from")]
    NoHistory {
        /// The repository.
        repo: PathBuf,
    },
    /// The export could not be written or read.
    #[error("cannot export the previous chart: {0}")]
    Io(#[from] std::io::Error),
    /// Its values.yaml does not parse.
    #[error("the previous chart's values.yaml: {0}")]
    Values(#[from] serde_yaml_ng::Error),
}

/// Where the previous chart came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A release tag.
    Tag(String),
    /// A commit whose chart/ is the one before the current change.
    Commit {
        /// Its hash.
        sha: String,
        /// Its subject line.
        subject: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Tag(t) => write!(f, "tag {t}"),
            Source::Commit { sha, subject } => {
                write!(f, "commit {} ({subject}), the chart before its last change", &sha[..sha.len().min(12)])
            }
        }
    }
}

/// The previous chart, exported into a temporary directory (removed on drop).
#[derive(Debug)]
pub struct PreviousChart {
    /// Where it came from.
    pub source: Source,
    dir: tempfile::TempDir,
}

impl PreviousChart {
    /// Finds and exports the previous chart of the repository at `repo`.
    ///
    /// # Errors
    /// [`PreviousChartError::Shallow`] in a shallow clone, git's failure otherwise.
    pub fn find(repo: &Path) -> Result<Self, PreviousChartError> {
        let source = select(repo)?;
        let rev = match &source {
            Source::Tag(t) => t.clone(),
            Source::Commit { sha, .. } => sha.clone(),
        };
        let dir = tempfile::Builder::new().prefix("certctl-previous-chart-").tempdir()?;
        let tar = dir.path().join("chart.tar");
        git(repo, &["archive", "--format=tar", "-o", &tar.to_string_lossy(), &rev, "chart"])?;
        let status = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(dir.path()).status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("tar -xf {} exited {status}", tar.display())).into());
        }
        std::fs::remove_file(&tar)?;
        Ok(Self { source, dir })
    }

    /// The exported chart directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("chart")
    }

    /// The previous chart's `values.yaml`, as JSON.
    ///
    /// # Errors
    /// The file is missing or does not parse.
    pub fn values(&self) -> Result<serde_json::Value, PreviousChartError> {
        Ok(serde_yaml_ng::from_str(&std::fs::read_to_string(self.path().join("values.yaml"))?)?)
    }
}

/// The newest `chart-v*` tag in HEAD's history that is not the chart under
/// test (on a release tag's own build, HEAD's tag is the new release, so the
/// one before it is what users upgrade from); else, when the working tree's
/// chart differs from HEAD, the last commit that changed chart/ (what users of
/// HEAD run); else that commit's parent.
fn select(repo: &Path) -> Result<Source, PreviousChartError> {
    let dirty = !git(repo, &["status", "--porcelain", "--", "chart"])?.trim().is_empty();
    let at_head = git(repo, &["tag", "--list", "chart-v*", "--points-at", "HEAD"])?;
    let under_test = |tag: &str| !dirty && at_head.lines().any(|t| t.trim() == tag);
    let tags = git(repo, &["tag", "--list", "chart-v*", "--merged", "HEAD", "--sort=-v:refname"])?;
    if let Some(tag) = tags.lines().map(str::trim).find(|t| !t.is_empty() && !under_test(t)) {
        return Ok(Source::Tag(tag.to_string()));
    }
    let last_change = git(repo, &["log", "-n", "1", "--format=%H", "--", "chart"])?.trim().to_string();
    if last_change.is_empty() {
        return Err(PreviousChartError::NoHistory { repo: repo.into() });
    }
    let rev = if dirty { last_change } else { format!("{last_change}^") };
    let shown = match git(repo, &["log", "-n", "1", "--format=%H %s", &rev]) {
        Ok(line) => line,
        Err(e) if git(repo, &["rev-parse", "--is-shallow-repository"]).is_ok_and(|s| s.trim() == "true") => {
            drop(e);
            return Err(PreviousChartError::Shallow { repo: repo.into() });
        }
        Err(_) => return Err(PreviousChartError::NoHistory { repo: repo.into() }),
    };
    let (sha, subject) = shown.trim().split_once(' ').unwrap_or((shown.trim(), ""));
    Ok(Source::Commit { sha: sha.into(), subject: subject.into() })
}

fn git(repo: &Path, args: &[&str]) -> Result<String, PreviousChartError> {
    let failed = |detail: String| PreviousChartError::Git { args: args.join(" "), repo: repo.into(), detail };
    let out = Command::new("git").arg("-C").arg(repo).args(args).output().map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `values` without the keys an older chart does not know (`known`: its
/// values.yaml), so the same settings install where that chart's strict
/// schema would refuse a newer key. A key whose default is an empty map
/// (env, annotations) takes anything.
///
/// # Example
/// ```
/// use serde_json::json;
/// let known = json!({"server": {"replicas": 1, "env": {}}});
/// let values = json!({"server": {"replicas": 2, "env": {"A": "1"}, "new": true}, "podSecurity": {}});
/// let pruned = certctl_harness::previous_chart::prune(&values, &known);
/// assert_eq!(pruned, json!({"server": {"replicas": 2, "env": {"A": "1"}}}));
/// ```
pub fn prune(values: &serde_json::Value, known: &serde_json::Value) -> serde_json::Value {
    match (values, known) {
        (serde_json::Value::Object(v), serde_json::Value::Object(k)) if !k.is_empty() => v
            .iter()
            .filter_map(|(key, value)| k.get(key).map(|known_child| (key.clone(), prune(value, known_child))))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        _ => values.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with two commits changing chart/.
    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let run = |args: &[&str]| assert!(Command::new("git").arg("-C").arg(p).args(args).status().unwrap().success(), "git {args:?}");
        run(&["init", "-q", "-b", "main"]);
        run(&["config", "user.email", "t@example.test"]);
        run(&["config", "user.name", "t"]);
        std::fs::create_dir(p.join("chart")).unwrap();
        for (n, version) in [(1, "0.1.0"), (2, "0.2.0")] {
            std::fs::write(p.join("chart/values.yaml"), format!("version: {version}\n")).unwrap();
            run(&["add", "-A"]);
            run(&["commit", "-q", "-m", &format!("chart change {n}")]);
        }
        dir
    }

    fn exported_version(prev: &PreviousChart) -> String {
        prev.values().unwrap()["version"].as_str().unwrap().to_string()
    }

    #[test]
    fn clean_tree_upgrades_from_before_the_last_chart_change() {
        let repo = repo();
        let prev = PreviousChart::find(repo.path()).unwrap();
        assert_eq!(exported_version(&prev), "0.1.0");
        assert!(matches!(&prev.source, Source::Commit { subject, .. } if subject == "chart change 1"), "{}", prev.source);
    }

    #[test]
    fn changed_working_tree_upgrades_from_head() {
        let repo = repo();
        std::fs::write(repo.path().join("chart/values.yaml"), "version: 0.3.0\n").unwrap();
        let prev = PreviousChart::find(repo.path()).unwrap();
        assert_eq!(exported_version(&prev), "0.2.0");
    }

    #[test]
    fn a_release_tag_wins() {
        let repo = repo();
        let ok = Command::new("git").arg("-C").arg(repo.path()).args(["tag", "chart-v0.1.0", "HEAD^"]).status().unwrap();
        assert!(ok.success());
        let prev = PreviousChart::find(repo.path()).unwrap();
        assert_eq!(prev.source, Source::Tag("chart-v0.1.0".into()));
        assert_eq!(exported_version(&prev), "0.1.0");
    }

    #[test]
    fn on_a_release_tag_the_tag_before_it_is_the_previous_chart() {
        let repo = repo();
        let tag = |name: &str, rev: &str| {
            assert!(Command::new("git").arg("-C").arg(repo.path()).args(["tag", name, rev]).status().unwrap().success());
        };
        tag("chart-v0.1.0", "HEAD^");
        tag("chart-v0.2.0", "HEAD");
        let prev = PreviousChart::find(repo.path()).unwrap();
        assert_eq!(prev.source, Source::Tag("chart-v0.1.0".into()), "HEAD's own tag is the chart under test");
        assert_eq!(exported_version(&prev), "0.1.0");
        // With the chart changed on top of the tag, the tag is what users run.
        std::fs::write(repo.path().join("chart/values.yaml"), "version: 0.3.0\n").unwrap();
        assert_eq!(PreviousChart::find(repo.path()).unwrap().source, Source::Tag("chart-v0.2.0".into()));
    }

    #[test]
    fn a_tag_outside_heads_history_is_not_an_upgrade_source() {
        let repo = repo();
        let run =
            |args: &[&str]| assert!(Command::new("git").arg("-C").arg(repo.path()).args(args).status().unwrap().success(), "git {args:?}");
        run(&["checkout", "-q", "-b", "other", "HEAD^"]);
        std::fs::write(repo.path().join("chart/values.yaml"), "version: 9.0.0\n").unwrap();
        run(&["commit", "-q", "-am", "elsewhere"]);
        run(&["tag", "chart-v9.0.0"]);
        run(&["checkout", "-q", "main"]);
        let prev = PreviousChart::find(repo.path()).unwrap();
        assert!(matches!(&prev.source, Source::Commit { subject, .. } if subject == "chart change 1"), "{}", prev.source);
    }

    #[test]
    fn a_shallow_clone_names_the_fix() {
        let repo = repo();
        let shallow = tempfile::tempdir().unwrap();
        let url = format!("file://{}", repo.path().display());
        let ok = Command::new("git").args(["clone", "-q", "--depth", "1", &url]).arg(shallow.path().join("c")).status().unwrap();
        assert!(ok.success());
        let err = PreviousChart::find(&shallow.path().join("c")).unwrap_err();
        assert!(err.to_string().contains("fetch-depth: 0"), "{err}");
    }

    #[test]
    fn prune_keeps_free_form_maps_and_drops_new_keys() {
        let known = serde_json::json!({"a": {"b": 1, "m": {}}, "l": [1]});
        let values = serde_json::json!({"a": {"b": 2, "c": 3, "m": {"x": {"y": 1}}}, "l": [2, 3], "z": 1});
        assert_eq!(prune(&values, &known), serde_json::json!({"a": {"b": 2, "m": {"x": {"y": 1}}}, "l": [2, 3]}));
    }
}
