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

/// A request a client can make without credentials of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    pub method: &'static str,
    pub url: String,
    /// Headers the client must send as given (they are part of the signature).
    pub headers: Vec<(String, String)>,
    pub expires_at: Timestamp,
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
    /// Lists every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<(StorageKey, ObjectMeta)>>;
    /// A URL to upload one object directly.
    fn presign_put(&self, req: &PresignPut) -> Result<PresignedRequest>;
    /// A URL to download one object directly.
    fn presign_get(&self, req: &PresignGet) -> Result<PresignedRequest>;
    /// True when the URLs this store presigns point at filedock's own `/blob/` route.
    fn self_served(&self) -> bool {
        false
    }
}
