//! filedock's configuration: defaults, then a TOML file (`--config`), then `FILEDOCK_*`
//! environment variables (nested keys with `__`, e.g. `FILEDOCK_CATALOG__TYPE`), then flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use filedock_catalog::CatalogConfig;
use filedock_core::files::Retention;
use filedock_core::limits::Limits;
use filedock_core::{DeliverySettings, ProjectSettings, PruneSettings, TaskSettings, UploadPolicy, Workflow};
use filedock_server::config::{CorsConfig, LinksConfig};
use filedock_server::dialects::DialectsConfig;
use filedock_storage::BackendConfig;
use serde::{Deserialize, Serialize};

/// Everything `filedock serve` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the embedded catalog, the local blobs and the signing secret.
    pub data_dir: PathBuf,
    /// The base URL clients reach filedock at; links and signed URLs point here.
    /// Default: `http://<listen>`.
    pub public_url: Option<String>,
    /// The backend used when a request names none.
    pub default_backend: String,
    /// Storage backends by name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// The record store.
    pub catalog: CatalogConfig,
    /// Upload policies by name (`native`, `tokenops`, `huawei`, `juniortree`, `cyberun`);
    /// merged over the defaults.
    pub policies: BTreeMap<String, UploadPolicy>,
    /// Settings of the vendor dialects.
    pub dialects: DialectsConfig,
    /// Which web pages (origins) may call filedock from a browser. Default: any.
    pub cors: CorsConfig,
    /// Whether stable links serve the bytes (default) or redirect to a presigned URL.
    pub links: LinksConfig,
    /// Upload from a URL: the address guard's allowlist and the timeouts.
    pub fetch: filedock_server::fetch::FetchConfig,
    /// Virus scanners by name (`[scanners.clamav]`), for policies with `scan = "<name>"`.
    pub scanners: BTreeMap<String, ScannerConfig>,
    /// How long an upload waits for its file's scan before it answers `quarantined`.
    pub wait_for_scan_secs: u64,
    /// How long a file waits to be scanned again after its scanner failed.
    pub scan_retry_secs: u64,
    /// TTL of presigned upload URLs, in seconds.
    pub upload_ttl_secs: u64,
    /// Default TTL of download links, in seconds.
    pub link_ttl_secs: u64,
    /// Longest TTL a client may ask a download link for, in seconds.
    pub max_link_ttl_secs: u64,
    /// How long each class of file is kept, in seconds (0: until deleted).
    pub retention: Retention,
    /// Per-project settings: `[projects.<id>.retention]` over `retention`, and
    /// `[[projects.<id>.webhooks]]`.
    pub projects: BTreeMap<String, ProjectSettings>,
    /// Workflows clients may run (`[[workflows]]`).
    pub workflows: Vec<Workflow>,
    /// Task leases and claims.
    pub tasks: TaskSettings,
    /// Webhook retries and timeouts.
    pub webhook_delivery: DeliverySettings,
    /// How long ended records (deliveries, tasks, deleted files' rows, uploads) are kept
    /// (`[prune]`).
    pub prune: PruneSettings,
    /// How long an unfinished multipart or tus upload is kept after its last activity before it
    /// is aborted and its parts deleted, in seconds.
    pub unfinished_upload_ttl_secs: u64,
    /// How often the sweeper looks for abandoned uploads, expired files and silent runners, in
    /// seconds.
    pub sweep_interval_secs: u64,
    /// File holding the secret that signs URLs (hex, at least 32 bytes). Created on first start.
    /// Default: `<data_dir>/signing.key`. Instances that share storage must share it.
    pub signing_secret_file: Option<PathBuf>,
    /// Log format: `text` or `json`.
    pub log_format: String,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Per-project limits: request rate, quotas, uploads in progress (each project may override
    /// them in `[projects.<id>.limits]`; 0 turns one off).
    pub limits: Limits,
    /// Seconds a client has to send a request's headers (also how long an idle connection stays).
    pub header_timeout_secs: u64,
    /// Seconds a request body may stall between two pieces before the request fails (408).
    pub body_timeout_secs: u64,
    /// Whether `serve` compares storage with the catalog at start and deletes orphan objects
    /// (see `filedock doctor`).
    pub startup_scan: bool,
    /// Age in seconds an orphan (an object no row owns, whose write is known to be over: its
    /// intent's instance is gone, or it has none) must reach before the start-up scan, the
    /// sweeper or `doctor --fix` deletes it. A margin only: uploads in flight record intents.
    pub orphan_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./filedock-data"),
            public_url: None,
            default_backend: "local".into(),
            backends: BTreeMap::from([("local".to_owned(), BackendConfig::local())]),
            catalog: CatalogConfig::default(),
            policies: filedock_server::dialects::default_policies(),
            dialects: DialectsConfig::default(),
            cors: CorsConfig::default(),
            links: LinksConfig::default(),
            fetch: Default::default(),
            scanners: BTreeMap::new(),
            wait_for_scan_secs: 10,
            scan_retry_secs: 10,
            upload_ttl_secs: 15 * 60,
            link_ttl_secs: 60 * 60,
            max_link_ttl_secs: 7 * 86_400,
            retention: Retention::default(),
            projects: BTreeMap::new(),
            workflows: Vec::new(),
            tasks: TaskSettings::default(),
            webhook_delivery: DeliverySettings::default(),
            prune: PruneSettings::default(),
            unfinished_upload_ttl_secs: 86_400,
            sweep_interval_secs: 60,
            signing_secret_file: None,
            log_format: "text".into(),
            shutdown_grace_secs: 30,
            limits: Limits {
                requests_per_second: 1000,
                burst: 2000,
                max_bytes: 0,
                max_files: 0,
                max_concurrent_uploads: 256,
            },
            header_timeout_secs: 30,
            body_timeout_secs: 60,
            startup_scan: true,
            orphan_grace_secs: 3600,
        }
    }
}

/// Values given as flags (only those set override).
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// Variables the client commands read, not server settings.
const CLIENT_ENV: &[&str] = &["config", "key", "server", "state_dir", "client_config", "admin_key"];

impl Config {
    /// Loads the layers in order.
    pub fn load(file: Option<&Path>, flags: FlagOverrides) -> anyhow::Result<Config> {
        // The defaults carry no backend: a config that names backends has exactly those (a
        // built-in `local` merged under an S3 deployment's config would take writes on one
        // instance's disk). With none named, the embedded `local` default is used.
        let mut fig = Figment::from(Serialized::defaults(Config {
            backends: BTreeMap::new(),
            ..Config::default()
        }));
        if let Some(f) = file {
            if !f.exists() {
                anyhow::bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig
            .merge(
                Env::prefixed("FILEDOCK_")
                    .split("__")
                    .filter(|k| !CLIENT_ENV.iter().any(|c| k.as_str().eq_ignore_ascii_case(c))),
            )
            .merge(Serialized::defaults(flags));
        let mut cfg: Config = fig.extract()?;
        if cfg.backends.is_empty() {
            cfg.backends = Config::default().backends;
        }
        if !cfg.backends.contains_key(&cfg.default_backend) {
            anyhow::bail!(
                "default_backend '{}' is not among the configured backends",
                cfg.default_backend
            );
        }
        Ok(cfg)
    }

    /// The public base URL, without a trailing slash.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::result_large_err, reason = "figment::Jail's closure signature")]
    fn configured_backends_replace_the_default() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s3.toml",
                "default_backend = \"s3\"\n[backends.s3]\ntype = \"s3\"\nbucket = \"b\"\n\
                 endpoint = \"http://127.0.0.1:9\"\naccess_key_id = \"k\"\n",
            )?;
            let cfg = Config::load(Some(Path::new("s3.toml")), FlagOverrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(
                cfg.backends.keys().collect::<Vec<_>>(),
                ["s3"],
                "no built-in local beside it"
            );
            let plain = Config::load(None, FlagOverrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(
                plain.backends.keys().collect::<Vec<_>>(),
                ["local"],
                "the embedded default"
            );
            Ok(())
        });
    }

    #[test]
    #[expect(clippy::result_large_err, reason = "figment::Jail's closure signature")]
    fn layers_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "f.toml",
                "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[policies.native]\nmax_size = 10\n",
            )?;
            jail.set_env("FILEDOCK_DATA_DIR", "/from/env");
            jail.set_env("FILEDOCK_KEY", "sk-not-a-config-value");
            let flags = FlagOverrides {
                public_url: Some("https://files.example".into()),
                ..Default::default()
            };
            let cfg = Config::load(Some(Path::new("f.toml")), flags).map_err(|e| e.to_string())?;
            assert_eq!(cfg.listen.port(), 9000);
            assert_eq!(cfg.data_dir, PathBuf::from("/from/env"));
            assert_eq!(cfg.public_url(), "https://files.example");
            assert_eq!(cfg.policies["native"].max_size, 10);
            assert_eq!(cfg.default_backend, "local");
            for dialect in ["native", "tokenops", "huawei", "juniortree", "cyberun"] {
                assert!(
                    cfg.policies.contains_key(dialect),
                    "the {dialect} policy is configured by default"
                );
            }
            assert_eq!(
                cfg.policies["huawei"].max_size,
                60 * 1024 * 1024,
                "a partial override keeps the other policies"
            );
            let over = FlagOverrides {
                data_dir: Some("/from/flag".into()),
                ..Default::default()
            };
            assert_eq!(
                Config::load(Some(Path::new("f.toml")), over)
                    .map_err(|e| e.to_string())?
                    .data_dir,
                PathBuf::from("/from/flag")
            );
            jail.create_file("bad.toml", "lisen = \"typo\"\n")?;
            assert!(
                Config::load(Some(Path::new("bad.toml")), FlagOverrides::default()).is_err(),
                "unknown keys are refused"
            );
            Ok(())
        });
    }
}

/// A scanner (`[scanners.<name>]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScannerConfig {
    /// `clamav` (clamd's INSTREAM) or `http` (a scanner that takes a signed POST).
    #[serde(rename = "type")]
    pub kind: String,
    /// clamd's address: `host:port`, or `unix:/path` (a socket).
    pub address: String,
    /// The HTTP scanner's URL.
    pub url: String,
    /// The HTTP scanner's signing secret (at least 16 bytes), as for webhooks.
    pub secret: String,
    /// The largest file scanned (clamd's `StreamMaxLength`, or less).
    pub max_bytes: u64,
    /// A file over `max_bytes`: `reject` (the default) or `accept` (ready, unscanned).
    pub too_large: String,
    /// Connecting, and each read or write (clamd) or the whole request (HTTP), in seconds.
    pub timeout_secs: u64,
}

impl std::fmt::Debug for ScannerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScannerConfig")
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("max_bytes", &self.max_bytes)
            .field("too_large", &self.too_large)
            .finish_non_exhaustive()
    }
}

impl Default for ScannerConfig {
    fn default() -> Self {
        ScannerConfig {
            kind: "clamav".into(),
            address: "127.0.0.1:3310".into(),
            url: String::new(),
            secret: String::new(),
            max_bytes: 25 * 1024 * 1024,
            too_large: "reject".into(),
            timeout_secs: 60,
        }
    }
}
