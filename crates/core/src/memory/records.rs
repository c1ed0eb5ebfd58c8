//! The memory catalog's records of writes: intents, failed fetches and idempotency keys.

use super::blob::lock;
use super::catalog::MemoryCatalog;
use crate::catalog::{Completion, Idempotent, Intent};
use crate::clock::Timestamp;
use crate::error::Result;
use crate::model::{FileId, FileRecord, FileStatus, ProjectId};

impl MemoryCatalog {
    /// Intents made before `before`, oldest first.
    pub(super) fn intents_before(&self, before: Timestamp, limit: u32) -> Result<Vec<Intent>> {
        let mut out: Vec<Intent> = lock(&self.intents)?
            .values()
            .filter(|i| i.created_at < before)
            .cloned()
            .collect();
        out.sort_by_key(|i| i.created_at);
        out.truncate(limit as usize);
        Ok(out)
    }

    /// `Catalog::complete_file`: only a pending file completes.
    pub(super) fn complete(&self, id: &FileId, c: &Completion) -> Result<bool> {
        let mut files = lock(&self.files)?;
        match files.get_mut(id).filter(|f| f.status == FileStatus::Pending) {
            Some(f) => {
                f.status = c.status;
                f.size = Some(c.size);
                f.sha256 = c.sha256.clone();
                f.detected_type = Some(c.detected_type.clone());
                f.completed_at = Some(c.completed_at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `Change::FailFile`: only a pending file fails.
    pub(super) fn fail_file(&self, id: &FileId, reason: &str, at: Timestamp) -> Result<bool> {
        let mut files = lock(&self.files)?;
        match files.get_mut(id).filter(|f| f.status == FileStatus::Pending) {
            Some(f) => {
                f.status = FileStatus::Failed;
                f.reason = Some(reason.to_owned());
                f.completed_at = Some(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `Change::Verdict`: only a quarantined file gets one.
    pub(super) fn verdict(&self, id: &FileId, to: FileStatus, reason: Option<&str>) -> Result<bool> {
        let mut files = lock(&self.files)?;
        match files.get_mut(id).filter(|f| f.status == FileStatus::Quarantined) {
            Some(f) => {
                f.status = to;
                f.reason = reason.map(str::to_owned);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Quarantined files, oldest first.
    pub(super) fn quarantined(&self, limit: u32) -> Result<Vec<FileRecord>> {
        let mut out: Vec<FileRecord> = lock(&self.files)?
            .values()
            .filter(|f| f.status == FileStatus::Quarantined)
            .cloned()
            .collect();
        out.sort_by_key(|f| f.created_at);
        out.truncate(limit as usize);
        Ok(out)
    }

    pub(super) fn idem_insert(&self, r: &Idempotent) -> Result<bool> {
        let mut all = lock(&self.idempotency)?;
        let k = (r.project.to_string(), r.key.clone());
        if all.contains_key(&k) {
            return Ok(false);
        }
        all.insert(k, r.clone());
        Ok(true)
    }

    /// Replaces the record at `at`'s key with `new` if `when` holds for it.
    pub(super) fn idem_update(
        &self,
        at: &Idempotent,
        new: &Idempotent,
        when: impl Fn(&Idempotent) -> bool,
    ) -> Result<bool> {
        let mut all = lock(&self.idempotency)?;
        match all.get_mut(&(at.project.to_string(), at.key.clone())) {
            Some(r) if when(r) => {
                *r = new.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub(super) fn idem_release(&self, project: &ProjectId, key: &str, instance: &str) -> Result<()> {
        let mut all = lock(&self.idempotency)?;
        let k = (project.to_string(), key.to_owned());
        if all.get(&k).is_some_and(|r| !r.done && r.instance == instance) {
            all.remove(&k);
        }
        Ok(())
    }
}
