//! Turning a [`Config`] into running parts: catalog, signer, backends, the file service.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use filedock_core::files::FileServiceConfig;
use filedock_core::{Catalog, Clock, Credentials, FileService, SystemClock, UrlSigner};
use filedock_storage::OpenContext;

use crate::config::Config;

/// Opens the catalog only (enough for the `keys` commands, safe beside a running server).
pub async fn catalog(cfg: &Config) -> anyhow::Result<Arc<dyn Catalog>> {
    filedock_catalog::open(&cfg.catalog, &cfg.data_dir)
        .await
        .context("opening the catalog")
}

/// The credential operations over the configured catalog.
pub async fn credentials(cfg: &Config) -> anyhow::Result<Credentials> {
    Ok(Credentials::new(catalog(cfg).await?, Arc::new(SystemClock)))
}

/// Reads the signing secret, creating it (0600) on first start.
pub fn signing_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            let secret = hex::encode(filedock_core::auth::random_bytes::<32>()?);
            f.write_all(secret.as_bytes())?;
            f.sync_all()?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secret = hex::decode(text.trim()).with_context(|| format!("{} must hold hex", path.display()))?;
    anyhow::ensure!(secret.len() >= 32, "{} must hold at least 32 bytes", path.display());
    Ok(secret)
}

/// Opens everything `serve` needs.
pub async fn file_service(cfg: &Config) -> anyhow::Result<FileService> {
    let catalog = catalog(cfg).await?;
    let secret_path = cfg
        .signing_secret_file
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("signing.key"));
    let signer = Arc::new(UrlSigner::new(signing_secret(&secret_path)?)?);
    let ctx = OpenContext {
        data_dir: cfg.data_dir.clone(),
        public_url: cfg.public_url(),
        signer: signer.clone(),
    };
    let mut backends = Vec::new();
    for (name, b) in &cfg.backends {
        backends.push(
            filedock_storage::open(name, b, &ctx)
                .await
                .with_context(|| format!("opening backend '{name}'"))?,
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let fs_cfg = FileServiceConfig {
        default_backend: cfg.default_backend.clone(),
        policies: cfg.policies.clone(),
        upload_ttl_secs: cfg.upload_ttl_secs,
        link_ttl_secs: cfg.link_ttl_secs,
        max_link_ttl_secs: cfg.max_link_ttl_secs,
        retention: cfg.retention,
        unfinished_upload_ttl_secs: cfg.unfinished_upload_ttl_secs,
        public_url: cfg.public_url(),
        projects: cfg.projects.clone(),
        workflows: cfg.workflows.clone(),
        tasks: cfg.tasks,
        deliveries: cfg.webhook_delivery,
        prune: cfg.prune,
        limits: cfg.limits,
        quarantine: quarantine(cfg)?,
    };
    Ok(FileService::new(catalog, backends, signer, clock, fs_cfg)?)
}

/// The scanners of `[scanners.*]`, and how uploads wait for them.
fn quarantine(cfg: &Config) -> anyhow::Result<filedock_core::settings::QuarantineSettings> {
    let mut scanners = std::collections::BTreeMap::new();
    for (name, s) in &cfg.scanners {
        let engine: Arc<dyn filedock_core::scan::Scanner> = match s.kind.as_str() {
            "clamav" => Arc::new(filedock_storage::ClamAv::new(
                filedock_storage::ClamdAddress::parse(&s.address),
                s.max_bytes,
                std::time::Duration::from_secs(s.timeout_secs.max(1)),
            )),
            "http" => Arc::new(
                filedock_storage::HttpScanner::new(
                    s.url.clone(),
                    s.secret.as_bytes().to_vec(),
                    s.max_bytes,
                    std::time::Duration::from_secs(s.timeout_secs.max(1)),
                )
                .map_err(|e| anyhow::anyhow!("[scanners.{name}]: {e}"))?,
            ),
            other => anyhow::bail!("[scanners.{name}] type = \"{other}\": \"clamav\" or \"http\""),
        };
        let accept_too_large = match s.too_large.as_str() {
            "reject" => false,
            "accept" => true,
            other => anyhow::bail!("[scanners.{name}] too_large = \"{other}\": \"reject\" or \"accept\""),
        };
        scanners.insert(
            name.clone(),
            filedock_core::settings::ScannerSetup {
                engine,
                accept_too_large,
            },
        );
    }
    Ok(filedock_core::settings::QuarantineSettings {
        scanners,
        wait_secs: cfg.wait_for_scan_secs,
        retry_secs: cfg.scan_retry_secs,
    })
}
