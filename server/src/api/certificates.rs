//! Operator routes: certificates CRUD.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Ids, JsonBody};
use super::validate::validate_names;
use crate::state::AppState;
use crate::store::certificates::{self, Certificate, Created};
use crate::store::rfc3339;

fn view(c: &Certificate, with_pem: bool) -> Value {
    let mut v = json!({
        "id": c.id,
        "common_name": c.common_name,
        "sans": c.sans,
        "agent_id": c.agent_id,
        "status": c.status,
        "serial": c.serial,
        "not_before": c.not_before.map(rfc3339),
        "not_after": c.not_after.map(rfc3339),
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    });
    if with_pem {
        v["certificate_pem"] = json!(c.certificate_pem);
    }
    v
}

/// GET /certificates
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = certificates::list(state.pool()).await?;
    Ok(Json(json!({"certificates": all.iter().map(|c| view(c, false)).collect::<Vec<_>>()})))
}

/// GET /certificates/{id}
pub async fn get(State(state): State<AppState>, Ids([id]): Ids<1>) -> Result<Json<Value>, ApiError> {
    certificates::get(state.pool(), id)
        .await?
        .map(|c| Json(view(&c, true)))
        .ok_or_else(|| ApiError::not_found(format!("no certificate {id}")))
}

/// POST /certificates body.
#[derive(Debug, Deserialize)]
pub struct CreateBody {
    common_name: String,
    #[serde(default)]
    sans: Option<Vec<String>>,
    agent_id: uuid::Uuid,
}

/// POST /certificates: 201 with the certificate and the queued job id.
pub async fn create(State(state): State<AppState>, JsonBody(body): JsonBody<CreateBody>) -> Result<Response, ApiError> {
    let sans = validate_names(&body.common_name, body.sans)?;
    match certificates::create(state.pool(), &body.common_name, &sans, body.agent_id).await? {
        Created::Ok(cert, job_id) => {
            let mut v = view(&cert, false);
            v["job_id"] = json!(job_id);
            Ok((StatusCode::CREATED, Json(v)).into_response())
        }
        Created::UnknownAgent => Err(ApiError::not_found(format!("no agent {}", body.agent_id))),
        Created::RetiredAgent => Err(ApiError::conflict(format!("agent {} is retired", body.agent_id))),
    }
}

/// PUT /certificates/{id} body.
#[derive(Debug, Deserialize)]
pub struct UpdateBody {
    common_name: String,
    #[serde(default)]
    sans: Option<Vec<String>>,
}

/// PUT /certificates/{id}: changing names queues a re-issue.
pub async fn update(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    let sans = validate_names(&body.common_name, body.sans)?;
    certificates::update(state.pool(), id, &body.common_name, &sans)
        .await?
        .map(|c| Json(view(&c, false)))
        .ok_or_else(|| ApiError::not_found(format!("no certificate {id}")))
}

/// DELETE /certificates/{id}: 204.
pub async fn delete(State(state): State<AppState>, Ids([id]): Ids<1>) -> Result<StatusCode, ApiError> {
    if certificates::delete(state.pool(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no certificate {id}")))
    }
}
