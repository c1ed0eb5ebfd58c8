//! Two filedock processes on one PostgreSQL and one S3 bucket, sharing a signing secret: what one
//! does, the other sees, and nothing depends on either's memory.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use common::*;
use filedock_testkit::S3Server;
use serde_json::{Value, json};
use sha2::Digest;

#[test]
fn two_instances_share_one_catalog_and_one_bucket() {
    let s3 = S3Server::start();
    two_instances_share(&s3.endpoint, &s3.backend_toml());
}

/// The same on moto's S3 server (an implementation no one here wrote).
#[test]
fn two_instances_share_one_catalog_and_one_bucket_on_moto() {
    let Some(moto) = filedock_testkit::MotoServer::start() else {
        return;
    };
    two_instances_share(&moto.endpoint, &moto.backend_toml());
}

fn two_instances_share(endpoint: &str, backend_toml: &str) {
    let Some(pg) = postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("signing.key");
    let config = dir.path().join("filedock.toml");
    std::fs::write(
        &config,
        format!(
            "default_backend = \"s3\"\nsigning_secret_file = \"{}\"\n[backends.s3]\n{}\n[catalog]\ntype = \"postgres\"\nurl = \"{pg}\"\n",
            secret.display(),
            backend_toml
        ),
    )
    .unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let key = create_key_with(&data_a, Some(&config), "demo", "session");
    let a = Server::start_with(&data_a, Some(&config));
    let b = Server::start_with(&data_b, Some(&config));
    let http = reqwest::blocking::Client::new();

    // Upload through A (9 MiB: a multipart upload to the bucket), read back through B.
    let bytes: Vec<u8> = (0..(9u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    let up: Value = http
        .post(format!("{}/v1/files?name=shared.bin", a.base))
        .bearer_auth(&key)
        .body(bytes.clone())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = up["id"].as_str().unwrap().to_owned();
    assert_eq!(up["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(up["backend"], "s3");
    let rec: Value = http
        .get(format!("{}/v1/files/{id}", b.base))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rec, up, "B reads A's record");
    let got = http
        .get(format!("{}/v1/files/{id}/content", b.base))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert!(got.bytes().unwrap().as_ref() == bytes.as_slice(), "B serves A's bytes");
    let listed: Value = http
        .get(format!("{}/v1/files", b.base))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed["files"][0]["id"], id.as_str());

    // A link made by B points at the bucket and serves the bytes.
    let link: Value = http
        .post(format!("{}/v1/files/{id}/links", b.base))
        .bearer_auth(&key)
        .json(&json!({"ttl_seconds": 60}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let url = link["url"].as_str().unwrap();
    assert!(url.starts_with(endpoint), "presigned straight at the bucket: {url}");
    assert!(http.get(url).send().unwrap().bytes().unwrap().as_ref() == bytes.as_slice());

    // A presign from A, the PUT straight to the bucket, completed through B.
    let body = b"%PDF-1.4\n%%EOF\n".to_vec();
    let p: Value = http
        .post(format!("{}/v1/uploads", a.base))
        .bearer_auth(&key)
        .json(&json!({"name": "doc.pdf", "size": body.len(), "content_type": "application/pdf"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let upload_url = p["upload"]["url"].as_str().unwrap();
    assert!(upload_url.starts_with(endpoint));
    let mut put = http.put(upload_url).body(body.clone());
    for (h, v) in p["upload"]["headers"].as_object().unwrap() {
        put = put.header(h.as_str(), v.as_str().unwrap());
    }
    assert_eq!(put.send().unwrap().status(), 200);
    let done: Value = http
        .post(format!(
            "{}/v1/uploads/{}/complete",
            b.base,
            p["file"]["id"].as_str().unwrap()
        ))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (
            done["status"].as_str(),
            done["size"].as_u64(),
            done["detected_type"].as_str()
        ),
        (Some("ready"), Some(body.len() as u64), Some("application/pdf"))
    );

    // A stable link made by A works through B (the same secret signs both).
    let via_b = format!("{}{}", b.base, juniortree_link_path(&a.base, &key, "n.txt", "note"));
    assert_eq!(http.get(&via_b).send().unwrap().text().unwrap(), "note");

    // Delete through B: A no longer has it, and its bytes are gone from the bucket.
    assert_eq!(
        http.delete(format!("{}/v1/files/{id}", b.base))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        http.get(format!("{}/v1/files/{id}", a.base))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .status(),
        404
    );
    // 404, or 403 where the store hides what it does not have (moto, AWS without ListBucket).
    let gone = http.get(url).send().unwrap().status();
    assert!(gone == 404 || gone == 403, "the object is deleted: {gone}");
}

/// Two processes on one PostgreSQL, eight runners (four on each) claiming at once: every task is
/// handed out exactly once.
#[test]
fn two_instances_claiming_at_once_hand_out_each_task_once() {
    let Some(pg) = postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filedock.toml");
    std::fs::write(
        &config,
        format!(
            "signing_secret_file = \"{}\"\n[catalog]\ntype = \"postgres\"\nurl = \"{pg}\"\n\
             [[workflows]]\nid = \"wf_echo\"\nproject = \"demo\"\nparameters = [ {{ name = \"n\", type = \"number\", required = true }} ]\n",
            dir.path().join("signing.key").display()
        ),
    )
    .unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let key = create_key_with(&data_a, Some(&config), "demo", "integration");
    let a = Server::start_with(&data_a, Some(&config));
    let b = Server::start_with(&data_b, Some(&config));
    let http = reqwest::blocking::Client::new();
    let mut queued = std::collections::BTreeSet::new();
    for n in 0..60 {
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        let t: Value = http
            .post(format!("{base}/api/v1/r/workflows/wf_echo/run"))
            .bearer_auth(&key)
            .json(&json!({"parameters": {"n": n}}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        queued.insert(t["task_id"].as_str().unwrap().to_owned());
    }
    let runners: Vec<_> = (0..8)
        .map(|i| {
            let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
            let dk = create_key_with(&data_a, Some(&config), "demo", "device");
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut got = Vec::new();
                loop {
                    let r = http
                        .post(format!("{base}/api/v1/r/tasks/claim"))
                        .bearer_auth(&dk)
                        .send()
                        .unwrap();
                    match r.status().as_u16() {
                        200 => got.push(r.json::<Value>().unwrap()["task_id"].as_str().unwrap().to_owned()),
                        204 => return got,
                        s => panic!("claim answered {s}: {}", r.text().unwrap()),
                    }
                }
            })
        })
        .collect();
    let mut claimed: Vec<String> = runners.into_iter().flat_map(|r| r.join().unwrap()).collect();
    claimed.sort();
    let unique: std::collections::BTreeSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), queued.len(), "no task handed out twice");
    assert_eq!(unique, queued, "every task handed out");
}

/// The transactions PostgreSQL counted for the test's database so far.
fn pg_transactions(pg: &str) -> u64 {
    let out = std::process::Command::new("psql")
        .arg(pg)
        .args([
            "-Atc",
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

/// What PostgreSQL announces reaches every instance: a key revoked through one instance's
/// catalog is refused by another that served it from its cache, within a second; 50 runners
/// long-polling on two instances cost no catalog query while nothing is queued, and a run
/// queued through one instance wakes a runner waiting on the other at once.
#[test]
fn revocations_and_queued_runs_reach_every_instance_without_polling() {
    let Some(pg) = postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filedock.toml");
    std::fs::write(
        &config,
        format!(
            "signing_secret_file = \"{}\"\nsweep_interval_secs = 3600\n[catalog]\ntype = \"postgres\"\nurl = \"{pg}\"\n\
             [[workflows]]\nid = \"wf_echo\"\nproject = \"demo\"\nparameters = [ {{ name = \"n\", type = \"number\", required = true }} ]\n",
            dir.path().join("signing.key").display()
        ),
    )
    .unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let key = create_key_with(&data_a, Some(&config), "demo", "integration");
    let doomed = create_key_with(&data_a, Some(&config), "demo", "integration");
    let devices: Vec<String> = (0..5)
        .map(|_| create_key_with(&data_a, Some(&config), "demo", "device"))
        .collect();
    let a = Server::start_with(&data_a, Some(&config));
    let b = Server::start_with(&data_b, Some(&config));
    let http = reqwest::blocking::Client::new();

    // B serves the doomed key (from its cache after the first request)...
    let list = |base: &str, k: &str| {
        http.get(format!("{base}/v1/files"))
            .bearer_auth(k)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    for _ in 0..5 {
        assert_eq!(list(&b.base, &doomed), 200);
    }
    // ...and refuses it within a second of its revocation through A's catalog.
    let dash = doomed.find('-').unwrap() + 1;
    let id = &doomed[dash..dash + 16];
    let revoked = std::time::Instant::now();
    let out = filedock_with(&data_a, Some(&config), &["keys", "revoke", id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    while list(&b.base, &doomed) != 401 {
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(1),
            "B still served a key revoked 1 s ago"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("B refused the revoked key {:?} after the revocation", revoked.elapsed());
    assert_eq!(list(&b.base, &key), 200, "other keys still work");

    // What the two instances cost with no runner: their heartbeats (every 2 s), and counting.
    // PostgreSQL publishes a backend's counts within 10 s of its last statement: wait past that.
    std::thread::sleep(std::time::Duration::from_secs(12));
    let idle_before = pg_transactions(&pg);
    std::thread::sleep(std::time::Duration::from_secs(5));
    let idle = pg_transactions(&pg) - idle_before;

    // 50 runners wait (30 s at most) on both instances.
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    let runners: Vec<_> = (0..50)
        .map(|i| {
            let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
            let dk = devices[i % devices.len()].clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let r = reqwest::blocking::Client::builder()
                    .timeout(std::time::Duration::from_secs(60))
                    .build()
                    .unwrap()
                    .post(format!("{base}/api/v1/r/tasks/claim"))
                    .bearer_auth(&dk)
                    .json(&json!({"wait_secs": 30}))
                    .send()
                    .unwrap();
                tx.send((i, r.status().as_u16(), std::time::Instant::now())).unwrap();
            })
        })
        .collect();
    // Past the 10 s again, then count over 5 s while all 50 wait.
    std::thread::sleep(std::time::Duration::from_secs(13));
    let before = pg_transactions(&pg);
    std::thread::sleep(std::time::Duration::from_secs(5));
    let after = pg_transactions(&pg);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(28),
        "the machine is too slow for the window"
    );
    assert!(rx.try_recv().is_err(), "a claim ended while nothing was queued");
    let waiting = after - before;
    eprintln!("50 waiting runners: {waiting} transactions in 5 s; none waiting: {idle}");
    // A claim that reached its server late may add its first looks (17 against 13 measured on
    // an idle machine). Polling every 250 ms cost 2,007 here.
    assert!(
        waiting <= idle + 20,
        "50 idle runners cost {waiting} transactions in 5 s, against {idle} without them"
    );

    // A run queued through B wakes a runner at once, whichever instance it waits on.
    let queued = std::time::Instant::now();
    let t: Value = http
        .post(format!("{}/api/v1/r/workflows/wf_echo/run", b.base))
        .bearer_auth(&key)
        .json(&json!({"parameters": {"n": 1}}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(t["task_id"].is_string(), "{t}");
    let (_, status, at) = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(status, 200, "the first claim to end is the one that got the run");
    assert!(
        at.duration_since(queued) < std::time::Duration::from_secs(1),
        "woken {:?} after the run was queued",
        at.duration_since(queued)
    );
    for r in runners {
        r.join().unwrap();
    }
    let statuses: Vec<u16> = rx.try_iter().map(|(_, s, _)| s).collect();
    assert_eq!(statuses.len(), 49);
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
}

/// A project limited to 100 requests per second, hit as hard as twelve clients can through
/// three instances, is served 100 ± 15 per second in all: each instance takes its share.
#[test]
fn three_instances_hold_a_project_to_its_rate_together() {
    let Some(pg) = postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filedock.toml");
    std::fs::write(
        &config,
        format!(
            "signing_secret_file = \"{}\"\n[catalog]\ntype = \"postgres\"\nurl = \"{pg}\"\n\
             [limits]\nrequests_per_second = 100\nburst = 100\n",
            dir.path().join("signing.key").display()
        ),
    )
    .unwrap();
    let key = create_key_with(&dir.path().join("i0"), Some(&config), "demo", "integration");
    let servers: Vec<Server> = (0..3)
        .map(|i| Server::start_with(&dir.path().join(format!("i{i}")), Some(&config)))
        .collect();
    let http = reqwest::blocking::Client::new();
    // Every instance has counted the fleet (heartbeats every 2 s).
    let counted = std::time::Instant::now();
    for s in &servers {
        loop {
            let m = http.get(format!("{}/metrics", s.base)).send().unwrap().text().unwrap();
            if m.lines().any(|l| l.starts_with("filedock_fleet_instances 3")) {
                break;
            }
            assert!(
                counted.elapsed() < std::time::Duration::from_secs(20),
                "no instance counted 3"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let start = std::time::Instant::now();
    let (warm, end) = (std::time::Duration::from_secs(2), std::time::Duration::from_secs(7));
    let served = std::sync::atomic::AtomicU64::new(0);
    let refused = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for i in 0..12 {
            let base = servers[i % 3].base.clone();
            let (key, served, refused) = (&key, &served, &refused);
            s.spawn(move || {
                let http = reqwest::blocking::Client::new();
                for _ in 0..50_000 {
                    let at = start.elapsed();
                    if at >= end {
                        break;
                    }
                    let status = http
                        .get(format!("{base}/v1/files?limit=1"))
                        .bearer_auth(key)
                        .send()
                        .unwrap()
                        .status()
                        .as_u16();
                    let counted = if status == 200 { served } else { refused };
                    assert!(status == 200 || status == 429, "{status}");
                    if at >= warm {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let secs = (end - warm).as_secs_f64();
    let rate = served.into_inner() as f64 / secs;
    let refused = refused.into_inner();
    eprintln!("served {rate:.1} requests/s through three instances; refused {refused}");
    assert!(refused > 0, "the clients pressed harder than the limit");
    assert!(
        (85.0..=115.0).contains(&rate),
        "served {rate:.1} requests/s, not 100 ± 15"
    );
}
