//! filedock-catalog: the record stores — SQLite (the embedded default) and PostgreSQL — with
//! their migrations, and how config turns into an `Arc<dyn Catalog>`.

mod batch;
mod change;
mod direct;
mod engine;
mod listen;
mod pg_batch;
pub mod postgres;
mod queue;
mod rows;
mod sql;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use filedock_core::{Catalog, Result};
use serde::{Deserialize, Serialize};

pub use postgres::PgCatalog;
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
    /// PostgreSQL, shared by several instances.
    Postgres {
        /// `postgres://user:password@host:5432/db` (a secret: set it with
        /// `FILEDOCK_CATALOG__URL`, or `url_file`).
        #[serde(default)]
        url: Option<DbUrl>,
        /// A file holding the URL.
        #[serde(default)]
        url_file: Option<PathBuf>,
        /// Connections per instance (default 10).
        #[serde(default)]
        pool_size: Option<u32>,
    },
}

/// A database URL that never appears in `Debug` output (it may hold a password).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DbUrl(pub String);

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbUrl(..)")
    }
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
        CatalogConfig::Postgres {
            url,
            url_file,
            pool_size,
        } => {
            let url = match (url, url_file) {
                (Some(u), _) => u.0.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map(|s| s.trim().to_owned())
                    .map_err(|e| filedock_core::Error::invalid(format!("cannot read url_file {}: {e}", f.display())))?,
                (None, None) => {
                    return Err(filedock_core::Error::invalid(
                        "the postgres catalog needs url or url_file",
                    ));
                }
            };
            Ok(Arc::new(PgCatalog::open(&url, pool_size.unwrap_or(10)).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    /// Both catalogs carry the same migrations, version for version.
    #[test]
    fn migration_lists_match() {
        let names = |dir: &str| {
            let mut v: Vec<String> = std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let (sqlite, postgres) = (names("migrations/sqlite"), names("migrations/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
    }
}
