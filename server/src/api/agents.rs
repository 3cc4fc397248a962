//! Agent routes: register, heartbeat, work, CSR, certificate fetch, job status, retire.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Ids, JsonBody};
use super::validate::{validate_agent_name, validate_text};
use crate::state::AppState;
use crate::store::{self, agents, certificates, jobs};

/// POST /agents body.
#[derive(Debug, Deserialize)]
pub struct RegisterBody {
    name: String,
    #[serde(default)]
    hostname: Option<String>,
}

/// POST /agents: 201 when created (and a CSR job queued for the agent's own certificate),
/// 200 when an agent of that name already exists.
pub async fn register(State(state): State<AppState>, JsonBody(body): JsonBody<RegisterBody>) -> Result<Response, ApiError> {
    validate_agent_name(&body.name)?;
    if let Some(h) = &body.hostname {
        validate_text("hostname", h, 253)?;
    }
    let (agent, created) = agents::register(state.pool(), &body.name, body.hostname.as_deref()).await?;
    let status = if created {
        state.metrics().agents_registered.inc();
        tracing::info!(agent_id = %agent.id, name = %agent.name, "agent registered");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"id": agent.id, "name": agent.name, "status": agent.status}))).into_response())
}

fn gone(id: uuid::Uuid) -> ApiError {
    ApiError::new(StatusCode::GONE, "agent_retired", format!("agent {id} is retired"))
}

/// Loads an active agent or answers 404 / 410.
async fn active_agent(state: &AppState, id: uuid::Uuid) -> Result<agents::Agent, ApiError> {
    match agents::get(state.pool(), id).await? {
        None => Err(ApiError::not_found(format!("no agent {id}"))),
        Some(a) if a.status == "retired" => Err(gone(id)),
        Some(a) => Ok(a),
    }
}

/// POST /agents/{id}/heartbeat body (all optional).
#[derive(Debug, Deserialize)]
pub struct HeartbeatBody {
    #[serde(default)]
    version: Option<String>,
}

/// POST /agents/{id}/heartbeat
pub async fn heartbeat(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    JsonBody(body): JsonBody<HeartbeatBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(v) = &body.version {
        validate_text("version", v, 64)?;
    }
    match agents::heartbeat(state.pool(), id, body.version.as_deref()).await? {
        None => Err(ApiError::not_found(format!("no agent {id}"))),
        Some(a) if a.status == "retired" => Err(gone(id)),
        Some(a) => Ok(Json(json!({"status": a.status}))),
    }
}

/// GET /agents/{id}/work
pub async fn work(State(state): State<AppState>, Ids([id]): Ids<1>) -> Result<Json<serde_json::Value>, ApiError> {
    active_agent(&state, id).await?;
    let pending = jobs::pending_for_agent(state.pool(), id).await?;
    let jobs: Vec<_> = pending
        .into_iter()
        .map(|j| {
            json!({"id": j.id, "type": j.kind, "certificate_id": j.certificate_id,
                   "common_name": j.common_name, "sans": j.sans})
        })
        .collect();
    Ok(Json(json!({"jobs": jobs})))
}

/// POST /agents/{id}/csr body.
#[derive(Debug, Deserialize)]
pub struct CsrBody {
    job_id: uuid::Uuid,
    certificate_id: uuid::Uuid,
    csr_pem: String,
}

/// POST /agents/{id}/csr: 202 when issued.
pub async fn submit_csr(State(state): State<AppState>, Ids([id]): Ids<1>, JsonBody(body): JsonBody<CsrBody>) -> Result<Response, ApiError> {
    active_agent(&state, id).await?;
    let ca = state.ca().ok_or_else(|| ApiError::not_ready("the CA is not loaded yet"))?;
    let validity = state.scheduler().certificate_validity;
    let outcome = jobs::submit_csr(state.pool(), ca, id, body.job_id, body.certificate_id, &body.csr_pem, validity).await?;
    match outcome {
        jobs::Submitted::Issued(issued) => {
            state.metrics().certificates_issued.inc();
            tracing::info!(agent_id = %id, certificate_id = %body.certificate_id, serial = %issued.serial, "certificate issued");
            Ok((StatusCode::ACCEPTED, Json(json!({"certificate_id": body.certificate_id, "status": "issued"}))).into_response())
        }
        jobs::Submitted::UnknownJob => Err(ApiError::not_found(format!("agent {id} has no job {}", body.job_id))),
        jobs::Submitted::WrongCertificate { expected } => Err(ApiError::bad_request(
            "invalid_request",
            format!("job {} is for certificate {expected}, not {}", body.job_id, body.certificate_id),
        )),
        jobs::Submitted::NotPending { status } => {
            Err(ApiError::conflict(format!("job {} is {status}, not pending; poll /work for current jobs", body.job_id)))
        }
        jobs::Submitted::Invalid(reason) => Err(ApiError::bad_request("invalid_csr", reason.to_string())),
    }
}

/// GET /agents/{id}/certificates/{cert_id}
pub async fn fetch_certificate(State(state): State<AppState>, Ids([id, cert_id]): Ids<2>) -> Result<Json<serde_json::Value>, ApiError> {
    let ca = state.ca().ok_or_else(|| ApiError::not_ready("the CA is not loaded yet"))?;
    let cert = certificates::issued_for_agent(state.pool(), id, cert_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate {cert_id} is not issued for agent {id}")))?;
    Ok(Json(json!({
        "certificate_id": cert.id,
        "certificate_pem": cert.certificate_pem,
        "ca_pem": ca.cert_pem(),
        "serial": cert.serial,
        "not_after": cert.not_after.map(store::rfc3339),
    })))
}

/// POST /agents/{id}/jobs/{job_id}/status body.
#[derive(Debug, Deserialize)]
pub struct StatusBody {
    status: String,
    #[serde(default)]
    message: Option<String>,
}

/// POST /agents/{id}/jobs/{job_id}/status
pub async fn job_status(
    State(state): State<AppState>,
    Ids([id, job_id]): Ids<2>,
    JsonBody(body): JsonBody<StatusBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report = match body.status.as_str() {
        "completed" => jobs::Report::Completed,
        "failed" => jobs::Report::Failed,
        other => return Err(ApiError::bad_request("invalid_status", format!("status {other:?} is not completed or failed"))),
    };
    if let Some(m) = &body.message {
        validate_text("message", m, 4096)?;
    }
    match jobs::report(state.pool(), id, job_id, report, body.message.as_deref()).await? {
        jobs::Reported::Ok => Ok(Json(json!({"status": report.as_str()}))),
        jobs::Reported::UnknownJob => Err(ApiError::not_found(format!("agent {id} has no job {job_id}"))),
        jobs::Reported::Conflict { status } => {
            Err(ApiError::conflict(format!("job {job_id} is {status}; cannot become {}", report.as_str())))
        }
    }
}

/// DELETE /agents/{id}: retire (heartbeat and work answer 410 afterwards).
pub async fn retire(State(state): State<AppState>, Ids([id]): Ids<1>) -> Result<Json<serde_json::Value>, ApiError> {
    if agents::retire(state.pool(), id).await? {
        tracing::info!(agent_id = %id, "agent retired");
        Ok(Json(json!({"id": id, "status": "retired"})))
    } else {
        Err(ApiError::not_found(format!("no agent {id}")))
    }
}
