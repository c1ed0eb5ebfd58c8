//! [`AppState`]: what every handler can reach.

use std::sync::Arc;

use filedock_core::FileService;

use crate::config::{DialectsConfig, HttpConfig};
use crate::fetch::Fetcher;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub files: Arc<FileService>,
    pub dialects: Arc<DialectsConfig>,
    /// CORS, how stable links answer, fetches.
    pub http: Arc<HttpConfig>,
    /// Upload from a URL, behind the address guard.
    pub fetch: Arc<Fetcher>,
}

impl AppState {
    /// The state of a server; refuses a malformed `[fetch] allow`.
    pub fn new(files: Arc<FileService>, dialects: DialectsConfig, http: HttpConfig) -> Result<AppState, String> {
        let fetch = Arc::new(Fetcher::new(http.fetch.clone())?);
        Ok(AppState {
            files,
            dialects: Arc::new(dialects),
            http: Arc::new(http),
            fetch,
        })
    }
}
