//! A throwaway, real PostgreSQL for tests: Debian's server binaries, a temporary data
//! directory, a free loopback port and scram-sha-256 password auth (so a wrong password really
//! fails with SQLSTATE 28P01).
//!
//! When the tests run as root, `initdb` and `postgres` (which refuse to run as root) are run as
//! the unprivileged `postgres` user that the Debian package creates.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), certctl_harness::postgres::PostgresError> {
//! use certctl_harness::postgres::TestPostgres;
//! let pg = TestPostgres::start().await?;
//! pg.create_role("certctl", "secret").await?;
//! pg.create_database("certctl", "certctl").await?;
//! let url = pg.url("certctl", "secret", "certctl");
//! let n = pg.count_connections("certctl-server").await?;
//! # let _ = (url, n); Ok(()) }
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};
use tokio::sync::Mutex;

/// Set to `1` to keep the data directory (and its `postgres.log`) after the fixture is dropped.
pub const KEEP_ENV: &str = "CERTCTL_KEEP_POSTGRES";
/// Set to a directory holding `initdb` and `postgres` to override version detection.
pub const BIN_DIR_ENV: &str = "CERTCTL_PG_BIN_DIR";
/// The superuser the fixture creates.
pub const SUPERUSER: &str = "postgres";
/// The application_name of the fixture's own connections (excluded from nothing; filter on
/// your own application_name when counting).
pub const ADMIN_APPLICATION_NAME: &str = "certctl-harness";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the fixture failed.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// No server binaries found.
    #[error("PostgreSQL server binaries (initdb, postgres) not found in {searched}: install the Debian package `postgresql` (apt-get install -y postgresql) or set {BIN_DIR_ENV} to the directory holding them")]
    BinariesMissing {
        /// Where we looked.
        searched: String,
    },
    /// Running as root with nobody to drop privileges to.
    #[error("running as root, but there is no `postgres` user to run PostgreSQL as (initdb refuses root): install the Debian package `postgresql` (it creates the user) or run the tests as an unprivileged user")]
    NoUnprivilegedUser,
    /// A file-system or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// initdb exited unsuccessfully.
    #[error("initdb failed ({status}):\n{output}")]
    Initdb {
        /// Exit status.
        status: String,
        /// Its output.
        output: String,
    },
    /// The server exited while starting.
    #[error("postgres exited during start-up ({status}); its log:\n{log}")]
    Exited {
        /// Exit status.
        status: String,
        /// The server log.
        log: String,
    },
    /// The server did not accept connections in time.
    #[error("postgres did not accept connections on 127.0.0.1:{port} within {}s; last error: {last}; its log:\n{log}", START_TIMEOUT.as_secs())]
    NotReady {
        /// The port.
        port: u16,
        /// Last connection error.
        last: String,
        /// The server log.
        log: String,
    },
    /// The server did not stop in time.
    #[error("postgres did not stop within {}s", STOP_TIMEOUT.as_secs())]
    StopTimeout,
    /// A statement failed.
    #[error("SQL failed: {sql}")]
    Sql {
        /// The statement.
        sql: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PostgresError {
    let what = what.into();
    move |source| PostgresError::Io { what, source }
}

/// Finds the newest /usr/lib/postgresql/<ver>/bin holding initdb and postgres.
///
/// # Errors
/// [`PostgresError::BinariesMissing`] naming the Debian package.
pub fn find_bin_dir() -> Result<PathBuf, PostgresError> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(dir) = std::env::var(BIN_DIR_ENV) {
        let dir = PathBuf::from(dir);
        return if has_both(&dir) {
            Ok(dir)
        } else {
            Err(PostgresError::BinariesMissing { searched: format!("{} ({BIN_DIR_ENV})", dir.display()) })
        };
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or(PostgresError::BinariesMissing { searched: "/usr/lib/postgresql/*/bin".into() })
}

/// uid/gid of `name` from /etc/passwd.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == name).then_some(())?;
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

fn free_port() -> Result<u16, PostgresError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("binding a probe socket to find a free port"))?;
    Ok(listener.local_addr().map_err(io_err("reading the probe socket's port"))?.port())
}

fn random_password() -> String {
    // Unique enough for a throwaway server on loopback; not a secret worth a CSPRNG dependency.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("pw{:x}{:x}", nanos, std::process::id())
}

/// A running throwaway PostgreSQL. Stopped and deleted on drop.
#[derive(Debug)]
pub struct TestPostgres {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
    admin: Mutex<Option<PgConnection>>,
}

impl TestPostgres {
    /// initdb + start on a free loopback port; returns once it accepts connections.
    ///
    /// # Errors
    /// Missing binaries, no unprivileged user (as root), initdb or start-up failure.
    pub async fn start() -> Result<Self, PostgresError> {
        let bin = find_bin_dir()?;
        // SAFETY-free check of our effective uid through /proc (no libc needed).
        let is_root = fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
        let run_as = if is_root { Some(lookup_user("postgres").ok_or(PostgresError::NoUnprivilegedUser)?) } else { None };
        let dir = tempfile::Builder::new().prefix("certctl-pg-").tempdir().map_err(io_err("creating a temporary directory"))?;
        let root = dir.path().to_owned();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .map_err(io_err(format!("chown {} to the postgres user", root.display())))?;
        }
        let password = random_password();
        let pwfile = root.join("pwfile");
        fs::write(&pwfile, &password).map_err(io_err("writing the password file"))?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).map_err(io_err("chmod the password file"))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).map_err(io_err("chown the password file"))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(root.join("data"))
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(&root);
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().map_err(io_err(format!("running {}/initdb", bin.display())))?;
        let _ = fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(PostgresError::Initdb {
                status: out.status.to_string(),
                output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            });
        }
        let mut pg = Self { dir: Some(dir), root, bin, port: free_port()?, password, run_as, child: None, admin: Mutex::new(None) };
        pg.start_server().await?;
        Ok(pg)
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn start_server(&mut self) -> Result<(), PostgresError> {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path()).map_err(io_err("opening postgres.log"))?;
        let log_err = log.try_clone().map_err(io_err("duplicating the log handle"))?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.root.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.root.display()))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(io_err(format!("starting {}/postgres", self.bin.display())))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<(), PostgresError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last: String;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(PostgresError::Exited { status: status.to_string(), log: self.log() });
                }
            }
            match PgConnection::connect_with(&self.admin_options()).await {
                Ok(conn) => {
                    *self.admin.lock().await = Some(conn);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                return Err(PostgresError::NotReady { port: self.port, last, log: self.log() });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn admin_options(&self) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(&self.password)
            .database("postgres")
            .application_name(ADMIN_APPLICATION_NAME)
    }

    /// Loopback host the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Superuser password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// `postgres://user:password@127.0.0.1:port/database` (inputs must not need URL encoding).
    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{database}", self.port)
    }

    /// The superuser's URL to the `postgres` database.
    pub fn superuser_url(&self) -> String {
        self.url(SUPERUSER, &self.password, "postgres")
    }

    /// Runs one statement as superuser; returns rows affected.
    ///
    /// # Errors
    /// [`PostgresError::Sql`].
    pub async fn execute(&self, sql: &str) -> Result<u64, PostgresError> {
        let mut guard = self.admin_conn().await?;
        let conn = guard.as_mut().expect("admin_conn fills the slot");
        match conn.execute(sqlx::AssertSqlSafe(sql.to_owned())).await {
            Ok(r) => Ok(r.rows_affected()),
            Err(source) => {
                *guard = None;
                Err(PostgresError::Sql { sql: sql.to_owned(), source })
            }
        }
    }

    /// Runs a query returning one bigint (e.g. `SELECT count(*) ...`) as superuser.
    ///
    /// # Errors
    /// [`PostgresError::Sql`].
    pub async fn query_i64(&self, sql: &str) -> Result<i64, PostgresError> {
        let mut guard = self.admin_conn().await?;
        let conn = guard.as_mut().expect("admin_conn fills the slot");
        match sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut *conn).await {
            Ok(v) => Ok(v),
            Err(source) => {
                *guard = None;
                Err(PostgresError::Sql { sql: sql.to_owned(), source })
            }
        }
    }

    async fn admin_conn(&self) -> Result<tokio::sync::MutexGuard<'_, Option<PgConnection>>, PostgresError> {
        let mut guard = self.admin.lock().await;
        if guard.is_none() {
            let conn = PgConnection::connect_with(&self.admin_options())
                .await
                .map_err(|source| PostgresError::Sql { sql: "(connect as superuser)".into(), source })?;
            *guard = Some(conn);
        }
        Ok(guard)
    }

    /// `CREATE ROLE name LOGIN PASSWORD 'password'`.
    ///
    /// # Errors
    /// [`PostgresError::Sql`].
    pub async fn create_role(&self, name: &str, password: &str) -> Result<(), PostgresError> {
        self.execute(&format!("CREATE ROLE {} LOGIN PASSWORD {}", ident(name), literal(password))).await.map(drop)
    }

    /// `ALTER ROLE name PASSWORD 'password'` (the non-destructive 28P01 remediation).
    ///
    /// # Errors
    /// [`PostgresError::Sql`].
    pub async fn set_password(&self, role: &str, password: &str) -> Result<(), PostgresError> {
        self.execute(&format!("ALTER ROLE {} PASSWORD {}", ident(role), literal(password))).await.map(drop)
    }

    /// `CREATE DATABASE name OWNER owner`.
    ///
    /// # Errors
    /// [`PostgresError::Sql`].
    pub async fn create_database(&self, name: &str, owner: &str) -> Result<(), PostgresError> {
        self.execute(&format!("CREATE DATABASE {} OWNER {}", ident(name), ident(owner))).await.map(drop)
    }

    /// Number of backends in pg_stat_activity carrying `application_name`.
    ///
    /// # Errors
    /// [`PostgresError::Sql`].
    pub async fn count_connections(&self, application_name: &str) -> Result<i64, PostgresError> {
        self.query_i64(&format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = {}", literal(application_name))).await
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server (fast shutdown: clients are disconnected). The data is kept.
    ///
    /// # Errors
    /// [`PostgresError::StopTimeout`] if it does not exit in time.
    pub async fn stop(&mut self) -> Result<(), PostgresError> {
        *self.admin.lock().await = None;
        let Some(mut child) = self.child.take() else { return Ok(()) };
        signal(&child, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PostgresError::StopTimeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the server again on the same port with the same data.
    ///
    /// # Errors
    /// As for [`TestPostgres::start`].
    pub async fn restart(&mut self) -> Result<(), PostgresError> {
        self.stop().await?;
        self.start_server().await
    }

    /// Starts a stopped server again on the same port with the same data.
    ///
    /// # Errors
    /// As for [`TestPostgres::start`].
    pub async fn start_again(&mut self) -> Result<(), PostgresError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.start_server().await
    }
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Quotes an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: nothing here is worth a checkpoint.
            signal(&child, nix::sys::signal::Signal::SIGQUIT);
            let _ = child.wait();
        }
        if std::env::var(KEEP_ENV).as_deref() == Ok("1") {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("{KEEP_ENV}=1: kept PostgreSQL data and log in {}", kept.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_authenticates_with_scram_and_restarts() {
        let mut pg = TestPostgres::start().await.expect("fixture starts");
        pg.create_role("app", "right").await.unwrap();
        pg.create_database("appdb", "app").await.unwrap();
        let good: PgConnectOptions = pg.url("app", "right", "appdb").parse().unwrap();
        let conn = PgConnection::connect_with(&good.clone().application_name("probe")).await.expect("right password works");
        assert_eq!(pg.count_connections("probe").await.unwrap(), 1);
        conn.close().await.unwrap();

        let bad: PgConnectOptions = pg.url("app", "wrong", "appdb").parse().unwrap();
        let err = PgConnection::connect_with(&bad).await.expect_err("wrong password refused");
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("28P01"), "{err}");

        pg.stop().await.unwrap();
        assert!(PgConnection::connect_with(&good).await.is_err(), "stopped server refuses");
        pg.start_again().await.unwrap();
        PgConnection::connect_with(&good).await.expect("data kept across restart");
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
