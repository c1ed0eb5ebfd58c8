//! What the SQL catalogs share: one schema, one set of statements (portable between SQLite and
//! PostgreSQL: `$N` placeholders, `CAST($N AS TEXT) IS NULL`, `RETURNING`-free), row decoding,
//! and error mapping. [`sql_catalog!`] writes the `Catalog` impl for a struct with a `pool`.

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
    let unavailable = |e: &sqlx::Error| {
        tracing::warn!(error = %e, "the catalog does not answer");
        Error::Unavailable("the catalog does not answer; retry shortly".into())
    };
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict("that record exists already".into()),
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // SQLITE_FULL; PostgreSQL's disk_full and out_of_memory.
            Some("13" | "53100" | "53200") => {
                tracing::warn!(error = %e, "the catalog's disk is full");
                Error::InsufficientStorage("the catalog's disk is full; delete files to free space".into())
            }
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

/// Runs a statement that must work on a full disk (a delete, a revocation): if the disk is full,
/// the catalog gives up the room it keeps (`free_room`) and the statement runs once more; after
/// a success, the room is taken again when space allows (`keep_room`).
macro_rules! with_room {
    ($self:ident, $run:expr) => {{
        let first = $run;
        let outcome = match first {
            Err(filedock_core::Error::InsufficientStorage(_)) if $self.free_room() => $run,
            other => other,
        };
        if outcome.is_ok() {
            $self.keep_room();
        }
        outcome
    }};
}
pub(crate) use with_room;

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
    })
}

pub(crate) fn upload_of<R: AnyRow>(r: &R) -> Result<UploadRecord>
where
    for<'a> &'a str: ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let s = |name: &str| -> Result<String> { r.try_get::<String, _>(name).map_err(db_err) };
    let o = |name: &str| -> Result<Option<String>> { r.try_get::<Option<String>, _>(name).map_err(db_err) };
    let n = |name: &str| -> Result<i64> { r.try_get::<i64, _>(name).map_err(db_err) };
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
        length: u64_of(r.try_get::<Option<i64>, _>("length").map_err(db_err)?),
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

/// Implements `Catalog` for a struct with two sqlx pools on one database (SQLite or PostgreSQL):
/// `pool`, whose commits are durable before they return (fsync), and `relaxed`, whose commits
/// survive a crash of the process but may be lost with the last moments before a power failure.
/// `relaxed` carries only records whose loss is harmless and shows: a pending file (its upload
/// URL then fails and the client asks again), a new upload (404, the client starts over), an
/// upload's lock (it lapses anyway) and its offset (recorded after the bytes are synced, so a lost
/// offset is only lower than the bytes, and the client resends from it, as tus HEAD tells it). A
/// later durable commit makes the earlier relaxed ones durable too (one log, in order). New
/// pending files and uploads go through `batch`, a group-commit writer on `relaxed`.
macro_rules! sql_catalog {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl filedock_core::Catalog for $ty {
    async fn insert_credential(&self, c: &filedock_core::Credential) -> filedock_core::Result<()> {
        sqlx::query(
            "INSERT INTO credentials (id, project, workspace, kind, name, secret_hash, created_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.id)
        .bind(c.project.as_str())
        .bind(c.workspace.as_ref().map(|w| w.as_str()))
        .bind(c.kind.as_str())
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(c.created_at)
        .bind(c.revoked_at)
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        self.credentials_changed()
    }

    async fn credential(&self, id: &str) -> filedock_core::Result<Option<filedock_core::Credential>> {
        let row = sqlx::query("SELECT * FROM credentials WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        row.as_ref().map($crate::sql::credential_of).transpose()
    }

    async fn list_credentials(&self, project: Option<&filedock_core::ProjectId>) -> filedock_core::Result<Vec<filedock_core::Credential>> {
        let rows = sqlx::query("SELECT * FROM credentials WHERE (CAST($1 AS TEXT) IS NULL OR project = $1) ORDER BY created_at, id")
            .bind(project.map(|p| p.as_str()))
            .fetch_all(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        rows.iter().map($crate::sql::credential_of).collect()
    }

    async fn revoke_credential(&self, id: &str, at: filedock_core::Timestamp) -> filedock_core::Result<bool> {
        // A revocation must work on a full disk: it may use the room kept for it.
        let r = $crate::sql::with_room!(self, {
            sqlx::query("UPDATE credentials SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await
                .map_err($crate::sql::db_err)
        })?;
        if r.rows_affected() == 1 {
            self.credentials_changed()?;
        }
        Ok(r.rows_affected() == 1)
    }

    fn credentials_version(&self) -> Option<u128> {
        self.credentials_seen()
    }

    async fn insert_file(&self, f: &filedock_core::FileRecord) -> filedock_core::Result<()> {
        if f.status == filedock_core::FileStatus::Pending {
            self.batch.insert(Some(f), None).await
        } else {
            $crate::batch::Inserts::insert_files(&self.pool, &[f]).await
        }
    }

    async fn file(&self, id: &filedock_core::FileId) -> filedock_core::Result<Option<filedock_core::FileRecord>> {
        let row = sqlx::query("SELECT * FROM files WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        row.as_ref().map($crate::sql::file_of).transpose()
    }

    async fn file_by_key(&self, backend: &str, key: &filedock_core::StorageKey) -> filedock_core::Result<Option<filedock_core::FileRecord>> {
        let row = sqlx::query("SELECT * FROM files WHERE backend = $1 AND storage_key = $2 AND status <> 'deleted'")
            .bind(backend)
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        row.as_ref().map($crate::sql::file_of).transpose()
    }

    async fn list_files(&self, q: &filedock_core::catalog::FileQuery) -> filedock_core::Result<Vec<filedock_core::FileRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM files
             WHERE project = $1 AND status = $2
               AND (CAST($3 AS TEXT) IS NULL OR workspace = $3)
               AND (CAST($4 AS TEXT) IS NULL OR id < $4)
               AND (expires_at IS NULL OR expires_at > $5)
             ORDER BY id DESC LIMIT $6",
        )
        .bind(q.project.as_str())
        .bind(q.status.as_str())
        .bind(q.workspace.as_ref().map(|w| w.as_str()))
        .bind(q.before.as_ref().map(|b| b.as_str()))
        .bind(q.live_at)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        rows.iter().map($crate::sql::file_of).collect()
    }

    async fn complete_file(&self, id: &filedock_core::FileId, c: &filedock_core::catalog::Completion) -> filedock_core::Result<bool> {
        let r = sqlx::query(
            "UPDATE files SET status = 'ready', size = $2, sha256 = $3, detected_type = $4, completed_at = $5
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id.as_str())
        .bind($crate::sql::i64_of(Some(c.size)))
        .bind(&c.sha256)
        .bind(&c.detected_type)
        .bind(c.completed_at)
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_file(&self, id: &filedock_core::FileId, at: filedock_core::Timestamp) -> filedock_core::Result<bool> {
        // A delete frees space: it must work on a full disk, using the room kept for it.
        let r = $crate::sql::with_room!(self, {
            sqlx::query("UPDATE files SET status = 'deleted', deleted_at = $2 WHERE id = $1 AND status <> 'deleted'")
                .bind(id.as_str())
                .bind(at)
                .execute(&self.pool)
                .await
                .map_err($crate::sql::db_err)
        })?;
        Ok(r.rows_affected() == 1)
    }

    async fn remove_file(&self, id: &filedock_core::FileId) -> filedock_core::Result<()> {
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        Ok(())
    }

    async fn insert_upload(&self, u: &filedock_core::UploadRecord) -> filedock_core::Result<()> {
        self.batch.insert(None, Some(u)).await
    }

    async fn insert_file_and_upload(&self, f: &filedock_core::FileRecord, u: &filedock_core::UploadRecord) -> filedock_core::Result<()> {
        if f.status == filedock_core::FileStatus::Pending {
            self.batch.insert(Some(f), Some(u)).await
        } else {
            $crate::batch::Inserts::insert_files(&self.pool, &[f]).await?;
            self.batch.insert(None, Some(u)).await
        }
    }

    async fn upload(&self, id: &filedock_core::UploadId) -> filedock_core::Result<Option<filedock_core::UploadRecord>> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        row.as_ref().map($crate::sql::upload_of).transpose()
    }

    async fn lock_upload(
        &self,
        id: &filedock_core::UploadId,
        token: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        Ok(self.lock_and_read_upload(id, token, now, until).await?.is_some())
    }

    async fn unlock_upload(&self, id: &filedock_core::UploadId, token: &str) -> filedock_core::Result<()> {
        let mut c = $crate::sql::Relaxed::conn(&self.relaxed).await?;
        sqlx::query("UPDATE uploads SET lock_token = NULL, lock_until = NULL WHERE id = $1 AND lock_token = $2")
            .bind(id.as_str())
            .bind(token)
            .execute(&mut *c)
            .await
            .map_err($crate::sql::db_err)?;
        Ok(())
    }

    async fn advance_upload(
        &self,
        id: &filedock_core::UploadId,
        token: &str,
        offset: u64,
        length: Option<u64>,
        expires_at: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        self.advance(id, token, offset, length, expires_at, false).await
    }

    async fn lock_and_read_upload(
        &self,
        id: &filedock_core::UploadId,
        token: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<Option<filedock_core::UploadRecord>> {
        let mut c = $crate::sql::Relaxed::conn(&self.relaxed).await?;
        let row = sqlx::query(
            "UPDATE uploads SET lock_token = $2, lock_until = $4
             WHERE id = $1 AND status = 'active'
               AND (lock_token IS NULL OR lock_token = $2 OR lock_until < $3)
             RETURNING *",
        )
        .bind(id.as_str())
        .bind(token)
        .bind(now)
        .bind(until)
        .fetch_optional(&mut *c)
        .await
        .map_err($crate::sql::db_err)?;
        row.as_ref().map($crate::sql::upload_of).transpose()
    }

    async fn advance_and_unlock_upload(
        &self,
        id: &filedock_core::UploadId,
        token: &str,
        offset: u64,
        length: Option<u64>,
        expires_at: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        self.advance(id, token, offset, length, expires_at, true).await
    }

    async fn finish_upload(
        &self,
        id: &filedock_core::UploadId,
        status: filedock_core::UploadStatus,
    ) -> filedock_core::Result<bool> {
        let r = sqlx::query(
            "UPDATE uploads SET status = $2, lock_token = NULL, lock_until = NULL WHERE id = $1 AND status = 'active'",
        )
        .bind(id.as_str())
        .bind(status.as_str())
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn expired_uploads(
        &self,
        now: filedock_core::Timestamp,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::UploadRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM uploads WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        rows.iter().map($crate::sql::upload_of).collect()
    }

    async fn expired_files(
        &self,
        now: filedock_core::Timestamp,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::FileRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM files WHERE status <> 'deleted' AND expires_at IS NOT NULL AND expires_at <= $1
             ORDER BY expires_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        rows.iter().map($crate::sql::file_of).collect()
    }

    async fn usage(
        &self,
        project: &filedock_core::ProjectId,
        now: filedock_core::Timestamp,
    ) -> filedock_core::Result<filedock_core::limits::Usage> {
        use sqlx::Row as _;
        // Live files, and partial uploads (tus concatenation), which hold bytes of no file yet.
        let row = sqlx::query(
            "SELECT CAST(SUM(n) AS BIGINT) AS files, CAST(COALESCE(SUM(b), 0) AS BIGINT) AS bytes FROM (
                 SELECT COUNT(*) AS n, SUM(size) AS b FROM files
                 WHERE project = $1 AND status <> 'deleted' AND (expires_at IS NULL OR expires_at > $2)
                 UNION ALL
                 SELECT COUNT(*) AS n, SUM(COALESCE(length, upload_offset)) AS b FROM uploads
                 WHERE project = $1 AND concat = 'partial' AND status <> 'aborted' AND expires_at > $2
             ) AS usage",
        )
        .bind(project.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        let files: i64 = row.try_get("files").map_err($crate::sql::db_err)?;
        let bytes: i64 = row.try_get("bytes").map_err($crate::sql::db_err)?;
        Ok(filedock_core::limits::Usage {
            files: files.max(0) as u64,
            bytes: bytes.max(0) as u64,
        })
    }

    async fn insert_task(&self, t: &filedock_core::model::TaskRecord) -> filedock_core::Result<()> {
        sqlx::query(
            "INSERT INTO tasks (id, project, workspace, workflow, parameters, status, created_by, runner, attempts,
                lease_until, outputs, error, created_at, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(t.id.as_str())
        .bind(t.project.as_str())
        .bind(t.workspace.as_ref().map(|w| w.as_str()))
        .bind(&t.workflow)
        .bind(t.parameters.to_string())
        .bind(t.status.as_str())
        .bind(&t.created_by)
        .bind(&t.runner)
        .bind(i64::from(t.attempts))
        .bind(t.lease_until)
        .bind($crate::sql::outputs_json(&t.outputs))
        .bind(&t.error)
        .bind(t.created_at)
        .bind(t.started_at)
        .bind(t.finished_at)
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        Ok(())
    }

    async fn task(&self, id: &filedock_core::model::TaskId) -> filedock_core::Result<Option<filedock_core::model::TaskRecord>> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        row.as_ref().map($crate::sql::task_of).transpose()
    }

    async fn queued_tasks(
        &self,
        project: &filedock_core::ProjectId,
        workspace: Option<&filedock_core::WorkspaceId>,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::model::TaskRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE project = $1 AND status = 'queued'
               AND (CAST($2 AS TEXT) IS NULL OR workspace = $2)
             ORDER BY created_at, id LIMIT $3",
        )
        .bind(project.as_str())
        .bind(workspace.map(|w| w.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        rows.iter().map($crate::sql::task_of).collect()
    }

    async fn claim_task(
        &self,
        id: &filedock_core::model::TaskId,
        runner: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        // One conditional statement: of two racing claimers the database lets one through.
        let r = sqlx::query(
            "UPDATE tasks SET status = 'running', runner = $2, attempts = attempts + 1, lease_until = $4,
                started_at = COALESCE(started_at, $3)
             WHERE id = $1 AND status = 'queued'",
        )
        .bind(id.as_str())
        .bind(runner)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn renew_task(
        &self,
        id: &filedock_core::model::TaskId,
        runner: &str,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        let r = sqlx::query("UPDATE tasks SET lease_until = $3 WHERE id = $1 AND status = 'running' AND runner = $2")
            .bind(id.as_str())
            .bind(runner)
            .bind(until)
            .execute(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn finish_task(
        &self,
        id: &filedock_core::model::TaskId,
        runner: &str,
        status: filedock_core::model::TaskStatus,
        outputs: &[filedock_core::FileId],
        error: Option<&str>,
        at: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        let r = sqlx::query(
            "UPDATE tasks SET status = $3, outputs = $4, error = $5, finished_at = $6, lease_until = NULL
             WHERE id = $1 AND status = 'running' AND runner = $2",
        )
        .bind(id.as_str())
        .bind(runner)
        .bind(status.as_str())
        .bind($crate::sql::outputs_json(outputs))
        .bind(error)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn lapsed_tasks(
        &self,
        now: filedock_core::Timestamp,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::model::TaskRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM tasks WHERE status = 'running' AND lease_until < $1 ORDER BY lease_until, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        rows.iter().map($crate::sql::task_of).collect()
    }

    async fn release_task(
        &self,
        id: &filedock_core::model::TaskId,
        now: filedock_core::Timestamp,
        failure: Option<&str>,
    ) -> filedock_core::Result<bool> {
        let r = match failure {
            None => sqlx::query(
                "UPDATE tasks SET status = 'queued', runner = NULL, lease_until = NULL
                 WHERE id = $1 AND status = 'running' AND lease_until < $2",
            )
            .bind(id.as_str())
            .bind(now)
            .execute(&self.pool)
            .await,
            Some(reason) => sqlx::query(
                "UPDATE tasks SET status = 'failed', error = $3, finished_at = $2, lease_until = NULL
                 WHERE id = $1 AND status = 'running' AND lease_until < $2",
            )
            .bind(id.as_str())
            .bind(now)
            .bind(reason)
            .execute(&self.pool)
            .await,
        }
        .map_err($crate::sql::db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert_delivery(&self, d: &filedock_core::model::DeliveryRecord) -> filedock_core::Result<()> {
        sqlx::query(
            "INSERT INTO deliveries (id, event_id, project, webhook, event, payload, status, attempts, next_at,
                last_error, created_at, delivered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&d.id)
        .bind(&d.event_id)
        .bind(d.project.as_str())
        .bind(&d.webhook)
        .bind(&d.event)
        .bind(&d.payload)
        .bind(d.status.as_str())
        .bind(i64::from(d.attempts))
        .bind(d.next_at)
        .bind(&d.last_error)
        .bind(d.created_at)
        .bind(d.delivered_at)
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        Ok(())
    }

    async fn due_deliveries(
        &self,
        now: filedock_core::Timestamp,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::model::DeliveryRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM deliveries WHERE status = 'pending' AND next_at <= $1 ORDER BY next_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        rows.iter().map($crate::sql::delivery_of).collect()
    }

    async fn lease_delivery(
        &self,
        id: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        let r = sqlx::query("UPDATE deliveries SET next_at = $3 WHERE id = $1 AND status = 'pending' AND next_at <= $2")
            .bind(id)
            .bind(now)
            .bind(until)
            .execute(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn settle_delivery(
        &self,
        id: &str,
        status: filedock_core::model::DeliveryStatus,
        attempts: u32,
        next_at: filedock_core::Timestamp,
        last_error: Option<&str>,
        at: filedock_core::Timestamp,
    ) -> filedock_core::Result<()> {
        sqlx::query(
            "UPDATE deliveries SET status = $2, attempts = $3, next_at = $4, last_error = $5,
                delivered_at = CASE WHEN $2 = 'delivered' THEN $6 ELSE delivered_at END
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(i64::from(attempts))
        .bind(next_at)
        .bind(last_error)
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        Ok(())
    }

    async fn deliveries(
        &self,
        project: &filedock_core::ProjectId,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::model::DeliveryRecord>> {
        let rows = sqlx::query("SELECT * FROM deliveries WHERE project = $1 ORDER BY id DESC LIMIT $2")
            .bind(project.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        rows.iter().map($crate::sql::delivery_of).collect()
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        // One statement: the row is created, extended by its holder, or taken over once ended.
        let r = sqlx::query(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE leases.holder = excluded.holder OR leases.until < $3",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err($crate::sql::db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> filedock_core::Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        Ok(())
    }

    async fn setting(&self, name: &str) -> filedock_core::Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err($crate::sql::db_err)
    }

    async fn init_setting(&self, name: &str, value: &str) -> filedock_core::Result<String> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err($crate::sql::db_err)?;
        // Whoever inserted first, the row now holds the value that stays.
        filedock_core::Catalog::setting(self, name)
            .await?
            .ok_or_else(|| filedock_core::Error::internal_msg("a setting vanished after it was written"))
    }

    async fn has_files_on(&self, backend: &str) -> filedock_core::Result<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM files WHERE backend = $1 AND status <> 'deleted' LIMIT 1")
                .bind(backend)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::sql::db_err)?;
        Ok(found.is_some())
    }

        }

        impl $ty {
            /// Records an upload's progress under `token`'s lock, freeing the lock if `release`.
            async fn advance(
                &self,
                id: &filedock_core::UploadId,
                token: &str,
                offset: u64,
                length: Option<u64>,
                expires_at: filedock_core::Timestamp,
                release: bool,
            ) -> filedock_core::Result<bool> {
                let mut c = $crate::sql::Relaxed::conn(&self.relaxed).await?;
                let r = sqlx::query(
                    "UPDATE uploads SET upload_offset = $3, length = COALESCE($4, length), expires_at = $5,
                        lock_token = CASE WHEN $6 THEN NULL ELSE lock_token END,
                        lock_until = CASE WHEN $6 THEN NULL ELSE lock_until END
                     WHERE id = $1 AND lock_token = $2 AND status = 'active'",
                )
                .bind(id.as_str())
                .bind(token)
                .bind($crate::sql::i64_of(Some(offset)))
                .bind($crate::sql::i64_of(length))
                .bind(expires_at)
                .bind(release)
                .execute(&mut *c)
                .await
                .map_err($crate::sql::db_err)?;
                Ok(r.rows_affected() == 1)
            }
        }
    };
}
pub(crate) use sql_catalog;
