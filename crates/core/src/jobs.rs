//! Background jobs under one supervisor: the sweeper, webhook deliveries, the start-up scan, the
//! identity check. Nothing outside a request may stop requests, and no job may die silently:
//! each run is its own task, so a panic is caught like an error; both are counted
//! (`filedock_job_failures_total{job, kind}`), logged, and the job runs again after a backoff
//! that doubles up to [`MAX_BACKOFF`]. `/readyz` names a job that has not completed a run within
//! its `stale_after` ([`Supervisor::problems`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;

/// Counts what a sweep removed, as it goes (`filedock_swept_total{kind}`), so a long sweep
/// shows its progress in `/metrics` while it runs.
pub(crate) fn swept(kind: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!("filedock_swept_total", "kind" => kind).increment(n as u64);
    }
}

/// The longest wait before a failed job runs again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How a job runs.
#[derive(Debug, Clone, Copy)]
pub struct JobSpec {
    /// Its name in logs, metrics and `/readyz`.
    pub name: &'static str,
    /// The pause after a successful run (and the first backoff after a failed one).
    pub every: Duration,
    /// A job that has not completed a run for this long is reported by [`Supervisor::problems`].
    pub stale_after: Duration,
    /// Done after its first successful run (the start-up scan).
    pub once: bool,
}

#[derive(Debug, Clone)]
struct Health {
    started: Instant,
    last_ok: Option<Instant>,
    stale_after: Duration,
    done: bool,
    last_error: Option<String>,
}

/// The jobs of one instance and how they fare.
#[derive(Debug, Default)]
pub struct Supervisor {
    jobs: Mutex<BTreeMap<&'static str, Health>>,
}

impl Supervisor {
    fn update(&self, name: &'static str, f: impl FnOnce(&mut Health)) {
        let mut jobs = match self.jobs.lock() {
            Ok(j) => j,
            Err(p) => p.into_inner(),
        };
        if let Some(h) = jobs.get_mut(name) {
            f(h);
        }
    }

    /// Runs `run` for ever (or, with `once`, until it succeeds) on the runtime, as described in
    /// the module doc. Abort the handle to stop it.
    pub fn spawn<F, Fut>(self: &Arc<Self>, spec: JobSpec, run: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        {
            let mut jobs = match self.jobs.lock() {
                Ok(j) => j,
                Err(p) => p.into_inner(),
            };
            jobs.insert(
                spec.name,
                Health {
                    started: Instant::now(),
                    last_ok: None,
                    stale_after: spec.stale_after,
                    done: false,
                    last_error: None,
                },
            );
        }
        let me = self.clone();
        tokio::spawn(async move {
            let first_backoff = spec.every.max(Duration::from_millis(100));
            let mut backoff = first_backoff;
            loop {
                let failure = match tokio::spawn(run()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(("error", e.to_string())),
                    Err(joined) if joined.is_panic() => Some(("panic", panic_text(joined.into_panic()))),
                    // Cancelled: the runtime is shutting down.
                    Err(_) => return,
                };
                match failure {
                    None => {
                        metrics::counter!("filedock_job_runs_total", "job" => spec.name).increment(1);
                        me.update(spec.name, |h| {
                            h.last_ok = Some(Instant::now());
                            h.last_error = None;
                            h.done = spec.once;
                        });
                        if spec.once {
                            return;
                        }
                        backoff = first_backoff;
                        tokio::time::sleep(spec.every).await;
                    }
                    Some((kind, why)) => {
                        metrics::counter!("filedock_job_failures_total", "job" => spec.name, "kind" => kind)
                            .increment(1);
                        tracing::warn!(job = spec.name, kind, error = %why, retry_in_ms = backoff.as_millis() as u64,
                            "a background job failed; it runs again after a pause");
                        me.update(spec.name, |h| h.last_error = Some(why));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        })
    }

    /// Jobs that have not completed a run within their `stale_after`, each with its last error.
    pub fn problems(&self) -> Vec<String> {
        let jobs = match self.jobs.lock() {
            Ok(j) => j,
            Err(p) => p.into_inner(),
        };
        let now = Instant::now();
        jobs.iter()
            .filter(|(_, h)| !h.done && now.duration_since(h.last_ok.unwrap_or(h.started)) > h.stale_after)
            .map(|(name, h)| match &h.last_error {
                Some(e) => format!("background job '{name}' has not completed a run recently (last error: {e})"),
                None => format!("background job '{name}' has not completed a run recently"),
            })
            .collect()
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::Error;

    fn spec(name: &'static str, once: bool) -> JobSpec {
        JobSpec {
            name,
            every: Duration::from_millis(10),
            stale_after: Duration::from_millis(200),
            once,
        }
    }

    #[tokio::test]
    async fn a_job_that_panics_or_fails_runs_again() {
        let sup = Arc::new(Supervisor::default());
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let handle = sup.spawn(spec("flaky", true), move || {
            let r = r.clone();
            async move {
                match r.fetch_add(1, Ordering::SeqCst) {
                    0 => panic!("the first run panics"),
                    1 => Err(Error::Unavailable("the second run fails".into())),
                    _ => Ok(()),
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("the job finished")
            .expect("the supervisor did not panic");
        assert_eq!(runs.load(Ordering::SeqCst), 3, "ran after a panic and after an error");
        assert!(sup.problems().is_empty(), "{:?}", sup.problems());
    }

    #[tokio::test]
    async fn a_job_that_never_completes_is_reported_stale() {
        let sup = Arc::new(Supervisor::default());
        let spec = JobSpec {
            stale_after: Duration::from_secs(1),
            ..spec("broken", false)
        };
        let handle = sup.spawn(spec, || async {
            Err(Error::Unavailable("the catalog does not answer".into()))
        });
        assert!(sup.problems().is_empty(), "not stale before its time");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let problems = sup.problems();
        handle.abort();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("'broken'") && problems[0].contains("does not answer"),
            "{problems:?}"
        );
    }
}
