//! From a core [`Error`] to an HTTP answer: one exhaustive status map, the native JSON envelope,
//! and one log line (with the cause) for every 5xx.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use filedock_core::Error;
use serde::Serialize;

/// The status of each outcome. No wildcard arm: a new variant must be mapped here.
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
        Error::LengthRequired(_) => StatusCode::LENGTH_REQUIRED,
        Error::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
        Error::Gone(_) => StatusCode::GONE,
        // tus 1.0's checksum extension: "460 Checksum Mismatch".
        Error::ChecksumMismatch(_) => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
        Error::Locked(_) => StatusCode::LOCKED,
        Error::RateLimited(_, _) => StatusCode::TOO_MANY_REQUESTS,
        Error::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
        Error::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        Error::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
        Error::UrlRefused(_) => StatusCode::BAD_REQUEST,
        Error::SourceFailed(_) => StatusCode::BAD_GATEWAY,
        Error::SourceTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        Error::Infected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::IdempotencyMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::InProgress(_, _) => StatusCode::CONFLICT,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The `Retry-After` of a 503: a dependency that failed usually answers again within seconds.
pub const UNAVAILABLE_RETRY_SECS: u64 = 5;

/// Logs a server-side failure once, with its cause chain.
pub fn log_if_server_error(e: &Error) {
    if e.is_server_error() {
        metrics::counter!("filedock_server_errors_total", "code" => e.code()).increment(1);
        let mut chain = String::new();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(code = e.code(), "request failed: {e}{chain}");
    }
}

/// Headers an error answer carries whatever the envelope.
pub fn with_error_headers(e: &Error, mut resp: Response) -> Response {
    match e {
        Error::RangeNotSatisfiable(size) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        Error::Unauthenticated(_) => {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Error::RateLimited(_, secs) | Error::InProgress(_, secs) => {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        // A dependency that did not answer, or a full disk: worth trying again later.
        Error::Unavailable(_) | Error::InsufficientStorage(_) => {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_SECS));
        }
        _ => {}
    }
    resp
}

/// The native API's error envelope: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`not_found`, `too_large`, `unsupported_type`, …).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// A core error rendered in the native envelope.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        log_if_server_error(&e);
        let body = ErrorBody {
            error: ErrorDetail {
                code: e.code().to_owned(),
                message: e.to_string(),
            },
        };
        with_error_headers(&e, (status_of(&e), Json(body)).into_response())
    }
}

/// Handler result in the native envelope.
pub type ApiResult<T> = Result<T, ApiError>;

/// The native code of an HTTP status that an answer made outside a handler carries (an unknown
/// route, a method the route does not take, a body over an extractor's limit).
fn code_of_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 422 => "invalid_request",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        411 => "length_required",
        412 => "precondition_failed",
        413 => "too_large",
        415 => "unsupported_type",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "internal",
    }
}

/// Every error answer is JSON in the native envelope, also those no handler made: an unknown
/// route (404), a method a route does not take (405, `Allow` kept), a body over an extractor's
/// limit (413), a framework rejection in plain text. Answers that already carry a type (a
/// dialect's JSON, the signed-URL route's S3 XML) and answers to `HEAD` are left as they are.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let head = req.method() == axum::http::Method::HEAD;
    let resp = next.run(req).await;
    let status = resp.status();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("text/plain"));
    if head || !plain || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let message = match std::str::from_utf8(&text).map(str::trim) {
        Ok(t) if !t.is_empty() && status.is_client_error() => t.to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code_of_status(status).to_owned(),
            message,
        },
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(json))
}
