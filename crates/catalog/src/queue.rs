//! Work kept in the catalog for others to take: workflow tasks (claimed by runners under a
//! lease), webhook deliveries (leased, then settled), named leases (one holder at a time) and
//! settings (written once, by whoever comes first).

use filedock_core::catalog::Change;
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
{
    /// See [`filedock_core::Catalog::insert_task`].
    pub(crate) async fn add_task(&self, t: &filedock_core::model::TaskRecord) -> filedock_core::Result<()> {
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

    /// See [`filedock_core::Catalog::task`].
    pub(crate) async fn find_task(
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

    /// See [`filedock_core::Catalog::queued_tasks`].
    pub(crate) async fn find_queued_tasks(
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

    /// See [`filedock_core::Catalog::claim_task`].
    pub(crate) async fn claim(
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

    /// See [`filedock_core::Catalog::renew_task`].
    pub(crate) async fn renew(
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

    /// See [`filedock_core::Catalog::finish_task`].
    pub(crate) async fn finish(
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

    /// See [`filedock_core::Catalog::lapsed_tasks`].
    pub(crate) async fn find_lapsed_tasks(
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

    /// See [`filedock_core::Catalog::release_task`].
    pub(crate) async fn release(
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

    /// See [`filedock_core::Catalog::due_deliveries`].
    pub(crate) async fn find_due_deliveries(
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

    /// See [`filedock_core::Catalog::lease_delivery`].
    pub(crate) async fn lease_one_delivery(
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

    /// See [`filedock_core::Catalog::settle_delivery`].
    pub(crate) async fn settle_one_delivery(
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

    /// See [`filedock_core::Catalog::deliveries`].
    pub(crate) async fn find_deliveries(
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

    /// See [`filedock_core::Catalog::try_lease`].
    pub(crate) async fn take_lease(
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

    /// See [`filedock_core::Catalog::live_leases`].
    pub(crate) async fn count_leases(&self, prefix: &str, now: filedock_core::Timestamp) -> filedock_core::Result<u32> {
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

    /// See [`filedock_core::Catalog::release_lease`].
    pub(crate) async fn drop_lease(&self, name: &str, holder: &str) -> filedock_core::Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        Ok(())
    }

    /// See [`filedock_core::Catalog::setting`].
    pub(crate) async fn find_setting(&self, name: &str) -> filedock_core::Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(self.0.pool())
            .await
            .map_err(crate::rows::db_err)
    }

    /// See [`filedock_core::Catalog::init_setting`].
    pub(crate) async fn put_setting(&self, name: &str, value: &str) -> filedock_core::Result<String> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(self.0.pool())
            .await
            .map_err(crate::rows::db_err)?;
        // Whoever inserted first, the row now holds the value that stays.
        self.find_setting(name)
            .await?
            .ok_or_else(|| filedock_core::Error::internal_msg("a setting vanished after it was written"))
    }
}
