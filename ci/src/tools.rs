//! The tools `ci/tools.sh` provisions, by the `NAME=PATH` lines it prints.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Tool paths by name (`HELM`, `NEXTEST`, `ACTIONLINT`, `CERT_MANAGER_CERTIFICATE_CRD`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPaths(BTreeMap<String, PathBuf>);

impl ToolPaths {
    /// Parses `NAME=PATH` lines; anything else is ignored.
    ///
    /// # Example
    /// ```
    /// let t = certctl_ci::tools::ToolPaths::parse("HELM=/c/helm\nnoise\nNEXTEST=/c/cargo-nextest\n");
    /// assert_eq!(t.get("NEXTEST").unwrap().to_str(), Some("/c/cargo-nextest"));
    /// ```
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter_map(|l| l.trim().split_once('='))
                .filter(|(k, v)| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !v.is_empty())
                .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
                .collect(),
        )
    }

    /// Adds what another `ci/tools.sh` call printed.
    pub fn extend(&mut self, other: ToolPaths) {
        self.0.extend(other.0);
    }

    /// The path printed for `name`.
    pub fn get(&self, name: &str) -> Option<&PathBuf> {
        self.0.get(name)
    }

    /// The path for `name`, or an error saying which call should have printed it.
    ///
    /// # Errors
    /// When `ci/tools.sh` printed no such line.
    pub fn require(&self, name: &str) -> Result<&PathBuf, String> {
        self.get(name).ok_or_else(|| {
            format!("ci/tools.sh printed no {name}= line (it printed: {})", self.0.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_what_was_printed() {
        let t = ToolPaths::parse("HELM=/h\n");
        let err = t.require("ACTIONLINT").unwrap_err();
        assert!(err.contains("no ACTIONLINT= line") && err.contains("HELM"), "{err}");
    }

    #[test]
    fn log_lines_and_lowercase_keys_are_not_tools() {
        let t = ToolPaths::parse("[02:00:00] tool helm built\nkey=value\nEMPTY=\n");
        assert_eq!(t, ToolPaths::default());
    }
}
