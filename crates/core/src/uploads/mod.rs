//! Large files: S3-style multipart uploads (presigned parts straight to storage) and tus 1.0
//! resumable uploads (appended through filedock). Both are rows in the catalog — resumable on
//! any instance after any restart — and both end in an ordinary [`FileRecord`], checked like any
//! other (size, type, SHA-256).
//!
//! Whatever must happen once (completing a multipart upload, one tus PATCH at a time, aborting an
//! abandoned upload) happens under the upload's lease lock in the catalog, never in memory. A
//! lease is renewed while bytes flow; a writer that stalls loses it, and stops writing before
//! another can take it over.
//!
//! - `lease`: the lock a writer holds on an upload;
//! - `multipart`: S3-style uploads of presigned parts;
//! - `tus`: tus 1.0 uploads, appended through filedock;
//! - `stream`: the body helpers an append uses (limit, checksums).
//!
//! What an instance remembers of the uploads it has seen lives in [`crate::memo`].

mod lease;
mod multipart;
mod stream;
mod tus;

use std::sync::Arc;
use std::time::Duration;

use crate::context::Context;
use crate::context::secs_to_ms;
use crate::error::{Error, Result};
use crate::files::NewFile;
use crate::model::{Concat, FileRecord, FileStatus, StorageKey, UploadId, UploadKind, UploadRecord, UploadStatus};

/// S3's smallest part (but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// S3's most parts.
pub const MAX_PARTS: u64 = 10_000;

/// The part size chosen when the client names none (grown so the parts fit in [`MAX_PARTS`]).
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;

/// Most part URLs one presign call returns.
pub const MAX_PRESIGN_PARTS: usize = 1_000;

/// How long a writer's lock on an upload lasts without being renewed.
pub const LOCK_LEASE: Duration = Duration::from_secs(10);

/// The checksum algorithms of tus' checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    /// The algorithms, as `Tus-Checksum-Algorithm` lists them.
    pub const NAMES: &'static str = "sha1,sha256";

    /// Parses a tus algorithm name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "sha1" => Ok(ChecksumAlgorithm::Sha1),
            "sha256" => Ok(ChecksumAlgorithm::Sha256),
            other => Err(Error::invalid(format!(
                "unsupported checksum algorithm '{other}' (use sha1 or sha256)"
            ))),
        }
    }
}

/// A checksum a PATCH body must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    pub digest: Vec<u8>,
}

/// A tus upload to create.
#[derive(Debug, Clone)]
pub struct TusCreate {
    /// The file it ends in (name, type, class, policy, key layout); `size_hint` is the length.
    pub file: NewFile,
    /// `Upload-Defer-Length: 1`: the length comes with a later PATCH.
    pub defer_length: bool,
    /// `Upload-Metadata` as sent.
    pub metadata: Option<String>,
    /// `Upload-Concat: partial`.
    pub partial: bool,
}

/// Part sizes for a file: the client's choice checked against S3's rules, or the default.
pub fn plan_parts(size: u64, part_size: Option<u64>) -> Result<(u64, u64)> {
    if size == 0 {
        return Err(Error::invalid(
            "file_size must be at least 1 byte; send an empty file as a single upload",
        ));
    }
    let part_size = match part_size {
        Some(p) => {
            if p > MAX_PART_SIZE {
                return Err(Error::invalid(format!(
                    "part_size may be at most {MAX_PART_SIZE} bytes"
                )));
            }
            if p < MIN_PART_SIZE && p < size {
                return Err(Error::invalid(format!(
                    "part_size must be at least {MIN_PART_SIZE} bytes (5 MiB) unless one part holds the whole file"
                )));
            }
            p
        }
        None => DEFAULT_PART_SIZE.max(size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20),
    };
    let count = size.div_ceil(part_size);
    if count > MAX_PARTS {
        return Err(Error::invalid(format!(
            "{count} parts of {part_size} bytes is more than {MAX_PARTS}; choose a larger part_size"
        )));
    }
    Ok((part_size, count))
}

/// Large files (multipart, tus), and what this instance remembers of the uploads it has seen.
#[derive(Debug)]
pub struct Uploads {
    pub(crate) ctx: Arc<Context>,
    pub(crate) files: Arc<crate::files::Files>,
    pub(crate) upload_facts: crate::memo::FactsMemory,
    pub(crate) running_digests: crate::memo::RunningDigests,
}

impl Uploads {
    pub(crate) fn new(ctx: Arc<Context>, files: Arc<crate::files::Files>) -> Self {
        Uploads {
            ctx,
            files,
            upload_facts: Default::default(),
            running_digests: Default::default(),
        }
    }
}

impl Uploads {
    fn unfinished_expiry(&self) -> i64 {
        self.ctx
            .clock
            .now()
            .saturating_add(secs_to_ms(self.ctx.config.unfinished_upload_ttl_secs))
    }

    /// An upload the principal may see, of the given kind. Another project's upload (or a
    /// malformed id) is `NotFound`; so is an aborted or expired one.
    pub async fn upload_for(&self, who: &crate::auth::Principal, id: &str, kind: UploadKind) -> Result<UploadRecord> {
        let id = UploadId::parse(id)?;
        let u = self
            .ctx
            .catalog
            .upload(&id)
            .await?
            .filter(|u| u.kind == kind && u.project == who.project)
            .filter(|u| who.workspace.is_none() || u.workspace == who.workspace)
            .ok_or_else(|| Error::not_found("no such upload"))?;
        match u.status {
            UploadStatus::Aborted => Err(Error::not_found("no such upload")),
            UploadStatus::Active if u.expires_at <= self.ctx.clock.now() => Err(Error::not_found("no such upload")),
            _ => Ok(u),
        }
    }

    /// Checks a new upload against its policy and quota, starts it in the store, and returns it
    /// with its pending file (none for a tus partial); [`Self::insert_upload`] records them.
    async fn new_upload(
        &self,
        who: &crate::auth::Principal,
        kind: UploadKind,
        new: &NewFile,
        policy: &str,
        part_size: u64,
        partial: bool,
    ) -> Result<(UploadRecord, Option<FileRecord>)> {
        let policy = self.ctx.policy(policy)?;
        policy.check_extension(new.name.extension().as_deref())?;
        if let Some(n) = new.size_hint {
            policy.check_size(n)?;
        }
        // A partial upload (tus concatenation) counts as a file of its length until it is
        // terminated or expires: its bytes are stored as any file's are.
        self.ctx.check_quota(&who.project, new.size_hint.unwrap_or(0)).await?;
        let backend = self.ctx.backend(new.backend.as_deref())?;
        let now = self.ctx.clock.now();
        let id = UploadId::generate();
        let file = if partial {
            None
        } else {
            let fid = crate::model::FileId::generate();
            let key = self.files.mint_key(who, &fid, new, now)?;
            Some(self.files.record(who, fid, key, new, backend, now))
        };
        let key = match &file {
            Some(f) => f.key.clone(),
            None => StorageKey::new(format!(".filedock/partial/{}/{id}", who.project))?,
        };
        let handle = match kind {
            UploadKind::Multipart => backend.store.create_multipart(&key).await?,
            UploadKind::Tus => backend.store.append_create(&key).await?,
        };
        let u = UploadRecord {
            id,
            kind,
            project: who.project.clone(),
            workspace: who.workspace.clone(),
            file_id: file.as_ref().map(|f| f.id.clone()),
            backend: backend.name.clone(),
            key,
            handle,
            length: new.size_hint,
            part_size,
            offset: 0,
            metadata: None,
            concat: partial.then_some(Concat::Partial),
            status: UploadStatus::Active,
            created_at: now,
            expires_at: self.unfinished_expiry(),
        };
        Ok((u, file))
    }

    /// Records a new upload and its pending file; if either is refused, drops what was made
    /// for it (the store's handle, the file's row).
    async fn insert_upload(&self, u: &UploadRecord, file: Option<&FileRecord>) -> Result<()> {
        let r = match file {
            Some(f) => self.ctx.catalog.insert_file_and_upload(f, u).await,
            None => self.ctx.catalog.insert_upload(u).await,
        };
        if let Err(e) = r {
            self.drop_upload(u).await;
            return Err(e);
        }
        Ok(())
    }

    /// Aborts an upload's stored bytes, its pending file and its row (idempotent).
    async fn drop_upload(&self, u: &UploadRecord) {
        let Ok(backend) = self.ctx.backend(Some(&u.backend)) else {
            return;
        };
        let store = &backend.store;
        let r = match u.kind {
            UploadKind::Multipart => store.abort_multipart(&u.key, &u.handle).await,
            UploadKind::Tus => store.append_abort(&u.key, &u.handle).await,
        };
        if let Err(e) = r {
            tracing::error!(upload = %u.id, error = %e, "could not abort an upload's stored parts");
        }
        if u.concat == Some(Concat::Partial) {
            self.files.discard_blob(backend, &u.key).await;
        }
        if let Some(fid) = &u.file_id
            && let Ok(Some(f)) = self.ctx.catalog.file(fid).await
            && f.status == FileStatus::Pending
            && let Err(e) = self.ctx.catalog.remove_file(fid).await
        {
            tracing::error!(upload = %u.id, error = %e, "could not remove an aborted upload's file record");
        }
        if let Err(e) = self.ctx.catalog.finish_upload(&u.id, UploadStatus::Aborted).await {
            tracing::error!(upload = %u.id, error = %e, "could not mark an upload aborted");
        }
    }

    /// Aborts (multipart) or terminates (tus) an upload: its parts are deleted and its pending
    /// file forgotten. A completed upload cannot be aborted (delete its file instead).
    pub async fn abort_upload(&self, who: &crate::auth::Principal, id: &str, kind: UploadKind) -> Result<()> {
        let u = self.upload_for(who, id, kind).await?;
        if u.status == UploadStatus::Completed && u.concat != Some(Concat::Partial) {
            return Err(Error::Conflict(
                "the upload is complete; delete its file instead".into(),
            ));
        }
        if u.status == UploadStatus::Active {
            let lease = self.lock(&u.id, true).await?;
            self.drop_upload(&u).await;
            drop(lease);
        } else {
            self.drop_upload(&u).await;
        }
        Ok(())
    }

    /// Aborts uploads abandoned past their expiry (each under its lock, so instances never
    /// sweep one twice); returns how many.
    pub async fn sweep_uploads(&self) -> Result<usize> {
        let mut swept = 0;
        loop {
            let expired = self.ctx.catalog.expired_uploads(self.ctx.clock.now(), 100).await?;
            if expired.is_empty() {
                return Ok(swept);
            }
            let mut progressed = false;
            for u in expired {
                let Ok(lease) = self.lock(&u.id, false).await else {
                    continue;
                };
                self.drop_upload(&u).await;
                drop(lease);
                crate::jobs::swept("uploads", 1);
                swept += 1;
                progressed = true;
            }
            if !progressed {
                return Ok(swept);
            }
        }
    }

    /// The policy an upload's file was made under ("tus" for a partial).
    async fn upload_policy_name(&self, u: &UploadRecord) -> Result<String> {
        Ok(match &u.file_id {
            Some(fid) => self
                .ctx
                .catalog
                .file(fid)
                .await?
                .map(|f| f.policy)
                .unwrap_or_else(|| "tus".into()),
            None => "tus".into(),
        })
    }
}
