//! Agent routes: register, heartbeat, work, CSR, certificate fetch, job status, retire.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::agent_identity;
use super::error::ApiError;
use super::extract::{Ids, JsonBody};
use super::validate::{validate_agent_name, validate_hostname, validate_text, validate_version};
use crate::metrics::TargetReportLabels;
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
/// 200 when the agent of that name proved its credential (or claimed a row that had none).
/// The credential is in the body only when it was just issued.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Response, ApiError> {
    validate_agent_name(&body.name)?;
    if let Some(h) = &body.hostname {
        validate_hostname("hostname", h)?;
    }
    let presented = agent_identity::presented(&headers);
    let (status, agent, credential) = match agents::register(state.pool(), &body.name, body.hostname.as_deref(), presented).await? {
        agents::Registered::Created(agent, issued) => {
            state.metrics().agents_registered.inc();
            tracing::info!(agent_id = %agent.id, name = %agent.name, "agent registered");
            (StatusCode::CREATED, agent, Some(issued.secret))
        }
        agents::Registered::Claimed(agent, issued) => {
            tracing::warn!(agent_id = %agent.id, name = %agent.name, "agent without a credential claimed by this registration");
            (StatusCode::OK, agent, Some(issued.secret))
        }
        agents::Registered::Existing(agent) => (StatusCode::OK, agent, None),
        agents::Registered::Refused => {
            return Err(agent_identity::refused(format!(
                "agent {:?} is already registered; present its {} (kept next to its key) to register it again",
                body.name,
                crate::agent_credential::HEADER
            )))
        }
    };
    let mut answer = json!({"id": agent.id, "name": agent.name, "status": agent.status});
    if let Some(secret) = credential {
        answer["credential"] = json!(secret);
    }
    Ok((status, Json(answer)).into_response())
}

fn gone(id: uuid::Uuid) -> ApiError {
    ApiError::new(StatusCode::GONE, "agent_retired", format!("agent {id} is retired"))
}

/// The verified agent (see [`agent_identity`]) if active; 410 if retired.
fn active(agent: &agents::Agent) -> Result<(), ApiError> {
    if agent.status == "retired" {
        Err(gone(agent.id))
    } else {
        Ok(())
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
    Extension(agent): Extension<agents::Agent>,
    JsonBody(body): JsonBody<HeartbeatBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let Some(v) = &body.version {
        validate_version("version", v)?;
    }
    active(&agent)?;
    let id = agent.id;
    match agents::heartbeat(state.pool(), id, body.version.as_deref()).await? {
        None => Err(ApiError::not_found(format!("no agent {id}"))),
        Some(a) if a.status == "retired" => Err(gone(id)),
        Some(a) => Ok(Json(json!({"status": a.status}))),
    }
}

/// GET /agents/{id}/work
pub async fn work(State(state): State<AppState>, Extension(agent): Extension<agents::Agent>) -> Result<Json<serde_json::Value>, ApiError> {
    active(&agent)?;
    let pending = jobs::pending_for_agent(state.pool(), agent.id).await?;
    let jobs: Vec<_> = pending
        .into_iter()
        .map(|j| {
            let target = match (j.target_namespace, j.target_name) {
                (Some(namespace), Some(name)) => json!({"namespace": namespace, "name": name}),
                _ => serde_json::Value::Null,
            };
            json!({"id": j.id, "type": j.kind, "certificate_id": j.certificate_id,
                   "common_name": j.common_name, "sans": j.sans, "target": target})
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
pub async fn submit_csr(
    State(state): State<AppState>,
    Extension(agent): Extension<agents::Agent>,
    JsonBody(body): JsonBody<CsrBody>,
) -> Result<Response, ApiError> {
    active(&agent)?;
    let id = agent.id;
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

/// POST /agents/{id}/certificates/{cert_id}/target body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetStatusBody {
    status: String,
    serial: String,
    #[serde(default)]
    message: Option<String>,
}

/// POST /agents/{id}/certificates/{cert_id}/target: the agent's word on the certificate's
/// Secret (written with serial S, or why writing it failed).
pub async fn target_status(
    State(state): State<AppState>,
    Ids([id, cert_id]): Ids<2>,
    JsonBody(body): JsonBody<TargetStatusBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report = match body.status.as_str() {
        "written" => certificates::TargetReport::Written,
        "failed" => certificates::TargetReport::Failed,
        other => return Err(ApiError::bad_request("invalid_status", format!("status {other:?} is not written or failed"))),
    };
    if body.serial.is_empty() || body.serial.len() > 64 || !body.serial.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("invalid_request", "serial: must be 1 to 64 hexadecimal digits"));
    }
    if let Some(m) = &body.message {
        validate_text("message", m, 1024)?;
    }
    match certificates::report_target(state.pool(), id, cert_id, report, &body.serial, body.message.as_deref()).await? {
        certificates::TargetReported::Ok => {
            state.metrics().secret_target_reports.get_or_create(&TargetReportLabels { status: report.as_str() }).inc();
            if report == certificates::TargetReport::Failed {
                tracing::warn!(agent_id = %id, certificate_id = %cert_id, message = body.message.as_deref().unwrap_or(""), "agent cannot write the certificate's Secret");
            }
            Ok(Json(json!({"certificate_id": cert_id, "status": report.as_str()})))
        }
        certificates::TargetReported::UnknownCertificate => Err(ApiError::not_found(format!("agent {id} has no certificate {cert_id}"))),
        certificates::TargetReported::NoTarget => Err(ApiError::conflict(format!("certificate {cert_id} names no Secret target"))),
    }
}

/// DELETE /agents/{id}/credential: the operator's way back for an agent that lost its key
/// directory: the next registration of its name claims the agent and gets a new credential.
pub async fn reset_credential(State(state): State<AppState>, Ids([id]): Ids<1>) -> Result<StatusCode, ApiError> {
    if agents::reset_credential(state.pool(), id).await? {
        tracing::warn!(agent_id = %id, "agent credential reset; the next registration of its name claims it");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no agent {id}")))
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
