//! filedock-catalog: the record stores — SQLite (embedded default) now, PostgreSQL later — with
//! their migrations, and how config turns into an `Arc<dyn Catalog>`.

pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use filedock_core::{Catalog, Result};
use serde::{Deserialize, Serialize};

pub use sqlite::SqliteCatalog;

/// Which catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum CatalogConfig {
    /// A SQLite file (WAL); default `<data_dir>/filedock.db`.
    Sqlite {
        #[serde(default)]
        path: Option<PathBuf>,
    },
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig::Sqlite { path: None }
    }
}

/// Opens the configured catalog and brings its schema up to date.
pub async fn open(cfg: &CatalogConfig, data_dir: &Path) -> Result<Arc<dyn Catalog>> {
    match cfg {
        CatalogConfig::Sqlite { path } => {
            let path = path.clone().unwrap_or_else(|| data_dir.join("filedock.db"));
            Ok(Arc::new(SqliteCatalog::open(&path).await?))
        }
    }
}
