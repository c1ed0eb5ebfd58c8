//! The whole HTTP surface: every route and the layers around them.

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use crate::{blob, dialects, error, idempotency, links, mcp, openapi, ops, web};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    ops::metrics_handle();
    let cors = crate::cors::layer(&state.http.cors);
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
        // Inside the gate: a request the gate refuses takes no idempotency key.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::layer))
        // The MCP tools take `idempotency_key` arguments instead (a JSON-RPC body is per call).
        .merge(mcp::routes(state.clone()))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), ops::gate));
    let routes = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::serve_metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(openapi::docs())
        .merge(api)
        .merge(web::routes())
        .route_layer(axum::middleware::from_fn(ops::track))
        .with_state(state);
    // The layers around every route wrap the routes once, as one service, not each route: a
    // layer added with `Router::layer` wraps each route in a box of its own, and each request
    // cloned the boxes of every layer below the one it passed (a box and a clone per layer, per
    // layer: 5–8% of a creation's CPU). Outermost first: preflights are answered before any
    // route, key or gate, and every answer (refusals included) carries the headers a browser
    // needs to read it.
    let layered = tower::ServiceBuilder::new()
        .option_layer(cors)
        // What the layers below answer, as axum's body (CORS makes bodies of its own).
        .map_response(axum::response::IntoResponse::into_response)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            HeaderName::from_static("x-auth-token"),
        ]))
        .layer(trace)
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(CatchPanicLayer::new())
        .service(routes);
    Router::new().fallback_service(layered)
}
