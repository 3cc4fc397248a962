//! Agents: registration (which also queues the agent's own certificate), heartbeat, retirement.

use sqlx::postgres::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::queue_job;
use crate::agent_credential as credential;

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
    /// SHA-256 of the agent's credential; `None` until issued (see [`Registered::Claimed`]).
    pub credential_hash: Option<Vec<u8>>,
}

macro_rules! agent_columns {
    () => {
        "id, name, hostname, status, version, registered_at, last_heartbeat_at, credential_hash"
    };
}

/// Outcome of a registration.
#[derive(Debug)]
pub enum Registered {
    /// A new agent, with the credential it must keep (shown this once).
    Created(Agent, credential::Issued),
    /// An existing agent that proved it holds its credential.
    Existing(Agent),
    /// An existing agent that had no credential yet (older release, or reset by an
    /// operator): this registration claimed it and received a credential.
    Claimed(Agent, credential::Issued),
    /// The name is taken and the caller did not present its credential.
    Refused,
}

/// Registers `name`, or recognises the existing agent of that name when `presented` is its
/// credential. A new agent gets a managed certificate (CN = SAN = name) and a pending CSR job
/// for it, in the same transaction.
///
/// # Errors
/// Database failures.
pub async fn register(pool: &PgPool, name: &str, hostname: Option<&str>, presented: Option<&str>) -> Result<Registered, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let issued = credential::issue();
    let created: Option<Agent> = sqlx::query_as(concat!(
        "INSERT INTO agents (id, name, hostname, credential_hash) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING RETURNING ",
        agent_columns!()
    ))
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(hostname)
    .bind(issued.hash.as_slice())
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
            Registered::Created(agent, issued)
        }
        None => {
            // Locked so two registrations cannot both claim a row without a credential.
            let agent: Agent = sqlx::query_as(concat!("SELECT ", agent_columns!(), " FROM agents WHERE name = $1 FOR UPDATE"))
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            match &agent.credential_hash {
                None => {
                    sqlx::query("UPDATE agents SET credential_hash = $2 WHERE id = $1")
                        .bind(agent.id)
                        .bind(issued.hash.as_slice())
                        .execute(&mut *tx)
                        .await?;
                    Registered::Claimed(agent, issued)
                }
                Some(stored) if presented.is_some_and(|p| credential::matches(stored, p)) => Registered::Existing(agent),
                Some(_) => Registered::Refused,
            }
        }
    };
    tx.commit().await?;
    Ok(result)
}

/// Forgets an agent's credential so that the next registration of its name claims the row
/// (an operator's way back for an agent that lost its key directory). Returns false if unknown.
///
/// # Errors
/// Database failures.
pub async fn reset_credential(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("UPDATE agents SET credential_hash = NULL WHERE id = $1").bind(id).execute(pool).await?.rows_affected() == 1)
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
