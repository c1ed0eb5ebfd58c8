//! The PostgreSQL catalog, for several filedock instances sharing one database. Everything that
//! must happen once (completing, deleting) is a single conditional statement, so the database
//! decides; nothing relies on one process's memory.

use std::str::FromStr;
use std::time::Duration;

use filedock_core::{Error, Result};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::batch::{Batcher, Inserts, pool_inserts};
use crate::rows::migrate_err;
use crate::sql::{Engine, Sql};

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

    /// Instances learn of credential changes only from the database: every check reads the row.
    fn credentials_seen(&self) -> Option<u128> {
        None
    }

    fn credentials_changed(&self) -> Result<()> {
        Ok(())
    }

    /// PostgreSQL keeps no room of filedock's on its disk: a full disk there is the DBA's.
    fn free_room(&self) -> bool {
        false
    }

    fn keep_room(&self) {}
}

pool_inserts!(PgPool, sqlx::Postgres);

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
