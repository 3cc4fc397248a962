//! Request middleware: metrics, authentication, permission checks and the readiness gate.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::{too_large, MAX_BODY_BYTES};
use crate::auth::{Authenticator, Permission, Principal};
use crate::state::{AppState, Startup};

/// Counts the request and times it, labelled by the matched route template.
pub async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    state.metrics().observe(&method, &route, response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

/// Resolves the caller from `Authorization: Bearer <key>`; 401 when missing or unknown.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match state.auth() {
        Authenticator::None => Principal::all(),
        Authenticator::ApiKey(keys) => {
            let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let Some(header) = header else {
                return ApiError::unauthorized("missing Authorization: Bearer <api key>").into_response();
            };
            let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")).map(str::trim);
            let Some(token) = token.filter(|t| !t.is_empty()) else {
                return ApiError::unauthorized("the Authorization header must be \"Bearer <api key>\"").into_response();
            };
            match keys.authenticate(token) {
                Some(p) => p,
                None => return ApiError::unauthorized("unknown or revoked api key").into_response(),
            }
        }
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Lets only principals holding the layer's permission through (403 otherwise); used as
/// `from_fn_with_state(permission, check_permission)` on each route.
pub async fn check_permission(State(needed): State<Permission>, req: Request, next: Next) -> Response {
    match req.extensions().get::<Principal>() {
        Some(p) if p.has(needed) => next.run(req).await,
        Some(_) => ApiError::forbidden(needed).into_response(),
        None => ApiError::unauthorized("missing Authorization: Bearer <api key>").into_response(),
    }
}

/// 503 for data routes until migrations ran and the CA is loaded.
pub async fn require_ready(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.startup() {
        Startup::Ready => next.run(req).await,
        Startup::Connecting(reason) | Startup::Preparing(reason) => {
            ApiError::not_ready(format!("the server is starting: {}", reason.unwrap_or_else(|| "connecting to the database".into())))
                .into_response()
        }
    }
}

/// A declared Content-Length over the limit is refused before any of the body is read, so
/// the client gets the 413 (and no `100 Continue`) instead of a connection closed mid-upload.
/// Bodies without a length are still cut at the limit while they are read.
pub async fn refuse_declared_oversize(req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => too_large().into_response(),
        _ => next.run(req).await,
    }
}
