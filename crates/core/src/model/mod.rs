//! The domain nouns: ids and names as validating newtypes, and the records filedock keeps.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
pub use crate::names::validate_relative_path;
use crate::names::{hides_a_path, is_bidi_control, normalizes_to_a_path};

/// First path segments of the native API under `/v1/`; a project may not be named like one, so
/// Huawei's `/v1/{project_id}/agent-runtime/...` never collides with them.
pub const RESERVED_PROJECT_IDS: &[&str] = &["files", "uploads", "links", "keys", "workflows", "tasks"];

fn check_id_chars(kind: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 64 {
        return Err(Error::invalid(format!("{kind} must be 1 to 64 characters")));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::invalid(format!(
            "{kind} may only contain letters, digits, '-' and '_'"
        )));
    }
    Ok(())
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// A tenant: `[A-Za-z0-9_-]{1,64}`, not one of [`RESERVED_PROJECT_IDS`].
    ProjectId
);
string_newtype!(
    /// An optional sub-scope of a project: `[A-Za-z0-9_-]{1,64}`.
    WorkspaceId
);
string_newtype!(
    /// A file's id: 32 lowercase hex digits of a UUIDv7, so ids sort by creation time.
    FileId
);
string_newtype!(
    /// Where a blob lives inside its backend: a relative `/`-separated path of safe segments.
    StorageKey
);
string_newtype!(
    /// A user-facing file name: UTF-8, 1 to 255 bytes, no control characters, no path.
    FileName
);

/// Ids filedock mints: 32 lowercase hex digits of a UUIDv7, so they sort by creation time.
macro_rules! uuid_id {
    ($name:ident, $missing:literal) => {
        impl $name {
            /// A new, time-ordered id.
            pub fn generate() -> Self {
                $name(uuid::Uuid::now_v7().simple().to_string())
            }

            /// Parses an id as given by a client: anything malformed is `NotFound` rather than
            /// `Invalid`, so probing ids teaches nothing.
            pub fn parse(s: &str) -> Result<Self> {
                if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    Ok($name(s.to_owned()))
                } else {
                    Err(Error::not_found($missing))
                }
            }
        }
    };
}
uuid_id!(FileId, "no such file");

impl ProjectId {
    /// Validates a project id.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        check_id_chars("project id", &s)?;
        if RESERVED_PROJECT_IDS.contains(&s.as_str()) {
            return Err(Error::invalid(format!("project id '{s}' is reserved")));
        }
        Ok(ProjectId(s))
    }
}

impl WorkspaceId {
    /// Validates a workspace id.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        check_id_chars("workspace id", &s)?;
        Ok(WorkspaceId(s))
    }
}

/// The longest storage key filedock mints or accepts, in bytes (S3 allows 1024).
pub const MAX_KEY_LEN: usize = 1024;

impl StorageKey {
    /// Validates a key: relative, `/`-separated, no empty, `.` or `..` segment, no backslash, no
    /// control character, at most [`MAX_KEY_LEN`] bytes.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        validate_relative_path(&s, MAX_KEY_LEN)?;
        Ok(StorageKey(s))
    }

    /// The last segment.
    pub fn file_part(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl FileName {
    /// Validates a display name as given: 1–255 bytes of UTF-8, no control character, and no
    /// directory part — not `/`, `\\`, `.`, `..`, nor any of them percent-encoded. A client that
    /// sends a path where a name belongs (`../../etc/passwd`, `C:\\x\\a.png`) gets a 400 rather
    /// than a silently shortened name.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        if s.is_empty() {
            return Err(Error::invalid("file name must not be empty"));
        }
        if s.len() > 255 {
            return Err(Error::invalid("file name must be at most 255 bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err(Error::invalid("file name must not contain control characters"));
        }
        if s.chars().any(is_bidi_control) {
            return Err(Error::invalid(
                "file name must not contain bidirectional control characters",
            ));
        }
        if s.contains('/') || s.contains('\\') || s == "." || s == ".." || hides_a_path(&s) || normalizes_to_a_path(&s)
        {
            return Err(Error::invalid("file name must not contain a path"));
        }
        Ok(FileName(s))
    }

    /// The lowercased extension without the dot, if the name has one.
    pub fn extension(&self) -> Option<String> {
        let (stem, ext) = self.0.rsplit_once('.')?;
        if stem.is_empty() || ext.is_empty() || ext.len() > 16 || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        Some(ext.to_ascii_lowercase())
    }
}

/// A retention class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Files handed in for processing (default TTL 1 day).
    #[default]
    Input,
    /// Files produced by runs (default TTL 7 days).
    Output,
    /// Kept until deleted.
    Asset,
}

impl Class {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Input => "input",
            Class::Output => "output",
            Class::Asset => "asset",
        }
    }
    /// Parses a stored or client-given name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "input" => Ok(Class::Input),
            "output" => Ok(Class::Output),
            "asset" => Ok(Class::Asset),
            other => Err(Error::invalid(format!(
                "unknown class '{other}' (input, output, asset)"
            ))),
        }
    }
}

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Announced (presigned), bytes not yet checked.
    Pending,
    /// Stored, checked, served.
    Ready,
    /// Deleted or expired; the record stays as a tombstone.
    Deleted,
    /// Could not be taken (a fetch from a URL that failed); `reason` says why. No bytes.
    Failed,
    /// Stored and checked, waiting for its scanner's verdict: not served, linked or handed to a
    /// workflow until it is found clean.
    Quarantined,
    /// Found infected (or refused by its scanner); `reason` names what was found. No bytes.
    Rejected,
}

impl FileStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Pending => "pending",
            FileStatus::Ready => "ready",
            FileStatus::Deleted => "deleted",
            FileStatus::Failed => "failed",
            FileStatus::Quarantined => "quarantined",
            FileStatus::Rejected => "rejected",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(FileStatus::Pending),
            "ready" => Ok(FileStatus::Ready),
            "deleted" => Ok(FileStatus::Deleted),
            "failed" => Ok(FileStatus::Failed),
            "quarantined" => Ok(FileStatus::Quarantined),
            "rejected" => Ok(FileStatus::Rejected),
            other => Err(Error::internal_msg(format!("unknown file status '{other}'"))),
        }
    }
}

/// One stored object and what filedock knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRecord {
    pub id: FileId,
    pub project: ProjectId,
    pub workspace: Option<WorkspaceId>,
    /// The configured backend's name.
    pub backend: String,
    pub key: StorageKey,
    pub name: FileName,
    /// Bytes; for a pending file, the size it was announced with (if any).
    pub size: Option<u64>,
    /// The type the client declared.
    pub declared_type: Option<String>,
    /// The type found in the content.
    pub detected_type: Option<String>,
    pub extension: Option<String>,
    /// Lowercase hex SHA-256 of the content, once known.
    pub sha256: Option<String>,
    /// Who the client says made it (Juniortree's `created_by`).
    pub created_by: Option<String>,
    /// The agent that sent it (Juniortree's `Agent` header).
    pub agent: Option<String>,
    /// The credential that created it.
    pub credential_id: Option<String>,
    pub class: Class,
    pub status: FileStatus,
    /// The upload policy (route) the file came in under; rechecked at completion.
    pub policy: String,
    pub created_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    /// Where the bytes were fetched from (upload from a URL): the URL without credentials,
    /// query or fragment.
    pub origin: Option<String>,
    /// Why a `failed` file could not be taken.
    pub reason: Option<String>,
}

impl FileRecord {
    /// The answer for a use of a file that is not ready and will not become ready by waiting
    /// for its upload: failed, quarantined or rejected.
    pub fn failure(&self) -> Error {
        let why = self.reason.as_deref().unwrap_or("no reason recorded");
        match self.status {
            FileStatus::Quarantined => {
                Error::Conflict("the file is being scanned for viruses; it can be used once it is found clean".into())
            }
            FileStatus::Rejected => Error::Gone(format!(
                "the file was rejected by its virus scan ({why}); its bytes are deleted"
            )),
            _ => Error::Conflict(format!("this file could not be taken: {why}")),
        }
    }

    /// The content type to serve: detected, else declared, else octet-stream.
    pub fn content_type(&self) -> &str {
        self.detected_type
            .as_deref()
            .or(self.declared_type.as_deref())
            .unwrap_or("application/octet-stream")
    }
}

string_newtype!(
    /// An upload's id (multipart or tus): 32 lowercase hex digits of a UUIDv7.
    UploadId
);
uuid_id!(UploadId, "no such upload");

/// How an upload's bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadKind {
    /// S3-style: presigned parts, put in any order, assembled at complete.
    Multipart,
    /// tus 1.0: appended in order through filedock, resumable at the stored offset.
    Tus,
}

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    /// Taking bytes.
    Active,
    /// Assembled into its file.
    Completed,
    /// Aborted, terminated or expired; its parts are gone.
    Aborted,
}

macro_rules! str_enum {
    ($ty:ident { $($v:ident => $s:literal),* $(,)? }) => {
        impl $ty {
            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$v => $s),* }
            }
            /// Parses a stored name.
            pub fn parse(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($ty::$v),)*
                    other => Err(Error::internal_msg(format!("unknown {} '{other}'", stringify!($ty)))),
                }
            }
        }
    };
}
str_enum!(UploadKind { Multipart => "multipart", Tus => "tus" });
str_enum!(UploadStatus { Active => "active", Completed => "completed", Aborted => "aborted" });

/// What a tus upload is in a concatenation (tus' `Upload-Concat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concat {
    /// Bytes for a final upload to join; no file of its own.
    Partial,
    /// A file made of these partial uploads, in order.
    Final(Vec<UploadId>),
}

impl Concat {
    /// The stored form: `partial`, or `final;<id> <id> …`.
    pub fn to_stored(&self) -> String {
        match self {
            Concat::Partial => "partial".to_owned(),
            Concat::Final(ids) => {
                let ids: Vec<&str> = ids.iter().map(UploadId::as_str).collect();
                format!("final;{}", ids.join(" "))
            }
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Result<Self> {
        if s == "partial" {
            return Ok(Concat::Partial);
        }
        let bad = || Error::internal_msg(format!("unknown Concat '{s}'"));
        let ids = s.strip_prefix("final;").ok_or_else(bad)?;
        let ids = ids.split(' ').map(UploadId::parse).collect::<Result<Vec<_>>>();
        ids.map(Concat::Final).map_err(|_| bad())
    }
}

impl Serialize for Concat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_stored())
    }
}

/// An upload in progress, as the catalog keeps it: enough to resume it on any instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadRecord {
    pub id: UploadId,
    pub kind: UploadKind,
    pub project: ProjectId,
    pub workspace: Option<WorkspaceId>,
    /// The file the upload ends in (pending until then); `None` for a tus partial upload.
    pub file_id: Option<FileId>,
    pub backend: String,
    /// Where the assembled bytes go.
    pub key: StorageKey,
    /// The store's own handle on the unfinished object (an S3 upload id, a staging file).
    pub handle: String,
    /// The total length, once known (tus may defer it).
    pub length: Option<u64>,
    /// Multipart: the size of every part but the last.
    pub part_size: u64,
    /// tus: bytes received so far.
    pub offset: u64,
    /// tus: the `Upload-Metadata` header as sent.
    pub metadata: Option<String>,
    /// tus concatenation: a partial upload, or a final one and the partial uploads it joins.
    pub concat: Option<Concat>,
    pub status: UploadStatus,
    pub created_at: Timestamp,
    /// After this instant an active upload is abandoned: it is aborted and its parts deleted.
    pub expires_at: Timestamp,
}

string_newtype!(
    /// A task's id: 32 lowercase hex digits of a UUIDv7.
    TaskId
);
uuid_id!(TaskId, "no such task");

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Waiting for a runner.
    Queued,
    /// Claimed by a runner whose lease runs.
    Running,
    /// Completed with its outputs.
    Succeeded,
    /// Failed by its runner, or lost its runner too often.
    Failed,
}
str_enum!(TaskStatus { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed" });

impl TaskStatus {
    /// Succeeded or failed: nothing changes it any more.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed)
    }
}

/// A workflow run: its checked parameters, and who runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub project: ProjectId,
    pub workspace: Option<WorkspaceId>,
    /// The workflow's id.
    pub workflow: String,
    /// A JSON object of the checked parameters; a file parameter is `{"file_id": "…"}`.
    pub parameters: serde_json::Value,
    pub status: TaskStatus,
    /// The credential that started the run.
    pub created_by: Option<String>,
    /// The credential of the runner that holds (or held) it.
    pub runner: Option<String>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// While running: the runner's lease; past it, the task is queued again.
    pub lease_until: Option<Timestamp>,
    /// Files the runner produced, once succeeded.
    pub outputs: Vec<FileId>,
    /// Why it failed.
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

/// Where a webhook delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet acknowledged; due at `next_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up after the last retry.
    Failed,
}
str_enum!(DeliveryStatus { Pending => "pending", Delivered => "delivered", Failed => "failed" });

/// One event on its way to one webhook: kept in the catalog until the receiver acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    /// 32 lowercase hex digits.
    pub id: String,
    /// The event's id (the same in every webhook's delivery of it).
    pub event_id: String,
    pub project: ProjectId,
    /// The webhook's name in the config.
    pub webhook: String,
    /// `file.ready`, `file.deleted`, `task.succeeded`, `task.failed`.
    pub event: String,
    /// The JSON body, exactly as sent (and signed).
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When it is due (again); an instance sending it moves this forward as its lease.
    pub next_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// Kinds of credential, each with its secret prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// An interactive user (`st-`).
    Session,
    /// A server-to-server integration (`sk-`).
    Integration,
    /// A runner or agent machine (`dk-`).
    Device,
    /// An operator (`ad-`).
    Admin,
}

impl CredentialKind {
    /// All kinds.
    pub const ALL: [CredentialKind; 4] = [
        CredentialKind::Session,
        CredentialKind::Integration,
        CredentialKind::Device,
        CredentialKind::Admin,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::Integration => "integration",
            CredentialKind::Device => "device",
            CredentialKind::Admin => "admin",
        }
    }
    /// The secret's prefix, dash included.
    pub fn prefix(self) -> &'static str {
        match self {
            CredentialKind::Session => "st-",
            CredentialKind::Integration => "sk-",
            CredentialKind::Device => "dk-",
            CredentialKind::Admin => "ad-",
        }
    }
    /// Parses a stored or client-given name.
    pub fn parse(s: &str) -> Result<Self> {
        CredentialKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid(format!("unknown key kind '{s}' (session, integration, device, admin)")))
    }
}

/// A bearer credential, as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credential {
    /// 16 lowercase hex digits; also embedded in the secret.
    pub id: String,
    pub project: ProjectId,
    pub workspace: Option<WorkspaceId>,
    pub kind: CredentialKind,
    pub name: Option<String>,
    /// Lowercase hex SHA-256 of the secret part.
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests;
