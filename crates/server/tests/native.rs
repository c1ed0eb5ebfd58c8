//! The native API through the real router: shapes, scoping, limits, types, presigned uploads,
//! links, and the S3 rules of the local store's signed URLs.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use filedock_core::{CredentialKind, UploadPolicy};
use serde_json::json;

#[tokio::test]
async fn every_route_needs_a_valid_key() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let id = app.upload_raw(&key, "a.txt", b"hi").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let routes = [
        ("GET", "/v1/files".to_owned()),
        ("POST", "/v1/files?name=a.txt".to_owned()),
        ("GET", format!("/v1/files/{id}")),
        ("DELETE", format!("/v1/files/{id}")),
        ("GET", format!("/v1/files/{id}/content")),
        ("POST", format!("/v1/files/{id}/links")),
        ("POST", "/v1/uploads".to_owned()),
        ("POST", format!("/v1/uploads/{id}/complete")),
    ];
    let bad_keys = [
        None,
        Some("Bearer nope".to_owned()),
        Some(format!("Bearer {}x", &key[..key.len() - 1])),
        Some(format!("Basic {key}")),
    ];
    for (method, path) in &routes {
        for auth in &bad_keys {
            let mut req = Request::builder().method(*method).uri(path);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let ans = app.send(req.body(Body::from("x")).unwrap()).await;
            assert_eq!(ans.status, StatusCode::UNAUTHORIZED, "{method} {path} with {auth:?}");
            assert_eq!(ans.json()["error"]["code"], "unauthenticated");
            assert_eq!(ans.header("www-authenticate").as_deref(), Some("Bearer"));
        }
    }
    assert_eq!(app.get(&key, "/v1/files").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_key_stops_at_once() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    assert_eq!(app.get(&key, "/v1/files").await.status, StatusCode::OK);
    let id = filedock_core::auth::parse_token(&key).unwrap().id.to_owned();
    app.files.credentials().revoke(&id).await.unwrap();
    let ans = app.get(&key, "/v1/files").await;
    assert_eq!(ans.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ans.json()["error"]["message"], "credential revoked");
}

#[tokio::test]
async fn raw_upload_then_read_back_exactly() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let ans = app.upload_raw(&key, "data.bin", &bytes).await;
    assert_eq!(
        ans.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&ans.body)
    );
    let f = ans.json();
    assert_eq!(f["name"], "data.bin");
    assert_eq!(f["size"], 200_000);
    assert_eq!(f["sha256"], sha256_hex(&bytes));
    assert_eq!(f["status"], "ready");
    assert_eq!(f["class"], "input");
    assert_eq!(f["extension"], "bin");
    assert_eq!(
        f["expires_at"],
        (START / 1000) + 86_400,
        "inputs are kept a day by default"
    );
    let key_path = f["key"].as_str().unwrap();
    assert!(
        key_path.starts_with("demo/2026/01/01/") && key_path.ends_with(".bin"),
        "{key_path}"
    );

    let id = f["id"].as_str().unwrap();
    let got = app.get(&key, &format!("/v1/files/{id}/content")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, bytes);
    assert_eq!(got.header("content-length").as_deref(), Some("200000"));
    assert_eq!(
        got.header("content-disposition").as_deref(),
        Some("attachment; filename=\"data.bin\"; filename*=UTF-8''data.bin")
    );
    assert_eq!(got.header("accept-ranges").as_deref(), Some("bytes"));

    let rec = app.get(&key, &format!("/v1/files/{id}")).await;
    assert_eq!(rec.json(), f);
}

#[tokio::test]
async fn ranges() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let id = app.upload_raw(&key, "r.txt", b"0123456789").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ranged = |r: &'static str| {
        Request::get(format!("/v1/files/{id}/content"))
            .header("authorization", format!("Bearer {key}"))
            .header("range", r)
            .body(Body::empty())
            .unwrap()
    };
    let a = app.send(ranged("bytes=2-5")).await;
    assert_eq!(
        (a.status, a.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"2345"[..])
    );
    assert_eq!(a.header("content-range").as_deref(), Some("bytes 2-5/10"));
    let a = app.send(ranged("bytes=-3")).await;
    assert_eq!(a.body, b"789");
    let a = app.send(ranged("bytes=10-")).await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(a.header("content-range").as_deref(), Some("bytes */10"));
    let a = app.send(ranged("bytes=0-1,4-5")).await;
    assert_eq!(
        (a.status, a.body.as_slice()),
        (StatusCode::OK, &b"0123456789"[..]),
        "multiple ranges: the whole file"
    );
}

#[tokio::test]
async fn multipart_upload_takes_fields_and_refuses_paths_as_names() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let (ct, body) = multipart(&[("class", "asset")], "../../etc/evil name.png", "image/png", PNG);
    let req = Request::post("/v1/files")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let ans = app.send(req).await;
    assert_eq!(
        (ans.status, ans.json()["error"]["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("file name must not contain a path"))
    );
    let (ct, body) = multipart(&[("class", "asset")], "evil name.png", "image/png", PNG);
    let req = Request::post("/v1/files")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let ans = app.send(req).await;
    assert_eq!(
        ans.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&ans.body)
    );
    let f = ans.json();
    assert_eq!(f["name"], "evil name.png");
    assert_eq!(f["class"], "asset");
    assert_eq!(f["expires_at"], serde_json::Value::Null);
    assert_eq!(f["declared_type"], "image/png");
    assert_eq!(f["detected_type"], "image/png");
    assert!(!f["key"].as_str().unwrap().contains(".."));
    let got = app
        .get(&key, &format!("/v1/files/{}/content", f["id"].as_str().unwrap()))
        .await;
    assert_eq!(got.body, PNG);
    assert_eq!(
        got.header("content-disposition").unwrap(),
        "attachment; filename=\"evil name.png\"; filename*=UTF-8''evil%20name.png"
    );
    // Quotes in a name are encoded safely in the header.
    let quoted = app.upload_raw(&key, "say \"hi\".png", PNG).await.json();
    let got = app
        .get(&key, &format!("/v1/files/{}/content", quoted["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        got.header("content-disposition").unwrap(),
        "attachment; filename=\"say _hi_.png\"; filename*=UTF-8''say%20%22hi%22.png"
    );

    // A form without a file field, and a malformed form.
    let (ct, _) = multipart(&[], "x", "text/plain", b"");
    let only_fields = "------filedock-test-boundary\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n------filedock-test-boundary--\r\n";
    let req = Request::post("/v1/files")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", ct.clone())
        .body(Body::from(only_fields))
        .unwrap();
    let ans = app.send(req).await;
    assert_eq!(
        (ans.status, ans.json()["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let req = Request::post("/v1/files")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "multipart/form-data")
        .body(Body::from("x"))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::BAD_REQUEST, "no boundary");
    let req = Request::post("/v1/files").header("authorization", format!("Bearer {key}")).header("content-type", ct).body(Body::from("------filedock-test-boundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\ntrunc")).unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::BAD_REQUEST, "truncated");
    assert_eq!(app.stored_objects().await, 2);
    assert_eq!(app.temp_files().await, 0);
}

#[tokio::test]
async fn bad_names_are_refused() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    for name in ["", "a/b.txt", "a\\b.txt", "a\u{1}b.txt", "..", &"n".repeat(256)] {
        let ans = app.upload_raw(&key, name, b"x").await;
        assert_eq!(ans.status, StatusCode::BAD_REQUEST, "{name:?}");
    }
    let ans = app.upload_raw(&key, "名前 ok.txt", "é".as_bytes()).await;
    assert_eq!(ans.status, StatusCode::CREATED);
    assert_eq!(app.stored_objects().await, 1);
}

#[tokio::test]
async fn another_project_sees_nothing() {
    let app = TestApp::new().await;
    let mine = app.key("alpha", CredentialKind::Integration).await;
    let theirs = app.key("beta", CredentialKind::Session).await;
    let id = app.upload_raw(&mine, "secret.txt", b"mine").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        let ans = app.get(&theirs, &path).await;
        assert_eq!(
            (ans.status, ans.json()["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{path}"
        );
    }
    assert_eq!(
        app.post_json(&theirs, &format!("/v1/files/{id}/links"), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post_json(&theirs, &format!("/v1/uploads/{id}/complete"), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let del = Request::delete(format!("/v1/files/{id}"))
        .header("authorization", format!("Bearer {theirs}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(del).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&theirs, "/v1/files").await.json()["files"], json!([]));
    assert_eq!(
        app.get(&mine, &format!("/v1/files/{id}/content")).await.body,
        b"mine",
        "untouched"
    );
}

#[tokio::test]
async fn workspace_keys_see_their_workspace_only() {
    let app = TestApp::new().await;
    let project = app.key("p", CredentialKind::Integration).await;
    let ws1 = app.workspace_key("p", "ws1").await;
    let ws2 = app.workspace_key("p", "ws2").await;
    let a = app.upload_raw(&ws1, "a.txt", b"a").await.json();
    assert_eq!(a["workspace"], "ws1");
    let id = a["id"].as_str().unwrap();
    assert_eq!(
        app.get(&ws2, &format!("/v1/files/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&ws2, "/v1/files").await.json()["files"], json!([]));
    assert_eq!(
        app.get(&ws1, "/v1/files").await.json()["files"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get(&project, &format!("/v1/files/{id}")).await.status,
        StatusCode::OK,
        "a project-wide key sees every workspace"
    );
}

#[tokio::test]
async fn listing_pages_with_a_cursor() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.upload_raw(&key, &format!("f{i}.txt"), b"x").await.json()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get(&key, &format!("/v1/files?limit=2&cursor={cursor}"))
            .await
            .json();
        seen.extend(
            page["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every file once, newest first");
    assert_eq!(
        app.get(&key, "/v1/files?cursor=zzz").await.status,
        StatusCode::BAD_REQUEST
    );
}

fn only_pdf() -> BTreeMap<String, UploadPolicy> {
    BTreeMap::from([(
        "native".to_owned(),
        UploadPolicy {
            max_size: 1024,
            allow: Some(vec!["pdf".into()]),
            allow_empty: false,
            keep_unmatched: false,
            scan: None,
        },
    )])
}

#[tokio::test]
async fn a_png_named_pdf_is_415_and_nothing_is_stored() {
    let app = TestApp::with_policies(only_pdf()).await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let ans = app.upload_raw(&key, "report.pdf", PNG).await;
    assert_eq!(ans.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(ans.json()["error"]["code"], "unsupported_type");
    let (ct, body) = multipart(&[], "report.pdf", "application/pdf", PNG);
    let req = Request::post("/v1/files")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        app.upload_raw(&key, "photo.png", PNG).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not on the allowlist"
    );
    assert_eq!(
        app.upload_raw(&key, "empty.pdf", b"").await.status,
        StatusCode::BAD_REQUEST,
        "empty files refused by this policy"
    );
    assert_eq!((app.stored_objects().await, app.temp_files().await), (0, 0));
    assert_eq!(app.get(&key, "/v1/files").await.json()["files"], json!([]));
    assert_eq!(app.upload_raw(&key, "real.pdf", PDF).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn over_the_limit_is_413_and_nothing_is_stored() {
    let app = TestApp::with_policies(only_pdf()).await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let mut big = PDF.to_vec();
    big.resize(1025, b' ');
    // Declared length over the limit: refused before the body is read.
    let ans = app.upload_raw(&key, "big.pdf", &big).await;
    assert_eq!(
        (ans.status, ans.json()["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    // No length declared (chunked): refused while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let req = Request::post("/v1/files?name=big.pdf")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    // In a form.
    let (ct, body) = multipart(&[], "big.pdf", "application/pdf", &big);
    let req = Request::post("/v1/files")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!((app.stored_objects().await, app.temp_files().await), (0, 0));
    // A lying Content-Length (shorter body) is refused too.
    let req = Request::post("/v1/files?name=a.pdf")
        .header("authorization", format!("Bearer {key}"))
        .header("content-length", "900")
        .body(Body::from(PDF.to_vec()))
        .unwrap();
    assert!(app.send(req).await.status.is_client_error());
    assert_eq!((app.stored_objects().await, app.temp_files().await), (0, 0));
}

async fn presign(app: &TestApp, key: &str, body: serde_json::Value) -> serde_json::Value {
    let ans = app.post_json(key, "/v1/uploads", body).await;
    assert_eq!(
        ans.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&ans.body)
    );
    ans.json()
}

fn put(url: &str, headers: &[(&str, String)], body: &[u8]) -> Request<Body> {
    let mut req = TestApp::to_url("PUT", url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.body(Body::from(body.to_vec())).unwrap()
}

#[tokio::test]
async fn presigned_put_follows_s3_rules() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let p = presign(
        &app,
        &key,
        json!({"name": "photo.png", "size": PNG.len(), "content_type": "image/png"}),
    )
    .await;
    assert_eq!(p["file"]["status"], "pending");
    let url = p["upload"]["url"].as_str().unwrap();
    assert_eq!(p["upload"]["method"], "PUT");
    assert_eq!(
        p["upload"]["headers"],
        json!({"Content-Length": PNG.len().to_string(), "Content-Type": "image/png", "If-None-Match": "*"})
    );
    let len = PNG.len().to_string();
    let all = [
        ("content-length", len.clone()),
        ("content-type", "image/png".to_owned()),
        ("if-none-match", "*".to_owned()),
    ];

    // Each signed header missing or different: 403, S3's XML error.
    for skip in 0..3 {
        let hs: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, h)| h.clone())
            .collect();
        let ans = app.send(put(url, &hs, PNG)).await;
        assert_eq!(ans.status, StatusCode::FORBIDDEN, "without {}", all[skip].0);
    }
    let mut other_type = all.to_vec();
    other_type[1].1 = "image/jpeg".into();
    let ans = app.send(put(url, &other_type, PNG)).await;
    assert_eq!(ans.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&ans.body).contains("<Code>AccessDenied</Code>"));
    let mut other_len = all.to_vec();
    other_len[0].1 = (PNG.len() - 1).to_string();
    assert_eq!(
        app.send(put(url, &other_len, &PNG[1..])).await.status,
        StatusCode::FORBIDDEN
    );
    let tampered = url.replace("X-Fd-Signature=", "X-Fd-Signature=A");
    assert_eq!(app.send(put(&tampered, &all, PNG)).await.status, StatusCode::FORBIDDEN);

    // Before the upload, completing is a conflict.
    let id = p["file"]["id"].as_str().unwrap();
    assert_eq!(
        app.post_json(&key, &format!("/v1/uploads/{id}/complete"), json!({}))
            .await
            .status,
        StatusCode::CONFLICT
    );

    let ok = app.send(put(url, &all, PNG)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.header("etag").is_some());
    let again = app.send(put(url, &all, PNG)).await;
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
    assert!(String::from_utf8_lossy(&again.body).contains("<Code>PreconditionFailed</Code>"));

    let done = app
        .post_json(&key, &format!("/v1/uploads/{id}/complete"), json!({}))
        .await;
    assert_eq!(done.status, StatusCode::OK);
    let f = done.json();
    assert_eq!(
        (f["status"].as_str(), f["sha256"].as_str(), f["detected_type"].as_str()),
        (Some("ready"), Some(sha256_hex(PNG).as_str()), Some("image/png"))
    );
    assert_eq!(
        app.post_json(&key, &format!("/v1/uploads/{id}/complete"), json!({}))
            .await
            .json(),
        f,
        "completing again is harmless"
    );

    // After expiry: 403.
    let late = presign(&app, &key, json!({"name": "late.png", "size": PNG.len()})).await;
    app.clock.advance(901_000);
    let hs = [("content-length", len.clone()), ("if-none-match", "*".to_owned())];
    let ans = app.send(put(late["upload"]["url"].as_str().unwrap(), &hs, PNG)).await;
    assert_eq!(ans.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&ans.body).contains("expired"));
}

#[tokio::test]
async fn a_url_that_signs_no_type_takes_a_plain_put() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let p = presign(&app, &key, json!({"name": "notes.txt", "size": 5})).await;
    // As `curl -X PUT --upload-file` sends it: a length, no type, plus the create-only header.
    let hs = [
        ("content-length", "5".to_owned()),
        ("if-none-match", "*".to_owned()),
        ("content-type", "application/x-anything".to_owned()),
    ];
    assert_eq!(
        app.send(put(p["upload"]["url"].as_str().unwrap(), &hs, b"hello"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn completing_checks_what_arrived() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    // The type is not signed, so a PNG can arrive for a .pdf. On local disk filedock sees the
    // PUT and refuses it in its answer; on S3 the bucket answers the PUT, and completion refuses
    // the object and deletes it.
    let p = presign(&app, &key, json!({"name": "doc.pdf", "size": PNG.len()})).await;
    let hs = [
        ("content-length", PNG.len().to_string()),
        ("if-none-match", "*".to_owned()),
    ];
    let put_status = app
        .call("PUT", p["upload"]["url"].as_str().unwrap(), &hs, PNG.to_vec())
        .await
        .status;
    let id = p["file"]["id"].as_str().unwrap();
    if scaled() {
        assert_eq!(put_status, StatusCode::OK);
        assert_eq!(app.stored_objects().await, 1);
        let ans = app
            .post_json(&key, &format!("/v1/uploads/{id}/complete"), json!({}))
            .await;
        assert_eq!(ans.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    } else {
        assert_eq!(put_status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let ans = app
            .post_json(&key, &format!("/v1/uploads/{id}/complete"), json!({}))
            .await;
        assert_eq!(ans.status, StatusCode::CONFLICT, "nothing was received");
    }
    assert_eq!(app.stored_objects().await, 0, "the refused object is deleted");
    assert_eq!(app.get(&key, "/v1/files").await.json()["files"], json!([]));
    // Too large for the policy at presign time.
    let ans = app
        .post_json(&key, "/v1/uploads", json!({"name": "big.bin", "size": 2 * 1024 * 1024}))
        .await;
    assert_eq!(ans.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown fields are refused.
    assert_eq!(
        app.post_json(&key, "/v1/uploads", json!({"name": "a", "sise": 1}))
            .await
            .status
            .as_u16()
            / 100,
        4
    );
}

#[tokio::test]
async fn download_links_expire_and_die_with_the_file() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let id = app.upload_raw(&key, "résumé 1.txt", b"linked bytes").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = app
        .post_json(&key, &format!("/v1/files/{id}/links"), json!({"ttl_seconds": 60}))
        .await;
    assert_eq!(link.status, StatusCode::CREATED);
    let link = link.json();
    assert_eq!(link["expires_at"], START / 1000 + 60);
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(BASE));

    let got = app
        .send(TestApp::to_url("GET", &url).body(Body::empty()).unwrap())
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, b"linked bytes");
    assert_eq!(
        got.header("content-disposition").as_deref(),
        Some("attachment; filename=\"r_sum_ 1.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.txt")
    );
    assert_eq!(got.header("content-type").as_deref(), Some("text/plain; charset=utf-8"));
    let ranged = app
        .send(
            TestApp::to_url("GET", &url)
                .header("range", "bytes=7-")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        (ranged.status, ranged.body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"bytes"[..])
    );
    // The signature covers the method and the response overrides.
    assert_eq!(
        app.send(
            TestApp::to_url("PUT", &url)
                .header("content-length", "1")
                .body(Body::from("x"))
                .unwrap()
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let swapped = url.replace("text%2Fplain", "text%2Fhtml");
    assert_eq!(
        app.send(TestApp::to_url("GET", &swapped).body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    app.clock.advance(61_000);
    assert_eq!(
        app.send(TestApp::to_url("GET", &url).body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::FORBIDDEN,
        "expired"
    );

    let fresh = app
        .post_json(&key, &format!("/v1/files/{id}/links"), json!({}))
        .await
        .json()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let del = Request::delete(format!("/v1/files/{id}"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(del).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.send(TestApp::to_url("GET", &fresh).body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::NOT_FOUND,
        "a deleted file's link is dead"
    );
    assert_eq!(
        app.get(&key, &format!("/v1/files/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&key, &format!("/v1/files/{id}/content")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.stored_objects().await, 0);

    let bad_ttl = app
        .post_json(
            &key,
            "/v1/files/00000000000000000000000000000000/links",
            json!({"ttl_seconds": 0}),
        )
        .await;
    assert_eq!(bad_ttl.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn files_expire_with_their_class() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let id = app.upload_raw(&key, "short.txt", b"x").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.clock.advance(86_400_000);
    assert_eq!(
        app.get(&key, &format!("/v1/files/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&key, "/v1/files").await.json()["files"], json!([]));
}

/// Every `.route("path", method(handler)…)` registered in the server's sources, as
/// `(method, path)`: read from the code itself, so a route added without documentation fails.
fn registered_routes() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut sources = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let methods = ["get", "post", "put", "patch", "delete", "head", "options"];
    let mut found = Vec::new();
    for src in &sources {
        let mut rest = src.as_str();
        while let Some(at) = rest.find(".route(\"") {
            rest = &rest[at + 8..];
            let end = rest.find('"').unwrap();
            let path = rest[..end].to_owned();
            // The handler expression: up to the parenthesis that closes `.route(`.
            let (mut depth, mut stop) = (1, 0);
            for (i, c) in rest[end..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    stop = end + i;
                    break;
                }
            }
            let expr = &rest[end + 1..stop];
            for m in methods {
                let mut hay = expr;
                while let Some(i) = hay.find(&format!("{m}(")) {
                    let before = hay[..i].chars().last();
                    if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        found.push((m.to_owned(), path.clone()));
                    }
                    hay = &hay[i + m.len()..];
                }
            }
            rest = &rest[stop..];
        }
    }
    found
}

#[tokio::test]
async fn openapi_documents_every_route_and_resolves_every_reference() {
    let app = TestApp::new().await;
    let ans = app
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(ans.status, StatusCode::OK);
    let spec = ans.json();
    let paths = spec["paths"].as_object().unwrap();
    let routes = registered_routes();
    // The scan itself must see the whole surface (native, dialects, tus, blob, links, ops, web).
    assert!(routes.len() >= 46, "only {} routes found in the sources", routes.len());
    for (m, p) in &routes {
        // The `/blob/` wildcard is documented as its two parts.
        let documented = if p == "/blob/{*rest}" {
            "/blob/{backend}/{key}"
        } else {
            p
        };
        assert!(!documented.contains("{*"), "wildcard route {p} needs a documented form");
        let op = paths.get(documented).and_then(|x| x.get(m.as_str()));
        assert!(op.is_some(), "{m} {p} is routed but missing from /openapi.json");
        assert!(
            op.unwrap()["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{m} {p} has no responses"
        );
    }
    // Every documented operation is routed (nothing documented that does not exist)...
    let routed: std::collections::BTreeSet<(String, String)> = routes
        .iter()
        .map(|(m, p)| {
            (
                m.clone(),
                if p == "/blob/{*rest}" {
                    "/blob/{backend}/{key}".into()
                } else {
                    p.clone()
                },
            )
        })
        .collect();
    let mut operation_ids = std::collections::BTreeSet::new();
    for (p, item) in paths {
        for (m, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&m.as_str()) {
                assert!(
                    routed.contains(&(m.clone(), p.clone())),
                    "{m} {p} is documented but not routed"
                );
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(operation_ids.insert(id.clone()), "operationId {id} is used twice");
            }
        }
    }
    // ...and every `$ref` names a schema that exists (a name clash would drop one silently).
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_owned());
                }
                o.values().for_each(|x| refs(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec, &mut all);
    assert!(all.len() > 50);
    for r in &all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(spec["components"]["schemas"][name].is_object(), "{r} does not resolve");
    }
    for name in [
        "cyberun.CompletedPart",
        "CompletedPart",
        "huawei.Error",
        "juniortree.Error",
    ] {
        assert!(spec["components"]["schemas"][name].is_object(), "schema {name} missing");
    }
    for scheme in ["bearer", "x_auth_token"] {
        assert!(spec["components"]["securitySchemes"][scheme].is_object());
    }
    let huawei = &paths["/v1/{project_id}/agent-runtime/upload-file"]["post"];
    assert_eq!(huawei["security"], json!([{"x_auth_token": []}]));
    assert!(huawei["requestBody"]["content"]["multipart/form-data"].is_object());
}

#[tokio::test]
async fn the_docs_page_is_served_from_the_binary() {
    let app = TestApp::new().await;
    let redirect = app.send(Request::get("/docs").body(Body::empty()).unwrap()).await;
    assert!(redirect.status.is_redirection());
    let page = app.send(Request::get("/docs/").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    // No script, style or image from another origin.
    assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let init = app
        .send(
            Request::get("/docs/swagger-initializer.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let init = String::from_utf8(init.body.clone()).unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    assert!(init.contains("validatorUrl"), "{init}");
    let bundle = app
        .send(Request::get("/docs/swagger-ui-bundle.js").body(Body::empty()).unwrap())
        .await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(bundle.body.len() > 500_000, "the bundle is {} bytes", bundle.body.len());
}

#[tokio::test]
async fn a_presigned_put_cannot_replace_a_complete_file_nor_replay_after_delete() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let p = presign(&app, &key, json!({"name": "a.txt"})).await;
    let url = p["upload"]["url"].as_str().unwrap().to_owned();
    let hs = [("content-length", "5".to_owned()), ("if-none-match", "*".to_owned())];
    assert_eq!(app.send(put(&url, &hs, b"hello")).await.status, StatusCode::OK);
    let id = p["file"]["id"].as_str().unwrap();
    assert_eq!(
        app.post_json(&key, &format!("/v1/uploads/{id}/complete"), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    let ans = app.send(put(&url, &hs, b"world")).await;
    assert_eq!(
        ans.status,
        StatusCode::PRECONDITION_FAILED,
        "a complete file is never replaced"
    );
    let del = Request::delete(format!("/v1/files/{id}"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(del).await.status, StatusCode::NO_CONTENT);
    let ans = app.send(put(&url, &hs, b"again")).await;
    assert_eq!(
        ans.status,
        StatusCode::FORBIDDEN,
        "a URL is dead after its file is deleted"
    );
    assert_eq!(app.stored_objects().await, 0, "nothing was written");
}

#[tokio::test]
async fn malformed_queries_and_bodies_get_the_json_envelope() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    for ans in [
        app.get(&key, "/v1/files?limit=-1").await,
        app.get(&key, "/v1/files?limit=lots").await,
        app.get(&key, "/v1/files/lookup").await,
        app.post_json(&key, "/v1/uploads", json!({"name": 5})).await,
        app.post_json(&key, "/v1/uploads", json!([])).await,
    ] {
        assert_eq!(
            ans.status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&ans.body)
        );
        assert_eq!(ans.json()["error"]["code"], "invalid_request");
    }
    let id = app.upload_raw(&key, "a.txt", b"a").await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad = Request::post(format!("/v1/files/{id}/links"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from("{nope"))
        .unwrap();
    assert_eq!(app.send(bad).await.json()["error"]["code"], "invalid_request");
    let empty = Request::post(format!("/v1/files/{id}/links"))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.send(empty).await.status,
        StatusCode::CREATED,
        "no body: the default TTL"
    );
}
