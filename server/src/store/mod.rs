//! Persistence: every multi-row change runs in one transaction, so a failure leaves nothing
//! half-written.

pub mod agents;
pub mod certificates;
pub mod jobs;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Formats a timestamp as RFC 3339 for the API.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Queues a pending CSR job for a certificate inside the caller's transaction; returns its id,
/// or `None` when one is already pending.
pub(crate) async fn queue_job(
    conn: &mut sqlx::PgConnection,
    certificate_id: uuid::Uuid,
    agent_id: uuid::Uuid,
) -> Result<Option<uuid::Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO jobs (id, certificate_id, agent_id) VALUES ($1, $2, $3)
         ON CONFLICT (certificate_id) WHERE status = 'pending' DO NOTHING RETURNING id",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(certificate_id)
    .bind(agent_id)
    .fetch_optional(conn)
    .await
}
