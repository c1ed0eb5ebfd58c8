//! In-memory backends, for tests and for the conformance suites' own check. Not for production:
//! nothing survives a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::blob::{BlobStore, ByteStream, GetResult, ObjectMeta, PresignGet, PresignPut, PresignedRequest, PutOptions};
use crate::catalog::{Catalog, Completion, FileQuery};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::error::{Error, Result};
use crate::link::SelfServed;
use crate::model::{
    Credential, FileId, FileRecord, FileStatus, ProjectId, StorageKey, UploadId, UploadRecord, UploadStatus,
};
use crate::range::ByteRange;

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::internal_msg("memory backend lock poisoned"))
}

/// Bytes in a map.
#[derive(Debug)]
pub struct MemoryBlobStore {
    objects: Mutex<BTreeMap<String, (Bytes, ObjectMeta)>>,
    signing: Option<SelfServed>,
    counter: Mutex<u64>,
}

impl MemoryBlobStore {
    /// An empty store; with `signing`, its presigned URLs point at filedock's `/blob/` route.
    pub fn new(signing: Option<SelfServed>) -> Self {
        MemoryBlobStore {
            objects: Mutex::new(BTreeMap::new()),
            signing,
            counter: Mutex::new(0),
        }
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put(&self, key: &StorageKey, mut body: ByteStream, opts: PutOptions) -> Result<ObjectMeta> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        let mut objects = lock(&self.objects)?;
        if opts.create_only && objects.contains_key(key.as_str()) {
            return Err(Error::PreconditionFailed("an object already exists at this key".into()));
        }
        let mut n = lock(&self.counter)?;
        *n += 1;
        let meta = ObjectMeta {
            size: buf.len() as u64,
            etag: format!("\"m{n}\""),
            modified: SystemClock.now(),
        };
        objects.insert(key.as_str().to_owned(), (buf.freeze(), meta.clone()));
        Ok(meta)
    }

    async fn get(&self, key: &StorageKey, range: Option<ByteRange>) -> Result<GetResult> {
        let (bytes, meta) = lock(&self.objects)?
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| Error::not_found("no such key"))?;
        let r = match range {
            Some(r) => r.resolve(meta.size)?,
            None => 0..meta.size,
        };
        let body = bytes.slice(r.start as usize..r.end as usize);
        Ok(GetResult {
            meta,
            range: r,
            body: futures_util::stream::once(async move { Ok(body) }).boxed(),
        })
    }

    async fn head(&self, key: &StorageKey) -> Result<ObjectMeta> {
        lock(&self.objects)?
            .get(key.as_str())
            .map(|(_, m)| m.clone())
            .ok_or_else(|| Error::not_found("no such key"))
    }

    async fn delete(&self, key: &StorageKey) -> Result<()> {
        lock(&self.objects)?.remove(key.as_str());
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(StorageKey, ObjectMeta)>> {
        let objects = lock(&self.objects)?;
        objects
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, m))| Ok((StorageKey::new(k.clone())?, m.clone())))
            .collect()
    }

    fn presign_put(&self, req: &PresignPut) -> Result<PresignedRequest> {
        self.signing
            .as_ref()
            .ok_or_else(|| Error::invalid("this store cannot presign"))?
            .presign_put(req)
    }

    fn presign_get(&self, req: &PresignGet) -> Result<PresignedRequest> {
        self.signing
            .as_ref()
            .ok_or_else(|| Error::invalid("this store cannot presign"))?
            .presign_get(req)
    }

    fn self_served(&self) -> bool {
        self.signing.is_some()
    }
}

/// An upload lock: the holder's token and the end of its lease.
type Lease = (String, Timestamp);

/// Records in maps.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    credentials: Mutex<Vec<Credential>>,
    files: Mutex<HashMap<FileId, FileRecord>>,
    /// Uploads, each with its lock (token, lease end).
    uploads: Mutex<HashMap<UploadId, (UploadRecord, Option<Lease>)>>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn insert_credential(&self, c: &Credential) -> Result<()> {
        let mut all = lock(&self.credentials)?;
        if all.iter().any(|x| x.id == c.id) {
            return Err(Error::Conflict("credential id exists".into()));
        }
        all.push(c.clone());
        Ok(())
    }

    async fn credential(&self, id: &str) -> Result<Option<Credential>> {
        Ok(lock(&self.credentials)?.iter().find(|c| c.id == id).cloned())
    }

    async fn list_credentials(&self, project: Option<&ProjectId>) -> Result<Vec<Credential>> {
        Ok(lock(&self.credentials)?
            .iter()
            .filter(|c| project.is_none_or(|p| &c.project == p))
            .cloned()
            .collect())
    }

    async fn revoke_credential(&self, id: &str, at: Timestamp) -> Result<bool> {
        let mut all = lock(&self.credentials)?;
        match all.iter_mut().find(|c| c.id == id && c.revoked_at.is_none()) {
            Some(c) => {
                c.revoked_at = Some(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn insert_file(&self, f: &FileRecord) -> Result<()> {
        let mut files = lock(&self.files)?;
        let key_taken = files
            .values()
            .any(|x| x.status != FileStatus::Deleted && x.backend == f.backend && x.key == f.key);
        if files.contains_key(&f.id) || key_taken {
            return Err(Error::Conflict("a file with this id or storage key exists".into()));
        }
        files.insert(f.id.clone(), f.clone());
        Ok(())
    }

    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>> {
        Ok(lock(&self.files)?.get(id).cloned())
    }

    async fn file_by_key(&self, backend: &str, key: &StorageKey) -> Result<Option<FileRecord>> {
        Ok(lock(&self.files)?
            .values()
            .find(|f| f.status != FileStatus::Deleted && f.backend == backend && &f.key == key)
            .cloned())
    }

    async fn list_files(&self, q: &FileQuery) -> Result<Vec<FileRecord>> {
        let files = lock(&self.files)?;
        let mut out: Vec<FileRecord> = files
            .values()
            .filter(|f| {
                f.project == q.project
                    && f.status == q.status
                    && (q.workspace.is_none() || f.workspace == q.workspace)
                    && q.before.as_ref().is_none_or(|b| &f.id < b)
                    && f.expires_at.is_none_or(|e| e > q.live_at)
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| b.id.cmp(&a.id));
        out.truncate(q.limit as usize);
        Ok(out)
    }

    async fn complete_file(&self, id: &FileId, c: &Completion) -> Result<bool> {
        let mut files = lock(&self.files)?;
        match files.get_mut(id).filter(|f| f.status == FileStatus::Pending) {
            Some(f) => {
                f.status = FileStatus::Ready;
                f.size = Some(c.size);
                f.sha256 = c.sha256.clone();
                f.detected_type = Some(c.detected_type.clone());
                f.completed_at = Some(c.completed_at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_file(&self, id: &FileId, at: Timestamp) -> Result<bool> {
        let mut files = lock(&self.files)?;
        match files.get_mut(id).filter(|f| f.status != FileStatus::Deleted) {
            Some(f) => {
                f.status = FileStatus::Deleted;
                f.deleted_at = Some(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn remove_file(&self, id: &FileId) -> Result<()> {
        lock(&self.files)?.remove(id);
        Ok(())
    }

    async fn insert_upload(&self, u: &UploadRecord) -> Result<()> {
        let mut all = lock(&self.uploads)?;
        if all.contains_key(&u.id) {
            return Err(Error::Conflict("upload id exists".into()));
        }
        all.insert(u.id.clone(), (u.clone(), None));
        Ok(())
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>> {
        Ok(lock(&self.uploads)?.get(id).map(|(u, _)| u.clone()))
    }

    async fn lock_upload(&self, id: &UploadId, token: &str, now: Timestamp, until: Timestamp) -> Result<bool> {
        let mut all = lock(&self.uploads)?;
        match all.get_mut(id) {
            Some((u, held)) if u.status == UploadStatus::Active => {
                let free = match held {
                    None => true,
                    Some((t, lease)) => t == token || *lease < now,
                };
                if free {
                    *held = Some((token.to_owned(), until));
                }
                Ok(free)
            }
            _ => Ok(false),
        }
    }

    async fn unlock_upload(&self, id: &UploadId, token: &str) -> Result<()> {
        if let Some((_, held)) = lock(&self.uploads)?.get_mut(id)
            && held.as_ref().is_some_and(|(t, _)| t == token)
        {
            *held = None;
        }
        Ok(())
    }

    async fn advance_upload(
        &self,
        id: &UploadId,
        token: &str,
        offset: u64,
        length: Option<u64>,
        expires_at: Timestamp,
    ) -> Result<bool> {
        let mut all = lock(&self.uploads)?;
        match all.get_mut(id) {
            Some((u, Some((t, _)))) if t == token && u.status == UploadStatus::Active => {
                u.offset = offset;
                if length.is_some() {
                    u.length = length;
                }
                u.expires_at = expires_at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn finish_upload(&self, id: &UploadId, status: UploadStatus) -> Result<bool> {
        let mut all = lock(&self.uploads)?;
        match all.get_mut(id) {
            Some((u, held)) if u.status == UploadStatus::Active => {
                u.status = status;
                *held = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn expired_uploads(&self, now: Timestamp, limit: u32) -> Result<Vec<UploadRecord>> {
        let all = lock(&self.uploads)?;
        let mut out: Vec<UploadRecord> = all
            .values()
            .map(|(u, _)| u)
            .filter(|u| u.status == UploadStatus::Active && u.expires_at <= now)
            .cloned()
            .collect();
        out.sort_by_key(|u| u.expires_at);
        out.truncate(limit as usize);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_backends_pass_the_conformance_suites() {
        crate::conformance::blob_store_suite(&super::MemoryBlobStore::new(None), true).await;
        crate::conformance::catalog_suite(&super::MemoryCatalog::new()).await;
    }
}
