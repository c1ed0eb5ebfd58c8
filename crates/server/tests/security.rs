//! Security: every signed URL refuses every change made to it, and a corpus of hostile input
//! (traversal in every name and path field, malformed multipart, bad bytes) gets a clear 4xx with
//! nothing stored. Runs on both flavours (`TEST_FLAVOR=s3-postgres` for S3 + PostgreSQL).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use common::*;
use filedock_core::blob::{PresignGet, PresignPut};
use filedock_core::{CredentialKind, StorageKey};
use serde_json::json;

const SIGNATURE: &[&str] = &["X-Fd-Signature", "X-Amz-Signature"];
const EXPIRES: &[&str] = &["X-Fd-Expires", "X-Amz-Expires"];

/// `url` with the value of its first query parameter named in `names` passed through `f`.
fn with_param(url: &str, names: &[&str], f: impl Fn(&str) -> String) -> String {
    let (base, query) = url.split_once('?').expect("a signed URL has a query");
    let mut hit = false;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !hit && names.contains(&k) {
                hit = true;
                format!("{k}={}", f(v))
            } else {
                pair.to_owned()
            }
        })
        .collect();
    assert!(hit, "{url} has none of {names:?}");
    format!("{base}?{}", pairs.join("&"))
}

fn without_param(url: &str, names: &[&str]) -> String {
    let (base, query) = url.split_once('?').expect("a signed URL has a query");
    let pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !names.contains(&p.split_once('=').map_or(*p, |(k, _)| k)))
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Changes the first character (the last one of unpadded base64 carries padding bits).
fn flip_first(v: &str) -> String {
    let mut c: Vec<char> = v.chars().collect();
    c[0] = if c[0] == 'a' { 'b' } else { 'a' };
    c.into_iter().collect()
}

/// `url` with its object key's last segment replaced.
fn other_object(url: &str, key: &str, other: &str) -> String {
    let last = key.rsplit('/').next().unwrap();
    let (path, query) = url.split_once('?').unwrap();
    let cut = path.rfind('/').unwrap();
    assert!(path[cut + 1..].contains(&last[..8]), "{path} ends with {last}");
    format!("{}/{other}?{query}", &path[..cut])
}

fn headers_of(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn refs(h: &[(String, String)]) -> Vec<(&str, String)> {
    h.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

fn refused(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::FORBIDDEN | StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST
    )
}

/// What is changed, method, URL, headers, body.
type Attempt = (&'static str, String, String, Vec<(String, String)>, Vec<u8>);

#[tokio::test]
async fn a_presigned_put_refuses_every_change() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let body = b"hello".to_vec();
    let p = app
        .post_json(
            &key,
            "/v1/uploads",
            json!({"name": "a.txt", "size": 5, "content_type": "text/plain"}),
        )
        .await
        .json();
    let url = p["upload"]["url"].as_str().unwrap().to_owned();
    let storage_key = p["file"]["key"].as_str().unwrap().to_owned();
    let good = headers_of(&p["upload"]["headers"]);
    assert_eq!(good.len(), 3, "length, type and create-only are signed: {good:?}");

    // The same request signed with another secret.
    let forged = app
        .forger()
        .await
        .presign_put(&PresignPut {
            key: StorageKey::new(storage_key.clone()).unwrap(),
            content_length: Some(5),
            content_type: Some("text/plain".into()),
            create_only: true,
            max_size: None,
            expires_at: START + 900_000,
            expires_in_secs: 900,
        })
        .unwrap();
    assert_ne!(forged.url, url);

    let mut attempts: Vec<Attempt> = vec![
        (
            "tampered signature",
            "PUT".into(),
            with_param(&url, SIGNATURE, flip_first),
            good.clone(),
            body.clone(),
        ),
        (
            "truncated signature",
            "PUT".into(),
            with_param(&url, SIGNATURE, |v| v[..v.len() / 2].to_owned()),
            good.clone(),
            body.clone(),
        ),
        (
            "no signature",
            "PUT".into(),
            without_param(&url, SIGNATURE),
            good.clone(),
            body.clone(),
        ),
        (
            "another key",
            "PUT".into(),
            forged.url.clone(),
            good.clone(),
            body.clone(),
        ),
        (
            "longer expiry",
            "PUT".into(),
            with_param(&url, EXPIRES, |v| format!("{}", v.parse::<i64>().unwrap() + 3600)),
            good.clone(),
            body.clone(),
        ),
        (
            "another object",
            "PUT".into(),
            other_object(&url, &storage_key, "ffffffffffffffffffffffffffffffff.txt"),
            good.clone(),
            body.clone(),
        ),
        ("GET with a PUT URL", "GET".into(), url.clone(), vec![], vec![]),
        ("DELETE with a PUT URL", "DELETE".into(), url.clone(), vec![], vec![]),
        (
            "POST with a PUT URL",
            "POST".into(),
            url.clone(),
            good.clone(),
            body.clone(),
        ),
    ];
    for (i, (name, _)) in good.iter().enumerate() {
        let mut missing = good.clone();
        missing.remove(i);
        // Over real HTTP (S3) a PUT with a body always carries its length.
        if !(scaled() && name == "content-length") {
            attempts.push((
                "a signed header missing",
                "PUT".into(),
                url.clone(),
                missing,
                body.clone(),
            ));
        }
        let mut changed = good.clone();
        let (value, b) = match name.as_str() {
            "content-length" => ("4".to_owned(), b"hell".to_vec()),
            "content-type" => ("text/html".to_owned(), body.clone()),
            _ => ("\"etag\"".to_owned(), body.clone()),
        };
        changed[i].1 = value;
        attempts.push(("a signed header changed", "PUT".into(), url.clone(), changed, b));
    }
    for (what, method, u, h, b) in &attempts {
        let ans = app.call(method, u, &refs(h), b.clone()).await;
        assert!(
            refused(ans.status),
            "{what}: {} {}",
            ans.status,
            String::from_utf8_lossy(&ans.body)
        );
    }
    assert_eq!(app.stored_objects().await, 0, "no attempt stored a byte");

    assert_eq!(
        app.call("PUT", &url, &refs(&good), body.clone()).await.status,
        StatusCode::OK
    );
    let again = app.call("PUT", &url, &refs(&good), b"world".to_vec()).await;
    assert!(again.status.is_client_error(), "a second PUT never replaces the first");
    let id = p["file"]["id"].as_str().unwrap();
    let done = app
        .post_json(&key, &format!("/v1/uploads/{id}/complete"), json!({}))
        .await;
    let done = done.json();
    assert_eq!(
        (done["status"].as_str(), done["size"].as_u64()),
        (Some("ready"), Some(5))
    );
    // Direct uploads to S3 are not re-read to hash them (see "What it promises").
    if !scaled() {
        assert_eq!(done["sha256"], sha256_hex(b"hello"));
    }

    // Replay after delete: filedock's own URLs are dead at once. An S3 presigned PUT is checked
    // by S3 alone; what it could leave is an object no row owns, which `doctor` finds.
    assert_eq!(
        app.delete(&key, &format!("/v1/files/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    if !scaled() {
        let replay = app.call("PUT", &url, &refs(&good), body.clone()).await;
        assert_eq!(replay.status, StatusCode::FORBIDDEN, "replay after delete");
        assert_eq!(app.stored_objects().await, 0);

        // Expired, by filedock's clock (S3 checks its own).
        let late = app
            .post_json(&key, "/v1/uploads", json!({"name": "late.txt", "size": 5}))
            .await
            .json();
        app.clock.advance(901_000);
        let ans = app
            .call(
                "PUT",
                late["upload"]["url"].as_str().unwrap(),
                &refs(&headers_of(&late["upload"]["headers"])),
                body.clone(),
            )
            .await;
        assert_eq!(ans.status, StatusCode::FORBIDDEN, "expired");
    }
    eprintln!("presigned PUT: {} altered requests refused", attempts.len() + 2);
}

#[tokio::test]
async fn a_download_link_refuses_every_change() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let f = app.upload_raw(&key, "report.txt", b"the report").await.json();
    let other = app.upload_raw(&key, "secret.txt", b"another file").await.json();
    let id = f["id"].as_str().unwrap();
    let link = app
        .post_json(&key, &format!("/v1/files/{id}/links"), json!({"ttl_seconds": 60}))
        .await
        .json();
    let url = link["url"].as_str().unwrap().to_owned();
    let storage_key = f["key"].as_str().unwrap();
    let other_key = other["key"].as_str().unwrap().rsplit('/').next().unwrap();
    let got = app.call("GET", &url, &[], vec![]).await;
    assert_eq!((got.status, got.body.as_slice()), (StatusCode::OK, &b"the report"[..]));

    let forged = app
        .forger()
        .await
        .presign_get(&PresignGet {
            key: StorageKey::new(storage_key).unwrap(),
            expires_at: START + 60_000,
            expires_in_secs: 60,
            response_content_type: None,
            response_content_disposition: None,
        })
        .unwrap();
    let attempts: Vec<(&str, &str, String)> = vec![
        ("tampered signature", "GET", with_param(&url, SIGNATURE, flip_first)),
        ("no signature", "GET", without_param(&url, SIGNATURE)),
        ("another key", "GET", forged.url),
        (
            "longer expiry",
            "GET",
            with_param(&url, EXPIRES, |v| format!("{}", v.parse::<i64>().unwrap() + 86_400)),
        ),
        ("another object", "GET", other_object(&url, storage_key, other_key)),
        (
            "another response type",
            "GET",
            with_param(&url, &["response-content-type"], |_| "text%2Fhtml".into()),
        ),
        ("PUT with a GET URL", "PUT", url.clone()),
        ("DELETE with a GET URL", "DELETE", url.clone()),
    ];
    for (what, method, u) in &attempts {
        let ans = app
            .call(
                method,
                u,
                &[("content-length", "1".into())],
                if *method == "PUT" { b"x".to_vec() } else { vec![] },
            )
            .await;
        assert!(refused(ans.status), "{what}: {}", ans.status);
        assert!(
            !ans.body.windows(10).any(|w| w == b"the report" || w == b"another fi"),
            "{what} leaked bytes"
        );
    }

    // A stable link: any change to its token is refused; a deleted file's link is gone.
    let stable = app
        .post_json(&key, &format!("/v1/files/{id}/links"), json!({"stable": true}))
        .await
        .json();
    if let Some(s) = stable["url"].as_str().filter(|u| u.contains("/l/")) {
        let (head, token) = s.rsplit_once('/').unwrap();
        let bad = format!("{head}/{}", flip_first(token));
        let ans = app.call("GET", &bad, &[], vec![]).await;
        assert!(
            matches!(ans.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
            "{}",
            ans.status
        );
    }

    if !scaled() {
        app.clock.advance(61_000);
        assert_eq!(
            app.call("GET", &url, &[], vec![]).await.status,
            StatusCode::FORBIDDEN,
            "expired"
        );
    }
    let fresh = app
        .post_json(&key, &format!("/v1/files/{id}/links"), json!({}))
        .await
        .json()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete(&key, &format!("/v1/files/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    let replay = app.call("GET", &fresh, &[], vec![]).await;
    assert_eq!(replay.status, StatusCode::NOT_FOUND, "replay after delete");
    eprintln!("download link: {} altered requests refused", attempts.len() + 3);
}

/// A Juniortree upload (`Agent` header and a key) of a multipart body.
fn juniortree_form(bearer: &str, content_type: String, body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v1/upload")
        .header("agent", "test-agent")
        .header("authorization", bearer)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

/// The hostile names and paths every name or path field is tried with.
fn hostile_names() -> Vec<(&'static str, String)> {
    vec![
        ("dot-dot slash", "../x.txt".into()),
        ("deep dot-dot", "../../../../etc/passwd".into()),
        ("dot-dot backslash", "..\\x.txt".into()),
        ("encoded dot-dot", "%2e%2e/x.txt".into()),
        ("encoded dot-dot slash", "%2e%2e%2fx.txt".into()),
        ("double-encoded", "%252e%252e%252fx.txt".into()),
        ("absolute", "/etc/passwd".into()),
        ("drive letter", "C:\\Windows\\x.txt".into()),
        ("backslash", "a\\b.txt".into()),
        ("NUL", "a\0b.txt".into()),
        ("encoded NUL", "a%00b.txt".into()),
        ("CR LF", "a\r\nb.txt".into()),
        ("dot", ".".into()),
        ("dot-dot", "..".into()),
        ("256 bytes", format!("{}.txt", "n".repeat(252))),
        ("256 multibyte characters", "é".repeat(256)),
        // A path segment a file system cannot take: 130 characters, 260 bytes.
        ("130 two-byte characters", "é".repeat(130)),
        ("right-to-left override", "invoice\u{202E}fdp.exe".into()),
        ("bidi isolate", "a\u{2066}b.txt".into()),
        ("full-width dot-dot", "\u{FF0E}\u{FF0E}".into()),
        ("full-width dot-dot-slash", "\u{FF0E}\u{FF0E}\u{FF0F}etc".into()),
        ("two-dot leader", "\u{2025}".into()),
        ("full-width solidus", "a\u{FF0F}b.txt".into()),
    ]
}

fn tus_meta(name: &str) -> String {
    format!("filename {}", base64::engine::general_purpose::STANDARD.encode(name))
}

#[tokio::test]
async fn hostile_names_and_paths_get_400_and_store_nothing() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let session = app.key("demo", CredentialKind::Session).await;
    let bearer = format!("Bearer {key}");
    let mut tried = 0;
    for (what, name) in hostile_names() {
        let json_name = serde_json::Value::String(name.clone());
        let mut answers = Vec::new();
        // The raw body's name, in the query.
        answers.push(("native raw", app.upload_raw(&key, &name, b"x").await));
        // JSON fields.
        answers.push((
            "native presign",
            app.post_json(&key, "/v1/uploads", json!({"name": json_name})).await,
        ));
        answers.push((
            "native multipart",
            app.post_json(&key, "/v1/uploads/multipart", json!({"name": json_name, "size": 10}))
                .await,
        ));
        answers.push((
            "tokenops path",
            app.post_json(&key, "/v1/files/upload_url", json!({"path": json_name}))
                .await,
        ));
        answers.push((
            "tokenops nested path",
            app.post_json(&key, "/v1/files/upload_url", json!({"path": format!("dir/{name}")}))
                .await,
        ));
        answers.push((
            "cyberun presign",
            app.post_json(
                &key,
                "/api/v1/r/files/presign",
                json!({"file_name": json_name, "file_size": 1}),
            )
            .await,
        ));
        answers.push((
            "cyberun multipart",
            app.post_json(
                &session,
                "/api/v1/uploads/multipart/initiate",
                json!({"file_name": json_name, "file_size": 10}),
            )
            .await,
        ));
        // Multipart file names (where a header can carry them: no CR/LF or NUL in a header).
        if !name.contains(['\r', '\n', '\0']) {
            let quoted = name.replace('"', "%22");
            let (ct, body) = multipart(&[], &quoted, "text/plain", b"x");
            let req = Request::post("/v1/files")
                .header("authorization", &bearer)
                .header("content-type", ct.clone())
                .body(Body::from(body.clone()))
                .unwrap();
            answers.push(("native form", app.send(req).await));
            let req = Request::post("/v1/demo/agent-runtime/upload-file")
                .header("x-auth-token", &key)
                .header("content-type", ct.clone())
                .body(Body::from(body.clone()))
                .unwrap();
            answers.push(("huawei form", app.send(req).await));
            let req = juniortree_form(&bearer, ct, body);
            answers.push(("juniortree form", app.send(req).await));
        }
        let req = Request::post("/tus/")
            .header("authorization", &bearer)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "1")
            .header("upload-metadata", tus_meta(&name))
            .body(Body::empty())
            .unwrap();
        answers.push(("tus metadata", app.send(req).await));
        answers.push((
            "file reference",
            app.get(
                &key,
                &format!(
                    "/v1/files/lookup?path={}",
                    urlencode(&format!("local://filedock.test/{name}"))
                ),
            )
            .await,
        ));
        for (field, ans) in answers {
            tried += 1;
            assert!(
                ans.status == StatusCode::BAD_REQUEST
                    || (field == "file reference" && ans.status == StatusCode::NOT_FOUND),
                "{what} in {field}: {} {}",
                ans.status,
                String::from_utf8_lossy(&ans.body)
            );
            assert!(!ans.body.is_empty(), "{what} in {field}: the answer says why");
        }
    }
    // Overlong UTF-8 (`/` as C0 AF, `.` as C0 AE): not UTF-8, refused before anything else.
    for raw in ["%C0%AE%C0%AE%C0%AFx.txt", "a%C0%AFb.txt", "%FF.txt"] {
        tried += 1;
        let req = Request::post(format!("/v1/files?name={raw}"))
            .header("authorization", &bearer)
            .body(Body::from("x"))
            .unwrap();
        assert_eq!(app.send(req).await.status, StatusCode::BAD_REQUEST, "{raw}");
    }
    for raw in [&b"\xc0\xae\xc0\xae\xc0\xafx.txt"[..], b"a\xffb.txt"] {
        tried += 1;
        let mut body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
        body.extend_from_slice(raw);
        body.extend_from_slice(b"\"\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n");
        let req = Request::post("/v1/files")
            .header("authorization", &bearer)
            .header("content-type", "multipart/form-data; boundary=b")
            .body(Body::from(body))
            .unwrap();
        assert_eq!(app.send(req).await.status, StatusCode::BAD_REQUEST, "{raw:?}");
    }
    // Ids that try to climb out of their route.
    for id in ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..", "a%00b", &"0".repeat(300)] {
        tried += 1;
        let ans = app.get(&key, &format!("/v1/files/{id}")).await;
        assert!(
            matches!(ans.status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
            "{id}: {}",
            ans.status
        );
    }
    for path in [
        "/blob/local/..%2F..%2Fetc%2Fpasswd",
        "/blob/local/../../etc/passwd",
        "/blob/..%2Fc.db/x",
    ] {
        tried += 1;
        let ans = app.send(Request::get(path).body(Body::empty()).unwrap()).await;
        assert!(ans.status.is_client_error(), "{path}: {}", ans.status);
    }
    assert_eq!(
        (app.stored_objects().await, app.temp_files().await),
        (0, 0),
        "nothing stored"
    );
    assert_eq!(app.file_rows("demo").await, 0, "no row was written");
    eprintln!("hostile names and paths: {tried} requests, each a 4xx, nothing stored");
}

#[tokio::test]
async fn malformed_bodies_get_4xx_and_store_nothing() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let bearer = format!("Bearer {key}");
    let form = |ct: &str, body: Vec<u8>| {
        Request::post("/v1/files")
            .header("authorization", &bearer)
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap()
    };
    let file_part = |name: &str| {
        format!(
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n"
        )
    };
    let mut cases: Vec<(&str, Request<Body>)> = vec![
        (
            "no boundary",
            form("multipart/form-data", file_part("a.txt").into_bytes()),
        ),
        (
            "empty boundary",
            form("multipart/form-data; boundary=", b"--\r\n".to_vec()),
        ),
        (
            "truncated",
            form(
                "multipart/form-data; boundary=b",
                format!("{}hel", file_part("a.txt")).into_bytes(),
            ),
        ),
        (
            "no closing boundary",
            form(
                "multipart/form-data; boundary=b",
                format!("{}hello\r\n", file_part("a.txt")).into_bytes(),
            ),
        ),
        (
            "another boundary",
            form(
                "multipart/form-data; boundary=zz",
                format!("{}hello\r\n--b--\r\n", file_part("a.txt")).into_bytes(),
            ),
        ),
        (
            "no file field",
            form(
                "multipart/form-data; boundary=b",
                b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n".to_vec(),
            ),
        ),
        ("garbage", form("multipart/form-data; boundary=b", vec![0xff; 4096])),
        ("empty body", form("multipart/form-data; boundary=b", vec![])),
    ];
    // A 1 MiB part header.
    let mut huge = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nX-Pad: {}\r\n\r\nx\r\n--b--\r\n",
        "p".repeat(1 << 20)
    )
    .into_bytes();
    cases.push((
        "a 1 MiB part header",
        form("multipart/form-data; boundary=b", std::mem::take(&mut huge)),
    ));
    // Thousands of part headers in one part.
    let many_headers: String = (0..5000).map(|i| format!("X-H{i}: v\r\n")).collect();
    cases.push((
        "5,000 part headers",
        form(
            "multipart/form-data; boundary=b",
            format!("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n{many_headers}\r\nx\r\n--b--\r\n").into_bytes(),
        ),
    ));
    // Thousands of fields before the file, distinct and repeated.
    for (what, name) in [
        ("5,000 distinct fields", None),
        ("5,000 repeats of one field", Some("class")),
    ] {
        let mut body = String::new();
        for i in 0..5000 {
            let n = name.map(str::to_owned).unwrap_or_else(|| format!("f{i}"));
            body.push_str(&format!(
                "--b\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\nv\r\n"
            ));
        }
        body.push_str(&format!("{}x\r\n--b--\r\n", file_part("a.txt")));
        cases.push((what, form("multipart/form-data; boundary=b", body.into_bytes())));
    }
    // A text field over its limit.
    cases.push((
        "a 1 MiB text field",
        form(
            "multipart/form-data; boundary=b",
            format!(
                "--b\r\nContent-Disposition: form-data; name=\"class\"\r\n\r\n{}\r\n{}x\r\n--b--\r\n",
                "a".repeat(1 << 20),
                file_part("a.txt")
            )
            .into_bytes(),
        ),
    ));
    // Two file fields.
    cases.push((
        "two files",
        form(
            "multipart/form-data; boundary=b",
            format!("{}x\r\n{}y\r\n--b--\r\n", file_part("a.txt"), file_part("b.txt")).into_bytes(),
        ),
    ));
    // Wrong magic bytes: a PNG named .pdf, an executable named .txt on a typed route.
    let (ct, body) = multipart(&[], "photo.pdf", "application/pdf", PNG);
    cases.push(("PNG named .pdf (Juniortree)", juniortree_form(&bearer, ct, body)));
    let (ct, body) = multipart(&[], "notes.txt", "text/plain", b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff");
    cases.push((
        "an executable named .txt (Huawei)",
        Request::post("/v1/demo/agent-runtime/upload-file")
            .header("x-auth-token", &key)
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap(),
    ));
    // Zero bytes where the seed forbids it (Juniortree); native and tus take empty files.
    let (ct, body) = multipart(&[], "empty.txt", "text/plain", b"");
    cases.push(("zero bytes (Juniortree)", juniortree_form(&bearer, ct, body)));
    // JSON that is not JSON, or not the shape.
    for (what, body) in [
        ("malformed JSON", "{\"name\": "),
        ("JSON of the wrong type", "{\"name\": 7}"),
        ("a JSON array", "[]"),
        (
            "deeply nested JSON",
            &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        ),
    ] {
        cases.push((
            what,
            Request::post("/v1/uploads")
                .header("authorization", &bearer)
                .header("content-type", "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap(),
        ));
    }
    // tus headers out of range.
    for (what, h, v) in [
        ("negative Upload-Length", "upload-length", "-1"),
        ("huge Upload-Length", "upload-length", "99999999999999999999999"),
        ("bad Upload-Metadata base64", "upload-metadata", "filename !!!"),
        ("bad Upload-Concat", "upload-concat", "final;/tus/../x"),
    ] {
        let mut req = Request::post("/tus/")
            .header("authorization", &bearer)
            .header("tus-resumable", "1.0.0");
        if h != "upload-length" {
            req = req.header("upload-length", "1");
        }
        cases.push((what, req.header(h, v).body(Body::empty()).unwrap()));
    }
    let tried = cases.len();
    for (what, req) in cases {
        let ans = app.send(req).await;
        assert!(
            ans.status.is_client_error(),
            "{what}: {} {}",
            ans.status,
            String::from_utf8_lossy(&ans.body[..ans.body.len().min(300)])
        );
        assert!(!ans.body.is_empty(), "{what}: the answer says why");
    }
    assert_eq!(
        (app.stored_objects().await, app.temp_files().await),
        (0, 0),
        "nothing stored"
    );
    assert_eq!(app.file_rows("demo").await, 0, "no row was written");

    // Zero-byte files are files where the policy allows them, with the hash of nothing.
    let empty = app.upload_raw(&key, "empty.txt", b"").await;
    assert_eq!(empty.status, StatusCode::CREATED);
    assert_eq!(empty.json()["sha256"], sha256_hex(b""));
    eprintln!("malformed bodies: {tried} requests, each a 4xx, nothing stored");
}

#[tokio::test]
async fn names_with_quotes_and_unicode_are_served_with_a_safe_disposition() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    for name in [
        "say \"hi\".txt",
        "semi;colon, comma.txt",
        // (A right-to-left override is refused: see hostile_names.)
        "名前 ｒéｓｕｍé.txt",
        "back`tick'quote%.txt",
        "=?utf-8?q?x?=.txt",
    ] {
        let f = app.upload_raw(&key, name, b"x").await;
        assert_eq!(f.status, StatusCode::CREATED, "{name}");
        let f = f.json();
        assert_eq!(f["name"], name);
        let id = f["id"].as_str().unwrap();
        let got = app.get(&key, &format!("/v1/files/{id}/content")).await;
        let cd = got.header("content-disposition").unwrap();
        assert!(cd.is_ascii(), "{cd}");
        let (fallback, star) = cd
            .strip_prefix("attachment; filename=\"")
            .and_then(|r| r.split_once("\"; filename*=UTF-8''"))
            .unwrap_or_else(|| panic!("{cd}"));
        assert!(!fallback.contains(['"', '\\', '\r', '\n']), "{cd}");
        assert!(
            star.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~%".contains(&b)),
            "{cd}"
        );
        let decoded = percent_encoding::percent_decode_str(star).decode_utf8().unwrap();
        assert_eq!(decoded, name, "filename* carries the exact name");
        // The signed link's disposition is the same, and survives the URL.
        let link = app
            .post_json(&key, &format!("/v1/files/{id}/links"), json!({}))
            .await
            .json();
        let got = app.call("GET", link["url"].as_str().unwrap(), &[], vec![]).await;
        assert_eq!(got.status, StatusCode::OK);
        if let Some(h) = got.header("content-disposition") {
            assert_eq!(h, cd, "{name}");
        }
    }
}
