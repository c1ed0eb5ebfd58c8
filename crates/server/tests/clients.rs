//! The clients people already have (issue 22): text in the encodings people use, TokenOps' 2xx
//! that is final, links that serve bytes, files without an extension, the vendors' own texts.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]
mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use encoding_rs::Encoding;
use filedock_core::CredentialKind;

// ---------------------------------------------------------------- text encodings

const CHINESE: &str = "姓名,城市,备注\n张三,北京,这是一个用简体中文写的文件，默认编码来自中文版视窗系统。\n李四,上海,第二行也是中文内容。\n";
const TRADITIONAL: &str = "這是一個用繁體中文寫的文字檔案，常見於臺灣與香港的舊系統，編碼為大五碼。\n";
const JAPANESE: &str = "これは日本語のテキストファイルです。古いウィンドウズではシフトJISが使われていました。\n";
const WESTERN: &str = "Café au lait, naïve façade, señor, Müller: “quoted” and ½ price.\n";

/// Text files as the world's editors save them: (name, bytes, the charset filedock must find).
fn legacy_texts() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let enc = |e: &'static Encoding, s: &str| e.encode(&s.repeat(8)).0.into_owned();
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(CHINESE.repeat(8).encode_utf16().flat_map(u16::to_le_bytes));
    vec![
        ("gbk.txt", enc(encoding_rs::GBK, CHINESE), "gbk"),
        ("big5.txt", enc(encoding_rs::BIG5, TRADITIONAL), "big5"),
        ("sjis.txt", enc(encoding_rs::SHIFT_JIS, JAPANESE), "shift_jis"),
        ("utf16.txt", utf16, "utf-16le"),
        ("latin.txt", enc(encoding_rs::WINDOWS_1252, WESTERN), "windows-1252"),
    ]
}

/// Bytes no text encoding holds.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn huawei(project: &str, token: &str, name: &str, bytes: &[u8]) -> Request<Body> {
    let (ct, body) = multipart(&[], name, "text/plain", bytes);
    Request::post(format!("/v1/{project}/agent-runtime/upload-file"))
        .header("content-type", ct)
        .header("x-auth-token", token)
        .body(Body::from(body))
        .unwrap()
}

fn juniortree(key: &str, name: &str, bytes: &[u8]) -> Request<Body> {
    let (ct, body) = multipart(&[("created_by", "xiaoming")], name, "application/octet-stream", bytes);
    Request::post("/api/v1/upload")
        .header("content-type", ct)
        .header("agent", "fastgpt")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn legacy_encodings_are_text_on_every_way_in() {
    let app = TestApp::new().await;
    let key = app.key("p", CredentialKind::Integration).await;
    for (name, bytes, charset) in legacy_texts() {
        let native = app.upload_raw(&key, name, &bytes).await;
        assert_eq!(
            native.status,
            StatusCode::CREATED,
            "native {name}: {}",
            String::from_utf8_lossy(&native.body)
        );
        let id = native.json()["id"].as_str().unwrap().to_owned();
        let got = app.get(&key, &format!("/v1/files/{id}/content")).await;
        assert_eq!(got.body, bytes, "{name} served as stored");
        assert_eq!(
            got.header("content-type").as_deref(),
            Some(format!("text/plain; charset={charset}").as_str()),
            "{name}"
        );

        let hw = app.send(huawei("p", &key, name, &bytes)).await;
        assert_eq!(
            hw.status,
            StatusCode::OK,
            "huawei {name}: {}",
            String::from_utf8_lossy(&hw.body)
        );
        let jt = app.send(juniortree(&key, name, &bytes)).await;
        assert_eq!(
            jt.status,
            StatusCode::OK,
            "juniortree {name}: {}",
            String::from_utf8_lossy(&jt.body)
        );
        assert_eq!(
            jt.json()["data"]["mime_type"].as_str(),
            Some(format!("text/plain; charset={charset}").as_str())
        );
    }
    // A CSV through Huawei (Juniortree takes no CSV).
    let gbk_csv = encoding_rs::GBK.encode(CHINESE).0.into_owned();
    assert_eq!(
        app.send(huawei("p", &key, "表格.csv", &gbk_csv)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn binary_named_txt_is_still_refused() {
    let app = TestApp::new().await;
    let key = app.key("p", CredentialKind::Integration).await;
    let junk = random_bytes(20_000);
    assert_eq!(
        app.upload_raw(&key, "junk.txt", &junk).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        app.send(huawei("p", &key, "junk.txt", &junk)).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        app.send(juniortree(&key, "junk.txt", &junk)).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // GBK text whose bytes turn to binary after the first 8 KiB: refused whole.
    let mut late = encoding_rs::GBK.encode(&CHINESE.repeat(200)).0.into_owned();
    late.extend_from_slice(&random_bytes(4096));
    assert_eq!(
        app.upload_raw(&key, "late.txt", &late).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(app.stored_objects().await, 0, "nothing refused is kept");
}

// ---------------------------------------------------------------- CORS

fn preflight(path: &str, origin: &str, method: &str, headers: &str) -> Request<Body> {
    Request::options(path)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn browsers_on_other_origins_may_call_every_route() {
    let app = TestApp::new().await;
    let key = app.key("p", CredentialKind::Integration).await;
    let origin = "http://chat.example.com:5173";
    // tus-js-client's preflight, then its creation: the headers it reads are exposed.
    let pre = app
        .send(preflight(
            "/tus/",
            origin,
            "POST",
            "authorization,tus-resumable,upload-length,upload-metadata",
        ))
        .await;
    assert!(pre.status.is_success(), "{}", pre.status);
    assert_eq!(pre.header("access-control-allow-origin").as_deref(), Some("*"));
    let allowed = pre.header("access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("upload-length"),
        "{allowed}"
    );
    assert!(pre.header("access-control-allow-methods").unwrap().contains("PATCH"));
    assert_eq!(pre.header("access-control-max-age").as_deref(), Some("86400"));
    let created = app
        .send(
            Request::post("/tus/")
                .header("origin", origin)
                .header("authorization", format!("Bearer {key}"))
                .header("tus-resumable", "1.0.0")
                .header("upload-length", "5")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header("access-control-allow-origin").as_deref(), Some("*"));
    let exposed = created
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "location",
        "upload-offset",
        "upload-length",
        "upload-expires",
        "tus-resumable",
        "filedock-file-id",
        "etag",
    ] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
    // A refusal is readable too; so are the vendor routes, signed PUTs and links.
    let refused = app
        .send(
            Request::post("/v1/files?name=a.txt")
                .header("origin", origin)
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.header("access-control-allow-origin").as_deref(), Some("*"));
    for (path, method) in [
        ("/api/v1/upload", "POST"),
        ("/v1/p/agent-runtime/upload-file", "POST"),
        ("/v1/files/upload_url", "POST"),
        ("/api/v1/r/files/presign", "POST"),
        ("/blob/local/p/x.bin?sig=1", "PUT"),
        ("/l/anything", "GET"),
        ("/v1/uploads/multipart/abc/parts", "POST"),
    ] {
        let pre = app
            .send(preflight(path, origin, method, "content-type,x-auth-token,agent"))
            .await;
        assert!(pre.status.is_success(), "{path}: {}", pre.status);
        assert_eq!(
            pre.header("access-control-allow-origin").as_deref(),
            Some("*"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn cors_can_name_its_origins_or_be_off() {
    use filedock_server::config::{CorsConfig, HttpConfig};
    let app = TestApp::with_http(HttpConfig {
        cors: CorsConfig {
            allowed_origins: vec!["https://app.example.com".into()],
            max_age_secs: 60,
        },
        ..Default::default()
    })
    .await;
    let ok = app
        .send(preflight("/tus/", "https://app.example.com", "POST", "tus-resumable"))
        .await;
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    let other = app
        .send(preflight("/tus/", "https://evil.example", "POST", "tus-resumable"))
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);

    let off = TestApp::with_http(HttpConfig {
        cors: CorsConfig {
            allowed_origins: vec![],
            max_age_secs: 60,
        },
        ..Default::default()
    })
    .await;
    let none = off
        .send(preflight("/tus/", "https://app.example.com", "POST", "tus-resumable"))
        .await;
    assert_eq!(none.header("access-control-allow-origin"), None);
    // Without CORS, OPTIONS on /tus/ is tus's own discovery answer.
    assert!(none.header("tus-version").is_some());
}

// ---------------------------------------------------------------- TokenOps: a 2xx is final

async fn tokenops_put(app: &TestApp, key: &str, path: &str, bytes: &[u8]) -> (Answer, String) {
    let ans = app
        .post_json(key, "/v1/files/upload_url", serde_json::json!({ "path": path }))
        .await;
    assert_eq!(ans.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ans.body));
    let r = ans.json();
    let put = app
        .call(
            "PUT",
            r["upload_url"].as_str().unwrap(),
            &[("content-length", bytes.len().to_string())],
            bytes.to_vec(),
        )
        .await;
    (put, r["visit_url"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn tokenops_keeps_what_it_answered_200_for() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let junk = random_bytes(300_000);
    let gbk = encoding_rs::GBK.encode(&CHINESE.repeat(50)).0.into_owned();
    for (path, bytes, served_as) in [
        ("clips/random.mp4", junk.clone(), "application/octet-stream"),
        ("notes/gbk.txt", gbk.clone(), "text/plain; charset=gbk"),
        ("clips/real.mp4", MP4.to_vec(), "video/mp4"),
        ("notes/junk.txt", junk.clone(), "application/octet-stream"),
    ] {
        let (put, visit) = tokenops_put(&app, &key, path, &bytes).await;
        assert_eq!(
            put.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&put.body)
        );
        // The link serves the bytes, as `curl URL` without -L reads them.
        let got = app.call("GET", &visit, &[], vec![]).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert!(got.body == bytes, "{path}: the bytes served are the bytes stored");
        assert_eq!(got.header("content-type").as_deref(), Some(served_as), "{path}");
        assert_eq!(got.header("x-content-type-options").as_deref(), Some("nosniff"));
        let lookup = app
            .get(
                &key,
                &format!(
                    "/v1/files/lookup?path={}",
                    urlencode(&format!("local://filedock.test/demo/{path}"))
                ),
            )
            .await;
        assert_eq!(lookup.json()["status"], "ready", "{path}");
        // On S3 the bucket takes the PUT and completion reads it back: known on every path.
        assert_eq!(
            lookup.json()["sha256"].as_str(),
            Some(sha256_hex(&bytes).as_str()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn presigned_puts_on_local_disk_refuse_in_their_own_answer() {
    if scaled() {
        return; // On S3 the bucket answers the PUT; filedock sees the bytes only at completion.
    }
    let app = TestApp::new().await;
    let key = app.key("p", CredentialKind::Integration).await;
    let presigned = app
        .post_json(
            &key,
            "/v1/uploads",
            serde_json::json!({ "name": "clip.png", "size": 4096 }),
        )
        .await;
    assert_eq!(
        presigned.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&presigned.body)
    );
    let r = presigned.json();
    let url = r["upload"]["url"].as_str().unwrap();
    let signed: Vec<(String, String)> = r["upload"]["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
        .collect();
    let headers: Vec<(&str, String)> = signed.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let put = app.call("PUT", url, &headers, random_bytes(4096)).await;
    assert_eq!(
        put.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "refused in the PUT's answer"
    );
    assert_eq!(app.stored_objects().await, 0, "nothing refused is kept");
}

// ---------------------------------------------------------------- links serve bytes

#[tokio::test]
async fn links_serve_the_bytes_with_ranges_and_validators() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let bytes = random_bytes(10_000);
    let (put, visit) = tokenops_put(&app, &key, "data/blob.bin", &bytes).await;
    assert_eq!(put.status, StatusCode::OK);
    let whole = app.call("GET", &visit, &[], vec![]).await;
    assert_eq!((whole.status, whole.body.len()), (StatusCode::OK, bytes.len()));
    let etag = whole.header("etag").expect("an ETag");
    assert!(whole.header("last-modified").is_some());
    assert_eq!(whole.header("accept-ranges").as_deref(), Some("bytes"));
    assert!(whole.header("content-disposition").unwrap().starts_with("attachment;"));
    let part = app
        .call("GET", &visit, &[("range", "bytes=100-199".into())], vec![])
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, &bytes[100..200]);
    assert_eq!(part.header("content-range").as_deref(), Some("bytes 100-199/10000"));
    assert_eq!(part.header("etag"), Some(etag));
    let head = app.call("HEAD", &visit, &[], vec![]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length").as_deref(), Some("10000"));
    assert!(head.body.is_empty());

    // Juniortree's id is such a link too.
    let jt = app.send(juniortree(&key, "photo.png", PNG)).await;
    assert_eq!(jt.status, StatusCode::OK);
    let id = jt.json()["data"]["id"].as_str().unwrap().to_owned();
    let got = app.call("GET", &id, &[], vec![]).await;
    assert_eq!((got.status, got.body.as_slice()), (StatusCode::OK, PNG));
    assert_eq!(got.header("content-type").as_deref(), Some("image/png"));

    // Deleted: gone.
    let file = app
        .get(
            &key,
            "/v1/files/lookup?path=local%3A%2F%2Ffiledock.test%2Fdemo%2Fdata%2Fblob.bin",
        )
        .await;
    let fid = file.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&key, &format!("/v1/files/{fid}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.call("GET", &visit, &[], vec![]).await.status, StatusCode::GONE);
}

#[tokio::test]
async fn links_can_redirect_instead() {
    use filedock_server::config::{HttpConfig, LinksConfig};
    let app = TestApp::with_http(HttpConfig {
        links: LinksConfig { redirect: true },
        ..Default::default()
    })
    .await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let (put, visit) = tokenops_put(&app, &key, "a/b.bin", b"hello").await;
    assert_eq!(put.status, StatusCode::OK);
    let first = app.call("GET", &visit, &[], vec![]).await;
    assert_eq!(first.status, StatusCode::FOUND);
    assert_eq!(follow(&app, &visit).await.body, b"hello");
}

// ---------------------------------------------------------------- the seeds' own words

/// The start of a JPEG (JFIF), enough for the sniffer.
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xdb\x00\x43\x00\xff\xd9";

#[tokio::test]
async fn juniortree_takes_the_reference_example_file_without_an_extension() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    // `curl … --form file='@example-file' --form created_by=…`: a JPEG named without an extension.
    let ans = app.send(juniortree(&key, "example-file", JPEG)).await;
    assert_eq!(ans.status, StatusCode::OK, "{}", String::from_utf8_lossy(&ans.body));
    let data = &ans.json()["data"];
    assert_eq!(
        (data["extension"].as_str(), data["mime_type"].as_str()),
        (Some("jpg"), Some("image/jpeg"))
    );
    assert_eq!(data["name"], "example-file");
    // Content that sniffs to nothing listed is still refused.
    for bytes in [
        &b"plain words"[..],
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    ] {
        let ans = app.send(juniortree(&key, "example-file", bytes)).await;
        assert_eq!(ans.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(ans.json()["code"], 415);
    }
}

#[tokio::test]
async fn the_vendors_documented_texts() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    // Juniortree's documented missing-file error, word for word.
    let (ct, body) = (
        "multipart/form-data; boundary=b",
        "--b\r\nContent-Disposition: form-data; name=\"created_by\"\r\n\r\nx\r\n--b--\r\n",
    );
    let ans = app
        .send(
            Request::post("/api/v1/upload")
                .header("content-type", ct)
                .header("agent", "fastgpt")
                .header("authorization", format!("Bearer {key}"))
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(ans.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        ans.json(),
        serde_json::json!({"code": 400, "msg": "Missing required parameter: file", "detail": "请确保上传了文件"})
    );
    // Huawei's credential is the X-Auth-Token header, and its refusal says so.
    let (ct, body) = multipart(&[], "a.txt", "text/plain", b"hi");
    let ans = app
        .send(
            Request::post("/v1/demo/agent-runtime/upload-file")
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(ans.status, StatusCode::UNAUTHORIZED);
    let msg = ans.json()["error_msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("X-Auth-Token") && !msg.contains("bearer"), "{msg}");
    // TokenOps: an unknown provider is 400, as /openapi.json says.
    let ans = app
        .post_json(
            &key,
            "/v1/files/upload_url",
            serde_json::json!({"path": "a.txt", "storage_provider": "NOPE"}),
        )
        .await;
    assert_eq!(ans.status, StatusCode::BAD_REQUEST);
    let doc = app
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .json();
    let documented = doc["paths"]["/v1/files/upload_url"]["post"]["responses"]
        .as_object()
        .unwrap()
        .clone();
    assert!(
        documented.contains_key("400") && !documented.contains_key("404"),
        "{documented:?}"
    );
}

// ---------------------------------------------------------------- the admin API for keys

#[tokio::test]
async fn admin_keys_create_list_and_revoke_within_their_project() {
    let app = TestApp::new().await;
    let admin = app.key("alpha", CredentialKind::Admin).await;
    let beta_admin = app.key("beta", CredentialKind::Admin).await;
    let made = app
        .post_json(
            &admin,
            "/v1/admin/keys",
            serde_json::json!({"kind": "device", "name": "runner 1"}),
        )
        .await;
    assert_eq!(
        made.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&made.body)
    );
    let r = made.json();
    let secret = r["secret"].as_str().unwrap().to_owned();
    let id = r["key"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("dk-"));
    assert_eq!(
        (r["key"]["project"].as_str(), r["key"]["kind"].as_str()),
        (Some("alpha"), Some("device"))
    );
    // The new key works; the listing never shows a secret.
    assert_eq!(app.get(&secret, "/v1/files").await.status, StatusCode::OK);
    let list = app.get(&admin, "/v1/admin/keys").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(!String::from_utf8_lossy(&list.body).contains(&secret));
    let ids: Vec<String> = list.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&id));
    // Another project's admin sees none of alpha's keys and cannot revoke them.
    assert!(!String::from_utf8_lossy(&app.get(&beta_admin, "/v1/admin/keys").await.body).contains(&id));
    assert_eq!(
        app.delete(&beta_admin, &format!("/v1/admin/keys/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&secret, "/v1/files").await.status, StatusCode::OK);
    // Revoked: it stops at once; a second revoke is 404.
    assert_eq!(
        app.delete(&admin, &format!("/v1/admin/keys/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&secret, "/v1/files").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.delete(&admin, &format!("/v1/admin/keys/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    // Bad input is 400.
    for bad in [
        serde_json::json!({"kind": "root"}),
        serde_json::json!({"kind": "device", "extra": 1}),
        serde_json::json!({"kind": "device", "name": "x".repeat(200)}),
        serde_json::json!({"kind": "device", "workspace": "no/slashes"}),
    ] {
        let a = app.post_json(&admin, "/v1/admin/keys", bad.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// On S3 a presigned PUT lands at the file's incoming key and completion copies it: the
/// incoming object stays while the URL lives, so a PUT that comes again through it is still
/// refused (412, as Cyberun's document promises), and the sweeper deletes it once no URL can
/// still be in flight.
#[tokio::test]
async fn a_put_after_completion_is_swept_from_the_incoming_keys() {
    if !scaled() {
        return; // On local disk filedock answers the PUT itself and refuses it (412).
    }
    let app = TestApp::new().await;
    // The objects carry the S3 server's time: the manual clock starts there.
    app.clock.set(filedock_core::Clock::now(&filedock_core::SystemClock));
    let key = app.key("demo", CredentialKind::Integration).await;
    let first = b"%PDF-1.4\nfirst\n%%EOF\n".to_vec();
    let p = app
        .post_json(
            &key,
            "/v1/uploads",
            serde_json::json!({"name": "a.pdf", "size": first.len()}),
        )
        .await
        .json();
    let put = |body: Vec<u8>| {
        let (app, p) = (&app, &p);
        async move { app.put_presigned(p, &body).await.status }
    };
    assert_eq!(put(first.clone()).await, StatusCode::OK);
    let id = p["file"]["id"].as_str().unwrap();
    let done = app
        .post_json(&key, &format!("/v1/uploads/{id}/complete"), serde_json::json!({}))
        .await;
    assert_eq!(
        done.json()["status"],
        "ready",
        "{}",
        String::from_utf8_lossy(&done.body)
    );
    assert_eq!(
        put(b"%PDF-1.4\nagain\n%%EOF\n".to_vec()).await,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        app.files.sweep_incoming().await.unwrap(),
        0,
        "a URL may still be in flight"
    );
    app.clock.advance(16 * 60 * 1000 + 61_000);
    let incoming = || app.store.list(".filedock/incoming/");
    assert_eq!(incoming().await.unwrap().len(), 1);
    assert_eq!(app.files.sweep_incoming().await.unwrap(), 1);
    assert!(incoming().await.unwrap().is_empty());
    assert!(app.get(&key, &format!("/v1/files/{id}/content")).await.body == first);
}
