//! `Idempotency-Key`: a retried request makes one thing, on one instance or two, on both
//! flavours (`TEST_FLAVOR=s3-postgres`).

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::{Answer, TestApp};
use filedock_core::catalog::Idempotent;
use filedock_core::files::FileServiceConfig;
use filedock_core::{Clock, CredentialKind, ParamType, ParameterSpec, ProjectId, Workflow};
use filedock_server::{AppState, router};
use serde_json::json;
use tower::ServiceExt;

fn upload(key: &str, idem: &str, name: &str, body: Body, len: usize) -> Request<Body> {
    Request::post(format!("/v1/files?name={name}"))
        .header("authorization", format!("Bearer {key}"))
        .header("idempotency-key", idem)
        .header("content-length", len)
        .body(body)
        .unwrap()
}

async fn send(router: &axum::Router, req: Request<Body>) -> Answer {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer { status, headers, body }
}

/// A body fed by the test: the request stays running until the sender sends the rest.
fn held_body() -> (Body, tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream = tokio_stream_of(rx);
    (Body::from_stream(stream), tx)
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_repeat_gets_the_first_answer_and_makes_nothing() {
    let app = TestApp::new().await;
    let key = app.key("p1", CredentialKind::Session).await;
    let bytes = b"hello, once".to_vec();
    let first = send(
        &app.router,
        upload(&key, "k-1", "a.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = send(
        &app.router,
        upload(&key, "k-1", "a.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.body, first.body, "the same answer");
    assert_eq!(again.header("content-type"), first.header("content-type"));
    assert_eq!(app.file_rows("p1").await, 1);
    assert_eq!(app.stored_objects().await, 1);

    // The same key with another body, or another target: 422, and nothing made.
    let other = b"hello, twice".to_vec();
    let a = send(
        &app.router,
        upload(&key, "k-1", "a.txt", Body::from(other.clone()), other.len()),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json()["error"]["code"], "idempotency_key_reused");
    let a = send(
        &app.router,
        upload(&key, "k-1", "b.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.file_rows("p1").await, 1);

    // Keys belong to a project: another project's same key is its own.
    let other_project = app.key("p2", CredentialKind::Session).await;
    let a = send(
        &app.router,
        upload(&other_project, "k-1", "a.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("idempotent-replayed"), None);

    // A malformed key is refused before anything runs.
    let a = send(
        &app.router,
        upload(&key, "k 2", "a.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.file_rows("p1").await, 1);

    // After 24 h the key is free again.
    app.clock.advance(24 * 3600 * 1000 + 1);
    let a = send(
        &app.router,
        upload(&key, "k-1", "a.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("idempotent-replayed"), None);
    assert_ne!(a.json()["id"], first.json()["id"]);
}

/// A client whose upload broke off mid-body retries with the same key and gets one file.
#[tokio::test]
async fn a_retry_after_a_broken_upload_makes_one_file() {
    let app = TestApp::new().await;
    let key = app.key("p1", CredentialKind::Session).await;
    let bytes = vec![b'x'; 300_000];
    let (body, tx) = held_body();
    let first = tokio::spawn({
        let router = app.router.clone();
        let key = key.clone();
        async move { send(&router, upload(&key, "retry-1", "r.txt", body, 300_000)).await }
    });
    tx.send(Ok(Bytes::from(vec![b'x'; 100_000]))).await.unwrap();
    tx.send(Err(std::io::Error::other("connection reset"))).await.unwrap();
    let first = first.await.unwrap();
    assert!(!first.status.is_success(), "the broken upload failed: {}", first.status);
    let again = send(
        &app.router,
        upload(&key, "retry-1", "r.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(
        again.header("idempotent-replayed"),
        None,
        "the failed attempt kept nothing"
    );
    let third = send(
        &app.router,
        upload(&key, "retry-1", "r.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(third.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(third.json()["id"], again.json()["id"]);
    assert_eq!(app.file_rows("p1").await, 1);
    assert_eq!(app.stored_objects().await, 1);
}

/// Two instances, one key: while the first runs the other answers 409 with `Retry-After`; after
/// it, the other replays its answer. One file.
#[tokio::test]
async fn two_instances_with_one_key_make_one_file() {
    let app = TestApp::new().await;
    let b_service = app.another_instance();
    let b = router(AppState::new(b_service.clone(), Default::default(), Default::default()).unwrap());
    b_service.verify_identity().await.unwrap();
    app.files.fleet_heartbeat().await.unwrap();
    b_service.fleet_heartbeat().await.unwrap();
    let key = app.key("p1", CredentialKind::Session).await;
    let bytes = vec![b'y'; 200_000];
    let (body, tx) = held_body();
    let on_a = tokio::spawn({
        let router = app.router.clone();
        let key = key.clone();
        async move { send(&router, upload(&key, "two-1", "t.txt", body, 200_000)).await }
    });
    tx.send(Ok(Bytes::from(vec![b'y'; 100_000]))).await.unwrap();
    // The first request holds the key as soon as it begins.
    let p1 = ProjectId::new("p1").unwrap();
    for _ in 0..500 {
        if app.catalog.idempotent(&p1, "two-1").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a = send(
        &b,
        upload(&key, "two-1", "t.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    let waiting = (a.status == StatusCode::CONFLICT).then_some(a);
    let waiting = waiting.expect("the second instance sees the first request running");
    assert_eq!(waiting.json()["error"]["code"], "in_progress");
    assert!(waiting.header("retry-after").is_some());
    tx.send(Ok(Bytes::from(vec![b'y'; 100_000]))).await.unwrap();
    drop(tx);
    let first = on_a.await.unwrap();
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let replay = send(
        &b,
        upload(&key, "two-1", "t.txt", Body::from(bytes.clone()), bytes.len()),
    )
    .await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(replay.json()["id"], first.json()["id"]);
    assert_eq!(app.file_rows("p1").await, 1);

    // Both at once, twenty times: each key makes one file; the other answer is a 409 or the
    // replayed first answer.
    for i in 0..20 {
        let idem = format!("race-{i}");
        let (x, y) = tokio::join!(
            send(
                &app.router,
                upload(&key, &idem, "t.txt", Body::from(bytes.clone()), bytes.len())
            ),
            send(&b, upload(&key, &idem, "t.txt", Body::from(bytes.clone()), bytes.len())),
        );
        let made = [&x, &y]
            .iter()
            .filter(|a| a.status == StatusCode::CREATED && a.header("idempotent-replayed").is_none())
            .count();
        assert_eq!(made, 1, "{idem}: {} and {}", x.status, y.status);
        for a in [&x, &y] {
            assert!(
                a.status == StatusCode::CREATED || a.status == StatusCode::CONFLICT,
                "{}",
                a.status
            );
        }
    }
    assert_eq!(app.file_rows("p1").await, 21);
}

/// A key held by an instance that is gone is taken over, not waited on for 24 h.
#[tokio::test]
async fn a_key_of_a_dead_instance_is_taken_over() {
    let app = TestApp::new().await;
    let key = app.key("p1", CredentialKind::Session).await;
    let now = app.clock.now();
    let orphan = Idempotent {
        project: ProjectId::new("p1").unwrap(),
        key: "dead-1".into(),
        request: "POST /v1/files?name=d.txt".into(),
        body_sha256: None,
        instance: "an-instance-that-died".into(),
        done: false,
        status: None,
        headers: None,
        body: None,
        created_at: now,
        expires_at: now + 1000 * 3600,
    };
    assert!(app.catalog.insert_idempotent(&orphan).await.unwrap());
    let a = send(&app.router, upload(&key, "dead-1", "d.txt", Body::from("dd"), 2)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
    let again = send(&app.router, upload(&key, "dead-1", "d.txt", Body::from("dd"), 2)).await;
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(app.file_rows("p1").await, 1);
}

fn one_workflow(c: &mut FileServiceConfig) {
    c.workflows = vec![Workflow {
        id: "wf_echo".into(),
        slug: Some("echo".into()),
        project: "demo".into(),
        parameters: vec![ParameterSpec {
            name: "text".into(),
            kind: ParamType::String,
            required: true,
        }],
    }];
}

/// The creating routes of the other ways in: each retried with its key answers the first
/// answer, and makes one thing.
#[tokio::test]
async fn every_creating_route_replays() {
    let app = TestApp::configured(one_workflow).await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let post = |path: &str, idem: &str, body: serde_json::Value, auth: (&str, String)| {
        Request::post(path)
            .header(auth.0, auth.1)
            .header("idempotency-key", idem)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let bearer = || ("authorization", format!("Bearer {key}"));
    let twice = |path: &'static str, idem: &'static str, body: serde_json::Value| {
        let app = &app;
        let req = move || post(path, idem, body.clone(), bearer());
        async move {
            let first = send(&app.router, req()).await;
            assert!(
                first.status.is_success(),
                "{path}: {}",
                String::from_utf8_lossy(&first.body)
            );
            let again = send(&app.router, req()).await;
            assert_eq!(again.status, first.status, "{path}");
            assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"), "{path}");
            assert_eq!(again.body, first.body, "{path}");
            first.json()
        }
    };
    // A workflow run retried makes one task.
    let run = twice(
        "/api/v1/r/workflows/wf_echo/run",
        "run-1",
        json!({"parameters": {"text": "hi"}}),
    )
    .await;
    let queued = app
        .catalog
        .queued_tasks(&ProjectId::new("demo").unwrap(), None, 100)
        .await
        .unwrap();
    assert_eq!(queued.len(), 1, "{run}");
    // Presigns and links.
    twice("/v1/uploads", "presign-1", json!({"name": "p.txt", "size": 3})).await;
    twice(
        "/api/v1/r/files/presign",
        "cy-1",
        json!({"file_name": "c.png", "file_size": 10, "content_type": "image/png"}),
    )
    .await;
    let up = app.upload_raw(&key, "l.txt", b"link me").await.json();
    let link_path: &'static str = Box::leak(format!("/v1/files/{}/links", up["id"].as_str().unwrap()).into_boxed_str());
    twice(link_path, "link-1", json!({"ttl_seconds": 60})).await;
    assert_eq!(app.file_rows("demo").await, 3, "two presigned files and one uploaded");

    // tus creation: the same Location.
    let tus = || {
        Request::post("/tus")
            .header("authorization", format!("Bearer {key}"))
            .header("idempotency-key", "tus-1")
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "5")
            .header("upload-metadata", "filename dC50eHQ=")
            .body(Body::empty())
            .unwrap()
    };
    let first = send(&app.router, tus()).await;
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let again = send(&app.router, tus()).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    let _ = Arc::clone(&app.files);

    // A new key's secret is never kept: the admin route refuses the header.
    let admin = app.key("demo", CredentialKind::Admin).await;
    let a = send(
        &app.router,
        post(
            "/v1/admin/keys",
            "admin-1",
            json!({"kind": "integration"}),
            ("authorization", format!("Bearer {admin}")),
        ),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
}
