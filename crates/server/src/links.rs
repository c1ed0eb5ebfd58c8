//! `/l/{token}`: filedock's stable download links (TokenOps' `visit_url`, Juniortree's `id`,
//! long-lived native links). A link names a file, not its bytes: it works while the file exists
//! (410 after a delete or expiry), whatever a backend's presign limit. By default it serves the
//! bytes itself, like a download (200 or 206, HEAD, ETag, Last-Modified, attachment, nosniff), so
//! any HTTP client gets the file at the URL; with `[links] redirect = true` it answers 302 to a
//! fresh short-lived presigned URL instead (on S3 the bytes then skip filedock).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use filedock_core::disposition;

use crate::error::{ApiResult, ErrorBody};
use crate::respond;
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/l/{token}", get(open))
}

/// Follow a stable link: the file's bytes (or, if configured, 302 to a presigned download).
#[utoipa::path(get, path = "/l/{token}", tag = "links", params(("token" = String, Path)),
    responses((status = 200, description = "The file (`Range` gives 206)", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range"),
        (status = 302, description = "With `[links] redirect = true`: a short-lived presigned download"),
        (status = 403, description = "Invalid or expired link", body = ErrorBody),
        (status = 409, description = "The upload has not arrived yet", body = ErrorBody),
        (status = 410, description = "The file was deleted or has expired", body = ErrorBody),
        (status = 416, description = "The range is outside the file", body = ErrorBody)))]
pub async fn open(State(state): State<AppState>, Path(token): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    if state.http.links.redirect {
        let signed = state.files.open_link(&token).await?;
        let mut resp = StatusCode::FOUND.into_response();
        let location = HeaderValue::from_str(&signed.url).map_err(filedock_core::Error::internal)?;
        resp.headers_mut().insert(header::LOCATION, location);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(resp);
    }
    let range = respond::requested_range(&headers);
    let (rec, got) = state.files.read_link(&token, range).await?;
    Ok(respond::object(
        got,
        rec.content_type(),
        Some(&disposition::attachment(rec.name.as_str())),
        range.is_some(),
    ))
}
