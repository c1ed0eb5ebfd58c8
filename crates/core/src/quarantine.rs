//! Quarantine: a file whose policy names a scanner (`scan = "clamav"`) lands `quarantined` once
//! its upload checks pass, and nothing serves, links or hands it to a workflow until its
//! scanner's verdict: clean makes it `ready` (`file.ready`), infected makes it `rejected` — its
//! bytes deleted, the record keeping what was found (`file.rejected`).
//!
//! Each file is scanned once across instances, under the catalog lease `scan:<id>`. A scanner
//! that fails is not a verdict: the file stays quarantined, and the lease is handed to a holder
//! no instance is (`retry`) until `retry_secs` have passed, when any instance scans it again. An
//! upload waits for its file's verdict up to `wait_secs`; the scan goes on after that in a task
//! of its own, and the sweeper scans what is left.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Change;
use crate::context::{Context, secs_to_ms};
use crate::error::{Error, Result};
use crate::event_shapes::{EventType, file_data};
use crate::events::Events;
use crate::model::{FileRecord, FileStatus};
use crate::policy::UploadPolicy;
use crate::scan::Verdict;
use crate::settings::ScannerSetup;

/// How long one instance holds a file to scan it.
const SCAN_LEASE_MS: i64 = 5 * 60 * 1000;

/// How long the URL handed to a scanner that fetches for itself works.
const SCAN_URL_MS: i64 = 15 * 60 * 1000;

/// The holder of a file's lease between a failed scan and its retry.
const RETRY_HOLDER: &str = "retry";

/// How often an upload looks for the verdict of a scan another holder runs.
const VERDICT_POLL: Duration = Duration::from_millis(50);

/// How many quarantined files one sweep looks at.
const SWEEP_BATCH: u32 = 100;

/// Scans quarantined files and records verdicts.
#[derive(Debug, Clone)]
pub struct Quarantine {
    ctx: Arc<Context>,
    events: Arc<Events>,
}

impl Quarantine {
    pub(crate) fn new(ctx: Arc<Context>, events: Arc<Events>) -> Self {
        Quarantine { ctx, events }
    }

    /// The status a file of `project` that passed its checks lands in under `policy`.
    pub(crate) fn landing(ctx: &Context, project: &crate::model::ProjectId, policy: &UploadPolicy) -> FileStatus {
        match ctx.scanner_for(project, policy) {
            Some(_) => FileStatus::Quarantined,
            None => FileStatus::Ready,
        }
    }

    /// Waits, at most `wait_secs`, for a just-quarantined file's verdict. Infected is
    /// [`Error::Infected`]; no verdict yet (or a failing scanner) answers the file quarantined.
    /// The verdict may be another holder's: the sweeper, or another instance, may have taken
    /// the file's scan before this upload's own scan asked for it.
    pub(crate) async fn await_verdict(&self, rec: FileRecord) -> Result<FileRecord> {
        if rec.status != FileStatus::Quarantined {
            return Ok(rec);
        }
        let q = self.clone();
        let scanning = rec.clone();
        let task = tokio::spawn(async move { q.scan(scanning).await });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.ctx.config.quarantine.wait_secs);
        let done = match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(done))) if done.status == FileStatus::Quarantined => self.verdict_of_another(done, deadline).await,
            Ok(Ok(Ok(done))) => done,
            Ok(Ok(Err(e))) => {
                tracing::warn!(file = %rec.id, error = %e, "a file's scan failed; it stays quarantined and is scanned again later");
                return Ok(rec);
            }
            Ok(Err(_)) | Err(_) => return Ok(rec),
        };
        if done.status != FileStatus::Rejected {
            return Ok(done);
        }
        let why = done.reason.unwrap_or_default();
        if why.starts_with("infected") {
            Err(Error::Infected(format!(
                "the file was rejected by its virus scan: {why}"
            )))
        } else {
            Err(Error::TooLarge(format!(
                "the file is over its scanner's limit, and its policy rejects what cannot be scanned ({why})"
            )))
        }
    }

    /// The file as it stands once another holder's scan gave its verdict, or at `deadline`.
    async fn verdict_of_another(&self, rec: FileRecord, deadline: tokio::time::Instant) -> FileRecord {
        loop {
            let next = tokio::time::Instant::now() + VERDICT_POLL;
            if next >= deadline {
                return rec;
            }
            tokio::time::sleep_until(next).await;
            match self.ctx.catalog.file(&rec.id).await {
                Ok(Some(r)) if r.status != FileStatus::Quarantined => return r,
                Ok(Some(_)) => {}
                Ok(None) => return rec,
                Err(e) => {
                    tracing::warn!(file = %rec.id, error = %e, "could not read a quarantined file's verdict");
                    return rec;
                }
            }
        }
    }

    /// Scans a quarantined file once and records the verdict, unless another instance holds it
    /// (or it waits for a retry). Returns the record as it now is. A failing scanner is the
    /// error, and the file stays quarantined.
    pub async fn scan(&self, rec: FileRecord) -> Result<FileRecord> {
        let id = rec.id.clone();
        match self.scan_once(rec.clone()).await? {
            Some(done) => Ok(done),
            None => Ok(self.ctx.catalog.file(&id).await?.unwrap_or(rec)),
        }
    }

    /// [`Quarantine::scan`]; `None` when this call gave no verdict (the file was another
    /// instance's, waits for a retry, or was settled already).
    async fn scan_once(&self, rec: FileRecord) -> Result<Option<FileRecord>> {
        let catalog = &self.ctx.catalog;
        let policy = self.ctx.policy(&rec.policy)?;
        let name = self
            .ctx
            .scanner_for(&rec.project, policy)
            .unwrap_or_default()
            .to_owned();
        let Some(setup) = self.ctx.config.quarantine.scanners.get(&name) else {
            return Err(Error::Unavailable(format!(
                "file {} waits for no configured scanner ('{name}'); it stays quarantined",
                rec.id
            )));
        };
        let now = self.ctx.clock.now();
        let lease = format!("scan:{}", rec.id);
        // One holder per attempt, not per instance: an upload's own scan and the sweeper on the
        // same instance must not both hold a file (a lease is extended by its holder).
        let holder = format!(
            "{}:{}",
            self.ctx.instance,
            hex::encode(crate::auth::random_bytes::<6>()?)
        );
        if !catalog.try_lease(&lease, &holder, now, now + SCAN_LEASE_MS).await? {
            return Ok(None);
        }
        // Another instance may have given its verdict between our read and our lease.
        let rec = match catalog.file(&rec.id).await? {
            Some(r) if r.status == FileStatus::Quarantined => r,
            _ => {
                let _ = catalog.release_lease(&lease, &holder).await;
                return Ok(None);
            }
        };
        let backend = self.ctx.backend(Some(&rec.backend))?;
        let started = std::time::Instant::now();
        let outcome = self.run_engine(setup, backend, &rec).await;
        metrics::histogram!("filedock_scan_seconds", "scanner" => name.clone()).record(started.elapsed().as_secs_f64());
        let (to, reason) = match judge(setup, outcome, &rec) {
            Ok(v) => v,
            Err(e) => {
                metrics::counter!("filedock_scans_total", "scanner" => name, "verdict" => "error").increment(1);
                let retry = now + secs_to_ms(self.ctx.config.quarantine.retry_secs.max(1));
                let _ = catalog.release_lease(&lease, &holder).await;
                let _ = catalog.try_lease(&lease, RETRY_HOLDER, now, retry).await;
                return Err(e);
            }
        };
        let verdict = if to == FileStatus::Ready { "clean" } else { "rejected" };
        metrics::counter!("filedock_scans_total", "scanner" => name, "verdict" => verdict).increment(1);
        if to == FileStatus::Rejected
            && let Err(e) = backend.store.delete(&rec.key).await
        {
            tracing::error!(file = %rec.id, error = %e, "could not delete a rejected file's bytes");
        }
        let after = FileRecord {
            status: to,
            reason: reason.clone(),
            ..rec.clone()
        };
        let event = match to {
            FileStatus::Ready => EventType::FileReady,
            _ => EventType::FileRejected,
        };
        let change = Change::Verdict {
            id: &rec.id,
            to,
            reason: reason.as_deref(),
        };
        self.events
            .change(change, &rec.project, event, || file_data(&after))
            .await?;
        let _ = catalog.release_lease(&lease, &holder).await;
        Ok(Some(catalog.file(&rec.id).await?.unwrap_or(after)))
    }

    /// The engine's outcome for a file: sent its bytes, or handed a URL to fetch them from.
    async fn run_engine(
        &self,
        setup: &ScannerSetup,
        backend: &crate::settings::Backend,
        rec: &FileRecord,
    ) -> Result<Verdict> {
        if setup.engine.by_url() {
            let expires_at = self.ctx.clock.now() + SCAN_URL_MS;
            let signed = backend.store.presign_get(&crate::blob::PresignGet {
                key: rec.key.clone(),
                expires_at,
                expires_in_secs: (SCAN_URL_MS / 1000) as u64,
                response_content_type: None,
                response_content_disposition: None,
            })?;
            return setup.engine.scan_url(rec, &signed.url).await;
        }
        let got = backend.store.get(&rec.key, None).await?;
        setup.engine.scan(got.body, rec.size.unwrap_or(0)).await
    }

    /// The sweeper's pass: scans the quarantined files whose scan is due, oldest first; stops at
    /// the first failing scanner (the rest wait for the next pass). Returns how many got a
    /// verdict.
    pub async fn sweep(&self) -> Result<usize> {
        let files = self.ctx.catalog.quarantined_files(SWEEP_BATCH).await?;
        metrics::gauge!("filedock_quarantined_files").set(files.len() as f64);
        let mut settled = 0;
        for rec in files {
            match self.scan_once(rec).await {
                Ok(Some(r)) if r.status != FileStatus::Quarantined => settled += 1,
                Ok(_) => {}
                Err(e) => return if settled > 0 { Ok(settled) } else { Err(e) },
            }
        }
        Ok(settled)
    }

    /// Whether every configured scanner answers (for `/readyz`): the first that does not, named.
    pub async fn check_scanners(&self) -> Result<()> {
        for (name, setup) in &self.ctx.config.quarantine.scanners {
            setup
                .engine
                .ping()
                .await
                .map_err(|e| Error::Unavailable(format!("scanner '{name}': {e}")))?;
        }
        Ok(())
    }
}

/// What a scan's outcome makes of a quarantined file: its new status and why; an error (the
/// scanner failed) leaves it quarantined.
fn judge(setup: &ScannerSetup, outcome: Result<Verdict>, rec: &FileRecord) -> Result<(FileStatus, Option<String>)> {
    match outcome {
        Ok(Verdict::Clean) => Ok((FileStatus::Ready, None)),
        Ok(Verdict::Infected(found)) => Ok((FileStatus::Rejected, Some(format!("infected: {found}")))),
        Err(Error::TooLarge(_)) if setup.accept_too_large => {
            tracing::warn!(file = %rec.id, "a file over its scanner's limit is made ready unscanned (too_large = \"accept\")");
            Ok((FileStatus::Ready, None))
        }
        Err(Error::TooLarge(m)) => Ok((FileStatus::Rejected, Some(format!("too_large: {m}")))),
        Err(e) => Err(e),
    }
}
