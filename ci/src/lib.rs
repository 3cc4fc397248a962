//! certctl-ci: the one runner behind every tier — `cargo run -p certctl-ci -- fast | e2e |
//! gate | bench` — here, in `.ci/run` and in the GitHub workflows alike: host checks,
//! images, tools, the cluster, the tests under cargo-nextest, the flaky verdict and a
//! summary people read. See docs/ci.md.

pub mod allowlist;
pub mod bench;
pub mod cli;
pub mod exec;
pub mod nextest;
pub mod outcomes;
pub mod phase;
pub mod plan;
pub mod report;
pub mod run;
pub mod source;
pub mod summary;
pub mod tools;
pub mod verdict;
