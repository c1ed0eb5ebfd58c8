//! Three filedock processes on one PostgreSQL and moto's S3 server (an S3 implementation no one
//! here wrote), requests rotated across them as a load balancer would: tus PATCHes each on
//! another instance, multipart parts and presigned PUTs completed on another, 2,000 uploads at
//! 32 concurrent. Every file's SHA-256 is recorded and right, every content rule holds over the
//! whole body, nothing is lost.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::{Value, json};

/// Text for 8 KiB and more, then a byte no text holds.
fn text_spoiled_late() -> Vec<u8> {
    let mut t = "a line of plain text\n".repeat(800).into_bytes();
    t.extend_from_slice(b"\x00\x01\x02binary after the first 8 KiB");
    t
}

struct Fleet {
    bases: Vec<String>,
    auth: String,
    _servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn start(backend_toml: &str, pg: &str, n: usize) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("filedock.toml");
        std::fs::write(
            &config,
            format!(
                "default_backend = \"s3\"\nsigning_secret_file = \"{}\"\n[backends.s3]\n{backend_toml}\n[catalog]\ntype = \"postgres\"\nurl = \"{pg}\"\n",
                dir.path().join("signing.key").display(),
            ),
        )
        .unwrap();
        let key = create_key_with(&dir.path().join("i0"), Some(&config), "demo", "integration");
        let servers: Vec<Server> = (0..n)
            .map(|i| Server::start_with(&dir.path().join(format!("i{i}")), Some(&config)))
            .collect();
        Fleet {
            bases: servers.iter().map(|s| s.base.clone()).collect(),
            auth: format!("Bearer {key}"),
            _servers: servers,
            _dir: dir,
        }
    }

    /// The instance for the `i`-th request.
    fn at(&self, i: usize) -> &str {
        &self.bases[i % self.bases.len()]
    }
}

/// A tus upload of `doc` in `chunk`-byte PATCHes, each through the next instance. Returns the
/// last PATCH's status and the file id it named.
fn tus_rotated(http: &Client, f: &Fleet, name: &str, doc: &[u8], chunk: usize) -> (u16, Option<String>) {
    let created = http
        .post(format!("{}/tus/", f.at(0)))
        .header("authorization", &f.auth)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", doc.len().to_string())
        .header("upload-metadata", format!("filename {}", base64_of(name)))
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let path = &location[location.find("/tus/").unwrap()..];
    let mut last = (0, None);
    for (i, c) in doc.chunks(chunk).enumerate() {
        let resp = http
            .patch(format!("{}{path}", f.at(i + 1)))
            .header("authorization", &f.auth)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", (i * chunk).to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(c.to_vec())
            .send()
            .unwrap();
        let id = resp
            .headers()
            .get("filedock-file-id")
            .map(|v| v.to_str().unwrap().to_owned());
        last = (resp.status().as_u16(), id);
        if last.0 != 204 {
            break;
        }
    }
    last
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn file(http: &Client, f: &Fleet, at: usize, id: &str) -> Value {
    http.get(format!("{}/v1/files/{id}", f.at(at)))
        .header("authorization", &f.auth)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// A presigned PUT made on one instance, the bytes PUT to the bucket, completed on the next.
fn presigned_rotated(http: &Client, f: &Fleet, at: usize, name: &str, body: &[u8]) -> reqwest::blocking::Response {
    let p: Value = http
        .post(format!("{}/v1/uploads", f.at(at)))
        .header("authorization", &f.auth)
        .json(&json!({"name": name, "size": body.len()}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut put = http.put(p["upload"]["url"].as_str().unwrap()).body(body.to_vec());
    for (h, v) in p["upload"]["headers"].as_object().unwrap() {
        put = put.header(h.as_str(), v.as_str().unwrap());
    }
    assert_eq!(put.send().unwrap().status(), 200);
    http.post(format!(
        "{}/v1/uploads/{}/complete",
        f.at(at + 1),
        p["file"]["id"].as_str().unwrap()
    ))
    .header("authorization", &f.auth)
    .send()
    .unwrap()
}

#[test]
fn three_instances_on_moto_record_every_sha256_and_lose_nothing() {
    let Some(moto) = filedock_testkit::MotoServer::start() else {
        return;
    };
    let Some(pg) = postgres_database() else { return };
    let f = Fleet::start(&moto.backend_toml(), &pg, 3);
    let http = Client::new();

    // tus in 5 MiB PATCHes (a part each) and in 1 MiB PATCHes (staged), each PATCH on the next
    // instance: no instance saw the whole body.
    for (chunk, seed) in [(5usize << 20, 1u32), (1 << 20, 2)] {
        let doc = bytes_of(12 << 20, seed);
        let (status, id) = tus_rotated(&http, &f, "doc.bin", &doc, chunk);
        assert_eq!(status, 204);
        let rec = file(&http, &f, 2, &id.unwrap());
        assert_eq!(rec["status"], "ready");
        assert_eq!(
            rec["sha256"].as_str(),
            Some(sha(&doc).as_str()),
            "tus in {chunk}-byte PATCHes"
        );
    }

    // Native multipart: made on one instance, parts to the bucket, completed on another.
    let big = bytes_of(11 << 20, 3);
    let part_size = 5 << 20;
    let mp: Value = http
        .post(format!("{}/v1/uploads/multipart", f.at(0)))
        .header("authorization", &f.auth)
        .json(&json!({"name": "big.bin", "size": big.len(), "part_size": part_size}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let upload = mp["upload_id"].as_str().unwrap();
    let parts: Value = http
        .post(format!("{}/v1/uploads/multipart/{upload}/parts", f.at(1)))
        .header("authorization", &f.auth)
        .json(&json!({"part_numbers": [1, 2, 3]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let etags = put_parts(&http, parts["parts"].as_array().unwrap(), "url", &big, part_size);
    let done: Value = http
        .post(format!("{}/v1/uploads/multipart/{upload}/complete", f.at(2)))
        .header("authorization", &f.auth)
        .json(&json!({"parts": etags}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["sha256"].as_str(), Some(sha(&big).as_str()), "multipart");

    // A presigned PUT straight to the bucket, completed on another instance.
    let pdf = b"%PDF-1.4\nsome document\n%%EOF\n".to_vec();
    let done: Value = presigned_rotated(&http, &f, 0, "doc.pdf", &pdf).json().unwrap();
    assert_eq!(done["sha256"].as_str(), Some(sha(&pdf).as_str()), "presigned PUT");

    // Text whose first 8 KiB are text and whose rest is not: refused on every path, as a direct
    // POST is.
    let spoiled = text_spoiled_late();
    let direct = http
        .post(format!("{}/v1/files?name=notes.txt", f.at(0)))
        .header("authorization", &f.auth)
        .body(spoiled.clone())
        .send()
        .unwrap();
    assert_eq!(direct.status(), 415, "direct POST");
    let presigned = presigned_rotated(&http, &f, 1, "notes.txt", &spoiled);
    assert_eq!(presigned.status(), 415, "presigned PUT: {}", presigned.text().unwrap());
    let mut long = spoiled.clone();
    long.resize(6 << 20, b'x');
    let (status, _) = tus_rotated(&http, &f, "notes.txt", &long, 2 << 20);
    assert_eq!(status, 415, "tus across instances");

    // 2,000 small uploads at 32 concurrent, rotated: every one listed, each SHA-256 right.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let uploaded = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| {
                let http = Client::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= 2_000 {
                        break;
                    }
                    let body = format!("upload {i} {}", "x".repeat(i % 97)).into_bytes();
                    let resp = http
                        .post(format!("{}/v1/files?name=u{i}.bin", f.at(i)))
                        .header("authorization", &f.auth)
                        .body(body.clone())
                        .send()
                        .unwrap();
                    assert_eq!(resp.status(), 201, "upload {i}");
                    let rec: Value = resp.json().unwrap();
                    assert_eq!(rec["sha256"].as_str(), Some(sha(&body).as_str()));
                    uploaded.lock().unwrap().push(rec["id"].as_str().unwrap().to_owned());
                }
            });
        }
    });
    let uploaded = uploaded.into_inner().unwrap();
    assert_eq!(uploaded.len(), 2_000);
    let mut listed = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = http
            .get(format!("{}/v1/files", f.at(listed.len())))
            .header("authorization", &f.auth)
            .query(&[("limit", "1000")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let page: Value = req.send().unwrap().json().unwrap();
        for file in page["files"].as_array().unwrap() {
            assert!(file["sha256"].as_str().is_some_and(|s| s.len() == 64), "{file}");
            listed.insert(file["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for id in &uploaded {
        assert!(listed.contains(id), "upload {id} is lost");
    }
}

/// A ready file never changes, whatever the store honours: on a store without create-only
/// (`create_only = "none"`, as on Garage, which ignores `If-None-Match`), a second PUT through a
/// completed upload's URL is taken by the store, and filedock still serves the first bytes,
/// through its own routes and through a presigned link straight to the bucket.
#[test]
fn a_second_put_through_a_used_url_changes_no_ready_file() {
    let Some(moto) = filedock_testkit::MotoServer::start() else {
        return;
    };
    let Some(pg) = postgres_database() else { return };
    let toml = format!("{}create_only = \"none\"\n", moto.backend_toml());
    let f = Fleet::start(&toml, &pg, 1);
    let http = Client::new();
    let first = b"%PDF-1.4\nthe first bytes\n%%EOF\n".to_vec();
    let second = b"%PDF-1.4\nREPLACED BYTES!\n%%EOF\n".to_vec();
    assert_eq!(first.len(), second.len(), "the URL signs the length");
    let p: Value = http
        .post(format!("{}/v1/uploads", f.at(0)))
        .header("authorization", &f.auth)
        .json(&json!({"name": "doc.pdf", "size": first.len()}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let put = |body: &[u8]| {
        let mut put = http.put(p["upload"]["url"].as_str().unwrap()).body(body.to_vec());
        for (h, v) in p["upload"]["headers"].as_object().unwrap() {
            put = put.header(h.as_str(), v.as_str().unwrap());
        }
        put.send().unwrap().status().as_u16()
    };
    assert_eq!(put(&first), 200);
    let id = p["file"]["id"].as_str().unwrap();
    let done: Value = http
        .post(format!("{}/v1/uploads/{id}/complete", f.at(0)))
        .header("authorization", &f.auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(done["sha256"].as_str(), Some(sha(&first).as_str()));
    assert_eq!(
        put(&second),
        200,
        "the store takes the second PUT (it cannot refuse it)"
    );
    let done_again: Value = http
        .post(format!("{}/v1/uploads/{id}/complete", f.at(0)))
        .header("authorization", &f.auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        done_again["sha256"].as_str(),
        Some(sha(&first).as_str()),
        "completing again changes nothing"
    );
    let served = http
        .get(format!("{}/v1/files/{id}/content", f.at(0)))
        .header("authorization", &f.auth)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(served.as_ref(), first.as_slice(), "filedock serves the first bytes");
    let link: Value = http
        .post(format!("{}/v1/files/{id}/links", f.at(0)))
        .header("authorization", &f.auth)
        .json(&json!({"ttl_seconds": 60}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let url = link["url"].as_str().unwrap();
    assert!(url.starts_with(&moto.endpoint), "a link straight to the bucket: {url}");
    assert_eq!(
        http.get(url).send().unwrap().bytes().unwrap().as_ref(),
        first.as_slice(),
        "the bucket serves the first bytes"
    );
    let rec = file(&http, &f, 0, id);
    assert_eq!(rec["sha256"].as_str(), Some(sha(&first).as_str()));
}
