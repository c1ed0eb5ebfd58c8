//! Uploads through tus, resumed from the state file after an interruption.

use super::common::ATTEMPTS;
use super::common::Meter;
use super::common::State;
use super::common::StateFile;
use super::common::file_view;
use super::common::header_u64;
use super::common::range_body;
use super::common::transient;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use filedock_server::dialects::native::FileView;

use reqwest::Method;

use super::{Api, Failure};

pub(super) const TUS: &str = "1.0.0";

/// The tus upload of `state`, if the server still has it with the same length: its URL and
/// offset.
pub(super) async fn tus_resume(api: &Api, state: &StateFile, size: u64) -> Option<(String, u64)> {
    let Some(State::Tus { url }) = state.load() else {
        return None;
    };
    let resp = api
        .request(Method::HEAD, &url)
        .header("Tus-Resumable", TUS)
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() || header_u64(&resp, "upload-length") != Some(size) {
        return None;
    }
    Some((url, header_u64(&resp, "upload-offset")?))
}

pub(super) async fn tus(
    api: &Api,
    path: &Path,
    name: &str,
    size: u64,
    state: &StateFile,
    meter: &Meter,
) -> Result<(FileView, u64), Failure> {
    let (url, resumed_from) = match tus_resume(api, state, size).await {
        Some(found) => found,
        None => match tus_create(api, state, name, size).await? {
            Created::Url(url) => (url, 0),
            // An empty file is finished at creation.
            Created::Done(view) => return Ok((*view, 0)),
        },
    };
    meter.resuming(name, resumed_from, size);
    meter.add(resumed_from);
    let mut offset = resumed_from;
    let mut resumed_from = resumed_from;
    let mut attempt = 0;
    loop {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let body = range_body(path, offset, size - offset, meter.clone(), sent.clone()).await?;
        let r = api
            .send(
                api.request(Method::PATCH, &url)
                    .header("Tus-Resumable", TUS)
                    .header("Upload-Offset", offset)
                    .header(reqwest::header::CONTENT_TYPE, "application/offset+octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, size - offset)
                    .body(body),
            )
            .await;
        match r {
            Ok(resp) => {
                let Some(id) = resp.headers().get("filedock-file-id").and_then(|v| v.to_str().ok()) else {
                    return Err(Failure::new(
                        "protocol",
                        format!(
                            "the upload stopped at {:?} of {size} bytes",
                            header_u64(&resp, "upload-offset")
                        ),
                    ));
                };
                return Ok((file_view(api, id).await?, resumed_from));
            }
            // 409: the offset we sent is not the server's. That happens when a run killed a moment
            // ago still had its PATCH open: HEAD answered the offset from before that PATCH, which
            // then kept its bytes and moved the upload on. Ask again and go on from there.
            Err(f) if (transient(&f) || f.status == Some(409)) && attempt + 1 < ATTEMPTS => {
                attempt += 1;
                meter.sub(sent.load(std::sync::atomic::Ordering::Relaxed));
                if f.status != Some(409) {
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
                // Go on from what the server kept.
                let (_, now) = tus_resume(api, state, size).await.ok_or(f)?;
                if offset == resumed_from {
                    // Nothing of this run reached the server yet: all it has came before it.
                    resumed_from = now;
                }
                if now >= offset {
                    meter.add(now - offset);
                } else {
                    meter.sub(offset - now);
                }
                offset = now;
            }
            Err(f) => return Err(f),
        }
    }
}

/// What a tus creation made: an upload to PATCH, or (an empty file) the file itself.
enum Created {
    Url(String),
    Done(Box<FileView>),
}

/// Creates a tus upload for a file of `size` bytes and saves its URL for a later resume.
async fn tus_create(api: &Api, state: &StateFile, name: &str, size: u64) -> Result<Created, Failure> {
    let resp = api
        .send(
            api.request(Method::POST, "/tus/")
                .header("Tus-Resumable", TUS)
                .header("Upload-Length", size)
                .header("Upload-Metadata", format!("filename {}", STANDARD.encode(name))),
        )
        .await?;
    if let Some(id) = resp.headers().get("filedock-file-id").and_then(|v| v.to_str().ok()) {
        return Ok(Created::Done(Box::new(file_view(api, id).await?)));
    }
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Failure::new("protocol", "the tus creation answer had no Location"))?;
    let url = resp
        .url()
        .join(location)
        .map_err(|e| Failure::new("protocol", format!("the tus Location: {e}")))?
        .to_string();
    state.save(&State::Tus { url: url.clone() })?;
    Ok(Created::Url(url))
}
