//! Per-project limits that keep one project from starving the others: a request rate, storage
//! quotas (bytes and files) and a cap on uploads in progress. Quotas are counted in the catalog.
//! The rate and the upload cap are counted by each instance in memory, each taking its share:
//! every instance says it is alive in the catalog every 2 s ([`Fleet`]), and with N alive each
//! enforces the limit divided by N, rounded up. A fleet behind a load balancer that spreads
//! requests evenly is held to the limit within N − 1 (the rounding); when instances come or go
//! the shares follow within ~12 s (a heartbeat, and the 10 s an instance is counted after its
//! last). A balancer that sends one project's requests to fewer instances than there are gives
//! that project less than its limit, never more.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ProjectId;

/// A project's limits. 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Sustained requests per second by the project's keys, per instance (429 beyond).
    pub requests_per_second: u32,
    /// Requests that may come at once above the sustained rate.
    pub burst: u32,
    /// Bytes of live files (ready, and pending ones as announced) the project may hold (507).
    pub max_bytes: u64,
    /// Live files the project may hold (507).
    pub max_files: u64,
    /// Uploads streaming through this instance at once for the project (429 beyond).
    pub max_concurrent_uploads: u32,
}

impl Default for Limits {
    /// No limit at all (what a library user gets; `filedock serve` has its own defaults).
    fn default() -> Self {
        Limits {
            requests_per_second: 0,
            burst: 0,
            max_bytes: 0,
            max_files: 0,
            max_concurrent_uploads: 0,
        }
    }
}

/// A project's own limits: each one set here replaces the deployment's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsOverride {
    pub requests_per_second: Option<u32>,
    pub burst: Option<u32>,
    pub max_bytes: Option<u64>,
    pub max_files: Option<u64>,
    pub max_concurrent_uploads: Option<u32>,
}

impl Limits {
    /// These limits with a project's overrides applied.
    pub fn with(self, o: &LimitsOverride) -> Limits {
        Limits {
            requests_per_second: o.requests_per_second.unwrap_or(self.requests_per_second),
            burst: o.burst.unwrap_or(self.burst),
            max_bytes: o.max_bytes.unwrap_or(self.max_bytes),
            max_files: o.max_files.unwrap_or(self.max_files),
            max_concurrent_uploads: o.max_concurrent_uploads.unwrap_or(self.max_concurrent_uploads),
        }
    }

    /// Checks a project's usage plus what a request would add against the quotas.
    pub fn check_quota(&self, usage: Usage, add_files: u64, add_bytes: u64) -> Result<()> {
        if self.max_files > 0 && usage.files.saturating_add(add_files) > self.max_files {
            return Err(Error::QuotaExceeded(format!(
                "the project holds {} files; its quota is {} files",
                usage.files, self.max_files
            )));
        }
        if self.max_bytes > 0 && usage.bytes.saturating_add(add_bytes) > self.max_bytes {
            return Err(Error::QuotaExceeded(format!(
                "the project holds {} bytes and this file adds {add_bytes}; its quota is {} bytes",
                usage.bytes, self.max_bytes
            )));
        }
        Ok(())
    }
}

/// What a project holds: live (not deleted, not expired) files and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub files: u64,
    pub bytes: u64,
}

/// How many instances share the catalog (at least 1), as the last heartbeat counted them.
#[derive(Debug)]
pub(crate) struct Fleet(std::sync::atomic::AtomicU32);

impl Default for Fleet {
    fn default() -> Self {
        Fleet(std::sync::atomic::AtomicU32::new(1))
    }
}

impl Fleet {
    pub(crate) fn size(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed).max(1)
    }

    pub(crate) fn set(&self, n: u32) {
        self.0.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }
}

/// One instance's share of a fleet-wide limit: `total / n` rounded up (0 stays 0: no limit).
fn share(total: u32, n: u32) -> u32 {
    if total == 0 { 0 } else { total.div_ceil(n.max(1)) }
}

impl Limits {
    /// What one of `n` instances enforces of these limits: its share of the rate, the burst
    /// and the upload cap (quotas are counted in the catalog, whole).
    pub fn shared(self, n: u32) -> Limits {
        Limits {
            requests_per_second: share(self.requests_per_second, n),
            burst: share(self.burst, n),
            max_concurrent_uploads: share(self.max_concurrent_uploads, n),
            ..self
        }
    }
}

/// A project's bucket and the (rate, burst) it was made for.
type Bucket = ((u32, u32), Arc<DefaultDirectRateLimiter>);

/// One token bucket per project (made again when the project's share changes).
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    buckets: Mutex<HashMap<ProjectId, Bucket>>,
}

impl RateLimits {
    /// Takes one request from the project's bucket.
    pub(crate) fn check(&self, project: &ProjectId, limits: &Limits) -> Result<()> {
        let Some(rate) = NonZeroU32::new(limits.requests_per_second) else {
            return Ok(());
        };
        let burst = NonZeroU32::new(limits.burst).unwrap_or(rate);
        let bucket = {
            let mut map = self
                .buckets
                .lock()
                .map_err(|_| Error::internal_msg("rate limiter poisoned"))?;
            let quota = (rate.get(), burst.get());
            let entry = map.entry(project.clone()).or_insert_with(|| {
                let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
                (quota, Arc::new(limiter))
            });
            if entry.0 != quota {
                *entry = (
                    quota,
                    Arc::new(RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))),
                );
            }
            entry.1.clone()
        };
        bucket.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            Error::RateLimited(
                format!("project '{project}' is over its rate of {rate} requests per second; retry shortly"),
                wait.as_secs().max(1),
            )
        })
    }
}

/// Uploads in progress per project.
#[derive(Debug, Default, Clone)]
pub(crate) struct UploadSlots {
    counts: Arc<Mutex<HashMap<ProjectId, u32>>>,
}

/// Held while an upload streams; frees its slot when dropped.
#[derive(Debug)]
pub struct UploadSlot {
    slots: Option<(UploadSlots, ProjectId)>,
}

impl UploadSlots {
    pub(crate) fn total(&self) -> u64 {
        self.counts
            .lock()
            .map(|m| m.values().map(|n| u64::from(*n)).sum())
            .unwrap_or(0)
    }

    pub(crate) fn count(&self, project: &ProjectId) -> u32 {
        self.counts
            .lock()
            .map(|m| m.get(project).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Counts an upload of `project` (always: it is the uploads-in-progress gauge too), refusing
    /// it if `max` (0: no cap) are in progress already.
    pub(crate) fn acquire(&self, project: &ProjectId, max: u32) -> Result<UploadSlot> {
        let mut map = self
            .counts
            .lock()
            .map_err(|_| Error::internal_msg("upload slots poisoned"))?;
        let n = map.entry(project.clone()).or_insert(0);
        if max > 0 && *n >= max {
            return Err(Error::RateLimited(
                format!("project '{project}' already has {max} uploads in progress; retry when one ends"),
                1,
            ));
        }
        *n += 1;
        Ok(UploadSlot {
            slots: Some((self.clone(), project.clone())),
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if let Some((slots, project)) = self.slots.take()
            && let Ok(mut map) = slots.counts.lock()
            && let Some(n) = map.get_mut(&project)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&project);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas() {
        let l = Limits {
            max_files: 2,
            max_bytes: 100,
            ..Limits::default()
        };
        assert!(l.check_quota(Usage { files: 1, bytes: 50 }, 1, 50).is_ok());
        assert!(matches!(
            l.check_quota(Usage { files: 2, bytes: 0 }, 1, 0),
            Err(Error::QuotaExceeded(_))
        ));
        assert!(matches!(
            l.check_quota(Usage { files: 0, bytes: 60 }, 1, 41),
            Err(Error::QuotaExceeded(_))
        ));
        assert!(
            Limits::default()
                .check_quota(
                    Usage {
                        files: u64::MAX,
                        bytes: u64::MAX
                    },
                    1,
                    1
                )
                .is_ok()
        );
    }

    #[test]
    fn overrides_replace_one_limit_at_a_time() {
        let base = Limits {
            requests_per_second: 10,
            max_files: 5,
            ..Limits::default()
        };
        let l = base.with(&LimitsOverride {
            max_files: Some(0),
            ..LimitsOverride::default()
        });
        assert_eq!((l.requests_per_second, l.max_files), (10, 0));
    }

    #[test]
    fn a_bucket_refuses_past_its_burst() {
        let r = RateLimits::default();
        let p = ProjectId::new("p").unwrap_or_else(|e| panic!("{e}"));
        let l = Limits {
            requests_per_second: 1,
            burst: 3,
            ..Limits::default()
        };
        for _ in 0..3 {
            assert!(r.check(&p, &l).is_ok());
        }
        let refused = (0..5).filter(|_| r.check(&p, &l).is_err()).count();
        assert!(refused >= 4, "at most one token refills during the test: {refused}");
        let other = ProjectId::new("q").unwrap_or_else(|e| panic!("{e}"));
        assert!(r.check(&other, &l).is_ok(), "buckets are per project");
    }

    #[test]
    fn each_instance_takes_its_share() {
        let l = Limits {
            requests_per_second: 100,
            burst: 10,
            max_concurrent_uploads: 4,
            max_files: 7,
            ..Limits::default()
        };
        let s = l.shared(3);
        assert_eq!(
            (s.requests_per_second, s.burst, s.max_concurrent_uploads, s.max_files),
            (34, 4, 2, 7)
        );
        assert_eq!(l.shared(1), l);
        assert_eq!(l.shared(200).requests_per_second, 1, "never 0, which means no limit");
        assert_eq!(Limits::default().shared(3), Limits::default());
        // A bucket follows its share.
        let r = RateLimits::default();
        let p = ProjectId::new("p").unwrap_or_else(|e| panic!("{e}"));
        let whole = Limits {
            requests_per_second: 1,
            burst: 2,
            ..Limits::default()
        };
        assert!(r.check(&p, &whole).is_ok() && r.check(&p, &whole).is_ok());
        assert!(r.check(&p, &whole).is_err());
        let more = Limits {
            requests_per_second: 1,
            burst: 3,
            ..Limits::default()
        };
        assert!(r.check(&p, &more).is_ok(), "a new share is a new bucket");
    }

    #[test]
    fn slots_are_freed_on_drop() {
        let s = UploadSlots::default();
        let p = ProjectId::new("p").unwrap_or_else(|e| panic!("{e}"));
        let a = s.acquire(&p, 2);
        let b = s.acquire(&p, 2);
        assert!(a.is_ok() && b.is_ok());
        assert!(matches!(s.acquire(&p, 2), Err(Error::RateLimited(_, _))));
        drop(a);
        assert!(s.acquire(&p, 2).is_ok());
    }
}
