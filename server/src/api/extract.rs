//! Extractors whose rejections are JSON API errors: request bodies and path ids.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use crate::state::AppState;

/// Largest accepted request body. A CSR is ~1 KiB; 64 KiB leaves room without inviting abuse.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body. An empty body is read as `{}` so optional bodies (heartbeat) may be omitted.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::bad_request("invalid_body", format!("could not read the request body: {rejection}"))
    }
}

/// 413 for a body over [`MAX_BODY_BYTES`].
pub fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("request body exceeds {MAX_BODY_BYTES} bytes"))
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("expected Content-Type: application/json, got {essence:?}"),
                ));
            }
        }
        let limit = state.body_timeout();
        let bytes = match tokio::time::timeout(limit, Bytes::from_request(req, state)).await {
            Ok(read) => read.map_err(body_error)?,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!("the request body did not arrive within {}s", limit.as_secs_f64()),
                ))
            }
        };
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("request body is not valid JSON for this endpoint: {e}")))
    }
}

/// One or two UUIDs from the path; a malformed id is a 404 (it cannot name anything).
#[derive(Debug)]
pub struct Ids<const N: usize>(pub [Uuid; N]);

impl<S: Send + Sync, const N: usize> FromRequestParts<S> for Ids<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.to_string()))?;
        let mut out = [Uuid::nil(); N];
        let mut count = 0;
        for (i, (name, value)) in raw.iter().enumerate().take(N) {
            out[i] = Uuid::parse_str(value).map_err(|_| ApiError::not_found(format!("no {name} {value:?}: ids are UUIDs")))?;
            count += 1;
        }
        if count != N {
            return Err(ApiError::bad_request("invalid_path", "missing id in path"));
        }
        Ok(Ids(out))
    }
}
