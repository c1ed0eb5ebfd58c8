//! Rows and errors of the SQL catalogs: decoding each record from a row of either database,
//! the integer conversions, and how a database error becomes a core outcome.

use filedock_core::model::{Concat, DeliveryRecord, DeliveryStatus, TaskId, TaskRecord, TaskStatus};
use filedock_core::{
    Class, Credential, CredentialKind, Error, FileId, FileName, FileRecord, FileStatus, ProjectId, Result, StorageKey,
    UploadId, UploadKind, UploadRecord, UploadStatus, WorkspaceId,
};
use sqlx::{ColumnIndex, Row as AnyRow};

/// A database error as a core outcome: a unique violation is a `Conflict`; a full disk (SQLite's
/// `SQLITE_FULL`, PostgreSQL's `disk_full` class 53) is `InsufficientStorage`; a database that
/// cannot be reached, is shutting down or did not answer in time is `Unavailable` (503, retry);
/// anything else is `Internal`.
pub(crate) fn db_err(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict("that record exists already".into()),
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // SQLITE_FULL; PostgreSQL's disk_full and out_of_memory.
            Some("13" | "53100" | "53200") => full(&e),
            // SQLITE_BUSY/LOCKED after the busy timeout; PostgreSQL: connection exceptions (08),
            // operator intervention (57: shutdown, cannot connect now), statement timeouts.
            Some(c) if c == "5" || c == "6" || c.starts_with("08") || c.starts_with("57") => unavailable(&e),
            _ => Error::internal(e),
        },
        sqlx::Error::Io(io) if filedock_core::error::is_disk_full(io) => Error::disk_full(),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => unavailable(&e),
        _ => Error::internal(e),
    }
}

/// The catalog's disk is full (507: the client may retry once files are deleted).
pub(crate) fn full(e: &dyn std::fmt::Display) -> Error {
    tracing::warn!(error = %e, "the catalog's disk is full");
    Error::InsufficientStorage("the catalog's disk is full; delete files to free space".into())
}

/// The catalog is busy, unreachable or shutting down (503: retry).
pub(crate) fn unavailable(e: &dyn std::fmt::Display) -> Error {
    tracing::warn!(error = %e, "the catalog does not answer");
    Error::Unavailable("the catalog does not answer; retry shortly".into())
}

/// Where a catalog's relaxed statements run: a connection of a pool (PostgreSQL), or SQLite's
/// one relaxed connection ([`crate::sqlite`]).
#[async_trait::async_trait]
pub(crate) trait Relaxed: Send + Sync + 'static {
    type Conn: std::ops::DerefMut + Send;
    async fn conn(&self) -> Result<Self::Conn>;
}

#[async_trait::async_trait]
impl<DB: sqlx::Database> Relaxed for sqlx::Pool<DB> {
    type Conn = sqlx::pool::PoolConnection<DB>;
    async fn conn(&self) -> Result<Self::Conn> {
        self.acquire().await.map_err(db_err)
    }
}

pub(crate) fn migrate_err(e: sqlx::migrate::MigrateError) -> Error {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(v) => Error::Unavailable(format!(
            "the catalog's schema (migration {v}) is newer than this filedock binary; run a newer filedock"
        )),
        other => Error::internal(other),
    }
}

pub(crate) fn u64_of(v: Option<i64>) -> Option<u64> {
    v.map(|n| n.max(0) as u64)
}

pub(crate) fn i64_of(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

pub(crate) fn credential_of<R: AnyRow>(r: &R) -> Result<Credential>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Credential {
        id: r.try_get("id").map_err(db_err)?,
        project: ProjectId::new(r.try_get::<String, _>("project").map_err(db_err)?)?,
        workspace: r
            .try_get::<Option<String>, _>("workspace")
            .map_err(db_err)?
            .map(WorkspaceId::new)
            .transpose()?,
        kind: CredentialKind::parse(&r.try_get::<String, _>("kind").map_err(db_err)?)?,
        name: r.try_get("name").map_err(db_err)?,
        secret_hash: r.try_get("secret_hash").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        revoked_at: r.try_get("revoked_at").map_err(db_err)?,
    })
}

pub(crate) fn file_of<R: AnyRow>(r: &R) -> Result<FileRecord>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let s = |name: &str| -> Result<String> { r.try_get::<String, _>(name).map_err(db_err) };
    let o = |name: &str| -> Result<Option<String>> { r.try_get::<Option<String>, _>(name).map_err(db_err) };
    let t = |name: &str| -> Result<Option<i64>> { r.try_get::<Option<i64>, _>(name).map_err(db_err) };
    Ok(FileRecord {
        id: FileId::parse(&s("id")?).map_err(|_| Error::internal_msg("malformed file id in catalog"))?,
        project: ProjectId::new(s("project")?)?,
        workspace: o("workspace")?.map(WorkspaceId::new).transpose()?,
        backend: s("backend")?,
        key: StorageKey::new(s("storage_key")?)?,
        name: FileName::new(s("name")?)?,
        size: u64_of(t("size")?),
        declared_type: o("declared_type")?,
        detected_type: o("detected_type")?,
        extension: o("extension")?,
        sha256: o("sha256")?,
        created_by: o("created_by")?,
        agent: o("agent")?,
        credential_id: o("credential_id")?,
        class: Class::parse(&s("class")?)?,
        status: FileStatus::parse(&s("status")?)?,
        policy: s("policy")?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        completed_at: t("completed_at")?,
        expires_at: t("expires_at")?,
        deleted_at: t("deleted_at")?,
        origin: o("origin")?,
        reason: o("reason")?,
    })
}

/// The columns of a row by name, whichever driver read it: sqlx's rows, and rusqlite's for the
/// upload-lock statements SQLite runs on the caller's thread (`crate::direct`).
pub(crate) trait Columns {
    fn text(&self, name: &str) -> Result<Option<String>>;
    fn int(&self, name: &str) -> Result<Option<i64>>;
}

impl<R: AnyRow> Columns for R
where
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn text(&self, name: &str) -> Result<Option<String>> {
        self.try_get::<Option<String>, _>(name).map_err(db_err)
    }
    fn int(&self, name: &str) -> Result<Option<i64>> {
        self.try_get::<Option<i64>, _>(name).map_err(db_err)
    }
}

pub(crate) fn upload_of(r: &impl Columns) -> Result<UploadRecord> {
    let null = |name: &str| Error::internal_msg(format!("{name} is NULL in the uploads table"));
    let s = |name: &str| -> Result<String> { r.text(name)?.ok_or_else(|| null(name)) };
    let o = |name: &str| r.text(name);
    let n = |name: &str| -> Result<i64> { r.int(name)?.ok_or_else(|| null(name)) };
    let bad = |_| Error::internal_msg("malformed id in the uploads table");
    Ok(UploadRecord {
        id: UploadId::parse(&s("id")?).map_err(bad)?,
        kind: UploadKind::parse(&s("kind")?)?,
        project: ProjectId::new(s("project")?)?,
        workspace: o("workspace")?.map(WorkspaceId::new).transpose()?,
        file_id: o("file_id")?.map(|f| FileId::parse(&f)).transpose().map_err(bad)?,
        backend: s("backend")?,
        key: StorageKey::new(s("storage_key")?)?,
        handle: s("handle")?,
        length: u64_of(r.int("length")?),
        part_size: n("part_size")?.max(0) as u64,
        offset: n("upload_offset")?.max(0) as u64,
        metadata: o("metadata")?,
        concat: o("concat")?.map(|c| Concat::parse(&c)).transpose()?,
        status: UploadStatus::parse(&s("status")?)?,
        created_at: n("created_at")?,
        expires_at: n("expires_at")?,
    })
}

pub(crate) fn task_of<R: AnyRow>(r: &R) -> Result<TaskRecord>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let s = |name: &str| -> Result<String> { r.try_get::<String, _>(name).map_err(db_err) };
    let o = |name: &str| -> Result<Option<String>> { r.try_get::<Option<String>, _>(name).map_err(db_err) };
    let t = |name: &str| -> Result<Option<i64>> { r.try_get::<Option<i64>, _>(name).map_err(db_err) };
    let bad = |what: &str| Error::internal_msg(format!("malformed {what} in the tasks table"));
    let outputs: Vec<String> = serde_json::from_str(&s("outputs")?).map_err(|_| bad("outputs"))?;
    Ok(TaskRecord {
        id: TaskId::parse(&s("id")?).map_err(|_| bad("id"))?,
        project: ProjectId::new(s("project")?)?,
        workspace: o("workspace")?.map(WorkspaceId::new).transpose()?,
        workflow: s("workflow")?,
        parameters: serde_json::from_str(&s("parameters")?).map_err(|_| bad("parameters"))?,
        status: TaskStatus::parse(&s("status")?)?,
        created_by: o("created_by")?,
        runner: o("runner")?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts").map_err(db_err)?).unwrap_or(0),
        lease_until: t("lease_until")?,
        outputs: outputs
            .iter()
            .map(|f| FileId::parse(f).map_err(|_| bad("outputs")))
            .collect::<Result<_>>()?,
        error: o("error")?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        started_at: t("started_at")?,
        finished_at: t("finished_at")?,
    })
}

pub(crate) fn delivery_of<R: AnyRow>(r: &R) -> Result<DeliveryRecord>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let s = |name: &str| -> Result<String> { r.try_get::<String, _>(name).map_err(db_err) };
    let n = |name: &str| -> Result<i64> { r.try_get::<i64, _>(name).map_err(db_err) };
    Ok(DeliveryRecord {
        id: s("id")?,
        event_id: s("event_id")?,
        project: ProjectId::new(s("project")?)?,
        webhook: s("webhook")?,
        event: s("event")?,
        payload: s("payload")?,
        status: DeliveryStatus::parse(&s("status")?)?,
        attempts: u32::try_from(n("attempts")?).unwrap_or(0),
        next_at: n("next_at")?,
        last_error: r.try_get("last_error").map_err(db_err)?,
        created_at: n("created_at")?,
        delivered_at: r.try_get("delivered_at").map_err(db_err)?,
    })
}

pub(crate) fn outputs_json(outputs: &[FileId]) -> String {
    serde_json::to_string(&outputs.iter().map(|f| f.as_str()).collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

/// `list_files` in its four shapes, in the order of [`listing`]: `$1` project, `$2` status,
/// `$3` live at, `$4` limit, then the workspace and the cursor when given. `$id` is how the id is
/// compared and ordered (see [`LISTINGS_BYTEWISE`]).
macro_rules! listings {
    ($id:literal) => {
        [
            concat!(
                "SELECT * FROM files WHERE project = $1 AND status = $2
                 AND (expires_at IS NULL OR expires_at > $3) ORDER BY ",
                $id,
                " DESC LIMIT $4"
            ),
            concat!(
                "SELECT * FROM files WHERE project = $1 AND status = $2 AND ",
                $id,
                " < $5
                 AND (expires_at IS NULL OR expires_at > $3) ORDER BY ",
                $id,
                " DESC LIMIT $4"
            ),
            concat!(
                "SELECT * FROM files WHERE project = $1 AND workspace = $5 AND status = $2
                 AND (expires_at IS NULL OR expires_at > $3) ORDER BY ",
                $id,
                " DESC LIMIT $4"
            ),
            concat!(
                "SELECT * FROM files WHERE project = $1 AND workspace = $5 AND status = $2 AND ",
                $id,
                " < $6
                 AND (expires_at IS NULL OR expires_at > $3) ORDER BY ",
                $id,
                " DESC LIMIT $4"
            ),
        ]
    };
}

/// The listings as SQLite runs them: its text compares bytewise, as the indexes hold it.
pub(crate) const LISTINGS: [&str; 4] = listings!("id");

/// The listings with the id compared bytewise (`COLLATE "C"`), as the listing indexes of
/// PostgreSQL hold it (migration 0011). The primary key, in the database's collation, cannot
/// give that order, so no plan walks it: with statistics stale after a burst of pending files
/// (they still said every file was ready), the generic plan walked the primary key backwards
/// past every pending file (35 ms for the newest page of 10,000 under 230,000 pending).
pub(crate) const LISTINGS_BYTEWISE: [&str; 4] = listings!("id COLLATE \"C\"");

/// Which of the listings answers a query: with a workspace or not, after a cursor or not.
pub(crate) fn listing(workspace: bool, before: bool) -> usize {
    usize::from(workspace) * 2 + usize::from(before)
}

/// What the sweeper takes, oldest expiry first (`$1` now, `$2` limit): each walks its index in
/// order (migration 0010), never sorting what expired at one instant.
pub(crate) const EXPIRED_FILES: &str = "SELECT * FROM files
    WHERE status <> 'deleted' AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2";
pub(crate) const EXPIRED_UPLOADS: &str =
    "SELECT * FROM uploads WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2";
