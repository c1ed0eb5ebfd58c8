//! Large files: multipart uploads (native and Cyberun) and tus 1.0, in-process, on the embedded
//! default and — with `TEST_FLAVOR=s3-postgres` — on S3 (s3s-fs) + PostgreSQL, where the part
//! URLs point at the S3 server itself.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use filedock_core::{Clock, CredentialKind};
use serde_json::json;

const MIB: usize = 1 << 20;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i * 131 + i / 4093) as u8) ^ seed).collect()
}

/// PUTs one presigned part (`{part_number, url|upload_url, headers|upload_headers}`); returns
/// the answer.
async fn put_part(app: &TestApp, part: &serde_json::Value, bytes: &[u8]) -> Answer {
    let url = part.get("url").or(part.get("upload_url")).unwrap().as_str().unwrap();
    let hdrs = part.get("headers").or(part.get("upload_headers")).unwrap();
    let headers: Vec<(&str, String)> = hdrs
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_owned()))
        .collect();
    app.call("PUT", url, &headers, bytes.to_vec()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn native_multipart_checks_order_etags_and_total_then_makes_an_ordinary_file() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let body = data(12 * MIB + 345, 1);
    let init = app
        .post_json(
            &key,
            "/v1/uploads/multipart",
            json!({"name": "big.bin", "size": body.len(), "part_size": 5 * MIB}),
        )
        .await;
    assert_eq!(init.status, StatusCode::CREATED, "{}", init.json());
    let init = init.json();
    assert_eq!(
        (init["part_size"].as_u64(), init["part_count"].as_u64()),
        (Some(5 << 20), Some(3))
    );
    let id = init["upload_id"].as_str().unwrap().to_owned();
    let file_id = init["file"]["id"].as_str().unwrap().to_owned();
    assert_eq!(init["file"]["status"], "pending");

    let parts = app
        .post_json(
            &key,
            &format!("/v1/uploads/multipart/{id}/parts"),
            json!({"part_numbers": [3, 1, 2]}),
        )
        .await;
    assert_eq!(parts.status, StatusCode::OK, "{}", parts.json());
    let parts = parts.json()["parts"].as_array().unwrap().clone();
    assert_eq!(parts[1]["headers"]["Content-Length"], (5 * MIB).to_string());
    assert_eq!(parts[0]["headers"]["Content-Length"], (2 * MIB + 345).to_string());

    // A part of another length than signed is refused.
    let wrong = app
        .call(
            "PUT",
            parts[1]["url"].as_str().unwrap(),
            &[("Content-Length", "10".to_owned())],
            body[..10].to_vec(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);

    // The parts, in any order.
    let mut etags = std::collections::BTreeMap::new();
    for p in &parts {
        let n = p["part_number"].as_u64().unwrap() as usize;
        let slice = &body[(n - 1) * 5 * MIB..(n * 5 * MIB).min(body.len())];
        let put = put_part(&app, p, slice).await;
        assert_eq!(put.status, StatusCode::OK, "{}", String::from_utf8_lossy(&put.body));
        etags.insert(n, put.header("etag").expect("an ETag"));
    }
    let listed = |order: &[usize]| json!({"parts": order.iter().map(|n| json!({"part_number": n, "etag": etags[n]})).collect::<Vec<_>>()});
    let complete = format!("/v1/uploads/multipart/{id}/complete");

    let out_of_order = app.post_json(&key, &complete, listed(&[2, 1, 3])).await;
    assert_eq!(out_of_order.status, StatusCode::BAD_REQUEST);
    assert!(
        out_of_order.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ascending")
    );

    let mut bad = listed(&[1, 2, 3]);
    bad["parts"][1]["etag"] = json!("\"0123456789abcdef0123456789abcdef\"");
    let wrong_etag = app.post_json(&key, &complete, bad).await;
    assert_eq!(wrong_etag.status, StatusCode::BAD_REQUEST);
    assert!(wrong_etag.json()["error"]["message"].as_str().unwrap().contains("ETag"));

    let short = app.post_json(&key, &complete, listed(&[1, 2])).await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.json()["error"]["message"].as_str().unwrap().contains("total"));

    // Another project cannot complete it.
    let stranger = app.key("other", CredentialKind::Integration).await;
    assert_eq!(
        app.post_json(&stranger, &complete, listed(&[1, 2, 3])).await.status,
        StatusCode::NOT_FOUND
    );

    let done = app.post_json(&key, &complete, listed(&[1, 2, 3])).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.json());
    let f = done.json();
    assert_eq!(f["status"], "ready");
    assert_eq!(f["id"], file_id.as_str());
    assert_eq!(f["size"].as_u64(), Some(body.len() as u64));
    if !scaled() {
        assert_eq!(f["sha256"], sha256_hex(&body).as_str());
    }
    let got = app.get(&key, &format!("/v1/files/{file_id}/content")).await;
    assert!(got.body == body, "the bytes come back identical");
    // Completing again answers the same file; presigning more parts is refused.
    assert_eq!(
        app.post_json(&key, &complete, listed(&[1, 2, 3])).await.status,
        StatusCode::OK
    );
    let more = app
        .post_json(
            &key,
            &format!("/v1/uploads/multipart/{id}/parts"),
            json!({"part_numbers": [1]}),
        )
        .await;
    assert_eq!(more.status, StatusCode::CONFLICT);
    if let Some(local) = &app.local {
        let _ = local;
        let leftovers = std::fs::read_dir(app.dir.path().join("uploads")).unwrap().count();
        assert_eq!(leftovers, 0, "no part is left on disk");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cyberun_multipart_is_for_session_keys_and_answers_the_presign_file_key() {
    let app = TestApp::new().await;
    let session = app.key("demo", CredentialKind::Session).await;
    for kind in [CredentialKind::Integration, CredentialKind::Device] {
        let k = app.key("demo", kind).await;
        for path in [
            "/api/v1/uploads/multipart/initiate",
            "/api/v1/uploads/multipart/presign-parts",
            "/api/v1/uploads/multipart/complete",
            "/api/v1/uploads/multipart/abort",
        ] {
            let a = app.post_json(&k, path, json!({"upload_id": "x"})).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{kind:?} on {path}");
        }
    }
    let body = data(6 * MIB, 7);
    let init = app
        .post_json(
            &session,
            "/api/v1/uploads/multipart/initiate",
            json!({"file_name": "clip.bin", "file_size": body.len(), "content_type": "application/octet-stream", "part_size": 5 * MIB}),
        )
        .await;
    assert_eq!(init.status, StatusCode::OK, "{}", init.json());
    let init = init.json();
    let file_key = init["file_key"].as_str().unwrap().to_owned();
    assert!(
        file_key.starts_with("inputs/demo/") && file_key.ends_with("/clip.bin"),
        "{file_key}"
    );
    assert_eq!(init["part_count"], 2);
    let id = init["upload_id"].as_str().unwrap();
    let parts = app
        .post_json(
            &session,
            "/api/v1/uploads/multipart/presign-parts",
            json!({"upload_id": id, "part_numbers": [1, 2]}),
        )
        .await
        .json();
    let mut listed = Vec::new();
    for (i, p) in parts["parts"].as_array().unwrap().iter().enumerate() {
        let slice = &body[i * 5 * MIB..((i + 1) * 5 * MIB).min(body.len())];
        let put = put_part(&app, p, slice).await;
        assert_eq!(put.status, StatusCode::OK);
        listed.push(json!({"part_number": i + 1, "etag": put.header("etag").unwrap()}));
    }
    let out_of_range = app
        .post_json(
            &session,
            "/api/v1/uploads/multipart/presign-parts",
            json!({"upload_id": id, "part_numbers": [3]}),
        )
        .await;
    assert_eq!(out_of_range.status, StatusCode::BAD_REQUEST);
    let done = app
        .post_json(
            &session,
            "/api/v1/uploads/multipart/complete",
            json!({"upload_id": id, "parts": listed}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(done.json(), json!({"file_key": file_key}));
    // An ordinary file: found by its key, downloadable.
    let found = app
        .get(&session, &format!("/v1/files/lookup?path={}", urlencode(&file_key)))
        .await;
    assert_eq!(found.json()["status"], "ready");
    let got = app
        .get(
            &session,
            &format!("/v1/files/{}/content", found.json()["id"].as_str().unwrap()),
        )
        .await;
    assert!(got.body == body);
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_and_aborted_multipart_uploads_leave_nothing() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let start = |name: &'static str| {
        let app = &app;
        let key = key.clone();
        async move {
            let init = app
                .post_json(&key, "/v1/uploads/multipart", json!({"name": name, "size": 3000}))
                .await
                .json();
            let id = init["upload_id"].as_str().unwrap().to_owned();
            let parts = app
                .post_json(
                    &key,
                    &format!("/v1/uploads/multipart/{id}/parts"),
                    json!({"part_numbers": [1]}),
                )
                .await
                .json();
            assert_eq!(
                put_part(app, &parts["parts"][0], &data(3000, 3)).await.status,
                StatusCode::OK
            );
            (id, init["file"]["id"].as_str().unwrap().to_owned())
        }
    };
    // Aborted by the client.
    let (id, file_id) = start("a.bin").await;
    let del = app
        .send(
            Request::delete(format!("/v1/uploads/multipart/{id}"))
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&key, &format!("/v1/files/{file_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let again = app
        .post_json(
            &key,
            &format!("/v1/uploads/multipart/{id}/parts"),
            json!({"part_numbers": [1]}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    // Abandoned: swept once its time is up, not before.
    let (id, file_id) = start("b.bin").await;
    assert_eq!(app.files.sweep_uploads().await.unwrap(), 0);
    app.clock.advance(86_400_000 + 1);
    assert_eq!(app.files.sweep_uploads().await.unwrap(), 1);
    assert_eq!(app.files.sweep_uploads().await.unwrap(), 0, "swept once");
    let u = app
        .catalog
        .upload(&filedock_core::UploadId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, filedock_core::UploadStatus::Aborted);
    assert!(
        app.catalog
            .file(&filedock_core::FileId::parse(&file_id).unwrap())
            .await
            .unwrap()
            .is_none(),
        "the pending file record is gone"
    );
    let parts = app.store.list_parts(&u.key, &u.handle).await;
    assert!(parts.map_or(true, |p| p.is_empty()), "the parts are deleted");
    assert_eq!(app.stored_objects().await, 0);
    if app.local.is_some() {
        assert_eq!(std::fs::read_dir(app.dir.path().join("uploads")).unwrap().count(), 0);
    }
}

// ---- tus ----

fn tus(method: &str, path: &str, key: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("tus-resumable", "1.0.0")
        .header("authorization", format!("Bearer {key}"))
}

fn meta(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", STANDARD.encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

async fn tus_create(app: &TestApp, key: &str, length: usize, name: &str) -> String {
    let a = app
        .send(
            tus("POST", "/tus/", key)
                .header("upload-length", length)
                .header(
                    "upload-metadata",
                    meta(&[("filename", name), ("filetype", "application/pdf")]),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
    let loc = a.header("location").unwrap();
    assert!(loc.starts_with(&format!("{BASE}/tus/")), "{loc}");
    assert!(a.header("upload-expires").is_some());
    loc.strip_prefix(BASE).unwrap().to_owned()
}

async fn tus_patch(
    app: &TestApp,
    key: &str,
    path: &str,
    offset: usize,
    bytes: &[u8],
    extra: &[(&str, String)],
) -> Answer {
    let mut req = tus("PATCH", path, key)
        .header("upload-offset", offset)
        .header("content-type", "application/offset+octet-stream");
    for (k, v) in extra {
        req = req.header(*k, v);
    }
    app.send(req.body(Body::from(bytes.to_vec())).unwrap()).await
}

/// The file a PATCH finished (it answered 204 with its id), read back: ready.
async fn finished_file(app: &TestApp, key: &str, done: &Answer) -> (String, serde_json::Value) {
    assert_eq!(
        done.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&done.body)
    );
    let file_id = done.header("filedock-file-id").expect("the file id");
    let f = app.get(key, &format!("/v1/files/{file_id}")).await.json();
    assert_eq!(f["status"], "ready");
    (file_id, f)
}

async fn tus_head(app: &TestApp, key: &str, path: &str) -> Answer {
    app.send(tus("HEAD", path, key).body(Body::empty()).unwrap()).await
}

/// A file that arrives whole in one PATCH is hashed on the way in (not read back), on every
/// backend (several PATCHes: the next test).
#[tokio::test(flavor = "multi_thread")]
async fn a_tus_upload_in_one_patch_gets_its_sha256_as_it_streams() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let mut doc = b"%PDF-1.7\n".to_vec();
    doc.extend_from_slice(&data(3 * MIB, 7));
    let path = tus_create(&app, &key, doc.len(), "one.pdf").await;
    let done = tus_patch(&app, &key, &path, 0, &doc, &[]).await;
    let (file_id, f) = finished_file(&app, &key, &done).await;
    assert_eq!(f["detected_type"], "application/pdf");
    assert_eq!(f["sha256"], sha256_hex(&doc).as_str());
    assert!(app.get(&key, &format!("/v1/files/{file_id}/content")).await.body == doc);
    // A mislabelled body in one PATCH is still refused at completion.
    let png = data(4096, 3);
    let path = tus_create(&app, &key, png.len(), "fake.pdf").await;
    let refused = tus_patch(&app, &key, &path, 0, &png, &[]).await;
    assert_eq!(
        refused.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
}

/// A file sent in several PATCHes to one instance is hashed as it streams, its SHA-256 going on
/// from PATCH to PATCH: completing does not read it back, and on S3 (which does not read
/// uploads whole) it still gets its SHA-256. When another instance took a PATCH in the middle,
/// the one that finishes has no digest of the bytes before it: it reads the file back where the
/// backend hashes (local) and leaves the SHA-256 unknown where it does not (S3). A digest
/// carried over the other instance's bytes would show as a wrong SHA-256 here.
#[tokio::test(flavor = "multi_thread")]
async fn a_tus_upload_in_several_patches_is_hashed_from_patch_to_patch() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let mut doc = b"%PDF-1.7\n".to_vec();
    doc.extend_from_slice(&data(3 * MIB + 1234, 11));
    let cuts = [0, MIB, 2 * MIB + 17, doc.len()];

    let path = tus_create(&app, &key, doc.len(), "parts.pdf").await;
    let mut last = None;
    for w in cuts.windows(2) {
        let a = tus_patch(&app, &key, &path, w[0], &doc[w[0]..w[1]], &[]).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&a.body));
        last = Some(a);
    }
    let (file_id, f) = finished_file(&app, &key, &last.unwrap()).await;
    assert_eq!(f["detected_type"], "application/pdf");
    assert_eq!(f["sha256"], sha256_hex(&doc).as_str(), "hashed across three PATCHes");
    assert!(app.get(&key, &format!("/v1/files/{file_id}/content")).await.body == doc);

    // The middle PATCH goes to another instance.
    let path = tus_create(&app, &key, doc.len(), "shared.pdf").await;
    let id = path.rsplit('/').next().unwrap().to_owned();
    let first = tus_patch(&app, &key, &path, 0, &doc[..cuts[1]], &[]).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT);
    let other = app.another_instance();
    let who = other.authenticate(&key).await.unwrap();
    let middle = bytes::Bytes::copy_from_slice(&doc[cuts[1]..cuts[2]]);
    let body: filedock_core::ByteStream = Box::pin(futures_util::stream::once(async move { Ok(middle) }));
    let u = other
        .tus_append(&who, &id, cuts[1] as u64, None, None, body)
        .await
        .unwrap();
    assert_eq!(u.offset, cuts[2] as u64);
    let done = tus_patch(&app, &key, &path, cuts[2], &doc[cuts[2]..], &[]).await;
    let (file_id, f) = finished_file(&app, &key, &done).await;
    // No instance saw it all: read back at completion, on S3 as on local disk (issue 23: on S3
    // it was `null`).
    assert_eq!(f["sha256"], sha256_hex(&doc).as_str(), "read back");
    assert!(app.get(&key, &format!("/v1/files/{file_id}/content")).await.body == doc);
}

/// A PATCH whose body breaks part way keeps what arrived before the break, as tus asks, both
/// when the body is small (gathered in memory, then stored whole) and when it is large
/// (streamed to the store, its first chunks gathered before).
#[tokio::test(flavor = "multi_thread")]
async fn a_patch_cut_short_keeps_what_arrived_small_or_large() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let mut doc = b"%PDF-1.7\n".to_vec();
    doc.extend_from_slice(&data(MIB + 3000, 5));
    let path = tus_create(&app, &key, doc.len(), "cut.pdf").await;
    let id = path.rsplit('/').next().unwrap().to_owned();
    let files = app.another_instance();
    let who = files.authenticate(&key).await.unwrap();
    let broken = |from: usize, pieces: &[usize]| -> filedock_core::ByteStream {
        let mut items = Vec::new();
        let mut at = from;
        for n in pieces {
            items.push(Ok(bytes::Bytes::copy_from_slice(&doc[at..at + n])));
            at += n;
        }
        items.push(Err(filedock_core::Error::invalid("the client went away")));
        Box::pin(futures_util::stream::iter(items))
    };
    let small = 100_000;
    let r = files.tus_append(&who, &id, 0, None, None, broken(0, &[small])).await;
    assert!(r.is_err(), "the body's error is the answer");
    assert_eq!(
        tus_head(&app, &key, &path).await.header("upload-offset").as_deref(),
        Some("100000")
    );
    let large = [128 << 10; 3];
    let r = files
        .tus_append(&who, &id, small as u64, None, None, broken(small, &large))
        .await;
    assert!(r.is_err(), "the body's error is the answer");
    let kept = small + large.iter().sum::<usize>();
    assert_eq!(
        tus_head(&app, &key, &path).await.header("upload-offset"),
        Some(kept.to_string())
    );
    let done = tus_patch(&app, &key, &path, kept, &doc[kept..], &[]).await;
    let (file_id, f) = finished_file(&app, &key, &done).await;
    assert!(app.get(&key, &format!("/v1/files/{file_id}/content")).await.body == doc);
    if !scaled() {
        assert_eq!(f["sha256"], sha256_hex(&doc).as_str(), "read back");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_core_checksum_and_authorization() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let stranger = app.key("other", CredentialKind::Integration).await;

    let opts = app.send(Request::options("/tus/").body(Body::empty()).unwrap()).await;
    assert_eq!(opts.status, StatusCode::NO_CONTENT);
    let ext = opts.header("tus-extension").unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
        "concatenation",
    ] {
        assert!(ext.split(',').any(|x| x == e), "{e} in {ext}");
    }
    assert_eq!(opts.header("tus-version").as_deref(), Some("1.0.0"));
    assert_eq!(opts.header("tus-checksum-algorithm").as_deref(), Some("sha1,sha256"));

    let no_version = app
        .send(
            Request::post("/tus/")
                .header("authorization", format!("Bearer {key}"))
                .header("upload-length", 10)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(no_version.status, StatusCode::PRECONDITION_FAILED);
    let no_key = app
        .send(
            Request::post("/tus/")
                .header("tus-resumable", "1.0.0")
                .header("upload-length", 10)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(no_key.status, StatusCode::UNAUTHORIZED);

    let mut doc = PDF.to_vec();
    doc.extend(data(3 * MIB, 5));
    let path = tus_create(&app, &key, doc.len(), "report.pdf").await;
    let h = tus_head(&app, &key, &path).await;
    assert_eq!(
        (h.status, h.header("upload-offset").as_deref()),
        (StatusCode::OK, Some("0"))
    );
    assert_eq!(h.header("upload-length"), Some(doc.len().to_string()));
    assert_eq!(h.header("cache-control").as_deref(), Some("no-store"));

    // Another project sees nothing and touches nothing.
    assert_eq!(tus_head(&app, &stranger, &path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        tus_patch(&app, &stranger, &path, 0, &doc[..10], &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let del = app
        .send(tus("DELETE", &path, &stranger).body(Body::empty()).unwrap())
        .await;
    assert_eq!(del.status, StatusCode::NOT_FOUND);

    let first = tus_patch(&app, &key, &path, 0, &doc[..MIB], &[]).await;
    assert_eq!(
        first.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(first.header("upload-offset"), Some(MIB.to_string()));
    // The wrong offset is a conflict; the wrong type a 415.
    assert_eq!(
        tus_patch(&app, &key, &path, 0, &doc[..10], &[]).await.status,
        StatusCode::CONFLICT
    );
    let typed = app
        .send(
            tus("PATCH", &path, &key)
                .header("upload-offset", MIB)
                .header("content-type", "application/octet-stream")
                .body(Body::from(doc[MIB..MIB + 10].to_vec()))
                .unwrap(),
        )
        .await;
    assert_eq!(typed.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Checksums: a mismatch is 460 and appends nothing; a match appends.
    use sha2::Digest;
    let chunk = &doc[MIB..2 * MIB];
    let wrong = format!("sha256 {}", STANDARD.encode(sha2::Sha256::digest(b"something else")));
    let mismatch = tus_patch(&app, &key, &path, MIB, chunk, &[("upload-checksum", wrong)]).await;
    assert_eq!(mismatch.status.as_u16(), 460);
    assert_eq!(
        tus_head(&app, &key, &path).await.header("upload-offset"),
        Some(MIB.to_string())
    );
    let sha1 = format!("sha1 {}", STANDARD.encode(sha1_digest(chunk)));
    let ok = tus_patch(&app, &key, &path, MIB, chunk, &[("upload-checksum", sha1)]).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    let unknown = tus_patch(
        &app,
        &key,
        &path,
        2 * MIB,
        chunk,
        &[("upload-checksum", "md5 AAAA".into())],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);

    // Past the length is refused; the rest finishes the file.
    let over = tus_patch(&app, &key, &path, 2 * MIB, &data(doc.len(), 1), &[]).await;
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE);
    let at = tus_head(&app, &key, &path).await.header("upload-offset").unwrap();
    let at: usize = at.parse().unwrap();
    let last = tus_patch(&app, &key, &path, at, &doc[at..], &[]).await;
    assert_eq!(
        last.status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&last.body)
    );
    assert_eq!(last.header("upload-offset"), Some(doc.len().to_string()));
    let file_id = last.header("filedock-file-id").expect("the file id");
    let f = app.get(&key, &format!("/v1/files/{file_id}")).await.json();
    assert_eq!(
        (f["name"].as_str(), f["status"].as_str()),
        (Some("report.pdf"), Some("ready"))
    );
    assert_eq!(f["declared_type"], "application/pdf");
    assert_eq!(f["detected_type"], "application/pdf");
    if !scaled() {
        assert_eq!(f["sha256"], sha256_hex(&doc).as_str());
    }
    assert!(app.get(&key, &format!("/v1/files/{file_id}/content")).await.body == doc);
    // Finished: HEAD still answers, PATCH is over, the stranger still sees nothing.
    let h = tus_head(&app, &key, &path).await;
    assert_eq!(h.header("upload-offset"), Some(doc.len().to_string()));
    assert_eq!(tus_head(&app, &stranger, &path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&stranger, &format!("/v1/files/{file_id}")).await.status,
        StatusCode::NOT_FOUND
    );
}

fn sha1_digest(b: &[u8]) -> Vec<u8> {
    use sha1::Digest;
    sha1::Sha1::digest(b).to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_creation_with_upload_defer_length_termination_and_expiry() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;

    // creation-with-upload: the whole file in the POST.
    let body = data(300_000, 9);
    let a = app
        .send(
            tus("POST", "/tus/", &key)
                .header("upload-length", body.len())
                .header("upload-metadata", meta(&[("filename", "blob.bin")]))
                .header("content-type", "application/offset+octet-stream")
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.header("upload-offset"), Some(body.len().to_string()));
    let file_id = a.header("filedock-file-id").expect("complete at once");
    assert!(app.get(&key, &format!("/v1/files/{file_id}/content")).await.body == body);

    // creation-defer-length: the length comes with a PATCH.
    let a = app
        .send(
            tus("POST", "/tus/", &key)
                .header("upload-defer-length", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let path = a.header("location").unwrap().strip_prefix(BASE).unwrap().to_owned();
    assert_eq!(
        tus_head(&app, &key, &path)
            .await
            .header("upload-defer-length")
            .as_deref(),
        Some("1")
    );
    let p = tus_patch(&app, &key, &path, 0, &body[..1000], &[]).await;
    assert_eq!(p.status, StatusCode::NO_CONTENT);
    let p = tus_patch(
        &app,
        &key,
        &path,
        1000,
        &body[1000..],
        &[("upload-length", body.len().to_string())],
    )
    .await;
    assert_eq!(p.status, StatusCode::NO_CONTENT);
    assert!(p.header("filedock-file-id").is_some());

    // termination.
    let path = tus_create(&app, &key, 5000, "gone.pdf").await;
    assert_eq!(
        tus_patch(&app, &key, &path, 0, &PDF[..20], &[]).await.status,
        StatusCode::NO_CONTENT
    );
    let del = app.send(tus("DELETE", &path, &key).body(Body::empty()).unwrap()).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(tus_head(&app, &key, &path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        tus_patch(&app, &key, &path, 20, &PDF[20..30], &[]).await.status,
        StatusCode::NOT_FOUND
    );

    // expiration: an upload idle past its Upload-Expires is gone, and swept.
    let path = tus_create(&app, &key, 5000, "idle.pdf").await;
    assert_eq!(
        tus_patch(&app, &key, &path, 0, &PDF[..20], &[]).await.status,
        StatusCode::NO_CONTENT
    );
    // This instance remembers who made the upload; a stranger still gets 404.
    let stranger = app.key("other", CredentialKind::Integration).await;
    assert_eq!(
        tus_patch(&app, &stranger, &path, 20, &PDF[20..30], &[]).await.status,
        StatusCode::NOT_FOUND
    );
    app.clock.advance(86_400_000 + 1);
    assert_eq!(
        tus_patch(&app, &key, &path, 20, &PDF[20..30], &[]).await.status,
        StatusCode::NOT_FOUND,
        "an expired upload takes no PATCH"
    );
    assert_eq!(tus_head(&app, &key, &path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.files.sweep_uploads().await.unwrap(), 1);
    if app.local.is_some() {
        assert_eq!(std::fs::read_dir(app.dir.path().join("uploads")).unwrap().count(), 0);
    }
    assert!(
        app.store.list(".filedock/append/").await.unwrap().is_empty(),
        "no staging left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tus_concatenation_joins_partial_uploads() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let stranger = app.key("other", CredentialKind::Integration).await;
    let whole = data(7 * MIB + 11, 4);
    let cut = 6 * MIB + 5;
    let mut urls = Vec::new();
    for piece in [&whole[..cut], &whole[cut..]] {
        let a = app
            .send(
                tus("POST", "/tus/", &key)
                    .header("upload-length", piece.len())
                    .header("upload-concat", "partial")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
        let url = a.header("location").unwrap();
        let path = url.strip_prefix(BASE).unwrap().to_owned();
        // In two PATCHes, the first under S3's part size (so it is staged).
        let half = piece.len() / 2;
        assert_eq!(
            tus_patch(&app, &key, &path, 0, &piece[..half], &[]).await.status,
            StatusCode::NO_CONTENT
        );
        let p = tus_patch(&app, &key, &path, half, &piece[half..], &[]).await;
        assert_eq!(p.status, StatusCode::NO_CONTENT);
        assert!(p.header("filedock-file-id").is_none(), "a partial upload is not a file");
        assert_eq!(
            tus_head(&app, &key, &path).await.header("upload-concat").as_deref(),
            Some("partial")
        );
        urls.push(url);
    }
    // Another project cannot join them.
    let theirs = app
        .send(
            tus("POST", "/tus/", &stranger)
                .header("upload-concat", format!("final;{}", urls.join(" ")))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let fin = app
        .send(
            tus("POST", "/tus/", &key)
                .header("upload-concat", format!("final;{}", urls.join(" ")))
                .header("upload-metadata", meta(&[("filename", "joined.bin")]))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        fin.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&fin.body)
    );
    let file_id = fin.header("filedock-file-id").expect("the joined file");
    let f = app.get(&key, &format!("/v1/files/{file_id}")).await.json();
    assert_eq!(
        (f["name"].as_str(), f["size"].as_u64()),
        (Some("joined.bin"), Some(whole.len() as u64))
    );
    assert_eq!(f["sha256"], sha256_hex(&whole).as_str());
    assert!(app.get(&key, &format!("/v1/files/{file_id}/content")).await.body == whole);
    let path = fin.header("location").unwrap().strip_prefix(BASE).unwrap().to_owned();
    let h = tus_head(&app, &key, &path).await;
    assert_eq!(h.header("upload-length"), Some(whole.len().to_string()));
    assert!(h.header("upload-concat").unwrap().starts_with("final;/tus/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_waits_for_the_lock_and_takes_it_over_once_a_stalled_writers_lease_lapses() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let path = tus_create(&app, &key, 1000, "locked.bin").await;
    let id = filedock_core::UploadId::parse(path.trim_start_matches("/tus/")).unwrap();
    // Another instance's writer holds the lock, then goes silent.
    let now = app.clock.now();
    assert!(
        app.catalog
            .lock_upload(&id, "stalled-writer", now, now + 10_000)
            .await
            .unwrap()
    );
    let patch = {
        let app_router = app.router.clone();
        let key = key.clone();
        let path = path.clone();
        tokio::spawn(async move {
            let req = tus("PATCH", &path, &key)
                .header("upload-offset", 0)
                .header("content-type", "application/offset+octet-stream")
                .body(Body::from(vec![7u8; 1000]))
                .unwrap();
            tower::ServiceExt::oneshot(app_router, req).await.unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(!patch.is_finished(), "the PATCH waits while the lease runs");
    assert_eq!(
        tus_head(&app, &key, &path).await.header("upload-offset").as_deref(),
        Some("0")
    );
    // The lease lapses (by filedock's clock): the waiting PATCH takes the upload over.
    app.clock.advance(10_001);
    let resp = patch.await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        tus_head(&app, &key, &path).await.header("upload-offset").as_deref(),
        Some("1000")
    );
    // And the stalled writer can no longer record anything.
    assert!(
        !app.catalog
            .advance_upload(&id, "stalled-writer", 5, None, now + 99_000)
            .await
            .unwrap()
    );
}
