//! [`AppState`]: what every handler can reach.

use std::sync::Arc;

use filedock_core::FileService;

use crate::config::{DialectsConfig, HttpConfig};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub files: Arc<FileService>,
    pub dialects: Arc<DialectsConfig>,
    /// CORS and how stable links answer.
    pub http: Arc<HttpConfig>,
}
