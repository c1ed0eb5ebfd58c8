//! What the upload paths share: retries, rate limits, progress, the resume state on disk.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use filedock_server::dialects::native::FileView;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{Api, Failure};

/// `500K`, `20M`, `1G` (powers of 1024), or bytes.
pub(super) fn parse_rate(s: &str) -> Result<u64, String> {
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
pub(super) struct Throttle {
    pub(super) rate: u64,
    pub(super) start: std::time::Instant,
    pub(super) sent: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// Counts `n` bytes; returns how long to wait before the next ones.
    pub(super) fn take(&self, n: u64) -> Duration {
        let sent = self.sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(sent as f64 / self.rate as f64);
        due.saturating_sub(self.start.elapsed())
    }
}

pub(super) const ATTEMPTS: u32 = 3;

/// What a resumable upload of one local file is, kept between runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum State {
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
pub(super) struct StateFile(PathBuf);

impl StateFile {
    pub(super) fn for_file(api: &Api, path: &Path, meta: &std::fs::Metadata) -> Result<StateFile, Failure> {
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

    pub(super) fn load(&self) -> Option<State> {
        let text = std::fs::read_to_string(&self.0).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written whole or not at all (a temp file renamed over it).
    pub(super) fn save(&self, s: &State) -> Result<(), Failure> {
        if let Some(dir) = self.0.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Failure::io(dir.display(), e))?;
        }
        let tmp = self.0.with_extension("tmp");
        let text = serde_json::to_vec(s).map_err(|e| Failure::new("io", e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| Failure::io(tmp.display(), e))?;
        std::fs::rename(&tmp, &self.0).map_err(|e| Failure::io(self.0.display(), e))
    }

    pub(super) fn remove(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `FILEDOCK_STATE_DIR`, else `$XDG_STATE_HOME/filedock/uploads`, else
/// `~/.local/state/filedock/uploads`.
pub(super) fn state_dir() -> Option<PathBuf> {
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
pub(super) struct Meter {
    pub(super) file: ProgressBar,
    pub(super) overall: Option<ProgressBar>,
    pub(super) bars: MultiProgress,
    pub(super) json: bool,
    pub(super) throttle: Option<Arc<Throttle>>,
}

impl Meter {
    /// A line for the person watching: above the bars, or on stderr without them.
    pub(super) fn note(&self, line: String) {
        if self.bars.is_hidden() {
            if !self.json {
                eprintln!("{line}");
            }
        } else {
            let _ = self.bars.println(line);
        }
    }

    pub(super) fn resuming(&self, name: &str, from: u64, size: u64) {
        if from > 0 {
            self.note(format!("{name}: resuming at {from} of {size} bytes"));
        }
    }

    pub(super) fn add(&self, n: u64) {
        self.file.inc(n);
        if let Some(o) = &self.overall {
            o.inc(n);
        }
    }

    /// Takes back what a failed request had counted.
    pub(super) fn sub(&self, n: u64) {
        self.file.set_position(self.file.position().saturating_sub(n));
        if let Some(o) = &self.overall {
            o.set_position(o.position().saturating_sub(n));
        }
    }
}

/// `len` bytes of `path` from `start`, counted on `meter` (and in `sent`) as they go.
pub(super) async fn range_body(
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
pub(super) fn transient(f: &Failure) -> bool {
    match f.status {
        None => f.code == "unreachable",
        Some(s) => s >= 500 && s != 507,
    }
}

pub(super) async fn sha256_file(path: &Path) -> Result<String, Failure> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).map_err(|e| Failure::io(path.display(), e))?;
        let mut h = Sha256::new();
        crate::client::hash_reader(&mut f, &mut h, u64::MAX).map_err(|e| Failure::io(path.display(), e))?;
        Ok(hex::encode(h.finalize()))
    })
    .await
    .map_err(|e| Failure::new("io", e.to_string()))?
}

pub(super) async fn file_view(api: &Api, id: &str) -> Result<FileView, Failure> {
    api.send_json(api.request(Method::GET, &format!("/v1/files/{id}")))
        .await
}

pub(super) fn header_u64(resp: &reqwest::Response, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
