//! API errors: a status, a stable machine-readable `code` and a message,
//! rendered as `{"error": {"code", "message", "request_id"}}`.
//!
//! Handlers return [`ApiError`]; its response carries the error as an
//! extension and [`render_errors`] (a middleware) writes the body with the
//! request's id, so extractor rejections and unknown routes get the same
//! shape. Engine errors map to 4xx by kind; anything unexpected is a 500
//! whose message says only "internal error" (the details go to the log,
//! under the request id).

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use biomatch_engine::Error as EngineError;
use biomatch_engine::error::ImageProblem;

/// The request id header (taken from the client when present and sane).
pub const REQUEST_ID: &str = "x-request-id";

/// A request's id, in the request's extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// An error answer.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`invalid_request`, `unknown_subject`, …).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 422 `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_argument",
            message,
        )
    }

    /// 422 `not_supported`: a field this release does not handle yet.
    pub fn not_supported(field: &str, why: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_supported",
            format!("`{field}`: {why}"),
        )
    }

    /// 500 with the real cause logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        let (status, code) = match &e {
            EngineError::Image {
                kind: ImageProblem::TooManyBytes | ImageProblem::TooManyPixels,
                ..
            } => (S::PAYLOAD_TOO_LARGE, "image_too_large"),
            EngineError::Image {
                kind: ImageProblem::UnsupportedFormat,
                ..
            } => (S::UNPROCESSABLE_ENTITY, "unsupported_image"),
            EngineError::Image { .. } => (S::UNPROCESSABLE_ENTITY, "malformed_image"),
            EngineError::NoFace { .. } => (S::UNPROCESSABLE_ENTITY, "no_face"),
            EngineError::NoFinger { .. } => (S::UNPROCESSABLE_ENTITY, "no_finger"),
            EngineError::MinutiaeRecord { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_record"),
            EngineError::QualityRejected { .. } => (S::UNPROCESSABLE_ENTITY, "quality_rejected"),
            EngineError::DimensionMismatch { .. }
            | EngineError::NonFinite { .. }
            | EngineError::ZeroVector { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_template"),
            EngineError::InvalidArgument { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_argument"),
            EngineError::SubjectExists { .. } => (S::CONFLICT, "subject_exists"),
            EngineError::UnknownSubject { .. } => (S::NOT_FOUND, "unknown_subject"),
            EngineError::UnknownCollection { .. } => (S::NOT_FOUND, "unknown_collection"),
            _ => return ApiError::internal(&e),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

fn render(error: &ApiError, request_id: &str) -> Response {
    let body = serde_json::json!({
        "error": {"code": error.code, "message": error.message, "request_id": request_id}
    });
    (error.status, axum::Json(body)).into_response()
}

/// Middleware: assigns the request id, and renders every error response
/// (handlers', extractors', unknown routes') as the JSON error body.
pub async fn render_errors(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    request.extensions_mut().insert(RequestId(id.clone()));
    let response = next.run(request).await;
    let mut response = if let Some(error) = response.extensions().get::<ApiError>() {
        render(error, &id)
    } else if response.status().is_client_error() || response.status().is_server_error() {
        // A rejection from axum itself (unknown route, wrong method, body limit).
        let status = response.status();
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            s if s.is_server_error() => "internal",
            _ => "invalid_request",
        };
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        render(&ApiError::new(status, code, message), &id)
    } else {
        response
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}-{n:x}", nanos ^ (u64::from(std::process::id()) << 40))
}
