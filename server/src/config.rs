//! Server configuration from the CERTCTL_* environment, validated before anything starts.
//!
//! Every refusal names the variable and says how to fix it. Secret values (keys, database
//! URL, password) are never echoed back.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::auth::{Authenticator, KeyStore, Permission, Principal};
use crate::duration::parse_duration;
use crate::secret_target::{SecretNamespaces, NAMESPACES_VAR};

/// The `application_name` every server connection carries, so pg_stat_activity attributes them.
pub const APPLICATION_NAME: &str = "certctl-server";

/// A configuration refusal. The message names the variable and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{var} is required: {fix}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What to set.
        fix: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{var} is invalid: {reason}; {fix}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong (never contains secret values).
        reason: String,
        /// What to set instead.
        fix: String,
    },
    /// CERTCTL_DATABASE_URL does not parse.
    #[error("CERTCTL_DATABASE_URL is not a valid PostgreSQL URL; expected postgres://user:password@host:5432/dbname?sslmode=prefer")]
    DatabaseUrl {
        /// The parser's complaint.
        #[source]
        source: sqlx::Error,
    },
}

/// Log output format (`CERTCTL_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Logging settings; parsed on their own so logging can start before the rest is checked.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A tracing env-filter directive such as `info` or `certctl_server=debug,info`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

/// PostgreSQL connection and pool settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Where and as whom to connect (password already substituted, application_name set).
    pub connect: PgConnectOptions,
    /// CERTCTL_DATABASE_MAX_CONNS: hard ceiling of open connections.
    pub max_connections: u32,
    /// Idle floor: max(N/5, 1) connections kept open.
    pub min_connections: u32,
    /// Connections above the floor idle this long are closed.
    pub idle_timeout: Duration,
    /// Limit for one connection attempt (startup ping, pool connects).
    pub connect_timeout: Duration,
}

/// Renewal scheduler and issuance settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often the renewal loop looks for certificates to renew.
    pub renewal_check_interval: Duration,
    /// Lifetime of certificates the local CA issues.
    pub certificate_validity: Duration,
    /// A certificate is renewed once it has less than this left.
    pub renew_before: Duration,
}

/// What one client may hold of the listener; see docs/server.md ("Connections").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// CERTCTL_SERVER_HANDSHAKE_TIMEOUT: TCP accept to finished TLS handshake.
    pub handshake_timeout: Duration,
    /// CERTCTL_SERVER_HEADER_READ_TIMEOUT: a request's headers must arrive within this.
    pub header_read_timeout: Duration,
    /// CERTCTL_SERVER_IDLE_TIMEOUT: a connection with no request in flight for this long is
    /// closed (HTTP/1.1 and h2 alike).
    pub idle_timeout: Duration,
    /// CERTCTL_SERVER_BODY_TIMEOUT: a request body must arrive within this (408 otherwise).
    pub body_timeout: Duration,
    /// CERTCTL_SERVER_MAX_CONNECTIONS: connections held at once; further clients wait in the
    /// listen backlog. Lowered at start to what the open-file limit allows.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

fn parse_limits(env: &impl Env) -> Result<ConnectionLimits, ConfigError> {
    let d = ConnectionLimits::default();
    let max_connections = match non_empty(env, "CERTCTL_SERVER_MAX_CONNECTIONS") {
        None => d.max_connections,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => n,
            _ => {
                return Err(ConfigError::Invalid {
                    var: "CERTCTL_SERVER_MAX_CONNECTIONS",
                    reason: format!("{text:?} is not a whole number between 1 and 1000000"),
                    fix: format!("set the number of client connections held at once (default {})", d.max_connections),
                })
            }
        },
    };
    Ok(ConnectionLimits {
        handshake_timeout: duration_var(env, "CERTCTL_SERVER_HANDSHAKE_TIMEOUT", d.handshake_timeout, bounds::TIMEOUT)?,
        header_read_timeout: duration_var(env, "CERTCTL_SERVER_HEADER_READ_TIMEOUT", d.header_read_timeout, bounds::TIMEOUT)?,
        idle_timeout: duration_var(env, "CERTCTL_SERVER_IDLE_TIMEOUT", d.idle_timeout, bounds::TIMEOUT)?,
        body_timeout: duration_var(env, "CERTCTL_SERVER_BODY_TIMEOUT", d.body_timeout, bounds::TIMEOUT)?,
        max_connections,
    })
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (CERTCTL_SERVER_HOST, default 0.0.0.0).
    pub host: String,
    /// Port to bind (CERTCTL_SERVER_PORT, default 8443).
    pub port: u16,
    /// PEM certificate chain (CERTCTL_SERVER_TLS_CERT_PATH).
    pub tls_cert_path: PathBuf,
    /// PEM private key (CERTCTL_SERVER_TLS_KEY_PATH).
    pub tls_key_path: PathBuf,
    /// Database settings.
    pub database: DatabaseConfig,
    /// Logging settings.
    pub log: LogConfig,
    /// How /api/v1 requests are authenticated.
    pub auth: Authenticator,
    /// Scheduler settings.
    pub scheduler: SchedulerConfig,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// How often the TLS files are checked for a new pair
    /// (CERTCTL_SERVER_TLS_RELOAD_INTERVAL, default 30s): cert-manager renews
    /// into the mounted Secret and nobody sends SIGHUP.
    pub tls_reload_interval: Duration,
    /// Listener timeouts and the connection cap.
    pub limits: ConnectionLimits,
    /// CERTCTL_KUBERNETES_SECRETS_NAMESPACES: where certificates may ask their agent to
    /// keep them as Secrets (unset: nowhere).
    pub secret_namespaces: SecretNamespaces,
}

/// Reads variables; `std::env::var` in production, a map in tests.
pub trait Env {
    /// The value of `name`, or `None` when unset.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// The value of `name`, treating an empty or blank value as unset.
fn non_empty(env: &impl Env, name: &str) -> Option<String> {
    env.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Upper bounds of the duration settings: larger values overflow timers and date arithmetic
/// (a panic at the first CSR, a scheduler that dies), and none of them would make sense.
pub mod bounds {
    use std::time::Duration;

    const DAY: u64 = 86_400;
    /// CERTCTL_CERTIFICATE_VALIDITY and CERTCTL_CERTIFICATE_RENEW_BEFORE: the CA's own lifetime.
    pub const CERTIFICATE_VALIDITY: Duration = Duration::from_secs(3650 * DAY);
    /// Loop periods (renewal check, TLS reload).
    pub const INTERVAL: Duration = Duration::from_secs(7 * DAY);
    /// Timeouts of the HTTP listener and the database, and the drain limit.
    pub const TIMEOUT: Duration = Duration::from_secs(DAY);
}

/// `d` in the largest unit that divides it, as the settings are written (`3650d`, `90s`).
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

fn duration_var(env: &impl Env, var: &'static str, default: Duration, max: Duration) -> Result<Duration, ConfigError> {
    match non_empty(env, var) {
        None => Ok(default),
        Some(text) => match parse_duration(&text) {
            Ok(d) if d.is_zero() => Err(ConfigError::Invalid {
                var,
                reason: "must be greater than zero".into(),
                fix: "set a positive duration such as 30s".into(),
            }),
            Ok(d) if d > max => Err(ConfigError::Invalid {
                var,
                reason: format!("{text} is longer than the maximum {}", human(max)),
                fix: format!("set at most {} (default {})", human(max), human(default)),
            }),
            Ok(d) => Ok(d),
            Err(reason) => Err(ConfigError::Invalid { var, reason, fix: "set a duration such as 30s, 5m, 2h or 90d".into() }),
        },
    }
}

impl LogConfig {
    /// Reads CERTCTL_LOG_LEVEL (default `info`) and CERTCTL_LOG_FORMAT (`json` default, or `text`).
    ///
    /// # Errors
    /// An unknown format or an unparsable level directive.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let level = non_empty(env, "CERTCTL_LOG_LEVEL").unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
            return Err(ConfigError::Invalid {
                var: "CERTCTL_LOG_LEVEL",
                reason: format!("{level:?} is not a log level or filter ({e})"),
                fix: "use one of error, warn, info, debug, trace".into(),
            });
        }
        let format = match non_empty(env, "CERTCTL_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "CERTCTL_LOG_FORMAT",
                    reason: format!("unknown format {other:?}"),
                    fix: "use json or text".into(),
                })
            }
        };
        Ok(Self { level, format })
    }
}

fn parse_port(env: &impl Env) -> Result<u16, ConfigError> {
    match non_empty(env, "CERTCTL_SERVER_PORT") {
        None => Ok(8443),
        Some(text) => match text.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(ConfigError::Invalid {
                var: "CERTCTL_SERVER_PORT",
                reason: format!("{text:?} is not a TCP port"),
                fix: "use a number between 1 and 65535 (default 8443)".into(),
            }),
        },
    }
}

fn parse_database(env: &impl Env) -> Result<DatabaseConfig, ConfigError> {
    let url = non_empty(env, "CERTCTL_DATABASE_URL").ok_or(ConfigError::Missing {
        var: "CERTCTL_DATABASE_URL",
        fix: "set it to postgres://user@host:5432/dbname (password inline or in CERTCTL_DATABASE_PASSWORD)",
    })?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError::Invalid {
            var: "CERTCTL_DATABASE_URL",
            reason: "the scheme must be postgres:// or postgresql://".into(),
            fix: "set it to postgres://user@host:5432/dbname".into(),
        });
    }
    let mut connect = PgConnectOptions::from_str(&url).map_err(|source| ConfigError::DatabaseUrl { source })?;
    // The chart passes the password separately so it needs no URL encoding.
    if let Some(password) = env.get("CERTCTL_DATABASE_PASSWORD").filter(|p| !p.is_empty()) {
        connect = connect.password(&password);
    }
    connect = connect.application_name(APPLICATION_NAME);

    let max_connections = match non_empty(env, "CERTCTL_DATABASE_MAX_CONNS") {
        None => 25,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| ConfigError::Invalid {
                var: "CERTCTL_DATABASE_MAX_CONNS",
                reason: format!("{n} is too large"),
                fix: "use a value between 1 and the database's max_connections".into(),
            })?,
            Ok(n) => {
                return Err(ConfigError::Invalid {
                    var: "CERTCTL_DATABASE_MAX_CONNS",
                    reason: format!("database max_connections must be at least 1 (got {n})"),
                    fix: "set CERTCTL_DATABASE_MAX_CONNS to 1 or more (default 25)".into(),
                })
            }
            Err(_) => {
                return Err(ConfigError::Invalid {
                    var: "CERTCTL_DATABASE_MAX_CONNS",
                    reason: format!("{text:?} is not a whole number"),
                    fix: "set a whole number of connections, at least 1 (default 25)".into(),
                })
            }
        },
    };
    Ok(DatabaseConfig {
        connect,
        max_connections,
        min_connections: (max_connections / 5).max(1),
        idle_timeout: duration_var(env, "CERTCTL_DATABASE_IDLE_TIMEOUT", Duration::from_secs(30), bounds::TIMEOUT)?,
        connect_timeout: duration_var(env, "CERTCTL_DATABASE_CONNECT_TIMEOUT", Duration::from_secs(10), bounds::TIMEOUT)?,
    })
}

fn comma_keys(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|k| !k.is_empty())
}

/// Parses `key1=perm,perm;key2=perm`.
fn parse_scoped_keys(text: &str, store: &mut KeyStore) -> Result<(), ConfigError> {
    const VAR: &str = "CERTCTL_AUTH_SCOPED_KEYS";
    const FIX: &str = "use key1=metrics.read;key2=agent.register,agent.heartbeat";
    for (index, entry) in text.split(';').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
        let Some((key, perms)) = entry.split_once('=') else {
            return Err(ConfigError::Invalid {
                var: VAR,
                reason: format!("entry {} has no '=' between key and permissions", index + 1),
                fix: FIX.into(),
            });
        };
        if key.trim().is_empty() {
            return Err(ConfigError::Invalid { var: VAR, reason: format!("entry {} has an empty key", index + 1), fix: FIX.into() });
        }
        let mut permissions = Vec::new();
        for name in comma_keys(perms) {
            let p = name.parse::<Permission>().map_err(|e| ConfigError::Invalid {
                var: VAR,
                reason: format!("entry {}: {e}", index + 1),
                fix: format!("permissions are {}", Permission::ALL.map(Permission::as_str).join(", ")),
            })?;
            permissions.push(p);
        }
        if permissions.is_empty() {
            return Err(ConfigError::Invalid { var: VAR, reason: format!("entry {} grants no permission", index + 1), fix: FIX.into() });
        }
        store.insert(key.trim(), Principal::new(permissions));
    }
    Ok(())
}

fn parse_auth(env: &impl Env) -> Result<Authenticator, ConfigError> {
    let kind = non_empty(env, "CERTCTL_AUTH_TYPE").unwrap_or_else(|| "api-key".into());
    match kind.as_str() {
        "none" => Ok(Authenticator::None),
        "api-key" => {
            let mut store = KeyStore::default();
            if let Some(secret) = env.get("CERTCTL_AUTH_SECRET") {
                for key in comma_keys(&secret) {
                    store.insert(key, Principal::all());
                }
            }
            if let Some(scoped) = env.get("CERTCTL_AUTH_SCOPED_KEYS") {
                parse_scoped_keys(&scoped, &mut store)?;
            }
            if let Some(token) = non_empty(env, "CERTCTL_AGENT_BOOTSTRAP_TOKEN") {
                store.insert(&token, Principal::new(Permission::AGENT));
            }
            if store.is_empty() {
                return Err(ConfigError::Missing {
                    var: "CERTCTL_AUTH_SECRET",
                    fix: "api-key auth needs at least one key: set CERTCTL_AUTH_SECRET to a comma-separated list of keys, or set CERTCTL_AUTH_TYPE=none",
                });
            }
            Ok(Authenticator::ApiKey(store))
        }
        "jwt" => Err(ConfigError::Invalid {
            var: "CERTCTL_AUTH_TYPE",
            reason: "jwt is not supported by this server".into(),
            fix: "put an authenticating gateway in front of the server and use api-key (or none behind the gateway)".into(),
        }),
        other => Err(ConfigError::Invalid {
            var: "CERTCTL_AUTH_TYPE",
            reason: format!("unknown auth type {other:?}"),
            fix: "use api-key or none".into(),
        }),
    }
}

fn required_path(env: &impl Env, var: &'static str, fix: &'static str) -> Result<PathBuf, ConfigError> {
    non_empty(env, var).map(PathBuf::from).ok_or(ConfigError::Missing { var, fix })
}

impl Config {
    /// Reads and validates the whole configuration.
    ///
    /// # Errors
    /// The first refusal found, naming its variable and fix. TLS files are checked
    /// separately by [`crate::tls::load_certified_key`] because they must be read.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let log = LogConfig::from_env(env)?;
        let host = non_empty(env, "CERTCTL_SERVER_HOST").unwrap_or_else(|| "0.0.0.0".into());
        let port = parse_port(env)?;
        let tls_cert_path = required_path(
            env,
            "CERTCTL_SERVER_TLS_CERT_PATH",
            "set it to the PEM certificate chain, e.g. /etc/certctl/tls/tls.crt (HTTPS is the only listener)",
        )?;
        let tls_key_path =
            required_path(env, "CERTCTL_SERVER_TLS_KEY_PATH", "set it to the PEM private key, e.g. /etc/certctl/tls/tls.key")?;
        let database = parse_database(env)?;
        let auth = parse_auth(env)?;
        let scheduler = SchedulerConfig {
            renewal_check_interval: duration_var(
                env,
                "CERTCTL_SCHEDULER_RENEWAL_CHECK_INTERVAL",
                Duration::from_secs(3600),
                bounds::INTERVAL,
            )?,
            certificate_validity: duration_var(
                env,
                "CERTCTL_CERTIFICATE_VALIDITY",
                Duration::from_secs(90 * 86_400),
                bounds::CERTIFICATE_VALIDITY,
            )?,
            renew_before: duration_var(
                env,
                "CERTCTL_CERTIFICATE_RENEW_BEFORE",
                Duration::from_secs(30 * 86_400),
                bounds::CERTIFICATE_VALIDITY,
            )?,
        };
        if scheduler.renew_before >= scheduler.certificate_validity {
            return Err(ConfigError::Invalid {
                var: "CERTCTL_CERTIFICATE_RENEW_BEFORE",
                reason: "must be shorter than CERTCTL_CERTIFICATE_VALIDITY, or every certificate would be renewed at once".into(),
                fix: "e.g. CERTCTL_CERTIFICATE_VALIDITY=90d with CERTCTL_CERTIFICATE_RENEW_BEFORE=30d".into(),
            });
        }
        let shutdown_timeout = duration_var(env, "CERTCTL_SHUTDOWN_TIMEOUT", Duration::from_secs(20), bounds::TIMEOUT)?;
        let tls_reload_interval = duration_var(env, "CERTCTL_SERVER_TLS_RELOAD_INTERVAL", Duration::from_secs(30), bounds::INTERVAL)?;
        let limits = parse_limits(env)?;
        let secret_namespaces =
            SecretNamespaces::parse(&env.get(NAMESPACES_VAR).unwrap_or_default()).map_err(|reason| ConfigError::Invalid {
                var: NAMESPACES_VAR,
                reason,
                fix: "list namespace names separated by commas, e.g. apps,web (chart: kubernetesSecrets.namespaces)".into(),
            })?;
        Ok(Self {
            host,
            port,
            tls_cert_path,
            tls_key_path,
            database,
            log,
            auth,
            scheduler,
            shutdown_timeout,
            tls_reload_interval,
            limits,
            secret_namespaces,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = [
            ("CERTCTL_SERVER_TLS_CERT_PATH", "/etc/certctl/tls/tls.crt"),
            ("CERTCTL_SERVER_TLS_KEY_PATH", "/etc/certctl/tls/tls.key"),
            ("CERTCTL_DATABASE_URL", "postgres://certctl:pw@db:5432/certctl"),
            ("CERTCTL_AUTH_SECRET", "k1,k2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            map.insert((*k).to_owned(), (*v).to_owned());
        }
        move |name: &str| map.get(name).cloned()
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        Config::from_env(&env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.port, 8443);
        assert_eq!(c.database.max_connections, 25);
        assert_eq!(c.database.min_connections, 5);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.database.connect.get_application_name(), Some(APPLICATION_NAME));
        match c.auth {
            Authenticator::ApiKey(store) => assert_eq!(store.len(), 2),
            Authenticator::None => panic!("default auth must be api-key"),
        }
    }

    #[test]
    fn idle_floor_is_a_fifth_but_at_least_one() {
        for (n, floor) in [("1", 1), ("4", 1), ("5", 1), ("10", 2), ("12", 2)] {
            let c = Config::from_env(&env(&[("CERTCTL_DATABASE_MAX_CONNS", n)])).unwrap();
            assert_eq!(c.database.min_connections, floor, "N={n}");
        }
    }

    #[test]
    fn max_conns_below_one_is_refused_with_the_spec_text() {
        for bad in ["0", "-3"] {
            let msg = refusal(&[("CERTCTL_DATABASE_MAX_CONNS", bad)]);
            assert!(msg.contains("database max_connections must be at least 1"), "{msg}");
            assert!(msg.contains("CERTCTL_DATABASE_MAX_CONNS"), "{msg}");
        }
        assert!(refusal(&[("CERTCTL_DATABASE_MAX_CONNS", "ten")]).contains("whole number"));
    }

    #[test]
    fn auth_refusals_name_the_variable_and_the_fix() {
        let jwt = refusal(&[("CERTCTL_AUTH_TYPE", "jwt")]);
        assert!(jwt.contains("CERTCTL_AUTH_TYPE") && jwt.contains("gateway"), "{jwt}");
        let unknown = refusal(&[("CERTCTL_AUTH_TYPE", "oauth")]);
        assert!(unknown.contains("api-key or none"), "{unknown}");
        let no_keys = refusal(&[("CERTCTL_AUTH_SECRET", " , ")]);
        assert!(no_keys.contains("CERTCTL_AUTH_SECRET"), "{no_keys}");
        let scoped = refusal(&[("CERTCTL_AUTH_SCOPED_KEYS", "k=metrics.write")]);
        assert!(scoped.contains("CERTCTL_AUTH_SCOPED_KEYS") && scoped.contains("metrics.read"), "{scoped}");
        let c = Config::from_env(&env(&[("CERTCTL_AUTH_TYPE", "none"), ("CERTCTL_AUTH_SECRET", "")])).unwrap();
        assert!(matches!(c.auth, Authenticator::None));
    }

    #[test]
    fn database_url_refusals_do_not_leak_the_password() {
        let msg = refusal(&[("CERTCTL_DATABASE_URL", "mysql://u:hunter2@h/db")]);
        assert!(msg.contains("CERTCTL_DATABASE_URL") && !msg.contains("hunter2"), "{msg}");
        let msg = refusal(&[("CERTCTL_DATABASE_URL", "postgres://u:hunter2@h:notaport/db")]);
        assert!(msg.contains("CERTCTL_DATABASE_URL") && !msg.contains("hunter2"), "{msg}");
        assert!(refusal(&[("CERTCTL_DATABASE_URL", "")]).contains("is required"));
    }

    #[test]
    fn password_variable_replaces_the_url_password() {
        let c = Config::from_env(&env(&[("CERTCTL_DATABASE_PASSWORD", "p@ss/w:rd")])).unwrap();
        // PgConnectOptions has no password getter; its Debug output shows the field.
        assert!(format!("{:?}", c.database.connect).contains("p@ss/w:rd"));
    }

    #[test]
    fn tls_paths_are_required() {
        assert!(refusal(&[("CERTCTL_SERVER_TLS_CERT_PATH", "")]).contains("CERTCTL_SERVER_TLS_CERT_PATH"));
        assert!(refusal(&[("CERTCTL_SERVER_TLS_KEY_PATH", "")]).contains("CERTCTL_SERVER_TLS_KEY_PATH"));
    }

    #[test]
    fn log_and_duration_refusals() {
        assert!(refusal(&[("CERTCTL_LOG_FORMAT", "xml")]).contains("json or text"));
        assert!(refusal(&[("CERTCTL_SERVER_PORT", "99999")]).contains("CERTCTL_SERVER_PORT"));
        assert!(refusal(&[("CERTCTL_DATABASE_IDLE_TIMEOUT", "soon")]).contains("CERTCTL_DATABASE_IDLE_TIMEOUT"));
        let msg = refusal(&[("CERTCTL_CERTIFICATE_VALIDITY", "1h"), ("CERTCTL_CERTIFICATE_RENEW_BEFORE", "2h")]);
        assert!(msg.contains("CERTCTL_CERTIFICATE_RENEW_BEFORE"), "{msg}");
    }

    #[test]
    fn durations_above_their_bound_are_refused_naming_the_maximum() {
        let msg = refusal(&[("CERTCTL_CERTIFICATE_VALIDITY", "3000000d")]);
        assert!(msg.contains("CERTCTL_CERTIFICATE_VALIDITY") && msg.contains("maximum 3650d"), "{msg}");
        let msg = refusal(&[("CERTCTL_CERTIFICATE_VALIDITY", "3650d"), ("CERTCTL_CERTIFICATE_RENEW_BEFORE", "99999999d")]);
        assert!(msg.contains("CERTCTL_CERTIFICATE_RENEW_BEFORE") && msg.contains("maximum 3650d"), "{msg}");
        for var in ["CERTCTL_SCHEDULER_RENEWAL_CHECK_INTERVAL", "CERTCTL_SERVER_TLS_RELOAD_INTERVAL", "CERTCTL_SERVER_IDLE_TIMEOUT"] {
            assert!(refusal(&[(var, "100000000000d")]).contains(var), "{var}");
        }
        assert!(Config::from_env(&env(&[("CERTCTL_CERTIFICATE_VALIDITY", "3650d")])).is_ok());
    }

    #[test]
    fn connection_limits_have_defaults_and_refusals() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.limits, ConnectionLimits::default());
        let c = Config::from_env(&env(&[("CERTCTL_SERVER_MAX_CONNECTIONS", "5"), ("CERTCTL_SERVER_IDLE_TIMEOUT", "2s")])).unwrap();
        assert_eq!((c.limits.max_connections, c.limits.idle_timeout), (5, Duration::from_secs(2)));
        for bad in ["0", "many", "-1"] {
            assert!(refusal(&[("CERTCTL_SERVER_MAX_CONNECTIONS", bad)]).contains("CERTCTL_SERVER_MAX_CONNECTIONS"), "{bad}");
        }
    }

    #[test]
    fn secret_namespaces_are_off_by_default_and_refused_by_name() {
        assert!(!Config::from_env(&env(&[])).unwrap().secret_namespaces.enabled());
        let on = Config::from_env(&env(&[("CERTCTL_KUBERNETES_SECRETS_NAMESPACES", "apps,web")])).unwrap();
        assert!(on.secret_namespaces.allows("web"));
        let bad = refusal(&[("CERTCTL_KUBERNETES_SECRETS_NAMESPACES", "apps,Web")]);
        assert!(bad.starts_with("CERTCTL_KUBERNETES_SECRETS_NAMESPACES is invalid: \"Web\""), "{bad}");
        assert!(bad.contains("kubernetesSecrets.namespaces"), "{bad}");
    }
}
