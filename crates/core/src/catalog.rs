//! The [`Catalog`] trait: where records live (credentials, files). A catalog stores and finds
//! rows; it makes no decisions — scoping, expiry and status rules are applied by core.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::Result;
use crate::model::{
    Credential, DeliveryRecord, DeliveryStatus, FileId, FileRecord, FileStatus, ProjectId, StorageKey, TaskId,
    TaskRecord, TaskStatus, UploadId, UploadRecord, UploadStatus, WorkspaceId,
};

/// A page of a project's files, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileQuery {
    pub project: ProjectId,
    /// Only this workspace's files, when set.
    pub workspace: Option<WorkspaceId>,
    pub status: FileStatus,
    /// Only files with an id lower than this (the previous page's last id).
    pub before: Option<FileId>,
    /// Leave out files whose `expires_at` is at or before this instant.
    pub live_at: Timestamp,
    pub limit: u32,
}

/// What becomes known when a pending file is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `Ready`, or `Quarantined` when the file's policy waits for a scanner.
    pub status: FileStatus,
    pub size: u64,
    /// Known on every path since issue 23 (an `Option` for rows written before).
    pub sha256: Option<String>,
    pub detected_type: String,
    pub completed_at: Timestamp,
}

/// A change that reports an event, made by [`Catalog::apply`] together with the event's
/// deliveries.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// A file inserted (a ready one: a direct upload).
    InsertFile(&'a FileRecord),
    /// [`Catalog::complete_file`].
    CompleteFile(&'a FileId, &'a Completion),
    /// [`Catalog::delete_file`].
    DeleteFile(&'a FileId, Timestamp),
    /// A scanner's verdict on a quarantined file: `Ready`, or `Rejected` with what was found
    /// (only if still quarantined).
    Verdict {
        id: &'a FileId,
        to: FileStatus,
        reason: Option<&'a str>,
    },
    /// A pending file that could not be taken becomes `failed` with its reason (only if still
    /// pending).
    FailFile {
        id: &'a FileId,
        reason: &'a str,
        at: Timestamp,
    },
    /// [`Catalog::finish_task`].
    FinishTask {
        id: &'a TaskId,
        runner: &'a str,
        status: TaskStatus,
        outputs: &'a [FileId],
        error: Option<&'a str>,
        at: Timestamp,
    },
    /// [`Catalog::release_task`] with a failure.
    FailLapsedTask {
        id: &'a TaskId,
        now: Timestamp,
        reason: &'a str,
    },
}

/// An object being written before its file row exists (a direct upload): recorded before the
/// write, deleted once the row is. What a crash leaves says what to clean and whose write it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub backend: String,
    pub key: StorageKey,
    /// The writing instance (see [`crate::context::Context::heartbeat`]).
    pub instance: String,
    pub created_at: Timestamp,
}

/// The record of an `Idempotency-Key`: which request first used it, whose it is while it
/// runs, and the answer once it is kept (see [`crate::idempotency`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotent {
    pub project: ProjectId,
    pub key: String,
    /// What the request was: method and target (or an MCP tool and its arguments' digest).
    pub request: String,
    /// The SHA-256 of the request's body, once it was read whole.
    pub body_sha256: Option<String>,
    /// The instance running the request (see [`crate::context::Context::heartbeat`]).
    pub instance: String,
    /// The answer is kept (else the request is running).
    pub done: bool,
    pub status: Option<u16>,
    /// The kept answer's headers, as a JSON array of `[name, value]`.
    pub headers: Option<String>,
    /// The kept answer's body, base64.
    pub body: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Records that have ended, which [`Catalog::prune`] removes once old enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Delivered or failed deliveries made before the cut-off.
    Deliveries,
    /// Succeeded or failed tasks that finished before it.
    Tasks,
    /// Deleted files deleted before it.
    Tombstones,
    /// Completed or aborted uploads that expired before it.
    Uploads,
    /// Idempotency records that expired before it.
    Idempotency,
}

impl Prune {
    pub const ALL: [Prune; 5] = [
        Prune::Deliveries,
        Prune::Tasks,
        Prune::Tombstones,
        Prune::Uploads,
        Prune::Idempotency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Prune::Deliveries => "deliveries",
            Prune::Tasks => "tasks",
            Prune::Tombstones => "tombstones",
            Prune::Uploads => "uploads",
            Prune::Idempotency => "idempotency",
        }
    }
}

/// A store of records.
///
/// # Contract
/// - `insert_*` of an existing id, or of a file whose (backend, key) is already used by a file
///   that is not deleted, yields `Conflict` and changes nothing.
/// - Lookups of a missing id yield `Ok(None)`.
/// - `complete_file` moves a file from pending to ready and returns false if it was not pending;
///   `delete_file` moves a file that is not deleted to deleted and returns false otherwise. Both
///   are atomic, so of two racing callers exactly one gets `true`.
/// - `revoke_credential` returns false for a missing or already revoked credential.
/// - An upload's lock is a lease: `lock_upload` takes it when the upload is active and the lock
///   is free, already held by the same token (which extends it), or its lease ended before
///   `now`. `advance_upload` writes only under the lock. `finish_upload` moves an active upload
///   to completed or aborted, atomically (one of two racing callers gets `true`), and frees it.
/// - A task moves queued → running (`claim_task`: one of two racing claimers gets `true`) →
///   succeeded or failed (`finish_task`, only by its runner while running), or back to queued
///   (`release_task`, only once its lease ended).
/// - A delivery is taken by moving its `next_at` forward (`lease_delivery`: one of two racing
///   instances gets `true`); if the taker dies, it is due again at that instant.
/// - A named lease (`try_lease`) has one holder at a time; it is taken over once it ended.
/// - `apply` makes a [`Change`] and, if it took effect (it returns `true`), records the
///   deliveries in the same transaction: a crash or an error keeps both or neither.
#[async_trait]
pub trait Catalog: Send + Sync + Debug {
    /// Adds a credential.
    async fn insert_credential(&self, c: &Credential) -> Result<()>;
    /// Finds a credential by id.
    async fn credential(&self, id: &str) -> Result<Option<Credential>>;
    /// Lists credentials, of one project or all, oldest first.
    async fn list_credentials(&self, project: Option<&ProjectId>) -> Result<Vec<Credential>>;
    /// Revokes a credential.
    async fn revoke_credential(&self, id: &str, at: Timestamp) -> Result<bool>;
    /// A value that changes, in every process sharing this catalog, as soon as any of them has
    /// added or revoked a credential; read without a round trip to the database. While it is
    /// unchanged a credential row read earlier is still what the catalog holds, so it may be
    /// kept in memory. `None` (the default) when the catalog has no such signal: every check
    /// then reads the row.
    fn credentials_version(&self) -> Option<u128> {
        None
    }
    /// Wakes (`notify_waiters`) when a task became queued in any process sharing this catalog,
    /// so a waiting claim costs no query until there is work. `None` (the default) when the
    /// catalog has no such signal now: claims then look again every 250 ms.
    fn queued_signal(&self) -> Option<&tokio::sync::Notify> {
        None
    }
    /// True when the catalog takes one write at a time (SQLite): a long background job then
    /// pauses between its batches, so requests' writes are not kept waiting behind them.
    fn one_writer(&self) -> bool {
        false
    }

    /// Adds a file record.
    async fn insert_file(&self, f: &FileRecord) -> Result<()>;
    /// Finds a file by id, whatever its project or status.
    async fn file(&self, id: &FileId) -> Result<Option<FileRecord>>;
    /// Finds the live (pending or ready) file at a backend's key.
    async fn file_by_key(&self, backend: &str, key: &StorageKey) -> Result<Option<FileRecord>>;
    /// Lists files.
    async fn list_files(&self, q: &FileQuery) -> Result<Vec<FileRecord>>;
    /// Marks a pending file ready.
    async fn complete_file(&self, id: &FileId, c: &Completion) -> Result<bool>;
    /// Marks a file deleted (the row stays as a tombstone).
    async fn delete_file(&self, id: &FileId, at: Timestamp) -> Result<bool>;
    /// Removes a row for good (a pending upload rolled back).
    async fn remove_file(&self, id: &FileId) -> Result<()>;

    /// Adds an upload.
    async fn insert_upload(&self, u: &UploadRecord) -> Result<()>;
    /// Adds a pending file, then the upload that fills it (one call, so a catalog may write
    /// both with others at once). The upload is not added if the file is refused; on an error
    /// the file may be there, and the caller removes it.
    async fn insert_file_and_upload(&self, f: &FileRecord, u: &UploadRecord) -> Result<()> {
        self.insert_file(f).await?;
        self.insert_upload(u).await
    }
    /// Finds an upload by id, whatever its project or status.
    async fn upload(&self, id: &UploadId) -> Result<Option<UploadRecord>>;
    /// Takes or extends an upload's lock until `until`; false when another holder's lease runs.
    async fn lock_upload(&self, id: &UploadId, token: &str, now: Timestamp, until: Timestamp) -> Result<bool>;
    /// Frees an upload's lock if `token` holds it.
    async fn unlock_upload(&self, id: &UploadId, token: &str) -> Result<()>;
    /// Records a tus upload's progress (offset, a length given late, the new expiry) while
    /// `token` holds its lock; false otherwise.
    async fn advance_upload(
        &self,
        id: &UploadId,
        token: &str,
        offset: u64,
        length: Option<u64>,
        expires_at: Timestamp,
    ) -> Result<bool>;
    /// [`Catalog::lock_upload`], returning the upload as it stands under the lock (`None` when
    /// the lock was not taken). A store may do it in one statement.
    async fn lock_and_read_upload(
        &self,
        id: &UploadId,
        token: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<UploadRecord>> {
        if !self.lock_upload(id, token, now, until).await? {
            return Ok(None);
        }
        self.upload(id).await
    }
    /// [`Catalog::advance_upload`], then frees the lock; false (and nothing changed) when
    /// `token` does not hold it. A store may do it in one statement.
    async fn advance_and_unlock_upload(
        &self,
        id: &UploadId,
        token: &str,
        offset: u64,
        length: Option<u64>,
        expires_at: Timestamp,
    ) -> Result<bool> {
        if !self.advance_upload(id, token, offset, length, expires_at).await? {
            return Ok(false);
        }
        self.unlock_upload(id, token).await?;
        Ok(true)
    }
    /// Moves an active upload to `status` (completed or aborted) and frees its lock.
    async fn finish_upload(&self, id: &UploadId, status: UploadStatus) -> Result<bool>;
    /// Active uploads abandoned at `now` (`expires_at` passed), oldest first.
    async fn expired_uploads(&self, now: Timestamp, limit: u32) -> Result<Vec<UploadRecord>>;

    /// Files not deleted whose `expires_at` is at or before `now`, soonest first.
    async fn expired_files(&self, now: Timestamp, limit: u32) -> Result<Vec<FileRecord>>;

    /// What a project holds at `now`: files not deleted and not expired, and the sum of their
    /// sizes (a pending file counts with its announced size, or 0).
    async fn usage(&self, project: &ProjectId, now: Timestamp) -> Result<crate::limits::Usage>;

    /// Adds a task.
    async fn insert_task(&self, t: &TaskRecord) -> Result<()>;
    /// Finds a task by id, whatever its project.
    async fn task(&self, id: &TaskId) -> Result<Option<TaskRecord>>;
    /// A project's queued tasks, oldest first (only one workspace's, when set).
    async fn queued_tasks(
        &self,
        project: &ProjectId,
        workspace: Option<&WorkspaceId>,
        limit: u32,
    ) -> Result<Vec<TaskRecord>>;
    /// Moves a queued task to running for `runner`, leased until `until`; false if it was not
    /// queued (another claimer won).
    async fn claim_task(&self, id: &TaskId, runner: &str, now: Timestamp, until: Timestamp) -> Result<bool>;
    /// Extends a running task's lease if `runner` holds it.
    async fn renew_task(&self, id: &TaskId, runner: &str, until: Timestamp) -> Result<bool>;
    /// Moves a task `runner` holds to succeeded or failed.
    async fn finish_task(
        &self,
        id: &TaskId,
        runner: &str,
        status: TaskStatus,
        outputs: &[FileId],
        error: Option<&str>,
        at: Timestamp,
    ) -> Result<bool>;
    /// Running tasks whose lease ended before `now`, oldest lease first.
    async fn lapsed_tasks(&self, now: Timestamp, limit: u32) -> Result<Vec<TaskRecord>>;
    /// A running task whose lease ended before `now`: queued again, or failed with `failure`.
    async fn release_task(&self, id: &TaskId, now: Timestamp, failure: Option<&str>) -> Result<bool>;

    /// Makes `change` and, if it took effect, records `deliveries`, in one transaction; returns
    /// whether it took effect (an insert always does).
    async fn apply(&self, change: Change<'_>, deliveries: &[DeliveryRecord]) -> Result<bool>;
    /// Marks many files deleted, each with the deliveries of its event, in as few transactions
    /// as the catalog can (a sweep's batch); returns the ids it deleted, leaving out those
    /// deleted already (whose deliveries are not recorded). By default one [`Catalog::apply`]
    /// each.
    async fn delete_files(&self, files: &[(FileId, Vec<DeliveryRecord>)], at: Timestamp) -> Result<Vec<FileId>> {
        let mut deleted = Vec::with_capacity(files.len());
        for (id, deliveries) in files {
            if self.apply(Change::DeleteFile(id, at), deliveries).await? {
                deleted.push(id.clone());
            }
        }
        Ok(deleted)
    }

    /// Deletes up to `limit` records of kind `what` that ended before `before`; returns how
    /// many. Never a live record (see [`Prune`]).
    async fn prune(&self, what: Prune, before: Timestamp, limit: u32) -> Result<u64>;

    /// Records an intent (replacing one at the same key).
    async fn insert_intent(&self, i: &Intent) -> Result<()>;
    /// Removes the intent at a key, if any.
    async fn delete_intent(&self, backend: &str, key: &StorageKey) -> Result<()>;
    /// The intent at a key.
    async fn intent(&self, backend: &str, key: &StorageKey) -> Result<Option<Intent>>;
    /// Intents made before `before`, oldest first.
    async fn intents(&self, before: Timestamp, limit: u32) -> Result<Vec<Intent>>;

    /// Quarantined files, oldest first (the scanner's work).
    async fn quarantined_files(&self, limit: u32) -> Result<Vec<FileRecord>>;

    /// Records a new idempotency key; `false` if the project has a record for it already.
    async fn insert_idempotent(&self, r: &Idempotent) -> Result<bool>;
    /// A project's record of a key.
    async fn idempotent(&self, project: &ProjectId, key: &str) -> Result<Option<Idempotent>>;
    /// Replaces `old` with `new` if the record is still exactly `old` (same instance, same
    /// creation): an expired record, or one whose instance is gone.
    async fn replace_idempotent(&self, old: &Idempotent, new: &Idempotent) -> Result<bool>;
    /// Keeps the answer of a running record that `r.instance` holds; `false` if it no longer
    /// holds it.
    async fn settle_idempotent(&self, r: &Idempotent) -> Result<bool>;
    /// Removes a running record that `instance` holds (its request failed: the key is free).
    async fn release_idempotent(&self, project: &ProjectId, key: &str, instance: &str) -> Result<()>;

    /// Adds a delivery.
    async fn insert_delivery(&self, d: &DeliveryRecord) -> Result<()>;
    /// Pending deliveries due at `now`, soonest first.
    async fn due_deliveries(&self, now: Timestamp, limit: u32) -> Result<Vec<DeliveryRecord>>;
    /// Takes a due delivery by moving its `next_at` to `until`.
    async fn lease_delivery(&self, id: &str, now: Timestamp, until: Timestamp) -> Result<bool>;
    /// Records an attempt's outcome: delivered, failed for good, or pending again at `next_at`.
    async fn settle_delivery(
        &self,
        id: &str,
        status: DeliveryStatus,
        attempts: u32,
        next_at: Timestamp,
        last_error: Option<&str>,
        at: Timestamp,
    ) -> Result<()>;
    /// A project's deliveries, newest first.
    async fn deliveries(&self, project: &ProjectId, limit: u32) -> Result<Vec<DeliveryRecord>>;

    /// Takes or extends the lease `name` for `holder` until `until`; false while another
    /// holder's lease runs at `now`.
    async fn try_lease(&self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<bool>;
    /// How many leases whose name starts with `prefix` run at `now`.
    async fn live_leases(&self, prefix: &str, now: Timestamp) -> Result<u32>;
    /// Gives up a lease `holder` holds.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// A deployment-wide setting, if it was ever set.
    async fn setting(&self, name: &str) -> Result<Option<String>>;
    /// Sets `name` to `value` unless it is set already; returns the value it holds after (the
    /// first writer's, when two race).
    async fn init_setting(&self, name: &str, value: &str) -> Result<String>;
    /// Whether any file that is not deleted (pending, ready) lives on `backend`.
    async fn has_files_on(&self, backend: &str) -> Result<bool>;
}
