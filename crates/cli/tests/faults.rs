//! The fault suite: real processes, real faults. A data disk filled to 0 bytes (a tmpfs), log
//! sinks that fail (standard error on a full device, a closed pipe, a pipe nobody reads), an
//! instance pointed at the wrong bucket or the wrong database beside a working one, PostgreSQL
//! stopped and started mid-load (a cluster of the test's own), the S3 server frozen (SIGSTOP)
//! and killed (a process of its own). For each: every request answered or refused with the
//! documented status within its deadline, no acknowledged upload lost, no ready row without its
//! bytes, `doctor` clean afterwards. Each test prints what it injected and what came of it.
//!
//! Needs root (mount, runuser), as CI has.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, Server, create_key_with, filedock_with, postgres_database};
use filedock_testkit::{PrivatePostgres, S3_BUCKET, S3Server};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `filedock keys create`, returning `(id, secret)`.
fn key_with_id(data: &Path, config: Option<&Path>) -> (String, String) {
    let out = filedock_with(
        data,
        config,
        &["keys", "create", "--project", "demo", "--kind", "integration"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let id = text.split_whitespace().nth(3).unwrap().to_owned();
    (id, text.lines().last().unwrap().to_owned())
}

fn upload(base: &str, key: &str, name: &str, body: Vec<u8>) -> reqwest::Result<reqwest::blocking::Response> {
    http()
        .post(format!("{base}/v1/files?name={name}"))
        .bearer_auth(key)
        .body(body)
        .send()
}

fn doctor(data: &Path, config: Option<&Path>) -> Value {
    let out = filedock_with(data, config, &["doctor", "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Every live file of the project: `(id, status, size, sha256)`, in listing order.
fn listing(base: &str, key: &str) -> Vec<(String, String, u64, String)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http()
            .get(format!("{base}/v1/files?limit=1000&cursor={cursor}"))
            .bearer_auth(key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        for f in page["files"].as_array().unwrap() {
            out.push((
                f["id"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap_or(0),
                f["sha256"].as_str().unwrap_or("").to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

// ---- a data disk filled to 0 ----

/// A tmpfs of `mib` MiB on a temp dir, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(mib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0755"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs (the fault suite runs as root, as CI does)");
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(self.path()).unwrap();
        s.f_bavail * s.f_frsize
    }

    /// Fills the disk until at most `leave` bytes are free (0: until a write fails).
    fn fill(&self, leave: u64) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("fill"))
            .unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            let free = self.free();
            if leave > 0 && free <= leave {
                return;
            }
            let n = if leave > 0 {
                chunk.len().min((free - leave) as usize)
            } else {
                chunk.len()
            };
            if f.write_all(&chunk[..n]).is_err() {
                return;
            }
        }
    }

    fn unfill(&self) {
        std::fs::remove_file(self.path().join("fill")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn tus_create(base: &str, key: &str, length: usize) -> String {
    let resp = http()
        .post(format!("{base}/tus/"))
        .bearer_auth(key)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length.to_string())
        .header("upload-metadata", "filename YmlnLmJpbg==")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().unwrap());
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    }
}

fn tus_patch(url: &str, key: &str, offset: usize, body: Vec<u8>) -> reqwest::Result<reqwest::blocking::Response> {
    http()
        .patch(url)
        .bearer_auth(key)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(body)
        .send()
}

fn tus_offset(url: &str, key: &str) -> u64 {
    let resp = http()
        .head(url)
        .bearer_auth(key)
        .header("tus-resumable", "1.0.0")
        .send()
        .unwrap();
    resp.headers()["upload-offset"].to_str().unwrap().parse().unwrap()
}

fn form(name: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut f = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    f.extend_from_slice(body);
    f.extend_from_slice(format!("\r\n{extra}--b--\r\n").as_bytes());
    f
}

#[test]
fn a_full_data_disk_refuses_writes_with_507_and_keeps_deletes_reads_and_keys_working() {
    let disk = Tmpfs::mount(40);
    let data = disk.path().join("data");
    let (_, key) = key_with_id(&data, None);
    let (doomed_id, doomed) = key_with_id(&data, None);
    let server = Server::start_detached(&data, None, Stdio::null(), &[]);
    let base = &server.base;
    let mut kept = Vec::new();
    for i in 0..3 {
        let body = bytes(1 << 20, i);
        let f: Value = upload(base, &key, &format!("f{i}.bin"), body.clone())
            .unwrap()
            .json()
            .unwrap();
        kept.push((f["id"].as_str().unwrap().to_owned(), body));
    }
    let tus_len = 8 << 20;
    let tus_body = bytes(tus_len, 9);
    let tus = tus_create(base, &key, tus_len);
    assert_eq!(
        tus_patch(&tus, &key, 0, tus_body[..1 << 20].to_vec()).unwrap().status(),
        204
    );

    // 1. A PATCH that runs out of space half-way keeps nothing past the recorded offset.
    disk.fill(2 << 20);
    let free_before = disk.free();
    let patch = tus_patch(&tus, &key, 1 << 20, tus_body[1 << 20..5 << 20].to_vec());
    if let Ok(resp) = patch {
        // The answer may be lost when the server refuses before the body is all sent; what
        // counts is what it kept.
        assert_eq!(resp.status(), 507, "{}", resp.text().unwrap());
    }
    assert_eq!(tus_offset(&tus, &key), 1 << 20, "the offset did not move");
    let free_after = disk.free();
    assert!(
        free_after + (64 << 10) >= free_before,
        "the bytes past the offset were dropped at once: {free_before} free before, {free_after} after"
    );

    // 2. At 0 bytes free: every write is 507 insufficient_storage, in each dialect's envelope.
    disk.fill(0);
    assert!(disk.free() < (64 << 10), "the disk is full: {}", disk.free());
    let mut refused = 0;
    let native = upload(base, &key, "late.txt", b"late".to_vec()).unwrap();
    assert_eq!(native.status(), 507);
    assert!(native.headers().contains_key("retry-after"));
    assert_eq!(native.json::<Value>().unwrap()["error"]["code"], "insufficient_storage");
    refused += 1;
    let huawei = http()
        .post(format!("{base}/v1/demo/agent-runtime/upload-file"))
        .header("x-auth-token", &key)
        .header("content-type", "multipart/form-data; boundary=b")
        .body(form("note.txt", b"hello", ""))
        .send()
        .unwrap();
    assert_eq!(huawei.status(), 507);
    assert_eq!(huawei.json::<Value>().unwrap()["error_code"], "FD.0507");
    refused += 1;
    let junior = http()
        .post(format!("{base}/api/v1/upload"))
        .bearer_auth(&key)
        .header("agent", "dify")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(form(
            "note.txt",
            b"hello",
            "--b\r\nContent-Disposition: form-data; name=\"created_by\"\r\n\r\nme\r\n",
        ))
        .send()
        .unwrap();
    assert_eq!(junior.status(), 507);
    assert_eq!(junior.json::<Value>().unwrap()["code"], 507);
    refused += 1;

    // Reads, deletes, key revocation and doctor keep working.
    for (id, body) in &kept {
        let got = http()
            .get(format!("{base}/v1/files/{id}/content"))
            .bearer_auth(&key)
            .send()
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().unwrap().as_ref(), body.as_slice());
    }
    let (deleted, _) = kept.remove(0);
    let del = http()
        .delete(format!("{base}/v1/files/{deleted}"))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(del.status(), 204, "a delete frees space: {}", del.text().unwrap());
    disk.fill(0);
    let revoke = filedock_with(&data, None, &["keys", "revoke", &doomed_id]);
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    let denied = http()
        .get(format!("{base}/v1/files"))
        .bearer_auth(&doomed)
        .send()
        .unwrap();
    assert_eq!(denied.status(), 401, "the revocation took effect");
    let report = doctor(&data, None);
    assert_eq!(report["clean"], true, "{report}");

    // 3. Space returns: uploads work again without a restart, and the tus upload finishes.
    disk.unfill();
    let again = upload(base, &key, "again.bin", bytes(1 << 20, 7)).unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(
        tus_patch(&tus, &key, 1 << 20, tus_body[1 << 20..].to_vec())
            .unwrap()
            .status(),
        204
    );
    assert_eq!(tus_offset(&tus, &key), tus_len as u64);
    let files = listing(base, &key);
    let whole = files
        .iter()
        .find(|f| f.2 == tus_len as u64)
        .expect("the tus file is listed");
    assert_eq!(whole.3, sha(&tus_body), "the tus file is whole");
    for (id, body) in &kept {
        assert!(files.iter().any(|f| &f.0 == id && f.3 == sha(body)), "{id} kept");
    }
    drop(server);
    assert_eq!(doctor(&data, None)["clean"], true);
    eprintln!(
        "disk full: faults 2 (2 MiB left during a 4 MiB PATCH; 0 bytes), writes refused with 507 {refused} + 1 PATCH, \
         reads 3/3, delete 1/1, revoke 1/1, doctor clean, after space returned 2/2 writes, bytes lost 0"
    );
}

// ---- log sinks that fail ----

/// Makes a server's standard error.
type MakeSink = Box<dyn FnMut() -> Stdio>;

#[test]
fn a_failing_log_sink_never_stops_requests_or_the_sweeper() {
    let dir = tempfile::tempdir().unwrap();
    // A file on a tmpfs filled to its last byte.
    let full = Tmpfs::mount(1);
    let log = std::fs::File::create(full.path().join("filedock.log")).unwrap();
    full.fill(0);
    let mut log = Some(log);
    let sinks: [(&str, MakeSink); 4] = [
        (
            "standard error on a full device",
            Box::new(|| Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())),
        ),
        (
            "standard error on a full tmpfs",
            Box::new(move || Stdio::from(log.take().unwrap())),
        ),
        ("a pipe whose reader went away", Box::new(Stdio::piped)),
        ("a pipe nobody reads", Box::new(Stdio::piped)),
    ];
    let mut report = Vec::new();
    for (n, (what, mut sink)) in sinks.into_iter().enumerate() {
        let data = dir.path().join(format!("data{n}"));
        let config = write_config(dir.path(), &format!("c{n}.toml"), "sweep_interval_secs = 1\n");
        let key = create_key_with(&data, Some(&config), "demo", "integration");
        let mut server = Server::start_detached(&data, Some(&config), sink(), &[("RUST_LOG", "debug")]);
        // The reader goes away (the pipe's read end closes), or stays and never reads.
        let unread = server.child.stderr.take();
        if n == 2 {
            drop(unread);
        } else {
            std::mem::forget(unread);
        }
        let mut answered = 0;
        for i in 0..100 {
            let up = upload(
                &server.base,
                &key,
                &format!("f{i}.txt"),
                format!("file {i}").into_bytes(),
            )
            .unwrap();
            assert_eq!(up.status(), 201, "{what}: upload {i}");
            let id = up.json::<Value>().unwrap()["id"].as_str().unwrap().to_owned();
            let got = http()
                .get(format!("{}/v1/files/{id}/content", server.base))
                .bearer_auth(&key)
                .send()
                .unwrap();
            assert_eq!(got.text().unwrap(), format!("file {i}"), "{what}: read {i}");
            let health = http().get(format!("{}/healthz", server.base)).send().unwrap();
            assert_eq!(health.status(), 200, "{what}: /healthz");
            answered += 3;
        }
        // The sweeper has run since (once a second) and /readyz says every job is well.
        std::thread::sleep(Duration::from_millis(1500));
        let ready = http().get(format!("{}/readyz", server.base)).send().unwrap();
        assert_eq!(ready.status(), 200, "{what}: {}", ready.text().unwrap());
        let metrics = http()
            .get(format!("{}/metrics", server.base))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let sweeps = metric(&metrics, "filedock_job_runs_total{job=\"sweeper\"}");
        assert!(sweeps >= 1.0, "{what}: the sweeper runs: {metrics}");
        // Jobs that ran once, at start, before the first request: counted too (the recorder was
        // installed with the router, after they ran, and their runs were lost).
        for job in ["identity", "startup-scan"] {
            let runs = metric(&metrics, &format!("filedock_job_runs_total{{job=\"{job}\"}}"));
            assert_eq!(runs, 1.0, "{what}: {job} ran once: {metrics}");
        }
        let dropped: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("filedock_log_lines_dropped_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if n < 3 {
            assert!(dropped > 0.0, "{what}: lines that could not be written are counted");
        }
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "{what}: the server is alive"
        );
        report.push(format!(
            "{what}: {answered}/300 answered, {} lines dropped",
            dropped.abs()
        ));
    }
    eprintln!("failing log sinks: {}", report.join("; "));
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

// ---- an instance on the wrong bucket or the wrong database ----

fn wait_ready_says(base: &str, what: &str) -> String {
    let start = Instant::now();
    let resp = http().get(format!("{base}/readyz")).send().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "/readyz answered in {:?}",
        start.elapsed()
    );
    assert_eq!(resp.status(), 503, "{what}");
    let body: Value = resp.json().unwrap();
    body["reason"].as_str().unwrap().to_owned()
}

#[test]
fn an_instance_on_an_empty_bucket_or_another_database_changes_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let s3_root = dir.path().join("s3");
    std::fs::create_dir(&s3_root).unwrap();
    let s3 = S3Server::start_at(&s3_root, "127.0.0.1:0");
    std::fs::create_dir(s3_root.join("other")).unwrap();
    let pg = postgres_database().expect("PostgreSQL (TEST_PG_URL)");
    let fleet_toml = format!("orphan_grace_secs = 0\n{}", common::s3_postgres_toml(&s3, &pg));
    let fleet_cfg = write_config(dir.path(), "fleet.toml", &fleet_toml);
    let key = create_key_with(&dir.path().join("d1"), Some(&fleet_cfg), "demo", "integration");
    let fleet = Server::start_with(&dir.path().join("d1"), Some(&fleet_cfg));
    for i in 0..20 {
        assert_eq!(
            upload(&fleet.base, &key, &format!("f{i}.bin"), bytes(10_000, i))
                .unwrap()
                .status(),
            201
        );
    }
    let before = listing(&fleet.base, &key);
    assert_eq!(before.len(), 20);

    // The same database, an empty bucket.
    let wrong_bucket = Server::start_detached(
        &dir.path().join("d2"),
        Some(&fleet_cfg),
        Stdio::null(),
        &[("FILEDOCK_BACKENDS__S3__BUCKET", "other")],
    );
    // Another, new database, the fleet's bucket.
    let other_pg = postgres_database().unwrap();
    let other_cfg = write_config(
        dir.path(),
        "other.toml",
        &format!("orphan_grace_secs = 0\n{}", common::s3_postgres_toml(&s3, &other_pg)),
    );
    let wrong_db = Server::start_detached(&dir.path().join("d3"), Some(&other_cfg), Stdio::null(), &[]);
    // Their start-up scans and sweepers would have run by now.
    std::thread::sleep(Duration::from_secs(2));
    let why = wait_ready_says(&wrong_bucket.base, "empty bucket");
    assert!(why.contains("'s3'") && why.contains("no deployment marker"), "{why}");
    let why = wait_ready_says(&wrong_db.base, "another database");
    assert!(why.contains("'s3'") && why.contains("right database"), "{why}");
    let other_key = create_key_with(&dir.path().join("d3"), Some(&other_cfg), "demo", "integration");
    for (base, key) in [(&wrong_bucket.base, &key), (&wrong_db.base, &other_key)] {
        let refused = upload(base, key, "x.bin", b"x".to_vec()).unwrap();
        assert_eq!(refused.status(), 503);
        assert!(refused.headers().contains_key("retry-after"));
        assert_eq!(refused.json::<Value>().unwrap()["error"]["code"], "unavailable");
    }
    let fixed = Command::new(BIN)
        .arg("--config")
        .arg(&fleet_cfg)
        .arg("--data-dir")
        .arg(dir.path().join("d2"))
        .args(["doctor", "--fix", "--grace-secs", "0"])
        .env("FILEDOCK_BACKENDS__S3__BUCKET", "other")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&fixed.stderr);
    assert!(!fixed.status.success(), "doctor --fix refuses on the wrong bucket too");
    assert!(said.contains("no deployment marker"), "{said}");

    assert_eq!(listing(&fleet.base, &key), before, "0 catalog rows changed");
    for (id, _, size, digest) in &before {
        let got = http()
            .get(format!("{}/v1/files/{id}/content", fleet.base))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!((got.len() as u64, sha(&got)), (*size, digest.clone()), "{id} intact");
    }
    assert_eq!(doctor(&dir.path().join("d1"), Some(&fleet_cfg))["clean"], true);

    // The embedded flavour: a second data dir (a new SQLite catalog) on the first one's blobs.
    let d4 = dir.path().join("d4");
    let ekey = create_key_with(&d4, None, "demo", "integration");
    let embedded = Server::start_detached(&d4, None, Stdio::null(), &[]);
    let f: Value = upload(&embedded.base, &ekey, "e.bin", bytes(1000, 1))
        .unwrap()
        .json()
        .unwrap();
    let blobs = d4.join("blobs").join("local");
    let shared_cfg = write_config(
        dir.path(),
        "shared.toml",
        &format!("[backends.local]\ntype = \"local\"\npath = \"{}\"\n", blobs.display()),
    );
    let intruder = Server::start_detached(&dir.path().join("d5"), Some(&shared_cfg), Stdio::null(), &[]);
    std::thread::sleep(Duration::from_secs(1));
    let why = wait_ready_says(&intruder.base, "another SQLite catalog on the same directory");
    assert!(why.contains("right database"), "{why}");
    let got = http()
        .get(format!(
            "{}/v1/files/{}/content",
            embedded.base,
            f["id"].as_str().unwrap()
        ))
        .bearer_auth(&ekey)
        .send()
        .unwrap();
    assert_eq!(got.status(), 200, "the first instance's file is still there");
    eprintln!(
        "wrong bucket / wrong database / wrong SQLite: 3 instances refused (readyz 503 naming the cause), \
         20 files and their rows unchanged, doctor clean"
    );
}

// ---- PostgreSQL stopped and started mid-load ----

#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<(String, Vec<u8>)>,
    unavailable: usize,
    transport: usize,
    other: Vec<String>,
    slowest: Duration,
}

/// `threads` clients upload until `stop`, each file `size` bytes, at most `per_thread` each.
fn load(base: &str, key: &str, threads: usize, per_thread: usize, size: usize, stop: Arc<AtomicBool>) -> Outcomes {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (base, key, stop) = (base.to_owned(), key.to_owned(), stop.clone());
            std::thread::spawn(move || {
                let mut o = Outcomes::default();
                for i in 0..per_thread {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let body = bytes(size, (t * 31 + i) as u8);
                    let started = Instant::now();
                    let resp = upload(&base, &key, &format!("t{t}-{i}.bin"), body.clone());
                    o.slowest = o.slowest.max(started.elapsed());
                    match resp {
                        Ok(r) if r.status() == 201 => {
                            let id = r.json::<Value>().unwrap()["id"].as_str().unwrap().to_owned();
                            o.acknowledged.push((id, body));
                        }
                        Ok(r) if r.status() == 503 => {
                            assert!(r.headers().contains_key("retry-after"), "503 with Retry-After");
                            o.unavailable += 1;
                        }
                        Ok(r) => o.other.push(format!("{} {}", r.status(), r.text().unwrap_or_default())),
                        Err(_) => o.transport += 1,
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                o
            })
        })
        .collect();
    let mut all = Outcomes::default();
    for h in handles {
        let o = h.join().unwrap();
        all.acknowledged.extend(o.acknowledged);
        all.unavailable += o.unavailable;
        all.transport += o.transport;
        all.other.extend(o.other);
        all.slowest = all.slowest.max(o.slowest);
    }
    all
}

/// Every acknowledged file reads back whole; returns the bytes lost (must be 0).
fn lost_bytes(base: &str, key: &str, acknowledged: &[(String, Vec<u8>)]) -> usize {
    let mut lost = 0;
    for (id, body) in acknowledged {
        let got = http()
            .get(format!("{base}/v1/files/{id}/content"))
            .bearer_auth(key)
            .send()
            .unwrap();
        if got.status() != 200 || got.bytes().unwrap().as_ref() != body.as_slice() {
            lost += body.len();
        }
    }
    lost
}

#[test]
fn postgres_stopped_and_started_mid_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PrivatePostgres::start();
    let s3 = S3Server::start();
    let cfg = write_config(
        dir.path(),
        "c.toml",
        &format!("orphan_grace_secs = 0\n{}", common::s3_postgres_toml(&s3, &pg.url)),
    );
    let data = dir.path().join("data");
    let key = create_key_with(&data, Some(&cfg), "demo", "integration");
    let server = Server::start_with(&data, Some(&cfg));
    let stop = Arc::new(AtomicBool::new(false));
    let (base, k, s) = (server.base.clone(), key.clone(), stop.clone());
    // Bounded: at most 4 × 1,000 uploads, stopped 2 s after PostgreSQL is back.
    let clients = std::thread::spawn(move || load(&base, &k, 4, 1000, 20_000, s));
    std::thread::sleep(Duration::from_millis(700));
    pg.stop_immediately();
    std::thread::sleep(Duration::from_millis(300));
    let reason = wait_ready_says(&server.base, "PostgreSQL stopped");
    assert!(reason.contains("catalog"), "{reason}");
    // Longer than a statement waits for a connection (10 s), so requests are refused.
    std::thread::sleep(Duration::from_secs(12));
    pg.start_again();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let o = clients.join().unwrap();
    assert!(o.other.is_empty(), "only 201 or 503: {:?}", o.other);
    assert_eq!(o.transport, 0, "every request was answered");
    // A statement waits at most 10 s for a connection; a request that waits makes two.
    assert!(
        o.slowest < Duration::from_secs(30),
        "answered within the deadline: {:?}",
        o.slowest
    );
    assert!(o.unavailable > 0, "the outage was seen");
    let after = upload(&server.base, &key, "after.bin", bytes(1000, 3)).unwrap();
    assert_eq!(after.status(), 201, "PostgreSQL back: uploads work without a restart");
    let lost = lost_bytes(&server.base, &key, &o.acknowledged);
    assert_eq!(lost, 0, "no acknowledged byte lost");
    let before_scan = doctor(&data, Some(&cfg));
    assert_eq!(
        before_scan["missing"],
        serde_json::json!([]),
        "0 ready rows without bytes: {before_scan}"
    );
    // Orphans of outcomes that were unknown are the start-up scan's (grace 0 here).
    drop(server);
    let server = Server::start_with(&data, Some(&cfg));
    let mut report = doctor(&data, Some(&cfg));
    for _ in 0..50 {
        if report["clean"] == true {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        report = doctor(&data, Some(&cfg));
    }
    assert_eq!(report["clean"], true, "{report}");
    drop(server);
    eprintln!(
        "PostgreSQL stopped (-m immediate) for ~12.3 s under 4 uploading clients: {} requests, {} acknowledged, \
         {} refused 503, 0 unanswered, slowest {:?}, {} orphans of unknown outcomes kept then removed by the \
         start-up scan, 0 ready rows without bytes, bytes lost {lost}",
        o.acknowledged.len() + o.unavailable,
        o.acknowledged.len(),
        o.unavailable,
        o.slowest,
        before_scan["orphans"].as_array().map_or(0, Vec::len),
    );
}

// ---- the S3 server frozen and killed ----

/// The test S3 server as a process of its own (it can be stopped, frozen and killed).
fn s3_process(root: &Path, addr: &str) -> (Child, String) {
    let bin = Path::new(BIN).with_file_name("s3-test-server");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p filedock-testkit --bin s3-test-server` (scripts/test does)",
        bin.display()
    );
    let mut child = Command::new(&bin)
        .arg(root)
        .arg(addr)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut toml = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..6 {
        toml.push_str(&lines.next().unwrap().unwrap());
        toml.push('\n');
    }
    (child, toml)
}

fn kill(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_frozen_or_killed_s3_store_is_answered_503_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s3");
    std::fs::create_dir_all(root.join(S3_BUCKET)).unwrap();
    let (mut s3, toml) = s3_process(&root, "127.0.0.1:0");
    let endpoint = toml
        .lines()
        .find_map(|l| l.strip_prefix("endpoint = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    let addr = endpoint.trim_start_matches("http://").to_owned();
    let cfg = write_config(
        dir.path(),
        "c.toml",
        &format!("default_backend = \"s3\"\n[backends.s3]\n{toml}timeout_secs = 2\n"),
    );
    let data = dir.path().join("data");
    let key = create_key_with(&data, Some(&cfg), "demo", "integration");
    let server = Server::start_with(&data, Some(&cfg));
    let base = server.base.clone();
    let mut acked = Vec::new();
    for i in 0..5 {
        let body = bytes(50_000, i);
        let r = upload(&base, &key, &format!("f{i}.bin"), body.clone()).unwrap();
        assert_eq!(r.status(), 201);
        acked.push((r.json::<Value>().unwrap()["id"].as_str().unwrap().to_owned(), body));
    }
    let mut refused = 0;
    let mut slowest = Duration::ZERO;
    for fault in ["STOP", "KILL"] {
        kill(&s3, fault);
        if fault == "KILL" {
            let _ = s3.wait();
        }
        let reason = wait_ready_says(&base, fault);
        assert!(reason.contains("'s3'"), "{reason}");
        for i in 0..3 {
            let started = Instant::now();
            let up = upload(&base, &key, &format!("late{i}.bin"), bytes(50_000, 40)).unwrap();
            assert_eq!(up.status(), 503, "{fault}: {}", up.text().unwrap());
            let read = http()
                .get(format!("{base}/v1/files/{}/content", acked[0].0))
                .bearer_auth(&key)
                .send()
                .unwrap();
            assert_eq!(read.status(), 503, "{fault}: a read");
            assert!(read.headers().contains_key("retry-after"));
            slowest = slowest.max(started.elapsed());
            refused += 2;
        }
        assert!(slowest < Duration::from_secs(15), "{fault}: answered in {slowest:?}");
        if fault == "STOP" {
            kill(&s3, "CONT");
        } else {
            s3 = s3_process(&root, &addr).0;
        }
        let started = Instant::now();
        loop {
            let r = upload(&base, &key, "back.bin", bytes(50_000, 50)).unwrap();
            if r.status() == 201 {
                acked.push((
                    r.json::<Value>().unwrap()["id"].as_str().unwrap().to_owned(),
                    bytes(50_000, 50),
                ));
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{fault}: S3 back, uploads work again"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let lost = lost_bytes(&base, &key, &acked);
    assert_eq!(lost, 0);
    drop(server);
    assert_eq!(doctor(&data, Some(&cfg))["clean"], true);
    let _ = s3.kill();
    let _ = s3.wait();
    eprintln!(
        "S3 frozen (SIGSTOP) and killed: {refused} requests refused 503 with Retry-After, slowest {slowest:?} \
         (timeout_secs = 2), /readyz under 2 s naming 's3', {} acknowledged files intact, bytes lost {lost}",
        acked.len()
    );
}
