//! The memory catalog's pruning of ended records (see [`crate::catalog::Prune`]).

use super::blob::lock;
use super::catalog::MemoryCatalog;
use crate::catalog::Prune;
use crate::clock::Timestamp;
use crate::error::Result;
use crate::model::{DeliveryStatus, FileId, FileStatus, TaskId, TaskStatus, UploadId, UploadStatus};

impl MemoryCatalog {
    /// See [`Catalog::prune`](crate::catalog::Catalog::prune).
    pub(super) fn prune_rows(&self, what: Prune, before: Timestamp, limit: u32) -> Result<u64> {
        let limit = limit as usize;
        let n = match what {
            Prune::Deliveries => {
                let mut all = lock(&self.deliveries)?;
                let old: Vec<String> = all
                    .values()
                    .filter(|d| d.status != DeliveryStatus::Pending && d.created_at < before)
                    .take(limit)
                    .map(|d| d.id.clone())
                    .collect();
                old.iter().filter(|id| all.remove(*id).is_some()).count()
            }
            Prune::Tasks => {
                let mut all = lock(&self.tasks)?;
                let old: Vec<TaskId> = all
                    .values()
                    .filter(|t| {
                        matches!(t.status, TaskStatus::Succeeded | TaskStatus::Failed)
                            && t.finished_at.is_some_and(|f| f < before)
                    })
                    .take(limit)
                    .map(|t| t.id.clone())
                    .collect();
                old.iter().filter(|id| all.remove(*id).is_some()).count()
            }
            Prune::Tombstones => {
                let mut all = lock(&self.files)?;
                let old: Vec<FileId> = all
                    .values()
                    .filter(|f| f.status == FileStatus::Deleted && f.deleted_at.is_some_and(|d| d < before))
                    .take(limit)
                    .map(|f| f.id.clone())
                    .collect();
                old.iter().filter(|id| all.remove(*id).is_some()).count()
            }
            Prune::Uploads => {
                let mut all = lock(&self.uploads)?;
                let old: Vec<UploadId> = all
                    .values()
                    .filter(|(u, _)| u.status != UploadStatus::Active && u.expires_at < before)
                    .take(limit)
                    .map(|(u, _)| u.id.clone())
                    .collect();
                old.iter().filter(|id| all.remove(*id).is_some()).count()
            }
            Prune::Idempotency => {
                let mut all = lock(&self.idempotency)?;
                let old: Vec<(String, String)> = all
                    .iter()
                    .filter(|(_, r)| r.expires_at < before)
                    .take(limit)
                    .map(|(k, _)| k.clone())
                    .collect();
                old.iter().filter(|k| all.remove(*k).is_some()).count()
            }
        };
        Ok(n as u64)
    }
}
