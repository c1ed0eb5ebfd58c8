//! [`AppState`]: what every handler can reach.

use std::sync::Arc;

use filedock_core::FileService;

use crate::config::{DialectsConfig, HttpConfig};
use crate::fetch::Fetcher;

/// What every handler can reach: one shared value, so the per-request clones axum makes (an
/// extractor's, each middleware's) cost one reference count, not one per part (dropping those
/// clones was 1.4% of the server's CPU under creations).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub files: Arc<FileService>,
    pub dialects: Arc<DialectsConfig>,
    /// CORS, how stable links answer, fetches.
    pub http: Arc<HttpConfig>,
    /// Upload from a URL, behind the address guard.
    pub fetch: Arc<Fetcher>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The state of a server; refuses a malformed `[fetch] allow`.
    pub fn new(files: Arc<FileService>, dialects: DialectsConfig, http: HttpConfig) -> Result<AppState, String> {
        let fetch = Arc::new(Fetcher::new(http.fetch.clone())?);
        Ok(AppState(Arc::new(Shared {
            files,
            dialects: Arc::new(dialects),
            http: Arc::new(http),
            fetch,
        })))
    }
}
