//! An S3-compatible store (AWS S3, MinIO, Ceph RGW, Garage, COS, OBS, OSS, R2, GCS interop).
//! Bytes that pass through filedock move with `object_store` (one PUT for a small body, a
//! streaming multipart upload for a large one); every presigned URL is made with `rusty-s3` and
//! points straight at the bucket, with `Content-Length`, `Content-Type` (when given) and the
//! backend's create-only header signed.
//!
//! Create-only is a capability of the store, not an assumption: AWS, MinIO and s3s honour
//! `If-None-Match: *`, COS and OSS their own `x-*-forbid-overwrite`, Garage none. filedock's
//! unique keys and the catalog's unique constraint are the guarantee; the header is defence in
//! depth. A multipart upload has no create-only mode anywhere: it is checked with a HEAD before
//! completing (not atomic).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use filedock_core::{
    BlobStore, ByteRange, ByteStream, Error, GetResult, ObjectMeta, PresignGet, PresignPut, PresignedRequest,
    PutOptions, Result, StorageKey,
};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, WriteMultipart};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde::{Deserialize, Serialize};

/// Size of a multipart part (S3's minimum is 5 MiB), and of the largest body sent in one PUT.
const PART: usize = 8 * 1024 * 1024;
/// Parts in flight per upload: memory per upload is about (this + 1) × PART.
const PARTS_IN_FLIGHT: usize = 2;

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
}

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
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    bucket: Bucket,
    credentials: Credentials,
    create_only: CreateOnly,
}

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
        other => Error::internal(other),
    }
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
        let store = AmazonS3Builder::new()
            .with_endpoint(&cfg.endpoint)
            .with_allow_http(cfg.endpoint.starts_with("http://"))
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(&secret)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .build()
            .map_err(|e| Error::invalid(format!("s3 backend: {e}")))?;
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
            bucket,
            credentials: Credentials::new(cfg.access_key_id.clone(), secret),
            create_only: cfg.create_only,
        })
    }

    async fn put_multipart(
        &self,
        key: &StorageKey,
        first: bytes::Bytes,
        mut body: ByteStream,
        create_only: bool,
    ) -> Result<()> {
        if create_only && self.head(key).await.is_ok() {
            return Err(Error::PreconditionFailed("an object already exists at this key".into()));
        }
        let upload = self.store.put_multipart(&path(key)?).await.map_err(os_err)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        w.put(first);
        let streamed: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                w.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(os_err)?;
                w.put(chunk);
            }
            if create_only && self.head(key).await.is_ok() {
                return Err(Error::PreconditionFailed("an object already exists at this key".into()));
            }
            Ok(())
        }
        .await;
        match streamed {
            Ok(()) => w.finish().await.map(|_| ()).map_err(os_err),
            Err(e) => {
                if let Err(abort) = w.abort().await {
                    tracing::warn!(%key, error = %abort, "could not abort a failed multipart upload");
                }
                Err(e)
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn put(&self, key: &StorageKey, mut body: ByteStream, opts: PutOptions) -> Result<ObjectMeta> {
        // Read up to one part: a body that ends within it goes up in one PUT, which can be
        // create-only atomically.
        let mut first = BytesMut::new();
        let mut ended = false;
        while first.len() < PART {
            match body.next().await {
                Some(chunk) => first.extend_from_slice(&chunk?),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
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
            self.put_multipart(key, first.freeze(), body, opts.create_only).await?;
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
        let got = self.store.get_opts(&p, opts).await.map_err(os_err)?;
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
