//! `doctor`: what the catalog and the storage disagree on, and the repair.
//!
//! - An **orphan** is an object no live row owns (no row, or a deleted one). A write that has no
//!   row yet (a direct upload, whose row comes after its bytes are checked) records an intent
//!   first (`Catalog::insert_intent`), so an object without a row is either in flight (its
//!   intent's instance is alive: left alone) or left by a crash (its instance is gone: an orphan),
//!   and one with neither row nor intent is an orphan whatever its age (a sweep cut short, an
//!   object written before intents existed). Repair deletes orphans older than the grace period
//!   (`orphan_grace_secs`, which intents make safe at 0), and the intents of crashed writes.
//! - A **missing** blob is a ready row whose object is gone. Only an explicit repair
//!   (`doctor --fix`, [`Repair::All`]) turns the row into a tombstone, so the file answers 404
//!   rather than failing on every read. The start-up scan ([`Repair::Orphans`]) never does: one
//!   instance's view of a bucket (the wrong one, an empty one, one that lists late) is no reason
//!   to give up a file.
//! - A **size mismatch** is a ready row whose object has another size. It is reported, never
//!   changed: which side is right needs a person.

use std::collections::{BTreeSet, HashSet};

use crate::catalog::FileQuery;
use crate::context::secs_to_ms;
use crate::error::{Error, Result};
use crate::model::{FileRecord, FileStatus, ProjectId, StorageKey};
use crate::readiness::Readiness;

/// What `doctor` found (and, with repair, fixed).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DoctorReport {
    /// Objects looked at, over every backend.
    pub objects: usize,
    /// Ready rows looked at.
    pub rows: usize,
    /// `(backend, key, size)` of objects no live row owns (past the grace period).
    pub orphans: Vec<(String, StorageKey, u64)>,
    /// Orphans younger than the grace period, left alone.
    pub young_orphans: usize,
    /// Objects without a row whose write is in flight (its instance is alive), left alone.
    pub in_flight: usize,
    /// Ready rows whose object is gone.
    pub missing: Vec<FileRecord>,
    /// Ready rows whose object has another size: `(row, object size)`.
    pub size_mismatches: Vec<(FileRecord, u64)>,
    /// Whether the orphans were deleted (and, with [`Repair::All`], the missing rows made
    /// tombstones).
    pub repaired: bool,
}

impl DoctorReport {
    /// True when there is nothing to repair or report.
    pub fn is_clean(&self) -> bool {
        self.orphans.is_empty() && self.missing.is_empty() && self.size_mismatches.is_empty()
    }
}

/// What `doctor` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Nothing: report only.
    None,
    /// Delete orphans past the grace period (the start-up scan).
    Orphans,
    /// Also make rows of missing objects tombstones (`doctor --fix`, asked for by a person).
    All,
}

impl Readiness {
    /// Compares every backend's objects with the catalog's rows and repairs what `repair` allows:
    /// orphans older than `grace_secs` deleted, rows of missing objects made tombstones. Refuses
    /// to repair anything while the deployment identity is not verified.
    pub async fn doctor(&self, repair: Repair, grace_secs: u64) -> Result<DoctorReport> {
        if repair != Repair::None
            && let Some(why) = self.refusal()
        {
            return Err(Error::Unavailable(format!("not repairing: {why}")));
        }
        let mut report = DoctorReport::default();
        let now = self.ctx.clock.now();
        let cutoff = now.saturating_sub(secs_to_ms(grace_secs));
        let present = self.scan_objects(&mut report, cutoff).await?;
        self.scan_rows(&mut report, &present).await?;
        self.repair(&report, repair, now).await?;
        report.repaired = repair != Repair::None;
        Ok(report)
    }

    /// Lists every backend: counts objects, notes orphans (old enough to delete, or too young)
    /// and size mismatches; returns the (backend, key) of every object a live row owns.
    async fn scan_objects(&self, report: &mut DoctorReport, cutoff: i64) -> Result<HashSet<(String, String)>> {
        let mut present: HashSet<(String, String)> = HashSet::new();
        for (name, backend) in self.ctx.backends() {
            for (key, meta) in backend.store.list("").await? {
                if key.as_str().starts_with(crate::blob::INTERNAL_PREFIX) {
                    continue;
                }
                report.objects += 1;
                let owned = match self.ctx.catalog.file_by_key(name, &key).await? {
                    Some(rec) if rec.status != FileStatus::Deleted => {
                        if rec.status == FileStatus::Ready
                            && let Some(size) = rec.size
                            && size != meta.size
                        {
                            report.size_mismatches.push((rec, meta.size));
                        }
                        true
                    }
                    _ => false,
                };
                if owned {
                    present.insert((name.to_owned(), key.as_str().to_owned()));
                    continue;
                }
                match self.ctx.catalog.intent(name, &key).await? {
                    Some(i) if i.created_at > cutoff || self.writer_alive(&i.instance).await? => {
                        report.in_flight += 1;
                    }
                    Some(_) => report.orphans.push((name.to_owned(), key, meta.size)),
                    // Its row may have been written (and its intent removed) since it was read.
                    None if self.owned(name, &key).await? => {
                        present.insert((name.to_owned(), key.as_str().to_owned()));
                    }
                    None if meta.modified > cutoff => report.young_orphans += 1,
                    None => report.orphans.push((name.to_owned(), key, meta.size)),
                }
            }
        }
        Ok(present)
    }

    /// Reads every ready row and notes those whose object is gone (checked with a HEAD, since
    /// it may have been written after the listing).
    async fn scan_rows(&self, report: &mut DoctorReport, present: &HashSet<(String, String)>) -> Result<()> {
        // Every project that has ever had a key (files are only made by principals).
        let projects: BTreeSet<ProjectId> = self
            .ctx
            .catalog
            .list_credentials(None)
            .await?
            .into_iter()
            .map(|c| c.project)
            .collect();
        for project in projects {
            let mut before = None;
            loop {
                let page = self
                    .ctx
                    .catalog
                    .list_files(&FileQuery {
                        project: project.clone(),
                        workspace: None,
                        status: FileStatus::Ready,
                        before: before.clone(),
                        live_at: 0,
                        limit: 1000,
                    })
                    .await?;
                let Some(last) = page.last() else { break };
                before = Some(last.id.clone());
                for rec in page {
                    report.rows += 1;
                    if present.contains(&(rec.backend.clone(), rec.key.as_str().to_owned())) {
                        continue;
                    }
                    // Not in the listing: perhaps written since. Only the object itself can say.
                    let gone = match self.ctx.backend(Some(&rec.backend))?.store.head(&rec.key).await {
                        Ok(_) => false,
                        Err(crate::error::Error::NotFound(_)) => true,
                        Err(e) => return Err(e),
                    };
                    if gone {
                        report.missing.push(rec);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a live row (pending or ready) owns the object at `key`.
    async fn owned(&self, backend: &str, key: &StorageKey) -> Result<bool> {
        Ok(self
            .ctx
            .catalog
            .file_by_key(backend, key)
            .await?
            .is_some_and(|r| r.status != FileStatus::Deleted))
    }

    /// Whether an instance still says it is alive (see [`crate::context::Context::heartbeat`]).
    async fn writer_alive(&self, instance: &str) -> Result<bool> {
        // This instance is alive whatever its heartbeat says: right after a start its first
        // heartbeat may not be written yet, and its own uploads in flight must not look dead.
        if instance == self.ctx.instance {
            return Ok(true);
        }
        let lease = format!("{}{instance}", crate::context::INSTANCE_LEASE);
        Ok(self.ctx.catalog.live_leases(&lease, self.ctx.clock.now()).await? > 0)
    }

    /// Settles the intents of writes that ended without removing them (older than
    /// `grace_secs`, their instance gone): the object is deleted unless a live row owns it, then
    /// the intent. Intents of live instances are left to them. Returns how many were settled.
    pub async fn sweep_intents(&self, grace_secs: u64) -> Result<usize> {
        let before = self.ctx.clock.now().saturating_sub(secs_to_ms(grace_secs));
        let mut settled = 0;
        for i in self.ctx.catalog.intents(before, 100).await? {
            if self.writer_alive(&i.instance).await? {
                continue;
            }
            if !self.owned(&i.backend, &i.key).await? {
                // A backend no longer configured: its object, if any, is an orphan without an
                // intent now, which a scan with that backend configured deletes.
                if let Ok(backend) = self.ctx.backend(Some(&i.backend)) {
                    backend.store.delete(&i.key).await?;
                    tracing::info!(backend = %i.backend, key = %i.key, "deleted what a crashed upload wrote");
                }
            }
            self.ctx.catalog.delete_intent(&i.backend, &i.key).await?;
            settled += 1;
        }
        Ok(settled)
    }

    /// Deletes the orphans found (any repair), and makes rows without objects tombstones (all).
    async fn repair(&self, report: &DoctorReport, repair: Repair, now: i64) -> Result<()> {
        if repair != Repair::None {
            for (name, key, _) in &report.orphans {
                self.ctx.backend(Some(name))?.store.delete(key).await?;
                self.ctx.catalog.delete_intent(name, key).await?;
                tracing::info!(backend = %name, key = %key, "doctor: deleted an orphan object");
            }
        }
        if repair == Repair::All {
            for rec in &report.missing {
                self.ctx.catalog.delete_file(&rec.id, now).await?;
                tracing::info!(file = %rec.id, "doctor: the object is gone; the row is now a tombstone");
            }
        }
        Ok(())
    }
}
