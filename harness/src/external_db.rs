//! A PostgreSQL outside the cluster, as the external-database mode needs: a
//! testcontainers container from the postgres image on kind's Docker
//! network, so pods reach it by address the way they reach a managed
//! database, and the test reaches it with `psql` exec'd in the container
//! (local trust, as the image's superuser).
//!
//! Dropping the last handle removes the container (testcontainers); a
//! scenario that keeps its resources keeps it ([`Owned::keep`]). A container
//! of the same name left by a killed run is replaced on start. Offline the
//! image is the locally built one (present, so never pulled); online the
//! upstream image, pulled by testcontainers when missing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::LocalBoxFuture;
use futures::FutureExt;
use testcontainers::core::{CmdWaitFor, ExecCommand};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::images::ImageRef;
use crate::scenario::{BoxError, Owned};
use crate::wait::{wait_until, Classify, Deadline, Poll, WaitError};

/// Errors starting or using the external database.
#[derive(Debug, thiserror::Error)]
pub enum ExternalDbError {
    /// testcontainers (the Docker API) refused.
    #[error("container {container}: {action}")]
    Container {
        /// The container.
        container: String,
        /// What was being done.
        action: &'static str,
        /// Why.
        #[source]
        source: Box<testcontainers::TestcontainersError>,
    },
    /// psql reported an error.
    #[error("psql in {container} exited {code}: {stderr}")]
    Psql {
        /// The container.
        container: String,
        /// Exit code (-1 when unknown).
        code: i64,
        /// psql's stderr.
        stderr: String,
    },
    /// The container was already released (kept or removed).
    #[error("container {0} was released")]
    Released(String),
    /// The restarted container came back on another address.
    #[error("container {container} came back on {now}, not {was}: the release's URL no longer reaches it")]
    Moved {
        /// The container.
        container: String,
        /// Its address before.
        was: String,
        /// Its address now.
        now: String,
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
    container: Option<ContainerAsync<GenericImage>>,
    kept: AtomicBool,
}

impl ExternalPostgres {
    /// Starts the container, waits until it accepts TCP connections, then
    /// creates the application role and database (owned by the role, as a
    /// managed database hands them out).
    ///
    /// # Errors
    /// [`ExternalDbError`] naming what the Docker API or psql said; a
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
        let _ = tokio::process::Command::new("docker").args(["rm", "-f", &spec.name]).output().await;
        let image = ImageRef::parse(&spec.image);
        let failed = |action| {
            let container = spec.name.clone();
            move |source| ExternalDbError::Container { container, action, source: Box::new(source) }
        };
        let container = GenericImage::new(image.repository, image.tag)
            .with_env_var("POSTGRES_PASSWORD", &spec.superuser_password)
            .with_container_name(&spec.name)
            .with_hostname(&spec.name)
            .with_network(&spec.network)
            .with_label("org.certctl.e2e", "external-db")
            .start()
            .await
            .map_err(failed("start"))?;
        let ip = container.get_bridge_ip_address().await.map_err(failed("read its address"))?.to_string();
        let db = Self { ip, spec, container: Some(container), kept: AtomicBool::new(false) };
        db.accepting().await?;
        let (user, password, database) = (db.spec.user.clone(), db.spec.password.clone(), db.spec.database.clone());
        db.psql("postgres", &format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")).await?;
        db.psql("postgres", &format!("CREATE DATABASE \"{database}\" OWNER \"{user}\"")).await?;
        Ok(db)
    }

    /// The URL a pod uses, with `password` (pass another to test a rotation).
    ///
    /// # Example
    /// ```no_run
    /// # fn f(db: certctl_harness::external_db::ExternalPostgres) {
    /// assert_eq!(db.url("pw"), format!("postgres://certctl:pw@{}:5432/certctl?sslmode=disable", db.ip));
    /// # }
    /// ```
    pub fn url(&self, password: &str) -> String {
        format!("postgres://{}:{password}@{}:5432/{}?sslmode=disable", self.spec.user, self.ip, self.spec.database)
    }

    /// Stops the database (SIGINT, then SIGKILL after 10 s): an outage.
    ///
    /// # Errors
    /// [`ExternalDbError::Container`] with what Docker said.
    pub async fn stop(&self) -> Result<(), ExternalDbError> {
        self.container()?.stop_with_timeout(Some(10)).await.map_err(|source| ExternalDbError::Container {
            container: self.spec.name.clone(),
            action: "stop",
            source: Box::new(source),
        })
    }

    /// Starts the stopped database again and waits until it accepts
    /// connections. Its URL must stay valid: a new address is an error.
    ///
    /// # Errors
    /// [`ExternalDbError::Container`]; a changed address; a [`WaitError`] with
    /// the last `pg_isready` answer.
    pub async fn start_again(&self) -> Result<(), ExternalDbError> {
        let failed = |action| {
            let container = self.spec.name.clone();
            move |source| ExternalDbError::Container { container, action, source: Box::new(source) }
        };
        let container = self.container()?;
        container.start().await.map_err(failed("start again"))?;
        let ip = container.get_bridge_ip_address().await.map_err(failed("read its address"))?.to_string();
        if ip != self.ip {
            return Err(ExternalDbError::Moved { container: self.spec.name.clone(), was: self.ip.clone(), now: ip });
        }
        self.accepting().await
    }

    async fn accepting(&self) -> Result<(), ExternalDbError> {
        wait_until(&format!("{} to accept connections", self.spec.name), Deadline::secs(90).every_millis(500), || async {
            // TCP, not the socket: the entrypoint's temporary server listens on the socket only.
            self.run(&["pg_isready", "-h", "127.0.0.1", "-U", "postgres"]).await.transient()?;
            Ok::<_, crate::wait::PollError>(Poll::Ready(()))
        })
        .await?;
        Ok(())
    }

    fn container(&self) -> Result<&ContainerAsync<GenericImage>, ExternalDbError> {
        self.container.as_ref().ok_or_else(|| ExternalDbError::Released(self.spec.name.clone()))
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
        Ok(self.run(&psql_args(database, sql)).await?.trim().to_string())
    }

    /// Starts `sql` in a psql session that keeps running (a lock holder, a
    /// long query) as `application_name`; terminate its backend by that
    /// name to end it.
    ///
    /// # Errors
    /// [`ExternalDbError::Container`] when the exec cannot start.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(db: certctl_harness::external_db::ExternalPostgres) -> Result<(), certctl_harness::external_db::ExternalDbError> {
    /// db.psql_background("certctl", "e2e-lock",
    ///     "BEGIN; LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120); COMMIT;").await?;
    /// db.psql("postgres", "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'e2e-lock'").await?;
    /// # Ok(()) }
    /// ```
    pub async fn psql_background(&self, database: &str, application_name: &str, sql: &str) -> Result<(), ExternalDbError> {
        let exec = ExecCommand::new(psql_args(database, sql))
            .with_env_vars([("PGAPPNAME", application_name)])
            .with_cmd_ready_condition(CmdWaitFor::Nothing);
        // The exec runs on in the container after its handle drops.
        self.container()?.exec(exec).await.map(drop).map_err(|source| ExternalDbError::Container {
            container: self.spec.name.clone(),
            action: "exec psql",
            source: Box::new(source),
        })
    }

    /// Runs `cmd` in the container to exit; returns stdout, or its exit code and stderr.
    async fn run(&self, cmd: &[impl AsRef<str>]) -> Result<String, ExternalDbError> {
        let failed = |source| ExternalDbError::Container { container: self.spec.name.clone(), action: "exec", source: Box::new(source) };
        let exec = ExecCommand::new(cmd.iter().map(|a| a.as_ref().to_string())).with_cmd_ready_condition(CmdWaitFor::exit());
        let mut result = self.container()?.exec(exec).await.map_err(failed)?;
        let stdout = result.stdout_to_vec().await.map_err(failed)?;
        let stderr = result.stderr_to_vec().await.map_err(failed)?;
        let code = result.exit_code().await.map_err(failed)?.unwrap_or(-1);
        if code != 0 {
            return Err(ExternalDbError::Psql {
                container: self.spec.name.clone(),
                code,
                stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }
}

fn psql_args(database: &str, sql: &str) -> Vec<String> {
    ["psql", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-F", "|", "-c", sql]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Owned for ExternalPostgres {
    fn describe(&self) -> String {
        format!("external PostgreSQL container {} ({}) on network {}", self.spec.name, self.ip, self.spec.network)
    }

    fn collect<'a>(&'a self, dir: &'a Path) -> LocalBoxFuture<'a, Result<(), BoxError>> {
        async move {
            // testcontainers' log readers are not Sync; the CLI reads the same log.
            let logs = tokio::process::Command::new("docker").args(["logs", &self.spec.name]).output().await?;
            std::fs::write(dir.join("container.log"), [logs.stdout, logs.stderr].concat())?;
            let activity =
                self.psql("postgres", "select datname, usename, application_name, state, backend_start from pg_stat_activity").await;
            std::fs::write(dir.join("pg_stat_activity.txt"), activity.unwrap_or_else(|e| format!("could not query: {e}")))?;
            Ok(())
        }
        .boxed_local()
    }

    fn keep(&self) -> String {
        self.kept.store(true, Ordering::SeqCst);
        format!("docker rm -f {}", self.spec.name)
    }
}

impl Drop for ExternalPostgres {
    fn drop(&mut self) {
        if self.kept.load(Ordering::SeqCst) {
            // Forgetting the handle is how one container outlives it
            // (TESTCONTAINERS_COMMAND=keep would keep every container).
            std::mem::forget(self.container.take());
            eprintln!("kept external database container {}; remove it with: docker rm -f {}", self.spec.name, self.spec.name);
        }
    }
}
