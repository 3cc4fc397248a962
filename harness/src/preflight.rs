//! Host checks run before anything costly: a reachable docker daemon, the
//! pinned tools, free disk and inotify limits. Every problem found is reported
//! at once, each with the command that fixes it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What preflight requires.
///
/// # Example
/// ```
/// use certctl_harness::preflight::Requirements;
/// let r = Requirements::default();
/// assert!(r.min_free_gib >= 5);
/// ```
#[derive(Debug, Clone)]
pub struct Requirements {
    /// The docker CLI to ask.
    pub docker: PathBuf,
    /// Tools that must exist and be executable: (name, path).
    pub tools: Vec<(String, PathBuf)>,
    /// Directories whose filesystems need `min_free_gib` free.
    pub disk_paths: Vec<PathBuf>,
    /// Free space needed on each of `disk_paths` and docker's data root.
    pub min_free_gib: u64,
    /// Minimum `fs.inotify.max_user_watches`.
    pub min_inotify_watches: u64,
    /// Minimum `fs.inotify.max_user_instances`.
    pub min_inotify_instances: u64,
}

impl Default for Requirements {
    fn default() -> Self {
        Self {
            docker: PathBuf::from("docker"),
            tools: Vec::new(),
            disk_paths: Vec::new(),
            min_free_gib: 10,
            // kind's documented values for several nodes on one host.
            min_inotify_watches: 524_288,
            min_inotify_instances: 512,
        }
    }
}

/// The free disk a run needs, in GiB: `MIN_FREE_GIB_RUN` from `ci/versions.env`, the
/// number `ci/host-bootstrap.sh` checks once the images are built (preflight runs after
/// them).
///
/// # Errors
/// When the pins cannot be read or the value is not a number.
///
/// # Example
/// ```
/// assert!(certctl_harness::preflight::min_free_gib().unwrap() >= 5);
/// ```
pub fn min_free_gib() -> Result<u64, crate::tools::ToolError> {
    const KEY: &str = "MIN_FREE_GIB_RUN";
    let pins = crate::tools::PinnedVersions::load()?;
    let value = pins.get(KEY)?;
    value.parse().map_err(|_| crate::tools::ToolError::MissingPin {
        path: crate::tools::PinnedVersions::default_path(),
        key: format!("{KEY} (a number, not {value:?})"),
    })
}

/// One failed check with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, with what was observed.
    pub what: String,
    /// The command or action that fixes it.
    pub fix: String,
}

/// Everything preflight found wrong.
#[derive(Debug, thiserror::Error)]
pub struct PreflightError {
    /// The problems, in check order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "preflight found {} problem(s) on this host:", self.problems.len())?;
        for (i, p) in self.problems.iter().enumerate() {
            writeln!(f, "  {}. {}\n     fix: {}", i + 1, p.what, p.fix)?;
        }
        Ok(())
    }
}

/// Runs every check and returns all problems together.
///
/// # Errors
/// [`PreflightError`] listing each problem and its fix.
///
/// # Example
/// ```no_run
/// use certctl_harness::preflight::{run, Requirements};
/// let mut req = Requirements::default();
/// req.tools.push(("kind".into(), "/usr/local/bin/kind".into()));
/// req.disk_paths.push(std::env::temp_dir());
/// run(&req).expect("host is ready for kind");
/// ```
pub fn run(req: &Requirements) -> Result<(), PreflightError> {
    let mut problems = Vec::new();
    let docker_root = check_docker(&req.docker, &mut problems);
    for (name, path) in &req.tools {
        check_tool(name, path, &mut problems);
    }
    let mut disks: Vec<PathBuf> = req.disk_paths.clone();
    disks.extend(docker_root);
    for p in &disks {
        check_disk(p, req.min_free_gib, &mut problems);
    }
    check_inotify(Path::new("/proc/sys/fs/inotify"), req, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PreflightError { problems })
    }
}

/// Returns docker's data root when the daemon answers.
fn check_docker(docker: &Path, problems: &mut Vec<Problem>) -> Option<PathBuf> {
    match Command::new(docker).args(["info", "--format", "{{.DockerRootDir}}"]).output() {
        Err(e) => {
            problems.push(Problem {
                what: format!("the docker CLI `{}` cannot be run: {e}", docker.display()),
                fix: "run `bash ci/host-bootstrap.sh` (installs Debian docker.io and starts dockerd)".into(),
            });
            None
        }
        Ok(out) if !out.status.success() => {
            problems.push(Problem {
                what: format!("the docker daemon does not answer: {}", String::from_utf8_lossy(&out.stderr).trim()),
                fix: "run `bash ci/host-bootstrap.sh` (starts dockerd), or `systemctl start docker`".into(),
            });
            None
        }
        Ok(out) => {
            let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!root.is_empty()).then(|| PathBuf::from(root))
        }
    }
}

fn check_tool(name: &str, path: &Path, problems: &mut Vec<Problem>) {
    use std::os::unix::fs::PermissionsExt;
    let executable = std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !matches!(executable, Ok(true)) {
        problems.push(Problem {
            what: format!("{name} at `{}` is missing or not executable", path.display()),
            fix: format!("provision the pinned tools: `bash ci/tools.sh` (or set CERTCTL_{} to its path)", name.to_ascii_uppercase()),
        });
    }
}

fn check_disk(path: &Path, min_gib: u64, problems: &mut Vec<Problem>) {
    // Check the nearest existing ancestor: the cache dir may not exist yet.
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    match free_gib(existing) {
        Some(free) if free < min_gib => problems.push(Problem {
            what: format!("only {free} GiB free under {} (need {min_gib} GiB)", path.display()),
            fix: "free space there (e.g. `docker system prune`, or remove old clusters: `kind get clusters`) or point CERTCTL_CACHE elsewhere".to_string(),
        }),
        Some(_) => {}
        None => problems.push(Problem {
            what: format!("cannot read free space under {}", path.display()),
            fix: "check that `df -Pk <path>` works on this host".into(),
        }),
    }
}

/// Free GiB of the filesystem holding `path`, from `df -Pk`.
fn free_gib(path: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    parse_df_available_kib(&String::from_utf8_lossy(&out.stdout)).map(|kib| kib / (1024 * 1024))
}

/// The "Available" column (KiB) of `df -Pk` output.
fn parse_df_available_kib(out: &str) -> Option<u64> {
    out.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

fn check_inotify(dir: &Path, req: &Requirements, problems: &mut Vec<Problem>) {
    for (key, min) in [("max_user_watches", req.min_inotify_watches), ("max_user_instances", req.min_inotify_instances)] {
        let value = std::fs::read_to_string(dir.join(key)).ok().and_then(|s| s.trim().parse::<u64>().ok());
        match value {
            Some(v) if v >= min => {}
            seen => problems.push(Problem {
                what: format!(
                    "fs.inotify.{key} is {} (need at least {min}; kind nodes fail with \"too many open files\")",
                    seen.map_or("unreadable".to_string(), |v| v.to_string())
                ),
                fix: format!("sudo sysctl -w fs.inotify.{key}={min}  (or `bash ci/host-bootstrap.sh`, which sets both)"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_parsing() {
        let out = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda 264000000 12000000 83886080 13% /\n";
        assert_eq!(parse_df_available_kib(out), Some(83_886_080));
        assert_eq!(parse_df_available_kib("garbage"), None);
    }

    #[test]
    fn low_inotify_limits_are_reported_with_the_sysctl_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("max_user_watches"), "8192\n").unwrap();
        std::fs::write(dir.path().join("max_user_instances"), "1024\n").unwrap();
        let mut problems = Vec::new();
        check_inotify(dir.path(), &Requirements::default(), &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].what.contains("max_user_watches is 8192"));
        assert!(problems[0].fix.starts_with("sudo sysctl -w fs.inotify.max_user_watches=524288"));
    }

    #[test]
    fn missing_tools_and_docker_are_all_reported_together() {
        let req = Requirements {
            docker: "/nonexistent/docker".into(),
            tools: vec![("kind".into(), "/nonexistent/kind".into())],
            disk_paths: vec![std::env::temp_dir().join("certctl-preflight-not-there/sub")],
            min_free_gib: 0,
            min_inotify_watches: 0,
            min_inotify_instances: 0,
        };
        let err = run(&req).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 2, "{text}");
        assert!(text.contains("docker CLI") && text.contains("kind at `/nonexistent/kind` is missing"), "{text}");
        assert!(text.contains("fix: "), "{text}");
    }

    #[test]
    fn too_little_disk_is_reported() {
        let mut problems = Vec::new();
        check_disk(&std::env::temp_dir(), u64::MAX, &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].what.contains("GiB free"));
    }
}
