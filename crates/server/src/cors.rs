//! CORS: browsers on other origins may call every route (`[cors]`, see [`CorsConfig`]).
//!
//! Preflights are answered here, before any route or key check. The request's headers are
//! mirrored (a `*` would not cover `Authorization`), and the answers' headers a browser app reads
//! are exposed: tus's, `Location`, `ETag` (multipart parts), ranges, the file id.

use std::task::{Context, Poll};

use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use futures_util::future::Either;
use tower::util::Oneshot;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowHeaders, AllowOrigin, Cors, CorsLayer};

use crate::config::CorsConfig;

/// Answer headers a browser app may read.
const EXPOSED: &[&str] = &[
    "location",
    "etag",
    "last-modified",
    "content-length",
    "content-range",
    "content-disposition",
    "accept-ranges",
    "retry-after",
    "x-request-id",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "upload-defer-length",
    "upload-concat",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "filedock-file-id",
];

/// The layer for a configuration, or `None` when no origin is allowed.
pub fn layer(config: &CorsConfig) -> Option<PreflightsOnly> {
    if config.allowed_origins.is_empty() {
        return None;
    }
    let origin = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(PreflightsOnly(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(EXPOSED.iter().map(|h| HeaderName::from_static(h)).collect::<Vec<_>>())
            .max_age(std::time::Duration::from_secs(config.max_age_secs)),
    ))
}

/// CORS, except that an `OPTIONS` that is not a preflight (no `Access-Control-Request-Method`)
/// reaches its route: tower-http's layer answers every `OPTIONS` itself, which would hide tus's
/// discovery (`OPTIONS /tus/` with `Tus-Version`, `Tus-Extension`, …).
#[derive(Debug, Clone)]
pub struct PreflightsOnly(CorsLayer);

impl<S: Clone> Layer<S> for PreflightsOnly {
    type Service = CorsOrRoute<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsOrRoute {
            cors: self.0.layer(inner.clone()),
            route: inner,
        }
    }
}

/// See [`PreflightsOnly`].
#[derive(Debug, Clone)]
pub struct CorsOrRoute<S> {
    cors: Cors<S>,
    route: S,
}

impl<S, B, R> Service<Request<B>> for CorsOrRoute<S>
where
    S: Service<Request<B>, Response = axum::http::Response<R>> + Clone,
    R: Default,
{
    type Response = axum::http::Response<R>;
    type Error = S::Error;
    type Future = Either<Oneshot<Cors<S>, Request<B>>, Oneshot<S, Request<B>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call drives a clone of the service it picks through its own readiness.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let plain_options =
            req.method() == Method::OPTIONS && !req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if plain_options {
            Either::Right(self.route.clone().oneshot(req))
        } else {
            Either::Left(self.cors.clone().oneshot(req))
        }
    }
}
