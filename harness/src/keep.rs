//! What to keep after a run: the cluster and namespaces stay for inspection
//! on failure by default, and are deleted on success.

use std::fmt;
use std::str::FromStr;

/// Environment variable selecting the [`KeepPolicy`].
pub const KEEP_ENV: &str = "CERTCTL_KEEP";

/// Whether clusters and namespaces outlive the run.
///
/// Read from `CERTCTL_KEEP` (`on-failure` when unset).
///
/// # Example
/// ```
/// use certctl_harness::keep::KeepPolicy;
/// let p: KeepPolicy = "always".parse().unwrap();
/// assert!(p.keeps(true) && p.keeps(false));
/// assert!(KeepPolicy::OnFailure.keeps(true));
/// assert!(!KeepPolicy::OnFailure.keeps(false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepPolicy {
    /// Delete everything, even after a failure.
    Never,
    /// Keep what a failing scenario used; delete the rest.
    #[default]
    OnFailure,
    /// Keep everything.
    Always,
}

/// An unknown `CERTCTL_KEEP` value.
#[derive(Debug, thiserror::Error)]
#[error("{KEEP_ENV}={value:?} is not understood: use on-failure, always or never")]
pub struct BadKeepPolicy {
    value: String,
}

impl KeepPolicy {
    /// The policy from `CERTCTL_KEEP`, or the default when unset.
    ///
    /// # Errors
    /// A set but unknown value is refused rather than guessed.
    ///
    /// # Example
    /// ```
    /// let policy = certctl_harness::keep::KeepPolicy::from_env().unwrap_or_default();
    /// # let _ = policy;
    /// ```
    pub fn from_env() -> Result<Self, BadKeepPolicy> {
        match std::env::var(KEEP_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(Self::default()),
        }
    }

    /// Whether to keep resources given whether anything failed.
    ///
    /// # Example
    /// ```
    /// assert!(!certctl_harness::keep::KeepPolicy::Never.keeps(true));
    /// ```
    pub fn keeps(self, failed: bool) -> bool {
        match self {
            Self::Never => false,
            Self::OnFailure => failed,
            Self::Always => true,
        }
    }
}

impl FromStr for KeepPolicy {
    type Err = BadKeepPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" | "0" | "false" | "no" => Ok(Self::Never),
            "on-failure" | "onfailure" | "failure" => Ok(Self::OnFailure),
            "always" | "1" | "true" | "yes" => Ok(Self::Always),
            _ => Err(BadKeepPolicy { value: s.to_string() }),
        }
    }
}

impl fmt::Display for KeepPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Never => "never",
            Self::OnFailure => "on-failure",
            Self::Always => "always",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_refuses_garbage() {
        assert_eq!("on-failure".parse::<KeepPolicy>().unwrap(), KeepPolicy::OnFailure);
        assert_eq!("NEVER".parse::<KeepPolicy>().unwrap(), KeepPolicy::Never);
        assert_eq!("always".parse::<KeepPolicy>().unwrap(), KeepPolicy::Always);
        let err = "sometimes".parse::<KeepPolicy>().unwrap_err().to_string();
        assert!(err.contains("CERTCTL_KEEP") && err.contains("on-failure"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for p in [KeepPolicy::Never, KeepPolicy::OnFailure, KeepPolicy::Always] {
            assert_eq!(p.to_string().parse::<KeepPolicy>().unwrap(), p);
        }
    }
}
