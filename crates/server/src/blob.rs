//! `/blob/{backend}/{key}`: the HTTP face of stores filedock serves itself (the local disk). It
//! behaves like S3 for presigned URLs — signed headers enforced, create-only, exact length,
//! expiry — and answers errors in S3's XML shape so S3 clients understand them.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use filedock_core::Error;
use percent_encoding::percent_decode_str;

use crate::error::{log_if_server_error, status_of, with_error_headers};
use crate::state::AppState;
use crate::{body, respond};

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/blob/{*rest}", put(put_object).get(get_object))
}

fn s3_code(e: &Error) -> &'static str {
    match e {
        Error::NotFound(_) => "NoSuchKey",
        Error::Invalid(_) => "InvalidRequest",
        Error::TooLarge(_) => "EntityTooLarge",
        Error::UnsupportedType(_) => "InvalidRequest",
        Error::Unauthenticated(_) | Error::Forbidden(_) => "AccessDenied",
        Error::Conflict(_) => "OperationAborted",
        Error::PreconditionFailed(_) => "PreconditionFailed",
        Error::LengthRequired(_) => "MissingContentLength",
        Error::RangeNotSatisfiable(_) => "InvalidRange",
        Error::Gone(_) => "NoSuchKey",
        Error::ChecksumMismatch(_) => "BadDigest",
        Error::Locked(_) => "OperationAborted",
        Error::RateLimited(_, _) => "SlowDown",
        Error::QuotaExceeded(_) => "QuotaExceeded",
        Error::InsufficientStorage(_) => "InsufficientStorage",
        Error::Timeout(_) => "RequestTimeout",
        Error::UrlRefused(_) => "InvalidRequest",
        Error::SourceFailed(_) | Error::SourceTimeout(_) => "InternalError",
        Error::Infected(_) => "InvalidRequest",
        Error::IdempotencyMismatch(_) => "InvalidRequest",
        Error::InProgress(_, _) => "OperationAborted",
        Error::Unavailable(_) => "ServiceUnavailable",
        Error::Internal(_) => "InternalError",
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An S3-shaped XML error.
pub(crate) struct S3Error(Error);

impl IntoResponse for S3Error {
    fn into_response(self) -> Response {
        let e = self.0;
        log_if_server_error(&e);
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
            s3_code(&e),
            xml_escape(&e.to_string())
        );
        let resp = (status_of(&e), [(header::CONTENT_TYPE, "application/xml")], xml).into_response();
        with_error_headers(&e, resp)
    }
}

/// Splits `/blob/{backend}/{key}` from the raw URI, decoding each part once.
fn target(uri: &Uri) -> Result<(String, String), S3Error> {
    let not_found = || S3Error(Error::not_found("no such key"));
    let rest = uri.path().strip_prefix("/blob/").ok_or_else(not_found)?;
    let (backend, key) = rest.split_once('/').ok_or_else(not_found)?;
    let dec = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| not_found())
    };
    Ok((dec(backend)?, dec(key)?))
}

fn header_lookup(headers: &HeaderMap) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Signed query parameters of a `/blob/` URL (as filedock's presign answers made them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, non_snake_case)] // Only its parameters are documented: `direct_put`/`direct_get` read the query.
pub(crate) struct SignedQuery {
    /// Unix seconds after which the URL is refused.
    #[param(rename = "X-Fd-Expires")]
    X_Fd_Expires: u64,
    /// The request headers the signature covers, `;`-separated (each must be sent exactly).
    #[param(rename = "X-Fd-SignedHeaders")]
    X_Fd_SignedHeaders: Option<String>,
    /// The largest body a PUT may send.
    #[param(rename = "X-Fd-Max")]
    X_Fd_Max: Option<u64>,
    /// For a GET: the answer's `Content-Type`.
    #[param(rename = "response-content-type")]
    response_content_type: Option<String>,
    /// For a GET: the answer's `Content-Disposition`.
    #[param(rename = "response-content-disposition")]
    response_content_disposition: Option<String>,
    /// HMAC-SHA256 of the method, backend, key, the parameters above and the signed headers.
    #[param(rename = "X-Fd-Signature")]
    X_Fd_Signature: String,
}

/// A presigned PUT to a store filedock serves itself (the local disk). S3-shaped XML errors.
#[utoipa::path(put, path = "/blob/{backend}/{key}", tag = "blob",
    params(("backend" = String, Path), ("key" = String, Path, description = "The storage key (may contain `/`)"), SignedQuery),
    request_body(content((String = "application/octet-stream"))),
    responses((status = 200, description = "Stored", headers(("ETag" = String))),
        (status = 400, description = "InvalidRequest", content_type = "application/xml"),
        (status = 403, description = "AccessDenied: a bad, expired or altered signature", content_type = "application/xml"),
        (status = 411, description = "MissingContentLength", content_type = "application/xml"),
        (status = 412, description = "PreconditionFailed: the key exists (create-only)", content_type = "application/xml"),
        (status = 404, description = "NoSuchKey: no such backend", content_type = "application/xml"),
        (status = 413, description = "EntityTooLarge", content_type = "application/xml"),
        (status = 415, description = "InvalidRequest: the content does not match the file's name or policy (the PUT stores nothing)", content_type = "application/xml")))]
pub(crate) async fn put_object(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, S3Error> {
    let (backend, key) = target(&uri)?;
    let lookup = header_lookup(&headers);
    let meta = state
        .files
        .direct_put(&backend, &key, uri.query().unwrap_or(""), &lookup, body::raw(body))
        .await
        .map_err(S3Error)?;
    let mut resp = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&meta.etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// A presigned download from a store filedock serves itself; `Range` is honoured.
#[utoipa::path(get, path = "/blob/{backend}/{key}", tag = "blob",
    params(("backend" = String, Path), ("key" = String, Path, description = "The storage key (may contain `/`)"), SignedQuery,
        ("Range" = Option<String>, Header, description = "`bytes=a-b`")),
    responses((status = 200, description = "The bytes", content((String = "application/octet-stream"))),
        (status = 206, description = "The range asked", content((String = "application/octet-stream"))),
        (status = 403, description = "AccessDenied: a bad, expired or altered signature", content_type = "application/xml"),
        (status = 404, description = "NoSuchKey", content_type = "application/xml"),
        (status = 416, description = "InvalidRange", content_type = "application/xml")))]
pub(crate) async fn get_object(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, S3Error> {
    let (backend, key) = target(&uri)?;
    let range = respond::requested_range(&headers);
    let (v, got) = state
        .files
        .direct_get(&backend, &key, uri.query().unwrap_or(""), range)
        .await
        .map_err(S3Error)?;
    let ct = v.response_content_type.as_deref().unwrap_or("application/octet-stream");
    Ok(respond::object(
        got,
        ct,
        v.response_content_disposition.as_deref(),
        range.is_some(),
    ))
}
