//! How a file whose bytes arrived becomes usable: what arrived for a pending file is checked
//! (size, type, content, SHA-256) and settled — `ready`, or `quarantined` until its scanner's
//! verdict (see `quarantine`).

use futures_util::StreamExt;

use crate::auth::Principal;
use crate::blob::ObjectMeta;
use crate::catalog::{Change, Completion};
use crate::error::{Error, Result};
use crate::event_shapes::{EventType, file_data};
use crate::files::{Backend, Files};
use crate::meter::meter;
use crate::model::{FileId, FileRecord, FileStatus};
use crate::quarantine::Quarantine;
use crate::range::ByteRange;

impl Files {
    /// Checks what arrived for a pending file — size against the announced size and the policy,
    /// the type of its content, its SHA-256 — and makes it ready. A mismatch deletes the object
    /// and says why. Completing a ready file returns it as is.
    pub async fn complete_upload(&self, who: &Principal, id: &FileId) -> Result<FileRecord> {
        let rec = self.visible_file(who, id).await?;
        // Completed before and waiting for its scanner: as it is.
        if rec.status == FileStatus::Quarantined {
            return Ok(rec);
        }
        self.complete(rec).await
    }

    pub(crate) async fn complete(&self, rec: FileRecord) -> Result<FileRecord> {
        self.complete_known(rec, None).await
    }

    /// [`FileService::complete`], with the size and SHA-256 of the bytes when they streamed
    /// through filedock whole: the object is then not read back to hash it (its first bytes
    /// still are, for the type; a text file is still read whole, for its text check). Without
    /// them (a presigned PUT or multipart upload straight to the bucket, a tus upload whose
    /// PATCHes came through several instances) the object is read back whole: every ready file
    /// has its SHA-256 and every content rule is checked over its whole body, on every path.
    pub(crate) async fn complete_known(&self, rec: FileRecord, known: Option<(u64, String)>) -> Result<FileRecord> {
        match rec.status {
            FileStatus::Ready => return Ok(rec),
            FileStatus::Failed | FileStatus::Quarantined | FileStatus::Rejected => return Err(rec.failure()),
            FileStatus::Pending | FileStatus::Deleted => {}
        }
        let backend = self.ctx.backend(Some(&rec.backend))?;
        let store = &backend.store;
        if !store.self_served() {
            self.take_incoming(backend, &rec.key).await?;
        }
        let meta = match store.head(&rec.key).await {
            Ok(m) => m,
            Err(Error::NotFound(_)) => {
                return Err(Error::Conflict("the upload has not been received yet".into()));
            }
            Err(e) => return Err(e),
        };
        let checked = self.check_arrived(backend, &rec, &meta, known).await;
        let (size, sha256, detected_type) = match checked {
            Ok(m) => m,
            Err(e) => {
                if !e.is_server_error() {
                    self.discard_blob(backend, &rec.key).await;
                }
                return Err(e);
            }
        };
        self.settle(&rec, size, Some(sha256), detected_type).await
    }

    /// Records what arrived for a pending file, checked, and makes it ready (`file.ready` once,
    /// whoever wins a race to complete it) — or quarantined, when its policy names a scanner,
    /// and then waits (bounded) for the verdict.
    pub(crate) async fn settle(
        &self,
        rec: &FileRecord,
        size: u64,
        sha256: Option<String>,
        detected_type: String,
    ) -> Result<FileRecord> {
        let landing = Quarantine::landing(&self.ctx, &rec.project, self.ctx.policy(&rec.policy)?);
        let c = Completion {
            status: landing,
            size,
            sha256,
            detected_type,
            completed_at: self.ctx.clock.now(),
        };
        if landing == FileStatus::Quarantined {
            // No event yet: `file.ready` comes with the clean verdict.
            self.ctx.catalog.apply(Change::CompleteFile(&rec.id, &c), &[]).await?;
        } else {
            // The event says what the row will say.
            let ready = FileRecord {
                status: FileStatus::Ready,
                size: Some(c.size),
                sha256: c.sha256.clone(),
                detected_type: Some(c.detected_type.clone()),
                completed_at: Some(c.completed_at),
                ..rec.clone()
            };
            // The winner of a race to complete records the event with the change; the loser none.
            self.events
                .change(
                    Change::CompleteFile(&rec.id, &c),
                    &rec.project,
                    EventType::FileReady,
                    || file_data(&ready),
                )
                .await?;
        }
        // Whoever won a race to complete, the row now says what is true.
        let rec = self
            .ctx
            .catalog
            .file(&rec.id)
            .await?
            .ok_or_else(|| Error::not_found("no such file"))?;
        self.quarantine.await_verdict(rec).await
    }

    /// What arrived for a pending file, checked: its size against the announced size and the
    /// policy, its type and content (read whole unless its SHA-256 is `known`, and then its
    /// first bytes), its SHA-256. Returns the size, SHA-256 and detected type.
    async fn check_arrived(
        &self,
        backend: &Backend,
        rec: &FileRecord,
        meta: &ObjectMeta,
        known: Option<(u64, String)>,
    ) -> Result<(u64, String, String)> {
        let store = &backend.store;
        if let Some(expected) = rec.size
            && expected != meta.size
        {
            return Err(Error::invalid(format!(
                "received {} bytes, but {expected} were announced",
                meta.size
            )));
        }
        let policy = self.ctx.policy(&rec.policy)?.clone();
        policy.check_size(meta.size)?;
        let known = known
            .filter(|(n, _)| *n == meta.size && !crate::sniff::is_text_extension(rec.extension.as_deref()))
            .map(|(_, sha)| sha);
        let Some(known) = known else {
            let got = store.get(&rec.key, None).await?;
            let (mut body, handle) = meter(got.body, policy, rec.extension.clone(), Some(meta.size));
            while let Some(chunk) = body.next().await {
                chunk?;
            }
            let m = handle
                .outcome()
                .ok_or_else(|| Error::internal_msg("metered read ended without an outcome"))?;
            return Ok((m.size, m.sha256, m.detected_type));
        };
        // The bytes were hashed on their way in: only the first bytes, for the type.
        if meta.size == 0 && !policy.allow_empty {
            return Err(Error::invalid("the file is empty"));
        }
        let n = meta.size.min(crate::sniff::HEAD_LEN as u64);
        let mut head = Vec::with_capacity(n as usize);
        if n > 0 {
            let mut body = store.get(&rec.key, Some(ByteRange::Bounded(0, n - 1))).await?.body;
            while let Some(chunk) = body.next().await {
                head.extend_from_slice(&chunk?);
            }
        }
        let detected = policy.check_content(rec.extension.as_deref(), &head, n == meta.size)?;
        Ok((meta.size, known, detected))
    }
}
