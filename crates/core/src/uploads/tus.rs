//! tus 1.0 uploads: created with or without a length, appended PATCH by PATCH under the lease
//! (checked against a checksum when one comes), assembled into a file at the last byte, and
//! concatenated from partial uploads.

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::lease::{Lapse, Lease};
use super::stream::{Watch, limit, tokio_stream_from};
use super::{Checksum, TusCreate};
use crate::blob::ByteStream;
use crate::error::{Error, Result};
use crate::files::NewFile;
use crate::model::StorageKey;
use crate::model::{Concat, FileRecord, UploadId, UploadKind, UploadRecord, UploadStatus};
use crate::policy::UploadPolicy;
use crate::uploads::Uploads;

/// A PATCH body up to this size is gathered in memory and handed to the store whole: on the
/// local store one hand-off to a blocking thread, rather than a writer task fed chunk by chunk.
pub(super) const SMALL_APPEND: usize = 256 << 10;

/// One PATCH: where it starts, the length it may declare, the checksum its body must have.
struct Patch {
    offset: u64,
    length: Option<u64>,
    checksum: Option<Checksum>,
}

/// What a PATCH body did on its way to the store.
struct Written {
    /// Where the store's bytes end.
    end: u64,
    /// The lease lapsed part way.
    stopped: Option<Lapse>,
    /// The body's own error (the client went away, sent too much), after the bytes before it.
    body_failed: Option<Error>,
}

impl Uploads {
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
                .ctx
                .catalog
                .upload(&u.id)
                .await?
                .ok_or_else(|| Error::not_found("no such upload"))?;
            if stranded(&u) {
                tracing::info!(upload = %u.id, "finishing a tus upload whose last byte arrived before a restart");
                self.finish_tus(&u, None).await?;
            }
            self.ctx
                .catalog
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
        let policy = self.ctx.policy(&facts.policy)?.clone();
        let _slot = self.ctx.upload_slot(&facts.project)?;
        let (mut lease, u) = self.lock_and_read(&uid, true).await?;
        let r = self
            .append_locked(
                &mut lease,
                u,
                &policy,
                Patch {
                    offset,
                    length,
                    checksum,
                },
                body,
            )
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
    async fn append_locked(
        &self,
        lease: &mut Lease<'_>,
        u: UploadRecord,
        policy: &UploadPolicy,
        patch: Patch,
        body: ByteStream,
    ) -> Result<(UploadRecord, bool)> {
        let Patch {
            offset,
            length,
            checksum,
        } = patch;
        let length = self.check_patch(&u, policy, offset, length).await?;
        let room = length.unwrap_or(policy.max_size).saturating_sub(u.offset);
        // The file's SHA-256 goes on as the body passes, from offset 0 or from what this
        // instance hashed of the PATCHes before: if the file ends here, completing need not
        // read it back.
        let running = if offset == 0 {
            Some(Sha256::new())
        } else {
            self.running_digests.at(&u.id, offset)
        };
        let watch = Watch::new(checksum.as_ref(), running);
        let body = watch.watch(limit(body, room, length.is_some()));
        let written = self.write_patch(lease, &u, offset, body).await?;
        if matches!(written.stopped, Some(Lapse::Lost)) {
            // Record nothing; the next writer discards what this one wrote.
            return Err(Lapse::Lost.into());
        }
        let end = written.end;
        let failed = written.stopped.map(Error::from).or(written.body_failed);
        if let Some(c) = &checksum {
            let ok = failed.is_none() && watch.matches(c);
            if !ok {
                // Nothing is recorded: the bytes past the offset are discarded by the next append.
                return Err(failed
                    .unwrap_or_else(|| Error::ChecksumMismatch("the body does not match its Upload-Checksum".into())));
            }
        }
        lease.keep().await?;
        let expires_at = self.unfinished_expiry();
        // The last byte: keep the lock while the file is assembled. Otherwise free it with the
        // offset, in one step.
        let finishing = failed.is_none() && Some(end) == length;
        let recorded = if finishing {
            self.ctx
                .catalog
                .advance_upload(&u.id, &lease.token, end, length, expires_at)
                .await?
        } else {
            self.ctx
                .catalog
                .advance_and_unlock_upload(&u.id, &lease.token, end, length, expires_at)
                .await?
        };
        if !recorded {
            return Err(Lapse::Lost.into());
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
        // Used only if the store took exactly what was hashed.
        let whole = watch.whole(end - offset);
        self.settle_patch(&mut now, finishing, whole).await?;
        Ok((now, !finishing))
    }

    /// After a PATCH is recorded: at the last byte, assembles and checks the file (a partial
    /// upload stays active until a final one joins it); otherwise keeps the running SHA-256 for
    /// the next PATCH (before the answer, so the client's next PATCH finds it).
    async fn settle_patch(&self, now: &mut UploadRecord, finishing: bool, whole: Option<Sha256>) -> Result<()> {
        let end = now.offset;
        if finishing {
            self.running_digests.forget(&now.id);
            let known = whole.map(|h| (end, hex::encode(h.finalize())));
            self.finish_tus(now, known).await?;
            now.status = if now.concat.is_some() {
                UploadStatus::Active
            } else {
                UploadStatus::Completed
            };
        } else if let Some(h) = whole {
            self.running_digests.put(&now.id, end, h);
        }
        Ok(())
    }

    /// Checks a PATCH against the upload as it stands under the lock; returns the upload's
    /// length once this PATCH is taken (a deferred length may come with it).
    async fn check_patch(
        &self,
        u: &UploadRecord,
        policy: &UploadPolicy,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Option<u64>> {
        // As `upload_for` says, now under the lock: an aborted, finished or expired upload
        // takes nothing.
        if u.status != UploadStatus::Active || u.expires_at <= self.ctx.clock.now() {
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
                let counted = if u.concat == Some(Concat::Partial) { u.offset } else { 0 };
                self.ctx
                    .check_quota_with(&u.project, 0, b.saturating_sub(counted))
                    .await?;
                Some(b)
            }
            (None, None) => None,
        };
        if let Some(l) = length {
            policy.check_size(l)?;
        }
        Ok(length)
    }

    /// Writes a PATCH body at `offset`, keeping the lease between chunks: the store sees only
    /// chunks written under it. A body that ends within [`SMALL_APPEND`] (a typical PATCH) is
    /// gathered first and handed to the store whole; a larger one streams to it, the gathered
    /// chunks first. An error is the store's; the body's and the lease's are in [`Written`].
    async fn write_patch(
        &self,
        lease: &mut Lease<'_>,
        u: &UploadRecord,
        offset: u64,
        body: ByteStream,
    ) -> Result<Written> {
        let store = self.ctx.backend(Some(&u.backend))?.store.clone();
        let mut body = body;
        let mut gathered = Vec::new();
        let mut size = 0;
        let mut ended = false;
        let mut written = Written {
            end: offset,
            stopped: None,
            body_failed: None,
        };
        while size <= SMALL_APPEND {
            let Some(c) = body.next().await else {
                ended = true;
                break;
            };
            if let Err(lapse) = lease.keep().await {
                // Nothing is written.
                written.stopped = Some(lapse);
                return Ok(written);
            }
            match c {
                Ok(b) => {
                    size += b.len();
                    gathered.push(b);
                }
                Err(e) => {
                    // What arrived before the body failed is kept, as from a stream.
                    written.body_failed = Some(e);
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            written.end = store.append_bytes(&u.key, &u.handle, offset, gathered).await?;
            return Ok(written);
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(2);
        let (key, handle) = (u.key.clone(), u.handle.clone());
        let writer = tokio::spawn(async move {
            let rx = tokio_stream_from(rx);
            store.append(&key, &handle, offset, rx).await
        });
        let mut rest = futures_util::stream::iter(gathered.into_iter().map(Ok)).chain(body);
        while let Some(c) = rest.next().await {
            if let Err(lapse) = lease.keep().await {
                // The store stops at the error; what it wrote is past the recorded offset.
                let _ = tx
                    .send(Err(Error::Unavailable("the upload's lease lapsed".into())))
                    .await;
                written.stopped = Some(lapse);
                break;
            }
            let is_err = c.is_err();
            if tx.send(c).await.is_err() || is_err {
                break;
            }
        }
        drop(tx);
        let (end, saw) = writer.await.map_err(Error::internal)??;
        written.end = end;
        if written.stopped.is_none() {
            written.body_failed = saw;
        }
        Ok(written)
    }

    /// Publishes a tus upload whose last byte arrived and checks its file.
    /// `known`: the size and SHA-256 of the whole file, when it came in this process's one PATCH.
    pub(super) async fn finish_tus(&self, u: &UploadRecord, known: Option<(u64, String)>) -> Result<()> {
        let backend = self.ctx.backend(Some(&u.backend))?;
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
            .ctx
            .catalog
            .file(fid)
            .await?
            .ok_or_else(|| Error::internal_msg("a tus upload's file record is missing"))?;
        match self.files.complete_known(rec, known).await {
            Ok(_) => {
                self.ctx.catalog.finish_upload(&u.id, UploadStatus::Completed).await?;
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
            (Some(fid), UploadStatus::Completed) => self.ctx.catalog.file(fid).await,
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
            if u.concat != Some(Concat::Partial) {
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
        let store = self.ctx.backend(Some(&backend_name))?.store.clone();
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
        let staged = self.files.stage(who, new, body).await?;
        let rec = self.files.commit(staged).await?;
        let now = self.ctx.clock.now();
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
            concat: Some(Concat::Final(parts.iter().map(|u| u.id.clone()).collect())),
            status: UploadStatus::Completed,
            created_at: now,
            expires_at: rec.expires_at.unwrap_or(i64::MAX),
        };
        self.ctx.catalog.insert_upload(&u).await?;
        Ok(u)
    }
}
