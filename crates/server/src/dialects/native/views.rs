//! The native API's request and answer shapes (each with its OpenAPI schema).

use std::collections::BTreeMap;

use filedock_core::{Class, Error, FileRecord, PresignedRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
    /// `pending`, `ready` or `failed` (a fetch from a URL that did not succeed: see `reason`).
    pub status: String,
    pub backend: String,
    pub key: String,
    pub workspace: Option<String>,
    pub created_by: Option<String>,
    pub agent: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// Where the bytes were fetched from (upload from a URL), without credentials or query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Why a `failed` file could not be taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
            origin: r.origin.clone(),
            reason: r.reason.clone(),
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

/// Query of `GET /v1/files/lookup`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LookupQuery {
    /// A `path` reference as TokenOps answers it (`<scheme>://<host>/<key>`), or a storage key
    /// on the default backend (Cyberun's `file_key`).
    pub path: String,
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

pub(super) fn class_of(s: Option<&str>) -> Result<Class, Error> {
    s.map(Class::parse).transpose().map(Option::unwrap_or_default)
}

pub(super) fn ttl_of(s: Option<&str>) -> Result<Option<u64>, Error> {
    s.map(|v| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| Error::invalid("ttl_seconds must be a whole number"))
    })
    .transpose()
}
