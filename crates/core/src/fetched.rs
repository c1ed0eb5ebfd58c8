//! Files whose bytes filedock fetches itself (upload from a URL, in the background): announced
//! as a pending file first, filled from the fetched body through the same checks as any
//! upload, or failed with the reason. The fetch itself (HTTP, the address guard) is the
//! server's; core sees a body.

use crate::auth::Principal;
use crate::blob::{ByteStream, PutOptions};
use crate::catalog::{Change, Intent};
use crate::error::{Error, Result};
use crate::event_shapes::{EventType, file_data};
use crate::files::{Files, NewFile};
use crate::limits::UploadSlot;
use crate::meter::meter;
use crate::model::{FileId, FileRecord, FileStatus};

/// A pending file whose bytes are on their way; it holds its project's upload slot until it is
/// filled or failed.
#[derive(Debug)]
#[must_use = "an announced file must be filled or failed"]
pub struct Announced {
    rec: FileRecord,
    _slot: UploadSlot,
}

impl Announced {
    /// The pending record (what a 202 answers).
    pub fn record(&self) -> &FileRecord {
        &self.rec
    }
}

impl Files {
    /// Checks what can be checked before a byte (name, declared size, quota, the project's
    /// upload slots) and records a pending file.
    pub async fn announce(&self, who: &Principal, new: NewFile) -> Result<Announced> {
        let policy = self.ctx.policy(&new.policy)?;
        policy.check_extension(new.name.extension().as_deref())?;
        if let Some(n) = new.size_hint {
            policy.check_size(n)?;
        }
        let backend = self.ctx.backend(new.backend.as_deref())?;
        let slot = self.ctx.upload_slot(&who.project)?;
        self.ctx.check_quota(&who.project, new.size_hint.unwrap_or(0)).await?;
        let now = self.ctx.clock.now();
        let id = FileId::generate();
        let key = self.mint_key(who, &id, &new, now)?;
        let rec = self.record(who, id, key, &new, backend, now);
        self.ctx.catalog.insert_file(&rec).await?;
        Ok(Announced { rec, _slot: slot })
    }

    /// Meters `body` into the announced file's key (limit, type, text, SHA-256) and makes it
    /// ready (`file.ready`). A refusal or a broken body fails the file with its reason
    /// (`file.failed`) and returns the error.
    pub async fn fill(&self, announced: Announced, size_hint: Option<u64>, body: ByteStream) -> Result<FileRecord> {
        let rec = announced.rec;
        match self.fill_bytes(&rec, size_hint, body).await {
            Ok((size, sha256, detected)) => self.settle(&rec, size, Some(sha256), detected).await,
            Err(e) => {
                self.fail(&rec, &e).await;
                Err(e)
            }
        }
    }

    /// Fails an announced file whose bytes could not be fetched at all (`file.failed`).
    pub async fn abandon(&self, announced: Announced, why: &Error) {
        self.fail(&announced.rec, why).await;
    }

    async fn fill_bytes(
        &self,
        rec: &FileRecord,
        size_hint: Option<u64>,
        body: ByteStream,
    ) -> Result<(u64, String, String)> {
        let policy = self.ctx.policy(&rec.policy)?.clone();
        if let Some(n) = size_hint {
            policy.check_size(n)?;
        }
        let backend = self.ctx.backend(Some(&rec.backend))?;
        let intent = Intent {
            backend: backend.name.clone(),
            key: rec.key.clone(),
            instance: self.ctx.instance.clone(),
            created_at: self.ctx.clock.now(),
        };
        self.ctx.catalog.insert_intent(&intent).await?;
        let (metered, handle) = meter(body, policy, rec.extension.clone(), size_hint);
        let put = backend
            .store
            .put(&rec.key, metered, PutOptions { create_only: true })
            .await;
        let outcome = match put {
            Ok(_) => handle
                .outcome()
                .ok_or_else(|| Error::internal_msg("store committed a body that did not end cleanly")),
            Err(e) => Err(e),
        };
        let checked = match outcome {
            Ok(m) if size_hint.is_none() => self.ctx.check_quota(&rec.project, m.size).await.map(|()| m),
            other => other,
        };
        if checked.is_err() {
            self.discard_blob(backend, &rec.key).await;
        }
        if let Err(e) = self.ctx.catalog.delete_intent(&backend.name, &rec.key).await {
            tracing::warn!(key = %rec.key, error = %e, "could not remove a fetch's intent; the sweeper will");
        }
        let m = checked?;
        Ok((m.size, m.sha256, m.detected_type))
    }

    /// Fails a pending file with `why` (once; `file.failed`). A failure to record it is logged:
    /// the file then stays pending and expires as an unfinished upload does.
    pub(crate) async fn fail(&self, rec: &FileRecord, why: &Error) {
        let reason = format!("{}: {why}", why.code());
        let at = self.ctx.clock.now();
        let failed = FileRecord {
            status: FileStatus::Failed,
            reason: Some(reason.clone()),
            completed_at: Some(at),
            ..rec.clone()
        };
        let data = || {
            let mut d = file_data(&failed);
            d["file"]["reason"] = serde_json::Value::String(reason.clone());
            d
        };
        let change = Change::FailFile {
            id: &rec.id,
            reason: &reason,
            at,
        };
        if let Err(e) = self
            .events
            .change(change, &rec.project, EventType::FileFailed, data)
            .await
        {
            tracing::error!(file = %rec.id, error = %e, "could not record a failed fetch; the file stays pending until it expires");
        }
    }
}
