//! filedock's own API under `/v1/`: files (upload through filedock, get, list, download with
//! Range, delete), direct uploads (presign, complete) and download links. Every route needs a
//! bearer key and sees only its project (another project's file is 404).
//!
//! The shapes are in `views`, the multipart routes in `multipart`.

mod from_url;
mod keys;
mod multipart;
mod views;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use filedock_core::files::{KeyLayout, PresignUpload};
use filedock_core::{Error, FileId, FileName, NewFile, disposition};

use crate::auth::Auth;
use crate::body::{json_body, query};
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::{body, respond};

pub use from_url::*;
pub use keys::*;
pub use multipart::*;
pub use views::*;

/// The policy native uploads are checked against.
pub const POLICY: &str = crate::config::policy::NATIVE;

/// The policy of native multipart uploads.
pub const MULTIPART_POLICY: &str = crate::config::policy::MULTIPART;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/files", post(upload).get(list))
        .route("/v1/files/lookup", get(lookup))
        .route("/v1/files/from-url", post(from_url))
        .route("/v1/files/{id}", get(get_file).delete(delete_file))
        .route("/v1/files/{id}/content", get(download))
        .route("/v1/files/{id}/links", post(create_link))
        .route("/v1/uploads", post(presign))
        .route("/v1/uploads/{id}/complete", post(complete))
        .route("/v1/uploads/multipart", post(initiate_multipart))
        .route("/v1/uploads/multipart/{id}", axum::routing::delete(abort_multipart))
        .route("/v1/uploads/multipart/{id}/parts", post(presign_parts))
        .route("/v1/uploads/multipart/{id}/complete", post(complete_multipart))
        .merge(keys::routes())
}

/// Upload a file through filedock (raw body or multipart/form-data).
#[utoipa::path(post, path = "/v1/files", tag = "files", params(UploadQuery),
    request_body(content(
        (UploadForm = "multipart/form-data"),
        (String = "application/octet-stream", example = "raw bytes; name in ?name=")
    )),
    responses(
        (status = 201, description = "Stored and checked", body = FileView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, description = "Over the size limit; nothing stored", body = ErrorBody),
        (status = 415, description = "Type not allowed or content does not match the name", body = ErrorBody)
    ), security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Auth(who): Auth,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    let q: UploadQuery = query(raw.as_deref())?;
    let max = state.files.policy(POLICY)?.max_size;
    let declared_len = body::content_length(&headers);
    let (mut new, stream, mut form) = match body::multipart_boundary(&headers) {
        Some(_) => {
            let mut form = body::form(&headers, body, max, "")?;
            let part = form
                .file()
                .await?
                .ok_or_else(|| Error::invalid("the form has no 'file' field"))?;
            let f = |k: &str| form.field(k).map(str::to_owned);
            let name = match f("name").or(q.name) {
                Some(n) => FileName::new(n)?,
                None => FileName::new(part.file_name.as_deref().unwrap_or(""))?,
            };
            let mut new = NewFile::named(name);
            new.class = class_of(f("class").as_deref().or(q.class.as_deref()))?;
            new.ttl_secs = match f("ttl_seconds") {
                Some(v) => ttl_of(Some(&v))?,
                None => q.ttl_seconds,
            };
            new.declared_type = part.content_type;
            (new, part.body, Some(form))
        }
        None => {
            let name = q
                .name
                .ok_or_else(|| Error::invalid("the 'name' query parameter is required for a raw upload"))?;
            let mut new = NewFile::named(FileName::new(name)?);
            new.class = class_of(q.class.as_deref())?;
            new.ttl_secs = q.ttl_seconds;
            new.size_hint = declared_len;
            new.declared_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (new, body::raw(body), None)
        }
    };
    new.policy = POLICY.into();
    new.key = KeyLayout::Native;
    let staged = state.files.stage(&who, new, stream).await?;
    // The rest of a form must be well-formed too (one file field, bounded text fields), or
    // nothing of it is kept.
    if let Some(form) = form.as_mut()
        && let Err(e) = form.rest().await
    {
        state.files.discard(staged).await;
        return Err(e.into());
    }
    let rec = state.files.commit(staged).await?;
    Ok((StatusCode::CREATED, Json(FileView::from(&rec))))
}

/// List the project's ready files, newest first.
#[utoipa::path(get, path = "/v1/files", tag = "files", params(ListQuery),
    responses((status = 200, body = FileList), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Auth(who): Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<FileList>> {
    let q: ListQuery = query(raw.as_deref())?;
    let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(FileId::parse(c).map_err(|_| Error::invalid("malformed cursor"))?),
        None => None,
    };
    let (files, next) = state.files.list(&who, before, q.limit.unwrap_or(100)).await?;
    Ok(Json(FileList {
        files: files.iter().map(FileView::from).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

/// Get a file's record.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files", params(("id" = String, Path)),
    responses((status = 200, body = FileView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_file(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<FileView>> {
    let rec = state.files.visible_file(&who, &FileId::parse(&id)?).await?;
    Ok(Json(FileView::from(&rec)))
}

/// Find a file by its `path` reference (completing a direct upload whose bytes have arrived).
#[utoipa::path(get, path = "/v1/files/lookup", tag = "files", params(LookupQuery),
    responses((status = 200, body = FileView), (status = 400, description = "No path given", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn lookup(
    State(state): State<AppState>,
    Auth(who): Auth,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<FileView>> {
    let q: LookupQuery = query(raw.as_deref())?;
    let rec = state.files.file_by_reference(&who, &q.path).await?;
    Ok(Json(FileView::from(&rec)))
}

/// Download a file's bytes (`Range` supported).
#[utoipa::path(get, path = "/v1/files/{id}/content", tag = "files", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream"),
        (status = 206, description = "A range of the bytes"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Upload not received yet", body = ErrorBody),
        (status = 416, body = ErrorBody)
    ), security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let range = respond::requested_range(&headers);
    let (rec, got) = state.files.download(&who, &FileId::parse(&id)?, range).await?;
    Ok(respond::object(
        got,
        rec.content_type(),
        Some(&disposition::attachment(rec.name.as_str())),
        range.is_some(),
    ))
}

/// Delete a file (its links stop working).
#[utoipa::path(delete, path = "/v1/files/{id}", tag = "files", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_file(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.files.delete(&who, &FileId::parse(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a signed download link.
#[utoipa::path(post, path = "/v1/files/{id}/links", tag = "files", params(("id" = String, Path)),
    request_body(content = LinkRequest, content_type = "application/json"),
    responses((status = 201, body = LinkResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The upload has not arrived yet", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_link(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<LinkResponse>)> {
    // The body is optional: none means the default TTL.
    let req: LinkRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LinkRequest::default()
    } else {
        json_body(&body)?
    };
    let ttl = req.ttl_seconds;
    let link = state.files.link(&who, &FileId::parse(&id)?, ttl).await?;
    Ok((
        StatusCode::CREATED,
        Json(LinkResponse {
            url: link.url,
            expires_at: link.expires_at / 1000,
        }),
    ))
}

/// Presign a direct upload: answers a pending file and the PUT that uploads its bytes.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads",
    request_body(content = PresignRequest, content_type = "application/json"),
    responses((status = 201, body = PresignResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn presign(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<PresignResponse>)> {
    let req: PresignRequest = json_body(&body)?;
    let mut new = NewFile::named(FileName::new(req.name)?);
    new.class = class_of(req.class.as_deref())?;
    new.ttl_secs = req.ttl_seconds;
    new.size_hint = req.size;
    new.declared_type = req.content_type;
    let sign_content_type = new.declared_type.is_some();
    let (rec, signed) = state
        .files
        .presign_upload(
            &who,
            PresignUpload {
                file: new,
                sign_content_type,
                create_only: true,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(PresignResponse {
            file: FileView::from(&rec),
            upload: signed.into(),
        }),
    ))
}

/// Complete a direct upload: checks size, type and SHA-256 of what arrived.
#[utoipa::path(post, path = "/v1/uploads/{id}/complete", tag = "uploads", params(("id" = String, Path)),
    responses((status = 200, body = FileView), (status = 400, description = "Size differs from the announced size; the object was deleted", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Nothing uploaded yet", body = ErrorBody),
        (status = 415, description = "Content does not match; the object was deleted", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<FileView>> {
    let rec = state.files.complete_upload(&who, &FileId::parse(&id)?).await?;
    Ok(Json(FileView::from(&rec)))
}
