//! Sends the webhook deliveries core records: takes due ones (each leased to this instance for
//! one attempt), POSTs their signed JSON, and reports each outcome back to core, which decides
//! about retries. Runs beside the server until it is dropped.

use std::sync::Arc;
use std::time::Duration;

use filedock_core::FileService;
use filedock_core::events::Outgoing;

/// How often due deliveries are looked for when nothing wakes the loop (events recorded by other
/// instances, retries coming due).
const POLL: Duration = Duration::from_secs(1);
/// Deliveries sent at once.
const BATCH: u32 = 16;

/// Sends due webhook deliveries, a batch per [`Deliverer::round`]; the caller (the job
/// supervisor) runs rounds one after another.
#[derive(Debug)]
pub struct Deliverer {
    files: Arc<FileService>,
    client: reqwest::Client,
    timeout: Duration,
}

impl Deliverer {
    /// A deliverer with an HTTP client bounded by the delivery timeout.
    pub fn new(files: Arc<FileService>) -> Result<Deliverer, reqwest::Error> {
        let timeout = Duration::from_secs(files.delivery_settings().timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Deliverer { files, client, timeout })
    }

    /// How long a healthy deliverer can go between two completed rounds.
    pub fn stale_after(&self) -> Duration {
        (POLL + self.timeout) * 3
    }

    /// Sends the due deliveries (at most a batch) or, when none is due, waits up to a poll
    /// interval for one to be recorded.
    pub async fn round(&self) -> filedock_core::Result<()> {
        let signal = self.files.deliveries_signal().notified();
        let taken = self.files.take_deliveries(BATCH).await?;
        if taken.is_empty() {
            let _ = tokio::time::timeout(POLL, signal).await;
            return Ok(());
        }
        let sends = taken.into_iter().map(|o| send(&self.client, &self.files, o));
        futures_util::future::join_all(sends).await;
        Ok(())
    }
}

/// Delivers for ever (tests and embedders; `serve` runs [`Deliverer::round`] under its job
/// supervisor).
pub async fn deliver(files: Arc<FileService>) {
    let d = match Deliverer::new(files) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; no webhook will be delivered");
            return;
        }
    };
    loop {
        if let Err(e) = d.round().await {
            tracing::warn!(error = %e, "could not read due webhook deliveries");
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn send(client: &reqwest::Client, files: &FileService, o: Outgoing) {
    let mut req = client.post(&o.url).body(o.body);
    for (k, v) in &o.headers {
        req = req.header(k, v);
    }
    let outcome = match req.send().await {
        Ok(resp) => Ok(resp.status().as_u16()),
        // Without the URL: it may carry a token in its query.
        Err(e) => Err(format!("no answer: {}", e.without_url())),
    };
    if let Err(e) = files.settle_delivery(&o.delivery, outcome).await {
        tracing::warn!(delivery = %o.delivery.id, error = %e, "could not record a webhook delivery's outcome; it is retried when its lease ends");
    }
}
