//! Where this workspace is, found at run time.
//!
//! `env!("CARGO_MANIFEST_DIR")` is fixed when a crate compiles, and cargo does
//! not rebuild when the same target dir serves a checkout at another path (CI
//! keeps one warm target dir across fresh clones): a test would then read the
//! chart and pins of a different, possibly deleted, checkout. Cargo sets
//! `CARGO_MANIFEST_DIR` for the tests it runs, so that value wins.

use std::path::{Path, PathBuf};

/// The workspace root: the parent of the running package's manifest directory
/// (else of the compiled-in one) that holds `ci/versions.env`.
///
/// # Example
/// ```
/// assert!(certctl_harness::workspace::root().join("ci/versions.env").is_file());
/// ```
pub fn root() -> PathBuf {
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([compiled.clone()])
        .filter_map(|dir| dir.parent().map(Path::to_path_buf))
        .find(|root| root.join("ci/versions.env").is_file())
        .unwrap_or_else(|| compiled.join(".."))
}
