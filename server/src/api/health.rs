//! /health, /ready and the Prometheus endpoint.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::db::ping_pool;
use crate::metrics::Format;
use crate::state::{AppState, Startup};

/// /ready's database ping limit (spec: 2 s).
const READY_PING_LIMIT: Duration = Duration::from_secs(2);

/// Liveness: the process is serving. Never touches the database.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "healthy"}))
}

fn not_ready(db: &str, reason: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not_ready", "db": db, "reason": reason}))).into_response()
}

/// Readiness: start-up finished and the database answers within 2 s.
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.startup() {
        Startup::Connecting(reason) => return not_ready("unreachable", reason.as_deref().unwrap_or("connecting to the database")),
        Startup::Preparing(reason) => return not_ready("reachable", reason.as_deref().unwrap_or("applying migrations and loading the CA")),
        Startup::Ready => {}
    }
    match ping_pool(state.pool(), state.target(), READY_PING_LIMIT).await {
        Ok(()) => Json(json!({"status": "ready", "db": "reachable"})).into_response(),
        Err(diagnosis) => not_ready("unreachable", &diagnosis.message),
    }
}

/// Metrics: Prometheus text by default, OpenMetrics when the `Accept` header asks for it.
pub async fn prometheus(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    ([(header::CONTENT_TYPE, format.content_type())], state.metrics().render(state.pool(), format)).into_response()
}
