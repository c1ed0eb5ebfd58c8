//! An S3-compatible store (AWS S3, MinIO, Ceph RGW, Garage, COS, OBS, OSS, R2, GCS interop).
//! A body that passes through filedock goes up in one PUT (with `object_store`) when it is
//! smaller than a part, otherwise as a multipart upload whose parts are copied into buffers of
//! one pool with a memory budget ([`crate::parts`]); every presigned URL is made with `rusty-s3` and
//! points straight at the bucket, with `Content-Length`, `Content-Type` (when given) and the
//! backend's create-only header signed.
//!
//! Create-only is a capability of the store, not an assumption: AWS, MinIO and s3s honour
//! `If-None-Match: *`, COS and OSS their own `x-*-forbid-overwrite`, Garage none. filedock's
//! unique keys and the catalog's unique constraint are the guarantee; the header is defence in
//! depth. A multipart upload has no create-only mode anywhere: it is checked with a HEAD before
//! completing (not atomic).
//!
//! Multipart uploads whose parts clients PUT straight to the bucket (filedock presigns each
//! UploadPart with its exact length) are driven with S3's own calls, signed by `rusty-s3`.
//! Resumable (tus) uploads ride on one S3 multipart upload too: bytes are cut into parts of
//! [`APPEND_PART`]; what is left over after a request is kept as a staging object under
//! `.filedock/append/{key}/{offset}` until enough arrives for a part, so any chunk size works.
//! The multipart upload is made with the first part (its id kept in
//! `.filedock/append/{key}/upload-id`), so a creation costs no S3 call; an upload that ends
//! before a part's worth is published with one PUT.
//! Every step is idempotent on retry: a part or staging object beyond the offset the catalog
//! recorded is ignored and replaced, and staging objects are deleted only once a part the
//! catalog counts covers them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use filedock_core::{
    BlobStore, ByteRange, ByteStream, Error, GetResult, ObjectMeta, Part, PresignGet, PresignPart, PresignPut,
    PresignedRequest, PutOptions, Result, StorageKey,
};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{ClientOptions, RetryConfig};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde::{Deserialize, Serialize};

use crate::parts::{Filled, PartBuf, PartPool};

/// Size of the part buffers, and of the parts of a multipart upload after [`SMALL_PARTS`].
const PART: usize = 8 * 1024 * 1024;
/// The first parts of a multipart upload are of S3's minimum size, 5 MiB (a buffer's pages are
/// touched only as far as they are filled, so an upload then holds 10 MiB, not 16); the parts
/// after them are of [`PART`], so an object can still reach 2,000 × 5 MiB + 8,000 × 8 MiB
/// (72 GiB) in S3's 10,000 parts. A body of at most one small part goes up in one PUT.
const SMALL_PARTS: u32 = 2_000;
/// The size of part `number` (from 1) of a multipart upload.
fn part_size(number: u32) -> usize {
    if number <= SMALL_PARTS { APPEND_PART } else { PART }
}

/// Attempts at sending one part (it is held whole in memory, so it can be sent again).
const PART_ATTEMPTS: u32 = 3;
/// Size of the parts a resumable upload is cut into (S3's minimum, which is also the chunk size
/// tus clients use most, so a 5 MiB PATCH becomes exactly one part and nothing is staged).
const APPEND_PART: usize = 5 * 1024 * 1024;
/// How long the URLs of filedock's own S3 calls are valid.
const CALL_TTL: Duration = Duration::from_secs(300);

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How a backend refuses to overwrite an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CreateOnly {
    /// `If-None-Match: *` (AWS S3, MinIO, Ceph RGW, R2, s3s).
    #[default]
    #[serde(rename = "if-none-match")]
    IfNoneMatch,
    /// `x-cos-forbid-overwrite: true` (Tencent COS).
    #[serde(rename = "x-cos-forbid-overwrite")]
    CosForbidOverwrite,
    /// `x-oss-forbid-overwrite: true` (Alibaba OSS).
    #[serde(rename = "x-oss-forbid-overwrite")]
    OssForbidOverwrite,
    /// No header (the store honours none, e.g. Garage): unique keys only.
    #[serde(rename = "none")]
    None,
}

impl CreateOnly {
    /// The header and value a create-only PUT carries, if any.
    pub fn header(self) -> Option<(&'static str, &'static str)> {
        match self {
            CreateOnly::IfNoneMatch => Some(("If-None-Match", "*")),
            CreateOnly::CosForbidOverwrite => Some(("x-cos-forbid-overwrite", "true")),
            CreateOnly::OssForbidOverwrite => Some(("x-oss-forbid-overwrite", "true")),
            CreateOnly::None => None,
        }
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The endpoint, e.g. `https://s3.us-east-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub bucket: String,
    /// The signing region (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-host (`bucket.endpoint/key`).
    #[serde(default)]
    pub path_style: bool,
    /// The access key id.
    pub access_key_id: String,
    /// The secret key, e.g. from `FILEDOCK_BACKENDS__<NAME>__SECRET_ACCESS_KEY`; or use
    /// `secret_access_key_file`.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// A file holding the secret key (trailing whitespace ignored).
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// The create-only header flavour: `if-none-match` (default), `x-cos-forbid-overwrite`,
    /// `x-oss-forbid-overwrite` or `none`.
    #[serde(default)]
    pub create_only: CreateOnly,
    /// Memory for parts on their way to the bucket, in MiB, shared by all uploads through this
    /// backend (default 48: six 8 MiB buffers). An upload waits, reading nothing more from its
    /// client, while it is spent; each upload holds at most two parts (one sending, one filling).
    #[serde(default = "default_part_buffer_mib")]
    pub part_buffer_mib: u32,
    /// The longest one S3 call may take, in seconds (default 30), including 5 s to connect; for
    /// a read, until its first byte (the bytes then stream as fast as their reader takes them).
    /// A call that runs out is tried once more, then answered 503 `unavailable`: a frozen store
    /// cannot hold requests for ever.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_part_buffer_mib() -> u32 {
    48
}

fn default_timeout_secs() -> u64 {
    30
}

/// To connect to the store.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause within the answer of a call filedock reads whole (multipart calls).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl S3Config {
    fn secret(&self) -> Result<String> {
        match (&self.secret_access_key, &self.secret_access_key_file) {
            (Some(s), _) => Ok(s.0.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|s| s.trim_end().to_owned())
                .map_err(|e| Error::invalid(format!("cannot read secret_access_key_file {}: {e}", f.display()))),
            (None, None) => Err(Error::invalid(
                "an s3 backend needs secret_access_key or secret_access_key_file",
            )),
        }
    }
}

/// Bytes in an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    /// The same bucket for reads that stream (see `open`).
    reader: Arc<dyn ObjectStore>,
    /// How long a call may take (`timeout_secs`); for a read, until its first byte.
    timeout: Duration,
    bucket: Bucket,
    credentials: Credentials,
    create_only: CreateOnly,
    http: reqwest::Client,
    parts: PartPool,
    /// What this instance last left in each resumable upload it appended to, by key (see
    /// [`AppendState`]).
    appends: Arc<std::sync::Mutex<HashMap<String, AppendState>>>,
}

/// The handle of a resumable upload made by [`BlobStore::append_create`]: no multipart upload
/// exists for it yet. One is made when its first part is complete, and its id is written to
/// [`upload_id_key`]; an upload that ends before a part's worth is published with one PUT.
/// So a tus creation costs no S3 call, and an upload abandoned early leaves no multipart upload.
/// (Handles of uploads made before are S3 upload ids, and work as they did.)
const LAZY_HANDLE: &str = "-";

/// Where a resumable upload's multipart upload id is kept once it has one (beside its staging
/// objects; not a staging object, since its name is not an offset).
fn upload_id_key(key: &StorageKey) -> Result<StorageKey> {
    StorageKey::new(format!("{}upload-id", staging_prefix(key)))
}

/// A resumable upload as this instance's last append left it: the offset it reached, its
/// multipart upload (if it has one yet), its parts and its staging objects. The next append from that very offset starts from here instead of
/// listing the parts and the staging prefix (two list calls per PATCH, and a list walks the
/// bucket on some S3 servers). From any other offset (another instance went on, or the offset
/// was never recorded) it lists, as the first append after a restart does.
#[derive(Debug, Clone)]
struct AppendState {
    end: u64,
    upload_id: Option<String>,
    parts: Vec<Part>,
    staged: Vec<StorageKey>,
}

/// Uploads remembered at most; beyond, the memory is cleared (they list again).
const APPENDS_REMEMBERED: usize = 10_000;

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket.name())
            .field("create_only", &self.create_only)
            .finish_non_exhaustive()
    }
}

fn os_err(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::not_found("no such key"),
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            Error::PreconditionFailed("an object already exists at this key".into())
        }
        // Timeouts, refused connections, 5xx answers: the store does not answer now.
        other => unavailable(other),
    }
}

/// A store that did not answer (or answered 5xx): 503 `unavailable`, the cause logged here.
fn unavailable(e: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %e, "the S3 store does not answer");
    Error::Unavailable("the storage backend does not answer; retry shortly".into())
}

fn staging_prefix(key: &StorageKey) -> String {
    format!("{}append/{key}/", filedock_core::blob::INTERNAL_PREFIX)
}

fn one_chunk(b: Bytes) -> ByteStream {
    futures_util::stream::iter([Ok(b)]).boxed()
}

/// The text of the first `<tag>…</tag>` in `xml`, entities decoded.
fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let (_, rest) = xml.split_once(&format!("<{tag}>"))?;
    let (v, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(
        v.replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// A ListParts page: its parts, and whether more follow. A part listed without an ETag (some
/// S3-compatible servers omit it) gets an empty one, which core does not compare.
fn parse_list_parts(xml: &str) -> Result<(Vec<Part>, bool)> {
    let bad = || Error::internal_msg("malformed ListParts answer");
    let mut parts = Vec::new();
    for chunk in xml.split("<Part>").skip(1) {
        let part = chunk.split("</Part>").next().ok_or_else(bad)?;
        parts.push(Part {
            number: xml_tag(part, "PartNumber")
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?,
            etag: xml_tag(part, "ETag").unwrap_or_default(),
            size: xml_tag(part, "Size").and_then(|n| n.parse().ok()).ok_or_else(bad)?,
        });
    }
    Ok((parts, xml_tag(xml, "IsTruncated").is_some_and(|t| t == "true")))
}

fn path(key: &StorageKey) -> Result<Path> {
    Path::parse(key.as_str()).map_err(Error::internal)
}

fn meta_of(m: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        size: m.size,
        etag: m.e_tag.clone().unwrap_or_default(),
        modified: m.last_modified.timestamp_millis(),
    }
}

impl S3Store {
    /// Connects to a bucket (no request is made until first use).
    pub fn open(cfg: &S3Config) -> Result<Self> {
        let secret = cfg.secret()?;
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        // Two object_store clients on one configuration. Calls answer within `timeout` (the
        // whole call, body included). Reads (`get`) stream for as long as their reader takes, so
        // they have no overall limit: their first byte must come within `timeout` (see `get`),
        // and no pause limit either, which would cut a download whose client reads slowly.
        let build = |options: ClientOptions| {
            AmazonS3Builder::new()
                // First: the client options replace every earlier one (allow_http among them).
                .with_client_options(options.with_connect_timeout(CONNECT_TIMEOUT))
                .with_endpoint(&cfg.endpoint)
                .with_allow_http(cfg.endpoint.starts_with("http://"))
                .with_bucket_name(&cfg.bucket)
                .with_region(&cfg.region)
                .with_access_key_id(&cfg.access_key_id)
                .with_secret_access_key(&secret)
                .with_virtual_hosted_style_request(!cfg.path_style)
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                .with_retry(RetryConfig {
                    max_retries: 1,
                    retry_timeout: timeout,
                    ..RetryConfig::default()
                })
                .build()
                .map_err(|e| Error::invalid(format!("s3 backend: {e}")))
        };
        let store = build(ClientOptions::new().with_timeout(timeout))?;
        let reader = build(ClientOptions::new().with_timeout_disabled())?;
        let endpoint = url::Url::parse(&cfg.endpoint).map_err(|e| Error::invalid(format!("s3 endpoint: {e}")))?;
        let style = if cfg.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| Error::invalid(format!("s3 bucket: {e}")))?;
        Ok(S3Store {
            store: Arc::new(store),
            reader: Arc::new(reader),
            timeout,
            bucket,
            credentials: Credentials::new(cfg.access_key_id.clone(), secret),
            create_only: cfg.create_only,
            http: reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .timeout(timeout)
                .build()
                .map_err(Error::internal)?,
            parts: PartPool::new(PART, (cfg.part_buffer_mib as usize * 1024 * 1024) / PART),
            appends: Arc::default(),
        })
    }

    /// Sends one signed S3 call; an S3 error answer becomes a core error (`NoSuchUpload` →
    /// `NotFound`, `InvalidPart`/`EntityTooSmall`/`InvalidPartOrder` → `Invalid`).
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::header::HeaderMap, String)> {
        let resp = req.send().await.map_err(|e| unavailable(e.without_url()))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| unavailable(e.without_url()))?;
        // CompleteMultipartUpload may answer 200 with an error document.
        if status.is_success() && !text.contains("<Error>") {
            return Ok((headers, text));
        }
        let tag = |t: &str| {
            text.split_once(&format!("<{t}>"))
                .and_then(|(_, rest)| rest.split_once(&format!("</{t}>")))
                .map(|(v, _)| v.to_owned())
                .unwrap_or_default()
        };
        let (code, message) = (tag("Code"), tag("Message"));
        Err(match code.as_str() {
            "NoSuchUpload" => Error::not_found("no such upload"),
            "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" => Error::invalid(format!("{code}: {message}")),
            "PreconditionFailed" => Error::PreconditionFailed("an object already exists at this key".into()),
            _ if status.is_server_error() => unavailable(format!("S3 answered {status}: {code} {message}")),
            _ => Error::internal_msg(format!("S3 answered {status}: {code} {message}")),
        })
    }

    /// Staging objects of a resumable upload: `(start offset, size, key)`, by offset.
    async fn staged(&self, key: &StorageKey) -> Result<Vec<(u64, u64, StorageKey)>> {
        let prefix = staging_prefix(key);
        let mut out = Vec::new();
        for (k, meta) in self.list(&prefix).await? {
            if let Ok(start) = k.as_str()[prefix.len()..].parse::<u64>() {
                out.push((start, meta.size, k));
            }
        }
        out.sort_by_key(|(start, _, _)| *start);
        Ok(out)
    }

    /// Takes what this instance remembers of an upload, if its last append ended at `offset`.
    fn remembered(&self, key: &StorageKey, offset: u64) -> Option<AppendState> {
        let mut appends = self.appends.lock().ok()?;
        appends.remove(key.as_str()).filter(|s| s.end == offset)
    }

    fn remember(&self, key: &StorageKey, state: AppendState) {
        if let Ok(mut appends) = self.appends.lock() {
            if appends.len() >= APPENDS_REMEMBERED {
                appends.clear();
            }
            appends.insert(key.as_str().to_owned(), state);
        }
    }

    fn forget(&self, key: &StorageKey) {
        if let Ok(mut appends) = self.appends.lock() {
            appends.remove(key.as_str());
        }
    }

    /// The multipart upload of a resumable upload, if it has one: its handle, or for a
    /// [`LAZY_HANDLE`] the id written once its first part was sent.
    async fn upload_id(&self, key: &StorageKey, handle: &str) -> Result<Option<String>> {
        if handle != LAZY_HANDLE {
            return Ok(Some(handle.to_owned()));
        }
        let mut body = match self.get(&upload_id_key(key)?, None).await {
            Ok(got) => got.body,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut id = Vec::new();
        while let Some(chunk) = body.next().await {
            id.extend_from_slice(&chunk?);
        }
        let id = String::from_utf8(id)
            .map_err(|_| Error::internal_msg(format!("resumable upload {key}: its upload id is not text")))?;
        Ok(Some(id))
    }

    /// Makes the multipart upload of a [`LAZY_HANDLE`] upload and records its id. A crash
    /// between the two leaves a multipart upload nobody knows (the next append makes another):
    /// the bucket's lifecycle rule for incomplete uploads removes it.
    async fn start_multipart(&self, key: &StorageKey) -> Result<String> {
        let id = self.create_multipart(key).await?;
        self.store
            .put_opts(
                &path(&upload_id_key(key)?)?,
                Bytes::from(id.clone()).into(),
                object_store::PutOptions::default(),
            )
            .await
            .map_err(os_err)?;
        Ok(id)
    }

    /// Deletes a resumable upload's staging objects and its recorded upload id.
    async fn drop_staging(&self, key: &StorageKey, staged: Vec<StorageKey>) -> Result<()> {
        for k in staged {
            self.delete(&k).await?;
        }
        self.delete(&upload_id_key(key)?).await
    }

    /// What of a resumable upload the offset `offset` acknowledges: the parts wholly before it
    /// and the staging objects that continue them up to it. Anything else (written, then never
    /// acknowledged) is dropped or left to be replaced.
    async fn acknowledged(
        &self,
        key: &StorageKey,
        upload_id: Option<&str>,
        offset: u64,
    ) -> Result<(Vec<Part>, Vec<StorageKey>)> {
        let mut parts = Vec::new();
        let mut end = 0;
        let listed = match upload_id {
            Some(id) => self.list_parts(key, id).await?,
            None => Vec::new(),
        };
        for p in listed {
            if p.number as usize != parts.len() + 1 || end + p.size > offset {
                break;
            }
            end += p.size;
            parts.push(p);
        }
        let mut staged = Vec::new();
        for (start, size, k) in self.staged(key).await? {
            if start >= end && start + size <= offset {
                if start != end {
                    return Err(Error::internal_msg(format!(
                        "resumable upload {key}: bytes {end}..{start} are missing from staging"
                    )));
                }
                end += size;
                staged.push(k);
            } else {
                self.delete(&k).await?;
            }
        }
        if end != offset {
            return Err(Error::internal_msg(format!(
                "resumable upload {key}: {end} bytes are stored, not the {offset} recorded"
            )));
        }
        Ok((parts, staged))
    }

    /// Appends `body` at `offset` to a resumable upload holding `parts` and the staging objects
    /// `staged` up to it; returns what the upload then holds.
    async fn append_after(
        &self,
        key: &StorageKey,
        mut upload_id: Option<String>,
        offset: u64,
        parts: Vec<Part>,
        staged: Vec<StorageKey>,
        mut body: ByteStream,
    ) -> Result<(AppendState, Option<Error>)> {
        let staged_len =
            usize::try_from(offset - parts.iter().map(|p| p.size).sum::<u64>()).map_err(Error::internal)?;
        if staged_len >= APPEND_PART {
            return Err(Error::internal_msg(format!(
                "resumable upload {key}: {staged_len} bytes staged, a part's worth"
            )));
        }
        // Made with the first part (and the multipart upload with it, for a lazy handle).
        let mut sender: Option<PartSender> = None;
        let mut carry = Bytes::new();
        let mut failed = None;
        // The first part continues the staged bytes: only the new bytes are read from the body,
        // and the staged ones are read back only once the part is complete, so a run of small
        // PATCHes costs one PUT each, not a re-read of the staged remainder each time.
        let mut staged_now = staged.clone();
        let mut unread = staged;
        let mut end = offset;
        loop {
            let mut buf = self.parts.take().await?;
            let want = APPEND_PART - if unread.is_empty() { 0 } else { staged_len };
            let filled = match buf.fill(&mut body, &mut carry, want).await {
                Ok(f) => f,
                Err(e) => {
                    failed = Some(e);
                    Filled::End
                }
            };
            end += buf.len() as u64;
            if filled == Filled::End {
                // Only bytes new in this call are staged; the staged ones before them stay.
                if !buf.is_empty() {
                    if let Some(sender) = sender.as_mut() {
                        sender.wait().await?;
                    }
                    let at = StorageKey::new(format!("{}{:020}", staging_prefix(key), end - buf.len() as u64))?;
                    let o = object_store::PutOptions::default();
                    self.store
                        .put_opts(&path(&at)?, buf.freeze().into(), o)
                        .await
                        .map_err(os_err)?;
                    staged_now.push(at);
                }
                break;
            }
            if !unread.is_empty() {
                buf.shift_right(staged_len)?;
                self.read_front(&std::mem::take(&mut unread), &mut buf, staged_len)
                    .await?;
            }
            // The staged bytes before this part are in it now (their objects go at the finish).
            staged_now.clear();
            let sender = match &mut sender {
                Some(s) => s,
                None => {
                    let id = match &upload_id {
                        Some(id) => id.clone(),
                        None => upload_id.insert(self.start_multipart(key).await?).clone(),
                    };
                    sender.insert(PartSender::new(self, key, &id, parts.len() as u32 + 1))
                }
            };
            sender.send(buf).await?;
        }
        let mut all = parts;
        if let Some(sender) = sender.as_mut() {
            all.extend(sender.finish().await?);
        }
        let state = AppendState {
            end,
            upload_id,
            parts: all,
            staged: staged_now,
        };
        Ok((state, failed))
    }

    /// Copies the objects `keys`, in order, into the front of `buf` (made room for with
    /// [`PartBuf::shift_right`]); they must fill exactly `len` bytes.
    async fn read_front(&self, keys: &[StorageKey], buf: &mut PartBuf, len: usize) -> Result<()> {
        let mut at = 0;
        for k in keys {
            let mut body = self.get(k, None).await?.body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                buf.write_front(at, &chunk)?;
                at += chunk.len();
            }
        }
        if at != len {
            return Err(Error::internal_msg(format!(
                "staging objects held {at} bytes, not the {len} expected"
            )));
        }
        Ok(())
    }

    /// Sends one part held in memory; a transport or server error is tried again.
    async fn send_part(self, key: StorageKey, handle: String, number: u32, bytes: Bytes) -> Result<Part> {
        let mut attempt = 1;
        loop {
            let len = bytes.len() as u64;
            match self
                .put_part(&key, &handle, number, one_chunk(bytes.clone()), len)
                .await
            {
                Err(Error::Internal(e)) if attempt < PART_ATTEMPTS => {
                    tracing::warn!(%key, number, attempt, error = %e, "sending a part failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Streams `first` (a full part), then the rest of `body` (starting with `carry`), as a
    /// multipart upload: each part is copied into a pool buffer and sent while the next fills.
    async fn put_multipart(
        &self,
        key: &StorageKey,
        first: PartBuf,
        mut carry: Bytes,
        mut body: ByteStream,
        create_only: bool,
    ) -> Result<()> {
        if create_only && self.head(key).await.is_ok() {
            return Err(Error::PreconditionFailed("an object already exists at this key".into()));
        }
        let handle = self.create_multipart(key).await?;
        let mut sender = PartSender::new(self, key, &handle, 1);
        let streamed: Result<Vec<Part>> = async {
            sender.send(first).await?;
            for number in 2u32.. {
                if number > 10_000 {
                    return Err(Error::TooLarge(
                        "an S3 object holds at most 10,000 parts (72 GiB here)".into(),
                    ));
                }
                let mut buf = self.parts.take().await?;
                let filled = buf.fill(&mut body, &mut carry, part_size(number)).await?;
                if !buf.is_empty() {
                    sender.send(buf).await?;
                }
                if filled == Filled::End {
                    break;
                }
            }
            sender.finish().await
        }
        .await;
        let done = match streamed {
            Ok(parts) => self.complete(key, &handle, &parts, create_only).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if done.is_err() {
            sender.cancel();
            if let Err(abort) = self.abort_multipart(key, &handle).await {
                tracing::warn!(%key, error = %abort, "could not abort a failed multipart upload");
            }
        }
        done
    }

    /// Completes a multipart upload; `create_only` refuses (by a HEAD first, not atomically)
    /// when the key already holds an object.
    async fn complete(&self, key: &StorageKey, handle: &str, parts: &[Part], create_only: bool) -> Result<ObjectMeta> {
        if create_only && self.head(key).await.is_ok() {
            return Err(Error::PreconditionFailed("an object already exists at this key".into()));
        }
        let mut xml = String::from("<CompleteMultipartUpload>");
        for p in parts {
            let etag = p.etag.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
                p.number
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let url = self
            .bucket
            .complete_multipart_upload(
                Some(&self.credentials),
                key.as_str(),
                handle,
                std::iter::empty::<&str>(),
            )
            .sign(CALL_TTL);
        self.call(self.http.post(url).body(xml)).await?;
        self.head(key).await
    }
}

/// Sends the parts of one multipart upload in order, one at a time in the background, so the
/// next part fills while the last one is sent: an upload holds at most two buffers.
struct PartSender {
    store: S3Store,
    key: StorageKey,
    handle: String,
    next: u32,
    in_flight: Option<tokio::task::JoinHandle<Result<Part>>>,
    done: Vec<Part>,
}

impl PartSender {
    fn new(store: &S3Store, key: &StorageKey, handle: &str, next: u32) -> Self {
        PartSender {
            store: store.clone(),
            key: key.clone(),
            handle: handle.to_owned(),
            next,
            in_flight: None,
            done: Vec::new(),
        }
    }

    /// Waits for the part before, then starts sending `buf` as the next part.
    async fn send(&mut self, buf: PartBuf) -> Result<()> {
        self.wait().await?;
        let store = self.store.clone();
        let task = store.send_part(self.key.clone(), self.handle.clone(), self.next, buf.freeze());
        self.in_flight = Some(tokio::spawn(task));
        self.next += 1;
        Ok(())
    }

    async fn wait(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.take() {
            self.done.push(task.await.map_err(Error::internal)??);
        }
        Ok(())
    }

    /// The parts sent, once all have arrived.
    async fn finish(&mut self) -> Result<Vec<Part>> {
        self.wait().await?;
        Ok(std::mem::take(&mut self.done))
    }

    /// Stops the part being sent, if any.
    fn cancel(&mut self) {
        if let Some(task) = self.in_flight.take() {
            task.abort();
        }
    }
}

impl Drop for PartSender {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put(&self, key: &StorageKey, mut body: ByteStream, opts: PutOptions) -> Result<ObjectMeta> {
        // Read up to one part: a body that ends within it goes up in one PUT, which can be
        // create-only atomically.
        let mut first = self.parts.take().await?;
        let mut carry = Bytes::new();
        let mut filled = first.fill(&mut body, &mut carry, part_size(1)).await?;
        if filled == Filled::Full && carry.is_empty() {
            // Full: see whether anything follows.
            match body.next().await {
                Some(chunk) => carry = chunk?,
                None => filled = Filled::End,
            }
        }
        if filled == Filled::End {
            let atomic = opts.create_only && self.create_only == CreateOnly::IfNoneMatch;
            if opts.create_only && !atomic && self.head(key).await.is_ok() {
                return Err(Error::PreconditionFailed("an object already exists at this key".into()));
            }
            let mode = if atomic { PutMode::Create } else { PutMode::Overwrite };
            let o = object_store::PutOptions {
                mode,
                ..Default::default()
            };
            self.store
                .put_opts(&path(key)?, first.freeze().into(), o)
                .await
                .map_err(os_err)?;
        } else {
            self.put_multipart(key, first, carry, body, opts.create_only).await?;
        }
        self.head(key).await
    }

    async fn get(&self, key: &StorageKey, range: Option<ByteRange>) -> Result<GetResult> {
        let p = path(key)?;
        let range = match range {
            Some(r) => Some(r.resolve(self.head(key).await?.size)?),
            None => None,
        };
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let got = tokio::time::timeout(self.timeout, self.reader.get_opts(&p, opts))
            .await
            .map_err(|_| unavailable(format!("no answer to a GET within {:?}", self.timeout)))?
            .map_err(os_err)?;
        let meta = meta_of(&got.meta);
        let range = got.range.clone();
        let body = got.into_stream().map_err(os_err).boxed();
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &StorageKey) -> Result<ObjectMeta> {
        Ok(meta_of(&self.store.head(&path(key)?).await.map_err(os_err)?))
    }

    async fn delete(&self, key: &StorageKey) -> Result<()> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(os_err(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(StorageKey, ObjectMeta)>> {
        // object_store lists whole segments: list the prefix's directory, then filter.
        let dir = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let dir = if dir.is_empty() {
            None
        } else {
            Some(Path::parse(dir).map_err(Error::internal)?)
        };
        let mut out = Vec::new();
        let mut listing = self.store.list(dir.as_ref());
        while let Some(m) = listing.next().await {
            let m = m.map_err(os_err)?;
            if m.location.as_ref().starts_with(prefix) {
                out.push((StorageKey::new(m.location.as_ref())?, meta_of(&m)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn create_multipart(&self, key: &StorageKey) -> Result<String> {
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key.as_str())
            .sign(CALL_TTL);
        let (_, body) = self.call(self.http.post(url)).await?;
        let r = rusty_s3::actions::CreateMultipartUpload::parse_response(&body).map_err(Error::internal)?;
        Ok(r.upload_id().to_owned())
    }

    async fn put_part(&self, key: &StorageKey, handle: &str, number: u32, body: ByteStream, len: u64) -> Result<Part> {
        let n = u16::try_from(number).map_err(|_| Error::invalid("part numbers go up to 10000"))?;
        let url = self
            .bucket
            .upload_part(Some(&self.credentials), key.as_str(), n, handle)
            .sign(CALL_TTL);
        // Keep the body's own error (too large, client gone) rather than the transport's.
        let failed = Arc::new(std::sync::Mutex::new(None));
        let slot = failed.clone();
        let body = body.map(move |c| {
            c.map_err(|e| {
                let msg = e.to_string();
                if let Ok(mut s) = slot.lock() {
                    *s = Some(e);
                }
                std::io::Error::other(msg)
            })
        });
        let sent = self
            .call(
                self.http
                    .put(url)
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(body)),
            )
            .await;
        if let Some(e) = failed.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
        let (headers, _) = sent?;
        let etag = headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::internal_msg("S3 answered an UploadPart without an ETag"))?;
        Ok(Part {
            number,
            etag: etag.to_owned(),
            size: len,
        })
    }

    async fn list_parts(&self, key: &StorageKey, handle: &str) -> Result<Vec<Part>> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let mut action = self.bucket.list_parts(Some(&self.credentials), key.as_str(), handle);
            action.set_max_parts(1000);
            if let Some(m) = marker {
                action.set_part_number_marker(m);
            }
            let (_, body) = self.call(self.http.get(action.sign(CALL_TTL))).await?;
            let (page, truncated) = parse_list_parts(&body)?;
            out.extend(page);
            match (truncated, out.last()) {
                (true, Some(last)) => marker = Some(u16::try_from(last.number).map_err(Error::internal)?),
                _ => break,
            }
        }
        out.sort_by_key(|p| p.number);
        Ok(out)
    }

    async fn complete_multipart(&self, key: &StorageKey, handle: &str, parts: &[Part]) -> Result<ObjectMeta> {
        // No create-only mode exists for a multipart complete: checked first.
        self.complete(key, handle, parts, true).await
    }

    async fn abort_multipart(&self, key: &StorageKey, handle: &str) -> Result<()> {
        let url = self
            .bucket
            .abort_multipart_upload(Some(&self.credentials), key.as_str(), handle)
            .sign(CALL_TTL);
        match self.call(self.http.delete(url)).await {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn presign_part(&self, req: &PresignPart) -> Result<PresignedRequest> {
        let n = u16::try_from(req.number).map_err(|_| Error::invalid("part numbers go up to 10000"))?;
        let mut action = self
            .bucket
            .upload_part(Some(&self.credentials), req.key.as_str(), n, &req.handle);
        let len = req.content_length.to_string();
        action.headers_mut().insert("content-length", len.clone());
        Ok(PresignedRequest {
            method: "PUT",
            url: action.sign(Duration::from_secs(req.expires_in_secs)).to_string(),
            headers: vec![("Content-Length".to_owned(), len)],
            expires_at: req.expires_at,
        })
    }

    async fn append_create(&self, key: &StorageKey) -> Result<String> {
        let empty = AppendState {
            end: 0,
            upload_id: None,
            parts: Vec::new(),
            staged: Vec::new(),
        };
        self.remember(key, empty);
        Ok(LAZY_HANDLE.to_owned())
    }

    async fn append(
        &self,
        key: &StorageKey,
        handle: &str,
        offset: u64,
        body: ByteStream,
    ) -> Result<(u64, Option<Error>)> {
        let (upload_id, parts, staged) = match self.remembered(key, offset) {
            Some(s) => (s.upload_id, s.parts, s.staged),
            None => {
                let id = self.upload_id(key, handle).await?;
                let (parts, staged) = self.acknowledged(key, id.as_deref(), offset).await?;
                (id, parts, staged)
            }
        };
        let (state, failed) = self.append_after(key, upload_id, offset, parts, staged, body).await?;
        let end = state.end;
        self.remember(key, state);
        Ok((end, failed))
    }

    async fn append_finish(&self, key: &StorageKey, handle: &str, length: u64) -> Result<ObjectMeta> {
        self.forget(key);
        let upload_id = self.upload_id(key, handle).await?;
        let (mut parts, staged) = self.acknowledged(key, upload_id.as_deref(), length).await?;
        let Some(id) = upload_id else {
            // Never a part's worth: the staged bytes are the object, sent with one PUT. Read
            // into memory of their own (less than a part), not a pool buffer: a buffer can stay
            // pinned by an idle connection until it is used again, and with a budget of one
            // buffer this would wait for it forever.
            let mut bytes = Vec::with_capacity(usize::try_from(length).map_err(Error::internal)?);
            for k in &staged {
                let mut body = self.get(k, None).await?.body;
                while let Some(chunk) = body.next().await {
                    bytes.extend_from_slice(&chunk?);
                }
            }
            if bytes.len() as u64 != length {
                return Err(Error::internal_msg(format!(
                    "resumable upload {key}: staging objects held {} bytes, not {length}",
                    bytes.len()
                )));
            }
            let meta = self
                .put(key, one_chunk(Bytes::from(bytes)), PutOptions { create_only: true })
                .await?;
            self.drop_staging(key, staged).await?;
            return Ok(meta);
        };
        if length == 0 {
            self.abort_multipart(key, &id).await?;
            self.drop_staging(key, staged).await?;
            return self
                .put(key, one_chunk(Bytes::new()), PutOptions { create_only: true })
                .await;
        }
        if !staged.is_empty() {
            let len = usize::try_from(length - parts.iter().map(|p| p.size).sum::<u64>()).map_err(Error::internal)?;
            let mut buf = self.parts.take().await?;
            buf.shift_right(len)?;
            self.read_front(&staged, &mut buf, len).await?;
            let number = parts.len() as u32 + 1;
            parts.push(
                self.clone()
                    .send_part(key.clone(), id.clone(), number, buf.freeze())
                    .await?,
            );
        }
        let meta = self.complete_multipart(key, &id, &parts).await?;
        self.drop_staging(key, staged).await?;
        Ok(meta)
    }

    async fn append_abort(&self, key: &StorageKey, handle: &str) -> Result<()> {
        self.forget(key);
        if let Some(id) = self.upload_id(key, handle).await? {
            self.abort_multipart(key, &id).await?;
        }
        let staged = self.staged(key).await?.into_iter().map(|(_, _, k)| k).collect();
        self.drop_staging(key, staged).await
    }

    fn presign_put(&self, req: &PresignPut) -> Result<PresignedRequest> {
        let mut action = self.bucket.put_object(Some(&self.credentials), req.key.as_str());
        let mut shown = Vec::new();
        if let Some(n) = req.content_length {
            shown.push(("Content-Length".to_owned(), n.to_string()));
        }
        if let Some(t) = &req.content_type {
            shown.push(("Content-Type".to_owned(), t.clone()));
        }
        if req.create_only
            && let Some((h, v)) = self.create_only.header()
        {
            shown.push((h.to_owned(), v.to_owned()));
        }
        for (h, v) in &shown {
            action.headers_mut().insert(h.to_ascii_lowercase(), v.clone());
        }
        let url = action.sign(Duration::from_secs(req.expires_in_secs)).to_string();
        Ok(PresignedRequest {
            method: "PUT",
            url,
            headers: shown,
            expires_at: req.expires_at,
        })
    }

    fn presign_get(&self, req: &PresignGet) -> Result<PresignedRequest> {
        let mut action = self.bucket.get_object(Some(&self.credentials), req.key.as_str());
        if let Some(t) = &req.response_content_type {
            action.query_mut().insert("response-content-type", t.clone());
        }
        if let Some(d) = &req.response_content_disposition {
            action.query_mut().insert("response-content-disposition", d.clone());
        }
        let url = action.sign(Duration::from_secs(req.expires_in_secs)).to_string();
        Ok(PresignedRequest {
            method: "GET",
            url,
            headers: Vec::new(),
            expires_at: req.expires_at,
        })
    }
}
