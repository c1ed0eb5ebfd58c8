//! Scanners: what says whether a file's bytes may be used. A file under a policy with a scanner
//! is quarantined until its scanner gives a verdict. The engines (ClamAV's clamd, an HTTP
//! scanner) are backends (`filedock-storage`); this is their contract.
//!
//! # Contract
//! - [`Scanner::scan`] reads the whole body (or stops at the scanner's limit) and answers
//!   [`Verdict::Clean`] only when the engine said so for these bytes.
//! - An engine that cannot be reached, times out or answers an error is
//!   [`Error::Unavailable`](crate::Error::Unavailable): never clean. The file stays quarantined
//!   and is scanned again later.
//! - A body over the engine's limit is [`Error::TooLarge`](crate::Error::TooLarge); the policy
//!   decides what that means.

use async_trait::async_trait;

use crate::blob::ByteStream;
use crate::error::{Error, Result};
use crate::model::FileRecord;

/// A scanner's answer about a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// Infected, with the engine's name for what it found.
    Infected(String),
}

/// A scanning engine.
#[async_trait]
pub trait Scanner: Send + Sync + std::fmt::Debug {
    /// The largest body the engine takes, if it has a limit.
    fn max_bytes(&self) -> Option<u64>;

    /// Whether the engine fetches a file itself from a short-lived download URL
    /// ([`Scanner::scan_url`]) instead of being sent its bytes ([`Scanner::scan`]).
    fn by_url(&self) -> bool {
        false
    }

    /// Scans `body` (`size` bytes).
    async fn scan(&self, body: ByteStream, size: u64) -> Result<Verdict>;

    /// Scans `file`, which the engine downloads from `url` (valid for a few minutes).
    async fn scan_url(&self, file: &FileRecord, url: &str) -> Result<Verdict> {
        let _ = (file, url);
        Err(Error::internal_msg("this scanner is sent the bytes, not a URL"))
    }

    /// Whether the engine answers now (for `/readyz`).
    async fn ping(&self) -> Result<()>;
}
