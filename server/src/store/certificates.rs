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
    /// The Secret the agent keeps this certificate in, if any, and its agent's last report.
    #[sqlx(flatten)]
    pub target: TargetColumns,
}

/// Where a certificate is to be kept as a Kubernetes Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Namespace (one of the server's CERTCTL_KUBERNETES_SECRETS_NAMESPACES).
    pub namespace: String,
    /// Secret name.
    pub name: String,
}

/// The target columns of a certificate row (all NULL without a target).
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct TargetColumns {
    /// Target namespace.
    pub target_namespace: Option<String>,
    /// Target Secret name.
    pub target_name: Option<String>,
    /// `written` or `failed`, as the agent last reported; NULL before any report.
    pub target_status: Option<String>,
    /// The serial the report was about.
    pub target_serial: Option<String>,
    /// The agent's words (why a write failed).
    pub target_message: Option<String>,
    /// When the report arrived.
    pub target_updated_at: Option<OffsetDateTime>,
}

impl TargetColumns {
    /// The target, if the certificate has one.
    pub fn target(&self) -> Option<Target> {
        Some(Target { namespace: self.target_namespace.clone()?, name: self.target_name.clone()? })
    }
}

macro_rules! cert_columns {
    () => {
        "id, common_name, sans, agent_id, status, certificate_pem, serial, not_before, not_after, created_at, updated_at, \
         target_namespace, target_name, target_status, target_serial, target_message, target_updated_at"
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
    /// Another certificate already names this Secret.
    TargetTaken,
}

/// Creates a certificate for `agent_id` and queues a CSR job for it (one transaction).
///
/// # Errors
/// Database failures.
pub async fn create(
    pool: &PgPool,
    common_name: &str,
    sans: &[String],
    agent_id: Uuid,
    target: Option<&Target>,
) -> Result<Created, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM agents WHERE id = $1 FOR SHARE").bind(agent_id).fetch_optional(&mut *tx).await?;
    match status.as_deref() {
        None => return Ok(Created::UnknownAgent),
        Some("retired") => return Ok(Created::RetiredAgent),
        Some(_) => {}
    }
    let inserted = sqlx::query_as(concat!(
        "INSERT INTO certificates (id, common_name, sans, agent_id, target_namespace, target_name) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        cert_columns!()
    ))
    .bind(Uuid::new_v4())
    .bind(common_name)
    .bind(sans)
    .bind(agent_id)
    .bind(target.map(|t| &t.namespace))
    .bind(target.map(|t| &t.name))
    .fetch_one(&mut *tx)
    .await;
    let cert: Certificate = match inserted {
        Err(e) if violates(&e, "certificates_target_unique") => return Ok(Created::TargetTaken),
        other => other?,
    };
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

fn violates(e: &sqlx::Error, constraint: &str) -> bool {
    e.as_database_error().and_then(|d| d.constraint()) == Some(constraint)
}

/// What an agent reports about writing a certificate's Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetReport {
    /// The Secret holds the certificate of the reported serial.
    Written,
    /// The write failed; the agent retries with backoff.
    Failed,
}

impl TargetReport {
    /// Wire / column value.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetReport::Written => "written",
            TargetReport::Failed => "failed",
        }
    }
}

/// Outcome of recording a target report.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetReported {
    /// Recorded.
    Ok,
    /// No such certificate for this agent.
    UnknownCertificate,
    /// The certificate names no target.
    NoTarget,
}

/// Records an agent's report on the Secret of one of its certificates.
///
/// # Errors
/// Database failures.
pub async fn report_target(
    pool: &PgPool,
    agent_id: Uuid,
    cert_id: Uuid,
    report: TargetReport,
    serial: &str,
    message: Option<&str>,
) -> Result<TargetReported, sqlx::Error> {
    // One statement: the report lands only on this agent's certificate that names a target.
    let updated = sqlx::query(
        "UPDATE certificates SET target_status = $3, target_serial = $4, target_message = $5, target_updated_at = now()
         WHERE id = $1 AND agent_id = $2 AND target_namespace IS NOT NULL",
    )
    .bind(cert_id)
    .bind(agent_id)
    .bind(report.as_str())
    .bind(serial)
    .bind(message)
    .execute(pool)
    .await?
    .rows_affected();
    if updated == 1 {
        return Ok(TargetReported::Ok);
    }
    // Nothing was written; only the answer depends on why.
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM certificates WHERE id = $1 AND agent_id = $2")
        .bind(cert_id)
        .bind(agent_id)
        .fetch_optional(pool)
        .await?;
    Ok(if exists.is_some() { TargetReported::NoTarget } else { TargetReported::UnknownCertificate })
}
