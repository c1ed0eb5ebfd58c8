//! The four seed dialects through the real router: every success field, every error the seeds
//! name, and the refusal of other projects' keys.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use filedock_core::{CredentialKind, UploadPolicy};
use filedock_server::dialects::{DialectsConfig, JuniortreeConfig};
use serde_json::json;

fn keys_of(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

// ---------------------------------------------------------------- TokenOps

async fn upload_url(app: &TestApp, key: &str, body: serde_json::Value) -> Answer {
    app.post_json(key, "/v1/files/upload_url", body).await
}

#[tokio::test]
async fn tokenops_two_steps_then_visit() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let ans = upload_url(&app, &key, json!({"path": "my_files/test.mp4"})).await;
    assert_eq!(ans.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ans.body));
    let r = ans.json();
    assert_eq!(keys_of(&r), ["method", "path", "upload_url", "visit_url"]);
    assert_eq!(r["method"], "PUT");
    assert_eq!(r["path"], "local://filedock.test/demo/my_files/test.mp4");
    let visit = r["visit_url"].as_str().unwrap().to_owned();
    assert!(visit.starts_with(&format!("{BASE}/l/")), "{visit}");
    assert_eq!(
        follow(&app, &visit).await.status,
        StatusCode::CONFLICT,
        "nothing uploaded yet"
    );

    // As `curl -X PUT "<upload_url>" --upload-file ./test.mp4` sends it: a length, no type.
    let put = app
        .call(
            "PUT",
            r["upload_url"].as_str().unwrap(),
            &[("content-length", MP4.len().to_string())],
            MP4.to_vec(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let got = follow(&app, &visit).await;
    assert_eq!((got.status, got.body.as_slice()), (StatusCode::OK, MP4));
    assert_eq!(got.header("content-type").as_deref(), Some("video/mp4"));

    // The path names the file in other filedock APIs.
    let found = app
        .get(
            &key,
            &format!("/v1/files/lookup?path={}", urlencode(r["path"].as_str().unwrap())),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(
        (found.json()["name"].as_str(), found.json()["status"].as_str()),
        (Some("test.mp4"), Some("ready"))
    );

    // The upload URL cannot replace the completed file (on local disk filedock enforces it).
    if !scaled() {
        let again = app
            .call(
                "PUT",
                r["upload_url"].as_str().unwrap(),
                &[("content-length", "4".into())],
                b"evil".to_vec(),
            )
            .await;
        assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(follow(&app, &visit).await.body, MP4);
    }
    // A ready file at a path is not replaced.
    assert_eq!(
        upload_url(&app, &key, json!({"path": "my_files/test.mp4"}))
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn tokenops_a_pending_path_can_be_asked_again() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let a = upload_url(&app, &key, json!({"path": "x/y.mp4"})).await.json();
    let b = upload_url(&app, &key, json!({"path": "x/y.mp4"})).await;
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(b.json()["visit_url"], a["visit_url"], "the same pending file");
}

#[tokio::test]
async fn tokenops_errors() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    for bad in [
        json!({}),
        json!({"path": ""}),
        json!({"path": "/etc/passwd"}),
        json!({"path": "a/../../b"}),
        json!({"path": "a\\b.txt"}),
        json!({"path": "a\u{0}b"}),
        json!({"path": "a\nb"}),
        json!({"path": "a/./b"}),
        json!({"path": "x".repeat(256)}),
        json!({"path": "ok.txt", "storage_provider": "COS"}),
        json!({"path": "ok.txt", "region": "ap-guangzhou"}),
    ] {
        let ans = upload_url(&app, &key, bad.clone()).await;
        assert_eq!(ans.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(ans.json()["error"]["code"], "invalid_request");
    }
    let bad_json = Request::post("/v1/files/upload_url")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from("{nope"))
        .unwrap();
    assert_eq!(app.send(bad_json).await.status, StatusCode::BAD_REQUEST);
    // 255 characters are fine; a segment over 255 bytes is not (no file system takes it).
    assert_eq!(
        upload_url(&app, &key, json!({"path": "é".repeat(127)})).await.status,
        StatusCode::OK,
        "254 bytes"
    );
    let two = format!("{}/{}", "é".repeat(127), "b".repeat(127));
    assert_eq!(
        upload_url(&app, &key, json!({"path": two})).await.status,
        StatusCode::OK,
        "255 characters in segments of at most 254 bytes"
    );
    assert_eq!(
        upload_url(&app, &key, json!({"path": "é".repeat(255)})).await.status,
        StatusCode::BAD_REQUEST,
        "one segment of 510 bytes"
    );
    assert_eq!(
        upload_url(&app, &key, json!({"path": "p.txt", "storage_provider": "LOCAL"}))
            .await
            .status,
        StatusCode::OK
    );
    let anon = Request::post("/v1/files/upload_url")
        .body(Body::from(r#"{"path":"a.txt"}"#))
        .unwrap();
    assert_eq!(app.send(anon).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokenops_another_project_is_refused() {
    let app = TestApp::new().await;
    let a = app.key("alpha", CredentialKind::Integration).await;
    let b = app.key("beta", CredentialKind::Integration).await;
    let ra = upload_url(&app, &a, json!({"path": "shared/name.txt"})).await.json();
    let rb = upload_url(&app, &b, json!({"path": "shared/name.txt"})).await.json();
    assert_ne!(ra["path"], rb["path"], "each project writes under its own prefix");
    let put = app
        .call(
            "PUT",
            ra["upload_url"].as_str().unwrap(),
            &[("content-length", "4".into())],
            b"mine".to_vec(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let lookup = format!("/v1/files/lookup?path={}", urlencode(ra["path"].as_str().unwrap()));
    assert_eq!(app.get(&a, &lookup).await.status, StatusCode::OK);
    assert_eq!(app.get(&b, &lookup).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&b, "/v1/files").await.json()["files"], json!([]));
}

// ---------------------------------------------------------------- Huawei

fn huawei_req(
    project: &str,
    query: &str,
    token: Option<&str>,
    fields: &[(&str, &str)],
    name: &str,
    bytes: &[u8],
) -> Request<Body> {
    let (ct, body) = multipart(fields, name, "application/octet-stream", bytes);
    let mut req = Request::post(format!("/v1/{project}/agent-runtime/upload-file{query}")).header("content-type", ct);
    if let Some(t) = token {
        req = req.header("x-auth-token", t);
    }
    req.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn huawei_upload_and_download_for_expires_days() {
    let app = TestApp::new().await;
    let key = app.key("proj_1", CredentialKind::Integration).await;
    let ans = app
        .send(huawei_req(
            "proj_1",
            "?workspace_id=ws-9&expires=3&is_image=true",
            Some(&key),
            &[],
            "market.png",
            PNG,
        ))
        .await;
    assert_eq!(ans.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ans.body));
    let r = ans.json();
    assert_eq!(keys_of(&r), ["file_name", "headers", "url"]);
    assert_eq!(r["file_name"], "market.png");
    let url = r["url"].as_str().unwrap();
    // The Host the URL is signed for: filedock itself on local disk, the bucket's host on S3.
    let authority = url.split('/').nth(2).unwrap();
    let host = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    assert_eq!(r["headers"], json!([{ "Host": host }]));
    if !scaled() {
        assert_eq!(host, "filedock.test:80");
    }
    let got = follow(&app, url).await;
    assert_eq!((got.status, got.body.as_slice()), (StatusCode::OK, PNG));
    let listed = app.get(&key, "/v1/files").await.json();
    assert_eq!(listed["files"][0]["workspace"], "ws-9");
    assert_eq!(listed["files"][0]["expires_at"], START / 1000 + 3 * 86_400);
    if scaled() {
        // The bucket checks expiry by its own clock: the URL is signed for exactly `expires` days.
        assert!(url.contains(&format!("X-Amz-Expires={}", 3 * 86_400)), "{url}");
    } else {
        app.clock.advance(3 * 86_400_000 + 1_000);
        assert_eq!(
            follow(&app, url).await.status,
            StatusCode::FORBIDDEN,
            "not after `expires` days"
        );
    }
}

#[tokio::test]
async fn huawei_long_expiry_uses_a_stable_link_and_form_fields_work_after_the_file() {
    let app = TestApp::new().await;
    let key = app.key("p", CredentialKind::Integration).await;
    let (ct, mut body) = multipart(&[], "notes.md", "text/markdown", "# héllo".as_bytes());
    // Fields after the file, as `curl -F file=@… -F expires=30` sends them.
    body.truncate(body.len() - "--\r\n".len());
    body.extend_from_slice(
        b"\r\nContent-Disposition: form-data; name=\"expires\"\r\n\r\n30\r\n------filedock-test-boundary--\r\n",
    );
    let req = Request::post("/v1/p/agent-runtime/upload-file")
        .header("content-type", ct)
        .header("x-auth-token", &key)
        .body(Body::from(body))
        .unwrap();
    let ans = app.send(req).await;
    assert_eq!(ans.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ans.body));
    let url = ans.json()["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{BASE}/l/")),
        "30 days is past the presign limit: {url}"
    );
    app.clock.advance(29 * 86_400_000);
    assert_eq!(follow(&app, &url).await.body, "# héllo".as_bytes());
    app.clock.advance(86_400_000 + 1_000);
    assert!(follow(&app, &url).await.status.is_client_error(), "dead after 30 days");
}

#[tokio::test]
async fn huawei_errors() {
    let app = TestApp::with_policies(BTreeMap::from([(
        "huawei".to_owned(),
        UploadPolicy {
            max_size: 4096,
            allow: filedock_server::dialects::default_policies()["huawei"].allow.clone(),
            allow_empty: true,
            keep_unmatched: false,
            scan: None,
        },
    )]))
    .await;
    let key = app.key("p", CredentialKind::Integration).await;
    let other = app.key("q", CredentialKind::Integration).await;
    let ws = app.workspace_key("p", "ws1").await;
    let check = |ans: Answer, status: StatusCode, what: &str| {
        assert_eq!(ans.status, status, "{what}: {}", String::from_utf8_lossy(&ans.body));
        let e = ans.json();
        assert_eq!(keys_of(&e), ["error_code", "error_msg"], "{what}");
        assert_eq!(e["error_code"], format!("FD.{:04}", status.as_u16()));
        e
    };
    check(
        app.send(huawei_req("p", "", None, &[], "a.png", PNG)).await,
        StatusCode::UNAUTHORIZED,
        "no token",
    );
    check(
        app.send(huawei_req("p", "", Some("garbage"), &[], "a.png", PNG)).await,
        StatusCode::UNAUTHORIZED,
        "bad token",
    );
    check(
        app.send(huawei_req("p", "", Some(&other), &[], "a.png", PNG)).await,
        StatusCode::FORBIDDEN,
        "another project's token",
    );
    check(
        app.send(huawei_req("p", "?workspace_id=ws2", Some(&ws), &[], "a.png", PNG))
            .await,
        StatusCode::FORBIDDEN,
        "another workspace",
    );
    check(
        app.send(huawei_req("bad.id", "", Some(&key), &[], "a.png", PNG)).await,
        StatusCode::BAD_REQUEST,
        "project id",
    );
    check(
        app.send(huawei_req("p", "?workspace_id=a/b", Some(&key), &[], "a.png", PNG))
            .await,
        StatusCode::BAD_REQUEST,
        "workspace id",
    );
    // The seed's own JSON request example.
    let json_req = Request::post("/v1/p/agent-runtime/upload-file")
        .header("content-type", "application/json")
        .header("x-auth-token", &key)
        .body(Body::from(r#"{"file": "C:\\Users\\Desktop\\market-CFrwA1xu.png"}"#))
        .unwrap();
    let e = check(app.send(json_req).await, StatusCode::BAD_REQUEST, "JSON body");
    assert!(e["error_msg"].as_str().unwrap().contains("multipart/form-data"));
    check(
        app.send(huawei_req("p", "?is_image=true", Some(&key), &[], "a.pdf", PDF))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "is_image but a pdf",
    );
    check(
        app.send(huawei_req("p", "", Some(&key), &[], "a.pdf", PNG)).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "png named pdf",
    );
    check(
        app.send(huawei_req("p", "", Some(&key), &[], "a.zip", b"PK\x03\x04rest"))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "zip not allowed",
    );
    check(
        app.send(huawei_req(
            "p",
            "",
            Some(&key),
            &[],
            "a.py",
            b"print(1)\n\xff\x00\x01\x02",
        ))
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "text must be text",
    );
    check(
        app.send(huawei_req("p", "", Some(&key), &[], "big.txt", &[b'a'; 5000]))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "over the limit",
    );
    check(
        app.send(huawei_req("p", "?expires=0", Some(&key), &[], "a.png", PNG))
            .await,
        StatusCode::BAD_REQUEST,
        "expires 0",
    );
    check(
        app.send(huawei_req("p", "", Some(&key), &[("is_image", "maybe")], "a.png", PNG))
            .await,
        StatusCode::BAD_REQUEST,
        "is_image",
    );
    assert_eq!(
        (app.stored_objects().await, app.temp_files().await),
        (0, 0),
        "nothing stored by any refusal"
    );
    for (name, bytes) in [
        ("a.py", &b"print('hi')\n"[..]),
        ("b.json", b"{}"),
        ("c.csv", b"a,b\n"),
        ("d.png", PNG),
        ("e.pdf", PDF),
    ] {
        assert_eq!(
            app.send(huawei_req("p", "", Some(&key), &[], name, bytes)).await.status,
            StatusCode::OK,
            "{name}"
        );
    }
}

// ---------------------------------------------------------------- Juniortree

/// The seed's curl: `-H 'Agent: …' -F 'file=@…' -F 'created_by=…'` (file first).
fn jt_req(agent: Option<&str>, key: Option<&str>, name: &str, bytes: &[u8], created_by: Option<&str>) -> Request<Body> {
    let b = "----jt";
    let mut body = format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n");
    if let Some(c) = created_by {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"created_by\"\r\n\r\n{c}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    let mut req = Request::post("/api/v1/upload").header("content-type", format!("multipart/form-data; boundary={b}"));
    if let Some(a) = agent {
        req = req.header("agent", a);
    }
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    req.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn juniortree_upload_shape_and_permanent_id() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let ans = app
        .send(jt_req(
            Some("fastgpt"),
            Some(&key),
            "607a919d.JPG",
            PNG_AS_JPEG,
            Some("xiaoming"),
        ))
        .await;
    assert_eq!(ans.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ans.body));
    let r = ans.json();
    assert_eq!(keys_of(&r), ["code", "data", "msg"]);
    assert_eq!(
        (r["code"].as_u64(), r["msg"].as_str()),
        (Some(200), Some("File uploaded successfully"))
    );
    let d = &r["data"];
    assert_eq!(
        keys_of(d),
        [
            "created_at",
            "created_by",
            "extension",
            "id",
            "mime_type",
            "name",
            "size"
        ]
    );
    assert_eq!(d["name"], "607a919d.JPG");
    assert_eq!(d["size"], PNG_AS_JPEG.len());
    assert_eq!(d["extension"], "jpg");
    assert_eq!(d["mime_type"], "image/jpeg");
    assert_eq!(d["created_by"], "xiaoming");
    assert_eq!(d["created_at"], START / 1000);
    let id = d["id"].as_str().unwrap();
    assert_eq!(follow(&app, id).await.body, PNG_AS_JPEG);

    let listed = app.get(&key, "/v1/files").await.json();
    let f = &listed["files"][0];
    assert_eq!(
        (f["agent"].as_str(), f["created_by"].as_str(), f["class"].as_str()),
        (Some("fastgpt"), Some("xiaoming"), Some("asset"))
    );
    let k = f["key"].as_str().unwrap();
    let re_ok = k.starts_with("uploads/2026/01/01/")
        && k.ends_with(".jpg")
        && k[19..51].bytes().all(|b| b.is_ascii_hexdigit())
        && k.len() == 55;
    assert!(re_ok, "uploads/YYYY/MM/DD/<32 hex>.<ext>: {k}");

    app.clock.advance(400 * 86_400_000);
    assert_eq!(follow(&app, id).await.status, StatusCode::OK, "permanent");
    let del = Request::delete(format!("/v1/files/{}", f["id"].as_str().unwrap()))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(del).await.status, StatusCode::NO_CONTENT);
    assert_eq!(follow(&app, id).await.status, StatusCode::GONE, "until deleted");
}

/// A JPEG signature (SOI + JFIF APP0) with some bytes.
const PNG_AS_JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9";

#[tokio::test]
async fn juniortree_errors() {
    let app = TestApp::with_policies(BTreeMap::from([(
        "juniortree".to_owned(),
        UploadPolicy {
            max_size: 4096,
            allow: filedock_server::dialects::default_policies()["juniortree"]
                .allow
                .clone(),
            allow_empty: false,
            keep_unmatched: false,
            scan: None,
        },
    )]))
    .await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let check = |ans: Answer, status: StatusCode, what: &str| {
        assert_eq!(ans.status, status, "{what}: {}", String::from_utf8_lossy(&ans.body));
        let e = ans.json();
        assert_eq!(keys_of(&e), ["code", "detail", "msg"], "{what}");
        assert_eq!(e["code"], status.as_u16(), "{what}: code equals the HTTP status");
        e
    };
    let e = check(
        app.send(jt_req(None, Some(&key), "a.png", PNG, Some("u"))).await,
        StatusCode::BAD_REQUEST,
        "no Agent",
    );
    assert_eq!(e["msg"], "Missing required header: Agent");
    let no_file = Request::post("/api/v1/upload")
        .header("agent", "dify")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(Body::from(
            "--x\r\nContent-Disposition: form-data; name=\"created_by\"\r\n\r\nu\r\n--x--\r\n",
        ))
        .unwrap();
    let e = check(app.send(no_file).await, StatusCode::BAD_REQUEST, "no file");
    assert_eq!(e["msg"], "Missing required parameter: file");
    let e = check(
        app.send(jt_req(Some("dify"), Some(&key), "a.png", PNG, None)).await,
        StatusCode::BAD_REQUEST,
        "no created_by",
    );
    assert_eq!(e["msg"], "Missing required parameter: created_by");
    check(
        app.send(jt_req(Some("dify"), Some(&key), "a.png", PNG, Some("  ")))
            .await,
        StatusCode::BAD_REQUEST,
        "blank created_by",
    );
    check(
        app.send(jt_req(Some("dify"), Some(&key), "empty.txt", b"", Some("u")))
            .await,
        StatusCode::BAD_REQUEST,
        "empty file",
    );
    check(
        app.send(jt_req(Some("dify"), Some(&key), "big.txt", &[b'a'; 5000], Some("u")))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too large",
    );
    check(
        app.send(jt_req(Some("dify"), Some(&key), "a.exe", b"MZ\x90\x00", Some("u")))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "type list",
    );
    check(
        app.send(jt_req(Some("dify"), Some(&key), "a.pdf", PNG, Some("u")))
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "content checked",
    );
    check(
        app.send(jt_req(Some("dify"), None, "a.png", PNG, Some("u"))).await,
        StatusCode::UNAUTHORIZED,
        "no key",
    );
    assert_eq!(
        (app.stored_objects().await, app.temp_files().await),
        (0, 0),
        "nothing stored by any refusal"
    );
    assert_eq!(app.get(&key, "/v1/files").await.json()["files"], json!([]));
}

#[tokio::test]
async fn juniortree_trusted_agents_and_other_projects() {
    let dialects = DialectsConfig {
        juniortree: JuniortreeConfig {
            trusted_agents: BTreeMap::from([("fastgpt".to_owned(), "intranet".to_owned())]),
        },
    };
    let app = TestApp::with_config(BTreeMap::new(), dialects).await;
    let ans = app.send(jt_req(Some("fastgpt"), None, "a.png", PNG, Some("u"))).await;
    assert_eq!(ans.status, StatusCode::OK, "a trusted agent needs no key");
    assert_eq!(
        app.send(jt_req(Some("dify"), None, "a.png", PNG, Some("u")))
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "others still do"
    );
    let intranet = app.key("intranet", CredentialKind::Integration).await;
    let other = app.key("elsewhere", CredentialKind::Integration).await;
    assert_eq!(
        app.get(&intranet, "/v1/files").await.json()["files"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get(&other, "/v1/files").await.json()["files"],
        json!([]),
        "another project sees nothing"
    );
    let mine = app
        .send(jt_req(Some("dify"), Some(&other), "b.png", PNG, Some("u")))
        .await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(
        app.get(&intranet, "/v1/files").await.json()["files"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "and is not seen by it"
    );
}

// ---------------------------------------------------------------- Cyberun

#[tokio::test]
async fn cyberun_presign_and_put() {
    let app = TestApp::new().await;
    for kind in [
        CredentialKind::Session,
        CredentialKind::Integration,
        CredentialKind::Device,
    ] {
        let key = app.key("demo", kind).await;
        let ans = app
            .post_json(
                &key,
                "/api/v1/r/files/presign",
                json!({"file_name": "photo.png", "file_size": PNG.len(), "content_type": "image/png"}),
            )
            .await;
        assert_eq!(
            ans.status,
            StatusCode::OK,
            "{kind:?}: {}",
            String::from_utf8_lossy(&ans.body)
        );
        let r = ans.json();
        assert_eq!(keys_of(&r), ["file_key", "upload_headers", "upload_url"]);
        let fk = r["file_key"].as_str().unwrap();
        assert!(fk.starts_with("inputs/") && fk.ends_with("/photo.png"), "{fk}");
        assert_eq!(
            r["upload_headers"],
            json!({"Content-Length": PNG.len().to_string(), "If-None-Match": "*"})
        );
        let url = r["upload_url"].as_str().unwrap();
        let len = PNG.len().to_string();
        assert_eq!(
            (put_to(&app, url, &[("content-length", len.clone())], PNG))
                .await
                .status,
            StatusCode::FORBIDDEN,
            "no If-None-Match"
        );
        assert_eq!(
            (put_to(
                &app,
                url,
                &[("content-length", "10".into()), ("if-none-match", "*".into())],
                &PNG[..10]
            ))
            .await
            .status,
            StatusCode::FORBIDDEN,
            "other length"
        );
        let all = [("content-length", len.clone()), ("if-none-match", "*".to_owned())];
        assert_eq!((put_to(&app, url, &all, PNG)).await.status, StatusCode::OK);
        assert_eq!(
            (put_to(&app, url, &all, PNG)).await.status,
            StatusCode::PRECONDITION_FAILED,
            "onto an existing key"
        );
    }
}

#[tokio::test]
async fn cyberun_errors() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let too_big = app
        .post_json(
            &key,
            "/api/v1/r/files/presign",
            json!({"file_name": "big.bin", "file_size": 500u64 * 1024 * 1024 + 1}),
        )
        .await;
    assert_eq!(
        (too_big.status, too_big.json()["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    let at_limit = app
        .post_json(
            &key,
            "/api/v1/r/files/presign",
            json!({"file_name": "big.bin", "file_size": 500u64 * 1024 * 1024}),
        )
        .await;
    assert_eq!(at_limit.status, StatusCode::OK);
    for bad in [
        json!({}),
        json!({"file_size": 1}),
        json!({"file_name": "a.png"}),
        json!({"file_name": "a/b.png", "file_size": 1}),
        json!({"file_name": "a.png", "file_size": -1}),
    ] {
        assert_eq!(
            app.post_json(&key, "/api/v1/r/files/presign", bad.clone()).await.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    let anon = Request::post("/api/v1/r/files/presign")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"file_name":"a","file_size":1}"#))
        .unwrap();
    assert_eq!(app.send(anon).await.status, StatusCode::UNAUTHORIZED);
    let other = app.key("other", CredentialKind::Integration).await;
    assert_eq!(
        app.get(&other, "/v1/files").await.json()["files"],
        json!([]),
        "another project sees no inputs"
    );
}

async fn put_to(app: &TestApp, url: &str, headers: &[(&str, String)], body: &[u8]) -> Answer {
    app.call("PUT", url, headers, body.to_vec()).await
}
