//! Cyberun (`shared/seeds/003_…`): `POST /api/v1/r/files/presign` announces an input file and
//! answers a PUT straight to storage whose `Content-Length` and `If-None-Match: *` are signed
//! (missing or different → 403; onto an existing key → 412). Keys of every kind may call it.
//!
//! Multipart (`/api/v1/uploads/multipart/{initiate,presign-parts,complete,abort}`) is for user
//! session keys only, as the seed says: `sk-` and `dk-` keys (and any other kind) get 401. Each
//! part URL has its exact length signed; complete answers the same `file_key` as the presign.
//! Workflow runs and the runners' task routes are in [`super::workflows`].

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use filedock_core::{Class, CredentialKind, Error, FileName, KeyLayout, NewFile, PresignUpload, Principal, UploadKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::body::json_body;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// The upload policy Cyberun inputs are checked against (500 MB single PUT by default).
pub const POLICY: &str = crate::config::policy::CYBERUN;
/// The policy of Cyberun's multipart uploads (up to S3's largest object by default).
pub const MULTIPART_POLICY: &str = crate::config::policy::CYBERUN_MULTIPART;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/r/files/presign", post(presign))
        .route("/api/v1/uploads/multipart/initiate", post(initiate))
        .route("/api/v1/uploads/multipart/presign-parts", post(presign_parts))
        .route("/api/v1/uploads/multipart/complete", post(complete))
        .route("/api/v1/uploads/multipart/abort", post(abort))
}

/// Request body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = cyberun::PresignRequest)]
pub struct PresignRequest {
    /// Required.
    #[schema(example = "report.pdf")]
    pub file_name: Option<String>,
    /// Bytes (required): the PUT must send exactly this many.
    pub file_size: Option<u64>,
    pub content_type: Option<String>,
}

/// Answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = cyberun::PresignResponse)]
pub struct PresignResponse {
    /// `inputs/<project>/<id>/<file_name>`: an opaque reference to pass as a file parameter.
    pub file_key: String,
    pub upload_url: String,
    /// Send every one of these with the PUT, exactly.
    pub upload_headers: BTreeMap<String, String>,
}

/// A presign body as an upload to announce: policy `cyberun`, class input, keys
/// `inputs/{project}/{id}/{file_name}`, `Content-Length` and `If-None-Match: *` signed.
pub(crate) fn presign_request(body: &Bytes) -> Result<PresignUpload, Error> {
    let req: PresignRequest = json_body(body)?;
    let name = FileName::new(req.file_name.ok_or_else(|| Error::invalid("'file_name' is required"))?)?;
    let size = req
        .file_size
        .ok_or_else(|| Error::invalid("'file_size' is required (bytes)"))?;
    let mut new = NewFile::named(name);
    new.policy = POLICY.into();
    new.class = Class::Input;
    new.size_hint = Some(size);
    new.declared_type = req.content_type;
    new.key = KeyLayout::Named("inputs");
    Ok(PresignUpload {
        file: new,
        sign_content_type: false,
        create_only: true,
    })
}

pub(crate) fn presign_response(
    rec: &filedock_core::FileRecord,
    signed: filedock_core::PresignedRequest,
) -> PresignResponse {
    PresignResponse {
        file_key: rec.key.to_string(),
        upload_url: signed.url,
        upload_headers: signed.headers.into_iter().collect(),
    }
}

/// Cyberun: presign a single PUT of an input file (any key kind).
#[utoipa::path(post, path = "/api/v1/r/files/presign", tag = "cyberun",
    request_body(content = PresignRequest, content_type = "application/json"),
    responses((status = 200, body = PresignResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, description = "Over the size limit", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn presign(State(state): State<AppState>, Auth(who): Auth, body: Bytes) -> ApiResult<Json<PresignResponse>> {
    let (rec, signed) = state.files.presign_upload(&who, presign_request(&body)?).await?;
    Ok(Json(presign_response(&rec, signed)))
}

/// The seed's rule: the multipart routes take user session keys only.
fn session_only(who: &Principal) -> Result<(), Error> {
    if who.kind == CredentialKind::Session {
        Ok(())
    } else {
        Err(Error::Unauthenticated(
            "multipart uploads take a user session key (st-); use /api/v1/r/files/presign with sk- and dk- keys".into(),
        ))
    }
}

/// `initiate` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = cyberun::InitiateRequest)]
pub struct InitiateRequest {
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    pub content_type: Option<String>,
    pub part_size: Option<u64>,
}

/// `initiate` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = cyberun::InitiateResponse)]
pub struct InitiateResponse {
    pub upload_id: String,
    pub file_key: String,
    pub part_size: u64,
    pub part_count: u64,
}

#[utoipa::path(post, path = "/api/v1/uploads/multipart/initiate", tag = "cyberun",
    request_body(content = InitiateRequest, content_type = "application/json"),
    responses((status = 200, body = InitiateResponse), (status = 400, body = ErrorBody),
        (status = 401, description = "No key, or not a session (st-) key", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn initiate(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<Json<InitiateResponse>> {
    session_only(&who)?;
    let req: InitiateRequest = json_body(&body)?;
    let name = FileName::new(req.file_name.ok_or_else(|| Error::invalid("'file_name' is required"))?)?;
    let size = req
        .file_size
        .ok_or_else(|| Error::invalid("'file_size' is required (bytes)"))?;
    let mut new = NewFile::named(name);
    new.policy = MULTIPART_POLICY.into();
    new.class = Class::Input;
    new.size_hint = Some(size);
    new.declared_type = req.content_type;
    new.key = KeyLayout::Named("inputs");
    let (u, file) = state.files.initiate_multipart(&who, new, req.part_size).await?;
    Ok(Json(InitiateResponse {
        upload_id: u.id.to_string(),
        file_key: file.key.to_string(),
        part_size: u.part_size,
        part_count: filedock_core::FileService::part_count(&u),
    }))
}

/// `presign-parts` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = cyberun::PresignPartsRequest)]
pub struct PresignPartsRequest {
    pub upload_id: Option<String>,
    pub part_numbers: Option<Vec<u32>>,
}

/// One presigned part.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = cyberun::PartUrl)]
pub struct PartUrl {
    pub part_number: u32,
    pub upload_url: String,
    /// Send every one of these with the PUT, exactly (the part's `Content-Length`).
    pub upload_headers: BTreeMap<String, String>,
}

/// `presign-parts` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = cyberun::PresignPartsResponse)]
pub struct PresignPartsResponse {
    pub parts: Vec<PartUrl>,
}

#[utoipa::path(post, path = "/api/v1/uploads/multipart/presign-parts", tag = "cyberun",
    request_body(content = PresignPartsRequest, content_type = "application/json"),
    responses((status = 200, body = PresignPartsResponse), (status = 400, body = ErrorBody),
        (status = 401, description = "No key, or not a session (st-) key", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already complete", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn presign_parts(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<Json<PresignPartsResponse>> {
    session_only(&who)?;
    let req: PresignPartsRequest = json_body(&body)?;
    let id = req.upload_id.ok_or_else(|| Error::invalid("'upload_id' is required"))?;
    let numbers = req
        .part_numbers
        .ok_or_else(|| Error::invalid("'part_numbers' is required"))?;
    let parts = state.files.presign_parts(&who, &id, &numbers).await?;
    Ok(Json(PresignPartsResponse {
        parts: parts
            .into_iter()
            .map(|(n, p)| PartUrl {
                part_number: n,
                upload_url: p.url,
                upload_headers: p.headers.into_iter().collect(),
            })
            .collect(),
    }))
}

/// One part of a `complete` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = cyberun::CompletedPart)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

/// `complete` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = cyberun::CompleteRequest)]
pub struct CompleteRequest {
    pub upload_id: Option<String>,
    pub parts: Option<Vec<CompletedPart>>,
}

/// `complete` answer: the same `file_key` the single presign gives, to pass as a file parameter.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = cyberun::CompleteResponse)]
pub struct CompleteResponse {
    pub file_key: String,
}

#[utoipa::path(post, path = "/api/v1/uploads/multipart/complete", tag = "cyberun",
    request_body(content = CompleteRequest, content_type = "application/json"),
    responses((status = 200, body = CompleteResponse),
        (status = 400, description = "Parts out of order, missing, with a wrong ETag or size, or a wrong total", body = ErrorBody),
        (status = 401, description = "No key, or not a session (st-) key", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<Json<CompleteResponse>> {
    session_only(&who)?;
    let req: CompleteRequest = json_body(&body)?;
    let id = req.upload_id.ok_or_else(|| Error::invalid("'upload_id' is required"))?;
    let parts: Vec<(u32, String)> = req
        .parts
        .ok_or_else(|| Error::invalid("'parts' is required"))?
        .into_iter()
        .map(|p| (p.part_number, p.etag))
        .collect();
    let rec = state.files.complete_multipart(&who, &id, &parts).await?;
    Ok(Json(CompleteResponse {
        file_key: rec.key.to_string(),
    }))
}

/// `abort` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = cyberun::AbortRequest)]
pub struct AbortRequest {
    pub upload_id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/uploads/multipart/abort", tag = "cyberun",
    request_body(content = AbortRequest, content_type = "application/json"),
    responses((status = 204, description = "Aborted; its parts are deleted"), (status = 400, body = ErrorBody),
        (status = 401, description = "No key, or not a session (st-) key", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Already complete", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn abort(State(state): State<AppState>, Auth(who): Auth, body: Bytes) -> ApiResult<StatusCode> {
    session_only(&who)?;
    let req: AbortRequest = json_body(&body)?;
    let id = req.upload_id.ok_or_else(|| Error::invalid("'upload_id' is required"))?;
    state.files.abort_upload(&who, &id, UploadKind::Multipart).await?;
    Ok(StatusCode::NO_CONTENT)
}
