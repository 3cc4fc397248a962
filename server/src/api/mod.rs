//! HTTP routes. Everything under /api/v1 needs a key (unless auth is `none`); each route
//! names the one permission it needs.

mod agents;
mod certificates;
pub mod error;
pub mod extract;
mod health;
mod middleware;
mod validate;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::auth::Permission;
use crate::state::AppState;
use error::ApiError;
use middleware::{authenticate, check_permission, record_metrics, require_ready};

/// The full application router.
pub fn router(state: AppState) -> Router {
    use Permission::*;
    let need = |p: Permission| axum::middleware::from_fn_with_state(p, check_permission);
    // Routes that need the database schema and the CA: gated until start-up is done.
    let data = Router::new()
        .route("/agents", post(agents::register).route_layer(need(AgentRegister)))
        .route("/agents/{agent_id}", delete(agents::retire).route_layer(need(CertificateWrite)))
        .route("/agents/{agent_id}/heartbeat", post(agents::heartbeat).route_layer(need(AgentHeartbeat)))
        .route("/agents/{agent_id}/work", get(agents::work).route_layer(need(AgentJobPoll)))
        .route("/agents/{agent_id}/csr", post(agents::submit_csr).route_layer(need(AgentCsrSubmit)))
        .route("/agents/{agent_id}/certificates/{certificate_id}", get(agents::fetch_certificate).route_layer(need(AgentJobPoll)))
        .route("/agents/{agent_id}/jobs/{job_id}/status", post(agents::job_status).route_layer(need(AgentJobPoll)))
        .route(
            "/certificates",
            get(certificates::list)
                .route_layer(need(CertificateRead))
                .merge(post(certificates::create).route_layer(need(CertificateWrite))),
        )
        .route(
            "/certificates/{certificate_id}",
            get(certificates::get)
                .route_layer(need(CertificateRead))
                .merge(axum::routing::put(certificates::update).delete(certificates::delete).route_layer(need(CertificateWrite))),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_ready));

    let api = Router::new()
        .route("/metrics/prometheus", get(health::prometheus).route_layer(need(MetricsRead)))
        .merge(data)
        .fallback(api_not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate));

    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record_metrics))
        .with_state(state)
}

async fn api_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no API route {}", uri.path()))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} is not allowed on {}", uri.path()))
}
