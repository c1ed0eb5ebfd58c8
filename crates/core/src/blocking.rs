//! Blocking work (a synced write, a SQLite statement) run from a request's task.

use crate::error::{Error, Result};

/// Runs blocking `work` on this worker thread where the runtime allows it (a multi-thread
/// runtime: `block_in_place` moves the worker's other tasks to another thread while this one
/// blocks), instead of handing it to a blocking thread and being woken when it is done: on these
/// VMs each hand-off and wake-up cost a 64 KiB PATCH about 0.04 ms of its 0.7
/// (`docs/performance.md`). A current-thread runtime cannot block in place: there the work goes
/// to a blocking thread.
pub async fn in_place<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        Ok(tokio::task::block_in_place(work))
    } else {
        tokio::task::spawn_blocking(work).await.map_err(Error::internal)
    }
}
