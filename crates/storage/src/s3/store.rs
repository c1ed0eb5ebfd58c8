//! [`S3Store`]: the store's state, how it is opened, and the `BlobStore` contract on S3.

use std::collections::HashMap;

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

use crate::parts::{Filled, PartPool};

use super::common::AppendState;
use super::common::CALL_TTL;
use super::common::LAZY_HANDLE;
use super::common::PART;
use super::common::meta_of;
use super::common::one_chunk;
use super::common::os_err;
use super::common::parse_list_parts;
use super::common::part_size;
use super::common::path;
use super::common::unavailable;
use super::config::CONNECT_TIMEOUT;
use super::config::CreateOnly;
use super::config::READ_TIMEOUT;
use super::config::S3Config;

/// Bytes in an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Store {
    pub(super) store: Arc<dyn ObjectStore>,
    /// The same bucket for reads that stream (see `open`).
    pub(super) reader: Arc<dyn ObjectStore>,
    /// How long a call may take (`timeout_secs`); for a read, until its first byte.
    pub(super) timeout: Duration,
    pub(super) bucket: Bucket,
    pub(super) credentials: Credentials,
    pub(super) create_only: CreateOnly,
    pub(super) http: reqwest::Client,
    pub(super) parts: PartPool,
    /// What this instance last left in each resumable upload it appended to, by key (see
    /// [`AppendState`]).
    pub(super) appends: Arc<std::sync::Mutex<HashMap<String, AppendState>>>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket.name())
            .field("create_only", &self.create_only)
            .finish_non_exhaustive()
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
