//! Upload from a URL: `POST /v1/files/from-url` against real HTTP sources on 127.0.0.1, which
//! the tests open through the operator allowlist (`[fetch] allow`) — every refused spelling of
//! an address is refused without it, before a byte is sent.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{TestApp, sha256_hex};
use filedock_core::CredentialKind;
use filedock_core::model::FileStatus;
use filedock_server::fetch::FetchConfig;
use serde_json::json;

const MIB: u64 = 1024 * 1024;

/// Deterministic bytes that sniff as nothing in particular.
fn bytes_of(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// A source server on 127.0.0.1 that counts the requests it gets.
struct Source {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Source {
    async fn start() -> Source {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/bytes/{n}/{name}", get(sized))
            .route("/chunked/{n}", get(chunked))
            .route("/redirect", get(redirect))
            .route("/stall-head", get(stall_head))
            .route("/stall-body", get(stall_body))
            .route("/status/{code}", get(status))
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Source { port, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn sized(State(hits): State<Arc<AtomicUsize>>, Path((n, _name)): Path<(usize, String)>) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes_of(n)).into_response()
}

async fn chunked(State(hits): State<Arc<AtomicUsize>>, Path(n): Path<usize>) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    // No Content-Length: 64 KiB chunks, so only the size check during the body can stop it.
    let data = bytes_of(n);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    Body::from_stream(futures_util::stream::iter(chunks)).into_response()
}

async fn redirect(
    State(hits): State<Arc<AtomicUsize>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    (StatusCode::FOUND, [(header::LOCATION, q["to"].clone())]).into_response()
}

async fn stall_head(State(hits): State<Arc<AtomicUsize>>) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(120)).await;
    StatusCode::OK.into_response()
}

async fn stall_body(State(hits): State<Arc<AtomicUsize>>) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(vec![1u8; 10])]);
    let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let body = Body::from_stream(futures_util::StreamExt::chain(first, never));
    ([(header::CONTENT_LENGTH, "1000")], body).into_response()
}

async fn status(State(hits): State<Arc<AtomicUsize>>, Path(code): Path<u16>) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    StatusCode::from_u16(code).unwrap().into_response()
}

fn allowing_loopback() -> FetchConfig {
    FetchConfig {
        allow: vec!["127.0.0.1/32".into()],
        first_byte_timeout_secs: 2,
        sync_timeout_secs: 30,
        ..Default::default()
    }
}

async fn from_url(app: &TestApp, key: &str, body: serde_json::Value) -> common::Answer {
    app.post_json(key, "/v1/files/from-url", body).await
}

#[tokio::test]
async fn a_file_is_fetched_checked_and_records_its_origin() {
    let src = Source::start().await;
    let app = TestApp::fetching(64 * MIB, allowing_loopback()).await;
    let key = app.key("p1", CredentialKind::Session).await;
    let n = 30 * MIB as usize;
    let url = src.url(&format!("/bytes/{n}/big.bin?sig=secret#frag"));
    let a = from_url(&app, &key, json!({"url": url})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
    let f = a.json();
    assert_eq!(f["status"], "ready");
    assert_eq!(f["name"], "big.bin", "the name comes from the URL's path");
    assert_eq!(f["size"], n as u64);
    assert_eq!(f["sha256"], sha256_hex(&bytes_of(n)));
    // The origin is recorded without the query (a presigned URL's signature) or fragment.
    assert_eq!(f["origin"], src.url(&format!("/bytes/{n}/big.bin")));
    let got = app
        .get(&key, &format!("/v1/files/{}/content", f["id"].as_str().unwrap()))
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body == bytes_of(n), "the stored bytes are the source's");
    // A name given wins.
    let a = from_url(
        &app,
        &key,
        json!({"url": src.url("/bytes/100/x.bin"), "name": "mine.bin"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["name"], "mine.bin");
}

/// Every spelling of a loopback or otherwise denied address, refused with `url_refused` before
/// a request is made (the source on 127.0.0.1 counts none).
#[tokio::test]
async fn refused_addresses_in_every_spelling() {
    let src = Source::start().await;
    let app = TestApp::fetching(64 * MIB, FetchConfig::default()).await;
    let key = app.key("p1", CredentialKind::Session).await;
    let p = src.port;
    let loopback = [
        format!("http://127.0.0.1:{p}/bytes/10/a.bin"),
        format!("http://2130706433:{p}/bytes/10/a.bin"),
        format!("http://0x7f000001:{p}/bytes/10/a.bin"),
        format!("http://0x7f.0x0.0x0.0x1:{p}/bytes/10/a.bin"),
        format!("http://0177.0.0.1:{p}/bytes/10/a.bin"),
        format!("http://017700000001:{p}/bytes/10/a.bin"),
        format!("http://127.1:{p}/bytes/10/a.bin"),
        format!("http://127.0.1:{p}/bytes/10/a.bin"),
        format!("http://127.0.0.1.:{p}/bytes/10/a.bin"),
        format!("http://127.000.000.001:{p}/bytes/10/a.bin"),
        format!("http://127%2e0%2e0%2e1:{p}/bytes/10/a.bin"),
        format!("http://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}:{p}/bytes/10/a.bin"),
        format!("http://user:pw@127.0.0.1:{p}/bytes/10/a.bin"),
        format!("http://localhost:{p}/bytes/10/a.bin"),
        format!("http://LOCALHOST.:{p}/bytes/10/a.bin"),
        format!("http://api.localhost:{p}/bytes/10/a.bin"),
        format!("http://[::1]:{p}/bytes/10/a.bin"),
        format!("http://[0:0:0:0:0:0:0:1]:{p}/bytes/10/a.bin"),
        format!("http://[::ffff:127.0.0.1]:{p}/bytes/10/a.bin"),
        format!("http://[::ffff:7f00:1]:{p}/bytes/10/a.bin"),
        format!("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/bytes/10/a.bin"),
        format!("http://[::127.0.0.1]:{p}/bytes/10/a.bin"),
        format!("http://[64:ff9b::127.0.0.1]:{p}/bytes/10/a.bin"),
        format!("http://0:{p}/bytes/10/a.bin"),
        format!("http://0.0.0.0:{p}/bytes/10/a.bin"),
        format!("http://[::]:{p}/bytes/10/a.bin"),
    ];
    let elsewhere = [
        "http://10.0.0.1/",
        "http://10.255.255.255/",
        "http://172.16.0.1/",
        "http://172.31.255.254/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://0xa9fea9fe/",
        "http://2852039166/",
        "http://100.64.0.1/",
        "http://100.127.255.254/",
        "http://224.0.0.1/",
        "http://239.255.255.250/",
        "http://255.255.255.255/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[fc00::1]/",
        "http://[ff02::1]/",
        "http://[2002:a00:1::]/",
    ];
    let schemes = [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://example.com/",
        "data:text/plain,hi",
        "javascript:alert(1)",
        "not a url",
        "http://",
        "//example.com/x",
    ];
    for url in loopback.iter().map(String::as_str).chain(elsewhere).chain(schemes) {
        let a = from_url(&app, &key, json!({"url": url, "name": "a.bin"})).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{url}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json()["error"]["code"], "url_refused", "{url}");
    }
    assert_eq!(src.hits(), 0, "no refused URL reached the source");
    assert_eq!(app.file_rows("p1").await, 0);
    assert_eq!(app.stored_objects().await, 0);
}

#[tokio::test]
async fn every_redirect_is_vetted_and_counted() {
    let src = Source::start().await;
    let app = TestApp::fetching(64 * MIB, allowing_loopback()).await;
    let key = app.key("p1", CredentialKind::Session).await;
    let p = src.port;
    // From an allowed host to refused ones.
    for to in [
        format!("http://127.0.0.2:{p}/bytes/10/a.bin"),
        format!("http://[::1]:{p}/bytes/10/a.bin"),
        format!("http://sub.localhost:{p}/bytes/10/a.bin"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "file:///etc/passwd".to_owned(),
    ] {
        let url = src.url(&format!("/redirect?to={}", common::urlencode(&to)));
        let a = from_url(&app, &key, json!({"url": url})).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{to}");
        assert_eq!(a.json()["error"]["code"], "url_refused", "{to}");
    }
    assert_eq!(src.hits(), 5, "only the redirecting answers were fetched");
    // An allowed redirect is followed (relative Location too).
    let url = src.url(&format!("/redirect?to={}", common::urlencode("/bytes/100/r.bin")));
    let a = from_url(&app, &key, json!({"url": url})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["size"], 100);
    // At most 5 redirects: a chain of 6 is refused, one of 5 followed.
    let chain = |n: usize| {
        let mut url = src.url("/bytes/10/c.bin");
        for _ in 0..n {
            url = src.url(&format!("/redirect?to={}", common::urlencode(&url)));
        }
        url
    };
    let a = from_url(&app, &key, json!({"url": chain(6)})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["code"], "url_refused");
    let a = from_url(&app, &key, json!({"url": chain(5)})).await;
    assert_eq!(a.status, StatusCode::CREATED);
}

#[tokio::test]
async fn oversized_sources_are_stopped_before_they_are_stored() {
    let src = Source::start().await;
    let app = TestApp::fetching(MIB, allowing_loopback()).await;
    let key = app.key("p1", CredentialKind::Session).await;
    let big = 2 * MIB as usize;
    // Announced: refused on the Content-Length, before the body.
    let a = from_url(&app, &key, json!({"url": src.url(&format!("/bytes/{big}/b.bin"))})).await;
    assert_eq!(
        a.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    // Not announced (chunked): stopped during the body.
    let a = from_url(
        &app,
        &key,
        json!({"url": src.url(&format!("/chunked/{big}")), "name": "c.bin"}),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(app.file_rows("p1").await, 0);
    assert_eq!(app.stored_objects().await, 0);
    assert_eq!(app.temp_files().await, 0);
    // The source's errors are told apart from filedock's.
    let a = from_url(&app, &key, json!({"url": src.url("/status/404")})).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.json()["error"]["code"], "source_failed");
}

#[tokio::test]
async fn stalled_sources_time_out() {
    let src = Source::start().await;
    let app = TestApp::fetching(MIB, allowing_loopback()).await;
    let key = app.key("p1", CredentialKind::Session).await;
    for path in ["/stall-head", "/stall-body"] {
        let a = from_url(&app, &key, json!({"url": src.url(path), "name": "s.bin"})).await;
        assert_eq!(
            a.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json()["error"]["code"], "source_timeout");
    }
    assert_eq!(app.file_rows("p1").await, 0);
    assert_eq!(app.stored_objects().await, 0);
}

/// Polls a file until it leaves `pending` (bounded).
async fn settled(app: &TestApp, key: &str, id: &str) -> serde_json::Value {
    for _ in 0..600 {
        let f = app.get(key, &format!("/v1/files/{id}")).await.json();
        if f["status"] != "pending" {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("file {id} stayed pending");
}

#[tokio::test]
async fn async_fetches_answer_at_once_and_settle_in_the_background() {
    let src = Source::start().await;
    let app = TestApp::fetching(MIB, allowing_loopback()).await;
    let key = app.key("p1", CredentialKind::Session).await;
    let a = from_url(&app, &key, json!({"url": src.url("/bytes/5000/a.bin"), "async": true})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["status"], "pending");
    let f = settled(&app, &key, a.json()["id"].as_str().unwrap()).await;
    assert_eq!(f["status"], "ready");
    assert_eq!(f["sha256"], sha256_hex(&bytes_of(5000)));
    // Too large during the body: the file fails with the rule, and keeps no bytes.
    let url = src.url(&format!("/chunked/{}", 2 * MIB));
    let a = from_url(&app, &key, json!({"url": url, "name": "c.bin", "async": true})).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let id = a.json()["id"].as_str().unwrap().to_owned();
    let f = settled(&app, &key, &id).await;
    assert_eq!(f["status"], "failed");
    assert!(f["reason"].as_str().unwrap().starts_with("too_large"), "{f}");
    let rec = app
        .files
        .file_record(&filedock_core::FileId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, FileStatus::Failed);
    assert_eq!(app.stored_objects().await, 1, "only the first file's bytes are stored");
    let got = app.get(&key, &format!("/v1/files/{id}/content")).await;
    assert_eq!(got.status, StatusCode::CONFLICT);
    // A source that has not even answered yet: 202 at once (had the request waited for the
    // source, it would have answered 504 after the 2 s first-byte timeout); the file fails when
    // the source times out.
    let a = from_url(
        &app,
        &key,
        json!({"url": src.url("/stall-head"), "name": "s.bin", "async": true}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let f = settled(&app, &key, a.json()["id"].as_str().unwrap()).await;
    assert_eq!(f["status"], "failed");
    assert!(f["reason"].as_str().unwrap().starts_with("source_timeout"), "{f}");
    // A redirect to a refused address, found in the background, fails the file with the rule.
    let to = common::urlencode("http://169.254.169.254/latest/meta-data/");
    let a = from_url(
        &app,
        &key,
        json!({"url": src.url(&format!("/redirect?to={to}")), "async": true}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let f = settled(&app, &key, a.json()["id"].as_str().unwrap()).await;
    assert!(f["reason"].as_str().unwrap().starts_with("url_refused"), "{f}");
    // Refusals found before anything is sent are still the request's answer, not a failed file.
    for url in ["http://10.0.0.1/x", "http://localhost/x", "ftp://example.com/x"] {
        let a = from_url(&app, &key, json!({"url": url, "async": true})).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{url}");
    }
    // Another project sees none of it.
    let other = app.key("p2", CredentialKind::Session).await;
    assert_eq!(
        app.get(&other, &format!("/v1/files/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_malformed_allowlist_is_refused_at_start() {
    let bad = FetchConfig {
        allow: vec!["10.0.0.0/99".into()],
        ..Default::default()
    };
    let err = filedock_server::fetch::Fetcher::new(bad).unwrap_err();
    assert!(err.contains("10.0.0.0/99"), "{err}");
}
