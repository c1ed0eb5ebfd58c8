//! Idempotent retries against the real binary: a client that gives up mid-upload (its timeout
//! fires while the body is still being sent) retries with the same `Idempotency-Key`, as a
//! client must — after `Retry-After` while the server still holds the first attempt — and the
//! project ends with one file.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use common::{Server, create_key_with, postgres_database, s3_postgres_toml};
use filedock_testkit::S3Server;

/// 64 KiB, then nothing for a long while: a body the client's timeout cuts.
struct Stalling {
    sent: usize,
}

impl Read for Stalling {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent >= 64 * 1024 {
            std::thread::sleep(Duration::from_secs(5));
            return Err(std::io::Error::other("the client gave up"));
        }
        let n = buf.len().min(64 * 1024 - self.sent);
        buf[..n].fill(b'a');
        self.sent += n;
        Ok(n)
    }
}

fn retried_upload(data: &Path, cfg: Option<&Path>) {
    let key = create_key_with(data, cfg, "demo", "integration");
    let server = Server::start_with(data, cfg);
    let url = format!("{}/v1/files?name=retry.txt", server.base);
    let len: u64 = 1024 * 1024;
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let first = impatient
        .post(&url)
        .bearer_auth(&key)
        .header("idempotency-key", "upload-7")
        .body(reqwest::blocking::Body::sized(Stalling { sent: 0 }, len))
        .send();
    assert!(first.is_err(), "the first attempt timed out on the client");

    let client = reqwest::blocking::Client::new();
    let body = vec![b'a'; len as usize];
    let mut answer = None;
    // At most a minute: the server notices a closed connection at once, even when busy.
    for _ in 0..300 {
        let r = client
            .post(&url)
            .bearer_auth(&key)
            .header("idempotency-key", "upload-7")
            .body(body.clone())
            .send()
            .unwrap();
        if r.status() == 409 {
            // The server has not seen the first attempt end yet: wait as it says.
            let secs: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            std::thread::sleep(Duration::from_millis(200).min(Duration::from_secs(secs)));
            continue;
        }
        answer = Some(r);
        break;
    }
    let r = answer.expect("the retry ran once the first attempt was over");
    assert_eq!(r.status(), 201);
    let made: serde_json::Value = r.json().unwrap();
    // Retried once more: the same file, replayed.
    let again = client
        .post(&url)
        .bearer_auth(&key)
        .header("idempotency-key", "upload-7")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().unwrap()["id"], made["id"]);
    let list: serde_json::Value = client
        .get(format!("{}/v1/files", server.base))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["files"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn a_client_that_times_out_mid_upload_retries_into_one_file() {
    let data = tempfile::tempdir().unwrap();
    retried_upload(data.path(), None);
}

#[test]
fn a_client_that_times_out_mid_upload_retries_into_one_file_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("filedock.toml");
    std::fs::write(&cfg, s3_postgres_toml(&s3, &pg)).unwrap();
    retried_upload(data.path(), Some(&cfg));
}
