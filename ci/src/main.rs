//! `cargo run -p certctl-ci -- <fast|e2e|gate|bench> [--flaky fail|record]`, or
//! `judge <junit.xml>...`. Exit status: 0 passed, 1 failed, 2 bad usage.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use certctl_ci::cli::{self, Invocation, USAGE};
use certctl_ci::report::error_chain;
use certctl_ci::run::{self, Settings};
use certctl_ci::source::{self, ImageSource, Requested};
use certctl_ci::{allowlist, plan::Tier};

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args().skip(1)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let workspace = certctl_harness::workspace::root();
    match invocation {
        Invocation::Judge { reports, allow_list, flaky } => {
            let list = allow_list.unwrap_or_else(|| workspace.join(allowlist::PATH));
            match run::judge(&reports, &list, flaky) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {}", error_chain(&*e));
                    ExitCode::FAILURE
                }
            }
        }
        Invocation::Tier { tier, flaky, filter } => {
            let settings = match settings(workspace, tier, flaky, filter) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            };
            settings.export();
            if run::run(&settings) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn settings(workspace: PathBuf, tier: Tier, flaky: certctl_ci::verdict::FlakyPolicy, filter: Option<String>) -> Result<Settings, String> {
    let requested: Requested = std::env::var(source::ENV).unwrap_or_default().parse()?;
    let source = ImageSource::decide(requested, upstream_node_image_present(&workspace));
    let mut cluster = std::env::var("CERTCTL_CLUSTER").ok().filter(|c| !c.is_empty());
    // The bench deletes and re-creates its cluster: never the one the other tiers reuse.
    if tier == Tier::Bench && cluster.is_none() {
        cluster = Some("certctl-bench".into());
    }
    Ok(Settings { workspace, tier, flaky, source, cluster, filter })
}

/// Whether docker already holds the pinned upstream node image (the `auto` rule). A
/// daemon that does not answer yet holds nothing.
fn upstream_node_image_present(workspace: &std::path::Path) -> bool {
    let Ok(pins) = certctl_harness::tools::PinnedVersions::from_file(&workspace.join("ci/versions.env")) else { return false };
    let Ok(image) = pins.get("KIND_NODE_IMAGE") else { return false };
    Command::new("docker").args(["image", "inspect", image]).output().is_ok_and(|o| o.status.success())
}
