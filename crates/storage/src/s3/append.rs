//! tus on S3: bytes cut into parts of one multipart upload, with what is left over kept as a
//! staging object until a part is full; what was acknowledged is read back from the bucket.

use bytes::Bytes;
use filedock_core::{BlobStore, ByteStream, Error, Part, Result, StorageKey};
use futures_util::StreamExt;

use crate::parts::{Filled, PartBuf};

use super::common::APPEND_PART;
use super::common::APPENDS_REMEMBERED;
use super::common::AppendState;
use super::common::LAZY_HANDLE;
use super::common::staging_prefix;
use super::common::upload_id_key;
use super::sender::PartSender;
use super::store::S3Store;

impl S3Store {
    /// Staging objects of a resumable upload: `(start offset, size, key)`, by offset.
    pub(super) async fn staged(&self, key: &StorageKey) -> Result<Vec<(u64, u64, StorageKey)>> {
        let prefix = staging_prefix(key);
        let mut out = Vec::new();
        for (k, meta) in self.list(&prefix).await? {
            if let Ok(start) = k.as_str()[prefix.len()..].parse::<u64>() {
                out.push((start, meta.size, k));
            }
        }
        out.sort_by_key(|(start, _, _)| *start);
        Ok(out)
    }

    /// Takes what this instance remembers of an upload, if its last append ended at `offset`.
    pub(super) fn remembered(&self, key: &StorageKey, offset: u64) -> Option<AppendState> {
        let mut appends = self.appends.lock().ok()?;
        appends.remove(key.as_str()).filter(|s| s.end == offset)
    }

    pub(super) fn remember(&self, key: &StorageKey, state: AppendState) {
        if let Ok(mut appends) = self.appends.lock() {
            if appends.len() >= APPENDS_REMEMBERED {
                appends.clear();
            }
            appends.insert(key.as_str().to_owned(), state);
        }
    }

    pub(super) fn forget(&self, key: &StorageKey) {
        if let Ok(mut appends) = self.appends.lock() {
            appends.remove(key.as_str());
        }
    }

    /// The multipart upload of a resumable upload, if it has one: its handle, or for a
    /// [`LAZY_HANDLE`] the id written once its first part was sent.
    pub(super) async fn upload_id(&self, key: &StorageKey, handle: &str) -> Result<Option<String>> {
        if handle != LAZY_HANDLE {
            return Ok(Some(handle.to_owned()));
        }
        let id = match self.get_object(&upload_id_key(key)?, None).await {
            Ok(body) => super::rest::read_all(body).await?,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let id = String::from_utf8(id)
            .map_err(|_| Error::internal_msg(format!("resumable upload {key}: its upload id is not text")))?;
        Ok(Some(id))
    }

    /// Deletes a resumable upload's staging objects and its recorded upload id.
    pub(super) async fn drop_staging(&self, key: &StorageKey, staged: Vec<StorageKey>) -> Result<()> {
        for k in staged {
            self.delete(&k).await?;
        }
        self.delete(&upload_id_key(key)?).await
    }

    /// What of a resumable upload the offset `offset` acknowledges: the parts wholly before it
    /// and the staging objects that continue them up to it. Anything else (written, then never
    /// acknowledged) is dropped or left to be replaced.
    pub(super) async fn acknowledged(
        &self,
        key: &StorageKey,
        upload_id: Option<&str>,
        offset: u64,
    ) -> Result<(Vec<Part>, Vec<StorageKey>)> {
        let mut parts = Vec::new();
        let mut end = 0;
        let listed = match upload_id {
            Some(id) => self.list_parts(key, id).await?,
            None => Vec::new(),
        };
        for p in listed {
            if p.number as usize != parts.len() + 1 || end + p.size > offset {
                break;
            }
            end += p.size;
            parts.push(p);
        }
        let mut staged = Vec::new();
        for (start, size, k) in self.staged(key).await? {
            if start >= end && start + size <= offset {
                if start != end {
                    return Err(Error::internal_msg(format!(
                        "resumable upload {key}: bytes {end}..{start} are missing from staging"
                    )));
                }
                end += size;
                staged.push(k);
            } else {
                self.delete(&k).await?;
            }
        }
        if end != offset {
            return Err(Error::internal_msg(format!(
                "resumable upload {key}: {end} bytes are stored, not the {offset} recorded"
            )));
        }
        Ok((parts, staged))
    }

    /// Keeps bytes that make no whole part yet as a staging object at offset `at`.
    pub(super) async fn stage_rest(&self, key: &StorageKey, at: u64, buf: PartBuf) -> Result<StorageKey> {
        let staged = StorageKey::new(format!("{}{at:020}", staging_prefix(key)))?;
        self.put_bytes(&staged, buf.freeze(), false).await?;
        Ok(staged)
    }

    /// Appends `body` at `offset` to a resumable upload holding `parts` and the staging objects
    /// `staged` up to it; returns what the upload then holds.
    pub(super) async fn append_after(
        &self,
        key: &StorageKey,
        mut upload_id: Option<String>,
        offset: u64,
        parts: Vec<Part>,
        staged: Vec<StorageKey>,
        mut body: ByteStream,
    ) -> Result<(AppendState, Option<Error>)> {
        let staged_len =
            usize::try_from(offset - parts.iter().map(|p| p.size).sum::<u64>()).map_err(Error::internal)?;
        if staged_len >= APPEND_PART {
            return Err(Error::internal_msg(format!(
                "resumable upload {key}: {staged_len} bytes staged, a part's worth"
            )));
        }
        // Made with the first part (and the multipart upload with it, for a lazy handle).
        let mut sender: Option<PartSender> = None;
        let mut carry = Bytes::new();
        let mut failed = None;
        // The first part continues the staged bytes: only the new bytes are read from the body,
        // and the staged ones are read back only once the part is complete, so a run of small
        // PATCHes costs one PUT each, not a re-read of the staged remainder each time.
        let mut staged_now = staged.clone();
        let mut unread = staged;
        let mut end = offset;
        loop {
            let mut buf = self.parts.take().await?;
            let want = APPEND_PART - if unread.is_empty() { 0 } else { staged_len };
            let filled = match buf.fill(&mut body, &mut carry, want).await {
                Ok(f) => f,
                Err(e) => {
                    failed = Some(e);
                    Filled::End
                }
            };
            end += buf.len() as u64;
            if filled == Filled::End {
                // Only bytes new in this call are staged; the staged ones before them stay.
                if !buf.is_empty() {
                    if let Some(sender) = sender.as_mut() {
                        sender.wait().await?;
                    }
                    let at = end - buf.len() as u64;
                    staged_now.push(self.stage_rest(key, at, buf).await?);
                }
                break;
            }
            if !unread.is_empty() {
                buf.shift_right(staged_len)?;
                self.read_front(&std::mem::take(&mut unread), &mut buf, staged_len)
                    .await?;
            }
            // The staged bytes before this part are in it now (their objects go at the finish).
            staged_now.clear();
            let sender = match &mut sender {
                Some(s) => s,
                None => {
                    let id = match &upload_id {
                        Some(id) => id.clone(),
                        None => upload_id.insert(self.start_multipart(key).await?).clone(),
                    };
                    sender.insert(PartSender::new(self, key, &id, parts.len() as u32 + 1))
                }
            };
            sender.send(buf).await?;
        }
        let mut all = parts;
        if let Some(sender) = sender.as_mut() {
            all.extend(sender.finish().await?);
        }
        let state = AppendState {
            end,
            upload_id,
            parts: all,
            staged: staged_now,
        };
        Ok((state, failed))
    }

    /// Copies the objects `keys`, in order, into the front of `buf` (made room for with
    /// [`PartBuf::shift_right`]); they must fill exactly `len` bytes.
    pub(super) async fn read_front(&self, keys: &[StorageKey], buf: &mut PartBuf, len: usize) -> Result<()> {
        let mut at = 0;
        for k in keys {
            let mut body = self.get(k, None).await?.body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                buf.write_front(at, &chunk)?;
                at += chunk.len();
            }
        }
        if at != len {
            return Err(Error::internal_msg(format!(
                "staging objects held {at} bytes, not the {len} expected"
            )));
        }
        Ok(())
    }
}
