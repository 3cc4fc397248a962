//! Agents: registration (which also queues the agent's own certificate), heartbeat, retirement.

use sqlx::postgres::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::queue_job;

/// An agent row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Agent {
    /// Id.
    pub id: Uuid,
    /// Unique name (usually the node name).
    pub name: String,
    /// Reported host name.
    pub hostname: Option<String>,
    /// `active` or `retired`.
    pub status: String,
    /// Last reported agent version.
    pub version: Option<String>,
    /// When it registered.
    pub registered_at: OffsetDateTime,
    /// Last heartbeat.
    pub last_heartbeat_at: Option<OffsetDateTime>,
}

macro_rules! agent_columns {
    () => {
        "id, name, hostname, status, version, registered_at, last_heartbeat_at"
    };
}

/// Registers `name`, or returns the existing agent of that name. A new agent gets a managed
/// certificate (CN = SAN = name) and a pending CSR job for it, in the same transaction.
/// Returns the agent and whether it was created.
///
/// # Errors
/// Database failures.
pub async fn register(pool: &PgPool, name: &str, hostname: Option<&str>) -> Result<(Agent, bool), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let created: Option<Agent> = sqlx::query_as(
        "INSERT INTO agents (id, name, hostname) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING
         RETURNING id, name, hostname, status, version, registered_at, last_heartbeat_at",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(hostname)
    .fetch_optional(&mut *tx)
    .await?;
    let result = match created {
        Some(agent) => {
            let cert_id = Uuid::new_v4();
            sqlx::query("INSERT INTO certificates (id, common_name, sans, agent_id) VALUES ($1, $2, $3, $4)")
                .bind(cert_id)
                .bind(name)
                .bind(vec![name.to_owned()])
                .bind(agent.id)
                .execute(&mut *tx)
                .await?;
            queue_job(&mut tx, cert_id, agent.id).await?;
            (agent, true)
        }
        None => {
            let agent =
                sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE name = $1")).bind(name).fetch_one(&mut *tx).await?;
            (agent, false)
        }
    };
    tx.commit().await?;
    Ok(result)
}

/// The agent with `id`, if any.
///
/// # Errors
/// Database failures.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Agent>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE id = $1")).bind(id).fetch_optional(pool).await
}

/// Records a heartbeat for an active agent; returns the agent as it was before (so the caller
/// can tell unknown from retired), or `None` if unknown.
///
/// # Errors
/// Database failures.
pub async fn heartbeat(pool: &PgPool, id: Uuid, version: Option<&str>) -> Result<Option<Agent>, sqlx::Error> {
    let updated: Option<Agent> = sqlx::query_as(concat!(
        "UPDATE agents SET last_heartbeat_at = now(), version = COALESCE($2, version)
         WHERE id = $1 AND status = 'active' RETURNING ",
        agent_columns!()
    ))
    .bind(id)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    match updated {
        Some(agent) => Ok(Some(agent)),
        None => get(pool, id).await,
    }
}

/// Retires an agent and fails its pending jobs. Returns false if unknown.
///
/// # Errors
/// Database failures.
pub async fn retire(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found = sqlx::query("UPDATE agents SET status = 'retired' WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected() == 1;
    sqlx::query(
        "UPDATE jobs SET status = 'failed', message = 'agent retired', updated_at = now()
         WHERE agent_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(found)
}
