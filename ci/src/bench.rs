//! `bench`: the live matrix's wall time against its floor. Filled in below.

use crate::phase::{PhaseError, Progress};
use crate::run::Settings;
use crate::tools::ToolPaths;

/// Runs the benchmark.
///
/// # Errors
/// Always, for now.
pub fn run(_s: &Settings, _tools: &ToolPaths, _p: &Progress) -> Result<String, PhaseError> {
    Err("bench is not built yet".into())
}
