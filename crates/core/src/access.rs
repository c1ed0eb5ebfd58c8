//! How stored files are reached: downloads (whole or a range), links (presigned or stable),
//! `path` references, and the local store's own signed URLs (`direct_put`, `direct_get`), which
//! take the same checks as the bucket's presigned URLs.

use crate::auth::Principal;
use crate::blob::{ByteStream, GetResult, ObjectMeta, PresignGet, PresignedRequest, PutOptions};
use crate::clock::Timestamp;
use crate::context::{is_visible_to, secs_to_ms};
use crate::disposition;
use crate::error::{Error, Result};
use crate::files::Files;
use crate::link::Verified;
use crate::meter::{exact_length, meter};
use crate::model::{FileId, FileRecord, FileStatus, StorageKey};
use crate::range::ByteRange;

pub use crate::settings::{Backend, FileServiceConfig, ProjectSettings, Retention, RetentionOverride};

/// TTL of the presigned URL a stable link redirects to.
const STABLE_LINK_REDIRECT_SECS: u64 = 300;

impl Files {
    /// Opens a file's bytes (or a range of them).
    pub async fn download(
        &self,
        who: &Principal,
        id: &FileId,
        range: Option<ByteRange>,
    ) -> Result<(FileRecord, GetResult)> {
        let rec = self.ready_file(who, id).await?;
        let got = self.ctx.backend(Some(&rec.backend))?.store.get(&rec.key, range).await?;
        Ok((rec, got))
    }

    /// A signed download URL for a file, valid `ttl_secs` (default from config), never past the
    /// file's own expiry.
    pub async fn link(&self, who: &Principal, id: &FileId, ttl_secs: Option<u64>) -> Result<PresignedRequest> {
        let rec = self.ready_file(who, id).await?;
        self.link_for(&rec, ttl_secs)
    }

    /// A signed download URL for a record already checked.
    pub fn link_for(&self, rec: &FileRecord, ttl_secs: Option<u64>) -> Result<PresignedRequest> {
        let ttl = ttl_secs.unwrap_or(self.ctx.config.link_ttl_secs);
        if ttl == 0 || ttl > self.ctx.config.max_link_ttl_secs {
            return Err(Error::invalid(format!(
                "ttl must be between 1 and {} seconds",
                self.ctx.config.max_link_ttl_secs
            )));
        }
        let backend = self.ctx.backend(Some(&rec.backend))?;
        let ttl = ttl.min(backend.max_presign_ttl_secs);
        let expires_at = self.ctx.clock.now().saturating_add(secs_to_ms(ttl));
        self.presign_download(backend, rec, expires_at)
    }

    /// A URL that downloads a file without a key: a presigned URL straight to storage when
    /// `ttl_secs` fits the backend's presign limit, otherwise (or with no TTL: until the file is
    /// deleted or expires) a stable filedock link. Never valid past the file's own expiry.
    /// Returns the URL and when it stops working (`None`: when the file is deleted).
    pub fn download_url(&self, rec: &FileRecord, ttl_secs: Option<u64>) -> Result<(String, Option<Timestamp>)> {
        let backend = self.ctx.backend(Some(&rec.backend))?;
        let now = self.ctx.clock.now();
        let wanted = ttl_secs.map(|t| now.saturating_add(secs_to_ms(t)));
        let until = match (wanted, rec.expires_at) {
            (Some(w), Some(e)) => Some(w.min(e)),
            (w, e) => w.or(e),
        };
        match until {
            Some(u) if u - now <= secs_to_ms(backend.max_presign_ttl_secs) => {
                let signed = self.presign_download(backend, rec, u)?;
                Ok((signed.url, Some(u)))
            }
            _ => Ok((self.stable_link(rec, until)?, until)),
        }
    }

    /// A presigned GET of a file's object that serves it under its name and type, valid until
    /// `expires_at` but never past the file's own expiry.
    fn presign_download(&self, backend: &Backend, rec: &FileRecord, expires_at: Timestamp) -> Result<PresignedRequest> {
        let expires_at = rec.expires_at.map_or(expires_at, |e| expires_at.min(e));
        let expires_in_secs = u64::try_from((expires_at - self.ctx.clock.now()).div_euclid(1000))
            .unwrap_or(0)
            .max(1);
        backend.store.presign_get(&PresignGet {
            key: rec.key.clone(),
            expires_at,
            expires_in_secs,
            response_content_type: Some(rec.content_type().to_owned()),
            response_content_disposition: Some(disposition::attachment(rec.name.as_str())),
        })
    }

    /// `{public_url}/l/{token}`: answered with a fresh presigned download while the file exists.
    pub fn stable_link(&self, rec: &FileRecord, until: Option<Timestamp>) -> Result<String> {
        let token = self
            .ctx
            .signer
            .link_token(rec.id.as_str(), until.map(|u| u.div_euclid(1000).max(1)).unwrap_or(0))?;
        Ok(format!("{}/l/{token}", self.ctx.config.public_url))
    }

    /// The ready file a stable link names (completing a direct upload whose bytes have
    /// arrived). A deleted or expired file is `Gone`.
    pub async fn link_file(&self, token: &str) -> Result<FileRecord> {
        let now = self.ctx.clock.now();
        let id = self.ctx.signer.verify_link_token(token, now / 1000)?;
        let id = FileId::parse(&id)?;
        let rec = self
            .ctx
            .catalog
            .file(&id)
            .await?
            .ok_or_else(|| Error::not_found("no such file"))?;
        if rec.status == FileStatus::Deleted || rec.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::Gone("the file has been deleted or has expired".into()));
        }
        self.complete(rec).await
    }

    /// Resolves a stable link to a short-lived presigned download (for links that redirect).
    pub async fn open_link(&self, token: &str) -> Result<PresignedRequest> {
        let rec = self.link_file(token).await?;
        let backend = self.ctx.backend(Some(&rec.backend))?;
        let now = self.ctx.clock.now();
        let expires_at = now + secs_to_ms(STABLE_LINK_REDIRECT_SECS.min(backend.max_presign_ttl_secs));
        self.presign_download(backend, &rec, expires_at)
    }

    /// Reads the file a stable link names (for links that serve the bytes), or a range of it.
    pub async fn read_link(&self, token: &str, range: Option<ByteRange>) -> Result<(FileRecord, GetResult)> {
        let rec = self.link_file(token).await?;
        let got = self.ctx.backend(Some(&rec.backend))?.store.get(&rec.key, range).await?;
        Ok((rec, got))
    }

    /// A file's `path` reference: `{scheme}://{host}/{key}` (TokenOps' `path`).
    pub fn reference(&self, rec: &FileRecord) -> Result<String> {
        let b = self.ctx.backend(Some(&rec.backend))?;
        Ok(format!("{}://{}/{}", b.scheme, b.host, rec.key))
    }

    /// The file a reference names, if the principal may see it (completing it if its bytes
    /// have arrived). A reference is a `path` (`{scheme}://{host}/{key}`, TokenOps) or a bare
    /// storage key on the default backend (Cyberun's `file_key`).
    pub async fn file_by_reference(&self, who: &Principal, reference: &str) -> Result<FileRecord> {
        let missing = || Error::not_found("no file at that path");
        let (backend, key) = match reference.split_once("://") {
            Some((scheme, rest)) => {
                let (host, key) = rest.split_once('/').ok_or_else(missing)?;
                let b = self
                    .ctx
                    .backends
                    .values()
                    .find(|b| b.scheme.eq_ignore_ascii_case(scheme) && b.host == host)
                    .ok_or_else(missing)?;
                (b, key)
            }
            None => (self.ctx.backend(None)?, reference),
        };
        let key = StorageKey::new(key).map_err(|_| missing())?;
        let rec = self
            .ctx
            .catalog
            .file_by_key(&backend.name, &key)
            .await?
            .filter(|r| is_visible_to(r, who))
            .ok_or_else(missing)?;
        if rec.expires_at.is_some_and(|e| e <= self.ctx.clock.now()) {
            return Err(missing());
        }
        self.complete(rec).await
    }

    fn self_served(&self, backend: &str, key: &str) -> Result<(&Backend, StorageKey)> {
        let b = self
            .ctx
            .backends
            .get(backend)
            .filter(|b| b.store.self_served())
            .ok_or_else(|| Error::not_found("no such bucket"))?;
        let key = StorageKey::new(key).map_err(|_| Error::not_found("no such key"))?;
        Ok((b, key))
    }

    fn verify(
        &self,
        method: &str,
        backend: &str,
        key: &str,
        query: &str,
        header: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Verified> {
        self.ctx
            .signer
            .verify(method, backend, key, query, header, self.ctx.clock.now() / 1000)
    }

    /// Serves a presigned PUT to a self-served store, with S3's rules — a valid signature with
    /// every signed header, a `Content-Length` (411 without), the signed size limit (413),
    /// create-only (412 over an existing object) — and one S3 cannot have: the key must hold a
    /// pending upload (412 once it is complete, 403 once it is deleted).
    pub async fn direct_put(
        &self,
        backend: &str,
        key: &str,
        query: &str,
        header: &(dyn Fn(&str) -> Option<String> + Sync),
        body: ByteStream,
    ) -> Result<ObjectMeta> {
        let (b, key_) = self.self_served(backend, key)?;
        let v = self.verify("PUT", backend, key, query, header)?;
        let len = header("content-length")
            .ok_or_else(|| Error::LengthRequired("a Content-Length is required".into()))?
            .trim()
            .parse::<u64>()
            .map_err(|_| Error::invalid("malformed Content-Length"))?;
        if let Some(max) = v.max_size
            && len > max
        {
            return Err(Error::TooLarge(format!(
                "the body is {len} bytes; this URL takes at most {max}"
            )));
        }
        if let Some((upload, number)) = &v.part {
            return self.ctx.direct_put_part(b, &key_, upload, *number, len, body).await;
        }
        // filedock knows what it expects at this key, which S3 cannot: only a pending upload
        // takes bytes. A completed file is never replaced, and a URL is dead after a delete.
        let rec = match self.ctx.catalog.file_by_key(&b.name, &key_).await? {
            Some(rec) if rec.status == FileStatus::Pending => rec,
            Some(_) => return Err(Error::PreconditionFailed("the file at this key is complete".into())),
            None => return Err(Error::Forbidden("no upload is expected at this key".into())),
        };
        let _slot = self.ctx.upload_slot(&rec.project)?;
        if v.create_only && b.store.head(&key_).await.is_ok() {
            return Err(Error::PreconditionFailed("an object already exists at this key".into()));
        }
        // The bytes pass the file's checks on their way in, so a refusal is this PUT's answer
        // and what it answers 2xx for is final: the file is ready when the PUT returns.
        let policy = self.ctx.policy(&rec.policy)?.clone();
        let (body, metered) = meter(exact_length(body, len), policy, rec.extension.clone(), Some(len));
        let meta = b
            .store
            .put(
                &key_,
                body,
                PutOptions {
                    create_only: v.create_only,
                },
            )
            .await?;
        let m = metered
            .outcome()
            .ok_or_else(|| Error::internal_msg("metered PUT ended without an outcome"))?;
        self.settle(&rec, m.size, Some(m.sha256), m.detected_type).await?;
        Ok(meta)
    }

    /// Serves a presigned GET from a self-served store; returns the response overrides that were
    /// signed, and the object.
    pub async fn direct_get(
        &self,
        backend: &str,
        key: &str,
        query: &str,
        range: Option<ByteRange>,
    ) -> Result<(Verified, GetResult)> {
        let (b, key_) = self.self_served(backend, key)?;
        let v = self.verify("GET", backend, key, query, &|_| None)?;
        let got = b.store.get(&key_, range).await?;
        Ok((v, got))
    }
}
