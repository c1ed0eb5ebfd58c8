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

/// Delivers for ever.
pub async fn deliver(files: Arc<FileService>) {
    let timeout = Duration::from_secs(files.delivery_settings().timeout_secs.max(1));
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; no webhook will be delivered");
            return;
        }
    };
    loop {
        let signal = files.deliveries_signal().notified();
        let taken = match files.take_deliveries(BATCH).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "could not read due webhook deliveries");
                Vec::new()
            }
        };
        if taken.is_empty() {
            let _ = tokio::time::timeout(POLL, signal).await;
            continue;
        }
        let sends = taken.into_iter().map(|o| send(&client, &files, o));
        futures_util::future::join_all(sends).await;
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
