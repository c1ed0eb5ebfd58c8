//! `Idempotency-Key` on every `POST` (the requests that create something: uploads, presigns,
//! multipart initiate and complete, links, tus creation, from-url, the dialects' creating routes,
//! workflow runs). The rules are core's ([`filedock_core::idempotency`]); here a request is
//! named by its method and target, and its body by the SHA-256 of what the route read:
//! - the first request runs; a 2xx answer (status, headers, body) is kept for 24 h;
//! - a repeat of it gets that answer with `Idempotent-Replayed: true` and does nothing again;
//! - the key with another target, or another body, gets `422 idempotency_key_reused`;
//! - a repeat while the first runs gets `409 in_progress` with `Retry-After`.
//!
//! The key is scoped to the project of the request's credential (`Authorization: Bearer`,
//! Huawei's `X-Auth-Token`, or a trusted Juniortree `Agent`); a request without a valid one runs
//! as if it had no key, and its route answers the 401.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use filedock_core::idempotency::{Begun, Claim, Kept};
use filedock_core::{Error, FileService, ProjectId};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The header on a replayed answer.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The largest answer kept (creating routes answer small JSON documents).
const MAX_KEPT: usize = 1024 * 1024;

/// Answer headers that belong to one exchange, not to the answer: not kept.
const NOT_KEPT: [&str; 6] = [
    "date",
    "content-length",
    "transfer-encoding",
    "connection",
    "x-request-id",
    "vary",
];

/// The middleware (a route layer of the API).
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    // A new key's secret is shown once and stored only hashed: its answer is never kept.
    if req.uri().path().starts_with("/v1/admin/") {
        return ApiError(Error::invalid(
            "this route does not take an Idempotency-Key: its answer carries a secret filedock does not keep",
        ))
        .into_response();
    }
    let Ok(key) = key.to_str().map(str::to_owned) else {
        return ApiError(Error::invalid("the Idempotency-Key header is not text")).into_response();
    };
    let Some(project) = project_of(&state, req.headers()).await else {
        return next.run(req).await;
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let request = format!("{} {target}", req.method());
    match state.files.idempotency().begin(&project, &key, &request).await {
        Err(e) => ApiError(e).into_response(),
        Ok(Begun::Running(secs)) => ApiError(Error::InProgress(
            "the first request with this idempotency key is still running; retry".into(),
            secs,
        ))
        .into_response(),
        Ok(Begun::Replay(kept)) => replay(req, kept).await,
        Ok(Begun::Fresh(claim)) => run(state.files.clone(), claim, req, next).await,
    }
}

/// The project whose key the request carries, if it carries a valid one.
async fn project_of(state: &AppState, headers: &axum::http::HeaderMap) -> Option<ProjectId> {
    let token = crate::auth::bearer(headers).or_else(|| headers.get("x-auth-token").and_then(|v| v.to_str().ok()));
    match token {
        // Not `authenticate`: the route takes the request's share of the rate, once.
        Some(t) => state.files.credentials().authenticate(t).await.ok().map(|p| p.project),
        None => {
            let agent = headers.get("agent").and_then(|v| v.to_str().ok())?;
            let project = state.dialects.juniortree.trusted_agents.get(agent)?;
            ProjectId::new(project.clone()).ok()
        }
    }
}

/// Releases a claim if the request ends without keeping or releasing it (its future dropped).
struct Guard {
    files: Arc<FileService>,
    claim: Option<Claim>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let files = self.files.clone();
            rt.spawn(async move { files.idempotency().release(claim).await });
        }
    }
}

/// A body that hashes what the route reads of it; the digest is there once it was read whole.
fn hashing(body: Body) -> (Body, Arc<Mutex<Option<String>>>) {
    let digest = Arc::new(Mutex::new(None));
    let out = digest.clone();
    let stream = futures_util::stream::unfold(Some((body.into_data_stream(), Sha256::new())), move |state| {
        let out = out.clone();
        async move {
            let (mut inner, mut h) = state?;
            match inner.next().await {
                Some(Ok(b)) => {
                    h.update(&b);
                    Some((Ok(b), Some((inner, h))))
                }
                Some(Err(e)) => Some((Err(e), None)),
                None => {
                    if let Ok(mut d) = out.lock() {
                        *d = Some(hex::encode(h.finalize()));
                    }
                    None
                }
            }
        }
    });
    (Body::from_stream(stream), digest)
}

async fn run(files: Arc<FileService>, claim: Claim, req: Request, next: Next) -> Response {
    let mut guard = Guard {
        files: files.clone(),
        claim: Some(claim),
    };
    let (parts, body) = req.into_parts();
    let (body, digest) = hashing(body);
    let resp = next.run(Request::from_parts(parts, body)).await;
    let Some(claim) = guard.claim.take() else {
        return resp;
    };
    if !resp.status().is_success() {
        files.idempotency().release(claim).await;
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_KEPT).await {
        Ok(b) => b,
        Err(e) => {
            files.idempotency().release(claim).await;
            tracing::error!(error = %e, "an answer to keep for an idempotency key could not be read whole");
            return ApiError(Error::internal_msg("answer too large to keep")).into_response();
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(n, _)| !NOT_KEPT.contains(&n.as_str()) && !n.as_str().starts_with("access-control-"))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let kept = Kept {
        status: parts.status.as_u16(),
        headers,
        body: bytes.to_vec(),
        body_sha256: digest.lock().ok().and_then(|d| d.clone()),
    };
    files.idempotency().keep(claim, &kept).await;
    Response::from_parts(parts, Body::from(bytes))
}

async fn replay(req: Request, kept: Kept) -> Response {
    if let Some(first) = &kept.body_sha256 {
        let mut h = Sha256::new();
        let mut body = req.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => h.update(&b),
                Err(_) => return ApiError(Error::Timeout("the request body broke off".into())).into_response(),
            }
        }
        if hex::encode(h.finalize()) != *first {
            return ApiError(Error::IdempotencyMismatch(
                "this idempotency key was used with another body; use a new key".into(),
            ))
            .into_response();
        }
    }
    let mut resp = Response::new(Body::from(kept.body));
    *resp.status_mut() = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
    for (n, v) in &kept.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(n.as_str()), HeaderValue::from_str(v)) {
            resp.headers_mut().append(n, v);
        }
    }
    resp.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    resp
}
