//! `/l/{token}`: filedock's stable download links. A link names a file, not its bytes: each
//! request is answered with a redirect to a fresh, short-lived presigned URL, so a link can
//! outlive a backend's presign limit and stops working when the file is deleted (410).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/l/{token}", get(open))
}

/// Follow a stable link: 302 to a presigned download.
#[utoipa::path(get, path = "/l/{token}", tag = "links", params(("token" = String, Path)),
    responses((status = 302, description = "Redirect to a short-lived presigned download"),
        (status = 403, description = "Invalid or expired link", body = ErrorBody),
        (status = 409, description = "The upload has not arrived yet", body = ErrorBody),
        (status = 410, description = "The file was deleted or has expired", body = ErrorBody)))]
pub async fn open(State(state): State<AppState>, Path(token): Path<String>) -> ApiResult<Response> {
    let signed = state.files.open_link(&token).await?;
    let mut resp = StatusCode::FOUND.into_response();
    let location = HeaderValue::from_str(&signed.url).map_err(filedock_core::Error::internal)?;
    resp.headers_mut().insert(header::LOCATION, location);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
