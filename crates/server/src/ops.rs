//! Operations: `/healthz` (the process answers), `/readyz` (the deployment identity holds, the
//! catalog and every storage backend answer, background jobs run) and `/metrics` (Prometheus
//! text): requests by route, method and status, their durations, declared bytes in and out,
//! upload durations, uploads in progress, server-side errors by code; `serve` adds its jobs' runs
//! and failures and the log lines it dropped.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of the duration histograms, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often the recorder folds its histograms' raw samples into buckets. It keeps every sample
/// until then, so without this a server nobody scrapes would grow by each request's durations.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The process's Prometheus recorder, installed on first use (the recorder is global), with a
/// thread that runs its upkeep every [`UPKEEP_EVERY`].
pub fn metrics_handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (an embedding program's) keeps the metrics; this
        // handle then renders an empty page rather than failing.
        let _ = metrics::set_global_recorder(recorder);
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread: histograms are folded only when /metrics is read");
        }
        handle
    })
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", content((String = "text/plain", example = "ok")))))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 when the deployment identity holds, the catalog and every backend answer
/// (1 s each) and every background job has run recently; 503 naming each that does not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "The deployment identity does not hold, the catalog or a backend does not answer within 1 s, or a background job has not run recently", body = Object,
            example = json!({"status": "unavailable", "reason": "…"}))))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.files.check_ready().await {
        // A scanner that does not answer leaves the instance ready (uploads land quarantined and
        // wait for it), and is named.
        Ok(()) => match tokio::time::timeout(std::time::Duration::from_secs(2), state.files.check_scanners()).await {
            Ok(Ok(())) => Json(serde_json::json!({"status": "ready"})).into_response(),
            Ok(Err(e)) => Json(serde_json::json!({"status": "degraded", "reason": e.to_string()})).into_response(),
            Err(_) => Json(serde_json::json!({"status": "degraded", "reason": "a scanner did not answer within 2 s"}))
                .into_response(),
        },
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

/// Refuses every file route with 503 `unavailable` (and `Retry-After`) while this instance's
/// deployment identity is not verified: an instance on the wrong bucket or database serves
/// nothing rather than something wrong. `/healthz`, `/readyz` and `/metrics` stay open.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match state.files.refusal() {
        None => next.run(req).await,
        Some(why) => crate::error::ApiError(filedock_core::Error::Unavailable(why)).into_response(),
    }
}

/// A request path as the access log may show it: a stable link's token (`/l/{token}`) is a
/// capability, so it is cut to a prefix that tells links apart without opening them.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/l/") {
        Some(token) => {
            let shown: String = token.chars().take(6).collect();
            format!("/l/{shown}…(redacted)").into()
        }
        None => path.into(),
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content((String = "text/plain")))))]
pub async fn serve_metrics(State(state): State<AppState>) -> Response {
    let handle = metrics_handle();
    handle.run_upkeep();
    metrics::gauge!("filedock_uploads_in_progress").set(state.files.uploads_in_progress_total() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response()
}

/// Routes that take a file's bytes through filedock.
fn is_upload(method: &Method, route: &str) -> bool {
    match *method {
        Method::PUT => route.starts_with("/blob/"),
        Method::PATCH => route.starts_with("/tus/"),
        Method::POST => matches!(
            route,
            "/v1/files" | "/api/v1/upload" | "/v1/{project_id}/agent-runtime/upload-file" | "/tus" | "/tus/"
        ),
        _ => false,
    }
}

fn declared_length(h: &axum::http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Counts and times every routed request (by its route template, never its path: ids and
/// signed query strings stay out of the labels).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let bytes_in = declared_length(req.headers());
    let upload = is_upload(&method, &route);
    let started = Instant::now();
    let resp = next.run(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16().to_string();
    metrics::counter!("filedock_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("filedock_http_request_duration_seconds", "method" => method.to_string(), "route" => route.clone())
        .record(seconds);
    if let Some(n) = bytes_in {
        metrics::counter!("filedock_http_request_bytes_total", "route" => route.clone()).increment(n);
    }
    if let Some(n) = declared_length(resp.headers()) {
        metrics::counter!("filedock_http_response_bytes_total", "route" => route.clone()).increment(n);
    }
    if upload {
        metrics::histogram!("filedock_upload_duration_seconds", "route" => route, "status" => status).record(seconds);
    }
    resp
}
