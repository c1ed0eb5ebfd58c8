//! Large files: S3-style multipart uploads (presigned parts straight to storage) and tus 1.0
//! resumable uploads (appended through filedock). Both are rows in the catalog — resumable on
//! any instance after any restart — and both end in an ordinary [`FileRecord`], checked like any
//! other (size, type, SHA-256).
//!
//! Whatever must happen once (completing a multipart upload, one tus PATCH at a time, aborting an
//! abandoned upload) happens under the upload's lease lock in the catalog, never in memory. A
//! lease is renewed while bytes flow; a writer that stalls loses it, and stops writing before
//! another can take it over.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::blob::{ByteStream, ObjectMeta, PresignPart, PresignedRequest};
use crate::error::{Error, Result};
use crate::files::{FileService, NewFile, secs_to_ms};
use crate::meter::exact_length;
use crate::model::{FileRecord, FileStatus, StorageKey, UploadId, UploadKind, UploadRecord, UploadStatus};
use crate::policy::UploadPolicy;

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
/// How long a request waits for another's lock on an upload before answering 423.
const LOCK_WAIT: Duration = Duration::from_secs(12);

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

fn part_len(u: &UploadRecord, number: u32) -> Result<u64> {
    let size = u.length.unwrap_or(0);
    let count = size.div_ceil(u.part_size.max(1));
    if number == 0 || u64::from(number) > count {
        return Err(Error::invalid(format!("part_number must be between 1 and {count}")));
    }
    let start = u64::from(number - 1) * u.part_size;
    Ok(u.part_size.min(size - start))
}

fn bare_etag(e: &str) -> &str {
    e.trim().trim_start_matches("W/").trim_matches('"')
}

/// The lease a writer holds on an upload, renewed as bytes flow.
struct Lease<'a> {
    files: &'a FileService,
    id: UploadId,
    token: String,
    valid_until: Instant,
    renew_at: Instant,
}

/// What never changes about an upload: whose it is, its kind, whether it is a tus final, and
/// its file's policy. An instance keeps them for the uploads it has made or read, so a PATCH
/// checks who may write and under which policy without two catalog reads; the upload's state
/// (status, offset, expiry) is still read with its lock, fresh each time.
#[derive(Debug, Clone)]
pub(crate) struct UploadFacts {
    kind: UploadKind,
    project: crate::model::ProjectId,
    workspace: Option<crate::model::WorkspaceId>,
    final_concat: bool,
    policy: String,
}

impl UploadFacts {
    fn visible_to(&self, who: &crate::auth::Principal, kind: UploadKind) -> bool {
        self.kind == kind && self.project == who.project && (who.workspace.is_none() || self.workspace == who.workspace)
    }
}

/// Facts of the uploads this instance has seen, at most [`FACTS_REMEMBERED`] (then it starts
/// again empty).
#[derive(Debug, Default)]
pub(crate) struct FactsMemory(std::sync::Mutex<HashMap<UploadId, UploadFacts>>);

const FACTS_REMEMBERED: usize = 10_000;

/// The SHA-256 of a tus upload's bytes so far, for uploads whose every PATCH since offset 0
/// came to this instance: their completion then need not read the file back (a client that
/// sends 8 MiB PATCHes would otherwise have its whole file read and hashed a second time). An
/// entry is used only by a PATCH at exactly its offset, under the upload's lock; anything else
/// (another instance went on, a restart, a PATCH cut short) falls back to reading the file.
/// At most [`DIGESTS_REMEMBERED`] (then it starts again empty).
#[derive(Debug, Default)]
pub(crate) struct RunningDigests(std::sync::Mutex<HashMap<UploadId, (u64, Sha256)>>);

const DIGESTS_REMEMBERED: usize = 4_096;

impl RunningDigests {
    /// The digest of bytes `0..offset`, if this instance saw all of them.
    fn at(&self, id: &UploadId, offset: u64) -> Option<Sha256> {
        let all = self.0.lock().ok()?;
        all.get(id).filter(|(end, _)| *end == offset).map(|(_, h)| h.clone())
    }

    fn put(&self, id: &UploadId, end: u64, digest: Sha256) {
        if let Ok(mut all) = self.0.lock() {
            if all.len() >= DIGESTS_REMEMBERED {
                all.clear();
            }
            all.insert(id.clone(), (end, digest));
        }
    }

    fn forget(&self, id: &UploadId) {
        if let Ok(mut all) = self.0.lock() {
            all.remove(id);
        }
    }
}

impl FactsMemory {
    fn get(&self, id: &UploadId) -> Option<UploadFacts> {
        self.0.lock().ok()?.get(id).cloned()
    }

    fn put(&self, u: &UploadRecord, policy: &str) -> UploadFacts {
        let facts = UploadFacts {
            kind: u.kind,
            project: u.project.clone(),
            workspace: u.workspace.clone(),
            final_concat: u.concat.as_deref().is_some_and(|c| c.starts_with("final")),
            policy: policy.to_owned(),
        };
        if let Ok(mut all) = self.0.lock() {
            if all.len() >= FACTS_REMEMBERED {
                all.clear();
            }
            all.insert(u.id.clone(), facts.clone());
        }
        facts
    }
}

impl Lease<'_> {
    /// Renews when due; false when the lease was lost (another writer may now hold it).
    async fn keep(&mut self) -> Result<bool> {
        let now = Instant::now();
        if now >= self.valid_until {
            return Ok(false);
        }
        if now >= self.renew_at {
            let t = self.files.clock.now();
            let until = t + LOCK_LEASE.as_millis() as i64;
            if !self.files.catalog.lock_upload(&self.id, &self.token, t, until).await? {
                return Ok(false);
            }
            self.valid_until = now + LOCK_LEASE - LOCK_LEASE / 5;
            self.renew_at = now + LOCK_LEASE / 3;
        }
        Ok(true)
    }
}

impl FileService {
    fn unfinished_expiry(&self) -> i64 {
        self.clock
            .now()
            .saturating_add(secs_to_ms(self.config.unfinished_upload_ttl_secs))
    }

    /// Takes an upload's lock, waiting up to [`LOCK_WAIT`] for another holder's lease to end.
    async fn lock(&self, id: &UploadId, wait: bool) -> Result<Lease<'_>> {
        self.lock_and_read(id, wait).await.map(|(lease, _)| lease)
    }

    /// [`FileService::lock`], with the upload as it stands under the lock (another instance
    /// may have moved it on before).
    async fn lock_and_read(&self, id: &UploadId, wait: bool) -> Result<(Lease<'_>, UploadRecord)> {
        let token = uuid::Uuid::now_v7().simple().to_string();
        let started = Instant::now();
        loop {
            let now = self.clock.now();
            let until = now + LOCK_LEASE.as_millis() as i64;
            if let Some(u) = self.catalog.lock_and_read_upload(id, &token, now, until).await? {
                let at = Instant::now();
                let lease = Lease {
                    files: self,
                    id: id.clone(),
                    token,
                    valid_until: at + LOCK_LEASE - LOCK_LEASE / 5,
                    renew_at: at + LOCK_LEASE / 3,
                };
                return Ok((lease, u));
            }
            let current = self.catalog.upload(id).await?;
            if current.is_none_or(|u| u.status != UploadStatus::Active) {
                return Err(Error::not_found("no such upload"));
            }
            if !wait || started.elapsed() >= LOCK_WAIT {
                return Err(Error::Locked(
                    "another request is writing to this upload; retry shortly".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn unlock(&self, lease: Lease<'_>) {
        if let Err(e) = self.catalog.unlock_upload(&lease.id, &lease.token).await {
            tracing::warn!(upload = %lease.id, error = %e, "could not free an upload lock (it lapses by itself)");
        }
    }

    /// An upload the principal may see, of the given kind. Another project's upload (or a
    /// malformed id) is `NotFound`; so is an aborted or expired one.
    pub async fn upload_for(&self, who: &crate::auth::Principal, id: &str, kind: UploadKind) -> Result<UploadRecord> {
        let id = UploadId::parse(id)?;
        let u = self
            .catalog
            .upload(&id)
            .await?
            .filter(|u| u.kind == kind && u.project == who.project)
            .filter(|u| who.workspace.is_none() || u.workspace == who.workspace)
            .ok_or_else(|| Error::not_found("no such upload"))?;
        match u.status {
            UploadStatus::Aborted => Err(Error::not_found("no such upload")),
            UploadStatus::Active if u.expires_at <= self.clock.now() => Err(Error::not_found("no such upload")),
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
        let policy = self.policy(policy)?;
        policy.check_extension(new.name.extension().as_deref())?;
        if let Some(n) = new.size_hint {
            policy.check_size(n)?;
        }
        // A partial upload (tus concatenation) counts as a file of its length until it is
        // terminated or expires: its bytes are stored as any file's are.
        self.check_quota(&who.project, new.size_hint.unwrap_or(0)).await?;
        let backend = self.backend(new.backend.as_deref())?;
        let now = self.clock.now();
        let id = UploadId::generate();
        let file = if partial {
            None
        } else {
            let fid = crate::model::FileId::generate();
            let key = self.mint_key(who, &fid, new, now)?;
            Some(self.record(who, fid, key, new, backend, now))
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
            concat: partial.then(|| "partial".to_owned()),
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
            Some(f) => self.catalog.insert_file_and_upload(f, u).await,
            None => self.catalog.insert_upload(u).await,
        };
        if let Err(e) = r {
            self.drop_upload(u).await;
            return Err(e);
        }
        Ok(())
    }

    /// Aborts an upload's stored bytes, its pending file and its row (idempotent).
    async fn drop_upload(&self, u: &UploadRecord) {
        let Ok(backend) = self.backend(Some(&u.backend)) else {
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
        if u.concat.as_deref() == Some("partial") {
            self.discard_blob(backend, &u.key).await;
        }
        if let Some(fid) = &u.file_id
            && let Ok(Some(f)) = self.catalog.file(fid).await
            && f.status == FileStatus::Pending
            && let Err(e) = self.catalog.remove_file(fid).await
        {
            tracing::error!(upload = %u.id, error = %e, "could not remove an aborted upload's file record");
        }
        if let Err(e) = self.catalog.finish_upload(&u.id, UploadStatus::Aborted).await {
            tracing::error!(upload = %u.id, error = %e, "could not mark an upload aborted");
        }
    }

    // ---- multipart ----

    /// Starts a multipart upload of a file of `new.size_hint` bytes: a pending file and an
    /// upload whose parts the client PUTs to presigned URLs. Returns the upload and its file.
    pub async fn initiate_multipart(
        &self,
        who: &crate::auth::Principal,
        new: NewFile,
        part_size: Option<u64>,
    ) -> Result<(UploadRecord, FileRecord)> {
        let size = new
            .size_hint
            .ok_or_else(|| Error::invalid("file_size is required for a multipart upload"))?;
        let (part_size, _) = plan_parts(size, part_size)?;
        let policy = new.policy.clone();
        let (u, file) = self
            .new_upload(who, UploadKind::Multipart, &new, &policy, part_size, false)
            .await?;
        self.insert_upload(&u, file.as_ref()).await?;
        let file = file.ok_or_else(|| Error::internal_msg("a multipart upload without its file"))?;
        Ok((u, file))
    }

    /// How many parts an upload has.
    pub fn part_count(u: &UploadRecord) -> u64 {
        u.length.unwrap_or(0).div_ceil(u.part_size.max(1))
    }

    /// Presigned PUTs for some parts of a multipart upload, each with its exact length signed.
    pub async fn presign_parts(
        &self,
        who: &crate::auth::Principal,
        id: &str,
        numbers: &[u32],
    ) -> Result<Vec<(u32, PresignedRequest)>> {
        if numbers.is_empty() || numbers.len() > MAX_PRESIGN_PARTS {
            return Err(Error::invalid(format!(
                "part_numbers must list 1 to {MAX_PRESIGN_PARTS} parts"
            )));
        }
        let u = self.upload_for(who, id, UploadKind::Multipart).await?;
        if u.status != UploadStatus::Active {
            return Err(Error::Conflict("the upload is already complete".into()));
        }
        let backend = self.backend(Some(&u.backend))?;
        let now = self.clock.now();
        let ttl = self.config.upload_ttl_secs.min(backend.max_presign_ttl_secs);
        let expires_at = (now + secs_to_ms(ttl)).min(u.expires_at);
        let expires_in_secs = u64::try_from((expires_at - now) / 1000).unwrap_or(0).max(1);
        numbers
            .iter()
            .map(|&n| {
                let req = PresignPart {
                    key: u.key.clone(),
                    handle: u.handle.clone(),
                    upload_id: u.id.to_string(),
                    number: n,
                    content_length: part_len(&u, n)?,
                    expires_at,
                    expires_in_secs,
                };
                Ok((n, backend.store.presign_part(&req)?))
            })
            .collect()
    }

    /// Completes a multipart upload from the parts the client lists (`(part_number, etag)`, in
    /// ascending order): every listed part must be stored with that ETag, every part but the
    /// last at least 5 MiB, and the total the declared size. The joined file is then checked
    /// like any other. Completing a completed upload returns its file.
    pub async fn complete_multipart(
        &self,
        who: &crate::auth::Principal,
        id: &str,
        parts: &[(u32, String)],
    ) -> Result<FileRecord> {
        let u = self.upload_for(who, id, UploadKind::Multipart).await?;
        let fid = u
            .file_id
            .clone()
            .ok_or_else(|| Error::internal_msg("a multipart upload without its file"))?;
        if u.status == UploadStatus::Completed {
            return self.visible_file(who, &fid).await;
        }
        if parts.is_empty() {
            return Err(Error::invalid("parts must list at least one part"));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(Error::invalid(
                "parts must be listed in ascending order of part_number, each once",
            ));
        }
        for (n, _) in parts {
            part_len(&u, *n)?;
        }
        let lease = self.lock(&u.id, false).await?;
        let r = self.complete_locked(&u, parts).await;
        match &r {
            // The client can fix its list and try again.
            Err(Error::Invalid(_)) => self.unlock(lease).await,
            Err(e) if e.is_server_error() => self.unlock(lease).await,
            Err(_) => self.drop_upload(&u).await,
            Ok(_) => {
                self.catalog.finish_upload(&u.id, UploadStatus::Completed).await?;
            }
        }
        r
    }

    async fn complete_locked(&self, u: &UploadRecord, parts: &[(u32, String)]) -> Result<FileRecord> {
        let backend = self.backend(Some(&u.backend))?;
        let stored = backend.store.list_parts(&u.key, &u.handle).await?;
        let mut chosen = Vec::with_capacity(parts.len());
        let mut total = 0u64;
        for (i, (n, etag)) in parts.iter().enumerate() {
            let p = stored
                .iter()
                .find(|p| p.number == *n)
                .ok_or_else(|| Error::invalid(format!("part {n} has not been uploaded")))?;
            // A store that does not list ETags checks them itself at complete.
            if !p.etag.is_empty() && bare_etag(&p.etag) != bare_etag(etag) {
                return Err(Error::invalid(format!(
                    "part {n}: the ETag {etag} is not the one the part's upload answered"
                )));
            }
            if i + 1 < parts.len() && p.size < MIN_PART_SIZE {
                return Err(Error::invalid(format!(
                    "part {n} is {} bytes; every part but the last must be at least {MIN_PART_SIZE} bytes",
                    p.size
                )));
            }
            total += p.size;
            chosen.push(p.clone());
        }
        let size = u.length.unwrap_or(0);
        if total != size {
            return Err(Error::invalid(format!(
                "the parts listed total {total} bytes, but file_size is {size}"
            )));
        }
        backend.store.complete_multipart(&u.key, &u.handle, &chosen).await?;
        let fid = u
            .file_id
            .as_ref()
            .ok_or_else(|| Error::internal_msg("a multipart upload without its file"))?;
        let rec = self
            .catalog
            .file(fid)
            .await?
            .ok_or_else(|| Error::internal_msg("a multipart upload's file record is missing"))?;
        self.complete(rec).await
    }

    /// Aborts (multipart) or terminates (tus) an upload: its parts are deleted and its pending
    /// file forgotten. A completed upload cannot be aborted (delete its file instead).
    pub async fn abort_upload(&self, who: &crate::auth::Principal, id: &str, kind: UploadKind) -> Result<()> {
        let u = self.upload_for(who, id, kind).await?;
        if u.status == UploadStatus::Completed && u.concat.as_deref() != Some("partial") {
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
            let expired = self.catalog.expired_uploads(self.clock.now(), 100).await?;
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
                swept += 1;
                progressed = true;
            }
            if !progressed {
                return Ok(swept);
            }
        }
    }

    /// Serves a presigned part PUT to a self-served store (see [`FileService::direct_put`]).
    pub(crate) async fn direct_put_part(
        &self,
        backend: &crate::files::Backend,
        key: &StorageKey,
        upload_id: &str,
        number: u32,
        len: u64,
        body: ByteStream,
    ) -> Result<ObjectMeta> {
        let expected = || Error::Forbidden("no upload is expected at this key".into());
        let id = UploadId::parse(upload_id).map_err(|_| expected())?;
        let u = self.catalog.upload(&id).await?.ok_or_else(expected)?;
        if u.kind != UploadKind::Multipart
            || u.backend != backend.name
            || &u.key != key
            || u.status != UploadStatus::Active
            || u.expires_at <= self.clock.now()
        {
            return Err(expected());
        }
        if part_len(&u, number)? != len {
            return Err(Error::Forbidden("the part's length is not the one signed".into()));
        }
        // A part streaming through this instance is an upload in progress like any other.
        let _slot = self.upload_slot(&u.project)?;
        let p = backend
            .store
            .put_part(key, &u.handle, number, exact_length(body, len), len)
            .await?;
        Ok(ObjectMeta {
            size: p.size,
            etag: p.etag,
            modified: self.clock.now(),
        })
    }

    // ---- tus ----

    /// Creates a tus upload (a pending file unless it is a partial upload for concatenation).
    pub async fn tus_create(&self, who: &crate::auth::Principal, req: TusCreate) -> Result<UploadRecord> {
        if req.file.size_hint.is_none() && !req.defer_length {
            return Err(Error::invalid("Upload-Length or Upload-Defer-Length: 1 is required"));
        }
        let policy = req.file.policy.clone();
        let (mut u, file) = self
            .new_upload(who, UploadKind::Tus, &req.file, &policy, 0, req.partial)
            .await?;
        u.metadata = req.metadata;
        self.insert_upload(&u, file.as_ref()).await?;
        self.upload_facts
            .put(&u, file.as_ref().map_or("tus", |f| f.policy.as_str()));
        Ok(u)
    }

    /// A tus upload's state (HEAD). An upload whose last byte was recorded but which was not
    /// finished (the server died between the two) is finished now: its client sees the offset at
    /// the end and has nothing left to send.
    pub async fn tus_upload(&self, who: &crate::auth::Principal, id: &str) -> Result<UploadRecord> {
        let u = self.upload_for(who, id, UploadKind::Tus).await?;
        let stranded = |u: &UploadRecord| {
            u.status == UploadStatus::Active && u.file_id.is_some() && u.concat.is_none() && u.length == Some(u.offset)
        };
        if !stranded(&u) {
            return Ok(u);
        }
        let lease = self.lock(&u.id, true).await?;
        let r = async {
            let u = self
                .catalog
                .upload(&u.id)
                .await?
                .ok_or_else(|| Error::not_found("no such upload"))?;
            if stranded(&u) {
                tracing::info!(upload = %u.id, "finishing a tus upload whose last byte arrived before a restart");
                self.finish_tus(&u, None).await?;
            }
            self.catalog
                .upload(&u.id)
                .await?
                .ok_or_else(|| Error::not_found("no such upload"))
        }
        .await;
        self.unlock(lease).await;
        r
    }

    /// Appends a PATCH body at `offset` (which must be the upload's offset), under the upload's
    /// lock. `length` sets a deferred length. With a checksum, a mismatch appends nothing (460).
    /// When the last byte arrives the file is assembled and checked. Returns the upload as it
    /// now stands, and the body's error if the client went away part way (what arrived before
    /// it is kept, as tus asks).
    pub async fn tus_append(
        &self,
        who: &crate::auth::Principal,
        id: &str,
        offset: u64,
        length: Option<u64>,
        checksum: Option<Checksum>,
        body: ByteStream,
    ) -> Result<UploadRecord> {
        let uid = UploadId::parse(id)?;
        let facts = match self.upload_facts.get(&uid) {
            Some(f) => f,
            None => {
                let u = self.upload_for(who, id, UploadKind::Tus).await?;
                let policy = self.upload_policy_name(&u).await?;
                self.upload_facts.put(&u, &policy)
            }
        };
        if !facts.visible_to(who, UploadKind::Tus) {
            return Err(Error::not_found("no such upload"));
        }
        if facts.final_concat {
            return Err(Error::Forbidden("a final upload takes no PATCH".into()));
        }
        let policy = self.policy(&facts.policy)?.clone();
        let _slot = self.upload_slot(&facts.project)?;
        let (mut lease, u) = self.lock_and_read(&uid, true).await?;
        let r = self
            .append_locked(&mut lease, u, &policy, offset, length, checksum, body)
            .await;
        match r {
            // Recorded with the unlock.
            Ok((u, true)) => Ok(u),
            r => {
                self.unlock(lease).await;
                r.map(|(u, _)| u)
            }
        }
    }

    /// Appends under the lock; returns the upload and whether the lock was freed with the offset.
    #[allow(clippy::too_many_arguments)]
    async fn append_locked(
        &self,
        lease: &mut Lease<'_>,
        u: UploadRecord,
        policy: &UploadPolicy,
        offset: u64,
        length: Option<u64>,
        checksum: Option<Checksum>,
        body: ByteStream,
    ) -> Result<(UploadRecord, bool)> {
        // As `upload_for` says, now under the lock: an aborted, finished or expired upload
        // takes nothing.
        if u.status != UploadStatus::Active || u.expires_at <= self.clock.now() {
            return Err(Error::not_found("no such upload"));
        }
        if offset != u.offset {
            return Err(Error::Conflict(format!(
                "Upload-Offset is {offset}, but the upload is at {}",
                u.offset
            )));
        }
        let length = match (u.length, length) {
            (Some(a), Some(b)) if a != b => return Err(Error::invalid("Upload-Length cannot change")),
            (Some(a), _) => Some(a),
            (None, Some(b)) => {
                if b < u.offset {
                    return Err(Error::invalid("Upload-Length is less than the bytes received"));
                }
                // A deferred length, now known, is checked against the quota before a byte
                // more is stored (the upload itself is counted already: its file, or as a
                // partial of the bytes it has).
                policy.check_size(b)?;
                let counted = if u.concat.as_deref() == Some("partial") {
                    u.offset
                } else {
                    0
                };
                self.check_quota_with(&u.project, 0, b.saturating_sub(counted)).await?;
                Some(b)
            }
            (None, None) => None,
        };
        if let Some(l) = length {
            policy.check_size(l)?;
        }
        let room = length.unwrap_or(policy.max_size).saturating_sub(u.offset);
        let backend = self.backend(Some(&u.backend))?;

        // The body, limited to the room left, digested when a checksum came with it, and cut
        // off the moment the lease is lost.
        let digest = std::sync::Arc::new(std::sync::Mutex::new(Digests::new(checksum.as_ref())));
        let seen = digest.clone();
        // The file's SHA-256 goes on as the body passes, from offset 0 or from what this
        // instance hashed of the PATCHes before: if the file ends here, completing need not
        // read it back. It counts what it hashed, to be used only if the store took exactly that.
        let running = if offset == 0 {
            Some(Sha256::new())
        } else {
            self.running_digests.at(&u.id, offset)
        };
        let whole = std::sync::Arc::new(std::sync::Mutex::new(running.map(|h| (0u64, h))));
        let whole_seen = whole.clone();
        let limited = limit(body, room, length.is_some());
        let watched = futures_util::stream::unfold((limited, false), |(mut s, done)| async move {
            if done {
                return None;
            }
            match s.next().await {
                Some(Ok(c)) => Some((Ok(c), (s, false))),
                Some(Err(e)) => Some((Err(e), (s, true))),
                None => None,
            }
        })
        .map(move |c| {
            if let (Ok(bytes), Ok(mut d)) = (&c, seen.lock()) {
                d.update(bytes);
            }
            if let (Ok(bytes), Ok(mut w)) = (&c, whole_seen.lock())
                && let Some((n, h)) = w.as_mut()
            {
                h.update(bytes);
                *n += bytes.len() as u64;
            }
            c
        });
        // Lease upkeep happens between chunks; the store sees only chunks written under it. A
        // body that ends within [`SMALL_APPEND`] (a typical PATCH) is gathered first and handed
        // to the store whole; a larger one streams to it, the gathered chunks first.
        let mut watched = Box::pin(watched);
        let mut gathered = Vec::new();
        let mut size = 0;
        let mut body_error = None;
        let mut store_saw = None;
        let mut ended = false;
        while size <= SMALL_APPEND {
            let Some(c) = watched.next().await else {
                ended = true;
                break;
            };
            if let Err(e) = lease
                .keep()
                .await
                .and_then(|kept| kept.then_some(()).ok_or_else(lock_lost))
            {
                body_error = Some(e);
                break;
            }
            match c {
                Ok(b) => {
                    size += b.len();
                    gathered.push(b);
                }
                Err(e) => {
                    // What arrived before the body failed is kept, as from a stream.
                    store_saw = Some(e);
                    ended = true;
                    break;
                }
            }
        }
        let store = backend.store.clone();
        let end = if body_error.is_some() {
            offset
        } else if ended {
            store.append_bytes(&u.key, &u.handle, offset, gathered).await?
        } else {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(2);
            let (key, handle) = (u.key.clone(), u.handle.clone());
            let writer = tokio::spawn(async move {
                let rx = tokio_stream_from(rx);
                store.append(&key, &handle, offset, rx).await
            });
            let mut rest = futures_util::stream::iter(gathered.into_iter().map(Ok)).chain(watched);
            while let Some(c) = rest.next().await {
                match lease.keep().await {
                    Ok(true) => {}
                    Ok(false) => {
                        body_error = Some(lock_lost());
                        let _ = tx.send(Err(Error::Conflict("lock lost".into()))).await;
                        break;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Error::Unavailable("lock check failed".into()))).await;
                        body_error = Some(e);
                        break;
                    }
                }
                let is_err = c.is_err();
                if tx.send(c).await.is_err() || is_err {
                    break;
                }
            }
            drop(tx);
            let (end, saw) = writer.await.map_err(Error::internal)??;
            store_saw = saw;
            end
        };
        let failed = body_error.or(store_saw);
        if matches!(failed, Some(Error::Conflict(_))) {
            // Lease lost: record nothing; the next writer discards what this one wrote.
            return Err(failed.unwrap_or_else(|| Error::internal_msg("unreachable")));
        }
        if let Some(c) = &checksum {
            let ok = failed.is_none() && digest.lock().map(|d| d.matches(c)).unwrap_or(false);
            if !ok {
                // Nothing is recorded: the bytes past the offset are discarded by the next append.
                return Err(failed
                    .unwrap_or_else(|| Error::ChecksumMismatch("the body does not match its Upload-Checksum".into())));
            }
        }
        if !lease.keep().await? {
            return Err(lock_lost());
        }
        let expires_at = self.unfinished_expiry();
        // The last byte: keep the lock while the file is assembled. Otherwise free it with the
        // offset, in one step.
        let finishing = failed.is_none() && Some(end) == length;
        let recorded = if finishing {
            self.catalog
                .advance_upload(&u.id, &lease.token, end, length, expires_at)
                .await?
        } else {
            self.catalog
                .advance_and_unlock_upload(&u.id, &lease.token, end, length, expires_at)
                .await?
        };
        if !recorded {
            return Err(lock_lost());
        }
        let mut now = UploadRecord {
            offset: end,
            length,
            expires_at,
            ..u
        };
        if let Some(e) = failed {
            // The client is gone or sent too much; what arrived before is kept. The lock went
            // with the offset.
            return Err(e);
        }
        let whole = whole
            .lock()
            .ok()
            .and_then(|mut w| w.take())
            .filter(|(n, _)| *n == end - offset)
            .map(|(_, h)| h);
        if finishing {
            self.running_digests.forget(&now.id);
            let known = whole.map(|h| (end, hex::encode(h.finalize())));
            self.finish_tus(&now, known).await?;
            now.status = UploadStatus::Completed;
            if now.concat.is_some() {
                // A partial upload stays active (and expires) until a final upload uses it.
                now.status = UploadStatus::Active;
            }
        } else if let Some(h) = whole {
            // Recorded: bytes 0..end are what was hashed (before the answer, so the client's
            // next PATCH finds it).
            self.running_digests.put(&now.id, end, h);
        }
        Ok((now, !finishing))
    }

    /// The policy an upload's file was made under ("tus" for a partial).
    async fn upload_policy_name(&self, u: &UploadRecord) -> Result<String> {
        Ok(match &u.file_id {
            Some(fid) => self
                .catalog
                .file(fid)
                .await?
                .map(|f| f.policy)
                .unwrap_or_else(|| "tus".into()),
            None => "tus".into(),
        })
    }

    /// Publishes a tus upload whose last byte arrived and checks its file.
    /// `known`: the size and SHA-256 of the whole file, when it came in this process's one PATCH.
    async fn finish_tus(&self, u: &UploadRecord, known: Option<(u64, String)>) -> Result<()> {
        let backend = self.backend(Some(&u.backend))?;
        let length = u.length.unwrap_or(u.offset);
        if let Err(e) = backend.store.append_finish(&u.key, &u.handle, length).await {
            // Published before a crash cut the rest short: the object is there, whole.
            match backend.store.head(&u.key).await {
                Ok(m) if m.size == length => {}
                _ => return Err(e),
            }
        }
        let Some(fid) = &u.file_id else {
            return Ok(()); // a partial upload: its bytes wait for a final upload
        };
        let rec = self
            .catalog
            .file(fid)
            .await?
            .ok_or_else(|| Error::internal_msg("a tus upload's file record is missing"))?;
        match self.complete_known(rec, known).await {
            Ok(_) => {
                self.catalog.finish_upload(&u.id, UploadStatus::Completed).await?;
                Ok(())
            }
            Err(e) => {
                if !e.is_server_error() {
                    self.drop_upload(u).await;
                }
                Err(e)
            }
        }
    }

    /// The file a tus upload ended in, once complete.
    pub async fn tus_file(&self, u: &UploadRecord) -> Result<Option<FileRecord>> {
        match (&u.file_id, u.status) {
            (Some(fid), UploadStatus::Completed) => self.catalog.file(fid).await,
            _ => Ok(None),
        }
    }

    /// Creates a final upload from complete partial uploads (tus concatenation): the file is
    /// their bytes in order, checked like any upload. Returns the final upload, complete.
    pub async fn tus_concat(
        &self,
        who: &crate::auth::Principal,
        partials: &[String],
        file: NewFile,
        metadata: Option<String>,
    ) -> Result<UploadRecord> {
        if partials.is_empty() {
            return Err(Error::invalid(
                "Upload-Concat: final; needs at least one partial upload",
            ));
        }
        let mut parts = Vec::with_capacity(partials.len());
        for p in partials {
            let u = self.upload_for(who, p, UploadKind::Tus).await?;
            if u.concat.as_deref() != Some("partial") {
                return Err(Error::invalid(format!("upload {p} is not a partial upload")));
            }
            if u.length != Some(u.offset) {
                return Err(Error::invalid(format!("partial upload {p} is not complete")));
            }
            parts.push(u);
        }
        let total: u64 = parts.iter().map(|u| u.offset).sum();
        let backend_name = parts[0].backend.clone();
        if parts.iter().any(|u| u.backend != backend_name) {
            return Err(Error::invalid("partial uploads on different backends cannot be joined"));
        }
        let mut new = file;
        new.size_hint = Some(total);
        new.backend = Some(backend_name.clone());
        let store = self.backend(Some(&backend_name))?.store.clone();
        let keys: Vec<StorageKey> = parts.iter().map(|u| u.key.clone()).collect();
        let body = futures_util::stream::iter(keys)
            .then(move |k| {
                let store = store.clone();
                async move { store.get(&k, None).await.map(|g| g.body) }
            })
            .map(|r| match r {
                Ok(s) => s,
                Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .boxed();
        let staged = self.stage(who, new, body).await?;
        let rec = self.commit(staged).await?;
        let now = self.clock.now();
        let u = UploadRecord {
            id: UploadId::generate(),
            kind: UploadKind::Tus,
            project: who.project.clone(),
            workspace: who.workspace.clone(),
            file_id: Some(rec.id.clone()),
            backend: rec.backend.clone(),
            key: rec.key.clone(),
            handle: String::new(),
            length: Some(total),
            part_size: 0,
            offset: total,
            metadata,
            concat: Some(format!("final;{}", partials.join(" "))),
            status: UploadStatus::Completed,
            created_at: now,
            expires_at: rec.expires_at.unwrap_or(i64::MAX),
        };
        self.catalog.insert_upload(&u).await?;
        Ok(u)
    }
}

/// A receiver as a body stream.
/// A PATCH body up to this size is gathered in memory and handed to the store whole: on the
/// local store one hand-off to a blocking thread, rather than a writer task fed chunk by chunk.
const SMALL_APPEND: usize = 256 << 10;

fn lock_lost() -> Error {
    Error::Conflict("the upload's lock was lost; resume from HEAD".into())
}

fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Result<Bytes>>) -> ByteStream {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// At most `room` bytes: more is `TooLarge` (after the bytes that fit).
fn limit(body: ByteStream, room: u64, length_known: bool) -> ByteStream {
    let mut left = room;
    body.map(move |c| {
        let c = c?;
        if c.len() as u64 > left {
            return Err(if length_known {
                Error::TooLarge("the body goes past Upload-Length".into())
            } else {
                Error::TooLarge("the upload is over the size limit".into())
            });
        }
        left -= c.len() as u64;
        Ok(c)
    })
    .boxed()
}

/// The digests a PATCH body is checked against.
struct Digests {
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

impl Digests {
    fn new(c: Option<&Checksum>) -> Self {
        Digests {
            sha1: matches!(
                c,
                Some(Checksum {
                    algorithm: ChecksumAlgorithm::Sha1,
                    ..
                })
            )
            .then(Sha1::new),
            sha256: matches!(
                c,
                Some(Checksum {
                    algorithm: ChecksumAlgorithm::Sha256,
                    ..
                })
            )
            .then(Sha256::new),
        }
    }

    fn update(&mut self, b: &[u8]) {
        if let Some(h) = &mut self.sha1 {
            h.update(b);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(b);
        }
    }

    fn matches(&self, c: &Checksum) -> bool {
        let got: Vec<u8> = match c.algorithm {
            ChecksumAlgorithm::Sha1 => self.sha1.clone().map(|h| h.finalize().to_vec()).unwrap_or_default(),
            ChecksumAlgorithm::Sha256 => self.sha256.clone().map(|h| h.finalize().to_vec()).unwrap_or_default(),
        };
        subtle::ConstantTimeEq::ct_eq(got.as_slice(), c.digest.as_slice()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_plans() {
        assert_eq!(plan_parts(1, None).unwrap(), (DEFAULT_PART_SIZE, 1));
        assert_eq!(plan_parts(1 << 30, None).unwrap(), (DEFAULT_PART_SIZE, 128));
        assert_eq!(plan_parts(1 << 30, Some(128 << 20)).unwrap(), (128 << 20, 8));
        // A file too big for 10,000 default parts gets bigger parts.
        let (p, n) = plan_parts(200 << 30, None).unwrap();
        assert!(n <= MAX_PARTS && p >= MIN_PART_SIZE && p % (1 << 20) == 0, "{p} {n}");
        assert!(plan_parts(0, None).is_err());
        assert!(plan_parts(100 << 20, Some(1 << 20)).is_err(), "parts under 5 MiB");
        assert_eq!(
            plan_parts(1000, Some(1000)).unwrap(),
            (1000, 1),
            "one small part is fine"
        );
        assert!(plan_parts(100 << 30, Some(5 << 20)).is_err(), "over 10,000 parts");
        assert!(plan_parts(10 << 30, Some(6 << 30)).is_err(), "parts over 5 GiB");
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert_eq!(bare_etag("\"abc\""), "abc");
        assert_eq!(bare_etag("abc"), "abc");
        assert_eq!(bare_etag(" W/\"abc\" "), "abc");
    }
}
