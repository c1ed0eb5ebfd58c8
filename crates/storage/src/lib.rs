//! filedock-storage: the blob stores — local disk and S3-compatible — and how config
//! turns into a [`filedock_core::Backend`]. Stores only keep bytes; hashing, limits and types are
//! core's business.

pub mod clamav;
pub mod http_scanner;
pub mod local;
mod parts;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use filedock_core::link::SelfServed;
#[cfg(feature = "testing")]
use filedock_core::memory::MemoryBlobStore;
use filedock_core::{Backend, Error, Result, UrlSigner};
use serde::{Deserialize, Serialize};

pub use clamav::{ClamAv, ClamdAddress};
pub use http_scanner::HttpScanner;
pub use local::LocalStore;
pub use s3::{CreateOnly, S3Config, S3Store, Secret};

/// Which store, and its own settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreConfig {
    /// Files on local disk, served by filedock's signed URLs.
    Local {
        /// Directory of the blobs; default `<data_dir>/blobs/<backend name>`.
        #[serde(default)]
        path: Option<PathBuf>,
    },
    /// An S3-compatible bucket; presigned URLs point straight at it.
    S3(S3Config),
    /// In memory (tests only: nothing survives a restart; not in production builds).
    #[cfg(feature = "testing")]
    Memory,
}

/// One configured backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendConfig {
    #[serde(flatten)]
    pub store: StoreConfig,
    /// Scheme of `path` references to its files (default: the backend's name, lowercased).
    #[serde(default)]
    pub scheme: Option<String>,
    /// Host part of `path` references (default: the public URL's host).
    #[serde(default)]
    pub host: Option<String>,
    /// Regions a client may name (TokenOps' `region`); empty: none may be named.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Longest TTL of a presigned URL, in seconds (default 7 days, SigV4's limit).
    #[serde(default)]
    pub max_presign_ttl_secs: Option<u64>,
    /// No longer a choice, accepted so that older configurations still load: every upload
    /// whose bytes did not stream through filedock is read back whole at completion, for its
    /// SHA-256 and its content checks (a warning says so when this is `false`).
    #[serde(default)]
    pub hash_direct_uploads: Option<bool>,
}

impl BackendConfig {
    /// The embedded default: local disk under the data dir.
    pub fn local() -> Self {
        BackendConfig {
            store: StoreConfig::Local { path: None },
            scheme: None,
            host: None,
            regions: vec![],
            max_presign_ttl_secs: None,
            hash_direct_uploads: None,
        }
    }
}

/// What opening a store needs from the rest of the configuration.
#[derive(Debug, Clone)]
pub struct OpenContext {
    pub data_dir: PathBuf,
    /// filedock's public base URL (self-served stores' presigned URLs point here).
    pub public_url: String,
    pub signer: Arc<UrlSigner>,
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// Opens a configured backend (for the local store this also removes temp files a crash left).
pub async fn open(name: &str, cfg: &BackendConfig, ctx: &OpenContext) -> Result<Backend> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(format!(
            "backend name '{name}' must be letters, digits, '-' or '_'"
        )));
    }
    let signing = SelfServed {
        base_url: ctx.public_url.clone(),
        backend: name.to_owned(),
        signer: ctx.signer.clone(),
    };
    if cfg.hash_direct_uploads == Some(false) {
        tracing::warn!(
            backend = name,
            "hash_direct_uploads = false is ignored: every file's SHA-256 is recorded"
        );
    }
    let (store, default_host): (Arc<dyn filedock_core::BlobStore>, String) = match &cfg.store {
        StoreConfig::Local { path } => {
            let dir = path.clone().unwrap_or_else(|| default_local_dir(&ctx.data_dir, name));
            (
                Arc::new(LocalStore::open(&dir, Some(signing)).await?),
                host_of(&ctx.public_url),
            )
        }
        // `s3://<bucket>/<key>`, as the AWS tools write it.
        StoreConfig::S3(s3) => (Arc::new(S3Store::open(s3)?), s3.bucket.clone()),
        #[cfg(feature = "testing")]
        StoreConfig::Memory => (Arc::new(MemoryBlobStore::new(Some(signing))), host_of(&ctx.public_url)),
    };
    Ok(Backend {
        name: name.to_owned(),
        store,
        scheme: cfg.scheme.clone().unwrap_or_else(|| name.to_ascii_lowercase()),
        host: cfg.host.clone().unwrap_or(default_host),
        regions: cfg.regions.clone(),
        max_presign_ttl_secs: cfg.max_presign_ttl_secs.unwrap_or(7 * 86_400),
    })
}

/// Where a local backend keeps its files by default.
pub fn default_local_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("blobs").join(name)
}
