//! [`MemoryCatalog`]: records in maps, with the catalog's contract.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::blob::lock;
use crate::catalog::{Catalog, Change, Completion, FileQuery, Idempotent, Intent, Prune};
use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::model::{
    Credential, DeliveryRecord, DeliveryStatus, FileId, FileRecord, FileStatus, ProjectId, StorageKey, TaskId,
    TaskRecord, TaskStatus, UploadId, UploadRecord, UploadStatus, WorkspaceId,
};

/// An upload lock: the holder's token and the end of its lease.
type Lease = (String, Timestamp);

/// Records in maps.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    pub(super) credentials: Mutex<Vec<Credential>>,
    pub(super) files: Mutex<HashMap<FileId, FileRecord>>,
    /// Uploads, each with its lock (token, lease end).
    pub(super) uploads: Mutex<HashMap<UploadId, (UploadRecord, Option<Lease>)>>,
    pub(super) tasks: Mutex<HashMap<TaskId, TaskRecord>>,
    pub(super) deliveries: Mutex<BTreeMap<String, DeliveryRecord>>,
    /// Named leases: holder and end.
    pub(super) leases: Mutex<HashMap<String, Lease>>,
    /// Deployment-wide settings.
    pub(super) settings: Mutex<HashMap<String, String>>,
    /// Intents by (backend, key).
    pub(super) intents: Mutex<HashMap<(String, String), Intent>>,
    /// Idempotency records by (project, key).
    pub(super) idempotency: Mutex<HashMap<(String, String), Idempotent>>,
    /// Fault injection: the next `insert_file` writes its row and then fails, as a COMMIT whose
    /// reply was lost does.
    lose_insert_reply: std::sync::atomic::AtomicBool,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `insert_file` write its row and then report a failure (a reply lost with
    /// the connection: the caller cannot tell whether the row was written).
    pub fn lose_next_insert_reply(&self) {
        self.lose_insert_reply.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn insert_credential(&self, c: &Credential) -> Result<()> {
        let mut all = lock(&self.credentials)?;
        if all.iter().any(|x| x.id == c.id) {
            return Err(Error::Conflict("credential id exists".into()));
        }
        all.push(c.clone());
        Ok(())
    }

    async fn credential(&self, id: &str) -> Result<Option<Credential>> {
        Ok(lock(&self.credentials)?.iter().find(|c| c.id == id).cloned())
    }

    async fn list_credentials(&self, project: Option<&ProjectId>) -> Result<Vec<Credential>> {
        Ok(lock(&self.credentials)?
            .iter()
            .filter(|c| project.is_none_or(|p| &c.project == p))
            .cloned()
            .collect())
    }

    async fn revoke_credential(&self, id: &str, at: Timestamp) -> Result<bool> {
        let mut all = lock(&self.credentials)?;
        match all.iter_mut().find(|c| c.id == id && c.revoked_at.is_none()) {
            Some(c) => {
                c.revoked_at = Some(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn insert_file(&self, f: &FileRecord) -> Result<()> {
        let mut files = lock(&self.files)?;
        let key_taken = files
            .values()
            .any(|x| x.status != FileStatus::Deleted && x.backend == f.backend && x.key == f.key);
        if files.contains_key(&f.id) || key_taken {
            return Err(Error::Conflict("a file with this id or storage key exists".into()));
        }
        files.insert(f.id.clone(), f.clone());
        if self.lose_insert_reply.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::internal_msg("connection closed before the COMMIT's reply"));
        }
        Ok(())
    }

    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>> {
        Ok(lock(&self.files)?.get(id).cloned())
    }

    async fn file_by_key(&self, backend: &str, key: &StorageKey) -> Result<Option<FileRecord>> {
        Ok(lock(&self.files)?
            .values()
            .find(|f| f.status != FileStatus::Deleted && f.backend == backend && &f.key == key)
            .cloned())
    }

    async fn list_files(&self, q: &FileQuery) -> Result<Vec<FileRecord>> {
        let files = lock(&self.files)?;
        let mut out: Vec<FileRecord> = files
            .values()
            .filter(|f| {
                f.project == q.project
                    && f.status == q.status
                    && (q.workspace.is_none() || f.workspace == q.workspace)
                    && q.before.as_ref().is_none_or(|b| &f.id < b)
                    && f.expires_at.is_none_or(|e| e > q.live_at)
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| b.id.cmp(&a.id));
        out.truncate(q.limit as usize);
        Ok(out)
    }

    async fn complete_file(&self, id: &FileId, c: &Completion) -> Result<bool> {
        self.complete(id, c)
    }

    async fn delete_file(&self, id: &FileId, at: Timestamp) -> Result<bool> {
        let mut files = lock(&self.files)?;
        match files.get_mut(id).filter(|f| f.status != FileStatus::Deleted) {
            Some(f) => {
                f.status = FileStatus::Deleted;
                f.deleted_at = Some(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn remove_file(&self, id: &FileId) -> Result<()> {
        lock(&self.files)?.remove(id);
        Ok(())
    }

    async fn insert_upload(&self, u: &UploadRecord) -> Result<()> {
        let mut all = lock(&self.uploads)?;
        if all.contains_key(&u.id) {
            return Err(Error::Conflict("upload id exists".into()));
        }
        all.insert(u.id.clone(), (u.clone(), None));
        Ok(())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        Ok(lock(&self.uploads)?.get(id).map(|(u, _)| u.clone()))
    }

    async fn lock_upload(&self, id: &UploadId, token: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let mut all = lock(&self.uploads)?;
        match all.get_mut(id) {
            Some((u, held)) if u.status == UploadStatus::Active => {
                let free = match held {
                    None => true,
                    Some((t, lease)) => t == token || *lease < now,
                };
                if free {
                    *held = Some((token.to_owned(), until));
                }
                Ok(free)
            }
            _ => Ok(false),
        }
    }

    async fn unlock_upload(&self, id: &UploadId, token: &str) -> Result<()> {
        if let Some((_, held)) = lock(&self.uploads)?.get_mut(id)
            && held.as_ref().is_some_and(|(t, _)| t == token)
        {
            *held = None;
        }
        Ok(())
    }

    async fn advance_upload(
        &self,
        id: &UploadId,
        token: &str,
        offset: u64,
        length: Option<u64>,
        expires_at: Timestamp,
    ) -> Result<bool> {
        let mut all = lock(&self.uploads)?;
        match all.get_mut(id) {
            Some((u, Some((t, _)))) if t == token && u.status == UploadStatus::Active => {
                u.offset = offset;
                if length.is_some() {
                    u.length = length;
                }
                u.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn finish_upload(&self, id: &UploadId, status: UploadStatus) -> Result<bool> {
        let mut all = lock(&self.uploads)?;
        match all.get_mut(id) {
            Some((u, held)) if u.status == UploadStatus::Active => {
                u.status = status;
                *held = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn expired_uploads(&self, now: Timestamp, limit: u32) -> Result<Vec<UploadRecord>> {
        let all = lock(&self.uploads)?;
        let mut out: Vec<UploadRecord> = all
            .values()
            .map(|(u, _)| u)
            .filter(|u| u.status == UploadStatus::Active && u.expires_at <= now)
            .cloned()
            .collect();
        out.sort_by_key(|u| u.expires_at);
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn expired_files(&self, now: Timestamp, limit: u32) -> Result<Vec<FileRecord>> {
        let files = lock(&self.files)?;
        let mut out: Vec<FileRecord> = files
            .values()
            .filter(|f| f.status != FileStatus::Deleted && f.expires_at.is_some_and(|e| e <= now))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.expires_at, &a.id).cmp(&(b.expires_at, &b.id)));
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn usage(&self, project: &ProjectId, now: Timestamp) -> Result<crate::limits::Usage> {
        let files = lock(&self.files)?;
        let live = files.values().filter(|f| {
            &f.project == project && f.status != FileStatus::Deleted && f.expires_at.is_none_or(|e| e > now)
        });
        let mut u = crate::limits::Usage::default();
        for f in live {
            u.files += 1;
            u.bytes = u.bytes.saturating_add(f.size.unwrap_or(0));
        }
        let uploads = lock(&self.uploads)?;
        let partials = uploads.values().map(|(u, _)| u).filter(|x| {
            &x.project == project
                && x.concat == Some(crate::model::Concat::Partial)
                && x.status != UploadStatus::Aborted
                && x.expires_at > now
        });
        for x in partials {
            u.files += 1;
            u.bytes = u.bytes.saturating_add(x.length.unwrap_or(x.offset));
        }
        Ok(u)
    }

    async fn insert_task(&self, t: &TaskRecord) -> Result<()> {
        let mut all = lock(&self.tasks)?;
        if all.contains_key(&t.id) {
            return Err(Error::Conflict("task id exists".into()));
        }
        all.insert(t.id.clone(), t.clone());
        Ok(())
    }

    async fn task(&self, id: &TaskId) -> Result<Option<TaskRecord>> {
        Ok(lock(&self.tasks)?.get(id).cloned())
    }

    async fn queued_tasks(
        &self,
        project: &ProjectId,
        workspace: Option<&WorkspaceId>,
        limit: u32,
    ) -> Result<Vec<TaskRecord>> {
        let all = lock(&self.tasks)?;
        let mut out: Vec<TaskRecord> = all
            .values()
            .filter(|t| {
                &t.project == project
                    && t.status == TaskStatus::Queued
                    && workspace.is_none_or(|w| t.workspace.as_ref() == Some(w))
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn claim_task(&self, id: &TaskId, runner: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let mut all = lock(&self.tasks)?;
        match all.get_mut(id).filter(|t| t.status == TaskStatus::Queued) {
            Some(t) => {
                t.status = TaskStatus::Running;
                t.runner = Some(runner.to_owned());
                t.attempts += 1;
                t.lease_until = Some(until);
                t.started_at = t.started_at.or(Some(now));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn renew_task(&self, id: &TaskId, runner: &str, until: Timestamp) -> Result<bool> {
        let mut all = lock(&self.tasks)?;
        match all
            .get_mut(id)
            .filter(|t| t.status == TaskStatus::Running && t.runner.as_deref() == Some(runner))
        {
            Some(t) => {
                t.lease_until = Some(until);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn finish_task(
        &self,
        id: &TaskId,
        runner: &str,
        status: TaskStatus,
        outputs: &[FileId],
        error: Option<&str>,
        at: Timestamp,
    ) -> Result<bool> {
        let mut all = lock(&self.tasks)?;
        match all
            .get_mut(id)
            .filter(|t| t.status == TaskStatus::Running && t.runner.as_deref() == Some(runner))
        {
            Some(t) => {
                t.status = status;
                t.outputs = outputs.to_vec();
                t.error = error.map(str::to_owned);
                t.finished_at = Some(at);
                t.lease_until = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn lapsed_tasks(&self, now: Timestamp, limit: u32) -> Result<Vec<TaskRecord>> {
        let all = lock(&self.tasks)?;
        let mut out: Vec<TaskRecord> = all
            .values()
            .filter(|t| t.status == TaskStatus::Running && t.lease_until.is_some_and(|l| l < now))
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.lease_until, &a.id).cmp(&(b.lease_until, &b.id)));
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn release_task(&self, id: &TaskId, now: Timestamp, failure: Option<&str>) -> Result<bool> {
        let mut all = lock(&self.tasks)?;
        match all
            .get_mut(id)
            .filter(|t| t.status == TaskStatus::Running && t.lease_until.is_some_and(|l| l < now))
        {
            Some(t) => {
                t.lease_until = None;
                match failure {
                    None => {
                        t.status = TaskStatus::Queued;
                        t.runner = None;
                    }
                    Some(reason) => {
                        t.status = TaskStatus::Failed;
                        t.error = Some(reason.to_owned());
                        t.finished_at = Some(now);
                    }
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn apply(&self, change: Change<'_>, deliveries: &[DeliveryRecord]) -> Result<bool> {
        // One process's maps: a change and its deliveries cannot be parted by a crash here.
        let done = match change {
            Change::InsertFile(f) => {
                self.insert_file(f).await?;
                true
            }
            Change::CompleteFile(id, c) => self.complete_file(id, c).await?,
            Change::DeleteFile(id, at) => self.delete_file(id, at).await?,
            Change::FailFile { id, reason, at } => self.fail_file(id, reason, at)?,
            Change::Verdict { id, to, reason } => self.verdict(id, to, reason)?,
            Change::FinishTask {
                id,
                runner,
                status,
                outputs,
                error,
                at,
            } => self.finish_task(id, runner, status, outputs, error, at).await?,
            Change::FailLapsedTask { id, now, reason } => self.release_task(id, now, Some(reason)).await?,
        };
        if done {
            for d in deliveries {
                self.insert_delivery(d).await?;
            }
        }
        Ok(done)
    }

    async fn prune(&self, what: Prune, before: Timestamp, limit: u32) -> Result<u64> {
        self.prune_rows(what, before, limit)
    }

    async fn quarantined_files(&self, limit: u32) -> Result<Vec<FileRecord>> {
        self.quarantined(limit)
    }

    async fn insert_idempotent(&self, r: &Idempotent) -> Result<bool> {
        self.idem_insert(r)
    }

    async fn idempotent(&self, project: &ProjectId, key: &str) -> Result<Option<Idempotent>> {
        Ok(lock(&self.idempotency)?
            .get(&(project.to_string(), key.to_owned()))
            .cloned())
    }

    async fn replace_idempotent(&self, old: &Idempotent, new: &Idempotent) -> Result<bool> {
        self.idem_update(old, new, |r| {
            r.instance == old.instance && r.created_at == old.created_at
        })
    }

    async fn settle_idempotent(&self, new: &Idempotent) -> Result<bool> {
        self.idem_update(new, new, |r| !r.done && r.instance == new.instance)
    }

    async fn release_idempotent(&self, project: &ProjectId, key: &str, instance: &str) -> Result<()> {
        self.idem_release(project, key, instance)
    }

    async fn insert_intent(&self, i: &Intent) -> Result<()> {
        lock(&self.intents)?.insert((i.backend.clone(), i.key.as_str().to_owned()), i.clone());
        Ok(())
    }

    async fn delete_intent(&self, backend: &str, key: &StorageKey) -> Result<()> {
        lock(&self.intents)?.remove(&(backend.to_owned(), key.as_str().to_owned()));
        Ok(())
    }

    async fn intent(&self, backend: &str, key: &StorageKey) -> Result<Option<Intent>> {
        Ok(lock(&self.intents)?
            .get(&(backend.to_owned(), key.as_str().to_owned()))
            .cloned())
    }

    async fn intents(&self, before: Timestamp, limit: u32) -> Result<Vec<Intent>> {
        self.intents_before(before, limit)
    }

    async fn insert_delivery(&self, d: &DeliveryRecord) -> Result<()> {
        let mut all = lock(&self.deliveries)?;
        if all.contains_key(&d.id) {
            return Err(Error::Conflict("delivery id exists".into()));
        }
        all.insert(d.id.clone(), d.clone());
        Ok(())
    }

    async fn due_deliveries(&self, now: Timestamp, limit: u32) -> Result<Vec<DeliveryRecord>> {
        let all = lock(&self.deliveries)?;
        let mut out: Vec<DeliveryRecord> = all
            .values()
            .filter(|d| d.status == DeliveryStatus::Pending && d.next_at <= now)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.next_at, &a.id).cmp(&(b.next_at, &b.id)));
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn lease_delivery(&self, id: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let mut all = lock(&self.deliveries)?;
        match all
            .get_mut(id)
            .filter(|d| d.status == DeliveryStatus::Pending && d.next_at <= now)
        {
            Some(d) => {
                d.next_at = until;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn settle_delivery(
        &self,
        id: &str,
        status: DeliveryStatus,
        attempts: u32,
        next_at: Timestamp,
        last_error: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        let mut all = lock(&self.deliveries)?;
        if let Some(d) = all.get_mut(id).filter(|d| d.status == DeliveryStatus::Pending) {
            d.status = status;
            d.attempts = attempts;
            d.next_at = next_at;
            d.last_error = last_error.map(str::to_owned);
            if status == DeliveryStatus::Delivered {
                d.delivered_at = Some(at);
            }
        }
        Ok(())
    }

    async fn deliveries(&self, project: &ProjectId, limit: u32) -> Result<Vec<DeliveryRecord>> {
        Ok(lock(&self.deliveries)?
            .values()
            .rev()
            .filter(|d| &d.project == project)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn try_lease(&self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let mut all = lock(&self.leases)?;
        let free = all.get(name).is_none_or(|(h, end)| h == holder || *end < now);
        if free {
            all.insert(name.to_owned(), (holder.to_owned(), until));
        }
        Ok(free)
    }

    async fn live_leases(&self, prefix: &str, now: Timestamp) -> Result<u32> {
        let all = lock(&self.leases)?;
        Ok(all
            .iter()
            .filter(|(n, (_, until))| n.starts_with(prefix) && *until > now)
            .count() as u32)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut all = lock(&self.leases)?;
        if all.get(name).is_some_and(|(h, _)| h == holder) {
            all.remove(name);
        }
        Ok(())
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(lock(&self.settings)?.get(name).cloned())
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String> {
        Ok(lock(&self.settings)?
            .entry(name.to_owned())
            .or_insert_with(|| value.to_owned())
            .clone())
    }

    async fn has_files_on(&self, backend: &str) -> Result<bool> {
        Ok(lock(&self.files)?
            .values()
            .any(|f| f.backend == backend && f.status != FileStatus::Deleted))
    }
}
