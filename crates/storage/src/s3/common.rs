//! What the S3 store's modules share: the sizes bodies are cut into, what it keeps in the bucket
//! beside files (under `.filedock/append/`), what it remembers of appends, and how S3's
//! answers are read.

use std::time::Duration;

use bytes::Bytes;
use filedock_core::{ByteStream, Error, Part, Result, StorageKey};
use futures_util::StreamExt;

/// The handle of a resumable upload made by [`BlobStore::append_create`]: no multipart upload
/// exists for it yet. One is made when its first part is complete, and its id is written to
/// [`upload_id_key`]; an upload that ends before a part's worth is published with one PUT.
/// So a tus creation costs no S3 call, and an upload abandoned early leaves no multipart upload.
/// (Handles of uploads made before are S3 upload ids, and work as they did.)
pub(super) const LAZY_HANDLE: &str = "-";

/// Where a resumable upload's multipart upload id is kept once it has one (beside its staging
/// objects; not a staging object, since its name is not an offset).
pub(super) fn upload_id_key(key: &StorageKey) -> Result<StorageKey> {
    StorageKey::new(format!("{}upload-id", staging_prefix(key)))
}

/// Size of the parts a resumable upload is cut into (S3's minimum, which is also the chunk size
/// tus clients use most, so a 5 MiB PATCH becomes exactly one part and nothing is staged).
pub(super) const APPEND_PART: usize = 5 * 1024 * 1024;

pub(super) fn staging_prefix(key: &StorageKey) -> String {
    format!("{}append/{key}/", filedock_core::blob::INTERNAL_PREFIX)
}

/// A resumable upload as this instance's last append left it: the offset it reached, its
/// multipart upload (if it has one yet), its parts and its staging objects. The next append from that very offset starts from here instead of
/// listing the parts and the staging prefix (two list calls per PATCH, and a list walks the
/// bucket on some S3 servers). From any other offset (another instance went on, or the offset
/// was never recorded) it lists, as the first append after a restart does.
#[derive(Debug, Clone)]
pub(super) struct AppendState {
    pub(super) end: u64,
    pub(super) upload_id: Option<String>,
    pub(super) parts: Vec<Part>,
    pub(super) staged: Vec<StorageKey>,
}

/// Uploads remembered at most; beyond, the memory is cleared (they list again).
pub(super) const APPENDS_REMEMBERED: usize = 10_000;

pub(super) fn one_chunk(b: Bytes) -> ByteStream {
    futures_util::stream::iter([Ok(b)]).boxed()
}

/// How long the URLs of filedock's own S3 calls are valid.
pub(super) const CALL_TTL: Duration = Duration::from_secs(300);

/// The text of the first `<tag>…</tag>` in `xml`, entities decoded.
pub(super) fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let (_, rest) = xml.split_once(&format!("<{tag}>"))?;
    let (v, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(
        v.replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// A ListParts page: its parts, and whether more follow. A part listed without an ETag (some
/// S3-compatible servers omit it) gets an empty one, which core does not compare.
pub(super) fn parse_list_parts(xml: &str) -> Result<(Vec<Part>, bool)> {
    let bad = || Error::internal_msg("malformed ListParts answer");
    let mut parts = Vec::new();
    for chunk in xml.split("<Part>").skip(1) {
        let part = chunk.split("</Part>").next().ok_or_else(bad)?;
        parts.push(Part {
            number: xml_tag(part, "PartNumber")
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?,
            etag: xml_tag(part, "ETag").unwrap_or_default(),
            size: xml_tag(part, "Size").and_then(|n| n.parse().ok()).ok_or_else(bad)?,
        });
    }
    Ok((parts, xml_tag(xml, "IsTruncated").is_some_and(|t| t == "true")))
}

/// Size of the part buffers, and of the parts of a multipart upload after [`SMALL_PARTS`].
pub(super) const PART: usize = 8 * 1024 * 1024;

/// The first parts of a multipart upload are of S3's minimum size, 5 MiB (a buffer's pages are
/// touched only as far as they are filled, so an upload then holds 10 MiB, not 16); the parts
/// after them are of [`PART`], so an object can still reach 2,000 × 5 MiB + 8,000 × 8 MiB
/// (72 GiB) in S3's 10,000 parts. A body of at most one small part goes up in one PUT.
pub(super) const SMALL_PARTS: u32 = 2_000;

/// The size of part `number` (from 1) of a multipart upload.
pub(super) fn part_size(number: u32) -> usize {
    if number <= SMALL_PARTS { APPEND_PART } else { PART }
}

/// Attempts at sending one part (it is held whole in memory, so it can be sent again).
pub(super) const PART_ATTEMPTS: u32 = 3;

/// A store that did not answer (or answered 5xx): 503 `unavailable`, the cause logged here.
pub(super) fn unavailable(e: impl std::fmt::Display) -> Error {
    tracing::warn!(error = %e, "the S3 store does not answer");
    Error::Unavailable("the storage backend does not answer; retry shortly".into())
}
