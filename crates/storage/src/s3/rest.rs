//! S3's own multipart calls (create, list parts, complete, abort), signed with `rusty-s3` and
//! sent with `reqwest`, for uploads whose parts clients PUT straight to the bucket.

use bytes::Bytes;
use filedock_core::{BlobStore, Error, ObjectMeta, Part, Result, StorageKey};

use object_store::ObjectStore;
use rusty_s3::S3Action;

use super::common::CALL_TTL;
use super::common::os_err;
use super::common::path;
use super::common::unavailable;
use super::common::upload_id_key;
use super::store::S3Store;

impl S3Store {
    /// Sends one signed S3 call; an S3 error answer becomes a core error (`NoSuchUpload` →
    /// `NotFound`, `InvalidPart`/`EntityTooSmall`/`InvalidPartOrder` → `Invalid`).
    pub(super) async fn call(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::header::HeaderMap, String)> {
        let resp = req.send().await.map_err(|e| unavailable(e.without_url()))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| unavailable(e.without_url()))?;
        // CompleteMultipartUpload may answer 200 with an error document.
        if status.is_success() && !text.contains("<Error>") {
            return Ok((headers, text));
        }
        let tag = |t: &str| {
            text.split_once(&format!("<{t}>"))
                .and_then(|(_, rest)| rest.split_once(&format!("</{t}>")))
                .map(|(v, _)| v.to_owned())
                .unwrap_or_default()
        };
        let (code, message) = (tag("Code"), tag("Message"));
        Err(match code.as_str() {
            "NoSuchUpload" => Error::not_found("no such upload"),
            "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" => Error::invalid(format!("{code}: {message}")),
            "PreconditionFailed" => Error::PreconditionFailed("an object already exists at this key".into()),
            _ if status.is_server_error() => unavailable(format!("S3 answered {status}: {code} {message}")),
            _ => Error::internal_msg(format!("S3 answered {status}: {code} {message}")),
        })
    }

    /// Makes the multipart upload of a [`LAZY_HANDLE`] upload and records its id. A crash
    /// between the two leaves a multipart upload nobody knows (the next append makes another):
    /// the bucket's lifecycle rule for incomplete uploads removes it.
    pub(super) async fn start_multipart(&self, key: &StorageKey) -> Result<String> {
        let id = self.create_multipart(key).await?;
        self.store
            .put_opts(
                &path(&upload_id_key(key)?)?,
                Bytes::from(id.clone()).into(),
                object_store::PutOptions::default(),
            )
            .await
            .map_err(os_err)?;
        Ok(id)
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
        self.call(self.http.post(url).body(xml)).await?;
        self.head(key).await
    }
}
