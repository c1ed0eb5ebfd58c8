//! The one error type of the domain. Every outcome a caller can act on is a variant; the server
//! maps each to an HTTP status with one exhaustive match, and each dialect renders its own envelope.

use std::fmt;

/// A boxed cause, kept for the log and never shown to a client.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Domain outcomes. The message is for humans and safe to show; [`Error::Internal`] carries a cause
/// that is only logged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist, or the caller may not know that it does.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or a value is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The body or declared size is over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// The type is not allowed, or the content does not match its name.
    #[error("{0}")]
    UnsupportedType(String),
    /// No credential, or one that is unknown, malformed or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid credential or signature that does not grant this.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the current state (e.g. an upload not yet received).
    #[error("{0}")]
    Conflict(String),
    /// A create-only write met an existing object.
    #[error("{0}")]
    PreconditionFailed(String),
    /// A body without a length where one is required.
    #[error("{0}")]
    LengthRequired(String),
    /// A Range that does not overlap the object; carries the object size.
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    /// The thing existed and is gone for good (deleted or expired).
    #[error("{0}")]
    Gone(String),
    /// A body did not match the checksum it came with (tus' 460); nothing of it was kept.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// Another request holds the resource (an upload being written); retry shortly.
    #[error("{0}")]
    Locked(String),
    /// Too many requests or uploads in progress for the project; retry after the given seconds.
    #[error("{0}")]
    RateLimited(String, u64),
    /// The project's storage quota (bytes or files) would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The disk (or the catalog's database) is full: nothing more can be stored until space is
    /// freed. Reads and deletes go on working.
    #[error("{0}")]
    InsufficientStorage(String),
    /// The client stopped sending a request it had started.
    #[error("{0}")]
    Timeout(String),
    /// A URL filedock was asked to fetch is refused: not http(s), or it reaches (or redirects
    /// to) an address the fetch guard denies.
    #[error("{0}")]
    UrlRefused(String),
    /// The source of a fetch failed: it could not be reached, answered an error, or broke off.
    #[error("{0}")]
    SourceFailed(String),
    /// The source of a fetch did not answer, or did not send its body, in time.
    #[error("{0}")]
    SourceTimeout(String),
    /// The file's scanner found it infected; its bytes are deleted. Names what was found.
    #[error("{0}")]
    Infected(String),
    /// An `Idempotency-Key` used again with a different request.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// The first request with this `Idempotency-Key` is still running; retry after the seconds.
    #[error("{0}")]
    InProgress(String, u64),
    /// A dependency is unavailable; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected backend failure. Shown as "internal error"; the cause is logged.
    #[error("internal error")]
    Internal(#[source] Cause),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A stable machine-readable code for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::Invalid(_) => "invalid_request",
            Error::TooLarge(_) => "too_large",
            Error::UnsupportedType(_) => "unsupported_type",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::Conflict(_) => "conflict",
            Error::PreconditionFailed(_) => "precondition_failed",
            Error::LengthRequired(_) => "length_required",
            Error::RangeNotSatisfiable(_) => "range_not_satisfiable",
            Error::Gone(_) => "gone",
            Error::ChecksumMismatch(_) => "checksum_mismatch",
            Error::Locked(_) => "locked",
            Error::RateLimited(_, _) => "rate_limited",
            Error::QuotaExceeded(_) => "quota_exceeded",
            Error::InsufficientStorage(_) => "insufficient_storage",
            Error::Timeout(_) => "timeout",
            Error::UrlRefused(_) => "url_refused",
            Error::SourceFailed(_) => "source_failed",
            Error::SourceTimeout(_) => "source_timeout",
            Error::Infected(_) => "infected",
            Error::IdempotencyMismatch(_) => "idempotency_key_reused",
            Error::InProgress(_, _) => "in_progress",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// Wraps any error as [`Error::Internal`].
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Error::Internal(cause.into())
    }

    /// An internal error from a message (for invariants that broke).
    pub fn internal_msg(msg: impl fmt::Display) -> Self {
        Error::Internal(msg.to_string().into())
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl fmt::Display) -> Self {
        Error::Invalid(msg.to_string())
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(msg: impl fmt::Display) -> Self {
        Error::NotFound(msg.to_string())
    }

    /// True for the 5xx family (the server logs these with their cause).
    pub fn is_server_error(&self) -> bool {
        matches!(
            self,
            Error::Internal(_) | Error::Unavailable(_) | Error::InsufficientStorage(_)
        )
    }

    /// The disk-full outcome, for a write that failed with no space left.
    pub fn disk_full() -> Self {
        Error::InsufficientStorage("no space is left on the storage device; delete files to free space".into())
    }
}

/// Whether an I/O error means "no space left" (ENOSPC, or a disk quota).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if is_disk_full(&e) {
            tracing::warn!(error = %e, "a write found the disk full");
            return Error::disk_full();
        }
        Error::Internal(Box::new(e))
    }
}
