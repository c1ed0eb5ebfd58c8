//! Bodies larger than a part: parts copied into pooled buffers and sent concurrently, each
//! retried; a body that fails aborts its multipart upload.

use std::time::Duration;

use bytes::Bytes;
use filedock_core::{BlobStore, ByteStream, Error, Part, Result, StorageKey};

use crate::parts::{Filled, PartBuf};

use super::common::PART_ATTEMPTS;
use super::common::one_chunk;
use super::common::part_size;

use super::store::S3Store;

/// Sends the parts of one multipart upload in order, one at a time in the background, so the
/// next part fills while the last one is sent: an upload holds at most two buffers.
pub(super) struct PartSender {
    pub(super) store: S3Store,
    pub(super) key: StorageKey,
    pub(super) handle: String,
    pub(super) next: u32,
    pub(super) in_flight: Option<tokio::task::JoinHandle<Result<Part>>>,
    pub(super) done: Vec<Part>,
}

impl PartSender {
    pub(super) fn new(store: &S3Store, key: &StorageKey, handle: &str, next: u32) -> Self {
        PartSender {
            store: store.clone(),
            key: key.clone(),
            handle: handle.to_owned(),
            next,
            in_flight: None,
            done: Vec::new(),
        }
    }

    /// Waits for the part before, then starts sending `buf` as the next part.
    pub(super) async fn send(&mut self, buf: PartBuf) -> Result<()> {
        self.wait().await?;
        let store = self.store.clone();
        let task = store.send_part(self.key.clone(), self.handle.clone(), self.next, buf.freeze());
        self.in_flight = Some(tokio::spawn(task));
        self.next += 1;
        Ok(())
    }

    pub(super) async fn wait(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.take() {
            self.done.push(task.await.map_err(Error::internal)??);
        }
        Ok(())
    }

    /// The parts sent, once all have arrived.
    pub(super) async fn finish(&mut self) -> Result<Vec<Part>> {
        self.wait().await?;
        Ok(std::mem::take(&mut self.done))
    }

    /// Stops the part being sent, if any.
    pub(super) fn cancel(&mut self) {
        if let Some(task) = self.in_flight.take() {
            task.abort();
        }
    }
}

impl Drop for PartSender {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl S3Store {
    /// Sends one part held in memory; a transport or server error is tried again.
    pub(super) async fn send_part(self, key: StorageKey, handle: String, number: u32, bytes: Bytes) -> Result<Part> {
        let mut attempt = 1;
        loop {
            let len = bytes.len() as u64;
            match self
                .put_part(&key, &handle, number, one_chunk(bytes.clone()), len)
                .await
            {
                Err(Error::Internal(e)) if attempt < PART_ATTEMPTS => {
                    tracing::warn!(%key, number, attempt, error = %e, "sending a part failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// Streams `first` (a full part), then the rest of `body` (starting with `carry`), as a
    /// multipart upload: each part is copied into a pool buffer and sent while the next fills.
    pub(super) async fn put_multipart(
        &self,
        key: &StorageKey,
        first: PartBuf,
        mut carry: Bytes,
        mut body: ByteStream,
        create_only: bool,
    ) -> Result<()> {
        if create_only && self.head(key).await.is_ok() {
            return Err(Error::PreconditionFailed("an object already exists at this key".into()));
        }
        let handle = self.create_multipart(key).await?;
        let mut sender = PartSender::new(self, key, &handle, 1);
        let streamed: Result<Vec<Part>> = async {
            sender.send(first).await?;
            for number in 2u32.. {
                if number > 10_000 {
                    return Err(Error::TooLarge(
                        "an S3 object holds at most 10,000 parts (72 GiB here)".into(),
                    ));
                }
                let mut buf = self.parts.take().await?;
                let filled = buf.fill(&mut body, &mut carry, part_size(number)).await?;
                if !buf.is_empty() {
                    sender.send(buf).await?;
                }
                if filled == Filled::End {
                    break;
                }
            }
            sender.finish().await
        }
        .await;
        let done = match streamed {
            Ok(parts) => self.complete(key, &handle, &parts, create_only).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if done.is_err() {
            sender.cancel();
            if let Err(abort) = self.abort_multipart(key, &handle).await {
                tracing::warn!(%key, error = %abort, "could not abort a failed multipart upload");
            }
        }
        done
    }
}
