//! Idempotent retries: a request that creates something may carry a key; the first such request
//! in a project runs and, if it succeeds, its answer is kept for [`KEEP_MS`]. A repeat of the
//! same request gets the kept answer and does nothing again; the same key with a different
//! request is refused; a repeat while the first still runs is told to retry. Records live in the
//! catalog, so this holds across instances; a record whose instance died is taken over.
//!
//! Only successful answers are kept: a refused or failed request created nothing, so its key is
//! free for the retry (a client that timed out mid-upload retries and gets one file).
//!
//! The HTTP front (`Idempotency-Key`) and the MCP tools (`idempotency_key`) both use this; what
//! "the same request" means (method, target, body digest) is theirs to say.

use std::sync::Arc;

use crate::catalog::Idempotent;
use crate::context::{Context, INSTANCE_LEASE};
use crate::error::{Error, Result};
use crate::model::ProjectId;

/// How long an answer is kept.
pub const KEEP_MS: i64 = 24 * 3600 * 1000;

/// The longest key taken.
pub const MAX_KEY_LEN: usize = 255;

/// How a request with a key begins.
#[derive(Debug)]
pub enum Begun {
    /// The first: run it, then [`Idempotency::keep`] its answer or [`Idempotency::release`] it.
    Fresh(Claim),
    /// A repeat of a request that succeeded: its kept answer.
    Replay(Kept),
    /// The first is still running; retry after the seconds.
    Running(u64),
}

/// The claim on a key of the request that runs.
#[derive(Debug)]
#[must_use = "a claim must be kept or released"]
pub struct Claim {
    rec: Idempotent,
}

/// A kept answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The SHA-256 of the first request's body, when it was read whole.
    pub body_sha256: Option<String>,
}

/// Idempotency records over the catalog.
#[derive(Debug)]
pub struct Idempotency {
    ctx: Arc<Context>,
}

impl Idempotency {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Idempotency { ctx }
    }

    /// Begins a request with `key` in `project`. `request` names what it is (method and target);
    /// the same key with another `request` is [`Error::IdempotencyMismatch`].
    pub async fn begin(&self, project: &ProjectId, key: &str, request: &str) -> Result<Begun> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(format!(
                "an idempotency key is 1 to {MAX_KEY_LEN} visible ASCII characters"
            )));
        }
        let now = self.ctx.clock.now();
        let fresh = Idempotent {
            project: project.clone(),
            key: key.to_owned(),
            request: request.to_owned(),
            body_sha256: None,
            instance: self.ctx.instance.clone(),
            done: false,
            status: None,
            headers: None,
            body: None,
            created_at: now,
            expires_at: now + KEEP_MS,
        };
        let catalog = &self.ctx.catalog;
        // A race with another instance settles in a round or two.
        for _ in 0..4 {
            if catalog.insert_idempotent(&fresh).await? {
                return Ok(Begun::Fresh(Claim { rec: fresh }));
            }
            let Some(old) = catalog.idempotent(project, key).await? else {
                continue;
            };
            let stale = old.expires_at <= now || (!old.done && !self.alive(&old.instance, now).await?);
            if stale {
                if catalog.replace_idempotent(&old, &fresh).await? {
                    return Ok(Begun::Fresh(Claim { rec: fresh }));
                }
                continue;
            }
            if old.request != request {
                return Err(Error::IdempotencyMismatch(format!(
                    "this idempotency key was used for another request ({}); use a new key",
                    old.request
                )));
            }
            if !old.done {
                return Ok(Begun::Running(1));
            }
            return kept_of(&old).map(Begun::Replay);
        }
        Err(Error::Unavailable(
            "the idempotency key is changing hands; retry".into(),
        ))
    }

    /// Whether an instance still runs (this one, or one whose heartbeat is live).
    async fn alive(&self, instance: &str, now: i64) -> Result<bool> {
        if instance == self.ctx.instance {
            return Ok(true);
        }
        let lease = format!("{INSTANCE_LEASE}{instance}");
        Ok(self.ctx.catalog.live_leases(&lease, now).await? > 0)
    }

    /// Keeps a successful answer for the claim's key. A failure is logged: the record is then
    /// released, and a retry runs again (what it created is not undone).
    pub async fn keep(&self, claim: Claim, answer: &Kept) {
        use base64::Engine as _;
        let headers = serde_json::to_string(&answer.headers).ok();
        let rec = Idempotent {
            body_sha256: answer.body_sha256.clone(),
            done: true,
            status: Some(answer.status),
            headers,
            body: Some(base64::engine::general_purpose::STANDARD.encode(&answer.body)),
            ..claim.rec
        };
        match self.ctx.catalog.settle_idempotent(&rec).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(key = %rec.key, "an idempotency record was taken over before its answer was kept")
            }
            Err(e) => {
                tracing::error!(key = %rec.key, error = %e, "could not keep an idempotent answer");
                self.release(Claim { rec }).await;
            }
        }
    }

    /// Frees the claim's key: the request failed and created nothing.
    pub async fn release(&self, claim: Claim) {
        let r = &claim.rec;
        if let Err(e) = self
            .ctx
            .catalog
            .release_idempotent(&r.project, &r.key, &r.instance)
            .await
        {
            tracing::warn!(key = %r.key, error = %e, "could not release an idempotency key; it frees when this instance is gone");
        }
    }
}

fn kept_of(r: &Idempotent) -> Result<Kept> {
    use base64::Engine as _;
    let bad = || Error::internal_msg("malformed idempotency record");
    let headers: Vec<(String, String)> =
        serde_json::from_str(r.headers.as_deref().unwrap_or("[]")).map_err(|_| bad())?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(r.body.as_deref().unwrap_or(""))
        .map_err(|_| bad())?;
    Ok(Kept {
        status: r.status.ok_or_else(bad)?,
        headers,
        body,
        body_sha256: r.body_sha256.clone(),
    })
}
