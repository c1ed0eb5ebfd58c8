//! The SQL catalog: one schema and one set of statements for SQLite and PostgreSQL (portable:
//! `$N` placeholders, `CAST($N AS TEXT) IS NULL`), written once as ordinary
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

use sqlx::Database;

use crate::batch::{Batcher, Inserts};
use crate::rows::Relaxed;

/// What differs between the engines under the SQL catalog.
///
/// The statements need more of an engine than this trait can promise: that its arguments,
/// connections and results work as sqlx's generic code asks, and that it binds and decodes the
/// column types the catalog uses. Those are bounds on other types (`String: Encode<'_, E::Db>`),
/// which Rust does not carry from a trait's where-clause to its users (rust-lang/rust#20671), so
/// each `impl` block over [`Sql`] names them (`sql`, `change`, `queue`).
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
    /// Where the upload-lock statements run on the caller's thread (SQLite's file:
    /// `crate::direct`); `None`: on `relaxed`, as the others.
    fn direct(&self) -> Option<&crate::direct::Shared> {
        None
    }
    /// `list_files`'s statements (see `rows::listing`).
    fn listings(&self) -> &'static [&'static str; 4] {
        &crate::rows::LISTINGS
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
