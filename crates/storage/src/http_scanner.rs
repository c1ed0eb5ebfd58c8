//! A generic HTTP scanner, for engines other than clamd: filedock POSTs the file's metadata and a
//! short-lived download URL, signed as webhooks are, and takes a JSON verdict.
//!
//! Request: `POST <url>` with `{"file": {id, project, name, size, sha256, content_type},
//! "download_url": "…"}` and the headers `Filedock-Timestamp` (Unix seconds) and
//! `Filedock-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
//! Answer: `200` with `{"verdict": "clean"}`, `{"verdict": "infected", "signature": "<name>"}`
//! or `{"verdict": "too_large"}`. Anything else — another status, a malformed body, no answer
//! in time — is the scanner failing: never clean.

use std::time::Duration;

use async_trait::async_trait;
use filedock_core::Error;
use filedock_core::blob::ByteStream;
use filedock_core::model::FileRecord;
use filedock_core::scan::{Scanner, Verdict};
use serde::Deserialize;

/// An HTTP scanner's client.
#[derive(Debug, Clone)]
pub struct HttpScanner {
    url: String,
    secret: Vec<u8>,
    max_bytes: u64,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    verdict: String,
    #[serde(default)]
    signature: Option<String>,
}

fn down(what: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("the HTTP scanner {what}"))
}

impl HttpScanner {
    /// A client of the scanner at `url`; the secret signs every request (at least 16 bytes).
    pub fn new(url: String, secret: Vec<u8>, max_bytes: u64, timeout: Duration) -> Result<HttpScanner, String> {
        if secret.len() < 16 {
            return Err("an HTTP scanner's secret must be at least 16 bytes".into());
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot make the scanner's HTTP client: {e}"))?;
        Ok(HttpScanner {
            url,
            secret,
            max_bytes,
            client,
        })
    }

    async fn post(&self, body: String) -> Result<reqwest::Response, Error> {
        let ts = jiff::Timestamp::now().as_second();
        let sig = filedock_core::event_shapes::signature(&self.secret, ts, &body);
        self.client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("filedock-timestamp", ts.to_string())
            .header("filedock-signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| down(format_args!("cannot be reached: {e}")))
    }
}

#[async_trait]
impl Scanner for HttpScanner {
    fn max_bytes(&self) -> Option<u64> {
        Some(self.max_bytes)
    }

    fn by_url(&self) -> bool {
        true
    }

    async fn scan(&self, _body: ByteStream, _size: u64) -> Result<Verdict, Error> {
        Err(Error::internal_msg("the HTTP scanner fetches files from a URL"))
    }

    async fn scan_url(&self, file: &FileRecord, url: &str) -> Result<Verdict, Error> {
        let size = file.size.unwrap_or(0);
        if size > self.max_bytes {
            return Err(Error::TooLarge(format!(
                "{size} bytes is over the scanner's limit of {}",
                self.max_bytes
            )));
        }
        let body = serde_json::json!({
            "file": {
                "id": file.id, "project": file.project, "name": file.name, "size": file.size,
                "sha256": file.sha256, "content_type": file.content_type(),
            },
            "download_url": url,
        })
        .to_string();
        let resp = self.post(body).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(down(format_args!("answered {status}")));
        }
        let answer: Answer = resp
            .json()
            .await
            .map_err(|e| down(format_args!("answered no verdict: {e}")))?;
        match answer.verdict.as_str() {
            "clean" => Ok(Verdict::Clean),
            "infected" => Ok(Verdict::Infected(answer.signature.unwrap_or_else(|| "unnamed".into()))),
            "too_large" => Err(Error::TooLarge("over the scanner's limit".into())),
            other => Err(down(format_args!("answered the verdict '{other}'"))),
        }
    }

    async fn ping(&self) -> Result<(), Error> {
        // Any answer means it is there; a verdict is not asked for.
        match self.client.head(&self.url).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(down(format_args!("cannot be reached: {e}"))),
        }
    }
}
