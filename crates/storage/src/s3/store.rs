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
use futures_util::StreamExt;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::parts::{Filled, PartPool};

use super::common::AppendState;
use super::common::LAZY_HANDLE;
use super::common::PART;
use super::common::one_chunk;
use super::common::part_size;
use super::config::CONNECT_TIMEOUT;
use super::config::CreateOnly;
use super::config::READ_TIMEOUT;
use super::config::S3Config;

/// Bytes in an S3-compatible bucket.
#[derive(Clone)]
pub struct S3Store {
    /// For calls that answer within `timeout`, body included.
    pub(super) http: reqwest::Client,
    /// For reads that stream (see `open`).
    pub(super) reader: reqwest::Client,
    /// How long a call may take (`timeout_secs`); for a read, until its first byte.
    pub(super) timeout: Duration,
    pub(super) bucket: Bucket,
    pub(super) credentials: Credentials,
    pub(super) create_only: CreateOnly,
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
        let endpoint = url::Url::parse(&cfg.endpoint).map_err(|e| Error::invalid(format!("s3 endpoint: {e}")))?;
        let style = if cfg.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, cfg.bucket.clone(), cfg.region.clone())
            .map_err(|e| Error::invalid(format!("s3 bucket: {e}")))?;
        // Calls answer within `timeout` (the whole call, body included), with no pause longer
        // than READ_TIMEOUT. Reads (`get`) stream for as long as their reader takes, so they
        // have neither: their first byte must come within `timeout` (see `get_object`), and a
        // pause limit would cut a download whose client reads slowly. A multipart complete
        // goes through that client too, with a time of its own (see `complete`).
        let client = |calls: bool| {
            let b = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
            let b = if calls {
                b.read_timeout(READ_TIMEOUT).timeout(timeout)
            } else {
                b
            };
            b.build().map_err(Error::internal)
        };
        Ok(S3Store {
            http: client(true)?,
            reader: client(false)?,
            timeout,
            bucket,
            credentials: Credentials::new(cfg.access_key_id.clone(), secret),
            create_only: cfg.create_only,
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
            if opts.create_only && !self.atomic_create() && self.head(key).await.is_ok() {
                return Err(Error::PreconditionFailed("an object already exists at this key".into()));
            }
            self.put_bytes(key, first.freeze(), opts.create_only).await?;
        } else {
            self.put_multipart(key, first, carry, body, opts.create_only).await?;
        }
        self.head(key).await
    }

    async fn get(&self, key: &StorageKey, range: Option<ByteRange>) -> Result<GetResult> {
        let meta = self.head(key).await?;
        let (range, asked) = match range {
            Some(r) => {
                let r = r.resolve(meta.size)?;
                (r.clone(), Some((r.start, r.end)))
            }
            None => (0..meta.size, None),
        };
        let body = if range.is_empty() {
            one_chunk(Bytes::new())
        } else {
            self.get_object(key, asked).await?
        };
        Ok(GetResult { meta, range, body })
    }

    async fn head(&self, key: &StorageKey) -> Result<ObjectMeta> {
        self.head_object(key).await
    }

    async fn copy(&self, from: &StorageKey, to: &StorageKey) -> Result<ObjectMeta> {
        self.copy_object(from, to).await?;
        self.head(to).await
    }

    async fn delete(&self, key: &StorageKey) -> Result<()> {
        self.delete_object(key).await
    }

    async fn delete_many(&self, keys: &[StorageKey]) -> Result<Vec<(StorageKey, Error)>> {
        self.delete_objects(keys).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(StorageKey, ObjectMeta)>> {
        self.list_objects(prefix).await
    }

    async fn create_multipart(&self, key: &StorageKey) -> Result<String> {
        self.create_multipart_upload(key).await
    }

    async fn put_part(&self, key: &StorageKey, handle: &str, number: u32, body: ByteStream, len: u64) -> Result<Part> {
        self.upload_part(key, handle, number, body, len).await
    }

    async fn list_parts(&self, key: &StorageKey, handle: &str) -> Result<Vec<Part>> {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let (page, truncated) = self.list_parts_page(key, handle, marker).await?;
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
        self.abort_upload(key, handle).await
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
