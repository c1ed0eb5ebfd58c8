//! Changes that report events ([`filedock_core::catalog::Change`]), each written once: run alone
//! on the durable pool when no delivery goes with them, or in one transaction with their
//! deliveries, so a crash between the two cannot happen (the outbox pattern). And the pruning of
//! records that ended ([`filedock_core::catalog::Prune`]), in bounded batches. And the records
//! of writes in flight: intents, idempotency keys, and an upload's progress under its lock.

use filedock_core::StorageKey;
use filedock_core::catalog::{Change, Idempotent, Intent, Prune};
use filedock_core::model::DeliveryRecord;
use filedock_core::{FileId, ProjectId};
use sqlx::Row;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use crate::engine::{Affected, Engine, Sql};

#[expect(
    private_bounds,
    reason = "the engines are this crate's own; callers name SqliteCatalog and PgCatalog"
)]
impl<E> Sql<E>
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
    /// See [`filedock_core::Catalog::apply`]. A delete (which frees space) uses the room the
    /// engine keeps for a full disk.
    pub(crate) async fn apply_change(
        &self,
        change: Change<'_>,
        deliveries: &[DeliveryRecord],
    ) -> filedock_core::Result<bool> {
        match change {
            Change::DeleteFile(..) => self.with_room(|| self.apply_once(change, deliveries)).await,
            Change::InsertFile(f) if deliveries.is_empty() => {
                // Alone, a ready file goes through the multi-row writer, as before.
                self.0.durable().insert_files(&[f]).await?;
                Ok(true)
            }
            _ => self.apply_once(change, deliveries).await,
        }
    }

    /// See [`filedock_core::Catalog::delete_files`]: one transaction, one statement per run of
    /// up to 64 files (the run sizes [`crate::batch::chunks`] makes, so few statements are
    /// prepared). A delete frees space: it uses the room kept for a full disk.
    ///
    /// On the relaxed writer, in turn with the requests' own writes: on SQLite a second
    /// connection's writes made theirs wait in the busy handler's growing sleeps (p99 4 → 16 ms
    /// beside a sweep). Relaxed is safe here: the sweep deleted the objects first, so rows
    /// lost with a power failure are swept again, and their events recorded again.
    pub(crate) async fn delete_many_files(
        &self,
        files: &[(FileId, Vec<DeliveryRecord>)],
        at: i64,
    ) -> filedock_core::Result<Vec<FileId>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        self.with_room(|| self.delete_files_once(files, at)).await
    }

    async fn delete_files_once(
        &self,
        files: &[(FileId, Vec<DeliveryRecord>)],
        at: i64,
    ) -> filedock_core::Result<Vec<FileId>> {
        let mut conn = crate::rows::Relaxed::conn(self.0.relaxed()).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(crate::rows::db_err)?;
        let mut deleted = Vec::with_capacity(files.len());
        for run in crate::batch::chunks(files) {
            let mut q = sqlx::QueryBuilder::<E::Db>::new("UPDATE files SET status = 'deleted', deleted_at = ");
            q.push_bind(at).push(" WHERE status <> 'deleted' AND id IN (");
            let mut ids = q.separated(", ");
            for (id, _) in run {
                ids.push_bind(id.as_str().to_owned());
            }
            ids.push_unseparated(") RETURNING id");
            let rows = q.build().fetch_all(&mut *tx).await.map_err(crate::rows::db_err)?;
            let done = rows
                .iter()
                .map(|r| r.try_get::<String, usize>(0))
                .collect::<Result<std::collections::HashSet<String>, _>>()
                .map_err(crate::rows::db_err)?;
            for (id, deliveries) in run.iter().filter(|(id, _)| done.contains(id.as_str())) {
                for d in deliveries {
                    Self::delivery(&mut *tx, d).await?;
                }
                deleted.push(id.clone());
            }
        }
        tx.commit().await.map_err(crate::rows::db_err)?;
        Ok(deleted)
    }

    /// Records an upload's progress under `token`'s lock, freeing the lock if `release`.
    pub(crate) async fn advance(
        &self,
        id: &filedock_core::UploadId,
        token: &str,
        offset: u64,
        length: Option<u64>,
        expires_at: filedock_core::Timestamp,
        release: bool,
    ) -> filedock_core::Result<bool> {
        if let Some(direct) = self.0.direct() {
            return crate::direct::advance(direct, id, token, offset, length, expires_at, release).await;
        }
        let mut c = crate::rows::Relaxed::conn(self.0.relaxed()).await?;
        let r = sqlx::query(
            "UPDATE uploads SET upload_offset = $3, length = COALESCE($4, length), expires_at = $5,
                        lock_token = CASE WHEN $6 THEN NULL ELSE lock_token END,
                        lock_until = CASE WHEN $6 THEN NULL ELSE lock_until END
                     WHERE id = $1 AND lock_token = $2 AND status = 'active'",
        )
        .bind(id.as_str())
        .bind(token)
        .bind(crate::rows::i64_of(Some(offset)))
        .bind(crate::rows::i64_of(length))
        .bind(expires_at)
        .bind(release)
        .execute(&mut *c)
        .await
        .map_err(crate::rows::db_err)?;
        Ok(r.affected() == 1)
    }

    async fn apply_once(&self, change: Change<'_>, deliveries: &[DeliveryRecord]) -> filedock_core::Result<bool> {
        if deliveries.is_empty() {
            return Ok(Self::statement(self.0.pool(), change).await? == 1);
        }
        let mut tx = self.0.pool().begin().await.map_err(crate::rows::db_err)?;
        let done = Self::statement(&mut *tx, change).await? == 1;
        if done {
            for d in deliveries {
                Self::delivery(&mut *tx, d).await?;
            }
        }
        tx.commit().await.map_err(crate::rows::db_err)?;
        Ok(done)
    }

    /// Runs the change's statement; returns how many rows it changed. One function on purpose:
    /// one `match` of seven statements, each the only place it is written.
    async fn statement<'e, X>(x: X, change: Change<'_>) -> filedock_core::Result<u64>
    where
        X: Executor<'e, Database = E::Db>,
    {
        let r = match change {
            Change::InsertFile(f) => {
                sqlx::query(
                    "INSERT INTO files (id, project, workspace, backend, storage_key, name, size, declared_type,
                        detected_type, extension, sha256, created_by, agent, credential_id, class, status, policy,
                        created_at, completed_at, expires_at, deleted_at, origin, reason)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                        $20, $21, $22, $23)",
                )
                .bind(f.id.as_str())
                .bind(f.project.as_str())
                .bind(f.workspace.as_ref().map(|w| w.as_str()))
                .bind(&f.backend)
                .bind(f.key.as_str())
                .bind(f.name.as_str())
                .bind(crate::rows::i64_of(f.size))
                .bind(&f.declared_type)
                .bind(&f.detected_type)
                .bind(&f.extension)
                .bind(&f.sha256)
                .bind(&f.created_by)
                .bind(&f.agent)
                .bind(&f.credential_id)
                .bind(f.class.as_str())
                .bind(f.status.as_str())
                .bind(&f.policy)
                .bind(f.created_at)
                .bind(f.completed_at)
                .bind(f.expires_at)
                .bind(f.deleted_at)
                .bind(&f.origin)
                .bind(&f.reason)
                .execute(x)
                .await
            }
            Change::CompleteFile(id, c) => {
                sqlx::query(
                    "UPDATE files SET status = $6, size = $2, sha256 = $3, detected_type = $4, completed_at = $5
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(id.as_str())
                .bind(crate::rows::i64_of(Some(c.size)))
                .bind(&c.sha256)
                .bind(&c.detected_type)
                .bind(c.completed_at)
                .bind(c.status.as_str())
                .execute(x)
                .await
            }
            Change::Verdict { id, to, reason } => {
                sqlx::query("UPDATE files SET status = $2, reason = $3 WHERE id = $1 AND status = 'quarantined'")
                    .bind(id.as_str())
                    .bind(to.as_str())
                    .bind(reason)
                    .execute(x)
                    .await
            }
            Change::DeleteFile(id, at) => {
                sqlx::query(
                    "UPDATE files SET status = 'deleted', deleted_at = $2 WHERE id = $1 AND status <> 'deleted'",
                )
                .bind(id.as_str())
                .bind(at)
                .execute(x)
                .await
            }
            Change::FailFile { id, reason, at } => {
                sqlx::query(
                    "UPDATE files SET status = 'failed', reason = $2, completed_at = $3
                         WHERE id = $1 AND status = 'pending'",
                )
                .bind(id.as_str())
                .bind(reason)
                .bind(at)
                .execute(x)
                .await
            }
            Change::FinishTask {
                id,
                runner,
                status,
                outputs,
                error,
                at,
            } => {
                sqlx::query(
                    "UPDATE tasks SET status = $3, outputs = $4, error = $5, finished_at = $6, lease_until = NULL
                     WHERE id = $1 AND status = 'running' AND runner = $2",
                )
                .bind(id.as_str())
                .bind(runner)
                .bind(status.as_str())
                .bind(crate::rows::outputs_json(outputs))
                .bind(error)
                .bind(at)
                .execute(x)
                .await
            }
            Change::FailLapsedTask { id, now, reason } => {
                sqlx::query(
                    "UPDATE tasks SET status = 'failed', error = $3, finished_at = $2, lease_until = NULL
                     WHERE id = $1 AND status = 'running' AND lease_until < $2",
                )
                .bind(id.as_str())
                .bind(now)
                .bind(reason)
                .execute(x)
                .await
            }
        };
        Ok(r.map_err(crate::rows::db_err)?.affected())
    }

    /// See [`filedock_core::Catalog::prune`]: one statement deletes at most `limit` rows.
    pub(crate) async fn prune_rows(&self, what: Prune, before: i64, limit: u32) -> filedock_core::Result<u64> {
        let sql = prune_statement(what);
        // Deletes free space: on a full disk they use the room the engine keeps.
        let r = self
            .with_room(|| async {
                sqlx::query(sql)
                    .bind(before)
                    .bind(i64::from(limit))
                    .execute(self.0.pool())
                    .await
                    .map_err(crate::rows::db_err)
            })
            .await?;
        Ok(r.affected())
    }

    /// See [`filedock_core::Catalog::insert_intent`]: on the relaxed pool (an intent lost with
    /// a power failure belongs to a write the power failure ended too).
    pub(crate) async fn put_intent(&self, i: &Intent) -> filedock_core::Result<()> {
        let mut c = crate::rows::Relaxed::conn(self.0.relaxed()).await?;
        sqlx::query(
            "INSERT INTO intents (backend, storage_key, instance, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (backend, storage_key) DO UPDATE SET instance = excluded.instance,
                created_at = excluded.created_at",
        )
        .bind(&i.backend)
        .bind(i.key.as_str())
        .bind(&i.instance)
        .bind(i.created_at)
        .execute(&mut *c)
        .await
        .map_err(crate::rows::db_err)?;
        Ok(())
    }

    /// See [`filedock_core::Catalog::delete_intent`].
    pub(crate) async fn drop_intent(&self, backend: &str, key: &StorageKey) -> filedock_core::Result<()> {
        let mut c = crate::rows::Relaxed::conn(self.0.relaxed()).await?;
        sqlx::query("DELETE FROM intents WHERE backend = $1 AND storage_key = $2")
            .bind(backend)
            .bind(key.as_str())
            .execute(&mut *c)
            .await
            .map_err(crate::rows::db_err)?;
        Ok(())
    }

    /// See [`filedock_core::Catalog::intent`] and [`filedock_core::Catalog::intents`]: one at
    /// a key, or the oldest made before `before`.
    pub(crate) async fn find_intents(
        &self,
        at: Option<(&str, &StorageKey)>,
        before: i64,
        limit: u32,
    ) -> filedock_core::Result<Vec<Intent>> {
        let rows = sqlx::query(
            "SELECT backend, storage_key, instance, created_at FROM intents
             WHERE (CAST($1 AS TEXT) IS NULL OR (backend = $1 AND storage_key = $2)) AND created_at < $3
             ORDER BY created_at LIMIT $4",
        )
        .bind(at.map(|(b, _)| b))
        .bind(at.map(|(_, k)| k.as_str()))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        rows.iter()
            .map(|r| {
                Ok(Intent {
                    backend: r.try_get(0).map_err(crate::rows::db_err)?,
                    key: StorageKey::new(r.try_get::<String, _>(1).map_err(crate::rows::db_err)?)?,
                    instance: r.try_get(2).map_err(crate::rows::db_err)?,
                    created_at: r.try_get(3).map_err(crate::rows::db_err)?,
                })
            })
            .collect()
    }

    /// Inserts one delivery.
    pub(crate) async fn delivery<'e, X>(x: X, d: &DeliveryRecord) -> filedock_core::Result<()>
    where
        X: Executor<'e, Database = E::Db>,
    {
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
        .execute(x)
        .await
        .map_err(crate::rows::db_err)?;
        Ok(())
    }

    /// See [`filedock_core::Catalog::insert_idempotent`].
    pub(crate) async fn idem_insert(&self, r: &Idempotent) -> filedock_core::Result<bool> {
        let q = sqlx::query(
            "INSERT INTO idempotency (project, idem_key, request, body_sha256, instance, state, status, headers,
                body, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (project, idem_key) DO NOTHING",
        );
        let done = Self::bind_idem(q, r).execute(self.0.pool()).await;
        Ok(done.map_err(crate::rows::db_err)?.affected() == 1)
    }

    fn bind_idem<'q>(
        q: sqlx::query::Query<'q, E::Db, <E::Db as Database>::Arguments>,
        r: &'q Idempotent,
    ) -> sqlx::query::Query<'q, E::Db, <E::Db as Database>::Arguments> {
        q.bind(r.project.as_str())
            .bind(r.key.as_str())
            .bind(r.request.as_str())
            .bind(r.body_sha256.as_deref())
            .bind(r.instance.as_str())
            .bind(if r.done { "done" } else { "running" })
            .bind(r.status.map(i64::from))
            .bind(r.headers.as_deref())
            .bind(r.body.as_deref())
            .bind(r.created_at)
            .bind(r.expires_at)
    }

    /// See [`filedock_core::Catalog::idempotent`].
    pub(crate) async fn idem_get(&self, project: &ProjectId, key: &str) -> filedock_core::Result<Option<Idempotent>> {
        let row = sqlx::query(
            "SELECT request, body_sha256, instance, state, status, headers, body, created_at, expires_at
             FROM idempotency WHERE project = $1 AND idem_key = $2",
        )
        .bind(project.as_str())
        .bind(key)
        .fetch_optional(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        let Some(r) = row else { return Ok(None) };
        let e = crate::rows::db_err;
        let status: Option<i64> = r.try_get(4).map_err(e)?;
        Ok(Some(Idempotent {
            project: project.clone(),
            key: key.to_owned(),
            request: r.try_get(0).map_err(e)?,
            body_sha256: r.try_get(1).map_err(e)?,
            instance: r.try_get(2).map_err(e)?,
            done: r.try_get::<String, _>(3).map_err(e)? == "done",
            status: status.and_then(|s| u16::try_from(s).ok()),
            headers: r.try_get(5).map_err(e)?,
            body: r.try_get(6).map_err(e)?,
            created_at: r.try_get(7).map_err(e)?,
            expires_at: r.try_get(8).map_err(e)?,
        }))
    }

    /// See [`filedock_core::Catalog::replace_idempotent`] (`old` given) and
    /// [`filedock_core::Catalog::settle_idempotent`] (`old` none: the running record `new.instance`
    /// holds).
    pub(crate) async fn idem_update(&self, old: Option<&Idempotent>, new: &Idempotent) -> filedock_core::Result<bool> {
        let q = sqlx::query(
            "UPDATE idempotency SET request = $3, body_sha256 = $4, instance = $5, state = $6, status = $7,
                headers = $8, body = $9, created_at = $10, expires_at = $11
             WHERE project = $1 AND idem_key = $2 AND instance = $12
               AND (CAST($13 AS BIGINT) IS NULL OR created_at = $13)
               AND (CAST($13 AS BIGINT) IS NOT NULL OR state = 'running')",
        );
        let q = Self::bind_idem(q, new)
            .bind(old.map_or(new.instance.as_str(), |o| o.instance.as_str()))
            .bind(old.map(|o| o.created_at));
        let done = q.execute(self.0.pool()).await.map_err(crate::rows::db_err)?;
        Ok(done.affected() == 1)
    }

    /// See [`filedock_core::Catalog::release_idempotent`].
    pub(crate) async fn idem_release(
        &self,
        project: &ProjectId,
        key: &str,
        instance: &str,
    ) -> filedock_core::Result<()> {
        sqlx::query(
            "DELETE FROM idempotency WHERE project = $1 AND idem_key = $2 AND instance = $3 AND state = 'running'",
        )
        .bind(project.as_str())
        .bind(key)
        .bind(instance)
        .execute(self.0.pool())
        .await
        .map_err(crate::rows::db_err)?;
        Ok(())
    }

    /// See [`filedock_core::Catalog::quarantined_files`].
    pub(crate) async fn quarantined(&self, limit: u32) -> filedock_core::Result<Vec<filedock_core::FileRecord>> {
        let rows = sqlx::query("SELECT * FROM files WHERE status = 'quarantined' ORDER BY created_at LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        rows.iter().map(crate::rows::file_of).collect()
    }
}

/// The statement that prunes `what` (`$1` before, `$2` limit). Each finds its rows through a
/// partial index (migration 0010), never by reading the whole table.
pub(crate) fn prune_statement(what: Prune) -> &'static str {
    match what {
        Prune::Deliveries => {
            "DELETE FROM deliveries WHERE id IN
               (SELECT id FROM deliveries WHERE status <> 'pending' AND created_at < $1 LIMIT $2)"
        }
        Prune::Tasks => {
            "DELETE FROM tasks WHERE id IN
               (SELECT id FROM tasks WHERE status IN ('succeeded', 'failed') AND finished_at < $1 LIMIT $2)"
        }
        Prune::Tombstones => {
            "DELETE FROM files WHERE id IN
               (SELECT id FROM files WHERE status = 'deleted' AND deleted_at < $1 LIMIT $2)"
        }
        Prune::Uploads => {
            "DELETE FROM uploads WHERE id IN
               (SELECT id FROM uploads WHERE status <> 'active' AND expires_at < $1 LIMIT $2)"
        }
        Prune::Idempotency => {
            "DELETE FROM idempotency WHERE (project, idem_key) IN
               (SELECT project, idem_key FROM idempotency WHERE expires_at < $1 LIMIT $2)"
        }
    }
}
