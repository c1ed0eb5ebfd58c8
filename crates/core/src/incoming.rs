//! Presigned PUTs straight to a bucket land at the file's *incoming* key
//! ([`crate::blob::incoming_key`]), never at its own: completion copies them there, so a PUT
//! that comes again through the same URL cannot change a ready file, whatever the store honours.
//! The incoming object stays while its URL may still be used, so such a PUT is refused as the
//! client was promised (412 where the store honours the create-only header, as S3 does), and the
//! sweeper deletes it once no URL can still be in flight.

use crate::error::{Error, Result};
use crate::files::Files;
use crate::model::StorageKey;
use crate::settings::Backend;

/// The lease of the incoming sweep, and how long it holds.
const INCOMING_LEASE: &str = "sweep:incoming";
const INCOMING_LEASE_MS: i64 = 300_000;

impl Files {
    /// Copies what a presigned PUT left at the incoming key (if anything) to the file's key,
    /// server-side, unless the key holds it already (an earlier completion). Two completions
    /// racing both copy the same bytes. (On a store without create-only, a PUT through the URL
    /// in the moment between two racing completions' look and copy could be copied: the one
    /// window left, and only there.)
    pub(crate) async fn take_incoming(&self, backend: &Backend, key: &StorageKey) -> Result<()> {
        match backend.store.head(key).await {
            Ok(_) => return Ok(()),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let incoming = crate::blob::incoming_key(key)?;
        match backend.store.copy(&incoming, key).await {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a pending file's objects: its key and, on a bucket, its incoming key.
    pub(crate) async fn discard_pending(&self, backend: &Backend, key: &StorageKey) {
        if !backend.store.self_served()
            && let Ok(incoming) = crate::blob::incoming_key(key)
        {
            self.discard_blob(backend, &incoming).await;
        }
        self.discard_blob(backend, key).await;
    }

    /// Deletes what presigned PUTs left at incoming keys (see [`crate::blob::incoming_key`])
    /// once no completion will take it: its file completed (the incoming object kept until its
    /// URL expired), deleted or expired. Only objects older than the longest upload URL
    /// (`upload_ttl_secs`) and a minute are looked at, so nothing in flight is touched.
    /// Returns how many it deleted.
    pub async fn sweep_incoming(&self) -> Result<usize> {
        // One instance at a time: the listing is the cost, and one is enough.
        let now = self.ctx.clock.now();
        if !self
            .ctx
            .catalog
            .try_lease(INCOMING_LEASE, &self.ctx.instance, now, now + INCOMING_LEASE_MS)
            .await?
        {
            return Ok(0);
        }
        let swept = self.sweep_incoming_held().await;
        if let Err(e) = self.ctx.catalog.release_lease(INCOMING_LEASE, &self.ctx.instance).await {
            tracing::warn!(error = %e, "could not release the incoming sweep's lease; it ends by itself");
        }
        swept
    }

    async fn sweep_incoming_held(&self) -> Result<usize> {
        let prefix = format!("{}incoming/", crate::blob::INTERNAL_PREFIX);
        let cutoff = self.ctx.clock.now() - crate::context::secs_to_ms(self.ctx.config.upload_ttl_secs + 60);
        let mut swept = 0;
        for (name, backend) in self.ctx.backends() {
            if backend.store.self_served() {
                continue;
            }
            for (incoming, meta) in backend.store.list(&prefix).await? {
                if meta.modified > cutoff {
                    continue;
                }
                let key = crate::model::StorageKey::new(&incoming.as_str()[prefix.len()..])?;
                let pending = self
                    .ctx
                    .catalog
                    .file_by_key(name, &key)
                    .await?
                    .is_some_and(|f| f.status == crate::model::FileStatus::Pending);
                if !pending {
                    backend.store.delete(&incoming).await?;
                    swept += 1;
                }
            }
        }
        Ok(swept)
    }
}
