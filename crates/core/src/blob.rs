//! The [`BlobStore`] trait: where bytes live. A store knows keys and bytes only — no owners, no
//! types, no dialects; core does hashing, limits and type checks before a store commits.

use std::fmt::Debug;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::model::StorageKey;
use crate::range::ByteRange;

/// A stream of body chunks. An `Err` item means the body is bad (too large, wrong type, client
/// gone): a store that sees one must not commit.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Options of [`BlobStore::put`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Fail with [`crate::Error::PreconditionFailed`] if the key already holds an object.
    pub create_only: bool,
}

/// What a store knows of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// An opaque, quoted validator that changes when the object changes.
    pub etag: String,
    pub modified: Timestamp,
}

/// An object, or a range of one, being read.
pub struct GetResult {
    pub meta: ObjectMeta,
    /// The byte range the body covers (the whole object when no range was asked for).
    pub range: Range<u64>,
    pub body: ByteStream,
}

impl Debug for GetResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetResult")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// A presigned upload to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignPut {
    pub key: StorageKey,
    /// Signed: the PUT must carry exactly this `Content-Length`.
    pub content_length: Option<u64>,
    /// Signed: the PUT must carry exactly this `Content-Type`.
    pub content_type: Option<String>,
    /// Signed: the PUT must carry the backend's create-only header.
    pub create_only: bool,
    /// Largest body accepted when no length is signed (stores that can enforce it).
    pub max_size: Option<u64>,
    /// When the URL stops working, by filedock's clock (stores that filedock serves check this).
    pub expires_at: Timestamp,
    /// The same, as a duration from now (stores that sign against their own clock, like S3).
    pub expires_in_secs: u64,
}

/// A presigned download to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignGet {
    pub key: StorageKey,
    /// When the URL stops working, by filedock's clock (stores that filedock serves check this).
    pub expires_at: Timestamp,
    /// The same, as a duration from now (stores that sign against their own clock, like S3).
    pub expires_in_secs: u64,
    pub response_content_type: Option<String>,
    pub response_content_disposition: Option<String>,
}

/// Keys under this prefix belong to a backend's own bookkeeping (e.g. the staged chunks of
/// resumable uploads on S3); they are never a file's object and `doctor` leaves them alone (the
/// upload sweeper removes them with their upload).
pub const INTERNAL_PREFIX: &str = ".filedock/";

/// Where a client's presigned PUT lands on a store that does not serve its own URLs (S3): never
/// at the file's key. Completion copies it to the key, for which no URL was ever signed, so a
/// second PUT through the same URL cannot change a ready file, whatever the store honours; the
/// incoming object stays until its URL expired (so that PUT is still refused where the store
/// honours create-only), then the sweeper deletes it.
pub fn incoming_key(key: &StorageKey) -> crate::error::Result<StorageKey> {
    StorageKey::new(format!("{INTERNAL_PREFIX}incoming/{key}"))
}

/// A request a client can make without credentials of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: &'static str,
    pub url: String,
    /// Headers the client must send as given (they are part of the signature).
    pub headers: Vec<(String, String)>,
    pub expires_at: Timestamp,
}

/// One stored part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1 to 10,000.
    pub number: u32,
    /// As the part's PUT answered it (quoted).
    pub etag: String,
    pub size: u64,
}

/// A presigned part upload to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignPart {
    pub key: StorageKey,
    /// The store's handle on the multipart upload (from [`BlobStore::create_multipart`]).
    pub handle: String,
    /// filedock's id of the upload (self-served stores put it in the URL).
    pub upload_id: String,
    pub number: u32,
    /// Signed: the PUT must carry exactly this `Content-Length`.
    pub content_length: u64,
    pub expires_at: Timestamp,
    pub expires_in_secs: u64,
}

fn unsupported(what: &str) -> crate::error::Error {
    crate::error::Error::Unavailable(format!("this storage backend does not support {what}"))
}

/// A place to keep bytes.
///
/// # Contract
/// - `put` consumes the stream and makes the object visible only once the stream ended without
///   an error and the bytes are durable; on any error nothing is visible and nothing is left
///   behind. With `create_only`, an existing object yields `PreconditionFailed` and is untouched.
///   Without it, a put replaces the object atomically.
/// - `get`, `head` of a missing key yield `NotFound`; `get` with a range that does not overlap
///   the object yields `RangeNotSatisfiable(size)`.
/// - `delete` is idempotent: deleting a missing key is `Ok`.
/// - `presign_*` do no I/O. Stores whose URLs filedock serves itself say so in
///   [`BlobStore::self_served`].
/// - Multipart (S3's model): `create_multipart` returns a handle; parts are put in any order,
///   a part put twice is replaced; `complete_multipart` joins the listed parts, in the order
///   given, into the object (create-only: `PreconditionFailed` if the key holds one) and drops
///   the handle; `abort_multipart` drops the handle and every part, and is idempotent. The
///   store enforces no minimum part size: core does.
/// - Resumable appends (tus): `append_create` returns a handle (a store may create nothing
///   until the first append, at offset 0); `append` writes a body at an offset the caller tracks (the store discards anything it holds past that offset first),
///   and returns the new offset: on a body error it keeps, durably, what arrived before it and
///   reports the error with that offset; `append_finish` publishes exactly `length` bytes at
///   the key (create-only) and drops the handle; `append_abort` drops it, idempotently.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Stores a body under a key.
    async fn put(&self, key: &StorageKey, body: ByteStream, opts: PutOptions) -> Result<ObjectMeta>;
    /// Reads an object, or a range of it.
    async fn get(&self, key: &StorageKey, range: Option<ByteRange>) -> Result<GetResult>;
    /// Describes an object.
    async fn head(&self, key: &StorageKey) -> Result<ObjectMeta>;
    /// Removes an object.
    async fn delete(&self, key: &StorageKey) -> Result<()>;
    /// Removes many objects (a sweep's batch); returns the keys it could not remove, each with
    /// why (a missing key is removed already). By default [`BlobStore::delete`], 16 at a time;
    /// a store with a batch call uses it.
    async fn delete_many(&self, keys: &[StorageKey]) -> Result<Vec<(StorageKey, crate::error::Error)>> {
        use futures_util::StreamExt as _;
        // By index: a closure over `&StorageKey` would not be `Send` for every lifetime.
        let failed = futures_util::stream::iter(0..keys.len())
            .map(|i| async move { self.delete(&keys[i]).await.err().map(|e| (keys[i].clone(), e)) })
            .buffer_unordered(16)
            .filter_map(std::future::ready)
            .collect()
            .await;
        Ok(failed)
    }
    /// Lists every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(StorageKey, ObjectMeta)>>;
    /// A URL to upload one object directly.
    fn presign_put(&self, req: &PresignPut) -> Result<PresignedRequest>;
    /// A URL to download one object directly.
    fn presign_get(&self, req: &PresignGet) -> Result<PresignedRequest>;
    /// Starts a multipart upload of `key`; returns the store's handle.
    async fn create_multipart(&self, key: &StorageKey) -> Result<String> {
        let _ = key;
        Err(unsupported("multipart uploads"))
    }
    /// Stores one part from a body of exactly `len` bytes; returns the part as listed.
    async fn put_part(&self, key: &StorageKey, handle: &str, number: u32, body: ByteStream, len: u64) -> Result<Part> {
        let _ = (key, handle, number, body, len);
        Err(unsupported("multipart uploads"))
    }
    /// The parts stored so far, by number.
    async fn list_parts(&self, key: &StorageKey, handle: &str) -> Result<Vec<Part>> {
        let _ = (key, handle);
        Err(unsupported("multipart uploads"))
    }
    /// Joins parts (already checked by core) into the object.
    async fn complete_multipart(&self, key: &StorageKey, handle: &str, parts: &[Part]) -> Result<ObjectMeta> {
        let _ = (key, handle, parts);
        Err(unsupported("multipart uploads"))
    }
    /// Drops a multipart upload and its parts.
    async fn abort_multipart(&self, key: &StorageKey, handle: &str) -> Result<()> {
        let _ = (key, handle);
        Err(unsupported("multipart uploads"))
    }
    /// A URL to upload one part directly.
    fn presign_part(&self, req: &PresignPart) -> Result<PresignedRequest> {
        let _ = req;
        Err(unsupported("multipart uploads"))
    }

    /// Starts a resumable upload of `key`; returns the store's handle.
    async fn append_create(&self, key: &StorageKey) -> Result<String> {
        let _ = key;
        Err(unsupported("resumable uploads"))
    }
    /// Appends a body at `offset`. Returns the new offset, and the body's error if it failed
    /// part way (what arrived before it is kept).
    async fn append(
        &self,
        key: &StorageKey,
        handle: &str,
        offset: u64,
        body: ByteStream,
    ) -> Result<(u64, Option<crate::error::Error>)> {
        let _ = (key, handle, offset, body);
        Err(unsupported("resumable uploads"))
    }
    /// [`BlobStore::append`] of a body already in memory (a small PATCH); returns the new
    /// offset. A store may write it in one step rather than stream it.
    async fn append_bytes(&self, key: &StorageKey, handle: &str, offset: u64, chunks: Vec<Bytes>) -> Result<u64> {
        use futures_util::StreamExt as _;
        let body = futures_util::stream::iter(chunks.into_iter().map(Ok)).boxed();
        match self.append(key, handle, offset, body).await? {
            (_, Some(e)) => Err(e),
            (end, None) => Ok(end),
        }
    }
    /// Publishes the first `length` bytes appended as the object at `key`.
    async fn append_finish(&self, key: &StorageKey, handle: &str, length: u64) -> Result<ObjectMeta> {
        let _ = (key, handle, length);
        Err(unsupported("resumable uploads"))
    }
    /// Drops a resumable upload.
    async fn append_abort(&self, key: &StorageKey, handle: &str) -> Result<()> {
        let _ = (key, handle);
        Err(unsupported("resumable uploads"))
    }

    /// True when the URLs this store presigns point at filedock's own `/blob/` route.
    fn self_served(&self) -> bool {
        false
    }

    /// Copies an object to another key (an existing one is replaced). By default it streams
    /// through filedock; a store with a server-side copy uses it.
    async fn copy(&self, from: &StorageKey, to: &StorageKey) -> Result<ObjectMeta> {
        let got = self.get(from, None).await?;
        self.put(to, got.body, PutOptions { create_only: false }).await
    }
}
