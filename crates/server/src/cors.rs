//! CORS: browsers on other origins may call every route (`[cors]`, see [`CorsConfig`]).
//!
//! Preflights are answered here, before any route or key check. The request's headers are
//! mirrored (a `*` would not cover `Authorization`), and the answers' headers a browser app reads
//! are exposed: tus's, `Location`, `ETag` (multipart parts), ranges, the file id.

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

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
pub fn layer(config: &CorsConfig) -> Option<CorsLayer> {
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
    Some(
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
    )
}
