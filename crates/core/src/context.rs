//! [`Context`]: what every capability of the service shares. The capabilities (files, uploads,
//! tasks, events, readiness) each hold it and own their own state; [`crate::FileService`] is the
//! facade over them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::{Credentials, Principal};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::link::UrlSigner;
use crate::model::{Class, FileRecord, ProjectId};
use crate::policy::UploadPolicy;
use crate::settings::{Backend, FileServiceConfig};

/// What every capability shares: the catalog, the backends, the clock, the settings, the keys
/// and the limits of this instance.
#[derive(Debug)]
pub struct Context {
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) credentials: Credentials,
    pub(crate) backends: BTreeMap<String, Backend>,
    pub(crate) signer: Arc<UrlSigner>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: FileServiceConfig,
    /// This instance's name in the catalog's leases.
    pub(crate) instance: String,
    pub(crate) rates: crate::limits::RateLimits,
    pub(crate) slots: crate::limits::UploadSlots,
    /// How many instances share the catalog (this one's share of the rate and upload cap).
    pub(crate) fleet: crate::limits::Fleet,
    pub(crate) jobs: Arc<crate::jobs::Supervisor>,
}

pub(crate) fn is_visible_to(rec: &FileRecord, who: &Principal) -> bool {
    rec.project == who.project && (who.workspace.is_none() || rec.workspace == who.workspace)
}

/// The leases that say an instance is alive: `instance:<name>`.
pub(crate) const INSTANCE_LEASE: &str = "instance:";
/// How long an instance counts after its last heartbeat, in ms (heartbeats come every 2 s).
pub const HEARTBEAT_TTL_MS: i64 = 10_000;

pub(crate) fn secs_to_ms(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX / 1000).saturating_mul(1000)
}

impl Context {
    /// The shared state over a catalog and its backends. Fails if the default backend or the
    /// `native` policy is missing.
    pub(crate) fn new(
        catalog: Arc<dyn Catalog>,
        backends: Vec<Backend>,
        signer: Arc<UrlSigner>,
        clock: Arc<dyn Clock>,
        config: FileServiceConfig,
    ) -> Result<Self> {
        let backends: BTreeMap<String, Backend> = backends.into_iter().map(|b| (b.name.clone(), b)).collect();
        if !backends.contains_key(&config.default_backend) {
            return Err(Error::invalid(format!(
                "default backend '{}' is not configured",
                config.default_backend
            )));
        }
        if !config.policies.contains_key("native") {
            return Err(Error::invalid("the 'native' upload policy is not configured"));
        }
        for (name, policy) in &config.policies {
            if let Some(scanner) = &policy.scan
                && !config.quarantine.scanners.contains_key(scanner)
            {
                return Err(Error::invalid(format!(
                    "[policies.{name}] scan = \"{scanner}\": no [scanners.{scanner}] is configured"
                )));
            }
        }
        for (project, settings) in &config.projects {
            ProjectId::new(project.clone()).map_err(|e| Error::invalid(format!("[projects.{project}]: {e}")))?;
            if let Some(scanner) = &settings.scan
                && !config.quarantine.scanners.contains_key(scanner)
            {
                return Err(Error::invalid(format!(
                    "[projects.{project}] scan = \"{scanner}\": no [scanners.{scanner}] is configured"
                )));
            }
            for hook in &settings.webhooks {
                hook.validate()?;
            }
        }
        let credentials = Credentials::new(catalog.clone(), clock.clone());
        Ok(Context {
            catalog,
            credentials,
            backends,
            signer,
            clock,
            config,
            instance: hex::encode(crate::auth::random_bytes::<8>()?),
            rates: Default::default(),
            slots: Default::default(),
            fleet: Default::default(),
            jobs: Default::default(),
        })
    }

    /// Every configured backend, by name.
    pub fn backends(&self) -> impl Iterator<Item = (&str, &Backend)> {
        self.backends.iter().map(|(n, b)| (n.as_str(), b))
    }

    /// The clock the service decides expiry by.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &FileServiceConfig {
        &self.config
    }

    /// A backend by name (case-insensitive), or the default.
    pub fn backend(&self, name: Option<&str>) -> Result<&Backend> {
        let name = name.unwrap_or(&self.config.default_backend);
        self.backends
            .get(name)
            .or_else(|| self.backends.values().find(|b| b.name.eq_ignore_ascii_case(name)))
            .ok_or_else(|| Error::invalid(format!("unknown storage backend '{name}'")))
    }

    /// A policy by name.
    pub fn policy(&self, name: &str) -> Result<&UploadPolicy> {
        self.config
            .policies
            .get(name)
            .ok_or_else(|| Error::internal_msg(format!("upload policy '{name}' is not configured")))
    }

    /// Finds the principal of a presented bearer token.
    /// The principal a token stands for, if its project is within its request rate.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let who = self.credentials.authenticate(token).await?;
        self.admit(&who.project)?;
        Ok(who)
    }

    /// Takes one request from the project's share of its rate limit.
    pub fn admit(&self, project: &ProjectId) -> Result<()> {
        let limits = self.limits(project).shared(self.fleet.size());
        self.rates.check(project, &limits)
    }

    /// The scanner a file of `project` under `policy` waits for: the project's, else the
    /// policy's.
    pub fn scanner_for<'a>(&'a self, project: &ProjectId, policy: &'a crate::policy::UploadPolicy) -> Option<&'a str> {
        self.config
            .projects
            .get(project.as_str())
            .and_then(|p| p.scan.as_deref())
            .or(policy.scan.as_deref())
    }

    /// A project's limits: the deployment's with the project's overrides.
    pub fn limits(&self, project: &ProjectId) -> crate::limits::Limits {
        match self.config.projects.get(project.as_str()) {
            Some(p) => self.config.limits.with(&p.limits),
            None => self.config.limits,
        }
    }

    /// Fails with [`Error::QuotaExceeded`] if one more file of `add_bytes` would take the project
    /// over its quota. Asks the catalog only when the project has a quota.
    pub async fn check_quota(&self, project: &ProjectId, add_bytes: u64) -> Result<()> {
        self.check_quota_with(project, 1, add_bytes).await
    }

    /// [`FileService::check_quota`] for `add_files` more files (0 when a counted upload grows).
    pub(crate) async fn check_quota_with(&self, project: &ProjectId, add_files: u64, add_bytes: u64) -> Result<()> {
        let limits = self.limits(project);
        if limits.max_files == 0 && limits.max_bytes == 0 {
            return Ok(());
        }
        let usage = self.catalog.usage(project, self.clock.now()).await?;
        limits.check_quota(usage, add_files, add_bytes)
    }

    /// Uploads streaming through this instance now, every project together.
    pub fn uploads_in_progress_total(&self) -> u64 {
        self.slots.total()
    }

    /// The supervisor of this instance's background jobs.
    pub fn jobs(&self) -> &Arc<crate::jobs::Supervisor> {
        &self.jobs
    }

    /// Uploads of a project streaming through this instance now.
    pub fn uploads_in_progress(&self, project: &ProjectId) -> u32 {
        self.slots.count(project)
    }

    /// A slot for an upload streaming through this instance, freed when dropped.
    pub fn upload_slot(&self, project: &ProjectId) -> Result<crate::limits::UploadSlot> {
        let limits = self.limits(project).shared(self.fleet.size());
        self.slots.acquire(project, limits.max_concurrent_uploads)
    }

    /// Says in the catalog that this instance is alive (for [`HEARTBEAT_TTL_MS`]) and counts
    /// the instances alive: each then takes its share of the fleet-wide limits. Returns the
    /// count.
    pub async fn heartbeat(&self) -> Result<u32> {
        let now = self.clock.now();
        let name = format!("{INSTANCE_LEASE}{}", self.instance);
        self.catalog
            .try_lease(&name, &self.instance, now, now + HEARTBEAT_TTL_MS)
            .await?;
        let n = self.catalog.live_leases(INSTANCE_LEASE, now).await?.max(1);
        self.fleet.set(n);
        Ok(n)
    }

    /// The credential operations.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// How long a project keeps a class: its own setting, else the deployment's (`None`: until
    /// deleted).
    pub fn retention_secs(&self, project: &ProjectId, class: Class) -> Option<u64> {
        let own = self.config.projects.get(project.as_str()).and_then(|p| match class {
            Class::Input => p.retention.input_secs,
            Class::Output => p.retention.output_secs,
            Class::Asset => p.retention.asset_secs,
        });
        match own {
            Some(0) => None,
            Some(s) => Some(s),
            None => self.config.retention.secs(class),
        }
    }
}
