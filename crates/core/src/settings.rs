//! The service's settings, as the config file gives them: backends, retention, projects, and
//! the settings of tasks and webhook deliveries. Types only; nothing here acts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::blob::BlobStore;
use crate::event_shapes::Webhook;
use crate::model::Class;
use crate::policy::UploadPolicy;

const DAY_SECS: u64 = 86_400;

/// A configured storage target.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The name files record and clients pick (`local`, `cos`, …).
    pub name: String,
    pub store: Arc<dyn BlobStore>,
    /// Scheme of `path` references to its files (`local`, `cos`, `s3`, `gs`).
    pub scheme: String,
    /// Host part of `path` references (the bucket host).
    pub host: String,
    /// Regions a client may name; empty means none may be named.
    pub regions: Vec<String>,
    /// Longest TTL of a URL this backend presigns, in seconds.
    pub max_presign_ttl_secs: u64,
}

/// How long each class is kept, in seconds (`None` or 0: until deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Default 1 day.
    pub input_secs: Option<u64>,
    /// Default 7 days.
    pub output_secs: Option<u64>,
    /// Default: kept until deleted.
    pub asset_secs: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            input_secs: Some(DAY_SECS),
            output_secs: Some(7 * DAY_SECS),
            asset_secs: None,
        }
    }
}

impl Retention {
    /// The TTL of a class: `None` when it is kept until deleted.
    pub fn secs(&self, class: Class) -> Option<u64> {
        match class {
            Class::Input => self.input_secs,
            Class::Output => self.output_secs,
            Class::Asset => self.asset_secs,
        }
        .filter(|s| *s > 0)
    }
}

/// A project's own retention: each class set here replaces the deployment's (0: until
/// deleted); a class left out keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionOverride {
    pub input_secs: Option<u64>,
    pub output_secs: Option<u64>,
    pub asset_secs: Option<u64>,
}

/// Settings of one project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettings {
    #[serde(default)]
    pub retention: RetentionOverride,
    /// Receivers of the project's events.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// The project's own limits over the deployment's.
    #[serde(default)]
    pub limits: crate::limits::LimitsOverride,
    /// The scanner every file of the project waits for, whatever its policy says
    /// (`[projects.<id>] scan = "clamav"`).
    #[serde(default)]
    pub scan: Option<String>,
}

/// The service's settings.
#[derive(Debug, Clone)]
pub struct FileServiceConfig {
    /// The backend used when a request names none.
    pub default_backend: String,
    /// Upload policies by name; each way in names one. `native` must exist.
    pub policies: BTreeMap<String, UploadPolicy>,
    /// TTL of presigned upload URLs, in seconds.
    pub upload_ttl_secs: u64,
    /// Default TTL of download links, in seconds.
    pub link_ttl_secs: u64,
    /// Longest TTL a client may ask for a link, in seconds.
    pub max_link_ttl_secs: u64,
    pub retention: Retention,
    /// How long an unfinished multipart or tus upload is kept after its last activity before it
    /// is aborted and its parts deleted, in seconds.
    pub unfinished_upload_ttl_secs: u64,
    /// filedock's public base URL, without a trailing slash (stable links point here).
    pub public_url: String,
    /// Per-project settings (retention, webhooks), by project id.
    pub projects: BTreeMap<String, ProjectSettings>,
    /// The workflows clients may run.
    pub workflows: Vec<crate::workflow::Workflow>,
    pub tasks: TaskSettings,
    pub deliveries: DeliverySettings,
    /// How long finished records are kept before they are pruned.
    pub prune: PruneSettings,
    /// Rate, quotas and concurrent uploads per project (each project may override them).
    pub limits: crate::limits::Limits,
    /// The scanners policies name (`scan = "…"`) and how files wait for them.
    pub quarantine: QuarantineSettings,
}

/// A configured scanner: its engine and what a file over the engine's limit becomes.
#[derive(Debug, Clone)]
pub struct ScannerSetup {
    pub engine: std::sync::Arc<dyn crate::scan::Scanner>,
    /// A file over the engine's limit is made ready unscanned (`too_large = "accept"`) instead
    /// of rejected (the default).
    pub accept_too_large: bool,
}

/// Scanners and how uploads wait for them.
#[derive(Debug, Clone)]
pub struct QuarantineSettings {
    pub scanners: BTreeMap<String, ScannerSetup>,
    /// How long an upload waits for its file's verdict before it answers with the file
    /// `quarantined` (`wait_for_scan_secs`; 0: never waits). Default 10 s.
    pub wait_secs: u64,
    /// How long a file waits before it is scanned again after its scanner failed. Default 10 s.
    pub retry_secs: u64,
}

impl Default for QuarantineSettings {
    fn default() -> Self {
        QuarantineSettings {
            scanners: BTreeMap::new(),
            wait_secs: 10,
            retry_secs: 10,
        }
    }
}

/// How tasks are leased and handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskSettings {
    /// How long a claim holds without a heartbeat. Default 300 s.
    pub lease_secs: u64,
    /// Claims before a task whose runners keep going silent is failed. Default 3.
    pub max_attempts: u32,
    /// The longest a claim may wait for a task. Default 30 s.
    pub max_claim_wait_secs: u64,
    /// TTL of the download URLs of a claimed task's input files. Default 900 s.
    pub input_url_ttl_secs: u64,
}

impl Default for TaskSettings {
    fn default() -> Self {
        TaskSettings {
            lease_secs: 300,
            max_attempts: 3,
            max_claim_wait_secs: 30,
            input_url_ttl_secs: 900,
        }
    }
}

/// How long records that have ended are kept before the sweeper prunes them, in seconds (0:
/// for ever). Live records are never pruned: a pending or retried delivery, a queued or running
/// task, a file that is not deleted, an active upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneSettings {
    /// Delivered and failed deliveries, after they were made. Default 7 days.
    pub deliveries_secs: u64,
    /// Succeeded and failed tasks, after they finished. Default 30 days.
    pub tasks_secs: u64,
    /// Rows of deleted files (tombstones: a deleted file's id answers 404, not 410, once its
    /// row is gone), after the delete. Default 30 days.
    pub tombstones_secs: u64,
    /// Completed and aborted uploads, after they expired. Default 7 days.
    pub uploads_secs: u64,
}

impl Default for PruneSettings {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        PruneSettings {
            deliveries_secs: 7 * DAY,
            tasks_secs: 30 * DAY,
            tombstones_secs: 30 * DAY,
            uploads_secs: 7 * DAY,
        }
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// The first retry's delay; each next one doubles it, up to an hour. Default 5 s.
    pub retry_base_secs: u64,
    /// Attempts before a delivery is given up (recorded as failed). Default 12 (about 3 hours).
    pub max_attempts: u32,
    /// How long one attempt may take. Default 10 s.
    pub timeout_secs: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_base_secs: 5,
            max_attempts: 12,
            timeout_secs: 10,
        }
    }
}
