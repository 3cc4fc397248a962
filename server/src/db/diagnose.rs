//! Turns a failed database connection into a diagnostic an operator can act on.
//!
//! The 28P01 text follows the upstream wording so log scrapers find "SQLSTATE 28P01".

use std::fmt;
use std::time::Duration;

/// Where the server was trying to connect (no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Role name.
    pub user: String,
    /// Database name.
    pub database: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}/{}", self.user, self.host, self.port, self.database)
    }
}

impl Target {
    /// The target described by connect options.
    pub fn from_options(options: &sqlx::postgres::PgConnectOptions) -> Self {
        Self {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            user: options.get_username().to_owned(),
            database: options.get_database().unwrap_or(options.get_username()).to_owned(),
        }
    }
}

/// The class of a connection failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// SQLSTATE 28P01: wrong password.
    InvalidPassword,
    /// Nothing listens at host:port.
    ConnectionRefused,
    /// The host name does not resolve.
    UnknownHost,
    /// SQLSTATE 3D000: the database does not exist.
    MissingDatabase,
    /// The role does not exist (SQLSTATE 28000, "role ... does not exist").
    MissingRole,
    /// pg_hba only accepts encrypted connections and this one was not.
    TlsRequired,
    /// pg_hba has no entry for this client at all (SQLSTATE 28000).
    NotAllowed,
    /// No answer within the connect timeout.
    Timeout,
    /// Anything else.
    Other,
}

impl Problem {
    /// A stable snake_case name, used as a log field and in /ready bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::InvalidPassword => "invalid_password",
            Problem::ConnectionRefused => "connection_refused",
            Problem::UnknownHost => "unknown_host",
            Problem::MissingDatabase => "missing_database",
            Problem::MissingRole => "missing_role",
            Problem::TlsRequired => "tls_required",
            Problem::NotAllowed => "not_allowed",
            Problem::Timeout => "timeout",
            Problem::Other => "other",
        }
    }
}

/// The facts of a failure, pulled out of the driver error so classification is a pure function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// SQLSTATE reported by the server, if it answered.
    pub sqlstate: Option<String>,
    /// The server's or the OS's message.
    pub message: String,
    /// The I/O error kind, if the failure was below the protocol.
    pub io_kind: Option<std::io::ErrorKind>,
    /// True when our own timeout expired.
    pub timed_out: bool,
}

impl Facts {
    /// Extracts facts from a driver error.
    pub fn from_sqlx(err: &sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) => {
                Facts { sqlstate: db.code().map(|c| c.into_owned()), message: db.message().to_owned(), ..Facts::default() }
            }
            sqlx::Error::Io(io) => Facts {
                message: io.to_string(),
                io_kind: Some(io.kind()),
                timed_out: io.kind() == std::io::ErrorKind::TimedOut,
                ..Facts::default()
            },
            sqlx::Error::PoolTimedOut => Facts { message: err.to_string(), timed_out: true, ..Facts::default() },
            other => Facts { message: other.to_string(), ..Facts::default() },
        }
    }

    /// Facts for our own timeout.
    pub fn timeout(after: Duration) -> Self {
        Facts { message: format!("no answer within {}s", after.as_secs_f32()), timed_out: true, ..Facts::default() }
    }
}

/// A classified failure and the operator-facing text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// The class.
    pub problem: Problem,
    /// SQLSTATE, when the server answered.
    pub sqlstate: Option<String>,
    /// Full text: what happened, why, what to do, then the underlying error.
    pub message: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Classifies a failure.
pub fn classify(facts: &Facts) -> Problem {
    let msg = facts.message.to_ascii_lowercase();
    match facts.sqlstate.as_deref() {
        Some("28P01") => return Problem::InvalidPassword,
        Some("3D000") => return Problem::MissingDatabase,
        Some("28000") if msg.contains("role") && msg.contains("does not exist") => return Problem::MissingRole,
        Some("28000") if msg.contains("no encryption") || msg.contains("ssl off") => return Problem::TlsRequired,
        Some("28000") => return Problem::NotAllowed,
        _ => {}
    }
    if facts.timed_out {
        return Problem::Timeout;
    }
    if facts.io_kind == Some(std::io::ErrorKind::ConnectionRefused) || msg.contains("connection refused") {
        return Problem::ConnectionRefused;
    }
    if msg.contains("failed to lookup address")
        || msg.contains("name or service not known")
        || msg.contains("no address associated")
        || msg.contains("temporary failure in name resolution")
        || msg.contains("nodename nor servname")
    {
        return Problem::UnknownHost;
    }
    Problem::Other
}

/// Builds the full diagnostic for a failure to reach `target`.
pub fn diagnose(facts: &Facts, target: &Target) -> Diagnosis {
    let problem = classify(facts);
    let Target { host, port, user, database } = target;
    let what = match problem {
        Problem::InvalidPassword => format!(
            "postgres rejected the configured credentials (SQLSTATE 28P01 — invalid_password) for role \"{user}\" at {host}:{port}. \
             Why: PostgreSQL sets a role's password once, when initdb first initialises the data directory; changing the \
             configured password later (for example a new postgresql.auth.password on an existing volume) does not change \
             the password stored in the database. Fix, either: (1) keep the data: connect as a superuser and run \
             ALTER ROLE \"{user}\" WITH PASSWORD '<the configured password>'; then restart or upgrade the server; or \
             (2) start over: delete the database volume (PVC) so initdb runs again with the new password (this destroys all data)"
        ),
        Problem::ConnectionRefused => format!(
            "connection refused at {host}:{port}: nothing is listening there. Check the host and port in \
             CERTCTL_DATABASE_URL and that PostgreSQL is running and accepting TCP connections"
        ),
        Problem::UnknownHost => format!(
            "the database host \"{host}\" does not resolve. Check the host name in CERTCTL_DATABASE_URL \
             (in Kubernetes: the Service name and namespace)"
        ),
        Problem::MissingDatabase => format!(
            "database \"{database}\" does not exist on {host}:{port} (SQLSTATE 3D000). Create it \
             (CREATE DATABASE \"{database}\" OWNER \"{user}\";) or fix the database name in CERTCTL_DATABASE_URL"
        ),
        Problem::MissingRole => format!(
            "role \"{user}\" does not exist on {host}:{port} (SQLSTATE 28000). Create it \
             (CREATE ROLE \"{user}\" LOGIN PASSWORD '...';) or fix the user in CERTCTL_DATABASE_URL"
        ),
        Problem::TlsRequired => format!(
            "the server at {host}:{port} requires TLS and this connection was not encrypted (SQLSTATE 28000). \
             Add sslmode=require (or verify-full with sslrootcert=...) to CERTCTL_DATABASE_URL"
        ),
        Problem::NotAllowed => format!(
            "pg_hba.conf on {host}:{port} has no entry allowing role \"{user}\" to reach database \"{database}\" from this \
             address (SQLSTATE 28000). Add a host line for this client or connect from an allowed network"
        ),
        Problem::Timeout => format!(
            "timed out connecting to {host}:{port}. Something accepted or dropped the connection without \
             answering as PostgreSQL: check network policies, firewalls and that the port really is PostgreSQL"
        ),
        Problem::Other => format!("could not connect to {host}:{port} as \"{user}\""),
    };
    let underlying = match &facts.sqlstate {
        Some(code) => format!("{} (SQLSTATE {code})", facts.message),
        None => facts.message.clone(),
    };
    Diagnosis {
        problem,
        sqlstate: facts.sqlstate.clone(),
        message: format!("failed to ping database: {what}. Underlying error: {underlying}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn target() -> Target {
        Target { host: "db".into(), port: 5432, user: "certctl".into(), database: "certctl".into() }
    }

    fn sql(code: &str, message: &str) -> Facts {
        Facts { sqlstate: Some(code.into()), message: message.into(), ..Facts::default() }
    }

    #[test]
    fn invalid_password_has_the_spec_text_and_both_remediations() {
        let d = diagnose(&sql("28P01", "password authentication failed for user \"certctl\""), &target());
        assert_eq!(d.problem, Problem::InvalidPassword);
        assert!(
            d.message
                .starts_with("failed to ping database: postgres rejected the configured credentials (SQLSTATE 28P01 — invalid_password)"),
            "{}",
            d.message
        );
        assert!(d.message.contains("SQLSTATE 28P01"));
        assert!(d.message.contains("initdb"));
        assert!(d.message.contains("ALTER ROLE \"certctl\""));
        assert!(d.message.contains("delete the database volume"));
        assert!(d.message.ends_with("password authentication failed for user \"certctl\" (SQLSTATE 28P01)"));
    }

    #[test]
    fn each_failure_class_is_recognised() {
        let cases = [
            (sql("3D000", "database \"x\" does not exist"), Problem::MissingDatabase),
            (sql("28000", "role \"x\" does not exist"), Problem::MissingRole),
            (sql("28000", "no pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", no encryption"), Problem::TlsRequired),
            (sql("28000", "no pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", SSL off"), Problem::TlsRequired),
            (sql("28000", "no pg_hba.conf entry for host \"10.0.0.1\""), Problem::NotAllowed),
            (
                Facts {
                    io_kind: Some(ErrorKind::ConnectionRefused),
                    message: "Connection refused (os error 111)".into(),
                    ..Facts::default()
                },
                Problem::ConnectionRefused,
            ),
            (
                Facts { message: "failed to lookup address information: Name or service not known".into(), ..Facts::default() },
                Problem::UnknownHost,
            ),
            (Facts::timeout(Duration::from_secs(10)), Problem::Timeout),
            (Facts { message: "something odd".into(), ..Facts::default() }, Problem::Other),
        ];
        for (facts, want) in cases {
            let d = diagnose(&facts, &target());
            assert_eq!(d.problem, want, "{facts:?}");
            assert!(d.message.starts_with("failed to ping database: "));
            assert!(d.message.contains(&facts.message), "underlying error kept: {}", d.message);
        }
    }
}
