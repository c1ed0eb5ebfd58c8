//! filedock's own API under `/v1/`: files (upload through filedock, get, list, download with
//! Range, delete), direct uploads (presign, complete) and download links. Every route needs a
//! bearer key and sees only its project (another project's file is 404).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use filedock_core::files::{KeyLayout, PresignUpload};
use filedock_core::{Class, Error, FileId, FileName, FileRecord, NewFile, PresignedRequest, disposition};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::body::{json_body, query};
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::{body, respond};

/// The policy native uploads are checked against.
pub const POLICY: &str = crate::config::policy::NATIVE;
/// The policy of native multipart uploads.
pub const MULTIPART_POLICY: &str = crate::config::policy::MULTIPART;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/files", post(upload).get(list))
        .route("/v1/files/lookup", get(lookup))
        .route("/v1/files/{id}", get(get_file).delete(delete_file))
        .route("/v1/files/{id}/content", get(download))
        .route("/v1/files/{id}/links", post(create_link))
        .route("/v1/uploads", post(presign))
        .route("/v1/uploads/{id}/complete", post(complete))
        .route("/v1/uploads/multipart", post(initiate_multipart))
        .route("/v1/uploads/multipart/{id}", axum::routing::delete(abort_multipart))
        .route("/v1/uploads/multipart/{id}/parts", post(presign_parts))
        .route("/v1/uploads/multipart/{id}/complete", post(complete_multipart))
}

/// A file as the native API shows it. Times are Unix seconds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    pub id: String,
    pub name: String,
    /// Bytes (for a pending upload: the announced size, if any).
    pub size: Option<u64>,
    /// The type the file is served with.
    pub content_type: String,
    pub declared_type: Option<String>,
    pub detected_type: Option<String>,
    pub extension: Option<String>,
    /// Lowercase hex SHA-256 of the content (once ready).
    pub sha256: Option<String>,
    /// `input`, `output` or `asset`.
    pub class: String,
    /// `pending` or `ready`.
    pub status: String,
    pub backend: String,
    pub key: String,
    pub workspace: Option<String>,
    pub created_by: Option<String>,
    pub agent: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl From<&FileRecord> for FileView {
    fn from(r: &FileRecord) -> Self {
        FileView {
            id: r.id.to_string(),
            name: r.name.to_string(),
            size: r.size,
            content_type: r.content_type().to_owned(),
            declared_type: r.declared_type.clone(),
            detected_type: r.detected_type.clone(),
            extension: r.extension.clone(),
            sha256: r.sha256.clone(),
            class: r.class.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            backend: r.backend.clone(),
            key: r.key.to_string(),
            workspace: r.workspace.as_ref().map(|w| w.to_string()),
            created_by: r.created_by.clone(),
            agent: r.agent.clone(),
            created_at: r.created_at / 1000,
            completed_at: r.completed_at.map(|t| t / 1000),
            expires_at: r.expires_at.map(|t| t / 1000),
        }
    }
}

/// A page of files.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileList {
    /// Newest first.
    pub files: Vec<FileView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A request a client makes without a filedock key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SignedRequest {
    pub method: String,
    pub url: String,
    /// Headers to send exactly as given (they are signed).
    pub headers: BTreeMap<String, String>,
    /// Unix seconds.
    pub expires_at: i64,
}

impl From<PresignedRequest> for SignedRequest {
    fn from(p: PresignedRequest) -> Self {
        SignedRequest {
            method: p.method.to_owned(),
            url: p.url,
            headers: p.headers.into_iter().collect(),
            expires_at: p.expires_at / 1000,
        }
    }
}

/// Query of `GET /v1/files`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// Query of `POST /v1/files` (for a form upload, the same names may come as fields before `file`).
#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct UploadQuery {
    /// The file's name (required for a raw body; a form takes the part's filename by default).
    pub name: Option<String>,
    /// `input` (default), `output` or `asset`.
    pub class: Option<String>,
    /// Keep the file this many seconds instead of the class's retention.
    pub ttl_seconds: Option<u64>,
}

/// A multipart upload form.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "describes the form in the OpenAPI spec; the handler streams it with multer"
)]
pub struct UploadForm {
    /// `name`, `class`, `ttl_seconds` fields must come before the file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    name: Option<String>,
    class: Option<String>,
    ttl_seconds: Option<u64>,
}

/// Body of `POST /v1/uploads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresignRequest {
    pub name: String,
    /// Exact size in bytes; when given, the upload must have exactly this length (signed).
    pub size: Option<u64>,
    /// When given, the upload must be sent with this `Content-Type` (signed).
    pub content_type: Option<String>,
    pub class: Option<String>,
    pub ttl_seconds: Option<u64>,
}

/// Answer of `POST /v1/uploads`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresignResponse {
    /// The pending file; complete it with `POST /v1/uploads/{id}/complete`.
    pub file: FileView,
    /// The request that uploads the bytes.
    pub upload: SignedRequest,
}

/// Body of `POST /v1/files/{id}/links`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Validity in seconds (default from config; at most the configured maximum).
    pub ttl_seconds: Option<u64>,
}

/// A download link.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkResponse {
    pub url: String,
    /// Unix seconds.
    pub expires_at: i64,
}

fn class_of(s: Option<&str>) -> Result<Class, Error> {
    s.map(Class::parse).transpose().map(Option::unwrap_or_default)
}

fn ttl_of(s: Option<&str>) -> Result<Option<u64>, Error> {
    s.map(|v| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| Error::invalid("ttl_seconds must be a whole number"))
    })
    .transpose()
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

/// Query of `GET /v1/files/lookup`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LookupQuery {
    /// A `path` reference as TokenOps answers it (`<scheme>://<host>/<key>`), or a storage key
    /// on the default backend (Cyberun's `file_key`).
    pub path: String,
}

/// Find a file by its `path` reference (completing a direct upload whose bytes have arrived).
#[utoipa::path(get, path = "/v1/files/lookup", tag = "files", params(LookupQuery),
    responses((status = 200, body = FileView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
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
    responses((status = 201, body = LinkResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
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

/// `POST /v1/uploads/multipart` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultipartRequest {
    pub name: String,
    /// The file's exact size in bytes.
    pub size: u64,
    pub content_type: Option<String>,
    pub class: Option<String>,
    pub ttl_seconds: Option<u64>,
    /// Bytes per part (at least 5 MiB unless one part holds the file; at most 5 GiB; at most
    /// 10,000 parts). Default: 8 MiB, or more for very large files.
    pub part_size: Option<u64>,
}

/// A multipart upload started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MultipartResponse {
    pub upload_id: String,
    /// The file it ends in (pending until complete).
    pub file: FileView,
    /// Every part but the last has exactly this size.
    pub part_size: u64,
    pub part_count: u64,
    /// Unix seconds; an upload not completed by then is aborted and its parts deleted.
    pub expires_at: i64,
}

/// Which parts to presign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartsRequest {
    /// 1 to 1,000 part numbers.
    pub part_numbers: Vec<u32>,
}

/// A presigned part PUT.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartUpload {
    pub part_number: u32,
    pub method: String,
    pub url: String,
    /// Send exactly (the part's `Content-Length` is signed).
    pub headers: BTreeMap<String, String>,
    pub expires_at: i64,
}

/// Presigned part PUTs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartsResponse {
    pub parts: Vec<PartUpload>,
}

/// A part as its PUT answered.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletedPart {
    pub part_number: u32,
    /// The `ETag` header the part's PUT answered.
    pub etag: String,
}

/// The parts to join, in ascending order of `part_number`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteMultipartRequest {
    pub parts: Vec<CompletedPart>,
}

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
    new.policy = MULTIPART_POLICY.into();
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
