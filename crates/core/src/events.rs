//! Events and their webhooks. When a file becomes ready or is deleted, or a task succeeds or
//! fails, one delivery per interested webhook of the project is written to the catalog (an
//! outbox) in the same transaction as the change, so neither a crash nor a restart loses one. Any instance may send a due delivery: it takes it by moving
//! its `next_at` forward (its lease), POSTs the JSON body signed with HMAC-SHA256, and records
//! the outcome — delivered on a 2xx, otherwise retried with exponential backoff until the last
//! attempt. Receivers tell retries apart by `Filedock-Event-Id`.
//!
//! The signature: `Filedock-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`
//! with `Filedock-Timestamp: <unix seconds>` (the instant of sending, so receivers can refuse
//! stale replays).

use std::sync::Arc;

use crate::catalog::Change;
use crate::context::Context;
use crate::context::secs_to_ms;
use crate::error::Result;
use crate::event_shapes::secs;
use crate::model::{DeliveryRecord, DeliveryStatus, FileId, ProjectId};

pub use crate::event_shapes::{EventType, Outgoing, Webhook, signature};
pub use crate::settings::DeliverySettings;

/// Events and their deliveries; wakes this instance's sender when one is recorded.
#[derive(Debug)]
pub struct Events {
    pub(crate) ctx: Arc<Context>,
    deliveries: tokio::sync::Notify,
}

impl Events {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Events {
            ctx,
            deliveries: tokio::sync::Notify::new(),
        }
    }
}

impl Events {
    /// The deliveries of an event: one for every webhook of the project that wants it.
    fn deliveries_of(&self, project: &ProjectId, event: EventType, data: serde_json::Value) -> Vec<DeliveryRecord> {
        let hooks: Vec<&Webhook> = self
            .ctx
            .config
            .projects
            .get(project.as_str())
            .map(|p| p.webhooks.iter().filter(|w| w.events.contains(&event)).collect())
            .unwrap_or_default();
        if hooks.is_empty() {
            return Vec::new();
        }
        let now = self.ctx.clock.now();
        let event_id = FileId::generate().to_string();
        let payload = serde_json::json!({
            "id": event_id,
            "type": event.as_str(),
            "created_at": secs(now),
            "project": project,
            "data": data,
        })
        .to_string();
        hooks
            .into_iter()
            .map(|hook| DeliveryRecord {
                id: FileId::generate().to_string(),
                event_id: event_id.clone(),
                project: project.clone(),
                webhook: hook.id().to_owned(),
                event: event.as_str().to_owned(),
                payload: payload.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_at: now,
                last_error: None,
                created_at: now,
                delivered_at: None,
            })
            .collect()
    }

    /// Makes a change that reports `event` (with `data`, what the change leaves), and records
    /// the event's deliveries in the same transaction: a crash or a failed write keeps both or
    /// neither, so no event is lost and none reports a change that did not happen. Returns
    /// whether the change took effect.
    pub(crate) async fn change(
        &self,
        change: Change<'_>,
        project: &ProjectId,
        event: EventType,
        data: impl FnOnce() -> serde_json::Value,
    ) -> Result<bool> {
        let deliveries = self.deliveries_for(project, event, data);
        let done = self.ctx.catalog.apply(change, &deliveries).await?;
        if done && !deliveries.is_empty() {
            self.deliveries.notify_one();
        }
        Ok(done)
    }

    /// The deliveries of an event, as [`Events::change`] records them (none without webhooks:
    /// `data` is then not called).
    pub(crate) fn deliveries_for(
        &self,
        project: &ProjectId,
        event: EventType,
        data: impl FnOnce() -> serde_json::Value,
    ) -> Vec<DeliveryRecord> {
        if self.has_webhooks() {
            self.deliveries_of(project, event, data())
        } else {
            Vec::new()
        }
    }

    /// Wakes when an event was recorded on this instance (deliveries from other instances are
    /// found by polling).
    pub fn deliveries_signal(&self) -> &tokio::sync::Notify {
        &self.deliveries
    }

    /// Whether any project has a webhook (else nothing is ever delivered).
    pub fn has_webhooks(&self) -> bool {
        self.ctx.config.projects.values().any(|p| !p.webhooks.is_empty())
    }

    /// The delivery settings.
    pub fn delivery_settings(&self) -> &DeliverySettings {
        &self.ctx.config.deliveries
    }

    fn webhook(&self, d: &DeliveryRecord) -> Option<&Webhook> {
        self.ctx
            .config
            .projects
            .get(d.project.as_str())?
            .webhooks
            .iter()
            .find(|w| w.id() == d.webhook)
    }

    /// Takes up to `limit` due deliveries (each leased for one attempt) and signs them.
    pub async fn take_deliveries(&self, limit: u32) -> Result<Vec<Outgoing>> {
        let now = self.ctx.clock.now();
        let lease = secs_to_ms(self.ctx.config.deliveries.timeout_secs + 5);
        let mut out = Vec::new();
        for d in self.ctx.catalog.due_deliveries(now, limit).await? {
            if !self.ctx.catalog.lease_delivery(&d.id, now, now + lease).await? {
                continue; // another instance took it
            }
            let Some(hook) = self.webhook(&d) else {
                self.ctx
                    .catalog
                    .settle_delivery(
                        &d.id,
                        DeliveryStatus::Failed,
                        d.attempts,
                        now,
                        Some("the webhook is no longer configured"),
                        now,
                    )
                    .await?;
                continue;
            };
            let ts = secs(now);
            out.push(Outgoing {
                url: hook.url.clone(),
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("Filedock-Event".into(), d.event.clone()),
                    ("Filedock-Event-Id".into(), d.event_id.clone()),
                    ("Filedock-Timestamp".into(), ts.to_string()),
                    (
                        "Filedock-Signature".into(),
                        signature(hook.secret.as_bytes(), ts, &d.payload),
                    ),
                ],
                body: d.payload.clone(),
                delivery: d,
            });
        }
        Ok(out)
    }

    /// Records an attempt: `Ok(status)` with the receiver's HTTP status, `Err` with why no
    /// answer came. A 2xx is delivered; anything else is retried after
    /// `retry_base_secs × 2^(attempt-1)` (at most an hour) until `max_attempts`.
    pub async fn settle_delivery(&self, d: &DeliveryRecord, outcome: std::result::Result<u16, String>) -> Result<()> {
        let now = self.ctx.clock.now();
        let attempts = d.attempts + 1;
        let s = &self.ctx.config.deliveries;
        let (status, error) = match outcome {
            Ok(code) if (200..300).contains(&code) => (DeliveryStatus::Delivered, None),
            Ok(code) => (
                DeliveryStatus::Pending,
                Some(format!("the receiver answered HTTP {code}")),
            ),
            Err(e) => (DeliveryStatus::Pending, Some(e)),
        };
        let status = if status == DeliveryStatus::Pending && attempts >= s.max_attempts {
            DeliveryStatus::Failed
        } else {
            status
        };
        let delay = s
            .retry_base_secs
            .saturating_mul(1u64 << (attempts - 1).min(20))
            .min(3600);
        if let Some(e) = &error {
            tracing::warn!(delivery = %d.id, webhook = %d.webhook, attempts, error = %e, "a webhook delivery failed");
        }
        self.ctx
            .catalog
            .settle_delivery(&d.id, status, attempts, now + secs_to_ms(delay), error.as_deref(), now)
            .await
    }
}
