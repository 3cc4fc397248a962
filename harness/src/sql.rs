//! SQL through the Postgres pod: `psql` exec'd in the database container,
//! results as rows of strings. No client library, no forwarded port: the
//! pod's own password setup over TCP, or its local-socket trust.

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use crate::exec::{exec, ExecError};

/// Errors running SQL.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// exec failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// psql reported an error.
    #[error("psql exited {code}: {stderr}")]
    Psql {
        /// Exit code.
        code: i32,
        /// psql's stderr.
        stderr: String,
    },
}

/// Where to run psql.
///
/// # Example
/// ```
/// let db = certctl_harness::sql::PsqlTarget::new("c-certctl-postgres-0", "postgres", "certctl", "certctl");
/// assert_eq!(db.database, "certctl");
/// ```
#[derive(Debug, Clone)]
pub struct PsqlTarget {
    /// The postgres pod.
    pub pod: String,
    /// Its container.
    pub container: String,
    /// Database name.
    pub database: String,
    /// Role to connect as.
    pub user: String,
    /// How psql reaches the server.
    pub via: Via,
}

/// How psql connects inside the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// TCP to 127.0.0.1 with the pod's `POSTGRES_PASSWORD`: the password
    /// path the server uses.
    Tcp,
    /// The local socket, which the image trusts: works when the configured
    /// password no longer matches the role's (the remedy for 28P01 runs here).
    Socket,
}

impl PsqlTarget {
    /// A target.
    ///
    /// # Example
    /// ```
    /// let _ = certctl_harness::sql::PsqlTarget::new("p", "c", "db", "u");
    /// ```
    pub fn new(pod: &str, container: &str, database: &str, user: &str) -> Self {
        Self { pod: pod.into(), container: container.into(), database: database.into(), user: user.into(), via: Via::Tcp }
    }

    /// The same target over the local socket (see [`Via::Socket`]).
    ///
    /// # Example
    /// ```
    /// use certctl_harness::sql::{PsqlTarget, Via};
    /// assert_eq!(PsqlTarget::new("p", "c", "db", "u").over_socket().via, Via::Socket);
    /// ```
    pub fn over_socket(mut self) -> Self {
        self.via = Via::Socket;
        self
    }

    /// Runs `sql` and returns its rows, fields split on `|`.
    ///
    /// # Errors
    /// [`SqlError::Psql`] with psql's message (e.g. the SQLSTATE).
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(client: kube::Client) -> Result<(), certctl_harness::sql::SqlError> {
    /// let pods = kube::Api::namespaced(client, "ns");
    /// let db = certctl_harness::sql::PsqlTarget::new("c-certctl-postgres-0", "postgres", "certctl", "certctl");
    /// let rows = db.query(&pods, "select count(*) from pg_stat_activity where application_name = 'certctl-server'").await?;
    /// let n: u32 = rows[0][0].parse().unwrap();
    /// # Ok(()) }
    /// ```
    pub async fn query(&self, pods: &Api<Pod>, sql: &str) -> Result<Vec<Vec<String>>, SqlError> {
        Ok(parse_rows(&self.raw(pods, sql).await?))
    }

    /// Runs `sql` and returns psql's whole unaligned output, trimmed — for a
    /// single value that may span lines (a PEM, say).
    ///
    /// # Errors
    /// [`SqlError::Psql`] with psql's message.
    ///
    /// # Example
    /// ```no_run
    /// # async fn f(pods: kube::Api<k8s_openapi::api::core::v1::Pod>, db: certctl_harness::sql::PsqlTarget) -> Result<(), certctl_harness::sql::SqlError> {
    /// let ca_pem = db.scalar(&pods, "select cert_pem from ca where id = 1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn scalar(&self, pods: &Api<Pod>, sql: &str) -> Result<String, SqlError> {
        Ok(self.raw(pods, sql).await?.trim().to_string())
    }

    async fn raw(&self, pods: &Api<Pod>, sql: &str) -> Result<String, SqlError> {
        // Tcp: -h 127.0.0.1, so the image's password auth (PGPASSWORD from the
        // pod env) applies as it does for the server. Socket: no -h, the
        // image's local trust.
        let script = match self.via {
            Via::Tcp => "PGPASSWORD=\"${POSTGRES_PASSWORD:-}\" exec psql -h 127.0.0.1 -U \"$1\" -d \"$2\" -v ON_ERROR_STOP=1 -X -A -t -F '|' -c \"$3\"",
            Via::Socket => "exec psql -U \"$1\" -d \"$2\" -v ON_ERROR_STOP=1 -X -A -t -F '|' -c \"$3\"",
        };
        let out = exec(pods, &self.pod, &self.container, &["sh", "-c", script, "psql", &self.user, &self.database, sql]).await?;
        if !out.success() {
            return Err(SqlError::Psql { code: out.code, stderr: out.stderr.trim().to_string() });
        }
        Ok(out.stdout)
    }
}

fn parse_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout.lines().filter(|l| !l.is_empty()).map(|l| l.split('|').map(String::from).collect()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_split_on_pipes() {
        assert_eq!(super::parse_rows("1|a\n2|b\n\n"), vec![vec!["1", "a"], vec!["2", "b"]]);
    }
}
