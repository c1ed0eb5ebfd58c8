//! The web page at `/`: sign in with a key, drop files (tus uploads with progress, pause and
//! resume), list, download, copy a link, delete. One HTML file with its script and styles,
//! compiled into the binary: no CDN, works offline. The page only calls the public API.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const INDEX: &str = include_str!("../assets/index.html");

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index))
}

/// `GET /`: the web upload page.
#[utoipa::path(get, path = "/", tag = "operations",
    responses((status = 200, description = "The web page", content((String = "text/html")))))]
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Signed download links must not leak to other sites through Referer.
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        INDEX,
    )
}
