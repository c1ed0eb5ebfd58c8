//! The one S3 client: every call filedock makes to the bucket (objects, listings and the
//! multipart calls) is signed with `rusty-s3` (query-string SigV4, payload unsigned) and sent with
//! `reqwest`, in the forms AWS documents: `POST /key?uploads` (an empty value, which moto, Garage
//! and AWS take; `?uploads=1` makes moto answer 500), `GET /?list-type=2&prefix=…`, one
//! `If-None-Match: *` (or the store's own header) signed with a create-only PUT.
//!
//! One client rather than an SDK plus a signer: presigned URLs for parts and PUTs need the signer
//! anyway, and a second client is a second chance for a store to differ (see
//! `docs/configuration.md`). Errors: 404 → `NotFound`, 412 → `PreconditionFailed`, 5xx, timeouts
//! and refused connections → 503 `unavailable`; a call whose body is in memory is tried once more
//! before that.

use std::time::Duration;

use bytes::Bytes;
use filedock_core::{BlobStore, ByteStream, Error, ObjectMeta, Part, Result, StorageKey};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use rusty_s3::S3Action;

use super::common::CALL_TTL;
use super::common::unavailable;
use super::common::upload_id_key;
use super::common::xml_tag;
use super::config::CreateOnly;
use super::store::S3Store;

/// Attempts at a call whose request can be sent again (no streamed body).
const CALL_ATTEMPTS: u32 = 2;

/// Attempts of a retried call that the store answers with a 5xx (100, 200, 400 ms apart).
const ERROR_ATTEMPTS: u32 = 4;

/// The most keys one DeleteObjects call takes (S3's limit).
const DELETE_BATCH: usize = 1_000;

impl S3Store {
    /// Sends a request made by `make` (called again for a retry), and reads its answer's status:
    /// an S3 error answer becomes a core error (`NoSuchUpload` → `NotFound`,
    /// `InvalidPart`/`EntityTooSmall`/`InvalidPartOrder` → `Invalid`). A transport error or a 5xx
    /// is tried again when `retry`.
    pub(super) async fn send(&self, retry: bool, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        let mut attempt = 1;
        loop {
            let again = retry && attempt < CALL_ATTEMPTS;
            match make().send().await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                // A store that answers 500/503 is there and says "try again" (AWS's own advice):
                // a few more times, backing off, than a store that does not answer at all.
                Ok(resp) if resp.status().is_server_error() && retry && attempt < ERROR_ATTEMPTS => {
                    tracing::warn!(status = %resp.status(), attempt, "the S3 store answered an error; trying again");
                }
                Ok(resp) => return Err(error_of(resp).await),
                Err(e) if again => tracing::warn!(error = %e.without_url(), attempt, "an S3 call failed; trying again"),
                Err(e) => return Err(unavailable(e.without_url())),
            }
            tokio::time::sleep(Duration::from_millis(100 << (attempt - 1).min(4))).await;
            attempt += 1;
        }
    }

    /// Sends a call whose whole answer is read: its headers and text. CompleteMultipartUpload
    /// may answer 200 with an error document, which is an error here.
    pub(super) async fn call(&self, retry: bool, make: impl Fn() -> RequestBuilder) -> Result<(HeaderMap, String)> {
        let resp = self.send(retry, make).await?;
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| unavailable(e.without_url()))?;
        if text.contains("<Error>") {
            return Err(s3_error(StatusCode::OK, &text));
        }
        Ok((headers, text))
    }

    fn request(&self, method: Method, url: url::Url) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// PUTs one object held in memory; `create_only` sends (and signs) the store's create-only
    /// header, so an existing object is refused with `PreconditionFailed` where the store
    /// honours it.
    pub(super) async fn put_bytes(&self, key: &StorageKey, bytes: Bytes, create_only: bool) -> Result<()> {
        let header = create_only.then(|| self.create_only.header()).flatten();
        let mut action = self.bucket.put_object(Some(&self.credentials), key.as_str());
        if let Some((h, v)) = header {
            action.headers_mut().insert(h.to_ascii_lowercase(), v);
        }
        let url = action.sign(CALL_TTL);
        self.send(true, || {
            let req = self.request(Method::PUT, url.clone()).body(bytes.clone());
            match header {
                Some((h, v)) => req.header(h, v),
                None => req,
            }
        })
        .await?;
        Ok(())
    }

    /// The object's size, ETag and modification time, or `NotFound`.
    pub(super) async fn head_object(&self, key: &StorageKey) -> Result<ObjectMeta> {
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key.as_str())
            .sign(CALL_TTL);
        let resp = self.send(true, || self.request(Method::HEAD, url.clone())).await?;
        let h = resp.headers();
        let size = header(h, "content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::internal_msg("S3 answered a HEAD without a Content-Length"))?;
        Ok(ObjectMeta {
            size,
            etag: header(h, "etag").unwrap_or_default().to_owned(),
            modified: header(h, "last-modified").map(http_date_millis).unwrap_or_default(),
        })
    }

    /// Streams an object, or bytes `start..end` of it. Its first byte must come within the
    /// call timeout; then the body streams for as long as its reader takes.
    pub(super) async fn get_object(&self, key: &StorageKey, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key.as_str())
            .sign(CALL_TTL);
        let make = || {
            let req = self.reader.get(url.clone());
            match range {
                Some((start, end)) => req.header("range", format!("bytes={start}-{}", end - 1)),
                None => req,
            }
        };
        let resp = tokio::time::timeout(self.timeout, self.send(true, make))
            .await
            .map_err(|_| unavailable(format!("no answer to a GET within {:?}", self.timeout)))??;
        Ok(resp.bytes_stream().map_err(|e| unavailable(e.without_url())).boxed())
    }

    /// CopyObject: a server-side copy of `from` (up to 5 GiB, which a single PUT cannot pass
    /// either) to `to`. The copy source is a signed header.
    pub(super) async fn copy_object(&self, from: &StorageKey, to: &StorageKey) -> Result<()> {
        // `/bucket/key`, the key percent-encoded as in the object's URL (whatever the URL style
        // and the endpoint's own path).
        let base = self.bucket.object_url("");
        let object = self.bucket.object_url(from.as_str());
        let encoded = object.path().get(base.path().len()..).unwrap_or_default();
        let source = format!("/{}/{encoded}", self.bucket.name());
        let mut action = self.bucket.put_object(Some(&self.credentials), to.as_str());
        action.headers_mut().insert("x-amz-copy-source", source.clone());
        let url = action.sign(CALL_TTL);
        // CopyObject may answer 200 with an error document.
        self.call(true, || {
            self.request(Method::PUT, url.clone())
                .header("x-amz-copy-source", source.as_str())
        })
        .await?;
        Ok(())
    }

    /// Deletes an object; one that is not there is deleted already.
    pub(super) async fn delete_object(&self, key: &StorageKey) -> Result<()> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key.as_str())
            .sign(CALL_TTL);
        match self.send(true, || self.request(Method::DELETE, url.clone())).await {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes objects with one DeleteObjects call per [`DELETE_BATCH`] keys (quiet: the store
    /// answers only what it could not delete); returns those keys and why.
    pub(super) async fn delete_objects(&self, keys: &[StorageKey]) -> Result<Vec<(StorageKey, Error)>> {
        let mut failed = Vec::new();
        for run in keys.chunks(DELETE_BATCH) {
            failed.extend(self.delete_objects_call(run).await?);
        }
        Ok(failed)
    }

    async fn delete_objects_call(&self, keys: &[StorageKey]) -> Result<Vec<(StorageKey, Error)>> {
        let ids: Vec<rusty_s3::actions::ObjectIdentifier> = keys
            .iter()
            .map(|k| rusty_s3::actions::ObjectIdentifier::new(k.as_str().to_owned()))
            .collect();
        let mut action = self.bucket.delete_objects(Some(&self.credentials), ids.iter());
        action.set_quiet(true);
        let url = action.sign(CALL_TTL);
        let (body, md5) = action.body_with_md5();
        let resp = self
            .send(true, || {
                self.request(Method::POST, url.clone())
                    .header("content-md5", &md5)
                    .body(body.clone())
            })
            .await?;
        let text = resp.text().await.map_err(|e| unavailable(e.without_url()))?;
        not_deleted(&text)
    }

    /// Every object whose key starts with `prefix`, page after page.
    pub(super) async fn list_objects(&self, prefix: &str) -> Result<Vec<(StorageKey, ObjectMeta)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            if !prefix.is_empty() {
                action.with_prefix(prefix);
            }
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(CALL_TTL);
            let (_, body) = self.call(true, || self.request(Method::GET, url.clone())).await?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&body)
                .map_err(|e| Error::internal_msg(format!("malformed ListObjectsV2 answer: {e}")))?;
            for o in page.contents {
                let meta = ObjectMeta {
                    size: o.size.unwrap_or_default(),
                    etag: o.etag.unwrap_or_default(),
                    modified: o.last_modified.as_deref().map(iso_millis).unwrap_or_default(),
                };
                out.push((StorageKey::new(o.key)?, meta));
            }
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// CreateMultipartUpload, as `POST /key?uploads` (signed by hand: `rusty-s3` sends
    /// `?uploads=1`, which moto answers with a 500 after making the upload).
    pub(super) async fn create_multipart_upload(&self, key: &StorageKey) -> Result<String> {
        let url = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            rusty_s3::Method::Post,
            self.bucket.object_url(key.as_str()),
            self.credentials.key(),
            self.credentials.secret(),
            self.credentials.token(),
            self.bucket.region(),
            CALL_TTL.as_secs(),
            std::iter::once(("uploads", "")),
            std::iter::empty(),
        );
        let (_, body) = self.call(false, || self.request(Method::POST, url.clone())).await?;
        xml_tag(&body, "UploadId")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::internal_msg("S3 answered CreateMultipartUpload without an UploadId"))
    }

    /// Makes the multipart upload of a [`LAZY_HANDLE`](super::common::LAZY_HANDLE) upload and
    /// records its id. A crash between the two leaves a multipart upload nobody knows (the next
    /// append makes another): the bucket's lifecycle rule for incomplete uploads removes it.
    pub(super) async fn start_multipart(&self, key: &StorageKey) -> Result<String> {
        let id = self.create_multipart(key).await?;
        self.put_bytes(&upload_id_key(key)?, Bytes::from(id.clone()), false)
            .await?;
        Ok(id)
    }

    /// Sends one part from a stream of `len` bytes (not retried: the stream is spent).
    pub(super) async fn upload_part(
        &self,
        key: &StorageKey,
        handle: &str,
        number: u32,
        body: ByteStream,
        len: u64,
    ) -> Result<Part> {
        let n = u16::try_from(number).map_err(|_| Error::invalid("part numbers go up to 10000"))?;
        let url = self
            .bucket
            .upload_part(Some(&self.credentials), key.as_str(), n, handle)
            .sign(CALL_TTL);
        // Keep the body's own error (too large, client gone) rather than the transport's.
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = failed.clone();
        let body = body.map(move |c| {
            c.map_err(|e| {
                let msg = e.to_string();
                if let Ok(mut s) = slot.lock() {
                    *s = Some(e);
                }
                std::io::Error::other(msg)
            })
        });
        let body = std::sync::Mutex::new(Some(reqwest::Body::wrap_stream(body)));
        let sent = self
            .send(false, || {
                let req = self
                    .request(Method::PUT, url.clone())
                    .header(reqwest::header::CONTENT_LENGTH, len);
                match body.lock().ok().and_then(|mut b| b.take()) {
                    Some(b) => req.body(b),
                    None => req,
                }
            })
            .await;
        if let Some(e) = failed.lock().ok().and_then(|mut s| s.take()) {
            return Err(e);
        }
        let resp = sent?;
        let etag = header(resp.headers(), "etag")
            .ok_or_else(|| Error::internal_msg("S3 answered an UploadPart without an ETag"))?;
        Ok(Part {
            number,
            etag: etag.to_owned(),
            size: len,
        })
    }

    /// Completes a multipart upload; `create_only` refuses (by a HEAD first, not atomically)
    /// when the key already holds an object.
    pub(super) async fn complete(
        &self,
        key: &StorageKey,
        handle: &str,
        parts: &[Part],
        create_only: bool,
    ) -> Result<ObjectMeta> {
        if create_only && self.head(key).await.is_ok() {
            return Err(Error::PreconditionFailed("an object already exists at this key".into()));
        }
        let mut xml = String::from("<CompleteMultipartUpload>");
        for p in parts {
            let etag = p.etag.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            xml.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>",
                p.number
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let url = self
            .bucket
            .complete_multipart_upload(
                Some(&self.credentials),
                key.as_str(),
                handle,
                std::iter::empty::<&str>(),
            )
            .sign(CALL_TTL);
        // The store assembles the object before it answers, in time that grows with its size
        // (moto took 10 s for 1 GiB, silent all the while; AWS says minutes): this call gets
        // the call timeout again for each GiB, and no limit on a pause (the client without
        // one). Not retried: a second complete of a completed upload is `NoSuchUpload`.
        let size: u64 = parts.iter().map(|p| p.size).sum();
        let budget = self.timeout + self.timeout.mul_f64(size as f64 / (1u64 << 30) as f64);
        let sent = self
            .call(false, || {
                self.reader
                    .request(Method::POST, url.clone())
                    .timeout(budget)
                    .body(xml.clone())
            })
            .await;
        match sent {
            Ok(_) => self.head(key).await,
            // No answer is not a refusal: the store may have assembled the object and the
            // answer been lost. The key held nothing before (create-only checks, and keys are
            // fresh), so an object of the parts' size there now is this upload's.
            Err(Error::Unavailable(why)) => match self.head(key).await {
                Ok(meta) if meta.size == size => {
                    tracing::warn!(%key, "no answer to a multipart complete, but the object is there: kept");
                    Ok(meta)
                }
                _ => Err(Error::Unavailable(why)),
            },
            Err(e) => Err(e),
        }
    }

    /// Aborts a multipart upload; one that is gone is aborted already.
    pub(super) async fn abort_upload(&self, key: &StorageKey, handle: &str) -> Result<()> {
        let url = self
            .bucket
            .abort_multipart_upload(Some(&self.credentials), key.as_str(), handle)
            .sign(CALL_TTL);
        match self.call(true, || self.request(Method::DELETE, url.clone())).await {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One page of ListParts from `marker`: its parts, and whether more follow.
    pub(super) async fn list_parts_page(
        &self,
        key: &StorageKey,
        handle: &str,
        marker: Option<u16>,
    ) -> Result<(Vec<Part>, bool)> {
        let mut action = self.bucket.list_parts(Some(&self.credentials), key.as_str(), handle);
        action.set_max_parts(1000);
        if let Some(m) = marker {
            action.set_part_number_marker(m);
        }
        let url = action.sign(CALL_TTL);
        let (_, body) = self.call(true, || self.request(Method::GET, url.clone())).await?;
        super::common::parse_list_parts(&body)
    }

    /// Whether `create_only` PUTs are refused by the store itself.
    pub(super) fn atomic_create(&self) -> bool {
        self.create_only != CreateOnly::None
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// An S3 error answer as a core error.
async fn error_of(resp: Response) -> Error {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    s3_error(status, &text)
}

fn s3_error(status: StatusCode, text: &str) -> Error {
    let code = xml_tag(text, "Code").unwrap_or_default();
    let message = xml_tag(text, "Message").unwrap_or_default();
    match (status, code.as_str()) {
        (_, "NoSuchUpload") => Error::not_found("no such upload"),
        (_, "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall") => Error::invalid(format!("{code}: {message}")),
        (StatusCode::NOT_FOUND, _) | (_, "NoSuchKey") => Error::not_found("no such key"),
        (StatusCode::PRECONDITION_FAILED, _) | (_, "PreconditionFailed") => {
            Error::PreconditionFailed("an object already exists at this key".into())
        }
        (StatusCode::RANGE_NOT_SATISFIABLE, _) => Error::invalid("range not satisfiable"),
        (s, _) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            unavailable(format!("S3 answered {status}: {code} {message}"))
        }
        _ => Error::internal_msg(format!("S3 answered {status}: {code} {message}")),
    }
}

/// The keys a quiet DeleteObjects answer says it could not delete, and why (a missing key is
/// deleted already).
fn not_deleted(text: &str) -> Result<Vec<(StorageKey, Error)>> {
    if !text.contains("<Error>") {
        // Nothing failed (moto answers an empty `<DeleteResult/>`, which the parser refuses).
        return Ok(Vec::new());
    }
    let answer = rusty_s3::actions::DeleteObjectsResponse::parse(text)
        .map_err(|e| Error::internal_msg(format!("S3 answered DeleteObjects with what is not its answer: {e}")))?;
    answer
        .errors
        .into_iter()
        .filter(|e| e.code != "NoSuchKey")
        .map(|e| {
            let why = unavailable(format!("S3 could not delete it: {} {}", e.code, e.message));
            Ok((StorageKey::new(e.key)?, why))
        })
        .collect()
}

/// An HTTP date (`Last-Modified`) in milliseconds since the epoch (0 when unreadable).
fn http_date_millis(s: &str) -> i64 {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(s)
        .map(|t| t.as_millisecond())
        .unwrap_or_default()
}

/// An ISO 8601 time (a listing's `LastModified`) in milliseconds since the epoch.
fn iso_millis(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .unwrap_or_default()
}

/// Reads a stream whole (small objects only: upload ids).
pub(super) async fn read_all(mut body: ByteStream) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_objects_answer_names_what_was_not_deleted() {
        // AWS's documented shape, with a quiet answer's only content: the failures.
        let answer = r#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Error><Key>a/locked</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>
  <Error><Key>a/gone</Key><Code>NoSuchKey</Code><Message>gone</Message></Error>
</DeleteResult>"#;
        let failed = not_deleted(answer).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0.as_str(), "a/locked");
        assert!(matches!(failed[0].1, Error::Unavailable(_)));
        assert!(not_deleted("<DeleteResult/>").unwrap().is_empty());
        assert!(not_deleted("").unwrap().is_empty());
        assert!(not_deleted("<DeleteResult><Error><Key>").is_err());
    }

    #[test]
    fn dates_from_s3_answers() {
        assert_eq!(http_date_millis("Sun, 06 Nov 1994 08:49:37 GMT"), 784_111_777_000);
        assert_eq!(iso_millis("1994-11-06T08:49:37.000Z"), 784_111_777_000);
        assert_eq!(http_date_millis("garbage"), 0);
    }

    #[test]
    fn error_answers_map_to_core_errors() {
        let doc = |code: &str| format!("<Error><Code>{code}</Code><Message>m</Message></Error>");
        assert!(matches!(
            s3_error(StatusCode::NOT_FOUND, &doc("NoSuchUpload")),
            Error::NotFound(_)
        ));
        assert!(matches!(s3_error(StatusCode::NOT_FOUND, ""), Error::NotFound(_)));
        assert!(matches!(
            s3_error(StatusCode::PRECONDITION_FAILED, ""),
            Error::PreconditionFailed(_)
        ));
        assert!(matches!(
            s3_error(StatusCode::OK, &doc("InvalidPart")),
            Error::Invalid(_)
        ));
        assert!(matches!(
            s3_error(StatusCode::SERVICE_UNAVAILABLE, &doc("SlowDown")),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            s3_error(StatusCode::FORBIDDEN, &doc("AccessDenied")),
            Error::Internal(_)
        ));
    }
}
