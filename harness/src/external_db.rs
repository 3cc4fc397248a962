//! A PostgreSQL outside the cluster, as the external-database mode needs: a
//! container from the postgres image on kind's Docker network, so pods reach
//! it by address the way they reach a managed database, and the test reaches
//! it with `docker exec psql` (local trust, as the image's superuser).
//!
//! The container is removed when the value drops; a container of the same
//! name left by a killed run is replaced on start.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::wait::{wait_until, Deadline, Poll, WaitError};

/// Errors starting or using the external database.
#[derive(Debug, thiserror::Error)]
pub enum ExternalDbError {
    /// The docker CLI could not run.
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A docker command failed.
    #[error("`{cmd}` failed ({code}): {stderr}")]
    Docker {
        /// The command line.
        cmd: String,
        /// Exit code (-1 when killed).
        code: i32,
        /// Its stderr.
        stderr: String,
    },
    /// psql reported an error.
    #[error("psql in {container} exited {code}: {stderr}")]
    Psql {
        /// The container.
        container: String,
        /// Exit code.
        code: i32,
        /// psql's stderr.
        stderr: String,
    },
    /// The database never accepted connections.
    #[error(transparent)]
    Wait(#[from] WaitError),
}

/// What to create: the application's database and role, and the superuser.
///
/// # Example
/// ```
/// let spec = certctl_harness::external_db::ExternalDbSpec::new("certctl-e2e-extdb", "certctl/postgres:15-x", "kind");
/// assert_eq!(spec.database, "certctl");
/// assert_ne!(spec.password, spec.superuser_password);
/// ```
#[derive(Debug, Clone)]
pub struct ExternalDbSpec {
    /// Container name (also its hostname on the network).
    pub name: String,
    /// A postgres image honouring the official image's contract.
    pub image: String,
    /// Docker network the kind nodes are on.
    pub network: String,
    /// Application database.
    pub database: String,
    /// Application role (not a superuser).
    pub user: String,
    /// Its password.
    pub password: String,
    /// The `postgres` superuser's password.
    pub superuser_password: String,
}

impl ExternalDbSpec {
    /// Defaults: database and role `certctl`, fixed test passwords.
    ///
    /// # Example
    /// ```
    /// let s = certctl_harness::external_db::ExternalDbSpec::new("n", "i", "kind");
    /// assert_eq!(s.user, "certctl");
    /// ```
    pub fn new(name: &str, image: &str, network: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            network: network.into(),
            database: "certctl".into(),
            user: "certctl".into(),
            password: "external-app-password".into(),
            superuser_password: "external-superuser-password".into(),
        }
    }
}

/// The Docker network kind puts its nodes on (`KIND_EXPERIMENTAL_DOCKER_NETWORK`, else `kind`).
///
/// # Example
/// ```
/// assert!(!certctl_harness::external_db::kind_network().is_empty());
/// ```
pub fn kind_network() -> String {
    std::env::var("KIND_EXPERIMENTAL_DOCKER_NETWORK").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| "kind".into())
}

/// A running external PostgreSQL.
#[derive(Debug)]
pub struct ExternalPostgres {
    /// What it was created from.
    pub spec: ExternalDbSpec,
    /// Its address on the network.
    pub ip: String,
}

impl ExternalPostgres {
    /// Starts the container, waits until it accepts TCP connections, then
    /// creates the application role and database (owned by the role, as a
    /// managed database hands them out).
    ///
    /// # Errors
    /// [`ExternalDbError`] naming the docker command or psql's message; a
    /// [`WaitError`] with the last `pg_isready` answer.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f() -> Result<(), certctl_harness::external_db::ExternalDbError> {
    /// use certctl_harness::external_db::{ExternalDbSpec, ExternalPostgres, kind_network};
    /// let db = ExternalPostgres::start(ExternalDbSpec::new("e2e-extdb", "certctl/postgres:15-x", &kind_network())).await?;
    /// println!("{}", db.url(&db.spec.password));
    /// # Ok(()) }
    /// ```
    pub async fn start(spec: ExternalDbSpec) -> Result<Self, ExternalDbError> {
        // A container left by a killed run holds the name; it is ours to replace.
        let _ = docker(&["rm", "-f", &spec.name]).await;
        docker(&[
            "run",
            "-d",
            "--name",
            &spec.name,
            "--hostname",
            &spec.name,
            "--network",
            &spec.network,
            "--label",
            "org.certctl.e2e=external-db",
            "-e",
            &format!("POSTGRES_PASSWORD={}", spec.superuser_password),
            &spec.image,
        ])
        .await?;
        let mut db = Self { ip: String::new(), spec };
        let format = format!("{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}", db.spec.network);
        db.ip = docker(&["inspect", "-f", &format, &db.spec.name]).await?.trim().to_string();
        let name = db.spec.name.clone();
        wait_until(&format!("{name} to accept connections"), Deadline::secs(90).every_millis(500), || async {
            // TCP, not the socket: the entrypoint's temporary server listens on the socket only.
            match docker(&["exec", &name, "pg_isready", "-h", "127.0.0.1", "-U", "postgres"]).await {
                Ok(_) => Ok(Poll::Ready(())),
                Err(e) => Ok(Poll::Pending(e.to_string())),
            }
        })
        .await?;
        let (user, password, database) = (db.spec.user.clone(), db.spec.password.clone(), db.spec.database.clone());
        db.psql("postgres", &format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")).await?;
        db.psql("postgres", &format!("CREATE DATABASE \"{database}\" OWNER \"{user}\"")).await?;
        Ok(db)
    }

    /// The URL a pod uses, with `password` (pass another to test a rotation).
    ///
    /// # Example
    /// ```
    /// # use certctl_harness::external_db::{ExternalDbSpec, ExternalPostgres};
    /// let db = ExternalPostgres { spec: ExternalDbSpec::new("n", "i", "kind"), ip: "172.18.0.9".into() };
    /// assert_eq!(db.url("pw"), "postgres://certctl:pw@172.18.0.9:5432/certctl?sslmode=disable");
    /// ```
    pub fn url(&self, password: &str) -> String {
        format!("postgres://{}:{password}@{}:5432/{}?sslmode=disable", self.spec.user, self.ip, self.spec.database)
    }

    /// Runs `sql` in `database` as the superuser over the local socket;
    /// returns psql's unaligned, tuples-only output (fields split by `|`).
    ///
    /// # Errors
    /// [`ExternalDbError::Psql`] with psql's message.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(db: certctl_harness::external_db::ExternalPostgres) -> Result<(), certctl_harness::external_db::ExternalDbError> {
    /// let n = db.psql("certctl", "select count(*) from pg_stat_activity where application_name = 'certctl-server'").await?;
    /// # Ok(()) }
    /// ```
    pub async fn psql(&self, database: &str, sql: &str) -> Result<String, ExternalDbError> {
        let args = self.psql_args(database, sql);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match docker(&args).await {
            Ok(out) => Ok(out.trim().to_string()),
            Err(ExternalDbError::Docker { code, stderr, .. }) => {
                Err(ExternalDbError::Psql { container: self.spec.name.clone(), code, stderr })
            }
            Err(e) => Err(e),
        }
    }

    /// Starts `sql` in a psql session that keeps running (a lock holder, a
    /// long query); kill the returned child, or terminate the backend by its
    /// `application_name`, to end it.
    ///
    /// # Errors
    /// [`ExternalDbError::Spawn`].
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(db: certctl_harness::external_db::ExternalPostgres) -> Result<(), certctl_harness::external_db::ExternalDbError> {
    /// let mut lock = db.psql_background("certctl", "e2e-lock",
    ///     "BEGIN; LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT;")?;
    /// // ... observe ...
    /// let _ = lock.kill().await;
    /// # Ok(()) }
    /// ```
    pub fn psql_background(&self, database: &str, application_name: &str, sql: &str) -> Result<Child, ExternalDbError> {
        let mut args = vec!["exec".to_string(), "-e".to_string(), format!("PGAPPNAME={application_name}")];
        args.extend(self.psql_args(database, sql).into_iter().skip(1));
        Command::new("docker")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ExternalDbError::Spawn { cmd: format!("docker {}", args.join(" ")), source })
    }

    fn psql_args(&self, database: &str, sql: &str) -> Vec<String> {
        ["exec", &self.spec.name, "psql", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-F", "|", "-c", sql]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl Drop for ExternalPostgres {
    fn drop(&mut self) {
        if crate::keep::KeepPolicy::from_env().map(|k| k.keeps(false)).unwrap_or(false) {
            eprintln!(
                "keeping external database container {} (CERTCTL_KEEP=always); remove it with: docker rm -f {}",
                self.spec.name, self.spec.name
            );
            return;
        }
        let _ =
            std::process::Command::new("docker").args(["rm", "-f", &self.spec.name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Runs docker with `args`, returning stdout; a non-zero exit is an error
/// carrying stderr.
async fn docker(args: &[&str]) -> Result<String, ExternalDbError> {
    let cmd = || format!("docker {}", args.join(" "));
    let out =
        tokio::time::timeout(Duration::from_secs(120), Command::new("docker").args(args).stdin(Stdio::null()).kill_on_drop(true).output())
            .await
            .map_err(|_| ExternalDbError::Docker { cmd: cmd(), code: -1, stderr: "no answer within 120 s".into() })?
            .map_err(|source| ExternalDbError::Spawn { cmd: cmd(), source })?;
    if !out.status.success() {
        return Err(ExternalDbError::Docker {
            cmd: cmd(),
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
