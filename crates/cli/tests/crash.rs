//! Crash safety: 100 clients upload at once (raw bodies, and tus uploads that resume from the
//! server's offset) while the server is SIGKILLed at random moments and restarted. Every upload
//! the server acknowledged must be intact (SHA-256), no partial file may ever be visible, and after
//! the start-up scan storage and catalog agree (`filedock doctor` finds nothing). Both flavours.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use filedock_testkit::S3Server;
use serde_json::Value;
use sha2::Digest;

const CLIENTS: usize = 100;
const KILLS: usize = 5;
/// No grace: an upload records its intent before its first byte, so an object without a row is
/// either a live instance's upload in flight (left alone) or a crashed one's (deleted), never
/// guessed by age.
const GRACE_SECS: u64 = 0;
/// How long a killed instance still counts as alive (its last heartbeat's lease).
const LEASE_SECS: u64 = 10;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn content(i: usize) -> Vec<u8> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
    let len = 8 * 1024 + r.below(2 << 20) as usize;
    (0..len).map(|_| r.next() as u8).collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// One raw upload attempt; `Some(id)` if the server acknowledged it.
fn raw_upload(http: &reqwest::blocking::Client, base: &str, key: &str, i: usize, body: &[u8]) -> Option<String> {
    let resp = http
        .post(format!("{base}/v1/files?name=raw-{i}.bin"))
        .bearer_auth(key)
        .body(body.to_vec())
        .send()
        .ok()?;
    if resp.status().as_u16() != 201 {
        return None;
    }
    let v: Value = resp.json().ok()?;
    assert_eq!(
        v["sha256"],
        sha(body),
        "an acknowledged upload reports its content's hash"
    );
    Some(v["id"].as_str()?.to_owned())
}

/// A tus upload driven to its end: created once, then resumed from the server's offset after
/// every failure, 256 KiB per PATCH. `Some(id)` once the server acknowledges the last byte.
fn tus_step(
    http: &reqwest::blocking::Client,
    base: &str,
    key: &str,
    i: usize,
    body: &[u8],
    location: &mut Option<String>,
) -> Option<String> {
    if location.is_none() {
        let name = base64::engine::general_purpose::STANDARD.encode(format!("tus-{i}.bin"));
        let resp = http
            .post(format!("{base}/tus/"))
            .bearer_auth(key)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", body.len().to_string())
            .header("upload-metadata", format!("filename {name}"))
            .send()
            .ok()?;
        if resp.status().as_u16() != 201 {
            return None;
        }
        let loc = resp.headers().get("location")?.to_str().ok()?.to_owned();
        *location = Some(if loc.starts_with("http") {
            loc
        } else {
            format!("{base}{loc}")
        });
    }
    let url = location.clone()?;
    loop {
        let head = http
            .head(&url)
            .bearer_auth(key)
            .header("tus-resumable", "1.0.0")
            .send()
            .ok()?;
        if head.status().as_u16() != 200 {
            return None;
        }
        let offset: usize = head.headers().get("upload-offset")?.to_str().ok()?.parse().ok()?;
        assert!(offset <= body.len(), "the server never holds more than was sent");
        if offset == body.len() {
            // The last PATCH landed but its answer was lost: HEAD names the file.
            return head
                .headers()
                .get("filedock-file-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        let end = (offset + (256 << 10)).min(body.len());
        let resp = http
            .patch(&url)
            .bearer_auth(key)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(body[offset..end].to_vec())
            .send()
            .ok()?;
        if resp.status().as_u16() != 204 {
            return None;
        }
        if end == body.len() {
            return resp
                .headers()
                .get("filedock-file-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
    }
}

fn config(dir: &Path, backend: &str) -> std::path::PathBuf {
    let path = dir.join("filedock.toml");
    std::fs::write(
        &path,
        format!(
            "orphan_grace_secs = {GRACE_SECS}\n{backend}\n[policies.native]\nmax_size = 16777216\n\
             [limits]\nrequests_per_second = 0\nmax_concurrent_uploads = 0\n"
        ),
    )
    .unwrap();
    path
}

/// `doctor --json`, or `None` when it could not finish (the store did not answer).
fn try_doctor(data: &Path, config: &Path) -> Option<Value> {
    let out = filedock_with(data, Some(config), &["doctor", "--json"]);
    serde_json::from_slice(&out.stdout).ok()
}

fn doctor(data: &Path, config: &Path) -> Value {
    let out = filedock_with(data, Some(config), &["doctor", "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn crash_and_recover(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), backend);
    let key = create_key_with(&data, Some(&cfg), "crash", "integration");
    let mut server = Server::start_with(&data, Some(&cfg));
    let addr = server.base.trim_start_matches("http://").to_owned();
    let base = server.base.clone();

    let acked: Arc<Mutex<Vec<(usize, String, String)>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (base, key, acked) = (base.clone(), key.clone(), acked.clone());
        clients.push(std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let body = content(i);
            let mut location = None;
            let mut attempts = 0;
            while Instant::now() < deadline {
                attempts += 1;
                let got = if i % 3 == 0 {
                    tus_step(&http, &base, &key, i, &body, &mut location)
                } else {
                    raw_upload(&http, &base, &key, i, &body)
                };
                if let Some(id) = got {
                    acked.lock().unwrap().push((i, id, sha(&body)));
                    return attempts;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("client {i} never got its upload acknowledged");
        }));
    }

    // Kill the server at random moments while the uploads run, restarting it each time.
    let mut rng = Rng(0x5eed_f11e_d0c4);
    let mut survived = 0;
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(150 + rng.below(900)));
        server.signal("KILL");
        let _ = server.child.wait();
        survived += 1;
        let during = acked.lock().unwrap().len();
        eprintln!("SIGKILL {survived}: {during} uploads acknowledged so far");
        server = Server::start_at(&data, Some(&cfg), &addr);
    }
    let attempts: Vec<usize> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        CLIENTS,
        "every client got its upload acknowledged in the end"
    );
    let retried = attempts.iter().filter(|a| **a > 1).count();
    assert!(retried > 0, "the kills hit uploads in flight");

    // Every acknowledged file is intact.
    let http = reqwest::blocking::Client::new();
    for (i, id, digest) in &acked {
        let got = http
            .get(format!("{base}/v1/files/{id}/content"))
            .bearer_auth(&key)
            .send()
            .unwrap();
        assert_eq!(got.status().as_u16(), 200, "client {i}'s file {id}");
        assert_eq!(&sha(&got.bytes().unwrap()), digest, "client {i}'s file {id} is intact");
    }
    // Nothing partial is visible: every listed file is whole and matches its recorded hash.
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!("{base}/v1/files?limit=1000&cursor={cursor}"))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        listed.extend(page["files"].as_array().unwrap().clone());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert!(listed.len() >= CLIENTS, "{} listed", listed.len());
    for f in &listed {
        let id = f["id"].as_str().unwrap();
        let got = http
            .get(format!("{base}/v1/files/{id}/content"))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(Some(got.len() as u64), f["size"].as_u64(), "{id} is whole");
        // A tus upload on S3 is not re-read to hash it (its bytes crossed restarts); its
        // bytes are checked below all the same.
        if let Some(recorded) = f["sha256"].as_str() {
            assert_eq!(recorded, sha(&got), "{id} matches its hash");
        }
        let i: usize = f["name"]
            .as_str()
            .unwrap()
            .trim_end_matches(".bin")
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(got.as_ref(), content(i).as_slice(), "{id} holds client {i}'s bytes");
    }
    let duplicates = listed.len() - CLIENTS;

    // Stop, let the killed instance's lease lapse (its writes are then known to be dead), and
    // let the start-up scan repair.
    server.signal("KILL");
    let _ = server.child.wait();
    std::thread::sleep(Duration::from_secs(LEASE_SECS + GRACE_SECS) + Duration::from_millis(500));
    let before = doctor(&data, &cfg);
    let server = Server::start_at(&data, Some(&cfg), &addr);
    // The scan runs in the background; on a busy machine it may take a while (at most 30 s).
    // While it deletes orphans, s3s-fs (a directory walk) can fail a listing that races a
    // delete: such a doctor run is not an answer, and the next one is.
    let mut after = Value::Null;
    for _ in 0..300 {
        if let Some(d) = try_doctor(&data, &cfg) {
            after = d;
            if after["clean"] == true && after["in_flight"] == 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(after["clean"], true, "after the start-up scan: {after}");
    assert_eq!(after["in_flight"], 0, "no crashed write is left: {after}");
    assert_eq!(after["rows"].as_u64(), Some(listed.len() as u64), "{after}");
    let tmp = data.join("blobs").join("local").join("tmp");
    if tmp.exists() {
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no temp file is left");
    }
    eprintln!(
        "{KILLS} SIGKILLs during {CLIENTS} concurrent uploads: {} acknowledged and intact, {retried} clients retried, \
         {duplicates} complete files written for retried requests whose answer was lost, {} orphans found before the \
         start-up scan, 0 after",
        acked.len(),
        before["orphans"].as_array().map_or(0, Vec::len)
    );
    drop(server);
}

#[test]
fn sigkill_during_100_uploads_loses_nothing_on_the_embedded_default() {
    crash_and_recover("");
}

#[test]
fn sigkill_during_100_uploads_loses_nothing_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    crash_and_recover(&s3_postgres_toml(&s3, &pg));
}

#[test]
fn doctor_reports_and_repairs_what_catalog_and_storage_disagree_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "");
    let key = create_key_with(&data, Some(&cfg), "doc", "integration");
    let server = Server::start_with(&data, Some(&cfg));
    let http = reqwest::blocking::Client::new();
    let mut keys = Vec::new();
    for name in ["kept.txt", "lost.txt"] {
        let v: Value = http
            .post(format!("{}/v1/files?name={name}", server.base))
            .bearer_auth(&key)
            .body(name.as_bytes().to_vec())
            .send()
            .unwrap()
            .json()
            .unwrap();
        keys.push((
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        ));
    }
    drop(server);
    let objects = data.join("blobs").join("local").join("objects");
    let root = if objects.exists() {
        objects
    } else {
        data.join("blobs").join("local")
    };
    std::fs::remove_file(root.join(&keys[1].1)).unwrap();
    std::fs::create_dir_all(root.join("doc/stray")).unwrap();
    std::fs::write(root.join("doc/stray/orphan.bin"), b"nobody owns me").unwrap();

    let found = filedock_with(&data, Some(&cfg), &["doctor", "--json", "--grace-secs", "0"]);
    assert_eq!(found.status.code(), Some(1), "problems found → exit 1");
    let report: Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(report["orphans"][0]["key"], "doc/stray/orphan.bin", "{report}");
    assert_eq!(report["missing"][0]["id"], keys[1].0.as_str(), "{report}");
    assert_eq!(
        (report["objects"].as_u64(), report["rows"].as_u64()),
        (Some(2), Some(2))
    );

    let fixed = filedock_with(&data, Some(&cfg), &["doctor", "--fix", "--grace-secs", "0"]);
    assert!(fixed.status.success());
    let text = String::from_utf8_lossy(&fixed.stdout);
    assert!(
        text.contains("orphan (deleted): local:doc/stray/orphan.bin") && text.contains("repaired"),
        "{text}"
    );
    assert!(!root.join("doc/stray/orphan.bin").exists());
    let clean = filedock_with(&data, Some(&cfg), &["doctor"]);
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stdout));
    assert!(String::from_utf8_lossy(&clean.stdout).contains("clean"));

    // The lost file now answers 404; the kept one is intact.
    let server = Server::start_with(&data, Some(&cfg));
    let lost = http
        .get(format!("{}/v1/files/{}/content", server.base, keys[1].0))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(lost.status().as_u16(), 404);
    let kept = http
        .get(format!("{}/v1/files/{}/content", server.base, keys[0].0))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(kept.bytes().unwrap().as_ref(), b"kept.txt");
}
