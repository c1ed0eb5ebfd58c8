//! TokenOps (`shared/seeds/000_…`): `POST /v1/files/upload_url` presigns a PUT of a client-chosen
//! relative `path` (under the key's project) to a named storage provider. The PUT signs nothing
//! but the expiry (the seed's `curl -X PUT --upload-file` must work) and may replace a pending
//! upload at that path, never a ready file. `visit_url` is a stable link that serves the file
//! once the PUT is done; `path` names the file in other filedock APIs.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use filedock_core::{Class, Error, FileName, KeyLayout, NewFile, PresignUpload};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::body::json_body;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// The upload policy TokenOps files are checked against.
pub const POLICY: &str = crate::config::policy::TOKENOPS;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/files/upload_url", post(upload_url))
}

/// Request body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = tokenops::UploadUrlRequest)]
pub struct UploadUrlRequest {
    /// Where the file goes, relative to the key's project (at most 255 characters; required).
    #[schema(example = "reports/2026/q3.pdf")]
    pub path: Option<String>,
    /// A configured backend's name (the default backend when absent).
    pub storage_provider: Option<String>,
    /// One of the backend's regions.
    pub region: Option<String>,
}

/// Answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = tokenops::UploadUrlResponse)]
pub struct UploadUrlResponse {
    /// Send the file here, with `method`, as the whole body.
    pub upload_url: String,
    /// Always `PUT`.
    pub method: String,
    /// `<scheme>://<host>/<key>`: names the file in other filedock APIs (`/v1/files/lookup`).
    pub path: String,
    /// A stable link that serves the file once the PUT is done.
    pub visit_url: String,
}

/// TokenOps: presign a PUT of a client-chosen path.
#[utoipa::path(post, path = "/v1/files/upload_url", tag = "tokenops", request_body = UploadUrlRequest,
    responses((status = 200, body = UploadUrlResponse),
        (status = 400, description = "A missing or bad path, or an unknown storage provider or region", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "A ready file already has this path", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload_url(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<Json<UploadUrlResponse>> {
    let req: UploadUrlRequest = json_body(&body)?;
    let path = req.path.ok_or_else(|| Error::invalid("'path' is required"))?;
    let backend = state.files.backend(req.storage_provider.as_deref())?;
    if let Some(region) = &req.region
        && !backend.regions.iter().any(|r| r == region)
    {
        return Err(Error::invalid(format!(
            "unknown region '{region}' for storage provider '{}' (known: {})",
            backend.name,
            if backend.regions.is_empty() {
                "none".to_owned()
            } else {
                backend.regions.join(", ")
            }
        ))
        .into());
    }
    // The seed: "文件上传路径,不能超过 255 个字符" (at most 255 characters).
    if path.chars().count() > 255 {
        return Err(Error::invalid("'path' must be at most 255 characters").into());
    }
    // Validate the whole path first, so its last segment is a fair file name.
    filedock_core::model::validate_relative_path(&path, filedock_core::model::MAX_KEY_LEN)?;
    // The display name is the last segment, cut to 255 bytes (the key keeps the whole path).
    let last = path.rsplit('/').next().unwrap_or(&path);
    let cut = (0..=last.len().min(255))
        .rev()
        .find(|&i| last.is_char_boundary(i))
        .unwrap_or(0);
    let name = FileName::new(&last[..cut])?;
    let mut new = NewFile::named(name);
    new.policy = POLICY.into();
    new.class = Class::Asset;
    new.backend = Some(backend.name.clone());
    new.key = KeyLayout::ProjectPath(path);
    let (rec, signed) = state
        .files
        .presign_upload(
            &who,
            PresignUpload {
                file: new,
                sign_content_type: false,
                create_only: false,
            },
        )
        .await?;
    let (visit_url, _) = state.files.download_url(&rec, None)?;
    Ok(Json(UploadUrlResponse {
        upload_url: signed.url,
        method: signed.method.to_owned(),
        path: state.files.reference(&rec)?,
        visit_url,
    }))
}
