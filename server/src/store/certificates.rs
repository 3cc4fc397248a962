//! Managed certificates: operator CRUD and the agent's fetch of an issued certificate.

use sqlx::postgres::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::queue_job;

/// A certificate row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Certificate {
    /// Id.
    pub id: Uuid,
    /// Subject common name.
    pub common_name: String,
    /// subjectAltNames (DNS names or IP addresses).
    pub sans: Vec<String>,
    /// The agent holding the key.
    pub agent_id: Uuid,
    /// `pending` until first issued, then `issued`.
    pub status: String,
    /// PEM of the current certificate, once issued.
    pub certificate_pem: Option<String>,
    /// Serial of the current certificate (hex).
    pub serial: Option<String>,
    /// Start of validity.
    pub not_before: Option<OffsetDateTime>,
    /// End of validity.
    pub not_after: Option<OffsetDateTime>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

macro_rules! cert_columns {
    () => {
        "id, common_name, sans, agent_id, status, certificate_pem, serial, not_before, not_after, created_at, updated_at"
    };
}

/// Outcome of creating a certificate.
#[derive(Debug)]
pub enum Created {
    /// Created, with the id of the queued CSR job.
    Ok(Box<Certificate>, Uuid),
    /// No such agent.
    UnknownAgent,
    /// The agent is retired and will never fetch work.
    RetiredAgent,
}

/// Creates a certificate for `agent_id` and queues a CSR job for it (one transaction).
///
/// # Errors
/// Database failures.
pub async fn create(pool: &PgPool, common_name: &str, sans: &[String], agent_id: Uuid) -> Result<Created, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM agents WHERE id = $1 FOR SHARE").bind(agent_id).fetch_optional(&mut *tx).await?;
    match status.as_deref() {
        None => return Ok(Created::UnknownAgent),
        Some("retired") => return Ok(Created::RetiredAgent),
        Some(_) => {}
    }
    let cert: Certificate = sqlx::query_as(concat!(
        "INSERT INTO certificates (id, common_name, sans, agent_id) VALUES ($1, $2, $3, $4) RETURNING ",
        cert_columns!()
    ))
    .bind(Uuid::new_v4())
    .bind(common_name)
    .bind(sans)
    .bind(agent_id)
    .fetch_one(&mut *tx)
    .await?;
    let job = queue_job(&mut tx, cert.id, agent_id).await?.expect("a new certificate has no pending job yet");
    tx.commit().await?;
    Ok(Created::Ok(Box::new(cert), job))
}

/// All certificates, newest first.
///
/// # Errors
/// Database failures.
pub async fn list(pool: &PgPool) -> Result<Vec<Certificate>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", cert_columns!(), " FROM certificates ORDER BY created_at DESC, id")).fetch_all(pool).await
}

/// One certificate.
///
/// # Errors
/// Database failures.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Certificate>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", cert_columns!(), " FROM certificates WHERE id = $1")).bind(id).fetch_optional(pool).await
}

/// Changes the names of a certificate. When they change, the pending job (if any) is
/// superseded and a new CSR job queued, because the issued certificate no longer matches.
/// Returns `None` if unknown.
///
/// # Errors
/// Database failures.
pub async fn update(pool: &PgPool, id: Uuid, common_name: &str, sans: &[String]) -> Result<Option<Certificate>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let before: Option<(String, Vec<String>)> =
        sqlx::query_as("SELECT common_name, sans FROM certificates WHERE id = $1 FOR UPDATE").bind(id).fetch_optional(&mut *tx).await?;
    let Some((old_cn, old_sans)) = before else {
        return Ok(None);
    };
    let cert: Certificate = sqlx::query_as(concat!(
        "UPDATE certificates SET common_name = $2, sans = $3, updated_at = now() WHERE id = $1 RETURNING ",
        cert_columns!()
    ))
    .bind(id)
    .bind(common_name)
    .bind(sans)
    .fetch_one(&mut *tx)
    .await?;
    if old_cn != common_name || old_sans != sans {
        sqlx::query(
            "UPDATE jobs SET status = 'failed', message = 'superseded: certificate names changed', updated_at = now()
             WHERE certificate_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        queue_job(&mut tx, id, cert.agent_id).await?;
    }
    tx.commit().await?;
    Ok(Some(cert))
}

/// Deletes a certificate and its jobs. Returns false if unknown.
///
/// # Errors
/// Database failures.
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM certificates WHERE id = $1").bind(id).execute(pool).await?.rows_affected() == 1)
}

/// The issued certificate `cert_id` if it is assigned to `agent_id`.
///
/// # Errors
/// Database failures.
pub async fn issued_for_agent(pool: &PgPool, agent_id: Uuid, cert_id: Uuid) -> Result<Option<Certificate>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", cert_columns!(), " FROM certificates WHERE id = $1 AND agent_id = $2 AND status = 'issued'"))
        .bind(cert_id)
        .bind(agent_id)
        .fetch_optional(pool)
        .await
}
