//! Limits under attack, per project: a request rate (429 with Retry-After), storage quotas in
//! bytes and in files (507, `quota_exceeded`, checked before any byte is stored), and a cap on
//! uploads in progress (429). One project at its limits never slows another. Both flavours.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use common::*;
use filedock_core::limits::{Limits, LimitsOverride};
use filedock_core::{CredentialKind, ProjectSettings};
use serde_json::json;

fn limited(project: &str, o: LimitsOverride) -> impl FnOnce(&mut filedock_core::files::FileServiceConfig) {
    let project = project.to_owned();
    move |c| {
        c.limits = Limits::default();
        c.projects.insert(
            project,
            ProjectSettings {
                limits: o,
                ..ProjectSettings::default()
            },
        );
    }
}

#[tokio::test]
async fn a_project_over_its_rate_gets_429_and_others_do_not() {
    let app = TestApp::configured(limited(
        "busy",
        LimitsOverride {
            requests_per_second: Some(1),
            burst: Some(5),
            ..Default::default()
        },
    ))
    .await;
    let busy = app.key("busy", CredentialKind::Integration).await;
    let calm = app.key("calm", CredentialKind::Integration).await;
    for i in 0..5 {
        assert_eq!(
            app.get(&busy, "/v1/files").await.status,
            StatusCode::OK,
            "request {i} is within the burst"
        );
    }
    let mut refused = 0;
    for _ in 0..10 {
        let ans = app.get(&busy, "/v1/files").await;
        if ans.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
            assert_eq!(ans.json()["error"]["code"], "rate_limited");
            let after: u64 = ans.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=2).contains(&after), "Retry-After: {after}");
        }
    }
    assert!(
        refused >= 8,
        "at most one token per second refills: {refused} of 10 refused"
    );
    // Every dialect's way in counts, in its own envelope.
    let jt = app
        .send(
            Request::post("/api/v1/upload")
                .header("agent", "a")
                .header("authorization", format!("Bearer {busy}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (jt.status, jt.json()["code"].as_u64()),
        (StatusCode::TOO_MANY_REQUESTS, Some(429))
    );
    for _ in 0..20 {
        assert_eq!(
            app.get(&calm, "/v1/files").await.status,
            StatusCode::OK,
            "another project is not slowed"
        );
    }
}

#[tokio::test]
async fn storage_quotas_refuse_before_storing() {
    let app = TestApp::configured(limited(
        "small",
        LimitsOverride {
            max_bytes: Some(100),
            max_files: Some(3),
            ..Default::default()
        },
    ))
    .await;
    let key = app.key("small", CredentialKind::Integration).await;
    let session = app.key("small", CredentialKind::Session).await;
    assert_eq!(
        app.upload_raw(&key, "a.txt", &[b'a'; 60]).await.status,
        StatusCode::CREATED
    );

    // Bytes: a declared length over the quota is refused before a byte is read, whichever way.
    let over = app.upload_raw(&key, "b.txt", &[b'b'; 41]).await;
    assert_eq!(over.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(over.json()["error"]["code"], "quota_exceeded");
    let presign = app
        .post_json(&key, "/v1/uploads", json!({"name": "c.txt", "size": 41}))
        .await;
    assert_eq!(presign.status, StatusCode::INSUFFICIENT_STORAGE);
    let cy = app
        .post_json(
            &key,
            "/api/v1/r/files/presign",
            json!({"file_name": "c.txt", "file_size": 41}),
        )
        .await;
    assert_eq!(cy.status, StatusCode::INSUFFICIENT_STORAGE);
    let mp = app
        .post_json(
            &session,
            "/api/v1/uploads/multipart/initiate",
            json!({"file_name": "c.bin", "file_size": 1000}),
        )
        .await;
    assert_eq!(mp.status, StatusCode::INSUFFICIENT_STORAGE);
    let tus = app
        .send(
            Request::post("/tus/")
                .header("authorization", format!("Bearer {key}"))
                .header("tus-resumable", "1.0.0")
                .header("upload-length", "41")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(tus.status, StatusCode::INSUFFICIENT_STORAGE);
    // A form declares no file length: it is counted once read, and not kept.
    let (ct, body) = multipart(&[], "d.txt", "text/plain", &[b'd'; 41]);
    let form = app
        .send(
            Request::post("/v1/files")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(form.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(app.stored_objects().await, 1, "nothing over the quota was kept");
    assert_eq!(app.temp_files().await, 0);

    // Files: the third fits, the fourth does not; deleting one makes room.
    assert_eq!(app.upload_raw(&key, "e.txt", b"e").await.status, StatusCode::CREATED);
    let third = app.upload_raw(&key, "f.txt", b"f").await.json();
    let fourth = app.upload_raw(&key, "g.txt", b"g").await;
    assert_eq!(fourth.status, StatusCode::INSUFFICIENT_STORAGE);
    assert!(fourth.json()["error"]["message"].as_str().unwrap().contains("3 files"));
    let third = format!("/v1/files/{}", third["id"].as_str().unwrap());
    assert_eq!(app.delete(&key, &third).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.upload_raw(&key, "g.txt", b"g").await.status, StatusCode::CREATED);

    // Another project has no quota.
    let other = app.key("other", CredentialKind::Integration).await;
    for i in 0..5 {
        assert_eq!(
            app.upload_raw(&other, &format!("{i}.txt"), &[b'x'; 100]).await.status,
            StatusCode::CREATED
        );
    }
}

#[tokio::test]
async fn uploads_in_progress_are_capped_per_project() {
    let app = TestApp::configured(limited(
        "cap",
        LimitsOverride {
            max_concurrent_uploads: Some(2),
            ..Default::default()
        },
    ))
    .await;
    let key = app.key("cap", CredentialKind::Integration).await;
    let other = app.key("free", CredentialKind::Integration).await;
    // Two uploads that hold their connection open, sending a byte and then nothing.
    let mut senders = Vec::new();
    let mut pending = Vec::new();
    for i in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
        senders.push(tx);
        let body = Body::from_stream(tokio_stream_of(rx));
        let req = Request::post(format!("/v1/files?name=slow{i}.txt"))
            .header("authorization", format!("Bearer {key}"))
            .header("content-length", "2")
            .body(body)
            .unwrap();
        let router = app.router.clone();
        pending.push(tokio::spawn(async move {
            use tower::ServiceExt;
            router.oneshot(req).await.unwrap().status()
        }));
    }
    // Wait until both hold their slot.
    let cap = filedock_core::ProjectId::new("cap").unwrap();
    for _ in 0..500 {
        if app.files.uploads_in_progress(&cap) == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(app.files.uploads_in_progress(&cap), 2);
    let third = app.upload_raw(&key, "third.txt", b"3").await;
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a third upload is refused while two are in progress"
    );
    assert_eq!(third.json()["error"]["code"], "rate_limited");
    assert!(third.header("retry-after").is_some());
    assert_eq!(
        app.upload_raw(&other, "free.txt", b"f").await.status,
        StatusCode::CREATED,
        "other projects are not capped"
    );
    // The two finish; their slots are free again.
    for tx in &senders {
        tx.send(Ok(Bytes::from_static(b"y"))).await.unwrap();
    }
    drop(senders);
    for p in pending {
        assert_eq!(p.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(
        app.upload_raw(&key, "after.txt", b"a").await.status,
        StatusCode::CREATED
    );
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Limits for several projects at once.
fn limits_of(
    projects: Vec<(&'static str, LimitsOverride)>,
) -> impl FnOnce(&mut filedock_core::files::FileServiceConfig) {
    move |c| {
        c.limits = Limits::default();
        for (p, o) in projects {
            c.projects.insert(
                p.to_owned(),
                ProjectSettings {
                    limits: o,
                    ..ProjectSettings::default()
                },
            );
        }
    }
}

async fn tus_post(app: &TestApp, key: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::post("/tus/")
        .header("authorization", format!("Bearer {key}"))
        .header("tus-resumable", "1.0.0");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.send(req.body(Body::empty()).unwrap()).await
}

/// Quotas and the upload cap on the paths that once slipped past them: tus partial uploads
/// (concatenation), a deferred length declared later, and multipart part PUTs.
#[tokio::test]
async fn quotas_and_caps_hold_for_partial_and_deferred_uploads_and_part_puts() {
    let quota = LimitsOverride {
        max_bytes: Some(1000),
        max_files: Some(5),
        ..Default::default()
    };
    let app = TestApp::configured(limits_of(vec![
        ("partials", quota),
        ("deferred", quota),
        (
            "parts",
            LimitsOverride {
                max_concurrent_uploads: Some(1),
                ..Default::default()
            },
        ),
    ]))
    .await;

    // Partial uploads hold bytes: two of 400 fit in 1,000, a third does not.
    let key = app.key("partials", CredentialKind::Integration).await;
    for _ in 0..2 {
        let p = tus_post(&app, &key, &[("upload-length", "400"), ("upload-concat", "partial")]).await;
        assert_eq!(p.status, StatusCode::CREATED);
    }
    let third = tus_post(&app, &key, &[("upload-length", "400"), ("upload-concat", "partial")]).await;
    assert_eq!(
        third.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "partials count against the quota"
    );
    assert_eq!(third.json()["error"]["code"], "quota_exceeded");

    // A deferred length is checked when it is declared, before a byte is stored.
    let key = app.key("deferred", CredentialKind::Integration).await;
    let created = tus_post(&app, &key, &[("upload-defer-length", "1")]).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let path = created.header("location").unwrap().replace(BASE, "");
    let patch = |length: &'static str| {
        Request::patch(path.clone())
            .header("authorization", format!("Bearer {key}"))
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("upload-length", length)
            .header("content-type", "application/offset+octet-stream")
            .body(Body::from(vec![b'x'; 10]))
            .unwrap()
    };
    let over = app.send(patch("3000")).await;
    assert_eq!(
        over.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "3,000 bytes under a 1,000-byte quota"
    );
    let head = app
        .send(
            Request::head(path.clone())
                .header("authorization", format!("Bearer {key}"))
                .header("tus-resumable", "1.0.0")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(head.header("upload-offset").as_deref(), Some("0"), "nothing was stored");
    assert_eq!(
        app.send(patch("500")).await.status,
        StatusCode::NO_CONTENT,
        "within the quota"
    );

    // A multipart part streaming through filedock holds an upload slot. (On S3 the part goes
    // to the bucket, which filedock never sees; the local store's signed URL is filedock's.)
    if app.local.is_some() {
        let key = app.key("parts", CredentialKind::Integration).await;
        let init = app
            .post_json(&key, "/v1/uploads/multipart", json!({"name": "p.bin", "size": 3000}))
            .await
            .json();
        let id = init["upload_id"].as_str().unwrap();
        let parts = app
            .post_json(
                &key,
                &format!("/v1/uploads/multipart/{id}/parts"),
                json!({"part_numbers": [1]}),
            )
            .await
            .json();
        let part = &parts["parts"][0];
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.send(Ok(Bytes::from(vec![b'p'; 1000]))).await.unwrap();
        let mut req = Request::put(part["url"].as_str().unwrap().replace(BASE, ""));
        for (k, v) in part["headers"].as_object().unwrap() {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
        let req = req.body(Body::from_stream(tokio_stream_of(rx))).unwrap();
        let router = app.router.clone();
        let put = tokio::spawn(async move {
            use tower::ServiceExt;
            router.oneshot(req).await.unwrap().status()
        });
        let project = filedock_core::ProjectId::new("parts").unwrap();
        for _ in 0..500 {
            if app.files.uploads_in_progress(&project) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(app.files.uploads_in_progress(&project), 1, "the part PUT holds a slot");
        let second = app.upload_raw(&key, "second.txt", b"2").await;
        assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
        tx.send(Ok(Bytes::from(vec![b'p'; 2000]))).await.unwrap();
        drop(tx);
        assert_eq!(put.await.unwrap(), StatusCode::OK);
        assert_eq!(
            app.upload_raw(&key, "third.txt", b"3").await.status,
            StatusCode::CREATED
        );
    }
}
