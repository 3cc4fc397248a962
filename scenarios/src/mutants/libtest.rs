//! Test binaries built once by cargo, then run directly against a scratch copy: no cargo
//! per mutant, so no wait on the shared target directory's lock.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use regex::Regex;

use super::Killer;

/// Errors building or running a test binary.
#[derive(Debug, thiserror::Error)]
pub enum LibtestError {
    /// A process could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `cargo test --no-run` failed.
    #[error("`{command}` failed with {status}:\n{stderr}")]
    Build {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// The tail of cargo's stderr.
        stderr: String,
    },
    /// cargo built the package but named no executable for a target.
    #[error("cargo reported no executable for {test} of {package}")]
    NoExecutable {
        /// The package.
        package: String,
        /// The test target.
        test: String,
    },
    /// A filter that selects nothing would pass whatever the chart says.
    #[error("{binary} ran no test (filter {filter:?} matched none): the catalogue names a test that moved")]
    NothingRan {
        /// The binary.
        binary: String,
        /// The filter.
        filter: String,
    },
}

/// One test target as cargo builds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Cargo package.
    pub package: &'static str,
    /// `--test` name.
    pub test: &'static str,
    /// Features it is built with.
    pub features: &'static [&'static str],
}

impl From<&Killer> for Target {
    fn from(k: &Killer) -> Self {
        Self { package: k.package, test: k.test, features: k.features }
    }
}

/// A built test executable and the package directory it runs in.
#[derive(Debug, Clone)]
pub struct Built {
    /// The executable.
    pub exe: PathBuf,
    /// Its package's directory (cargo's cwd and `CARGO_MANIFEST_DIR` for tests).
    pub package_dir: PathBuf,
}

/// Built test executables of one workspace.
#[derive(Debug, Clone, Default)]
pub struct Binaries(HashMap<Target, Built>);

impl Binaries {
    /// Builds every target (one cargo call per package and feature set) in `workspace`
    /// and records their executables.
    ///
    /// # Errors
    /// [`LibtestError::Build`] with cargo's message, [`LibtestError::NoExecutable`].
    pub fn build(workspace: &Path, targets: &[Target]) -> Result<Self, LibtestError> {
        let mut groups: HashMap<(&str, &[&str]), Vec<&str>> = HashMap::new();
        for t in targets {
            let tests = groups.entry((t.package, t.features)).or_default();
            if !tests.contains(&t.test) {
                tests.push(t.test);
            }
        }
        let mut found = HashMap::new();
        for ((package, features), tests) in groups {
            let built = cargo_no_run(workspace, package, features, &tests)?;
            for test in tests {
                let exe = built.get(test).ok_or_else(|| LibtestError::NoExecutable { package: package.into(), test: test.into() })?;
                found.insert(Target { package, test, features }, exe.clone());
            }
        }
        Ok(Self(found))
    }

    /// A built target.
    pub fn get(&self, target: &Target) -> Option<&Built> {
        self.0.get(target)
    }
}

/// `cargo test --no-run --message-format=json`: test target name -> what cargo built.
fn cargo_no_run(workspace: &Path, package: &str, features: &[&str], tests: &[&str]) -> Result<HashMap<String, Built>, LibtestError> {
    let mut args = vec!["test".to_owned(), "--no-run".into(), "-p".into(), package.into()];
    if !features.is_empty() {
        args.extend(["--features".into(), features.join(",")]);
    }
    args.extend(tests.iter().flat_map(|t| ["--test".to_owned(), (*t).to_owned()]));
    let mut found = HashMap::new();
    for msg in cargo_json(workspace, &args, None)? {
        let is_test = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "test"));
        let manifest = msg["manifest_path"].as_str().map(Path::new).and_then(Path::parent);
        if let (true, Some(name), Some(exe), Some(dir)) = (is_test, msg["target"]["name"].as_str(), msg["executable"].as_str(), manifest) {
            found.insert(name.to_owned(), Built { exe: PathBuf::from(exe), package_dir: dir.to_owned() });
        }
    }
    Ok(found)
}

/// Builds binary `bin` of `package` in `workspace` into `target_dir`; its path.
///
/// # Errors
/// [`LibtestError::Build`], or [`LibtestError::NoExecutable`] when cargo names none.
pub fn build_bin(workspace: &Path, package: &str, bin: &str, target_dir: &Path) -> Result<PathBuf, LibtestError> {
    let args = ["build", "-p", package, "--bin", bin].map(str::to_owned);
    cargo_json(workspace, &args, Some(target_dir))?
        .iter()
        .filter(|m| m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| LibtestError::NoExecutable { package: package.into(), test: bin.into() })
}

/// Runs `cargo ARGS --message-format=json` in `workspace` (without the variables cargo set
/// for a test running this); its JSON messages.
fn cargo_json(workspace: &Path, args: &[String], target_dir: Option<&Path>) -> Result<Vec<serde_json::Value>, LibtestError> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace).args(args).arg("--message-format=json");
    certctl_harness::images::without_cargo_crate_env(&mut cmd);
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let command = format!("cargo {} (in {})", args.join(" "), workspace.display());
    let out = cmd.output().map_err(|source| LibtestError::Spawn { program: "cargo".into(), source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        return Err(LibtestError::Build { command, status: out.status, stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n") });
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// What one run of a test binary showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Failed tests, each with the first line of its panic message.
    pub failed: Vec<(String, String)>,
    /// How many tests ran.
    pub ran: usize,
    /// Exit status.
    pub status: ExitStatus,
    /// Wall time.
    pub elapsed: Duration,
    /// stdout and stderr, for a report on something unexpected.
    pub output: String,
}

impl Outcome {
    /// Whether the binary failed (a test failed, or it crashed).
    pub fn failed_run(&self) -> bool {
        !self.status.success()
    }
}

/// Runs `exe` as cargo would (cwd and `CARGO_MANIFEST_DIR` the package directory) with
/// `filter` and the extra environment.
///
/// # Errors
/// [`LibtestError::Spawn`], or [`LibtestError::NothingRan`] when the filter selects nothing.
pub fn run(exe: &Path, package_dir: &Path, filter: &str, env: &[(&str, OsString)]) -> Result<Outcome, LibtestError> {
    let mut cmd = Command::new(exe);
    cmd.current_dir(package_dir).env("CARGO_MANIFEST_DIR", package_dir);
    if !filter.is_empty() {
        cmd.arg(filter);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().map_err(|source| LibtestError::Spawn { program: exe.display().to_string(), source })?;
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (ran, failed) = parse(&output);
    if ran == 0 && out.status.success() {
        return Err(LibtestError::NothingRan { binary: exe.display().to_string(), filter: filter.into() });
    }
    Ok(Outcome { failed, ran, status: out.status, elapsed: started.elapsed(), output })
}

/// (tests run, failed tests with their first panic line) from libtest's output.
fn parse(output: &str) -> (usize, Vec<(String, String)>) {
    let result = Regex::new(r"test result: \w+\. (\d+) passed; (\d+) failed").expect("static regex");
    let ran = result.captures_iter(output).map(|c| c[1].parse::<usize>().unwrap_or(0) + c[2].parse::<usize>().unwrap_or(0)).sum();
    let failed = output
        .lines()
        .filter_map(|l| l.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .map(|name| (name.to_owned(), panic_line(output, name)))
        .collect();
    (ran, failed)
}

/// The first line of what a failed test panicked with.
fn panic_line(output: &str, test: &str) -> String {
    let header = format!("---- {test} stdout ----");
    let Some(section) = output.split(&header).nth(1) else { return String::new() };
    let mut lines = section.lines().skip_while(|l| !l.contains("panicked at"));
    lines.next();
    lines.next().unwrap_or_default().trim().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED: &str = "running 2 tests
test a::one ... ok
test b_two ... FAILED

failures:

---- b_two stdout ----

thread 'b_two' panicked at scenarios/tests/x.rs:1:2:
missing api key: rendered 12 objects instead of refusing
note: run with `RUST_BACKTRACE=1`

failures:
    b_two

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.5s
";

    #[test]
    fn failed_tests_are_named_with_their_panic() {
        let (ran, failed) = parse(FAILED);
        assert_eq!(ran, 2);
        assert_eq!(failed, vec![("b_two".to_owned(), "missing api key: rendered 12 objects instead of refusing".to_owned())]);
    }

    #[test]
    fn a_filter_matching_nothing_runs_nothing() {
        let (ran, failed) = parse("running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 9 filtered out\n");
        assert_eq!((ran, failed.len()), (0, 0));
    }
}
