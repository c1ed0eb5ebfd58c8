//! What PostgreSQL announces to every instance (`LISTEN`, fed by the triggers of migration
//! 0005): a credential changed (`filedock_credentials`: each instance's credential cache starts
//! again), a task became queued (`filedock_tasks`: waiting claims look). One connection per
//! instance listens; it is made again, with backoff, when it drops. While it is down the
//! instance trusts neither signal: credentials are read from the database on every request and
//! claims poll, so a change is never missed, only seen at the old cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

const CREDENTIALS: &str = "filedock_credentials";
const TASKS: &str = "filedock_tasks";

/// The signals one listening connection keeps.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Moves on every credential change announced, and whenever the connection is lost or made.
    credentials: AtomicU64,
    listening: AtomicBool,
    tasks: tokio::sync::Notify,
}

impl Signals {
    /// See [`filedock_core::Catalog::credentials_version`]: `None` while not listening.
    pub(crate) fn credentials_version(&self) -> Option<u128> {
        self.listening
            .load(Ordering::SeqCst)
            .then(|| u128::from(self.credentials.load(Ordering::SeqCst)))
    }

    /// See [`filedock_core::Catalog::queued_signal`]: `None` while not listening.
    pub(crate) fn tasks(&self) -> Option<&tokio::sync::Notify> {
        self.listening.load(Ordering::SeqCst).then_some(&self.tasks)
    }

    pub(crate) fn moved(&self) {
        self.credentials.fetch_add(1, Ordering::SeqCst);
    }
}

/// The listening task of one catalog; stopped when the catalog (its last clone) is dropped.
#[derive(Debug)]
pub(crate) struct Listening {
    pub(crate) signals: Arc<Signals>,
    task: tokio::task::AbortHandle,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts listening on a connection of `pool`'s database.
pub(crate) fn spawn(pool: PgPool) -> Arc<Listening> {
    let signals = Arc::new(Signals::default());
    let task = tokio::spawn(listen(pool, signals.clone())).abort_handle();
    Arc::new(Listening { signals, task })
}

async fn listen(pool: PgPool, signals: Arc<Signals>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match connect(&pool).await {
            Ok(mut listener) => {
                // Anything may have changed while no one listened.
                signals.moved();
                signals.listening.store(true, Ordering::SeqCst);
                signals.tasks.notify_waiters();
                backoff = Duration::from_millis(100);
                let lost = loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) if n.channel() == CREDENTIALS => signals.moved(),
                        Ok(Some(n)) if n.channel() == TASKS => signals.tasks.notify_waiters(),
                        Ok(Some(_)) => {}
                        Ok(None) => break "the connection closed".to_owned(),
                        Err(e) => break e.to_string(),
                    }
                };
                signals.listening.store(false, Ordering::SeqCst);
                signals.moved();
                signals.tasks.notify_waiters();
                tracing::warn!(error = %lost, "stopped listening to PostgreSQL; credentials are read on every request until it is back");
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen to PostgreSQL; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CREDENTIALS, TASKS]).await?;
    Ok(listener)
}
