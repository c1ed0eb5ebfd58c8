//! filedock-server: the HTTP front. It parses requests, authenticates them, calls
//! [`filedock_core::FileService`] and renders answers — the native API, the `/blob/` route that
//! serves the local store's signed URLs, and (in `dialects/`) the vendor APIs. It holds no
//! business rule of its own and never touches a backend directly.

pub mod auth;
pub mod blob;
pub mod body;
pub mod dialects;
pub mod error;
pub mod links;
pub mod openapi;
pub mod respond;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use filedock_core::FileService;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub files: Arc<FileService>,
    pub dialects: Arc<dialects::DialectsConfig>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    // Spans name the path only: query strings of signed URLs carry signatures.
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi::serve))
        .merge(dialects::native::routes())
        .merge(dialects::tokenops::routes())
        .merge(dialects::huawei::routes())
        .merge(dialects::juniortree::routes())
        .merge(dialects::cyberun::routes())
        .merge(dialects::workflows::routes())
        .merge(dialects::tus::routes())
        .merge(blob::routes())
        .merge(links::routes())
        .with_state(state)
        .layer(CatchPanicLayer::new())
        .layer(trace)
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            HeaderName::from_static("x-auth-token"),
        ]))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
