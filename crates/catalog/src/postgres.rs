//! The PostgreSQL catalog, for several filedock instances sharing one database. Everything that
//! must happen once (completing, deleting) is a single conditional statement, so the database
//! decides; nothing relies on one process's memory.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use filedock_core::{Error, Result};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::batch::{Batcher, Inserts, pool_inserts};
use crate::engine::{Engine, Sql};
use crate::rows::migrate_err;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Records in PostgreSQL.
pub type PgCatalog = Sql<PgEngine>;

/// PostgreSQL under the SQL catalog.
#[derive(Debug, Clone)]
pub struct PgEngine {
    pool: PgPool,
    /// The same database with `synchronous_commit = off`: a commit returns before its WAL is
    /// flushed (PostgreSQL flushes it within moments, and a later synchronous commit with it).
    relaxed: PgPool,
    batch: Batcher,
    /// The connection that listens for credential changes and queued tasks.
    listening: Arc<crate::listen::Listening>,
}

/// How long a statement waits for a connection before its request is answered 503. Not
/// shorter: under a burst on a busy machine a healthy pool can keep a statement waiting for
/// seconds (5 s refused 3 of 10,000 uploads at 64 concurrent with a second test suite beside).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a statement may run on the server (`statement_timeout`); every statement here
/// takes milliseconds, so one that runs this long is stuck behind a lock or a sick server.
const STATEMENT_TIMEOUT: &str = "15s";

impl PgCatalog {
    /// Connects (failing clearly if the server is unreachable) and migrates. The error names
    /// the host and database, never the password.
    pub async fn open(url: &str, pool_size: u32) -> Result<Self> {
        let opts =
            PgConnectOptions::from_str(url).map_err(|e| Error::invalid(format!("malformed PostgreSQL URL: {e}")))?;
        let target = format!(
            "{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or("(default)")
        );
        // One direct connection first: an unreachable server fails now, not after the pool's
        // acquire timeout.
        let probe = <sqlx::PgConnection as sqlx::Connection>::connect_with(&opts)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL at {target}: {e}")))?;
        sqlx::Connection::close(probe).await.ok();
        let opts = opts.options([("statement_timeout", STATEMENT_TIMEOUT)]);
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts.clone())
            .await
            .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL at {target}: {e}")))?;
        MIGRATOR.run(&pool).await.map_err(migrate_err)?;
        let relaxed = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts.options([("synchronous_commit", "off")]))
            .await
            .map_err(|e| Error::Unavailable(format!("cannot connect to PostgreSQL at {target}: {e}")))?;
        Ok(Sql(PgEngine {
            listening: crate::listen::spawn(pool.clone()),
            pool,
            batch: Batcher::spawn(relaxed.clone()),
            relaxed,
        }))
    }
}

impl Engine for PgEngine {
    type Db = sqlx::Postgres;
    type Relaxed = PgPool;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn relaxed(&self) -> &PgPool {
        &self.relaxed
    }

    fn batch(&self) -> &Batcher {
        &self.batch
    }

    fn durable(&self) -> &dyn Inserts {
        &self.pool
    }

    /// Moves with every credential change any process commits (a trigger announces it, see
    /// `listen`); `None` while this instance does not listen, so every check reads the row.
    fn credentials_seen(&self) -> Option<u128> {
        self.listening.signals.credentials_version()
    }

    /// The trigger on `credentials` announces the change to every instance at commit; this
    /// one moves its own version now, so its next request reads the row (the announcement
    /// arrives moments later).
    fn credentials_changed(&self) -> Result<()> {
        self.listening.signals.moved();
        Ok(())
    }

    fn tasks_signal(&self) -> Option<&tokio::sync::Notify> {
        self.listening.signals.tasks()
    }

    fn listings(&self) -> &'static [&'static str; 4] {
        &crate::rows::LISTINGS_BYTEWISE
    }

    /// PostgreSQL keeps no room of filedock's on its disk: a full disk there is the DBA's.
    fn free_room(&self) -> bool {
        false
    }

    fn keep_room(&self) {}
}

pool_inserts!(PgPool, sqlx::Postgres, together = crate::pg_batch::together);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_catalog_conformance_suite() {
        let Some(url) = filedock_testkit::postgres_database().await else {
            return;
        };
        filedock_core::conformance::catalog_suite(&PgCatalog::open(&url, 4).await.unwrap()).await;
        let again = PgCatalog::open(&url, 2).await.unwrap();
        assert_eq!(
            filedock_core::Catalog::list_credentials(&again, None)
                .await
                .unwrap()
                .len(),
            2,
            "records survive a reconnect"
        );
    }

    /// A crash between a change and its event, injected: the delivery insert fails (a trigger).
    #[tokio::test]
    async fn a_change_and_its_event_are_one_transaction() {
        let Some(url) = filedock_testkit::postgres_database().await else {
            return;
        };
        let c = PgCatalog::open(&url, 4).await.unwrap();
        let pool = c.0.pool().clone();
        sqlx::query(
            "CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'injected: the event is not written'; END $$",
        )
        .execute(&pool)
        .await
        .unwrap();
        filedock_core::conformance::change_and_event_fault_suite(&c, |refuse| {
            let pool = pool.clone();
            async move {
                let sql = if refuse {
                    "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON deliveries
                     FOR EACH ROW EXECUTE FUNCTION refuse_deliveries()"
                } else {
                    "DROP TRIGGER refuse_deliveries ON deliveries"
                };
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
        })
        .await;
    }

    /// Waits until `ok()` holds, at most `secs` seconds; returns how long it took.
    async fn within(secs: u64, ok: impl Fn() -> bool) -> Duration {
        let start = std::time::Instant::now();
        while !ok() {
            assert!(start.elapsed() < Duration::from_secs(secs), "not within {secs} s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }

    /// Two instances: a credential change committed by one moves the other's credentials
    /// version (its cache empties) within a second; with its listening connection killed, the
    /// other trusts no cache (no version) until it listens again.
    #[tokio::test]
    async fn credential_changes_and_queued_tasks_are_announced_to_every_instance() {
        use filedock_core::Catalog;
        let Some(url) = filedock_testkit::postgres_database().await else {
            return;
        };
        let (a, b) = (
            PgCatalog::open(&url, 2).await.unwrap(),
            PgCatalog::open(&url, 2).await.unwrap(),
        );
        within(5, || b.credentials_version().is_some()).await;
        let v = b.credentials_version();
        let c = filedock_core::Credential {
            id: "0000000000000abc".into(),
            project: filedock_core::ProjectId::new("p").unwrap(),
            workspace: None,
            kind: filedock_core::CredentialKind::Integration,
            name: None,
            secret_hash: "0".repeat(64),
            created_at: 1,
            revoked_at: None,
        };
        a.insert_credential(&c).await.unwrap();
        within(1, || b.credentials_version() != v).await;
        let v = b.credentials_version();
        assert!(a.revoke_credential(&c.id, 2).await.unwrap());
        let took = within(1, || b.credentials_version() != v).await;
        eprintln!("the revocation reached the other instance in {took:?}");

        // A task queued by one wakes a claim waiting on the other.
        let waiting = b.queued_signal().expect("listening").notified();
        let t = filedock_core::model::TaskRecord {
            id: filedock_core::model::TaskId::generate(),
            project: filedock_core::ProjectId::new("p").unwrap(),
            workspace: None,
            workflow: "wf".into(),
            parameters: serde_json::json!({}),
            status: filedock_core::model::TaskStatus::Queued,
            created_by: None,
            runner: None,
            attempts: 0,
            lease_until: None,
            outputs: vec![],
            error: None,
            created_at: 1,
            started_at: None,
            finished_at: None,
        };
        a.insert_task(&t).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the waiting claim was woken within 1 s");

        // Every listening connection killed: no instance trusts its cache, then they listen again.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .execute(&a.0.pool)
        .await
        .unwrap();
        within(5, || b.credentials_version().is_none() || b.credentials_version() != v).await;
        within(10, || b.credentials_version().is_some()).await;
        assert!(b.queued_signal().is_some());
    }

    #[tokio::test]
    async fn durable_records_wait_for_the_flush_and_relaxed_ones_do_not() {
        let Some(url) = filedock_testkit::postgres_database().await else {
            return;
        };
        let c = PgCatalog::open(&url, 1).await.unwrap();
        let show = |pool: &PgPool| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(show(&c.0.pool).await, "on");
        assert_eq!(show(&c.0.relaxed).await, "off");
    }

    /// The newest page does not hang on fresh statistics. After a burst of pending files the
    /// statistics still said every file was ready, and PostgreSQL's generic plan (sqlx prepares
    /// each statement) walked the primary key backwards past every pending file: 35 ms for the
    /// newest 100 of 10,000 ready files under 230,000 pending ones, 0.1 ms through the listing's
    /// index. Each shape, planned as sqlx's statements are after their fifth run, must search
    /// its listing index and never the primary key.
    #[tokio::test]
    async fn every_listing_shape_uses_its_index_whatever_the_statistics_say() {
        let Some(url) = filedock_testkit::postgres_database().await else {
            return;
        };
        let c = PgCatalog::open(&url, 1).await.unwrap();
        let mut conn = c.0.pool.acquire().await.unwrap();
        let insert = |first: u32, last: u32, status: &str, workspace: &str| {
            format!(
                "INSERT INTO files (id, project, workspace, backend, storage_key, name, class, status, policy, created_at)
                 SELECT 'f' || lpad(g::text, 10, '0'), 'p', {workspace}, 'local', 'k' || g, 'n', 'input', '{status}', '{{}}', 1
                 FROM generate_series({first}, {last}) g"
            )
        };
        for sql in [
            insert(1, 2_000, "ready", "'w'"),
            "ANALYZE files".to_owned(),
            insert(2_001, 40_000, "pending", "NULL"),
            "SET plan_cache_mode = force_generic_plan".to_owned(),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        let args = ["'p'", "'ready'", "0", "100"];
        for (i, (sql, index)) in [
            (c.0.listings()[0], "files_listing "),
            (c.0.listings()[1], "files_listing "),
            (c.0.listings()[2], "files_listing_in "),
            (c.0.listings()[3], "files_listing_in "),
        ]
        .into_iter()
        .enumerate()
        {
            let extra: &[&str] = match i {
                0 => &[],
                1 => &["'f0000001000'"],
                2 => &["'w'"],
                _ => &["'w'", "'f0000001000'"],
            };
            let all = [&args[..], extra].concat().join(", ");
            let prepare = format!("PREPARE shape{i} AS {sql}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(prepare))
                .execute(&mut *conn)
                .await
                .unwrap();
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE shape{i}({all})")))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                plan.contains(&format!("Index Scan Backward using {index}")) && !plan.contains("files_pkey"),
                "{sql}\n{plan}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_a_schema_newer_than_the_binary() {
        let Some(url) = filedock_testkit::postgres_database().await else {
            return;
        };
        let c = PgCatalog::open(&url, 1).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'future', true, '\\x00', 0)")
            .execute(&c.0.pool)
            .await
            .unwrap();
        let err = PgCatalog::open(&url, 1).await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable(ref m) if m.contains("newer")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error_without_the_password() {
        let err = PgCatalog::open("postgres://u:hunter2@127.0.0.1:1/db", 1)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cannot connect to PostgreSQL at 127.0.0.1:1/db"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
