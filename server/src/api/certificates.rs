//! Operator routes: certificates CRUD.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Ids, JsonBody};
use super::validate::{validate_names, validate_target};
use crate::state::AppState;
use crate::store::certificates::{self, Certificate, Created, Target};
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
    v["target"] = c.target.target().map_or(Value::Null, |t| {
        json!({
            "namespace": t.namespace,
            "name": t.name,
            "status": c.target.target_status,
            "serial": c.target.target_serial,
            "message": c.target.target_message,
            "updated_at": c.target.target_updated_at.map(rfc3339),
        })
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
    #[serde(default)]
    target: Option<TargetBody>,
}

/// A certificate's Secret target as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    namespace: String,
    name: String,
}

/// POST /certificates: 201 with the certificate and the queued job id.
pub async fn create(State(state): State<AppState>, JsonBody(body): JsonBody<CreateBody>) -> Result<Response, ApiError> {
    let sans = validate_names(&body.common_name, body.sans)?;
    let target = body.target.map(|t| Target { namespace: t.namespace, name: t.name });
    if let Some(t) = &target {
        validate_target(state.secret_namespaces(), &t.namespace, &t.name)?;
    }
    match certificates::create(state.pool(), &body.common_name, &sans, body.agent_id, target.as_ref()).await? {
        Created::Ok(cert, job_id) => {
            let mut v = view(&cert, false);
            v["job_id"] = json!(job_id);
            Ok((StatusCode::CREATED, Json(v)).into_response())
        }
        Created::UnknownAgent => Err(ApiError::not_found(format!("no agent {}", body.agent_id))),
        Created::RetiredAgent => Err(ApiError::conflict(format!("agent {} is retired", body.agent_id))),
        Created::TargetTaken => {
            let t = target.expect("only a certificate with a target can collide");
            Err(ApiError::conflict(format!("another certificate already keeps its key pair in Secret {}/{}", t.namespace, t.name)))
        }
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
