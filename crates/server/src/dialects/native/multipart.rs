//! Native multipart uploads: initiate, presign parts, complete, abort.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use filedock_core::files::KeyLayout;
use filedock_core::{FileName, NewFile};

use super::views::*;
use crate::auth::Auth;
use crate::body::json_body;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

#[utoipa::path(post, path = "/v1/uploads/multipart", tag = "uploads",
    request_body(content = MultipartRequest, content_type = "application/json"),
    responses((status = 201, body = MultipartResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn initiate_multipart(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<MultipartResponse>)> {
    let req: MultipartRequest = json_body(&body)?;
    let mut new = NewFile::named(FileName::new(req.name)?);
    new.class = class_of(req.class.as_deref())?;
    new.ttl_secs = req.ttl_seconds;
    new.size_hint = Some(req.size);
    new.declared_type = req.content_type;
    new.policy = crate::config::policy::MULTIPART.into();
    new.key = KeyLayout::Native;
    let (u, file) = state.files.initiate_multipart(&who, new, req.part_size).await?;
    Ok((
        StatusCode::CREATED,
        Json(MultipartResponse {
            upload_id: u.id.to_string(),
            file: FileView::from(&file),
            part_size: u.part_size,
            part_count: filedock_core::FileService::part_count(&u),
            expires_at: u.expires_at / 1000,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/uploads/multipart/{id}/parts", tag = "uploads", params(("id" = String, Path)),
    request_body(content = PartsRequest, content_type = "application/json"),
    responses((status = 200, body = PartsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already complete", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn presign_parts(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<PartsResponse>> {
    let req: PartsRequest = json_body(&body)?;
    let parts = state.files.presign_parts(&who, &id, &req.part_numbers).await?;
    Ok(Json(PartsResponse {
        parts: parts
            .into_iter()
            .map(|(n, p)| PartUpload {
                part_number: n,
                method: p.method.to_owned(),
                url: p.url,
                headers: p.headers.into_iter().collect(),
                expires_at: p.expires_at / 1000,
            })
            .collect(),
    }))
}

#[utoipa::path(post, path = "/v1/uploads/multipart/{id}/complete", tag = "uploads", params(("id" = String, Path)),
    request_body(content = CompleteMultipartRequest, content_type = "application/json"),
    responses((status = 200, description = "Joined, checked and ready", body = FileView),
        (status = 400, description = "Parts out of order, missing, with a wrong ETag or size, or a wrong total", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Being completed by another request", body = ErrorBody),
        (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete_multipart(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<FileView>> {
    let req: CompleteMultipartRequest = json_body(&body)?;
    let parts: Vec<(u32, String)> = req.parts.into_iter().map(|p| (p.part_number, p.etag)).collect();
    let rec = state.files.complete_multipart(&who, &id, &parts).await?;
    Ok(Json(FileView::from(&rec)))
}

#[utoipa::path(delete, path = "/v1/uploads/multipart/{id}", tag = "uploads", params(("id" = String, Path)),
    responses((status = 204, description = "Aborted; its parts are deleted"), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already complete", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn abort_multipart(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .files
        .abort_upload(&who, &id, filedock_core::UploadKind::Multipart)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
