//! Log setup: JSON or text lines on stdout, filtered by `CERTCTL_LOG_LEVEL`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. An invalid filter falls back to `info` with a warning.
pub fn init(format: LogFormat, level: &str) {
    let (filter, bad_filter) = match EnvFilter::try_new(level) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e.to_string())),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    if let Some(e) = bad_filter {
        tracing::warn!(level, error = %e, "CERTCTL_LOG_LEVEL is not a valid filter; using info");
    }
}
