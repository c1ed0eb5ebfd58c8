//! Load, bounded: 10,000 small uploads at 64 concurrent over loopback against the real binary,
//! with the default limits. Every upload must succeed and every file be there afterwards with
//! the hash the client computed. Both flavours. The rate is printed, never asserted (speed is
//! measured in `bench/`).

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use filedock_testkit::S3Server;
use serde_json::Value;
use sha2::Digest;

const UPLOADS: usize = 10_000;
const CONCURRENCY: usize = 64;

fn body_of(i: usize) -> Vec<u8> {
    let len = 100 + (i * 7919) % 4000;
    (0..len)
        .map(|j| (i.wrapping_mul(31) ^ j.wrapping_mul(17)) as u8)
        .collect()
}

fn load(flavour: &str, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("filedock.toml");
    std::fs::write(&cfg, backend).unwrap();
    let key = create_key_with(&data, Some(&cfg), "load", "integration");
    let server = Server::start_with(&data, Some(&cfg));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (acked, errors, elapsed) = rt.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY {
            let (http, next, base, key) = (http.clone(), next.clone(), server.base.clone(), key.clone());
            workers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= UPLOADS {
                        break;
                    }
                    let body = body_of(i);
                    let digest = hex::encode(sha2::Sha256::digest(&body));
                    let resp = http
                        .post(format!("{base}/v1/files?name=load-{i}.bin"))
                        .bearer_auth(&key)
                        .body(body)
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: Value = r.json().await.unwrap();
                            assert_eq!(v["sha256"], digest.as_str());
                            acked.push((v["id"].as_str().unwrap().to_owned(), digest));
                        }
                        Ok(r) => errors.push(format!(
                            "upload {i}: {} {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        )),
                        Err(e) => errors.push(format!("upload {i}: {e}")),
                    }
                }
                (acked, errors)
            }));
        }
        let mut acked = Vec::new();
        let mut errors = Vec::new();
        for w in workers {
            let (a, e) = w.await.unwrap();
            acked.extend(a);
            errors.extend(e);
        }
        (acked, errors, started.elapsed())
    });
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(acked.len(), UPLOADS);

    // Every file is there, with the client's hash.
    let http = reqwest::blocking::Client::new();
    let mut listed: HashMap<String, String> = HashMap::new();
    let mut cursor = String::new();
    loop {
        let page: Value = http
            .get(format!("{}/v1/files?limit=1000&cursor={cursor}", server.base))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        for f in page["files"].as_array().unwrap() {
            listed.insert(
                f["id"].as_str().unwrap().to_owned(),
                f["sha256"].as_str().unwrap().to_owned(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(listed.len(), UPLOADS, "exactly the uploaded files are listed");
    for (id, digest) in &acked {
        assert_eq!(listed.get(id), Some(digest), "{id} is listed with its hash");
    }
    eprintln!(
        "{flavour}: {UPLOADS} uploads at {CONCURRENCY} concurrent in {:.1} s ({:.0}/s, debug build), 0 errors, 0 lost",
        elapsed.as_secs_f64(),
        UPLOADS as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn ten_thousand_uploads_at_64_concurrent_on_the_embedded_default() {
    load("embedded", "");
}

#[test]
fn ten_thousand_uploads_at_64_concurrent_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    load("S3 + PostgreSQL", &s3_postgres_toml(&s3, &pg));
}
