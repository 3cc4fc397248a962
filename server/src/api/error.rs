//! The API's error type: a status and `{"error":{"code","message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::Permission;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// Any status with a snake_case code and a human message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401; the response carries `WWW-Authenticate`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 naming the missing permission.
    pub fn forbidden(missing: Permission) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", format!("this key lacks the permission {missing}"))
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 503 while start-up is not finished.
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// Whether `err` means the database (or the connection to it) went away, rather than that
/// this request did something wrong: retrying later can succeed.
pub fn is_database_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        // Class 08 connection exceptions; 57P01..57P03 admin / crash shutdown and "cannot
        // connect now" (server starting or stopping); 53300 too many connections.
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300"))
        }
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if is_database_unavailable(&err) {
            tracing::warn!(error = %err, "database unavailable while serving a request");
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", "the database is unavailable; retry later")
        } else {
            tracing::error!(error = %err, "database error while serving a request");
            Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"certctl\""));
        }
        response
    }
}
