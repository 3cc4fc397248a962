//! Jobs: what an agent must do, CSR submission, status reports, and renewal queueing.

use std::time::Duration;

use sqlx::postgres::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ca::{CsrError, Issued, LocalCa};

/// A pending job as the agent sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingJob {
    /// Job id.
    pub id: Uuid,
    /// Job type (`csr`).
    #[sqlx(rename = "type")]
    pub kind: String,
    /// Certificate to (re)issue.
    pub certificate_id: Uuid,
    /// CN the CSR must carry.
    pub common_name: String,
    /// SANs the CSR must carry.
    pub sans: Vec<String>,
    /// Namespace of the Secret to keep the certificate in, if any.
    pub target_namespace: Option<String>,
    /// Name of that Secret.
    pub target_name: Option<String>,
}

/// Pending jobs of one agent, oldest first.
///
/// # Errors
/// Database failures.
pub async fn pending_for_agent(pool: &PgPool, agent_id: Uuid) -> Result<Vec<PendingJob>, sqlx::Error> {
    sqlx::query_as(
        "SELECT j.id, j.type, j.certificate_id, c.common_name, c.sans, c.target_namespace, c.target_name
         FROM jobs j JOIN certificates c ON c.id = j.certificate_id
         WHERE j.agent_id = $1 AND j.status = 'pending'
         ORDER BY j.created_at, j.id",
    )
    .bind(agent_id)
    .fetch_all(pool)
    .await
}

/// Outcome of a CSR submission.
#[derive(Debug)]
pub enum Submitted {
    /// Issued and stored.
    Issued(Issued),
    /// No such job for this agent.
    UnknownJob,
    /// The body's certificate_id is not the job's.
    WrongCertificate {
        /// The job's certificate.
        expected: Uuid,
    },
    /// The job is no longer pending.
    NotPending {
        /// Its status.
        status: String,
    },
    /// The CSR was refused.
    Invalid(CsrError),
}

/// Verifies and signs a CSR for a pending job, then stores the certificate and marks the job
/// submitted, all in one transaction (the certificate and job rows are locked, so a double
/// submit gets 409 and a concurrent rename waits).
///
/// # Errors
/// Database failures.
pub async fn submit_csr(
    pool: &PgPool,
    ca: &LocalCa,
    agent_id: Uuid,
    job_id: Uuid,
    certificate_id: Uuid,
    csr_pem: &str,
    validity: Duration,
) -> Result<Submitted, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Lock order everywhere: certificate row, then its job rows (certificates::update and
    // DELETE take them in that order too). The reverse order deadlocked against a rename.
    let names: Option<(Uuid, String, Vec<String>)> = sqlx::query_as(
        "SELECT c.id, c.common_name, c.sans FROM certificates c
         WHERE c.id = (SELECT certificate_id FROM jobs WHERE id = $1 AND agent_id = $2) FOR UPDATE",
    )
    .bind(job_id)
    .bind(agent_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((job_cert, common_name, sans)) = names else {
        return Ok(Submitted::UnknownJob);
    };
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1 FOR UPDATE").bind(job_id).fetch_one(&mut *tx).await?;
    if job_cert != certificate_id {
        return Ok(Submitted::WrongCertificate { expected: job_cert });
    }
    if status != "pending" {
        return Ok(Submitted::NotPending { status });
    }
    let issued = match ca.sign_csr(csr_pem, &common_name, &sans, validity) {
        Ok(issued) => issued,
        Err(e) => return Ok(Submitted::Invalid(e)),
    };
    sqlx::query(
        "UPDATE certificates SET status = 'issued', certificate_pem = $2, serial = $3,
         not_before = $4, not_after = $5, updated_at = now() WHERE id = $1",
    )
    .bind(certificate_id)
    .bind(&issued.certificate_pem)
    .bind(&issued.serial)
    .bind(issued.not_before)
    .bind(issued.not_after)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE jobs SET status = 'submitted', updated_at = now() WHERE id = $1").bind(job_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Submitted::Issued(issued))
}

/// Final status an agent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Certificate installed.
    Completed,
    /// The agent gave up on the job.
    Failed,
}

impl Report {
    /// Wire / column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Report::Completed => "completed",
            Report::Failed => "failed",
        }
    }
}

/// Outcome of a status report.
#[derive(Debug, PartialEq, Eq)]
pub enum Reported {
    /// Recorded (or already recorded with the same status: retries are harmless).
    Ok,
    /// No such job for this agent.
    UnknownJob,
    /// Not allowed from the current status (e.g. completed before any CSR).
    Conflict {
        /// Current status.
        status: String,
    },
}

/// Records an agent's final report on a job.
///
/// # Errors
/// Database failures.
pub async fn report(pool: &PgPool, agent_id: Uuid, job_id: Uuid, report: Report, message: Option<&str>) -> Result<Reported, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1 AND agent_id = $2 FOR UPDATE")
        .bind(job_id)
        .bind(agent_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(status) = status else {
        return Ok(Reported::UnknownJob);
    };
    if status == report.as_str() {
        return Ok(Reported::Ok);
    }
    let allowed = match report {
        Report::Completed => status == "submitted",
        Report::Failed => status == "pending" || status == "submitted",
    };
    if !allowed {
        return Ok(Reported::Conflict { status });
    }
    sqlx::query("UPDATE jobs SET status = $2, message = $3, updated_at = now() WHERE id = $1")
        .bind(job_id)
        .bind(report.as_str())
        .bind(message)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Reported::Ok)
}

/// Queues a CSR job for every certificate of an active agent that needs one and has no
/// pending job: issued ones expiring before `renew_threshold`, and never-issued ones whose
/// last job failed. Safe to run on every replica at once (unique pending job per certificate).
/// Returns how many jobs were queued.
///
/// # Errors
/// Database failures.
pub async fn queue_renewals(pool: &PgPool, renew_threshold: OffsetDateTime) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO jobs (id, certificate_id, agent_id)
         SELECT gen_random_uuid(), c.id, c.agent_id
         FROM certificates c JOIN agents a ON a.id = c.agent_id AND a.status = 'active'
         WHERE ((c.status = 'issued' AND c.not_after <= $1) OR c.status = 'pending')
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.certificate_id = c.id AND j.status = 'pending')
         ON CONFLICT (certificate_id) WHERE status = 'pending' DO NOTHING",
    )
    .bind(renew_threshold)
    .execute(pool)
    .await?
    .rows_affected())
}
