//! [`Files`]: files taken through filedock (stage, commit) or uploaded direct (presign,
//! complete). Every dialect reaches it through [`crate::FileService`]; it checks scope, applies
//! the upload policy, mints storage keys, meters bodies into a [`BlobStore`](crate::BlobStore)
//! and records them in the [`Catalog`](crate::Catalog). Reads and links are in `access`,
//! expiry in `retention`.

use std::sync::Arc;

use crate::auth::Principal;
use crate::blob::{ByteStream, PresignPut, PresignedRequest, PutOptions};
use crate::catalog::{Change, FileQuery, Intent};
use crate::clock::Timestamp;
use crate::context::Context;
use crate::context::{is_visible_to, secs_to_ms};
use crate::error::{Error, Result};
use crate::event_shapes::{EventType, file_data};
use crate::meter::meter;
use crate::model::MAX_KEY_LEN;
use crate::model::TaskId;
use crate::model::{Class, FileId, FileName, FileRecord, FileStatus, ProjectId, StorageKey, validate_relative_path};

pub use crate::settings::{Backend, FileServiceConfig, ProjectSettings, Retention, RetentionOverride};

/// A file whose bytes are stored and checked but whose record is not yet written: the caller
/// [`FileService::commit`](crate::FileService::commit)(crate::FileService::commit)s it (or [`FileService::discard`](crate::FileService::discard)(crate::FileService::discard)s it) once it knows the rest.
#[derive(Debug)]
#[must_use = "a staged file must be committed or discarded"]
pub struct Staged {
    rec: FileRecord,
}

impl Staged {
    /// The record that commit will write.
    pub fn record(&self) -> &FileRecord {
        &self.rec
    }

    /// Keeps the file `secs` from its creation instead of its class's retention.
    pub fn set_ttl_secs(&mut self, secs: u64) {
        self.rec.expires_at = Some(self.rec.created_at.saturating_add(secs_to_ms(secs)));
    }

    /// Sets who the client says made the file (known only after the bytes, in some forms).
    pub fn set_created_by(&mut self, created_by: Option<String>) {
        self.rec.created_by = created_by;
    }
}

/// How a new file's storage key is made. Every layout puts a filedock-minted id or a validated
/// path in the key; a client's file name never becomes a path unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLayout {
    /// `{project}/{yyyy}/{mm}/{dd}/{id}.{ext}`.
    Native,
    /// `{prefix}/{yyyy}/{mm}/{dd}/{id}.{ext}` (Juniortree's `uploads/…`).
    Dated(&'static str),
    /// `{prefix}/{project}/{id}/{name}` (Cyberun's `inputs/…/photo.png`).
    Named(&'static str),
    /// `{project}/{path}` with a client's relative path (TokenOps), at most 255 bytes.
    ProjectPath(String),
    /// `outputs/{project}/{task}/{id}/{name}`: a task's output.
    TaskOutput(crate::model::TaskId),
}

/// A file to take in through filedock.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub name: FileName,
    pub declared_type: Option<String>,
    pub class: Class,
    /// Overrides the class's retention, in seconds.
    pub ttl_secs: Option<u64>,
    /// The upload policy to apply.
    pub policy: String,
    /// The exact body length, when the client said it up front.
    pub size_hint: Option<u64>,
    pub created_by: Option<String>,
    pub agent: Option<String>,
    /// The backend by name (default when `None`).
    pub backend: Option<String>,
    pub key: KeyLayout,
    /// Where the bytes are fetched from (upload from a URL), as recorded.
    pub origin: Option<String>,
}

impl NewFile {
    /// A file with defaults: class input, the `native` policy, the native key layout.
    pub fn named(name: FileName) -> Self {
        NewFile {
            name,
            declared_type: None,
            class: Class::Input,
            ttl_secs: None,
            policy: "native".into(),
            size_hint: None,
            created_by: None,
            agent: None,
            backend: None,
            key: KeyLayout::Native,
            origin: None,
        }
    }
}

/// A direct upload to announce.
#[derive(Debug, Clone)]
pub struct PresignUpload {
    pub file: NewFile,
    /// Sign the declared type: the PUT must carry it as `Content-Type`.
    pub sign_content_type: bool,
    /// Sign the backend's create-only header: the PUT must carry it.
    pub create_only: bool,
}

fn date_parts(at: Timestamp) -> (i32, u8, u8) {
    let d = time::OffsetDateTime::from_unix_timestamp(at / 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (d.year(), d.month() as u8, d.day())
}

/// Where a task's outputs are kept: `outputs/{project}/{task}`.
pub fn output_prefix(project: &ProjectId, task: &TaskId) -> String {
    format!("outputs/{project}/{task}")
}

/// Files: taken through filedock or uploaded direct, read, linked, deleted and expired.
#[derive(Debug)]
pub struct Files {
    pub(crate) ctx: Arc<Context>,
    pub(crate) events: Arc<crate::events::Events>,
    pub(crate) quarantine: crate::quarantine::Quarantine,
}

impl Files {
    pub(crate) fn new(ctx: Arc<Context>, events: Arc<crate::events::Events>) -> Self {
        let quarantine = crate::quarantine::Quarantine::new(ctx.clone(), events.clone());
        Files {
            ctx,
            events,
            quarantine,
        }
    }
}

impl Files {
    pub(crate) fn mint_key(&self, who: &Principal, id: &FileId, new: &NewFile, now: Timestamp) -> Result<StorageKey> {
        let ext = new.name.extension().map(|e| format!(".{e}")).unwrap_or_default();
        let (y, m, d) = date_parts(now);
        let key = match &new.key {
            KeyLayout::Native => format!("{}/{y:04}/{m:02}/{d:02}/{id}{ext}", who.project),
            KeyLayout::Dated(prefix) => format!("{prefix}/{y:04}/{m:02}/{d:02}/{id}{ext}"),
            KeyLayout::Named(prefix) => format!("{prefix}/{}/{id}/{}", who.project, new.name),
            KeyLayout::TaskOutput(task) => {
                format!("{}/{id}/{}", output_prefix(&who.project, task), new.name)
            }
            KeyLayout::ProjectPath(path) => {
                if path.chars().count() > 255 {
                    return Err(Error::invalid("path must be at most 255 characters"));
                }
                validate_relative_path(path, MAX_KEY_LEN - 65)?;
                format!("{}/{path}", who.project)
            }
        };
        StorageKey::new(key)
    }

    fn expiry(&self, project: &ProjectId, class: Class, ttl_secs: Option<u64>, now: Timestamp) -> Option<Timestamp> {
        ttl_secs
            .or(self.ctx.retention_secs(project, class))
            .map(|s| now.saturating_add(secs_to_ms(s)))
    }

    pub(crate) fn record(
        &self,
        who: &Principal,
        id: FileId,
        key: StorageKey,
        new: &NewFile,
        backend: &Backend,
        now: Timestamp,
    ) -> FileRecord {
        FileRecord {
            id,
            project: who.project.clone(),
            workspace: who.workspace.clone(),
            backend: backend.name.clone(),
            key,
            extension: new.name.extension(),
            name: new.name.clone(),
            size: new.size_hint,
            declared_type: new.declared_type.clone(),
            detected_type: None,
            sha256: None,
            created_by: new.created_by.clone(),
            agent: new.agent.clone(),
            credential_id: Some(who.credential_id.clone()),
            class: new.class,
            status: FileStatus::Pending,
            policy: new.policy.clone(),
            created_at: now,
            completed_at: None,
            expires_at: self.expiry(&who.project, new.class, new.ttl_secs, now),
            deleted_at: None,
            origin: new.origin.clone(),
            reason: None,
        }
    }

    /// Takes a file whose bytes pass through filedock: [`FileService::stage`](crate::FileService::stage) then
    /// [`FileService::commit`](crate::FileService::commit).
    pub async fn upload(&self, who: &Principal, new: NewFile, body: ByteStream) -> Result<FileRecord> {
        let staged = self.stage(who, new, body).await?;
        self.commit(staged).await
    }

    /// Meters a body (limit, SHA-256, type) into its store, which commits it only if every check
    /// passed. The record is not written yet: a crash now leaves at most an unrecorded blob, never
    /// a record of a partial file.
    pub async fn stage(&self, who: &Principal, new: NewFile, body: ByteStream) -> Result<Staged> {
        let policy = self.ctx.policy(&new.policy)?.clone();
        let landing = crate::quarantine::Quarantine::landing(&self.ctx, &who.project, &policy);
        let ext = new.name.extension();
        policy.check_extension(ext.as_deref())?;
        if let Some(n) = new.size_hint {
            policy.check_size(n)?;
        }
        let backend = self.ctx.backend(new.backend.as_deref())?;
        let _slot = self.ctx.upload_slot(&who.project)?;
        self.ctx.check_quota(&who.project, new.size_hint.unwrap_or(0)).await?;
        let now = self.ctx.clock.now();
        let id = FileId::generate();
        let key = self.mint_key(who, &id, &new, now)?;
        // Before a byte is written: what a crash would leave, and whose write it was.
        let intent = Intent {
            backend: backend.name.clone(),
            key: key.clone(),
            instance: self.ctx.instance.clone(),
            created_at: now,
        };
        self.ctx.catalog.insert_intent(&intent).await?;
        let (metered, handle) = meter(body, policy, ext, new.size_hint);
        if let Err(e) = backend.store.put(&key, metered, PutOptions { create_only: true }).await {
            // A refused or broken body leaves no object (the store's contract).
            self.forget_intent(&backend.name, &key).await;
            return Err(e);
        }
        let Some(m) = handle.outcome() else {
            self.discard_blob(backend, &key).await;
            self.forget_intent(&backend.name, &key).await;
            return Err(Error::internal_msg("store committed a body that did not end cleanly"));
        };
        // A body without a declared length is counted once its size is known.
        if new.size_hint.is_none()
            && let Err(e) = self.ctx.check_quota(&who.project, m.size).await
        {
            self.discard_blob(backend, &key).await;
            self.forget_intent(&backend.name, &key).await;
            return Err(e);
        }
        let mut rec = self.record(who, id, key, &new, backend, now);
        rec.size = Some(m.size);
        rec.sha256 = Some(m.sha256);
        rec.detected_type = Some(m.detected_type);
        if rec.extension.is_none() {
            rec.extension = m.extension;
        }
        rec.status = landing;
        rec.completed_at = Some(self.ctx.clock.now());
        Ok(Staged { rec })
    }

    /// Writes a staged file's record: from now on it is visible.
    ///
    /// A failed insert may still have written the row (a COMMIT whose reply was lost with its
    /// connection), so the row is read back before the blob is dropped: a ready row always has
    /// its bytes. When even that read fails, the blob is kept (at worst an orphan, which
    /// `doctor` finds) and the answer is 503: the client cannot know either, and retries.
    pub async fn commit(&self, staged: Staged) -> Result<FileRecord> {
        let rec = staged.rec;
        let inserted = match rec.status {
            // A quarantined file's `file.ready` comes with its clean verdict.
            FileStatus::Quarantined => self.ctx.catalog.apply(Change::InsertFile(&rec), &[]).await,
            _ => {
                self.events
                    .change(Change::InsertFile(&rec), &rec.project, EventType::FileReady, || {
                        file_data(&rec)
                    })
                    .await
            }
        };
        if let Err(e) = inserted {
            match self.ctx.catalog.file(&rec.id).await {
                Ok(Some(stored)) if stored.backend == rec.backend && stored.key == rec.key => {
                    tracing::warn!(file = %rec.id, error = %e, "the catalog reported a failed insert that was written");
                }
                Ok(_) => {
                    self.discard_blob(self.ctx.backend(Some(&rec.backend))?, &rec.key).await;
                    self.forget_intent(&rec.backend, &rec.key).await;
                    return Err(e);
                }
                Err(read) => {
                    tracing::error!(file = %rec.id, key = %rec.key, insert = %e, read = %read,
                        "cannot tell whether a file's row was written; its object is kept");
                    // The intent stays: it says what to look at once the catalog answers.
                    return Err(Error::Unavailable(
                        "the catalog does not answer; retry the upload".into(),
                    ));
                }
            }
        }
        self.forget_intent(&rec.backend, &rec.key).await;
        self.quarantine.await_verdict(rec).await
    }

    /// Drops a staged file's blob.
    pub async fn discard(&self, staged: Staged) {
        if let Ok(b) = self.ctx.backend(Some(&staged.rec.backend)) {
            self.discard_blob(b, &staged.rec.key).await;
            self.forget_intent(&b.name, &staged.rec.key).await;
        }
    }

    /// Removes the intent of a write whose outcome is settled (its row written, or its object
    /// gone). A failure is logged: the sweeper removes intents whose row exists.
    async fn forget_intent(&self, backend: &str, key: &StorageKey) {
        if let Err(e) = self.ctx.catalog.delete_intent(backend, key).await {
            tracing::warn!(%backend, %key, error = %e, "could not remove an upload's intent; the sweeper will");
        }
    }

    /// Announces a direct upload: records a pending file and presigns a PUT straight to its
    /// backend. The file becomes ready on [`FileService::complete_upload`](crate::FileService::complete_upload) (or first use).
    pub async fn presign_upload(&self, who: &Principal, req: PresignUpload) -> Result<(FileRecord, PresignedRequest)> {
        let new = &req.file;
        let policy = self.ctx.policy(&new.policy)?;
        policy.check_extension(new.name.extension().as_deref())?;
        if let Some(n) = new.size_hint {
            policy.check_size(n)?;
        }
        let backend = self.ctx.backend(new.backend.as_deref())?;
        self.ctx.check_quota(&who.project, new.size_hint.unwrap_or(0)).await?;
        let now = self.ctx.clock.now();
        let id = FileId::generate();
        let key = self.mint_key(who, &id, new, now)?;
        let rec = self.record(who, id, key, new, backend, now);
        let ttl = self.ctx.config.upload_ttl_secs.min(backend.max_presign_ttl_secs);
        // Straight to a bucket: to the incoming key, moved to the file's key at completion.
        let target = if backend.store.self_served() {
            rec.key.clone()
        } else {
            crate::blob::incoming_key(&rec.key)?
        };
        let presign = PresignPut {
            key: target,
            content_length: new.size_hint,
            content_type: if req.sign_content_type {
                new.declared_type.clone()
            } else {
                None
            },
            create_only: req.create_only,
            max_size: Some(policy.max_size),
            expires_at: now + secs_to_ms(ttl),
            expires_in_secs: ttl.max(1),
        };
        let signed = backend.store.presign_put(&presign)?;
        match self.ctx.catalog.insert_file(&rec).await {
            Ok(()) => Ok((rec, signed)),
            // A client path (TokenOps) asked again: a pending upload there gets a fresh URL; a
            // ready file is not overwritten.
            Err(Error::Conflict(_)) if matches!(new.key, KeyLayout::ProjectPath(_)) => {
                match self.ctx.catalog.file_by_key(&backend.name, &rec.key).await? {
                    Some(existing) if existing.status == FileStatus::Pending && is_visible_to(&existing, who) => {
                        Ok((existing, signed))
                    }
                    _ => Err(Error::Conflict("a file exists at this path; delete it first".into())),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn discard_blob(&self, backend: &Backend, key: &StorageKey) {
        if let Err(e) = backend.store.delete(key).await {
            tracing::error!(backend = %backend.name, %key, error = %e, "could not delete a refused blob");
        }
    }

    /// A file's record by id, whatever its project or status (for callers that checked the
    /// principal otherwise).
    pub async fn file_record(&self, id: &FileId) -> Result<Option<FileRecord>> {
        self.ctx.catalog.file(id).await
    }

    /// A file the principal may see (pending or ready, not deleted, not expired). Anything else
    /// — another project's file included — is `NotFound`.
    pub async fn visible_file(&self, who: &Principal, id: &FileId) -> Result<FileRecord> {
        let rec = self
            .ctx
            .catalog
            .file(id)
            .await?
            .filter(|r| is_visible_to(r, who))
            .ok_or_else(|| Error::not_found("no such file"))?;
        match rec.status {
            FileStatus::Deleted => Err(Error::not_found("no such file")),
            _ if rec.expires_at.is_some_and(|e| e <= self.ctx.clock.now()) => Err(Error::not_found("no such file")),
            _ => Ok(rec),
        }
    }

    /// A file ready to serve; a pending file is completed first if its bytes have arrived.
    pub async fn ready_file(&self, who: &Principal, id: &FileId) -> Result<FileRecord> {
        let rec = self.visible_file(who, id).await?;
        self.complete(rec).await
    }

    /// A page of ready files, newest first, and the cursor of the next page.
    pub async fn list(
        &self,
        who: &Principal,
        before: Option<FileId>,
        limit: u32,
    ) -> Result<(Vec<FileRecord>, Option<FileId>)> {
        let limit = limit.clamp(1, 1000);
        let q = FileQuery {
            project: who.project.clone(),
            workspace: who.workspace.clone(),
            status: FileStatus::Ready,
            before,
            live_at: self.ctx.clock.now(),
            limit: limit + 1,
        };
        let mut files = self.ctx.catalog.list_files(&q).await?;
        let next = if files.len() > limit as usize {
            files.truncate(limit as usize);
            files.last().map(|f| f.id.clone())
        } else {
            None
        };
        Ok((files, next))
    }

    /// Deletes a file: the record first (so it disappears at once), then the blob.
    pub async fn delete(&self, who: &Principal, id: &FileId) -> Result<()> {
        let rec = self.visible_file(who, id).await?;
        let deleted = self
            .events
            .change(
                Change::DeleteFile(&rec.id, self.ctx.clock.now()),
                &rec.project,
                EventType::FileDeleted,
                || file_data(&rec),
            )
            .await?;
        if deleted {
            let backend = self.ctx.backend(Some(&rec.backend))?;
            if rec.status == FileStatus::Pending {
                self.discard_pending(backend, &rec.key).await;
            } else {
                self.discard_blob(backend, &rec.key).await;
            }
        }
        Ok(())
    }
}
