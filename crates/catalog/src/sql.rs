//! The SQL catalog: one schema and one set of statements for SQLite and PostgreSQL (portable:
//! `$N` placeholders, `CAST($N AS TEXT) IS NULL`, `RETURNING`-free), written once as ordinary
//! code over an [`Engine`] — what differs between the two (their pools, how credential changes
//! are seen, the room SQLite keeps on a full disk). Rows and errors are decoded in `rows`.
//!
//! Two pools on one database: `pool`, whose commits are durable before they return (fsync), and
//! `relaxed`, whose commits survive a crash of the process but may be lost with the last moments
//! before a power failure. `relaxed` carries only records whose loss is harmless and shows: a
//! pending file (its upload URL then fails and the client asks again), a new upload (404, the
//! client starts over), an upload's lock (it lapses anyway) and its offset (recorded after the
//! bytes are synced, so a lost offset is only lower than the bytes, and the client resends from
//! it, as tus HEAD tells it). A later durable commit makes the earlier relaxed ones durable too
//! (one log, in order). New pending files and uploads go through `batch`, a group-commit writer
//! on `relaxed`.

use std::future::Future;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use filedock_core::ProjectId;
use filedock_core::catalog::{Change, Idempotent};

use crate::batch::{Batcher, Inserts};
use crate::rows::Relaxed;

/// What differs between the engines under the SQL catalog.
pub(crate) trait Engine: std::fmt::Debug + Send + Sync + 'static {
    type Db: Database;
    type Relaxed: Relaxed<Conn: std::ops::DerefMut<Target = <Self::Db as Database>::Connection>>;
    /// Durable commits.
    fn pool(&self) -> &sqlx::Pool<Self::Db>;
    /// Commits that may be lost with a power failure (see the module docs).
    fn relaxed(&self) -> &Self::Relaxed;
    /// The group-commit writer of pending files and new uploads.
    fn batch(&self) -> &Batcher;
    /// Multi-row inserts with durable commits (`pool`'s).
    fn durable(&self) -> &dyn Inserts;
    /// See [`filedock_core::Catalog::credentials_version`].
    fn credentials_seen(&self) -> Option<u128>;
    /// Tells other processes that a credential changed.
    fn credentials_changed(&self) -> filedock_core::Result<()>;
    /// See [`filedock_core::Catalog::queued_signal`].
    fn tasks_signal(&self) -> Option<&tokio::sync::Notify> {
        None
    }
    /// See [`filedock_core::Catalog::one_writer`].
    fn one_writer(&self) -> bool {
        false
    }
    /// Gives up room kept for writes on a full disk; true if it freed any.
    fn free_room(&self) -> bool;
    /// Takes that room again when the disk allows.
    fn keep_room(&self);
}

/// How many rows a statement changed (each engine's result type has it, under no shared trait).
pub(crate) trait Affected {
    fn affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// A catalog on a SQL engine: `SqliteCatalog` and `PgCatalog` are this over theirs.
#[derive(Debug, Clone)]
pub struct Sql<E>(pub(crate) E);

#[expect(
    private_bounds,
    reason = "the engines are this crate's own; callers name SqliteCatalog and PgCatalog"
)]
impl<E: Engine> Sql<E> {
    /// Runs a statement that must work on a full disk (a delete, a revocation): if the disk is
    /// full, the engine gives up the room it keeps and the statement runs once more; after a
    /// success, the room is taken again when space allows.
    pub(crate) async fn with_room<T, F, Fut>(&self, run: F) -> filedock_core::Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = filedock_core::Result<T>>,
    {
        let outcome = match run().await {
            Err(filedock_core::Error::InsufficientStorage(_)) if self.0.free_room() => run().await,
            other => other,
        };
        if outcome.is_ok() {
            self.0.keep_room();
        }
        outcome
    }
}

#[async_trait::async_trait]
impl<E> filedock_core::Catalog for Sql<E>
where
    E: Engine,
    <E::Db as Database>::Arguments: IntoArguments<E::Db>,
    <E::Db as Database>::QueryResult: Affected,
    for<'c> &'c mut <E::Db as Database>::Connection: Executor<'c, Database = E::Db>,
    for<'a> &'a str: Encode<'a, E::Db> + Type<E::Db> + ColumnIndex<<E::Db as Database>::Row>,
    usize: ColumnIndex<<E::Db as Database>::Row>,
    String: for<'a> Encode<'a, E::Db> + Type<E::Db> + for<'r> Decode<'r, E::Db>,
    i64: for<'a> Encode<'a, E::Db> + Type<E::Db> + for<'r> Decode<'r, E::Db>,
    bool: for<'a> Encode<'a, E::Db> + Type<E::Db>,
    for<'a> Option<&'a str>: Encode<'a, E::Db> + Type<E::Db>,
    Option<String>: for<'a> Encode<'a, E::Db> + Type<E::Db> + for<'r> Decode<'r, E::Db>,
    Option<i64>: for<'a> Encode<'a, E::Db> + Type<E::Db> + for<'r> Decode<'r, E::Db>,
    <E::Db as Database>::Arguments: Default,
{
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
        .execute(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        self.0.credentials_changed()
    }

    async fn credential(&self, id: &str) -> filedock_core::Result<Option<filedock_core::Credential>> {
        let row = sqlx::query("SELECT * FROM credentials WHERE id = $1")
            .bind(id)
            .fetch_optional(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        row.as_ref().map(crate::rows::credential_of).transpose()
    }

    async fn list_credentials(
        &self,
        project: Option<&filedock_core::ProjectId>,
    ) -> filedock_core::Result<Vec<filedock_core::Credential>> {
        let rows = sqlx::query(
            "SELECT * FROM credentials WHERE (CAST($1 AS TEXT) IS NULL OR project = $1) ORDER BY created_at, id",
        )
        .bind(project.map(|p| p.as_str()))
        .fetch_all(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::credential_of).collect()
    }

    async fn revoke_credential(&self, id: &str, at: filedock_core::Timestamp) -> filedock_core::Result<bool> {
        // A revocation must work on a full disk: it may use the room kept for it.
        let r = self
            .with_room(|| async {
                sqlx::query("UPDATE credentials SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(self.0.pool())
                    .await
                    .map_err(crate::rows::db_err)
            })
            .await?;
        if r.affected() == 1 {
            self.0.credentials_changed()?;
        }
        Ok(r.affected() == 1)
    }

    fn credentials_version(&self) -> Option<u128> {
        self.0.credentials_seen()
    }

    fn queued_signal(&self) -> Option<&tokio::sync::Notify> {
        self.0.tasks_signal()
    }

    fn one_writer(&self) -> bool {
        self.0.one_writer()
    }

    async fn insert_file(&self, f: &filedock_core::FileRecord) -> filedock_core::Result<()> {
        if f.status == filedock_core::FileStatus::Pending {
            self.0.batch().insert(Some(f), None).await
        } else {
            self.0.durable().insert_files(&[f]).await
        }
    }

    async fn file(&self, id: &filedock_core::FileId) -> filedock_core::Result<Option<filedock_core::FileRecord>> {
        let row = sqlx::query("SELECT * FROM files WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        row.as_ref().map(crate::rows::file_of).transpose()
    }

    async fn file_by_key(
        &self,
        backend: &str,
        key: &filedock_core::StorageKey,
    ) -> filedock_core::Result<Option<filedock_core::FileRecord>> {
        let row = sqlx::query("SELECT * FROM files WHERE backend = $1 AND storage_key = $2 AND status <> 'deleted'")
            .bind(backend)
            .bind(key.as_str())
            .fetch_optional(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        row.as_ref().map(crate::rows::file_of).transpose()
    }

    async fn list_files(
        &self,
        q: &filedock_core::catalog::FileQuery,
    ) -> filedock_core::Result<Vec<filedock_core::FileRecord>> {
        // A statement for each shape, so `id < cursor` is a range of the `files_listing` index
        // (with `$4 IS NULL OR id < $4` both engines scanned every row above the cursor: a
        // page cost more the deeper it was).
        let sql = match (q.workspace.is_some(), q.before.is_some()) {
            (false, false) => crate::rows::LIST_FILES,
            (false, true) => crate::rows::LIST_FILES_BEFORE,
            (true, false) => crate::rows::LIST_FILES_IN,
            (true, true) => crate::rows::LIST_FILES_IN_BEFORE,
        };
        let mut query = sqlx::query(sql)
            .bind(q.project.as_str())
            .bind(q.status.as_str())
            .bind(q.live_at)
            .bind(i64::from(q.limit));
        if let Some(w) = &q.workspace {
            query = query.bind(w.as_str());
        }
        if let Some(b) = &q.before {
            query = query.bind(b.as_str());
        }
        let rows = query.fetch_all(self.0.pool()).await.map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::file_of).collect()
    }

    async fn complete_file(
        &self,
        id: &filedock_core::FileId,
        c: &filedock_core::catalog::Completion,
    ) -> filedock_core::Result<bool> {
        self.apply_change(Change::CompleteFile(id, c), &[]).await
    }

    async fn delete_file(
        &self,
        id: &filedock_core::FileId,
        at: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        // A delete frees space: it must work on a full disk, using the room kept for it.
        self.apply_change(Change::DeleteFile(id, at), &[]).await
    }

    async fn remove_file(&self, id: &filedock_core::FileId) -> filedock_core::Result<()> {
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id.as_str())
            .execute(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        Ok(())
    }

    async fn insert_upload(&self, u: &filedock_core::UploadRecord) -> filedock_core::Result<()> {
        self.0.batch().insert(None, Some(u)).await
    }

    async fn insert_file_and_upload(
        &self,
        f: &filedock_core::FileRecord,
        u: &filedock_core::UploadRecord,
    ) -> filedock_core::Result<()> {
        if f.status == filedock_core::FileStatus::Pending {
            self.0.batch().insert(Some(f), Some(u)).await
        } else {
            self.0.durable().insert_files(&[f]).await?;
            self.0.batch().insert(None, Some(u)).await
        }
    }

    async fn upload(&self, id: &filedock_core::UploadId) -> filedock_core::Result<Option<filedock_core::UploadRecord>> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        row.as_ref().map(crate::rows::upload_of).transpose()
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
        let mut c = crate::rows::Relaxed::conn(self.0.relaxed()).await?;
        sqlx::query("UPDATE uploads SET lock_token = NULL, lock_until = NULL WHERE id = $1 AND lock_token = $2")
            .bind(id.as_str())
            .bind(token)
            .execute(&mut *c)
            .await
            .map_err(crate::rows::db_err)?;
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
        let mut c = crate::rows::Relaxed::conn(self.0.relaxed()).await?;
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
        .map_err(crate::rows::db_err)?;
        row.as_ref().map(crate::rows::upload_of).transpose()
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
        .execute(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        Ok(r.affected() == 1)
    }

    async fn expired_uploads(
        &self,
        now: filedock_core::Timestamp,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::UploadRecord>> {
        let rows = sqlx::query(crate::rows::EXPIRED_UPLOADS)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::upload_of).collect()
    }

    async fn expired_files(
        &self,
        now: filedock_core::Timestamp,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::FileRecord>> {
        let rows = sqlx::query(crate::rows::EXPIRED_FILES)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::file_of).collect()
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
        .fetch_one(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        let files: i64 = row.try_get("files").map_err(crate::rows::db_err)?;
        let bytes: i64 = row.try_get("bytes").map_err(crate::rows::db_err)?;
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
        .bind(crate::rows::outputs_json(&t.outputs))
        .bind(&t.error)
        .bind(t.created_at)
        .bind(t.started_at)
        .bind(t.finished_at)
        .execute(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        Ok(())
    }

    async fn task(
        &self,
        id: &filedock_core::model::TaskId,
    ) -> filedock_core::Result<Option<filedock_core::model::TaskRecord>> {
        let row = sqlx::query("SELECT * FROM tasks WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        row.as_ref().map(crate::rows::task_of).transpose()
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
        .fetch_all(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::task_of).collect()
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
        .execute(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        Ok(r.affected() == 1)
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
            .execute(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        Ok(r.affected() == 1)
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
        let change = Change::FinishTask {
            id,
            runner,
            status,
            outputs,
            error,
            at,
        };
        self.apply_change(change, &[]).await
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
        .fetch_all(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::task_of).collect()
    }

    async fn release_task(
        &self,
        id: &filedock_core::model::TaskId,
        now: filedock_core::Timestamp,
        failure: Option<&str>,
    ) -> filedock_core::Result<bool> {
        if let Some(reason) = failure {
            return self.apply_change(Change::FailLapsedTask { id, now, reason }, &[]).await;
        }
        let r = sqlx::query(
            "UPDATE tasks SET status = 'queued', runner = NULL, lease_until = NULL
             WHERE id = $1 AND status = 'running' AND lease_until < $2",
        )
        .bind(id.as_str())
        .bind(now)
        .execute(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        Ok(r.affected() == 1)
    }

    async fn apply(
        &self,
        change: Change<'_>,
        deliveries: &[filedock_core::model::DeliveryRecord],
    ) -> filedock_core::Result<bool> {
        self.apply_change(change, deliveries).await
    }

    async fn delete_files(
        &self,
        files: &[(filedock_core::FileId, Vec<filedock_core::model::DeliveryRecord>)],
        at: filedock_core::Timestamp,
    ) -> filedock_core::Result<Vec<filedock_core::FileId>> {
        self.delete_many_files(files, at).await
    }

    async fn prune(
        &self,
        what: filedock_core::catalog::Prune,
        before: filedock_core::Timestamp,
        limit: u32,
    ) -> filedock_core::Result<u64> {
        self.prune_rows(what, before, limit).await
    }

    async fn insert_intent(&self, i: &filedock_core::catalog::Intent) -> filedock_core::Result<()> {
        self.put_intent(i).await
    }

    async fn delete_intent(&self, backend: &str, key: &filedock_core::StorageKey) -> filedock_core::Result<()> {
        self.drop_intent(backend, key).await
    }

    async fn intent(
        &self,
        backend: &str,
        key: &filedock_core::StorageKey,
    ) -> filedock_core::Result<Option<filedock_core::catalog::Intent>> {
        Ok(self.find_intents(Some((backend, key)), i64::MAX, 1).await?.pop())
    }

    async fn intents(&self, before: i64, limit: u32) -> filedock_core::Result<Vec<filedock_core::catalog::Intent>> {
        self.find_intents(None, before, limit).await
    }

    async fn quarantined_files(&self, limit: u32) -> filedock_core::Result<Vec<filedock_core::FileRecord>> {
        self.quarantined(limit).await
    }

    async fn insert_idempotent(&self, r: &Idempotent) -> filedock_core::Result<bool> {
        self.idem_insert(r).await
    }

    async fn idempotent(&self, project: &ProjectId, key: &str) -> filedock_core::Result<Option<Idempotent>> {
        self.idem_get(project, key).await
    }

    async fn replace_idempotent(&self, old: &Idempotent, new: &Idempotent) -> filedock_core::Result<bool> {
        self.idem_update(Some(old), new).await
    }

    async fn settle_idempotent(&self, r: &Idempotent) -> filedock_core::Result<bool> {
        self.idem_update(None, r).await
    }

    async fn release_idempotent(&self, project: &ProjectId, key: &str, instance: &str) -> filedock_core::Result<()> {
        self.idem_release(project, key, instance).await
    }

    async fn insert_delivery(&self, d: &filedock_core::model::DeliveryRecord) -> filedock_core::Result<()> {
        Self::delivery(self.0.pool(), d).await
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
        .fetch_all(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::delivery_of).collect()
    }

    async fn lease_delivery(
        &self,
        id: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        let r =
            sqlx::query("UPDATE deliveries SET next_at = $3 WHERE id = $1 AND status = 'pending' AND next_at <= $2")
                .bind(id)
                .bind(now)
                .bind(until)
                .execute(self.0.pool())
                .await
                .map_err(crate::rows::db_err)?;
        Ok(r.affected() == 1)
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
        .execute(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
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
            .fetch_all(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::delivery_of).collect()
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
        .execute(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        Ok(r.affected() == 1)
    }

    async fn live_leases(&self, prefix: &str, now: filedock_core::Timestamp) -> filedock_core::Result<u32> {
        // LIKE with the prefix escaped: `_` and `%` in it match themselves.
        let pattern = format!(
            "{}%",
            prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
        );
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM leases WHERE name LIKE $1 ESCAPE '\\' AND until > $2")
            .bind(pattern)
            .bind(now)
            .fetch_one(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> filedock_core::Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        Ok(())
    }

    async fn setting(&self, name: &str) -> filedock_core::Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(self.0.pool())
            .await
            .map_err(crate::rows::db_err)
    }

    async fn init_setting(&self, name: &str, value: &str) -> filedock_core::Result<String> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        // Whoever inserted first, the row now holds the value that stays.
        filedock_core::Catalog::setting(self, name)
            .await?
            .ok_or_else(|| filedock_core::Error::internal_msg("a setting vanished after it was written"))
    }

    async fn has_files_on(&self, backend: &str) -> filedock_core::Result<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM files WHERE backend = $1 AND status <> 'deleted' LIMIT 1")
                .bind(backend)
                .fetch_optional(self.0.pool())
                .await
                .map_err(crate::rows::db_err)?;
        Ok(found.is_some())
    }
}
