//! Quarantine in the real binary, configured as an operator would (`[scanners.clamav]`,
//! `scan = "clamav"` on a policy), against Debian's clamd: EICAR refused with 422, a clean file
//! ready; clamd stopped: uploads answer `quarantined`, `/readyz` names the scanner; clamd back:
//! the background job releases them.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, create_key_with, postgres_database, s3_postgres_toml};
use filedock_testkit::{Clamd, EICAR, S3Server};

fn run(data: &Path, extra: &str) {
    let Some(mut clamd) = Clamd::start(8 * 1024 * 1024) else {
        return;
    };
    let cfg = data.join("filedock.toml");
    std::fs::write(
        &cfg,
        format!(
            "wait_for_scan_secs = 5\nscan_retry_secs = 1\n{extra}\n\
             [scanners.clamav]\naddress = \"{}\"\nmax_bytes = 8388608\n\
             [policies.native]\nscan = \"clamav\"\n",
            clamd.address
        ),
    )
    .unwrap();
    let key = create_key_with(data, Some(&cfg), "demo", "integration");
    let server = Server::start_with(data, Some(&cfg));
    let http = reqwest::blocking::Client::new();
    let upload = |name: &str, body: &[u8]| {
        http.post(format!("{}/v1/files?name={name}", server.base))
            .bearer_auth(&key)
            .body(body.to_vec())
            .send()
            .unwrap()
    };
    let r = upload("eicar.txt", EICAR);
    assert_eq!(r.status(), 422);
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "infected", "{e}");
    let r = upload("clean.txt", b"clean");
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["status"], "ready");

    clamd.stop();
    let r = upload("later.txt", b"scanned later");
    assert_eq!(r.status(), 201);
    let f: serde_json::Value = r.json().unwrap();
    assert_eq!(f["status"], "quarantined");
    let ready: serde_json::Value = http
        .get(format!("{}/readyz", server.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(ready["reason"].as_str().unwrap().contains("clamav"), "{ready}");

    clamd.start_again();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: serde_json::Value = http
            .get(format!("{}/v1/files/{}", server.base, f["id"].as_str().unwrap()))
            .bearer_auth(&key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if got["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "not released: {got}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ready: serde_json::Value = http
        .get(format!("{}/readyz", server.base))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[test]
fn the_binary_quarantines_with_clamd_on_the_embedded_default() {
    let data = tempfile::tempdir().unwrap();
    run(data.path(), "");
}

#[test]
fn the_binary_quarantines_with_clamd_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    let data = tempfile::tempdir().unwrap();
    run(data.path(), &s3_postgres_toml(&s3, &pg));
}
