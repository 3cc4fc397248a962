//! Schema migrations, applied in one transaction under an advisory lock so several replicas
//! starting at once apply each migration exactly once.

use sqlx::postgres::PgPool;

/// Advisory lock key shared by every replica ("certctl" in ASCII).
const MIGRATION_LOCK: i64 = 0x0063_6572_7463_746c;

/// One schema step. Versions are applied in order and never edited once released.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial schema", sql: include_str!("migrations/0001_initial.sql") },
    Migration { version: 2, name: "agent credentials", sql: include_str!("migrations/0002_agent_credentials.sql") },
    Migration { version: 3, name: "kubernetes secret targets", sql: include_str!("migrations/0003_secret_targets.sql") },
];

/// How many migrations this release knows.
pub fn known() -> usize {
    MIGRATIONS.len()
}

/// Why migrations failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A statement failed; nothing of that run was kept (one transaction).
    #[error("applying migration {version} ({name}) failed; nothing was changed")]
    Apply {
        /// The version.
        version: i32,
        /// Its name.
        name: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// Bookkeeping (lock, version table) failed.
    #[error("migration bookkeeping failed")]
    Bookkeeping(#[from] sqlx::Error),
}

/// Applies all pending migrations; returns how many were applied by this call.
///
/// # Errors
/// A failing statement (the whole run is rolled back) or a lost connection.
pub async fn run(pool: &PgPool) -> Result<usize, MigrateError> {
    let mut tx = pool.begin().await?;
    // Transaction-scoped: released on commit or rollback, even if this process dies.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&mut *tx).await?;
    let mut count = 0;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|source| MigrateError::Apply { version: m.version, name: m.name, source })?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)").bind(m.version).bind(m.name).execute(&mut *tx).await?;
        count += 1;
    }
    tx.commit().await?;
    Ok(count)
}
