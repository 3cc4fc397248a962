//! Agent identity on `/agents/{agent_id}/...`: the caller must present the credential issued to
//! that agent at registration, whatever its API key may do. The verified agent is handed to
//! the route as an [`axum::Extension`].

use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::error::ApiError;
use crate::agent_credential::{self, HEADER};
use crate::state::AppState;
use crate::store::agents;

/// 403 for a missing or wrong credential; the agent must register with its credential.
pub fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "agent_credential_invalid", message)
}

/// The credential header's value, if present and readable.
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    headers.get(HEADER).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// Loads the agent named by the path and checks the presented credential: 404 unknown,
/// 403 missing / wrong / never issued.
pub async fn require_agent_credential(State(state): State<AppState>, params: RawPathParams, mut req: Request, next: Next) -> Response {
    let Some((_, raw_id)) = params.iter().find(|(name, _)| *name == "agent_id") else {
        return ApiError::bad_request("invalid_path", "missing agent id in path").into_response();
    };
    let Ok(id) = Uuid::parse_str(raw_id) else {
        return ApiError::not_found(format!("no agent_id {raw_id:?}: ids are UUIDs")).into_response();
    };
    let agent = match agents::get(state.pool(), id).await {
        Ok(Some(agent)) => agent,
        Ok(None) => return ApiError::not_found(format!("no agent {id}")).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let verdict = match (&agent.credential_hash, presented(req.headers())) {
        (None, _) => Err(format!("agent {id} has no credential yet; register its name again to claim it")),
        (Some(_), None) => Err(format!("missing {HEADER} header: agent routes need the credential issued at registration")),
        (Some(stored), Some(p)) if agent_credential::matches(stored, p) => Ok(()),
        (Some(_), Some(_)) => Err(format!("the {HEADER} presented is not agent {id}'s")),
    };
    if let Err(message) = verdict {
        tracing::warn!(agent_id = %id, "agent request refused: {message}");
        return refused(message).into_response();
    }
    req.extensions_mut().insert(agent);
    next.run(req).await
}
