//! filedock-server: the HTTP front. It parses requests, authenticates them, calls
//! [`filedock_core::FileService`] and renders answers — the native API, the `/blob/` route that
//! serves the local store's signed URLs, and (in `dialects/`) the vendor APIs. It holds no
//! business rule of its own and never touches a backend directly.

pub mod auth;
pub mod blob;
pub mod body;
pub mod dialects;
pub mod error;
mod framing;
pub mod links;
pub mod openapi;
pub mod ops;
pub mod repoll;
pub mod respond;
pub mod web;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use filedock_core::FileService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub files: Arc<FileService>,
    pub dialects: Arc<dialects::DialectsConfig>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The most a connection's read buffer grows to (hyper's default is about 400 KiB). Body chunks
/// are slices of it: smaller keeps the memory of many slow uploads down, and 128 KiB reads are
/// already few enough not to show in the CPU per GiB (issue 9).
const READ_BUFFER: usize = 128 * 1024;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    ops::metrics_handle();
    // Spans name the path only (query strings of signed URLs carry signatures), and a path that
    // is itself a capability (a stable link's token) only redacted.
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let path = ops::loggable_path(req.uri().path());
            tracing::info_span!("request", method = %req.method(), path = %path, request_id = %id)
        })
        // One access-log line per request at info: status and latency, in the span above.
        .on_response(
            tower_http::trace::DefaultOnResponse::new()
                .level(tracing::Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Micros),
        );
    // Everything that reads or writes files waits for the deployment identity (ops::gate).
    let api = Router::new()
        .merge(dialects::native::routes())
        .merge(dialects::tokenops::routes())
        .merge(dialects::huawei::routes())
        .merge(dialects::juniortree::routes())
        .merge(dialects::cyberun::routes())
        .merge(dialects::workflows::routes())
        .merge(dialects::tus::routes())
        .merge(blob::routes())
        .merge(links::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), ops::gate));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::serve_metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(openapi::docs())
        .merge(api)
        .merge(web::routes())
        .route_layer(axum::middleware::from_fn(ops::track))
        .with_state(state)
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(trace)
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            HeaderName::from_static("x-auth-token"),
        ]))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

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
    let router = router.layer(RequestBodyTimeoutLayer::new(timeouts.body_idle));
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
