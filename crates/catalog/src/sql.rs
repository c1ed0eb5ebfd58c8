//! The [`filedock_core::Catalog`] of the SQL engines, written once over an [`Engine`] (see
//! `engine`): the statements of credentials, files and uploads here; changes that report events,
//! pruning and records of writes in flight in `change`; tasks, deliveries, leases and settings
//! in `queue`.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use filedock_core::ProjectId;
use filedock_core::catalog::{Change, Idempotent};

use crate::engine::{Affected, Engine, Sql};

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
        // A statement for each shape, so `id < cursor` is a range of the listing index (with
        // `$4 IS NULL OR id < $4` both engines scanned every row above the cursor: a page cost
        // more the deeper it was).
        let sql = self.0.listings()[crate::rows::listing(q.workspace.is_some(), q.before.is_some())];
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
        if let Some(direct) = self.0.direct() {
            return crate::direct::unlock(direct, id, token).await;
        }
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
        if let Some(direct) = self.0.direct() {
            return crate::direct::lock_and_read(direct, id, token, now, until).await;
        }
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
        self.add_task(t).await
    }

    async fn task(
        &self,
        id: &filedock_core::model::TaskId,
    ) -> filedock_core::Result<Option<filedock_core::model::TaskRecord>> {
        self.find_task(id).await
    }

    async fn queued_tasks(
        &self,
        project: &filedock_core::ProjectId,
        workspace: Option<&filedock_core::WorkspaceId>,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::model::TaskRecord>> {
        self.find_queued_tasks(project, workspace, limit).await
    }

    async fn claim_task(
        &self,
        id: &filedock_core::model::TaskId,
        runner: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        self.claim(id, runner, now, until).await
    }

    async fn renew_task(
        &self,
        id: &filedock_core::model::TaskId,
        runner: &str,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        self.renew(id, runner, until).await
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
        self.finish(id, runner, status, outputs, error, at).await
    }

    async fn lapsed_tasks(
        &self,
        now: filedock_core::Timestamp,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::model::TaskRecord>> {
        self.find_lapsed_tasks(now, limit).await
    }

    async fn release_task(
        &self,
        id: &filedock_core::model::TaskId,
        now: filedock_core::Timestamp,
        failure: Option<&str>,
    ) -> filedock_core::Result<bool> {
        self.release(id, now, failure).await
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
        self.find_due_deliveries(now, limit).await
    }

    async fn lease_delivery(
        &self,
        id: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        self.lease_one_delivery(id, now, until).await
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
        self.settle_one_delivery(id, status, attempts, next_at, last_error, at)
            .await
    }

    async fn deliveries(
        &self,
        project: &filedock_core::ProjectId,
        limit: u32,
    ) -> filedock_core::Result<Vec<filedock_core::model::DeliveryRecord>> {
        self.find_deliveries(project, limit).await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: filedock_core::Timestamp,
        until: filedock_core::Timestamp,
    ) -> filedock_core::Result<bool> {
        self.take_lease(name, holder, now, until).await
    }

    async fn live_leases(&self, prefix: &str, now: filedock_core::Timestamp) -> filedock_core::Result<u32> {
        self.count_leases(prefix, now).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> filedock_core::Result<()> {
        self.drop_lease(name, holder).await
    }

    async fn setting(&self, name: &str) -> filedock_core::Result<Option<String>> {
        self.find_setting(name).await
    }

    async fn init_setting(&self, name: &str, value: &str) -> filedock_core::Result<String> {
        self.put_setting(name, value).await
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
