//! The memory catalog's records of writes: intents, failed fetches and idempotency keys.

use super::blob::lock;
use super::catalog::MemoryCatalog;
use crate::catalog::{Idempotent, Intent};
use crate::clock::Timestamp;
use crate::error::Result;
use crate::model::{FileId, FileStatus, ProjectId};

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
