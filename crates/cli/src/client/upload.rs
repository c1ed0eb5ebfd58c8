//! `filedock upload FILE...`: each file goes as a tus upload (one streaming PATCH, resumed from
//! the server's offset), or, from `--multipart-threshold` up, as a native multipart upload with
//! `--parallel` parts in flight, each PUT to the URL the server presigned (straight to S3 on
//! that backend). Which upload a file is part of is kept in a small state file, so running the
//! same command again after an interruption resumes instead of starting over. When the server
//! knows the file's SHA-256, the local file is hashed and compared.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use filedock_server::dialects::native::{FileView, MultipartResponse, PartsResponse};
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{Api, Connection, Failure, byte_bar, checked};

/// `filedock upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// The files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Files of at least this many bytes go as parallel multipart uploads (default 64 MiB).
    #[arg(long, default_value_t = 64 << 20)]
    pub multipart_threshold: u64,
    /// Parts of one multipart upload in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Files uploaded at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
    /// At most this many bytes per second in all (a number with K, M or G: 500K, 20M).
    #[arg(long, value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
}

/// `500K`, `20M`, `1G` (powers of 1024), or bytes.
fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.trim().to_ascii_uppercase().strip_suffix(['K', 'M', 'G']) {
        Some(n) => {
            let m = match s.trim().chars().last() {
                Some('k' | 'K') => 1 << 10,
                Some('m' | 'M') => 1 << 20,
                _ => 1 << 30,
            };
            (n.to_owned(), m)
        }
        None => (s.trim().to_owned(), 1),
    };
    match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("{s:?} is not a rate like 500K, 20M or 1G")),
    }
}

/// Keeps all the uploads of one run under `--limit-rate`.
#[derive(Debug)]
struct Throttle {
    rate: u64,
    start: std::time::Instant,
    sent: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// Counts `n` bytes; returns how long to wait before the next ones.
    fn take(&self, n: u64) -> Duration {
        let sent = self.sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
        due.saturating_sub(self.start.elapsed())
    }
}

const TUS: &str = "1.0.0";
const ATTEMPTS: u32 = 3;

/// What a resumable upload of one local file is, kept between runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum State {
    Tus {
        url: String,
    },
    Multipart {
        upload_id: String,
        part_size: u64,
        part_count: u64,
        /// Part number → ETag, for the parts stored so far (as `[n, etag]` pairs: an internally
        /// tagged enum cannot read a map with number keys back).
        #[serde(with = "pairs")]
        etags: BTreeMap<u32, String>,
    },
}

mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<u32, String>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, String>, D::Error> {
        Ok(Vec::<(u32, String)>::deserialize(d)?.into_iter().collect())
    }
}

/// The state file of one local file: named by the server, the key, the file's canonical path,
/// size and modification time, so a changed file starts over.
struct StateFile(PathBuf);

impl StateFile {
    fn for_file(api: &Api, path: &Path, meta: &std::fs::Metadata) -> Result<StateFile, Failure> {
        let dir = state_dir().ok_or_else(|| Failure::usage("no state directory: set FILEDOCK_STATE_DIR or HOME"))?;
        let canonical = std::fs::canonicalize(path).map_err(|e| Failure::io(path.display(), e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut h = Sha256::new();
        for part in [
            api.base.as_bytes(),
            &Sha256::digest(api.key.as_bytes())[..],
            canonical.as_os_str().as_encoded_bytes(),
            meta.len().to_string().as_bytes(),
            mtime.to_string().as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        Ok(StateFile(
            dir.join(format!("{}.json", &hex::encode(h.finalize())[..32])),
        ))
    }

    fn load(&self) -> Option<State> {
        let text = std::fs::read_to_string(&self.0).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written whole or not at all (a temp file renamed over it).
    fn save(&self, s: &State) -> Result<(), Failure> {
        if let Some(dir) = self.0.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Failure::io(dir.display(), e))?;
        }
        let tmp = self.0.with_extension("tmp");
        let text = serde_json::to_vec(s).map_err(|e| Failure::new("io", e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| Failure::io(tmp.display(), e))?;
        std::fs::rename(&tmp, &self.0).map_err(|e| Failure::io(self.0.display(), e))
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `FILEDOCK_STATE_DIR`, else `$XDG_STATE_HOME/filedock/uploads`, else
/// `~/.local/state/filedock/uploads`.
fn state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FILEDOCK_STATE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state")))?;
    Some(base.join("filedock").join("uploads"))
}

/// A file's bar and the overall bar move together.
#[derive(Clone)]
struct Meter {
    file: ProgressBar,
    overall: Option<ProgressBar>,
    bars: MultiProgress,
    json: bool,
    throttle: Option<Arc<Throttle>>,
}

impl Meter {
    /// A line for the person watching: above the bars, or on stderr without them.
    fn note(&self, line: String) {
        if self.bars.is_hidden() {
            if !self.json {
                eprintln!("{line}");
            }
        } else {
            let _ = self.bars.println(line);
        }
    }

    fn resuming(&self, name: &str, from: u64, size: u64) {
        if from > 0 {
            self.note(format!("{name}: resuming at {from} of {size} bytes"));
        }
    }

    fn add(&self, n: u64) {
        self.file.inc(n);
        if let Some(o) = &self.overall {
            o.inc(n);
        }
    }

    /// Takes back what a failed request had counted.
    fn sub(&self, n: u64) {
        self.file.set_position(self.file.position().saturating_sub(n));
        if let Some(o) = &self.overall {
            o.set_position(o.position().saturating_sub(n));
        }
    }
}

/// `len` bytes of `path` from `start`, counted on `meter` (and in `sent`) as they go.
async fn range_body(
    path: &Path,
    start: u64,
    len: u64,
    meter: Meter,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> Result<reqwest::Body, Failure> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Failure::io(path.display(), e))?;
    f.seek(SeekFrom::Start(start))
        .await
        .map_err(|e| Failure::io(path.display(), e))?;
    let stream = ReaderStream::with_capacity(f.take(len), 256 << 10).then(move |r| {
        let meter = meter.clone();
        let sent = sent.clone();
        async move {
            if let Ok(b) = &r {
                if let Some(t) = &meter.throttle {
                    tokio::time::sleep(t.take(b.len() as u64)).await;
                }
                meter.add(b.len() as u64);
                sent.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            r
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// A transient failure: the connection broke, or the server failed (5xx but 507).
fn transient(f: &Failure) -> bool {
    match f.status {
        None => f.code == "unreachable",
        Some(s) => s >= 500 && s != 507,
    }
}

/// Runs `filedock upload`.
pub async fn run(args: UploadArgs) -> Result<(), Failure> {
    let api = Api::connect(&args.conn)?;
    let mut files = Vec::with_capacity(args.files.len());
    for p in &args.files {
        let meta = std::fs::metadata(p).map_err(|e| Failure::io(p.display(), e))?;
        if !meta.is_file() {
            return Err(Failure::usage(format!("{} is not a file", p.display())));
        }
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Failure::usage(format!("{}: the file name must be UTF-8", p.display())))?
            .to_owned();
        files.push((p.clone(), name, meta));
    }
    let bars = api.bars();
    let total: u64 = files.iter().map(|(_, _, m)| m.len()).sum();
    let overall = (files.len() > 1).then(|| byte_bar(&bars, total, format!("{} files", files.len())));
    let count = files.len();
    let throttle = args.limit_rate.map(|rate| {
        Arc::new(Throttle {
            rate,
            start: std::time::Instant::now(),
            sent: Default::default(),
        })
    });
    let results = futures_util::stream::iter(files)
        .map(|(path, name, meta)| {
            let api = &api;
            let meter = Meter {
                file: byte_bar(&bars, meta.len(), name.clone()),
                overall: overall.clone(),
                bars: bars.clone(),
                json: api.json,
                throttle: throttle.clone(),
            };
            let args = &args;
            async move {
                let r = upload_one(api, meter, args, &path, &name, &meta).await;
                (path, r)
            }
        })
        .buffered(usize::from(args.jobs))
        .collect::<Vec<_>>()
        .await;
    if let Some(o) = overall {
        o.finish();
    }
    let mut failed: Option<Failure> = None;
    let mut failures = 0;
    for (path, r) in results {
        match r {
            Ok((view, resumed_from)) => {
                if api.json {
                    let mut v = serde_json::to_value(&view).unwrap_or_default();
                    v["path"] = serde_json::Value::from(path.display().to_string());
                    v["resumed_from"] = serde_json::Value::from(resumed_from);
                    println!("{v}");
                } else {
                    println!("{}  {:>12}  {}", view.id, view.size.unwrap_or(0), path.display());
                }
            }
            Err(f) => {
                eprintln!("filedock: {}: {}", path.display(), f.message);
                if api.json {
                    println!(
                        "{}",
                        serde_json::json!({"path": path.display().to_string(),
                            "error": {"code": f.code, "message": f.message, "status": f.status}})
                    );
                }
                failures += 1;
                failed.get_or_insert(f);
            }
        }
    }
    match failed {
        None => Ok(()),
        Some(mut f) => {
            f.message = format!(
                "{failures} of {count} uploads failed (run the same command again to resume); the first: {}",
                f.message
            );
            Err(f)
        }
    }
}

/// One file: returns what the server made of it and the offset it resumed from (0 if new).
async fn upload_one(
    api: &Api,
    meter: Meter,
    args: &UploadArgs,
    path: &Path,
    name: &str,
    meta: &std::fs::Metadata,
) -> Result<(FileView, u64), Failure> {
    let size = meta.len();
    let state = StateFile::for_file(api, path, meta)?;
    let r = if size >= args.multipart_threshold && size > 0 {
        multipart(api, path, name, size, &state, &meter, usize::from(args.parallel)).await
    } else {
        tus(api, path, name, size, &state, &meter).await
    };
    let (view, resumed) = r?;
    state.remove();
    meter.file.finish();
    if let Some(remote) = &view.sha256 {
        let local = sha256_file(path).await?;
        if !local.eq_ignore_ascii_case(remote) {
            return Err(Failure::new(
                "integrity",
                format!("the server stored SHA-256 {remote}, but the local file has {local}"),
            ));
        }
    }
    Ok((view, resumed))
}

async fn sha256_file(path: &Path) -> Result<String, Failure> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).map_err(|e| Failure::io(path.display(), e))?;
        let mut h = Sha256::new();
        super::hash_reader(&mut f, &mut h, u64::MAX).map_err(|e| Failure::io(path.display(), e))?;
        Ok(hex::encode(h.finalize()))
    })
    .await
    .map_err(|e| Failure::new("io", e.to_string()))?
}

async fn file_view(api: &Api, id: &str) -> Result<FileView, Failure> {
    api.send_json(api.request(Method::GET, &format!("/v1/files/{id}")))
        .await
}

fn header_u64(resp: &reqwest::Response, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.parse().ok()
}

/// The tus upload of `state`, if the server still has it with the same length: its URL and
/// offset.
async fn tus_resume(api: &Api, state: &StateFile, size: u64) -> Option<(String, u64)> {
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

async fn tus(
    api: &Api,
    path: &Path,
    name: &str,
    size: u64,
    state: &StateFile,
    meter: &Meter,
) -> Result<(FileView, u64), Failure> {
    let (url, resumed_from) = match tus_resume(api, state, size).await {
        Some(found) => found,
        None => {
            let resp = api
                .send(
                    api.request(Method::POST, "/tus/")
                        .header("Tus-Resumable", TUS)
                        .header("Upload-Length", size)
                        .header("Upload-Metadata", format!("filename {}", STANDARD.encode(name))),
                )
                .await?;
            if let Some(id) = resp.headers().get("filedock-file-id").and_then(|v| v.to_str().ok()) {
                // An empty file is finished at creation.
                return Ok((file_view(api, id).await?, 0));
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
            (url, 0)
        }
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

async fn multipart(
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
async fn multipart_parts(
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
async fn upload_part(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_reads_back() {
        let s = State::Multipart {
            upload_id: "u".into(),
            part_size: 8,
            part_count: 3,
            etags: BTreeMap::from([(1, "\"a\"".to_owned()), (3, "\"c\"".to_owned())]),
        };
        let text = serde_json::to_string(&s).unwrap();
        let back: State = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        let t: State = serde_json::from_str(r#"{"kind":"tus","url":"http://x/tus/1"}"#).unwrap();
        assert!(matches!(t, State::Tus { url } if url == "http://x/tus/1"));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500K"), Ok(500 << 10));
        assert_eq!(parse_rate("20m"), Ok(20 << 20));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        assert_eq!(parse_rate("123"), Ok(123));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5T").is_err());
    }
}
