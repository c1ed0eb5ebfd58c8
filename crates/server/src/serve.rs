//! The accept loop: each connection served by hyper (HTTP/1.1), under the client timeouts, with
//! requests that smuggle refused (see `framing`), refusals that reach clients still sending
//! (see `linger`) and a graceful end.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::{framing, linger, repoll};

/// The most a connection's read buffer grows to (hyper's default is about 400 KiB). Body chunks
/// are slices of it: smaller keeps the memory of many slow uploads down, and 128 KiB reads are
/// already few enough not to show in the CPU per GiB (issue 9).
const READ_BUFFER: usize = 128 * 1024;

/// How long a client may take: a slow client cannot hold a connection for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To send a request's headers, counted from the connection's start or the end of the
    /// previous request (so an idle keep-alive connection is closed after it too).
    pub header: Duration,
    /// Between two pieces of a request body (an upload may take long; it may not stall).
    pub body_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The body timeout outermost, then lingering (see `linger`): a body dropped unread drains
    // through the timeout, and a body that timed out (a stalled client) is seen to have failed,
    // so it is not drained: its connection closes with the 408 (with lingering outside the
    // timeout, the drain waited 5 s more on a client that had stopped sending).
    let router = router
        .layer(tower::util::MapRequestLayer::new(linger::lingering))
        .layer(RequestBodyTimeoutLayer::new(timeouts.body_idle));
    let service = TowerToHyperService::new(router);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (sock, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = sock.set_nodelay(true);
        let service = service.clone();
        let watcher = graceful.watcher();
        // Repoll: the handler runs in this task and wakes it for each piece of body it awaits.
        tokio::spawn(repoll::Repoll::new(async move {
            // HTTP/1.1 only: the auto builder's protocol sniffing reads the first bytes with no
            // timeout, so a client that connects and says nothing would hold its socket for ever.
            let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header)
                .max_buf_size(READ_BUFFER);
            // Requests with both Content-Length and Transfer-Encoding get 400 (see `framing`).
            let sock = framing::Guarded::new(sock, READ_BUFFER);
            let conn = builder.serve_connection(TokioIo::new(sock), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }));
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
