//! Events and their webhooks. When a file becomes ready or is deleted, or a task succeeds or
//! fails, one delivery per interested webhook of the project is written to the catalog (an
//! outbox), so a restart loses none. Any instance may send a due delivery: it takes it by moving
//! its `next_at` forward (its lease), POSTs the JSON body signed with HMAC-SHA256, and records
//! the outcome — delivered on a 2xx, otherwise retried with exponential backoff until the last
//! attempt. Receivers tell retries apart by `Filedock-Event-Id`.
//!
//! The signature: `Filedock-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`
//! with `Filedock-Timestamp: <unix seconds>` (the instant of sending, so receivers can refuse
//! stale replays).

use std::fmt;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::files::{FileService, secs_to_ms};
use crate::model::{DeliveryRecord, DeliveryStatus, FileId, FileRecord, ProjectId, TaskRecord};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A file was stored and checked.
    #[serde(rename = "file.ready")]
    FileReady,
    /// A file was deleted, or expired and was swept.
    #[serde(rename = "file.deleted")]
    FileDeleted,
    /// A task's runner completed it.
    #[serde(rename = "task.succeeded")]
    TaskSucceeded,
    /// A task's runner failed it, or it lost its runner too often.
    #[serde(rename = "task.failed")]
    TaskFailed,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 4] = [
        EventType::FileReady,
        EventType::FileDeleted,
        EventType::TaskSucceeded,
        EventType::TaskFailed,
    ];

    /// The name in payloads and config.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::FileReady => "file.ready",
            EventType::FileDeleted => "file.deleted",
            EventType::TaskSucceeded => "task.succeeded",
            EventType::TaskFailed => "task.failed",
        }
    }
}

fn all_events() -> Vec<EventType> {
    EventType::ALL.to_vec()
}

/// A receiver of a project's events.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Names the webhook in the catalog's deliveries; default: its URL.
    #[serde(default)]
    pub name: Option<String>,
    /// Where events are POSTed (`http` or `https`).
    pub url: String,
    /// The HMAC-SHA256 key of the signature (at least 16 bytes).
    pub secret: String,
    /// Which events; default all.
    #[serde(default = "all_events")]
    pub events: Vec<EventType>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("events", &self.events)
            .finish()
    }
}

impl Webhook {
    /// The name deliveries record.
    pub fn id(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.url)
    }

    /// Checks the URL and the secret.
    pub fn validate(&self) -> Result<()> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "webhook '{}': the url must start with http:// or https://",
                self.id()
            )));
        }
        if self.secret.len() < 16 {
            return Err(Error::invalid(format!(
                "webhook '{}': the secret must be at least 16 bytes",
                self.id()
            )));
        }
        Ok(())
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

/// A delivery to send now: it is leased to the caller, who reports with
/// [`FileService::settle_delivery`].
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub delivery: DeliveryRecord,
    pub url: String,
    /// `Content-Type`, `Filedock-Event`, `Filedock-Event-Id`, `Filedock-Timestamp`,
    /// `Filedock-Signature`.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn secs(t: Timestamp) -> i64 {
    t.div_euclid(1000)
}

/// The `data` of a file event.
pub(crate) fn file_data(rec: &FileRecord) -> serde_json::Value {
    serde_json::json!({
        "file": {
            "id": rec.id,
            "project": rec.project,
            "workspace": rec.workspace,
            "backend": rec.backend,
            "key": rec.key,
            "name": rec.name,
            "size": rec.size,
            "content_type": rec.content_type(),
            "sha256": rec.sha256,
            "class": rec.class,
            "created_at": secs(rec.created_at),
            "expires_at": rec.expires_at.map(secs),
        }
    })
}

/// The `data` of a task event.
pub(crate) fn task_data(t: &TaskRecord, output_keys: &[String]) -> serde_json::Value {
    serde_json::json!({
        "task": {
            "id": t.id,
            "workflow": t.workflow,
            "status": t.status,
            "outputs": output_keys,
            "error": t.error,
            "attempts": t.attempts,
            "created_at": secs(t.created_at),
            "finished_at": t.finished_at.map(secs),
        }
    })
}

impl FileService {
    /// Records an event for every webhook of the project that wants it. A failure to record is
    /// logged, never returned: the change it reports has happened already.
    pub(crate) async fn emit(&self, project: &ProjectId, event: EventType, data: serde_json::Value) {
        let hooks: Vec<&Webhook> = self
            .config
            .projects
            .get(project.as_str())
            .map(|p| p.webhooks.iter().filter(|w| w.events.contains(&event)).collect())
            .unwrap_or_default();
        if hooks.is_empty() {
            return;
        }
        let now = self.clock.now();
        let event_id = FileId::generate().to_string();
        let payload = serde_json::json!({
            "id": event_id,
            "type": event.as_str(),
            "created_at": secs(now),
            "project": project,
            "data": data,
        })
        .to_string();
        for hook in hooks {
            let d = DeliveryRecord {
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
            };
            if let Err(e) = self.catalog.insert_delivery(&d).await {
                tracing::error!(%project, event = event.as_str(), webhook = hook.id(), error = %e, "could not record an event");
            }
        }
        self.signals.deliveries.notify_one();
    }

    /// Wakes when an event was recorded on this instance (deliveries from other instances are
    /// found by polling).
    pub fn deliveries_signal(&self) -> &tokio::sync::Notify {
        &self.signals.deliveries
    }

    /// Whether any project has a webhook (else nothing is ever delivered).
    pub fn has_webhooks(&self) -> bool {
        self.config.projects.values().any(|p| !p.webhooks.is_empty())
    }

    /// The delivery settings.
    pub fn delivery_settings(&self) -> &DeliverySettings {
        &self.config.deliveries
    }

    fn webhook(&self, d: &DeliveryRecord) -> Option<&Webhook> {
        self.config
            .projects
            .get(d.project.as_str())?
            .webhooks
            .iter()
            .find(|w| w.id() == d.webhook)
    }

    /// Takes up to `limit` due deliveries (each leased for one attempt) and signs them.
    pub async fn take_deliveries(&self, limit: u32) -> Result<Vec<Outgoing>> {
        let now = self.clock.now();
        let lease = secs_to_ms(self.config.deliveries.timeout_secs + 5);
        let mut out = Vec::new();
        for d in self.catalog.due_deliveries(now, limit).await? {
            if !self.catalog.lease_delivery(&d.id, now, now + lease).await? {
                continue; // another instance took it
            }
            let Some(hook) = self.webhook(&d) else {
                self.catalog
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
        let now = self.clock.now();
        let attempts = d.attempts + 1;
        let s = &self.config.deliveries;
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
        self.catalog
            .settle_delivery(&d.id, status, attempts, now + secs_to_ms(delay), error.as_deref(), now)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: python3 -c 'import hmac, hashlib; print(hmac.new(
        // b"0123456789abcdef", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"0123456789abcdef", 1_700_000_000, r#"{"a":1}"#),
            "sha256=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
        let a = signature(b"0123456789abcdef", 1_700_000_000, r#"{"a":1}"#);
        assert_ne!(a, signature(b"0123456789abcdef", 1_700_000_001, r#"{"a":1}"#));
        assert_ne!(a, signature(b"0123456789abcdeF", 1_700_000_000, r#"{"a":1}"#));
        assert_ne!(a, signature(b"0123456789abcdef", 1_700_000_000, r#"{"a":2}"#));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let w = Webhook {
            name: None,
            url: "http://127.0.0.1:1/hook".into(),
            secret: "whsec-very-secret-value".into(),
            events: all_events(),
        };
        assert!(!format!("{w:?}").contains("very-secret"));
        assert!(w.validate().is_ok());
        assert!(
            Webhook {
                url: "ftp://x".into(),
                ..w.clone()
            }
            .validate()
            .is_err()
        );
        assert!(
            Webhook {
                secret: "short".into(),
                ..w
            }
            .validate()
            .is_err()
        );
    }
}
