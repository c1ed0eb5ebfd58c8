//! The lease a writer holds on an upload in the catalog: taken (waiting a while for another
//! holder), renewed as bytes flow, freed, or lost when the writer stalls.

use std::time::{Duration, Instant};

use super::LOCK_LEASE;
use crate::error::{Error, Result};
use crate::model::{UploadId, UploadRecord, UploadStatus};
use crate::uploads::Uploads;

/// How long a request waits for another's lock on an upload before answering 423.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(12);

/// The lease a writer holds on an upload, renewed as bytes flow.
pub(super) struct Lease<'a> {
    files: &'a Uploads,
    id: UploadId,
    pub(super) token: String,
    valid_until: Instant,
    renew_at: Instant,
}

/// Why a lease could not be kept: lost (another writer may hold it now), or the catalog failed.
/// Private to uploads: it reaches a client as the [`Error`] `From` makes of it.
#[derive(Debug)]
pub(super) enum Lapse {
    Lost,
    Failed(Error),
}

impl From<Lapse> for Error {
    fn from(l: Lapse) -> Error {
        match l {
            Lapse::Lost => lock_lost(),
            Lapse::Failed(e) => e,
        }
    }
}

impl Lease<'_> {
    /// Renews when due.
    pub(super) async fn keep(&mut self) -> std::result::Result<(), Lapse> {
        let now = Instant::now();
        if now >= self.valid_until {
            return Err(Lapse::Lost);
        }
        if now >= self.renew_at {
            let t = self.files.ctx.clock.now();
            let until = t + LOCK_LEASE.as_millis() as i64;
            match self
                .files
                .ctx
                .catalog
                .lock_upload(&self.id, &self.token, t, until)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Err(Lapse::Lost),
                Err(e) => return Err(Lapse::Failed(e)),
            }
            self.valid_until = now + LOCK_LEASE - LOCK_LEASE / 5;
            self.renew_at = now + LOCK_LEASE / 3;
        }
        Ok(())
    }
}

fn lock_lost() -> Error {
    Error::Conflict("the upload's lock was lost; resume from HEAD".into())
}

impl Uploads {
    /// Takes an upload's lock, waiting up to [`LOCK_WAIT`] for another holder's lease to end.
    pub(super) async fn lock(&self, id: &UploadId, wait: bool) -> Result<Lease<'_>> {
        self.lock_and_read(id, wait).await.map(|(lease, _)| lease)
    }

    /// [`FileService::lock`], with the upload as it stands under the lock (another instance
    /// may have moved it on before).
    pub(super) async fn lock_and_read(&self, id: &UploadId, wait: bool) -> Result<(Lease<'_>, UploadRecord)> {
        let token = uuid::Uuid::now_v7().simple().to_string();
        let started = Instant::now();
        loop {
            let now = self.ctx.clock.now();
            let until = now + LOCK_LEASE.as_millis() as i64;
            if let Some(u) = self.ctx.catalog.lock_and_read_upload(id, &token, now, until).await? {
                let at = Instant::now();
                let lease = Lease {
                    files: self,
                    id: id.clone(),
                    token,
                    valid_until: at + LOCK_LEASE - LOCK_LEASE / 5,
                    renew_at: at + LOCK_LEASE / 3,
                };
                return Ok((lease, u));
            }
            let current = self.ctx.catalog.upload(id).await?;
            if current.is_none_or(|u| u.status != UploadStatus::Active) {
                return Err(Error::not_found("no such upload"));
            }
            if !wait || started.elapsed() >= LOCK_WAIT {
                return Err(Error::Locked(
                    "another request is writing to this upload; retry shortly".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) async fn unlock(&self, lease: Lease<'_>) {
        if let Err(e) = self.ctx.catalog.unlock_upload(&lease.id, &lease.token).await {
            tracing::warn!(upload = %lease.id, error = %e, "could not free an upload lock (it lapses by itself)");
        }
    }
}
