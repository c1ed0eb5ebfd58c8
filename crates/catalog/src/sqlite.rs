//! The SQLite catalog: one file in WAL mode. Its main connections commit with
//! `synchronous=FULL`, so a record acknowledged to a client survives a power failure; one more
//! connection commits with `synchronous=NORMAL` (no fsync: it survives a crash of the process,
//! not of the machine) the records the catalog macro calls relaxed. Several processes (the server
//! and `filedock keys`) may share the file.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use filedock_core::{Error, Result};
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, SqliteConnection, SqlitePool};

use crate::batch::{Batcher, Inserts, Job, pool_inserts};
use crate::engine::{Engine, Sql};
use crate::rows::{Relaxed, db_err, migrate_err};

/// Pages in the write-ahead log before a commit checkpoints it (see [`SqliteCatalog::open`]).
const WAL_AUTOCHECKPOINT: i64 = 400;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Records in a SQLite file.
pub type SqliteCatalog = Sql<SqliteEngine>;

/// SQLite under the SQL catalog.
#[derive(Debug, Clone)]
pub struct SqliteEngine {
    pool: SqlitePool,
    relaxed: Writer,
    batch: Batcher,
    /// `<database>-keys`: every process that adds or revokes a credential appends a byte to it
    /// after its commit, so the others see the change with one `stat` (none for in-memory).
    keys_file: Option<PathBuf>,
    /// Room kept on the database's disk for deletes and revocations (none in memory).
    room: Option<Arc<Room>>,
}

/// How much room the catalog keeps for the writes that must work on a full disk, in slices. A
/// delete or a revocation writes a few pages to the write-ahead log (and a checkpoint copies
/// them): one 1 MiB slice is room for hundreds of them.
const ROOM_SLICE: usize = 1 << 20;
const ROOM_SLICES: usize = 8;

/// `<database>-room.{0..7}`: files of [`ROOM_SLICE`] written at open. When a delete or a
/// revocation finds the disk full, one slice is removed and the statement runs again in the space
/// it held (SQLite needs room to commit even a delete), so eight disk-full moments in a row are
/// survived even if something else fills what each delete freed. Slices are written again after
/// a later success, once the disk has room for them. Every process on the database (the server,
/// `filedock keys`, `doctor`) shares the same slices.
#[derive(Debug)]
struct Room {
    base: PathBuf,
    /// A slice may be missing (given up, or not written for want of space).
    short: std::sync::atomic::AtomicBool,
}

impl Room {
    fn new(base: PathBuf) -> Room {
        let room = Room {
            base,
            short: std::sync::atomic::AtomicBool::new(true),
        };
        room.take();
        room
    }

    fn slice(&self, i: usize) -> PathBuf {
        let mut p = self.base.as_os_str().to_owned();
        p.push(format!(".{i}"));
        PathBuf::from(p)
    }

    /// Writes the slices that are missing; a disk without room for one leaves nothing of it.
    fn take(&self) {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        if !self.short.swap(false, Ordering::AcqRel) {
            return;
        }
        for i in 0..ROOM_SLICES {
            let path = self.slice(i);
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == ROOM_SLICE as u64) {
                continue;
            }
            let written = std::fs::File::create(&path).and_then(|mut f| {
                f.write_all(&vec![0u8; ROOM_SLICE])?;
                f.sync_all()
            });
            if let Err(e) = written {
                let _ = std::fs::remove_file(&path);
                self.short.store(true, Ordering::Release);
                tracing::debug!(error = %e, "no room yet for the catalog's reserve");
                return;
            }
        }
    }

    /// Removes one slice; true if that freed anything.
    fn give_up(&self) -> bool {
        self.short.store(true, std::sync::atomic::Ordering::Release);
        let freed = (0..ROOM_SLICES)
            .rev()
            .any(|i| std::fs::remove_file(self.slice(i)).is_ok());
        if freed {
            tracing::warn!("the catalog's disk is full: using room kept for deletes and revocations");
        }
        freed
    }
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
            // A checkpoint runs inside the commit that fills the log past this many pages, and
            // the connection waits for it (its page copies and two fsyncs): under many creations
            // SQLite's default of 1,000 pages stalled the relaxed writer several times a second;
            // at 400 the stalls are short (measured: `bench/TUNING.md`).
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT.to_string())
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let catalog = Self::with_options(opts.clone(), 8).await?;
        let relaxed = SqliteConnection::connect_with(&opts.synchronous(SqliteSynchronous::Normal))
            .await
            .map_err(db_err)?;
        let relaxed = Writer::One(Arc::new(tokio::sync::Mutex::new(crate::direct::Relaxed::new(
            relaxed,
            path,
            WAL_AUTOCHECKPOINT,
        )?)));
        let mut keys = path.as_os_str().to_owned();
        keys.push("-keys");
        let keys_file = PathBuf::from(keys);
        bump(&keys_file, false)?;
        let mut room = path.as_os_str().to_owned();
        room.push("-room");
        Ok(Sql(SqliteEngine {
            batch: Batcher::spawn(relaxed.clone()),
            relaxed,
            keys_file: Some(keys_file),
            room: Some(Arc::new(Room::new(PathBuf::from(room)))),
            ..catalog.0
        }))
    }

    /// A private in-memory database (tests).
    pub async fn in_memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:").map_err(db_err)?;
        // One connection: each in-memory connection would be its own database.
        Self::with_options(opts, 1).await
    }

    async fn with_options(opts: SqliteConnectOptions, max: u32) -> Result<Self> {
        // No ping before each use: a connection is a thread over a local file, not a socket that
        // can go stale, and the ping was a round trip to that thread per query.
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .connect_with(opts)
            .await
            .map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(migrate_err)?;
        Ok(Sql(SqliteEngine {
            relaxed: Writer::Pool(pool.clone()),
            batch: Batcher::spawn(Writer::Pool(pool.clone())),
            pool,
            keys_file: None,
            room: None,
        }))
    }
}

impl Engine for SqliteEngine {
    type Db = sqlx::Sqlite;
    type Relaxed = Writer;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn relaxed(&self) -> &Writer {
        &self.relaxed
    }

    fn one_writer(&self) -> bool {
        true
    }

    fn direct(&self) -> Option<&crate::direct::Shared> {
        match &self.relaxed {
            Writer::One(shared) => Some(shared),
            Writer::Pool(_) => None,
        }
    }

    fn batch(&self) -> &Batcher {
        &self.batch
    }

    fn durable(&self) -> &dyn Inserts {
        &self.pool
    }

    /// Gives up the room kept for deletes and revocations (see [`Room`]); true if it freed any.
    fn free_room(&self) -> bool {
        self.room.as_ref().is_some_and(|r| r.give_up())
    }

    /// Takes the room again if it was given up and the disk has space for it.
    fn keep_room(&self) {
        if let Some(r) = &self.room {
            r.take();
        }
    }

    /// The keys file's inode, length and modification time (see
    /// [`filedock_core::Catalog::credentials_version`]): an append, a `touch` or a new file moves it.
    fn credentials_seen(&self) -> Option<u128> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.keys_file.as_ref()?).ok()?;
        let mtime_ns = (m.mtime() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(m.mtime_nsec() as u64);
        Some((u128::from(m.ino() ^ m.len().rotate_left(32)) << 64) | u128::from(mtime_ns))
    }

    fn credentials_changed(&self) -> Result<()> {
        match &self.keys_file {
            Some(path) => bump(path, true).map_err(|e| {
                Error::Unavailable(format!(
                    "the credential change is saved, but running servers may not see it until restarted: {e}"
                ))
            }),
            None => Ok(()),
        }
    }
}

/// Creates the keys file, and with `append` adds a byte to it.
fn bump(path: &Path, append: bool) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    if append {
        // On a full disk the byte cannot be added; a new modification time moves the version
        // all the same (it needs no block).
        if let Err(e) = f.write_all(b"\n") {
            if !filedock_core::error::is_disk_full(&e) {
                return Err(e.into());
            }
            f.set_modified(std::time::SystemTime::now())?;
        }
    }
    Ok(())
}

/// Where the relaxed records are written: one connection of its own (with the upload-lock
/// statements' direct one beside it, under the same lock: `crate::direct`), so they queue for it
/// rather than in SQLite's busy handler. Not a pool of one: a pool hands its connection back
/// through a task of its own after every statement, a wake-up more on every PATCH. An in-memory
/// catalog writes through its one pooled connection (another connection would be another
/// database).
#[derive(Debug, Clone)]
pub(crate) enum Writer {
    One(crate::direct::Shared),
    Pool(SqlitePool),
}

pub(crate) enum WriterConn {
    One(tokio::sync::OwnedMutexGuard<crate::direct::Relaxed>),
    Pool(sqlx::pool::PoolConnection<sqlx::Sqlite>),
}

impl std::ops::Deref for WriterConn {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        match self {
            WriterConn::One(c) => &c.sqlx,
            WriterConn::Pool(c) => c,
        }
    }
}

impl std::ops::DerefMut for WriterConn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match self {
            WriterConn::One(c) => &mut c.sqlx,
            WriterConn::Pool(c) => c,
        }
    }
}

#[async_trait::async_trait]
impl Relaxed for Writer {
    type Conn = WriterConn;
    async fn conn(&self) -> Result<WriterConn> {
        Ok(match self {
            Writer::One(c) => WriterConn::One(c.clone().lock_owned().await),
            Writer::Pool(p) => WriterConn::Pool(p.acquire().await.map_err(db_err)?),
        })
    }
}

pool_inserts!(SqlitePool, sqlx::Sqlite);
pool_inserts!(Writer, sqlx::Sqlite, together = together);

/// [`crate::batch::Inserts::insert_together`] for the relaxed writer: on its direct connection
/// when it has one.
async fn together(w: &Writer, jobs: Vec<Job>) -> (Vec<Job>, Option<Result<()>>) {
    match w {
        Writer::One(relaxed) => {
            let (jobs, r) = crate::direct::insert_batch(relaxed, jobs).await;
            (jobs, Some(r))
        }
        Writer::Pool(_) => (jobs, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filedock_core::{Catalog, Error};

    #[tokio::test]
    async fn passes_the_catalog_conformance_suite_in_memory() {
        filedock_core::conformance::catalog_suite(&SqliteCatalog::in_memory().await.unwrap()).await;
    }

    /// On a file: the upload-lock statements run on the direct connection (`crate::direct`), in
    /// place on a multi-thread runtime, on a blocking thread on a current-thread one.
    async fn passes_the_catalog_conformance_suite_on_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap();
        assert!(c.0.direct().is_some());
        filedock_core::conformance::catalog_suite(&c).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_catalog_conformance_suite_on_a_file_in_place() {
        passes_the_catalog_conformance_suite_on_a_file().await;
    }

    #[tokio::test]
    async fn passes_the_catalog_conformance_suite_on_a_file_on_one_thread() {
        passes_the_catalog_conformance_suite_on_a_file().await;
    }

    /// A crash between a change and its event, injected: the delivery insert fails (a trigger).
    #[tokio::test]
    async fn a_change_and_its_event_are_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let c = SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap();
        let pool = c.0.pool().clone();
        filedock_core::conformance::change_and_event_fault_suite(&c, |refuse| {
            let pool = pool.clone();
            async move {
                let sql = if refuse {
                    "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON deliveries
                     BEGIN SELECT RAISE(ABORT, 'injected: the event is not written'); END"
                } else {
                    "DROP TRIGGER refuse_deliveries"
                };
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
        })
        .await;
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

    /// SQLite's plan of `sql`, a step a line (values bound as text: a plan does not run).
    async fn plan(c: &SqliteCatalog, sql: &str, binds: &[&str]) -> Vec<String> {
        use sqlx::Row as _;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for b in binds {
            q = q.bind(b.to_string());
        }
        let rows = q.fetch_all(&c.0.pool).await.unwrap();
        rows.iter().map(|r| r.get::<String, _>(3)).collect()
    }

    /// Every page of a listing is a range of the `files_listing` index: with `$n IS NULL OR
    /// id < $n` SQLite scanned every row above the cursor (a page 100 ms deep in a million
    /// files, 0.6 ms as a range: `bench/RESULTS.md`).
    #[tokio::test]
    async fn every_listing_shape_is_an_index_range() {
        let dir = tempfile::tempdir().unwrap();
        let c = SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap();
        for (sql, range) in [
            (crate::rows::LISTINGS[0], "files_listing (project=? AND status=?)"),
            (
                crate::rows::LISTINGS[1],
                "files_listing (project=? AND status=? AND id<?)",
            ),
            (
                crate::rows::LISTINGS[2],
                "files_listing_in (project=? AND workspace=? AND status=?)",
            ),
            (
                crate::rows::LISTINGS[3],
                "files_listing_in (project=? AND workspace=? AND status=? AND id<?)",
            ),
        ] {
            let plan = plan(&c, sql, &["p", "ready", "0", "100", "w", "c"]).await;
            let want = format!("SEARCH files USING INDEX {range}");
            assert_eq!(plan, vec![want], "{sql}");
        }
    }

    /// Pruning reads no whole table: each statement scanned its table once a sweep round, holding
    /// the write lock meanwhile (63 ms with 364,000 files, every write waiting).
    #[tokio::test]
    async fn every_pruning_statement_finds_its_rows_through_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let c = SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap();
        for what in filedock_core::catalog::Prune::ALL {
            let sql = crate::change::prune_statement(what);
            let plan = plan(&c, sql, &["0", "1000"]).await;
            assert!(
                plan.iter()
                    .all(|step| !step.starts_with("SCAN ") || step.contains(" USING ")),
                "{what:?} reads a whole table: {plan:?}"
            );
        }
    }

    /// The sweeper's batches come off an index in order: with the expiry alone, the files that
    /// expired in one millisecond were read and sorted whole for every batch (300,000 rows swept
    /// at 5,000/s).
    #[tokio::test]
    async fn what_expired_comes_in_index_order() {
        let dir = tempfile::tempdir().unwrap();
        let c = SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap();
        for (sql, index) in [
            (crate::rows::EXPIRED_FILES, "files_expiry"),
            (crate::rows::EXPIRED_UPLOADS, "uploads_expiry"),
        ] {
            let plan = plan(&c, sql, &["0", "512"]).await;
            assert_eq!(plan.len(), 1, "one step, no sort: {plan:?}");
            assert!(plan[0].contains(index), "{plan:?}");
        }
    }

    #[tokio::test]
    async fn durable_records_fsync_and_relaxed_ones_only_survive_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let c = SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap();
        let sync = "PRAGMA synchronous";
        // 2 = FULL, 1 = NORMAL (in WAL mode: no fsync at commit).
        assert_eq!(
            sqlx::query_scalar::<_, i64>(sync).fetch_one(&c.0.pool).await.unwrap(),
            2
        );
        let mut relaxed = c.0.relaxed.conn().await.unwrap();
        assert_eq!(
            sqlx::query_scalar::<_, i64>(sync)
                .fetch_one(&mut *relaxed)
                .await
                .unwrap(),
            1
        );
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *relaxed)
            .await
            .unwrap();
        let checkpoint = "PRAGMA wal_autocheckpoint";
        assert_eq!(
            sqlx::query_scalar::<_, i64>(checkpoint)
                .fetch_one(&mut *relaxed)
                .await
                .unwrap(),
            WAL_AUTOCHECKPOINT
        );
        assert_eq!(
            sqlx::query_scalar::<_, i64>(checkpoint)
                .fetch_one(&c.0.pool)
                .await
                .unwrap(),
            WAL_AUTOCHECKPOINT
        );
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn a_credential_change_in_one_process_empties_the_others_credential_cache() {
        use filedock_core::{CredentialKind, ProjectId, SystemClock, auth::Credentials, auth::parse_token};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        // Two catalogs on one file stand for the server and `filedock keys`.
        let server = Arc::new(SqliteCatalog::open(&path).await.unwrap());
        let cli = Arc::new(SqliteCatalog::open(&path).await.unwrap());
        let on_server = Credentials::new(server.clone(), Arc::new(SystemClock));
        let on_cli = Credentials::new(cli.clone(), Arc::new(SystemClock));
        let project = ProjectId::new("demo").unwrap();
        let (_, key) = on_cli
            .create(project.clone(), None, CredentialKind::Integration, None)
            .await
            .unwrap();
        let (other, _) = on_cli
            .create(project, None, CredentialKind::Integration, None)
            .await
            .unwrap();
        let before = server.credentials_version().expect("a file catalog has a version");
        on_server.authenticate(&key).await.unwrap();

        // The row is gone behind the catalog's back (no version change): the cache still
        // answers, which shows it is used.
        let id = parse_token(&key).unwrap().id.to_owned();
        sqlx::query("DELETE FROM credentials WHERE id = $1")
            .bind(&id)
            .execute(&cli.0.pool)
            .await
            .unwrap();
        on_server.authenticate(&key).await.unwrap();
        assert_eq!(server.credentials_version(), Some(before));

        // Any change through a catalog moves the version for every process: the next check
        // reads the row again (and finds none).
        on_cli.revoke(&other.id).await.unwrap();
        assert_ne!(server.credentials_version(), Some(before));
        let err = on_server.authenticate(&key).await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated(_)), "{err:?}");
        assert_eq!(SqliteCatalog::in_memory().await.unwrap().credentials_version(), None);
    }

    #[tokio::test]
    async fn a_key_revoked_by_another_process_fails_on_its_next_request() {
        use filedock_core::{CredentialKind, ProjectId, SystemClock, auth::Credentials};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let server = Credentials::new(
            Arc::new(SqliteCatalog::open(&path).await.unwrap()),
            Arc::new(SystemClock),
        );
        let cli = Credentials::new(
            Arc::new(SqliteCatalog::open(&path).await.unwrap()),
            Arc::new(SystemClock),
        );
        let (row, key) = cli
            .create(ProjectId::new("demo").unwrap(), None, CredentialKind::Session, None)
            .await
            .unwrap();
        for _ in 0..3 {
            server.authenticate(&key).await.unwrap();
        }
        cli.revoke(&row.id).await.unwrap();
        let err = server.authenticate(&key).await.unwrap_err();
        assert!(
            matches!(err, Error::Unauthenticated(ref m) if m == "credential revoked"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn refuses_a_schema_newer_than_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let c = SqliteCatalog::open(&path).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (9999, 'future', CURRENT_TIMESTAMP, 1, x'00', 0)")
            .execute(&c.0.pool)
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
