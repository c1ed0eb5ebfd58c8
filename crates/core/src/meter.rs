//! The checks every body passes on its way to a store: byte count against the limit and the
//! declared length, SHA-256, the type of the first bytes (and UTF-8 throughout for text), and
//! empty files; text stays text to the end, in the encoding its first non-ASCII bytes chose. A failed check becomes an `Err` item, so the store never commits the body.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};

use crate::blob::ByteStream;
use crate::error::{Error, Result};
use crate::policy::UploadPolicy;
use crate::sniff;
use crate::text::{NotText, TextCheck};

/// What a finished body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metered {
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub detected_type: String,
    /// The allowed extension the content sniffed to, for a name without one under an allowlist.
    pub extension: Option<String>,
}

/// Reads the outcome once the metered stream has ended.
#[derive(Debug, Clone)]
pub struct MeterHandle(Arc<Mutex<Option<Metered>>>);

impl MeterHandle {
    /// The outcome, if the stream ended cleanly.
    pub fn outcome(&self) -> Option<Metered> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
}

struct Meter {
    inner: ByteStream,
    policy: UploadPolicy,
    ext: Option<String>,
    expected: Option<u64>,
    text: Option<TextCheck>,
    count: u64,
    hasher: Sha256,
    head: Vec<u8>,
    detected: Option<String>,
    done: bool,
    out: Arc<Mutex<Option<Metered>>>,
}

/// Wraps a body with the policy's checks. `expected` is a length the body must have exactly.
pub fn meter(
    inner: ByteStream,
    policy: UploadPolicy,
    ext: Option<String>,
    expected: Option<u64>,
) -> (ByteStream, MeterHandle) {
    let out = Arc::new(Mutex::new(None));
    let text = sniff::is_text_extension(ext.as_deref()).then(TextCheck::new);
    let m = Meter {
        inner,
        policy,
        ext,
        expected,
        text,
        count: 0,
        hasher: Sha256::new(),
        head: Vec::new(),
        detected: None,
        done: false,
        out: out.clone(),
    };
    (Box::pin(m), MeterHandle(out))
}

fn not_text(why: NotText) -> Error {
    Error::UnsupportedType(format!("text files must be text throughout: {}", why.0))
}

impl Meter {
    fn check_head(&mut self, complete: bool) -> Result<()> {
        if self.detected.is_none() {
            let detected = self.policy.check_content(self.ext.as_deref(), &self.head, complete)?;
            if detected == crate::policy::UNMATCHED {
                // Kept unmatched content (or no text rule): nothing more to check as text.
                self.text = None;
            }
            self.detected = Some(detected);
        }
        Ok(())
    }

    fn on_chunk(&mut self, chunk: &Bytes) -> Result<()> {
        self.count += chunk.len() as u64;
        if self.count > self.policy.max_size {
            return Err(Error::TooLarge(format!(
                "file is larger than the limit of {} bytes",
                self.policy.max_size
            )));
        }
        if let Some(expected) = self.expected
            && self.count > expected
        {
            return Err(Error::invalid(format!(
                "body is longer than the declared {expected} bytes"
            )));
        }
        self.hasher.update(chunk);
        if self.detected.is_none() {
            let take = (sniff::HEAD_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            if self.head.len() >= sniff::HEAD_LEN {
                self.check_head(false)?;
            }
        }
        if let Some(text) = &mut self.text
            && let Err(why) = text.feed(chunk)
        {
            self.not_text(why)?;
        }
        Ok(())
    }

    /// Text that turned out not to be: refused, or kept as unmatched content if the policy says.
    fn not_text(&mut self, why: NotText) -> Result<()> {
        if !self.policy.keep_unmatched {
            return Err(not_text(why));
        }
        self.text = None;
        self.detected = Some(crate::policy::UNMATCHED.to_owned());
        Ok(())
    }

    fn on_end(&mut self) -> Result<Metered> {
        if self.count == 0 && !self.policy.allow_empty {
            return Err(Error::invalid("the file is empty"));
        }
        if let Some(expected) = self.expected
            && self.count != expected
        {
            return Err(Error::invalid(format!(
                "body has {} bytes, not the declared {expected}",
                self.count
            )));
        }
        self.check_head(true)?;
        let mut detected_type = self
            .detected
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        if let Some(text) = self.text.take() {
            match text.finish() {
                Ok(charset) => detected_type = crate::text::with_charset(&detected_type, &charset),
                Err(why) => {
                    self.not_text(why)?;
                    detected_type = crate::policy::UNMATCHED.to_owned();
                }
            }
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let extension = self.policy.sniffed_extension(self.ext.as_deref(), &self.head);
        Ok(Metered {
            size: self.count,
            sha256,
            detected_type,
            extension,
        })
    }
}

impl Stream for Meter {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => match this.on_chunk(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(e) => {
                    this.done = true;
                    Poll::Ready(Some(Err(e)))
                }
            },
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.done = true;
                match this.on_end() {
                    Ok(m) => {
                        if let Ok(mut g) = this.out.lock() {
                            *g = Some(m);
                        }
                        Poll::Ready(None)
                    }
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }
}

/// A body that must be exactly `len` bytes long: more or fewer is an error item.
pub fn exact_length(inner: ByteStream, len: u64) -> ByteStream {
    Box::pin(ExactLength {
        inner,
        len,
        seen: 0,
        done: false,
    })
}

struct ExactLength {
    inner: ByteStream,
    len: u64,
    seen: u64,
    done: bool,
}

impl Stream for ExactLength {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let item = match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.seen += chunk.len() as u64;
                if this.seen > this.len {
                    Some(Err(Error::invalid(format!(
                        "body is longer than its Content-Length of {}",
                        this.len
                    ))))
                } else {
                    return Poll::Ready(Some(Ok(chunk)));
                }
            }
            Poll::Ready(Some(Err(e))) => Some(Err(e)),
            Poll::Ready(None) if this.seen != this.len => Some(Err(Error::invalid(format!(
                "body has {} bytes, not its Content-Length of {}",
                this.seen, this.len
            )))),
            Poll::Ready(None) => None,
        };
        this.done = true;
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};

    fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
        stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed()
    }

    async fn drain(mut s: ByteStream) -> Result<u64> {
        let mut n = 0;
        while let Some(c) = s.next().await {
            n += c?.len() as u64;
        }
        Ok(n)
    }

    #[tokio::test]
    async fn hashes_and_types() {
        let (s, h) = meter(
            body(vec![b"hello ", b"world"]),
            UploadPolicy::max(100),
            Some("txt".into()),
            Some(11),
        );
        assert_eq!(drain(s).await.unwrap(), 11);
        let m = h.outcome().unwrap();
        assert_eq!(
            m.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(m.detected_type, "text/plain; charset=utf-8");
    }

    #[tokio::test]
    async fn refuses_over_limit_and_wrong_length() {
        let (s, h) = meter(body(vec![b"12345", b"6"]), UploadPolicy::max(5), None, None);
        assert!(matches!(drain(s).await, Err(Error::TooLarge(_))));
        assert!(h.outcome().is_none());
        let (s, _) = meter(body(vec![b"1234"]), UploadPolicy::max(50), None, Some(5));
        assert!(matches!(drain(s).await, Err(Error::Invalid(_))));
        let (s, _) = meter(body(vec![b"123456"]), UploadPolicy::max(50), None, Some(5));
        assert!(matches!(drain(s).await, Err(Error::Invalid(_))));
    }

    #[tokio::test]
    async fn utf8_across_chunks() {
        let e = "é".as_bytes();
        let (a, b): (&'static [u8], &'static [u8]) = (&[b'a', 0xC3], &[0xA9]);
        assert_eq!(e, &[0xC3, 0xA9]);
        let (s, _) = meter(body(vec![a, b]), UploadPolicy::max(50), Some("md".into()), None);
        assert!(drain(s).await.is_ok());
        let (s, _) = meter(
            body(vec![b"ok", &[0xC3, 0x00]]),
            UploadPolicy::max(50),
            Some("md".into()),
            None,
        );
        assert!(matches!(drain(s).await, Err(Error::UnsupportedType(_))));
        let (s, _) = meter(
            body(vec![b"ok", &[0xFF, 0x00, 0x01]]),
            UploadPolicy::max(50),
            Some("md".into()),
            None,
        );
        assert!(matches!(drain(s).await, Err(Error::UnsupportedType(_))));
    }

    #[tokio::test]
    async fn empty_files() {
        let mut p = UploadPolicy::max(5);
        p.allow_empty = false;
        let (s, _) = meter(body(vec![]), p, Some("txt".into()), None);
        assert!(matches!(drain(s).await, Err(Error::Invalid(_))));
        let (s, h) = meter(body(vec![]), UploadPolicy::max(5), Some("txt".into()), None);
        assert!(drain(s).await.is_ok());
        assert_eq!(h.outcome().unwrap().size, 0);
    }
}
