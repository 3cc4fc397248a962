//! Agent configuration from `CERTCTL_*` environment variables, validated up front so a
//! misconfigured agent refuses to start with a message that says what to set.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

/// Default directory for keys, certificates and the liveness file.
pub const DEFAULT_KEY_DIR: &str = "/var/lib/certctl/keys";
/// Default heartbeat interval (spec: every 60 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// Default work poll interval (spec: every 30 s).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// Default backoff step (spec: n x 30 s).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(30);
/// Default backoff cap (spec: 5 min).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Default per-request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent name becomes the certificate CN, which X.509 limits to 64 characters.
pub const MAX_AGENT_NAME: usize = 64;

/// API prefix appended to `CERTCTL_SERVER_URL` when it is not already there.
const API_PREFIX: &str = "/api/v1";

/// How log lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Validated agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the API, always https and always ending in `/api/v1/`.
    pub api_base: Url,
    /// Bearer key sent with every request.
    pub api_key: String,
    /// Name the agent registers under (the pod name in Kubernetes).
    pub agent_name: String,
    /// Directory for keys, certificates and the liveness file.
    pub key_dir: PathBuf,
    /// PEM bundle holding the only CA certificates the agent trusts.
    pub ca_bundle_path: Option<PathBuf>,
    /// Skip server certificate verification (testing only; logged loudly).
    pub insecure_skip_verify: bool,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Time between work polls.
    pub poll_interval: Duration,
    /// Backoff step: the n-th consecutive failure waits about n x this.
    pub backoff_base: Duration,
    /// Upper bound of the backoff delay.
    pub backoff_max: Duration,
    /// CERTCTL_KUBERNETES_SECRETS_ENABLED: write certificates that name a Secret target into
    /// that Secret, through the pod's ServiceAccount (docs/agent.md, "Secret targets").
    pub kubernetes_secrets: bool,
    /// Timeout of a single HTTP request.
    pub request_timeout: Duration,
    /// Log output format.
    pub log_format: LogFormat,
    /// Log filter (`CERTCTL_LOG_LEVEL`, tracing env-filter syntax).
    pub log_level: String,
}

/// Why the configuration was refused. Each message names the variable and what to set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{var} is required: {hint}")]
    Missing {
        /// Variable name.
        var: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A variable has a value the agent cannot use.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// Variable name.
        var: &'static str,
        /// The offending value.
        value: String,
        /// Why it was refused and what is accepted.
        reason: String,
    },
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that is missing or invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that is missing or invalid.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let api_base = parse_server_url(get("CERTCTL_SERVER_URL"))?;
        let api_key = get("CERTCTL_API_KEY").ok_or(ConfigError::Missing {
            var: "CERTCTL_API_KEY",
            hint: "set it to one of the keys in the server's CERTCTL_AUTH_SECRET (chart: server.auth.apiKey)",
        })?;
        if api_key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::Invalid {
                var: "CERTCTL_API_KEY",
                value: "<redacted>".into(),
                reason: "it contains whitespace or control characters; set exactly one key".into(),
            });
        }
        let agent_name = parse_agent_name(get("CERTCTL_AGENT_NAME"))?;
        let key_dir = PathBuf::from(get("CERTCTL_KEY_DIR").unwrap_or_else(|| DEFAULT_KEY_DIR.into()));
        if !key_dir.is_absolute() {
            return Err(ConfigError::Invalid {
                var: "CERTCTL_KEY_DIR",
                value: key_dir.display().to_string(),
                reason: "it must be an absolute path".into(),
            });
        }
        let insecure_skip_verify = parse_bool("CERTCTL_INSECURE_SKIP_VERIFY", get("CERTCTL_INSECURE_SKIP_VERIFY"))?;
        let ca_bundle_path = get("CERTCTL_SERVER_CA_BUNDLE_PATH").map(PathBuf::from);
        if ca_bundle_path.is_none() && !insecure_skip_verify {
            return Err(ConfigError::Missing {
                var: "CERTCTL_SERVER_CA_BUNDLE_PATH",
                hint: "the agent trusts only the CA bundle given here; set it to a PEM file holding the CA \
                       that signed the server's TLS certificate (CERTCTL_INSECURE_SKIP_VERIFY=true skips \
                       verification, for testing only)",
            });
        }

        let heartbeat_interval =
            parse_interval("CERTCTL_HEARTBEAT_INTERVAL", get("CERTCTL_HEARTBEAT_INTERVAL"), DEFAULT_HEARTBEAT_INTERVAL)?;
        let poll_interval = parse_interval("CERTCTL_POLL_INTERVAL", get("CERTCTL_POLL_INTERVAL"), DEFAULT_POLL_INTERVAL)?;
        let backoff_base = parse_interval("CERTCTL_BACKOFF_BASE", get("CERTCTL_BACKOFF_BASE"), DEFAULT_BACKOFF_BASE)?;
        let backoff_max = parse_interval("CERTCTL_BACKOFF_MAX", get("CERTCTL_BACKOFF_MAX"), DEFAULT_BACKOFF_MAX)?;
        if backoff_max < backoff_base {
            return Err(ConfigError::Invalid {
                var: "CERTCTL_BACKOFF_MAX",
                value: get("CERTCTL_BACKOFF_MAX").unwrap_or_default(),
                reason: format!("it must be at least CERTCTL_BACKOFF_BASE ({backoff_base:?})"),
            });
        }
        let request_timeout = parse_interval("CERTCTL_REQUEST_TIMEOUT", get("CERTCTL_REQUEST_TIMEOUT"), DEFAULT_REQUEST_TIMEOUT)?;
        let log_format = match get("CERTCTL_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "CERTCTL_LOG_FORMAT",
                    value: other.into(),
                    reason: "accepted values are json and text".into(),
                })
            }
        };
        let log_level = get("CERTCTL_LOG_LEVEL").unwrap_or_else(|| "info".into());
        let kubernetes_secrets = parse_bool("CERTCTL_KUBERNETES_SECRETS_ENABLED", get("CERTCTL_KUBERNETES_SECRETS_ENABLED"))?;

        Ok(Self {
            api_base,
            api_key,
            agent_name,
            key_dir,
            ca_bundle_path,
            insecure_skip_verify,
            heartbeat_interval,
            poll_interval,
            backoff_base,
            backoff_max,
            kubernetes_secrets,
            request_timeout,
            log_format,
            log_level,
        })
    }
}

/// Parses `CERTCTL_SERVER_URL`: https only; `/api/v1` is appended unless already present.
fn parse_server_url(raw: Option<String>) -> Result<Url, ConfigError> {
    const VAR: &str = "CERTCTL_SERVER_URL";
    let raw = raw.ok_or(ConfigError::Missing { var: VAR, hint: "set it to the server's https URL, e.g. https://certctl-server:8443" })?;
    let invalid = |reason: String| ConfigError::Invalid { var: VAR, value: raw.clone(), reason };
    let mut url = Url::parse(&raw).map_err(|e| invalid(format!("not a URL ({e}); expected e.g. https://certctl-server:8443")))?;
    match url.scheme() {
        "https" => {}
        "http" => return Err(invalid("plain http is refused: the agent sends its API key and CSRs only over TLS; use https://".into())),
        other => return Err(invalid(format!("scheme {other:?} is not supported; use https://"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not carry credentials, a query or a fragment; the API key goes in CERTCTL_API_KEY".into()));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    let path = if path.ends_with(API_PREFIX) { path } else { format!("{path}{API_PREFIX}") };
    // A trailing slash makes Url::join append relative paths instead of replacing the last segment.
    url.set_path(&format!("{path}/"));
    Ok(url)
}

/// The agent name becomes the certificate's CN and a DNS SAN, so it must be a DNS-style name.
fn parse_agent_name(raw: Option<String>) -> Result<String, ConfigError> {
    const VAR: &str = "CERTCTL_AGENT_NAME";
    let name = raw.ok_or(ConfigError::Missing {
        var: VAR,
        hint: "set it to a stable unique name (in Kubernetes, the pod name via the downward API: fieldRef metadata.name)",
    })?;
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if name.len() > MAX_AGENT_NAME || !valid_chars || name.starts_with(['-', '.']) || name.ends_with(['-', '.']) {
        return Err(ConfigError::Invalid {
            var: VAR,
            value: name,
            reason:
                "use at most 64 characters (the X.509 CN limit) from a-z, A-Z, 0-9, '-', '.', '_', not starting or ending with '-' or '.'"
                    .into(),
        });
    }
    Ok(name)
}

fn parse_bool(var: &'static str, raw: Option<String>) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(_) => Err(ConfigError::Invalid {
            var,
            value: raw.unwrap_or_default(),
            reason: "accepted values are true/false (also 1/0, yes/no, on/off)".into(),
        }),
    }
}

fn parse_interval(var: &'static str, raw: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    let Some(raw) = raw else { return Ok(default) };
    match parse_duration(&raw) {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err(ConfigError::Invalid { var, value: raw, reason: "it must be greater than zero".into() }),
        None => {
            Err(ConfigError::Invalid { var, value: raw, reason: "expected a duration such as 30s, 500ms, 5m, 1h or plain seconds".into() })
        }
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = [
            ("CERTCTL_SERVER_URL", "https://certctl:8443"),
            ("CERTCTL_API_KEY", "k"),
            ("CERTCTL_AGENT_NAME", "node-a"),
            ("CERTCTL_SERVER_CA_BUNDLE_PATH", "/etc/certctl/ca.crt"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        Config::from_lookup(|k| map.get(k).cloned())
    }

    fn refused_var(result: Result<Config, ConfigError>) -> (&'static str, String) {
        match result {
            Err(e @ ConfigError::Missing { var, .. }) | Err(e @ ConfigError::Invalid { var, .. }) => (var, e.to_string()),
            Ok(c) => panic!("expected a refusal, got {c:?}"),
        }
    }

    #[test]
    fn defaults_apply_when_only_required_vars_are_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.api_base.as_str(), "https://certctl:8443/api/v1/");
        assert_eq!(c.key_dir, PathBuf::from(DEFAULT_KEY_DIR));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(60));
        assert_eq!(c.poll_interval, Duration::from_secs(30));
        assert_eq!(c.backoff_base, Duration::from_secs(30));
        assert_eq!(c.backoff_max, Duration::from_secs(300));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.insecure_skip_verify);
    }

    #[test]
    fn api_prefix_is_not_doubled() {
        let c = config(&[("CERTCTL_SERVER_URL", "https://h:8443/api/v1/")]).unwrap();
        assert_eq!(c.api_base.as_str(), "https://h:8443/api/v1/");
    }

    #[test]
    fn plain_http_is_refused_with_a_reason() {
        let (var, msg) = refused_var(config(&[("CERTCTL_SERVER_URL", "http://certctl:8443")]));
        assert_eq!(var, "CERTCTL_SERVER_URL");
        assert!(msg.contains("plain http is refused"), "{msg}");
    }

    #[test]
    fn missing_required_vars_are_named() {
        for var in ["CERTCTL_SERVER_URL", "CERTCTL_API_KEY", "CERTCTL_AGENT_NAME", "CERTCTL_SERVER_CA_BUNDLE_PATH"] {
            let (refused, msg) = refused_var(config(&[(var, "  ")]));
            assert_eq!(refused, var, "{msg}");
            assert!(msg.contains("is required"), "{msg}");
        }
    }

    #[test]
    fn skip_verify_makes_the_bundle_optional() {
        let c = config(&[("CERTCTL_SERVER_CA_BUNDLE_PATH", ""), ("CERTCTL_INSECURE_SKIP_VERIFY", "true")]).unwrap();
        assert!(c.insecure_skip_verify);
        assert!(c.ca_bundle_path.is_none());
    }

    #[test]
    fn bad_values_are_refused() {
        let long_name = "a".repeat(MAX_AGENT_NAME + 1);
        let cases = [
            ("CERTCTL_SERVER_URL", "certctl:8443"),
            ("CERTCTL_SERVER_URL", "ftp://certctl"),
            ("CERTCTL_SERVER_URL", "https://user:pw@certctl"),
            ("CERTCTL_AGENT_NAME", "bad name"),
            ("CERTCTL_AGENT_NAME", "-leading"),
            ("CERTCTL_AGENT_NAME", long_name.as_str()),
            ("CERTCTL_API_KEY", "two keys"),
            ("CERTCTL_KEY_DIR", "relative/dir"),
            ("CERTCTL_HEARTBEAT_INTERVAL", "soon"),
            ("CERTCTL_POLL_INTERVAL", "0s"),
            ("CERTCTL_LOG_FORMAT", "xml"),
            ("CERTCTL_INSECURE_SKIP_VERIFY", "maybe"),
            ("CERTCTL_BACKOFF_MAX", "1s"),
        ];
        for (var, value) in cases {
            let (refused, msg) = refused_var(config(&[(var, value)]));
            assert_eq!(refused, var, "{var}={value}: {msg}");
        }
    }

    #[test]
    fn api_key_is_not_echoed_in_refusals() {
        let (_, msg) = refused_var(config(&[("CERTCTL_API_KEY", "secret value")]));
        assert!(!msg.contains("secret"), "{msg}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
