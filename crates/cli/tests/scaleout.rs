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
