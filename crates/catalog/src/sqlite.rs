//! The SQLite catalog: one file in WAL mode. Its main connections commit with
//! `synchronous=FULL`, so a record acknowledged to a client survives a power failure; one more
//! connection commits with `synchronous=NORMAL` (no fsync: it survives a crash of the process,
//! not of the machine) the records the catalog macro calls relaxed. Several processes (the server
//! and `filedock keys`) may share the file.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use filedock_core::Result;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::sql::{db_err, migrate_err, sql_catalog};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Records in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pool: SqlitePool,
    relaxed: SqlitePool,
}

impl SqliteCatalog {
    /// Opens (creating) the database file and migrates it.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let catalog = Self::with_options(opts.clone(), 8).await?;
        // One connection: its writes queue in the pool rather than in SQLite's busy handler.
        let relaxed = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(db_err)?;
        Ok(SqliteCatalog { relaxed, ..catalog })
    }

    /// A private in-memory database (tests).
    pub async fn in_memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:").map_err(db_err)?;
        // One connection: each in-memory connection would be its own database.
        Self::with_options(opts, 1).await
    }

    async fn with_options(opts: SqliteConnectOptions, max: u32) -> Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(migrate_err)?;
        Ok(SqliteCatalog {
            relaxed: pool.clone(),
            pool,
        })
    }
}

sql_catalog!(SqliteCatalog);

#[cfg(test)]
mod tests {
    use super::*;
    use filedock_core::{Catalog, Error};

    #[tokio::test]
    async fn passes_the_catalog_conformance_suite_in_memory() {
        filedock_core::conformance::catalog_suite(&SqliteCatalog::in_memory().await.unwrap()).await;
    }

    #[tokio::test]
    async fn passes_the_catalog_conformance_suite_on_disk_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        filedock_core::conformance::catalog_suite(&SqliteCatalog::open(&path).await.unwrap()).await;
        let again = SqliteCatalog::open(&path).await.unwrap();
        assert_eq!(
            again.list_credentials(None).await.unwrap().len(),
            2,
            "records survive a reopen"
        );
    }

    #[tokio::test]
    async fn durable_records_fsync_and_relaxed_ones_only_survive_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let c = SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap();
        let sync = |pool: &SqlitePool| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        // 2 = FULL, 1 = NORMAL (in WAL mode: no fsync at commit).
        assert_eq!(sync(&c.pool).await, 2);
        assert_eq!(sync(&c.relaxed).await, 1);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&c.relaxed)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn refuses_a_schema_newer_than_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let c = SqliteCatalog::open(&path).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (9999, 'future', CURRENT_TIMESTAMP, 1, x'00', 0)")
            .execute(&c.pool)
            .await
            .unwrap();
        drop(c);
        let err = SqliteCatalog::open(&path).await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable(ref m) if m.contains("newer")),
            "{err:?}"
        );
    }
}
