//! The retention sweep: files past their `expires_at` are deleted — the blob first, then the
//! record (a tombstone) — so an interrupted sweep leaves at worst a record whose blob is gone,
//! which the next sweep finishes. One instance sweeps at a time: the sweep holds a named lease
//! in the catalog, renewed after every batch.
//!
//! Expired files are invisible before the sweep reaches them: every route answers 404 (a stable
//! link 410), and every URL filedock signed for one was capped at its expiry.

use crate::catalog::Change;
use crate::error::{Error, Result};
use crate::event_shapes::{EventType, file_data};
use crate::files::Files;

/// The name of the sweep's lease.
const LEASE: &str = "sweep:files";
/// How long the lease holds without renewal, in ms.
const LEASE_MS: i64 = 120_000;
/// Files per batch.
const BATCH: u32 = 100;

impl Files {
    /// Deletes expired files until none is left, if no other instance is sweeping. Returns how
    /// many it deleted.
    pub async fn sweep_files(&self) -> Result<usize> {
        let now = self.ctx.clock.now();
        if !self
            .ctx
            .catalog
            .try_lease(LEASE, &self.ctx.instance, now, now + LEASE_MS)
            .await?
        {
            return Ok(0);
        }
        let swept = self.sweep_files_held().await;
        if let Err(e) = self.ctx.catalog.release_lease(LEASE, &self.ctx.instance).await {
            tracing::warn!(error = %e, "could not release the sweep lease; it ends by itself");
        }
        swept
    }

    async fn sweep_files_held(&self) -> Result<usize> {
        let mut swept = 0;
        loop {
            let now = self.ctx.clock.now();
            let batch = self.ctx.catalog.expired_files(now, BATCH).await?;
            if batch.is_empty() {
                return Ok(swept);
            }
            let mut progressed = false;
            for rec in batch {
                let backend = self.ctx.backend(Some(&rec.backend))?;
                if rec.status == crate::model::FileStatus::Pending && !backend.store.self_served() {
                    // What a presigned PUT left where completion would have taken it.
                    if let Err(e) = backend.store.delete(&crate::blob::incoming_key(&rec.key)?).await {
                        tracing::warn!(file = %rec.id, error = %e, "could not delete an expired upload; the next sweep retries");
                        continue;
                    }
                }
                match backend.store.delete(&rec.key).await {
                    Ok(()) | Err(Error::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(file = %rec.id, key = %rec.key, error = %e, "could not delete an expired blob; the next sweep retries");
                        continue;
                    }
                }
                let deleted = self
                    .events
                    .change(
                        Change::DeleteFile(&rec.id, now),
                        &rec.project,
                        EventType::FileDeleted,
                        || file_data(&rec),
                    )
                    .await?;
                if deleted {
                    swept += 1;
                }
                progressed = true;
            }
            if !progressed {
                return Ok(swept);
            }
            let now = self.ctx.clock.now();
            if !self
                .ctx
                .catalog
                .try_lease(LEASE, &self.ctx.instance, now, now + LEASE_MS)
                .await?
            {
                tracing::warn!("the sweep lease was taken over; stopping this sweep");
                return Ok(swept);
            }
        }
    }
}

/// Records pruned per statement: small enough that no statement holds the catalog long.
const PRUNE_BATCH: u32 = 1_000;

impl Files {
    /// Deletes records that ended longer ago than `[prune]` keeps them (deliveries, tasks,
    /// deleted files' rows, uploads), in batches; safe on every instance at once (each batch is
    /// one statement on rows no one changes any more). Returns how many.
    pub async fn prune_records(&self) -> Result<usize> {
        let p = &self.ctx.config.prune;
        let mut pruned = 0;
        for what in crate::catalog::Prune::ALL {
            let keep = match what {
                crate::catalog::Prune::Deliveries => p.deliveries_secs,
                crate::catalog::Prune::Tasks => p.tasks_secs,
                crate::catalog::Prune::Tombstones => p.tombstones_secs,
                crate::catalog::Prune::Uploads => p.uploads_secs,
                // Idempotency records carry their own expiry (24 h).
                crate::catalog::Prune::Idempotency => u64::MAX,
            };
            if keep == 0 {
                continue;
            }
            let now = self.ctx.clock.now();
            let before = match keep {
                u64::MAX => now,
                _ => now - crate::context::secs_to_ms(keep),
            };
            loop {
                let n = self.ctx.catalog.prune(what, before, PRUNE_BATCH).await?;
                pruned += n as usize;
                if n < u64::from(PRUNE_BATCH) {
                    break;
                }
            }
        }
        Ok(pruned)
    }
}
