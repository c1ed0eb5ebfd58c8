//! Large files against the real binary, on the embedded default and on S3 (s3s-fs) +
//! PostgreSQL: a 1 GiB multipart upload through presigned part URLs with 8 parts in flight, and
//! a 200 MiB tus upload by a real tus client (tuspy, from PyPI) whose server is killed half way,
//! restarted, and resumed to an identical SHA-256.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::*;
use filedock_testkit::S3Server;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

/// 16 pseudo-random blocks of 1 MiB; block `i` of a file is `blocks[(i * 7 + i / 16) % 16]`, so
/// a large file needs no large buffer and is not a repetition of one block.
fn blocks() -> Vec<Bytes> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..16)
        .map(|_| {
            let mut b = Vec::with_capacity(MIB as usize);
            while b.len() < MIB as usize {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.extend_from_slice(&x.to_le_bytes());
            }
            Bytes::from(b)
        })
        .collect()
}

fn block(blocks: &[Bytes], i: u64) -> Bytes {
    blocks[((i * 7 + i / 16) % 16) as usize].clone()
}

fn expected_sha256(blocks: &[Bytes], n: u64) -> String {
    let mut h = Sha256::new();
    for i in 0..n {
        h.update(block(blocks, i));
    }
    hex::encode(h.finalize())
}

/// S3 for the default backend, PostgreSQL for the catalog.
fn scaled_config(dir: &Path, s3: &S3Server, pg: &str) -> PathBuf {
    let path = dir.join("filedock.toml");
    let text = format!(
        "default_backend = \"s3\"\n[backends.s3]\n{}\n[catalog]\ntype = \"postgres\"\nurl = \"{pg}\"\n",
        s3.backend_toml()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn multipart_1gib(base: &str, key: &str) {
    const PART: u64 = 128 * MIB;
    const SIZE: u64 = 1024 * MIB;
    let blocks = blocks();
    let http = reqwest::Client::new();
    let init: serde_json::Value = http
        .post(format!("{base}/v1/uploads/multipart"))
        .bearer_auth(key)
        .json(&serde_json::json!({"name": "big.bin", "size": SIZE, "part_size": PART}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(init["part_count"], 8, "{init}");
    let id = init["upload_id"].as_str().unwrap().to_owned();
    let parts: serde_json::Value = http
        .post(format!("{base}/v1/uploads/multipart/{id}/parts"))
        .bearer_auth(key)
        .json(&serde_json::json!({"part_numbers": [1, 2, 3, 4, 5, 6, 7, 8]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // All 8 parts at once, each streamed from the shared blocks.
    let mut tasks = Vec::new();
    for p in parts["parts"].as_array().unwrap().clone() {
        let http = http.clone();
        let blocks = blocks.clone();
        tasks.push(tokio::spawn(async move {
            let n = p["part_number"].as_u64().unwrap();
            let first = (n - 1) * PART / MIB;
            let body = futures_util::stream::iter(
                (first..first + PART / MIB).map(move |i| Ok::<_, std::io::Error>(block(&blocks, i))),
            );
            let mut req = http
                .put(p["url"].as_str().unwrap())
                .body(reqwest::Body::wrap_stream(body));
            for (k, v) in p["headers"].as_object().unwrap() {
                req = req.header(k.as_str(), v.as_str().unwrap());
            }
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "part {n}: {}", resp.status());
            let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
            serde_json::json!({"part_number": n, "etag": etag})
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    // Listed out of order first: a clear 400, and nothing is lost.
    let mut shuffled = done.clone();
    shuffled.swap(0, 7);
    let refused = http
        .post(format!("{base}/v1/uploads/multipart/{id}/complete"))
        .bearer_auth(key)
        .json(&serde_json::json!({"parts": shuffled}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let file: serde_json::Value = http
        .post(format!("{base}/v1/uploads/multipart/{id}/complete"))
        .bearer_auth(key)
        .json(&serde_json::json!({"parts": done}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(file["status"], "ready", "{file}");
    assert_eq!(file["size"], SIZE);
    let want = expected_sha256(&blocks, SIZE / MIB);
    if let Some(sha) = file["sha256"].as_str() {
        assert_eq!(sha, want);
    }
    // The bytes come back identical.
    let mut resp = http
        .get(format!("{base}/v1/files/{}/content", file["id"].as_str().unwrap()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let mut h = Sha256::new();
    let mut n = 0;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!((n, hex::encode(h.finalize())), (SIZE, want));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_1_gib_multipart_upload_with_8_parts_in_flight_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, "demo", "integration");
    let server = Server::start(&data);
    runtime().block_on(multipart_1gib(&server.base, &key));
    let left = std::fs::read_dir(data.join("blobs/local/uploads")).unwrap().count();
    assert_eq!(left, 0, "no part is left on disk");
}

#[test]
fn a_1_gib_multipart_upload_with_8_parts_in_flight_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = scaled_config(dir.path(), &s3, &pg);
    let data = dir.path().join("data");
    let key = create_key_with(&data, Some(&config), "demo", "integration");
    let server = Server::start_with(&data, Some(&config));
    runtime().block_on(multipart_1gib(&server.base, &key));
}

fn tus_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tus_upload.py")
}

fn tuspy(base: &str, key: &str, file: &Path, store: &Path) -> std::process::Child {
    let ok = Command::new("python3")
        .args(["-c", "import tusclient, requests"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "python3 with tuspy and requests is needed (pip install tuspy)");
    Command::new("python3")
        .arg(tus_script())
        .args([base, key])
        .arg(file)
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// tuspy uploads 200 MiB in 5 MiB chunks; the server is SIGKILLed once 100 MiB are in, then
/// restarted on the same address; tuspy runs again, resumes, and the file is identical.
fn tus_kill_and_resume(data: &Path, config: Option<&Path>) {
    const SIZE: u64 = 200 * MIB;
    let work = tempfile::tempdir().unwrap();
    let blocks = blocks();
    let file = work.path().join("big.bin");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..SIZE / MIB {
        f.write_all(&block(&blocks, i)).unwrap();
    }
    drop(f);
    let want = expected_sha256(&blocks, SIZE / MIB);
    let store = work.path().join("tus-urls.json");
    let key = create_key_with(data, config, "demo", "integration");
    let mut server = Server::start_with(data, config);
    let listen = server.base.trim_start_matches("http://").to_owned();

    let mut first = tuspy(&server.base, &key, &file, &store);
    let mut killed_at = 0;
    for line in BufReader::new(first.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(off) = line.strip_prefix("offset ") {
            let off: u64 = off.parse().unwrap();
            if off >= SIZE / 2 {
                // The next chunk is on its way: kill the server under it.
                server.signal("KILL");
                killed_at = off;
                break;
            }
        }
    }
    assert!(killed_at >= SIZE / 2, "the first run reached half way");
    let out = first.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the first run cannot finish with its server gone"
    );
    let _ = server.child.wait();

    server = Server::start_at(data, config, &listen);
    let second = tuspy(&server.base, &key, &file, &store);
    let out = second.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the resumed run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start: u64 = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("start "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        start >= killed_at && start < SIZE,
        "resumed at {start}, not from the start (killed at {killed_at})"
    );
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["downloaded_sha256"], want.as_str());
    assert_eq!(result["file"]["size"], SIZE);
    assert_eq!(result["file"]["name"], "big.bin");
    if let Some(sha) = result["file"]["sha256"].as_str() {
        assert_eq!(sha, want);
    }
}

#[test]
fn tuspy_resumes_a_200_mib_upload_after_a_kill_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    tus_kill_and_resume(&dir.path().join("data"), None);
}

#[test]
fn tuspy_resumes_a_200_mib_upload_after_a_kill_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = scaled_config(dir.path(), &s3, &pg);
    tus_kill_and_resume(&dir.path().join("data"), Some(&config));
}
