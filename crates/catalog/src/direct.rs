//! SQLite's upload-lock statements on the caller's thread, and the batches of new records.
//!
//! A tus PATCH makes two relaxed statements: it takes its upload's lock (reading the upload),
//! and after the synced write it records the offset and frees the lock. Through sqlx each is a
//! hand-off to the connection's own thread and a wake-up back: about 0.06 ms each on the bench's
//! VMs, most of it two context switches, against a statement of a few microseconds. Here they
//! run on the request's thread (blocking in place, as the PATCH's write does) through a rusqlite
//! connection to the same file, opened as the relaxed one is (`synchronous=NORMAL`). It sits
//! behind the relaxed writer's lock, beside the sqlx connection: relaxed records still go one at
//! a time, and never wait for each other in SQLite's busy handler.
//!
//! The new pending files and uploads that `crate::batch` gathers go through the same connection,
//! a batch in one transaction on a blocking thread: through sqlx each of its statements (files,
//! then uploads, in runs of 64, 32, …) was a hand-off and a commit of its own. Over 5 s of tus
//! creations at 64 connections this halved the server's context switches (1.06 to 0.51 a
//! creation) and cut its futex calls from 0.77 to 0.22 and its WAL writes from 4.4 to 3.5 a
//! creation.

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use filedock_core::{Error, Result, Timestamp, UploadId, UploadRecord};
use rusqlite::{OptionalExtension as _, params};

use crate::batch::{FILE_COLUMNS, Job, UPLOAD_COLUMNS};
use crate::rows::{Columns, i64_of, upload_of};

/// The relaxed writer's lock, over its two connections (`crate::sqlite::Writer`).
pub(crate) type Shared = Arc<tokio::sync::Mutex<Relaxed>>;

/// SQLite's relaxed connections: sqlx's for the catalog's statements, and a rusqlite one for the
/// upload-lock statements.
#[derive(Debug)]
pub(crate) struct Relaxed {
    pub(crate) sqlx: sqlx::SqliteConnection,
    direct: rusqlite::Connection,
}

impl Relaxed {
    /// `sqlx` is open on the database already (migrated, in WAL mode); `direct` opens beside it
    /// with the same settings.
    pub(crate) fn new(sqlx: sqlx::SqliteConnection, path: &Path, autocheckpoint: i64) -> Result<Self> {
        let direct = rusqlite::Connection::open(path).map_err(direct_err)?;
        direct.busy_timeout(Duration::from_secs(10)).map_err(direct_err)?;
        direct
            .execute_batch(&format!(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = {autocheckpoint};"
            ))
            .map_err(direct_err)?;
        Ok(Relaxed { sqlx, direct })
    }
}

/// Runs `statement` on the direct connection, in place.
async fn run<T: Send + 'static>(
    relaxed: &Shared,
    statement: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T> {
    let mut held = relaxed.clone().lock_owned().await;
    filedock_core::blocking::in_place(move || statement(&mut held.direct))
        .await?
        .map_err(direct_err)
}

/// See [`filedock_core::Catalog::lock_and_read_upload`]; the statement is `sql.rs`'s.
pub(crate) async fn lock_and_read(
    relaxed: &Shared,
    id: &UploadId,
    token: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<Option<UploadRecord>> {
    let (id, token) = (id.as_str().to_owned(), token.to_owned());
    let row = run(relaxed, move |c| {
        c.prepare_cached(
            "UPDATE uploads SET lock_token = ?2, lock_until = ?4
             WHERE id = ?1 AND status = 'active'
               AND (lock_token IS NULL OR lock_token = ?2 OR lock_until < ?3)
             RETURNING *",
        )?
        .query_row(params![id, token, now, until], |r| Ok(upload_of(&Row(r))))
        .optional()
    })
    .await?;
    row.transpose()
}

/// See `Sql::advance`: records an upload's progress under `token`'s lock, freeing the lock if
/// `release`.
pub(crate) async fn advance(
    relaxed: &Shared,
    id: &UploadId,
    token: &str,
    offset: u64,
    length: Option<u64>,
    expires_at: Timestamp,
    release: bool,
) -> Result<bool> {
    let (id, token) = (id.as_str().to_owned(), token.to_owned());
    let changed = run(relaxed, move |c| {
        c.prepare_cached(
            "UPDATE uploads SET upload_offset = ?3, length = COALESCE(?4, length), expires_at = ?5,
                        lock_token = CASE WHEN ?6 THEN NULL ELSE lock_token END,
                        lock_until = CASE WHEN ?6 THEN NULL ELSE lock_until END
                     WHERE id = ?1 AND lock_token = ?2 AND status = 'active'",
        )?
        .execute(params![
            id,
            token,
            i64_of(Some(offset)),
            i64_of(length),
            expires_at,
            release
        ])
    })
    .await?;
    Ok(changed == 1)
}

/// See [`filedock_core::Catalog::unlock_upload`].
pub(crate) async fn unlock(relaxed: &Shared, id: &UploadId, token: &str) -> Result<()> {
    let (id, token) = (id.as_str().to_owned(), token.to_owned());
    run(relaxed, move |c| {
        c.prepare_cached("UPDATE uploads SET lock_token = NULL, lock_until = NULL WHERE id = ?1 AND lock_token = ?2")?
            .execute(params![id, token])
    })
    .await?;
    Ok(())
}

/// A batch of new records (`crate::batch`) in one transaction on a blocking thread: files
/// first (an upload names its file), then uploads; all or none. The jobs come back with the
/// outcome (none if the blocking thread itself failed: their callers then hear the writer
/// stopped).
pub(crate) async fn insert_batch(relaxed: &Shared, jobs: Vec<Job>) -> (Vec<Job>, Result<()>) {
    // Handed to a blocking thread, not run in place: the batch writer runs all day, and each
    // `block_in_place` handed its worker's core to another thread, so the runtime kept starting
    // threads (17 → 28 over 4 s of creations, peak RSS 40 → 64 MiB: each with its own
    // allocator heap). One hand-off per batch, where sqlx made one per statement.
    let mut held = relaxed.clone().lock_owned().await;
    let done = tokio::task::spawn_blocking(move || {
        let r = insert_all(&mut held.direct, &jobs);
        (jobs, r)
    })
    .await;
    match done {
        Ok((jobs, r)) => (jobs, r.map_err(direct_err)),
        Err(e) => (Vec::new(), Err(Error::internal(e))),
    }
}

fn insert_all(c: &mut rusqlite::Connection, jobs: &[Job]) -> rusqlite::Result<()> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        static FILES: LazyLock<String> =
            LazyLock::new(|| format!("INSERT INTO files ({FILE_COLUMNS}) VALUES ({})", placeholders(23)));
        let mut files = tx.prepare_cached(&FILES)?;
        for f in jobs.iter().filter_map(|j| j.file.as_ref()) {
            files.execute(params![
                f.id.as_str(),
                f.project.as_str(),
                f.workspace.as_ref().map(|w| w.as_str()),
                f.backend,
                f.key.as_str(),
                f.name.as_str(),
                i64_of(f.size),
                f.declared_type,
                f.detected_type,
                f.extension,
                f.sha256,
                f.created_by,
                f.agent,
                f.credential_id,
                f.class.as_str(),
                f.status.as_str(),
                f.policy,
                f.created_at,
                f.completed_at,
                f.expires_at,
                f.deleted_at,
                f.origin,
                f.reason,
            ])?;
        }
        static UPLOADS: LazyLock<String> =
            LazyLock::new(|| format!("INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ({})", placeholders(16)));
        let mut uploads = tx.prepare_cached(&UPLOADS)?;
        for u in jobs.iter().filter_map(|j| j.upload.as_ref()) {
            uploads.execute(params![
                u.id.as_str(),
                u.kind.as_str(),
                u.project.as_str(),
                u.workspace.as_ref().map(|w| w.as_str()),
                u.file_id.as_ref().map(|f| f.as_str()),
                u.backend,
                u.key.as_str(),
                u.handle,
                i64_of(u.length),
                i64_of(Some(u.part_size)),
                i64_of(Some(u.offset)),
                u.metadata,
                u.concat.as_ref().map(filedock_core::model::Concat::to_stored),
                u.status.as_str(),
                u.created_at,
                u.expires_at,
            ])?;
        }
    }
    tx.commit()
}

/// `?1, ?2, …, ?n`.
fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
}

/// A row rusqlite read (a local type: sqlx's rows have `Columns` already).
struct Row<'a, 'r>(&'a rusqlite::Row<'r>);

impl Columns for Row<'_, '_> {
    fn text(&self, name: &str) -> Result<Option<String>> {
        self.0.get::<_, Option<String>>(name).map_err(direct_err)
    }
    fn int(&self, name: &str) -> Result<Option<i64>> {
        self.0.get::<_, Option<i64>>(name).map_err(direct_err)
    }
}

/// A rusqlite error as a core outcome, as `rows::db_err` makes of sqlx's.
fn direct_err(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => crate::rows::full(&e),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => crate::rows::unavailable(&e),
        _ => Error::internal(e),
    }
}

#[cfg(test)]
mod tests {
    use filedock_core::Catalog as _;

    use crate::batch::tests::{jobs, pairs};
    use crate::engine::Engine as _;
    use crate::sqlite::{SqliteCatalog, Writer};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_one_transaction_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let c = SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap();
        let Writer::One(relaxed) = c.0.relaxed() else {
            panic!("a file catalog has its own relaxed writer");
        };
        let pairs = pairs(37);
        let (back, r) = super::insert_batch(relaxed, jobs(&pairs)).await;
        r.unwrap();
        assert_eq!(back.len(), 37, "the jobs come back");
        for (f, u) in &pairs {
            assert_eq!(c.file(&f.id).await.unwrap().as_ref(), Some(f));
            assert_eq!(c.upload(&u.id).await.unwrap().as_ref(), Some(u));
        }
        // One row taken: none of the batch goes in.
        let mut again = crate::batch::tests::pairs(3);
        again[1].0.id = pairs[0].0.id.clone();
        let (back, r) = super::insert_batch(relaxed, jobs(&again)).await;
        assert!(r.is_err());
        assert_eq!(back.len(), 3);
        assert_eq!(c.file(&again[0].0.id).await.unwrap(), None);
        assert_eq!(c.upload(&again[2].1.id).await.unwrap(), None);
    }
}
