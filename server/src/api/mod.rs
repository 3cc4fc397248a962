//! HTTP routes. Everything under /api/v1 needs a key (unless auth is `none`); each route
//! names the one permission it needs.

mod agent_identity;
mod agents;
mod certificates;
pub mod error;
pub mod extract;
mod health;
mod middleware;
mod validate;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;

use crate::auth::Permission;
use crate::state::AppState;
use error::ApiError;
use middleware::{authenticate, check_permission, record_metrics, refuse_declared_oversize, require_ready};

/// The full application router.
pub fn router(state: AppState) -> Router {
    use Permission::*;
    let need = |p: Permission| axum::middleware::from_fn_with_state(p, check_permission);
    // Agent routes: the key's permission first (no database), then the agent's credential.
    let identity = axum::middleware::from_fn_with_state(state.clone(), agent_identity::require_agent_credential);
    let as_agent = |route: MethodRouter<AppState>, p: Permission| route.route_layer(identity.clone()).route_layer(need(p));
    // Routes that need the database schema and the CA: gated until start-up is done.
    let data = Router::new()
        .route("/agents", post(agents::register).route_layer(need(AgentRegister)))
        .route("/agents/{agent_id}", delete(agents::retire).route_layer(need(CertificateWrite)))
        .route("/agents/{agent_id}/credential", delete(agents::reset_credential).route_layer(need(CertificateWrite)))
        .route("/agents/{agent_id}/heartbeat", as_agent(post(agents::heartbeat), AgentHeartbeat))
        .route("/agents/{agent_id}/work", as_agent(get(agents::work), AgentJobPoll))
        .route("/agents/{agent_id}/csr", as_agent(post(agents::submit_csr), AgentCsrSubmit))
        .route("/agents/{agent_id}/certificates/{certificate_id}", as_agent(get(agents::fetch_certificate), AgentJobPoll))
        .route("/agents/{agent_id}/certificates/{certificate_id}/target", as_agent(post(agents::target_status), AgentJobPoll))
        .route("/agents/{agent_id}/jobs/{job_id}/status", as_agent(post(agents::job_status), AgentJobPoll))
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
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
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
