//! Uploads in presigned parts, sent in parallel and each retried.

use super::common::ATTEMPTS;
use super::common::Meter;
use super::common::State;
use super::common::StateFile;
use super::common::range_body;
use super::common::transient;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use filedock_server::dialects::native::{FileView, MultipartResponse, PartsResponse};
use futures_util::StreamExt;

use reqwest::Method;

use super::{Api, Failure, checked};

pub(super) async fn multipart(
    api: &Api,
    path: &Path,
    name: &str,
    size: u64,
    state: &StateFile,
    meter: &Meter,
    parallel: usize,
) -> Result<(FileView, u64), Failure> {
    if let Some(s @ State::Multipart { .. }) = state.load() {
        match multipart_parts(api, path, name, size, state, s, meter, parallel).await {
            Ok(done) => return Ok(done),
            // The upload is gone (aborted, swept): start over.
            Err(f) if matches!(f.status, Some(404 | 410)) => {
                meter.sub(meter.file.position());
                state.remove();
            }
            Err(f) => return Err(f),
        }
    }
    let started: MultipartResponse = api
        .send_json(
            api.request(Method::POST, "/v1/uploads/multipart")
                .json(&serde_json::json!({"name": name, "size": size})),
        )
        .await?;
    let s = State::Multipart {
        upload_id: started.upload_id,
        part_size: started.part_size,
        part_count: started.part_count,
        etags: BTreeMap::new(),
    };
    state.save(&s)?;
    multipart_parts(api, path, name, size, state, s, meter, parallel).await
}

/// Uploads the parts `s` lacks, `parallel` at a time, saving `s` after each; then completes.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site each, all of it the upload's context"
)]
pub(super) async fn multipart_parts(
    api: &Api,
    path: &Path,
    name: &str,
    size: u64,
    state: &StateFile,
    s: State,
    meter: &Meter,
    parallel: usize,
) -> Result<(FileView, u64), Failure> {
    let State::Multipart {
        upload_id,
        part_size,
        part_count,
        etags,
    } = s.clone()
    else {
        return Err(Failure::new("io", "not a multipart state"));
    };
    let part_len = |n: u32| part_size.min(size - (u64::from(n) - 1) * part_size);
    let resumed_from: u64 = etags.keys().map(|&n| part_len(n)).sum();
    meter.resuming(name, resumed_from, size);
    meter.add(resumed_from);
    let missing: Vec<u32> = (1..=u32::try_from(part_count).unwrap_or(u32::MAX))
        .filter(|n| !etags.contains_key(n))
        .collect();
    let shared = Arc::new(Mutex::new(s));
    let mut results = futures_util::stream::iter(missing)
        .map(|n| {
            let upload_id = &upload_id;
            let shared = shared.clone();
            async move {
                let etag = upload_part(
                    api,
                    path,
                    upload_id,
                    n,
                    (u64::from(n) - 1) * part_size,
                    part_len(n),
                    meter,
                )
                .await?;
                let snapshot = {
                    let mut g = shared.lock().map_err(|_| Failure::new("io", "state lock poisoned"))?;
                    if let State::Multipart { etags, .. } = &mut *g {
                        etags.insert(n, etag);
                    }
                    g.clone()
                };
                state.save(&snapshot)
            }
        })
        .buffer_unordered(parallel);
    while let Some(r) = results.next().await {
        r?;
    }
    drop(results);
    let parts: Vec<serde_json::Value> = match &*shared.lock().map_err(|_| Failure::new("io", "state lock poisoned"))? {
        State::Multipart { etags, .. } => etags
            .iter()
            .map(|(n, e)| serde_json::json!({"part_number": n, "etag": e}))
            .collect(),
        State::Tus { .. } => Vec::new(),
    };
    let view: FileView = api
        .send_json(
            api.request(Method::POST, &format!("/v1/uploads/multipart/{upload_id}/complete"))
                .json(&serde_json::json!({ "parts": parts })),
        )
        .await?;
    Ok((view, resumed_from))
}

/// Presigns one part and PUTs it there (no key: the URL is the permission); returns its ETag.
pub(super) async fn upload_part(
    api: &Api,
    path: &Path,
    upload_id: &str,
    n: u32,
    start: u64,
    len: u64,
    meter: &Meter,
) -> Result<String, Failure> {
    let mut attempt = 0;
    loop {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = async {
            let signed: PartsResponse = api
                .send_json(
                    api.request(Method::POST, &format!("/v1/uploads/multipart/{upload_id}/parts"))
                        .json(&serde_json::json!({ "part_numbers": [n] })),
                )
                .await?;
            let part = signed
                .parts
                .into_iter()
                .find(|p| p.part_number == n)
                .ok_or_else(|| Failure::new("protocol", format!("no URL for part {n}")))?;
            let method = Method::from_bytes(part.method.as_bytes())
                .map_err(|_| Failure::new("protocol", format!("part {n}: method {:?}", part.method)))?;
            let mut req = api.http.request(method, &part.url);
            for (k, v) in &part.headers {
                req = req.header(k, v);
            }
            let body = range_body(path, start, len, meter.clone(), sent.clone()).await?;
            let resp = checked(
                req.header(reqwest::header::CONTENT_LENGTH, len)
                    .body(body)
                    .send()
                    .await?,
            )
            .await?;
            resp.headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| Failure::new("protocol", format!("part {n}: the answer had no ETag")))
        }
        .await;
        match r {
            Ok(etag) => return Ok(etag),
            Err(f) if transient(&f) && attempt + 1 < ATTEMPTS => {
                attempt += 1;
                meter.sub(sent.load(std::sync::atomic::Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            Err(f) => {
                meter.sub(sent.load(std::sync::atomic::Ordering::Relaxed));
                return Err(f);
            }
        }
    }
}
