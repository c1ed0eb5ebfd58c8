//! What an append does to a body on its way to the store: limit it, digest it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{Checksum, ChecksumAlgorithm};
use crate::blob::ByteStream;
use crate::error::{Error, Result};

/// A receiver as a body stream.
pub(super) fn tokio_stream_from(mut rx: tokio::sync::mpsc::Receiver<Result<Bytes>>) -> ByteStream {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// At most `room` bytes: more is `TooLarge` (after the bytes that fit).
pub(super) fn limit(body: ByteStream, room: u64, length_known: bool) -> ByteStream {
    let mut left = room;
    body.map(move |c| {
        let c = c?;
        if c.len() as u64 > left {
            return Err(if length_known {
                Error::TooLarge("the body goes past Upload-Length".into())
            } else {
                Error::TooLarge("the upload is over the size limit".into())
            });
        }
        left -= c.len() as u64;
        Ok(c)
    })
    .boxed()
}

/// The digests a PATCH body is checked against.
struct Digests {
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
}

impl Digests {
    pub(super) fn new(c: Option<&Checksum>) -> Self {
        Digests {
            sha1: matches!(
                c,
                Some(Checksum {
                    algorithm: ChecksumAlgorithm::Sha1,
                    ..
                })
            )
            .then(Sha1::new),
            sha256: matches!(
                c,
                Some(Checksum {
                    algorithm: ChecksumAlgorithm::Sha256,
                    ..
                })
            )
            .then(Sha256::new),
        }
    }

    pub(super) fn update(&mut self, b: &[u8]) {
        if let Some(h) = &mut self.sha1 {
            h.update(b);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(b);
        }
    }

    pub(super) fn matches(&self, c: &Checksum) -> bool {
        let got: Vec<u8> = match c.algorithm {
            ChecksumAlgorithm::Sha1 => self.sha1.clone().map(|h| h.finalize().to_vec()).unwrap_or_default(),
            ChecksumAlgorithm::Sha256 => self.sha256.clone().map(|h| h.finalize().to_vec()).unwrap_or_default(),
        };
        subtle::ConstantTimeEq::ct_eq(got.as_slice(), c.digest.as_slice()).into()
    }
}

/// A PATCH body's digests, taken as it passes: those of the checksum it came with, and the
/// file's running SHA-256 (with the count of bytes it hashed).
pub(super) struct Watch {
    seen: Arc<Mutex<Seen>>,
}

struct Seen {
    digests: Digests,
    whole: Option<(u64, Sha256)>,
}

impl Watch {
    pub(super) fn new(checksum: Option<&Checksum>, running: Option<Sha256>) -> Self {
        let seen = Seen {
            digests: Digests::new(checksum),
            whole: running.map(|h| (0, h)),
        };
        Watch {
            seen: Arc::new(Mutex::new(seen)),
        }
    }

    /// The body, ending after its first error, digested as it passes.
    pub(super) fn watch(&self, body: ByteStream) -> ByteStream {
        let seen = self.seen.clone();
        futures_util::stream::unfold((body, false), |(mut s, done)| async move {
            if done {
                return None;
            }
            match s.next().await {
                Some(Ok(c)) => Some((Ok(c), (s, false))),
                Some(Err(e)) => Some((Err(e), (s, true))),
                None => None,
            }
        })
        .map(move |c| {
            if let (Ok(bytes), Ok(mut seen)) = (&c, seen.lock()) {
                seen.digests.update(bytes);
                if let Some((n, h)) = seen.whole.as_mut() {
                    h.update(bytes);
                    *n += bytes.len() as u64;
                }
            }
            c
        })
        .boxed()
    }

    /// Whether what passed matches `c`.
    pub(super) fn matches(&self, c: &Checksum) -> bool {
        self.seen.lock().map(|s| s.digests.matches(c)).unwrap_or(false)
    }

    /// The running SHA-256, if it hashed exactly `len` bytes (taken: asked once).
    pub(super) fn whole(&self, len: u64) -> Option<Sha256> {
        let taken = self.seen.lock().ok().and_then(|mut s| s.whole.take());
        taken.filter(|(n, _)| *n == len).map(|(_, h)| h)
    }
}
