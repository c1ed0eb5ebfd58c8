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

/// A scanner of the test's own behind the HTTP contract: it checks the signature, fetches the
/// file from the URL it is handed, and calls anything holding the EICAR string infected.
fn http_scanner(secret: &'static str, seen: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/scan",
                axum::routing::post(move |headers: HeaderMap, body: String| {
                    let seen = seen.clone();
                    async move {
                        use hmac::{KeyInit, Mac};
                        let ts = headers["filedock-timestamp"].to_str().unwrap().to_owned();
                        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
                        mac.update(format!("{ts}.{body}").as_bytes());
                        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                        if headers["filedock-signature"] != expected.as_str() {
                            return (StatusCode::UNAUTHORIZED, String::new());
                        }
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let req: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let url = req["download_url"].as_str().unwrap().to_owned();
                        let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
                        let bad = bytes.windows(5).any(|w| w == b"EICAR");
                        let verdict = if bad {
                            serde_json::json!({"verdict": "infected", "signature": "Test-Http-Signature"})
                        } else {
                            serde_json::json!({"verdict": "clean"})
                        };
                        (StatusCode::OK, verdict.to_string())
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}/scan")
}

fn http_contract(data: &Path, extra: &str) {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = http_scanner("a scanner secret of 32 bytes ...", seen.clone());
    let cfg = data.join("filedock.toml");
    std::fs::write(
        &cfg,
        format!(
            "{extra}\n[scanners.engine]\ntype = \"http\"\nurl = \"{url}\"\n\
             secret = \"a scanner secret of 32 bytes ...\"\n[policies.native]\nscan = \"engine\"\n"
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
    let r = upload("clean.txt", b"clean");
    assert_eq!(r.status(), 201);
    let f: serde_json::Value = r.json().unwrap();
    assert_eq!(f["status"], "ready", "{f}");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "each file scanned once, signed"
    );
}

#[test]
fn the_http_scanner_contract_on_the_embedded_default() {
    let data = tempfile::tempdir().unwrap();
    http_contract(data.path(), "");
}

#[test]
fn the_http_scanner_contract_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    let data = tempfile::tempdir().unwrap();
    http_contract(data.path(), &s3_postgres_toml(&s3, &pg));
}
