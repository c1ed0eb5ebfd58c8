//! What events look like: their types, a project's webhooks, the JSON a delivery carries and
//! its signature. How they are recorded and sent is the `events` module.

use std::fmt;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::{Error, Result};
use crate::model::{DeliveryRecord, FileRecord, TaskRecord};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A file was stored and checked.
    #[serde(rename = "file.ready")]
    FileReady,
    /// A file could not be taken (a fetch from a URL failed); its record says why.
    #[serde(rename = "file.failed")]
    FileFailed,
    /// A file's scanner found it infected: its bytes are deleted; its record says what was found.
    #[serde(rename = "file.rejected")]
    FileRejected,
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
    pub const ALL: [EventType; 6] = [
        EventType::FileReady,
        EventType::FileFailed,
        EventType::FileRejected,
        EventType::FileDeleted,
        EventType::TaskSucceeded,
        EventType::TaskFailed,
    ];

    /// The name in payloads and config.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::FileReady => "file.ready",
            EventType::FileFailed => "file.failed",
            EventType::FileRejected => "file.rejected",
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

/// A delivery to send now: it is leased to the caller, who reports with
/// [`FileService::settle_delivery`](crate::FileService::settle_delivery).
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

pub(crate) fn secs(t: Timestamp) -> i64 {
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
