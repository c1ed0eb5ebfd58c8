//! [`MemoryBlobStore`]: bytes in a map.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::blob::{BlobStore, ByteStream, GetResult, ObjectMeta, PresignGet, PresignPut, PresignedRequest, PutOptions};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::link::SelfServed;
use crate::model::StorageKey;
use crate::range::ByteRange;

pub(super) fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
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
