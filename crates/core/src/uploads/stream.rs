//! What an append does to a body on its way to the store: limit it, digest it.

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
pub(super) struct Digests {
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
