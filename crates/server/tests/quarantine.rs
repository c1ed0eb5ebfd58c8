//! Quarantine with a real scanner: Debian's clamd (`scripts/clamd`) with a signature database
//! the test writes (the EICAR test string), every policy set to `scan = "clamav"`, on both
//! flavours (`TEST_FLAVOR=s3-postgres`). The EICAR file through each way in is rejected — its
//! bytes gone, never downloadable or linkable — and a clean file becomes ready; with clamd
//! stopped uploads stay quarantined, and once it is back they are scanned and released, each
//! once, by two instances.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Answer, TestApp, multipart};
use filedock_core::blob::ByteStream;
use filedock_core::catalog::FileQuery;
use filedock_core::scan::{Scanner, Verdict};
use filedock_core::settings::{QuarantineSettings, ScannerSetup};
use filedock_core::{CredentialKind, FileRecord, FileStatus, ProjectId};
use filedock_storage::{ClamAv, ClamdAddress};
use filedock_testkit::{Clamd, EICAR};
use serde_json::json;

const MIB: u64 = 1024 * 1024;

/// clamd, counting the scans it is asked for.
#[derive(Debug)]
struct Counting {
    inner: ClamAv,
    scans: AtomicUsize,
}

#[async_trait]
impl Scanner for Counting {
    fn max_bytes(&self) -> Option<u64> {
        self.inner.max_bytes()
    }
    async fn scan(&self, body: ByteStream, size: u64) -> filedock_core::Result<Verdict> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        self.inner.scan(body, size).await
    }
    async fn ping(&self) -> filedock_core::Result<()> {
        self.inner.ping().await
    }
}

/// An app whose every policy waits for clamd.
async fn scanning(clamd: &Clamd) -> (TestApp, Arc<Counting>) {
    let counting = Arc::new(Counting {
        inner: ClamAv::new(
            ClamdAddress::Tcp(clamd.address.clone()),
            8 * MIB,
            Duration::from_secs(10),
        ),
        scans: AtomicUsize::new(0),
    });
    let app = scanning_with("clamav", counting.clone(), 10).await;
    (app, counting)
}

/// An app whose every policy waits for `engine` (named `name`), at most `wait_secs`.
async fn scanning_with(name: &'static str, engine: Arc<dyn Scanner>, wait_secs: u64) -> TestApp {
    TestApp::configured(move |c| {
        c.quarantine = QuarantineSettings {
            scanners: BTreeMap::from([(
                name.to_owned(),
                ScannerSetup {
                    engine,
                    accept_too_large: false,
                },
            )]),
            wait_secs,
            retry_secs: 5,
        };
        for p in c.policies.values_mut() {
            p.scan = Some(name.into());
        }
    })
    .await
}

async fn records(app: &TestApp, project: &str, status: FileStatus) -> Vec<FileRecord> {
    let q = FileQuery {
        project: ProjectId::new(project).unwrap(),
        workspace: None,
        status,
        before: None,
        live_at: 0,
        limit: 1000,
    };
    app.catalog.list_files(&q).await.unwrap()
}

/// After an EICAR upload through some way in: one more rejected file naming the signature, no
/// ready file, and no bytes kept.
async fn rejected_once_more(app: &TestApp, before: usize, what: &str) -> FileRecord {
    let rejected = records(app, "demo", FileStatus::Rejected).await;
    assert_eq!(rejected.len(), before + 1, "{what}: one more rejected file");
    let rec = rejected
        .into_iter()
        .find(|r| r.reason.as_deref().unwrap_or("").contains("Eicar"))
        .unwrap();
    assert!(
        rec.reason
            .as_deref()
            .unwrap()
            .starts_with("infected: Eicar-Test-Signature"),
        "{what}: {rec:?}"
    );
    assert!(app.store.head(&rec.key).await.is_err(), "{what}: the bytes are gone");
    rec
}

fn infected(a: &Answer, what: &str) {
    assert_eq!(
        a.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{what}: {}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(
        String::from_utf8_lossy(&a.body).contains("infected") || String::from_utf8_lossy(&a.body).contains("Eicar"),
        "{what}: {}",
        String::from_utf8_lossy(&a.body)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eicar_is_rejected_through_every_way_in_and_a_clean_file_becomes_ready() {
    let Some(clamd) = Clamd::start(8 * MIB) else { return };
    let (app, _) = scanning(&clamd).await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let mut n = 0;

    // Native upload: 422 infected, the record rejected, the bytes gone.
    let a = app.upload_raw(&key, "eicar.txt", EICAR).await;
    infected(&a, "native");
    let rec = rejected_once_more(&app, n, "native").await;
    n += 1;
    let got = app.get(&key, &format!("/v1/files/{}", rec.id)).await.json();
    assert_eq!(got["status"], "rejected");
    assert!(got["reason"].as_str().unwrap().contains("Eicar"));
    for path in [format!("/v1/files/{}/content", rec.id)] {
        assert_eq!(app.get(&key, &path).await.status, StatusCode::GONE, "{path}");
    }
    let link = app
        .post_json(&key, &format!("/v1/files/{}/links", rec.id), json!({}))
        .await;
    assert_eq!(link.status, StatusCode::GONE);

    // A clean file: scanned, ready, served.
    let a = app.upload_raw(&key, "clean.txt", b"nothing to see here").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["status"], "ready");
    let id = a.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&key, &format!("/v1/files/{id}/content")).await.body,
        b"nothing to see here"
    );

    // Huawei (its own envelope), Juniortree.
    let (ct, body) = multipart(&[], "eicar.txt", "text/plain", EICAR);
    let hw = Request::post("/v1/demo/agent-runtime/upload-file")
        .header("content-type", ct)
        .header("x-auth-token", &key)
        .body(Body::from(body))
        .unwrap();
    infected(&app.send(hw).await, "huawei");
    rejected_once_more(&app, n, "huawei").await;
    n += 1;
    let (ct, body) = multipart(&[("created_by", "me")], "eicar.txt", "text/plain", EICAR);
    let jt = Request::post("/api/v1/upload")
        .header("content-type", ct)
        .header("agent", "dify")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body))
        .unwrap();
    infected(&app.send(jt).await, "juniortree");
    rejected_once_more(&app, n, "juniortree").await;
    n += 1;

    // Native presign + PUT + complete.
    let (p, put) = app.presign_and_put(&key, "eicar.txt", EICAR).await;
    let done = app
        .post_json(
            &key,
            &format!("/v1/uploads/{}/complete", p["file"]["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert!(
        put == StatusCode::UNPROCESSABLE_ENTITY
            || done.status == StatusCode::UNPROCESSABLE_ENTITY
            || done.status == StatusCode::GONE,
        "presign: PUT {} then complete {}",
        put,
        done.status
    );
    rejected_once_more(&app, n, "presign").await;
    n += 1;

    // tus: created, then the last byte.
    let create = Request::post("/tus/")
        .header("authorization", format!("Bearer {key}"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", EICAR.len())
        .header("upload-metadata", "filename ZWljYXIudHh0")
        .body(Body::empty())
        .unwrap();
    let created = app.send(create).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let path = created
        .header("location")
        .unwrap()
        .strip_prefix(common::BASE)
        .unwrap()
        .to_owned();
    let patch = Request::patch(path)
        .header("authorization", format!("Bearer {key}"))
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", 0)
        .header("content-type", "application/offset+octet-stream")
        .body(Body::from(EICAR.to_vec()))
        .unwrap();
    infected(&app.send(patch).await, "tus");
    rejected_once_more(&app, n, "tus").await;
    n += 1;

    // Native multipart, one part.
    let init = app
        .post_json(
            &key,
            "/v1/uploads/multipart",
            json!({"name": "eicar.txt", "size": EICAR.len(), "part_size": 5 * MIB}),
        )
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
    let part = &parts["parts"][0];
    let headers: Vec<(&str, String)> = part["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_owned()))
        .collect();
    let put = app
        .call("PUT", part["url"].as_str().unwrap(), &headers, EICAR.to_vec())
        .await;
    let etag = put.header("etag").unwrap();
    let done = app
        .post_json(
            &key,
            &format!("/v1/uploads/multipart/{id}/complete"),
            json!({"parts": [{"part_number": 1, "etag": etag}]}),
        )
        .await;
    infected(&done, "multipart");
    rejected_once_more(&app, n, "multipart").await;
    n += 1;

    // TokenOps: upload_url, then the PUT.
    let u = app
        .post_json(&key, "/v1/files/upload_url", json!({"path": "in/eicar.txt"}))
        .await
        .json();
    let put = app
        .call(
            "PUT",
            u["upload_url"].as_str().unwrap(),
            &[("content-length", EICAR.len().to_string())],
            EICAR.to_vec(),
        )
        .await;
    if !common::scaled() {
        infected(&put, "tokenops");
    } else {
        // Straight to the bucket: the file is checked on first use.
        let visit = common::follow(&app, u["visit_url"].as_str().unwrap()).await;
        assert!(
            visit.status == StatusCode::UNPROCESSABLE_ENTITY || visit.status == StatusCode::GONE,
            "{}",
            visit.status
        );
    }
    rejected_once_more(&app, n, "tokenops").await;
    n += 1;

    // Cyberun: presign, then the PUT (on a bucket, checked when the key is first used).
    let p = app
        .post_json(
            &key,
            "/api/v1/r/files/presign",
            json!({"file_name": "eicar.txt", "file_size": EICAR.len(), "content_type": "text/plain"}),
        )
        .await
        .json();
    let headers: Vec<(&str, String)> = p["upload_headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_owned()))
        .collect();
    let put = app
        .call("PUT", p["upload_url"].as_str().unwrap(), &headers, EICAR.to_vec())
        .await;
    if !common::scaled() {
        infected(&put, "cyberun");
    } else {
        let path = format!(
            "/v1/files/lookup?path={}",
            common::urlencode(p["file_key"].as_str().unwrap())
        );
        let look = app.get(&key, &path).await;
        assert!(
            look.status == StatusCode::UNPROCESSABLE_ENTITY || look.status == StatusCode::GONE,
            "{}",
            look.status
        );
    }
    rejected_once_more(&app, n, "cyberun").await;
    n += 1;

    // Never listed, never claimable, and the only ready file is the clean one.
    let ready = records(&app, "demo", FileStatus::Ready).await;
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert_eq!(records(&app, "demo", FileStatus::Rejected).await.len(), n);
    assert_eq!(app.stored_objects().await, 1, "only the clean file's bytes are stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_clamd_down_uploads_wait_quarantined_and_are_released_once_it_is_back() {
    let Some(mut clamd) = Clamd::start(8 * MIB) else { return };
    let (app, counting) = scanning(&clamd).await;
    let key = app.key("demo", CredentialKind::Integration).await;
    clamd.stop();
    let mut ids = Vec::new();
    for i in 0..6 {
        let a = app
            .upload_raw(&key, &format!("f{i}.txt"), format!("file {i}").as_bytes())
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.json()["status"], "quarantined", "the scanner down is not clean");
        ids.push(a.json()["id"].as_str().unwrap().to_owned());
    }
    let a = app.upload_raw(&key, "bad.txt", EICAR).await;
    assert_eq!(a.json()["status"], "quarantined");
    let bad = a.json()["id"].as_str().unwrap().to_owned();
    // Juniortree answers its permanent link at once; the link serves nothing until the verdict.
    let (ct, body) = multipart(&[("created_by", "me")], "jt.txt", "text/plain", b"juniortree's file");
    let jt = Request::post("/api/v1/upload")
        .header("content-type", ct)
        .header("agent", "dify")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body))
        .unwrap();
    let jt = app.send(jt).await;
    assert_eq!(jt.status, StatusCode::OK, "{}", String::from_utf8_lossy(&jt.body));
    let jt_link = jt.json()["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        common::follow(&app, &jt_link).await.status,
        StatusCode::CONFLICT,
        "a quarantined file's link"
    );
    // Quarantined: not served, not linked, not listed, not a workflow input.
    for id in &ids {
        assert_eq!(
            app.get(&key, &format!("/v1/files/{id}/content")).await.status,
            StatusCode::CONFLICT
        );
        let link = app.post_json(&key, &format!("/v1/files/{id}/links"), json!({})).await;
        assert_eq!(link.status, StatusCode::CONFLICT);
    }
    assert!(
        app.get(&key, "/v1/files").await.json()["files"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let ready = tokio::time::timeout(Duration::from_secs(2), app.files.check_scanners())
        .await
        .unwrap();
    assert!(ready.is_err(), "the scanner is named as down");
    let scans_while_down = counting.scans.load(Ordering::SeqCst);

    // Back: two instances sweep at once after the retry time; each file is scanned once.
    clamd.start_again();
    let other = app.another_instance();
    other.verify_identity().await.unwrap();
    app.clock.advance(6_000);
    let (a, b) = tokio::join!(app.files.sweep_quarantine(), other.sweep_quarantine());
    // A file the other instance settled first counts for it alone.
    let released = a.unwrap() + b.unwrap();
    assert_eq!(released, 8, "every file got a verdict");
    assert_eq!(
        counting.scans.load(Ordering::SeqCst) - scans_while_down,
        8,
        "none was scanned twice"
    );
    assert_eq!(
        common::follow(&app, &jt_link).await.status,
        StatusCode::OK,
        "released, its link serves it"
    );
    for id in &ids {
        let f = app.get(&key, &format!("/v1/files/{id}")).await.json();
        assert_eq!(f["status"], "ready", "{f}");
    }
    assert_eq!(
        app.get(&key, &format!("/v1/files/{}", ids[0])).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&key, &format!("/v1/files/{bad}")).await.json()["status"],
        "rejected"
    );
    assert_eq!(
        app.get(&key, &format!("/v1/files/{bad}/content")).await.status,
        StatusCode::GONE
    );
    assert_eq!(
        app.get(&key, "/v1/files").await.json()["files"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

/// The authorization matrix for quarantined and rejected files: every route that reaches a file,
/// called by the owning project's keys of every kind, another project, another workspace, a
/// revoked key and no key. Owners see the record and are told why they cannot use it (409 while
/// quarantined, 410 once rejected); strangers get 404 as if it did not exist; without a valid key
/// 401. Neither is listed, linked, downloaded or taken as a workflow's input.
#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_matrix_covers_quarantined_and_rejected_files() {
    use filedock_core::{ParamType, ParameterSpec, Workflow, WorkspaceId};
    let Some(mut clamd) = Clamd::start(8 * MIB) else { return };
    let engine = Arc::new(ClamAv::new(
        ClamdAddress::Tcp(clamd.address.clone()),
        8 * MIB,
        Duration::from_secs(10),
    ));
    let app = TestApp::configured(move |c| {
        c.quarantine = QuarantineSettings {
            scanners: BTreeMap::from([(
                "clamav".to_owned(),
                ScannerSetup {
                    engine,
                    accept_too_large: false,
                },
            )]),
            wait_secs: 10,
            retry_secs: 5,
        };
        for p in c.policies.values_mut() {
            p.scan = Some("clamav".into());
        }
        c.workflows = vec![Workflow {
            id: "wf_alpha".into(),
            slug: None,
            project: "alpha".into(),
            parameters: vec![ParameterSpec {
                name: "doc".into(),
                kind: ParamType::File,
                required: true,
            }],
        }];
    })
    .await;
    let owner = app.key("alpha", CredentialKind::Integration).await;
    let rejected = app.upload_raw(&owner, "eicar.txt", EICAR).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = records(&app, "alpha", FileStatus::Rejected).await.pop().unwrap();
    clamd.stop();
    let q = app.upload_raw(&owner, "waiting.txt", b"waiting").await.json();
    assert_eq!(q["status"], "quarantined");
    let (qid, qkey) = (
        q["id"].as_str().unwrap().to_owned(),
        q["key"].as_str().unwrap().to_owned(),
    );
    let (rid, rkey) = (r.id.to_string(), r.key.to_string());

    let creds = app.files.credentials();
    let alpha = ProjectId::new("alpha").unwrap();
    let revoked = app.key("alpha", CredentialKind::Integration).await;
    let revoked_id = creds
        .list(Some(&alpha))
        .await
        .unwrap()
        .into_iter()
        .find(|c| revoked.contains(&c.id))
        .unwrap()
        .id;
    creds.revoke(&revoked_id).await.unwrap();
    let other_workspace = creds
        .create(
            alpha.clone(),
            Some(WorkspaceId::new("w2").unwrap()),
            CredentialKind::Integration,
            None,
        )
        .await
        .unwrap()
        .1;
    let callers: Vec<(&str, Option<String>, bool)> = vec![
        ("session", Some(app.key("alpha", CredentialKind::Session).await), true),
        ("integration", Some(owner.clone()), true),
        ("device", Some(app.key("alpha", CredentialKind::Device).await), true),
        ("admin", Some(app.key("alpha", CredentialKind::Admin).await), true),
        (
            "other project",
            Some(app.key("beta", CredentialKind::Integration).await),
            false,
        ),
        ("other workspace", Some(other_workspace), false),
        ("revoked", Some(revoked), false),
        ("no key", None, false),
    ];
    let mut failures = Vec::new();
    for (id, key, usable_as) in [(&qid, &qkey, StatusCode::CONFLICT), (&rid, &rkey, StatusCode::GONE)] {
        let routes: Vec<(&str, &str, String, Option<serde_json::Value>, StatusCode)> = vec![
            ("record", "GET", format!("/v1/files/{id}"), None, StatusCode::OK),
            ("content", "GET", format!("/v1/files/{id}/content"), None, usable_as),
            (
                "link",
                "POST",
                format!("/v1/files/{id}/links"),
                Some(json!({})),
                usable_as,
            ),
            (
                "lookup",
                "GET",
                format!("/v1/files/lookup?path={}", common::urlencode(key)),
                None,
                // A lookup hands back a usable file (it completes a direct upload): told why not.
                usable_as,
            ),
        ];
        for (what, method, path, body, owners) in &routes {
            for (who, k, owns) in &callers {
                let mut req = Request::builder().method(*method).uri(path);
                if let Some(k) = k {
                    req = req.header("authorization", format!("Bearer {k}"));
                }
                let body = body.as_ref().map(|b| b.to_string()).unwrap_or_default();
                let a = app
                    .send(
                        req.header("content-type", "application/json")
                            .body(Body::from(body))
                            .unwrap(),
                    )
                    .await;
                let expected = match (*owns, *who) {
                    (true, _) => *owners,
                    (false, "revoked" | "no key") => StatusCode::UNAUTHORIZED,
                    (false, _) => StatusCode::NOT_FOUND,
                };
                if a.status != expected {
                    failures.push(format!("{what} of {id} as {who}: {} (expected {expected})", a.status));
                }
            }
        }
        // Never a workflow's input, whoever asks.
        let run = app
            .post_json(
                &owner,
                "/api/v1/r/workflows/wf_alpha/run",
                json!({"parameters": {"doc": key}}),
            )
            .await;
        if run.status != StatusCode::BAD_REQUEST {
            failures.push(format!("a run with {id} as its input: {}", run.status));
        }
    }
    // Neither is listed.
    let listed = app.get(&owner, "/v1/files").await.json();
    if !listed["files"].as_array().unwrap().is_empty() {
        failures.push(format!("listed: {listed}"));
    }
    // The owner may delete a quarantined file; a stranger may not.
    let stranger = callers[4].1.clone().unwrap();
    if app.delete(&stranger, &format!("/v1/files/{qid}")).await.status != StatusCode::NOT_FOUND {
        failures.push("a stranger deleted a quarantined file".into());
    }
    if app.delete(&owner, &format!("/v1/files/{qid}")).await.status != StatusCode::NO_CONTENT {
        failures.push("the owner could not delete a quarantined file".into());
    }
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A project's own `scan` applies whatever the policy; a file over its scanner's limit follows
/// `too_large`: rejected (413, the record says why) or made ready unscanned.
#[tokio::test(flavor = "multi_thread")]
async fn a_projects_scanner_and_the_too_large_rule() {
    let Some(clamd) = Clamd::start(8 * MIB) else { return };
    let small = |accept| ScannerSetup {
        engine: Arc::new(ClamAv::new(
            ClamdAddress::Tcp(clamd.address.clone()),
            1024,
            Duration::from_secs(10),
        )),
        accept_too_large: accept,
    };
    let (strict, lenient) = (small(false), small(true));
    let app = TestApp::configured(move |c| {
        c.quarantine = QuarantineSettings {
            scanners: BTreeMap::from([("strict".to_owned(), strict), ("lenient".to_owned(), lenient)]),
            wait_secs: 10,
            retry_secs: 5,
        };
        for (project, scanner) in [("hard", "strict"), ("easy", "lenient")] {
            c.projects.insert(
                project.into(),
                filedock_core::ProjectSettings {
                    scan: Some(scanner.into()),
                    ..Default::default()
                },
            );
        }
    })
    .await;
    let big = vec![b'a'; 2048];
    let hard = app.key("hard", CredentialKind::Integration).await;
    let a = app.upload_raw(&hard, "big.txt", &big).await;
    assert_eq!(
        a.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let r = records(&app, "hard", FileStatus::Rejected).await;
    assert!(r[0].reason.as_deref().unwrap().starts_with("too_large"), "{r:?}");
    assert_eq!(
        app.upload_raw(&hard, "eicar.txt", EICAR).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let small_one = app.upload_raw(&hard, "small.txt", b"small").await;
    assert_eq!(small_one.json()["status"], "ready");
    let easy = app.key("easy", CredentialKind::Integration).await;
    let a = app.upload_raw(&easy, "big.txt", &big).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json()["status"], "ready", "accepted unscanned");
    // A project without a scanner, under policies without one: ready at once.
    let plain = app.key("plain", CredentialKind::Integration).await;
    let a = app.upload_raw(&plain, "eicar.txt", EICAR).await;
    assert_eq!(a.json()["status"], "ready");
}

/// A scanner of the test's own: infected when the body holds the EICAR string.
#[derive(Debug)]
struct FindsEicar;

#[async_trait]
impl Scanner for FindsEicar {
    fn max_bytes(&self) -> Option<u64> {
        None
    }
    async fn scan(&self, mut body: ByteStream, _size: u64) -> filedock_core::Result<Verdict> {
        use futures_util::StreamExt;
        let mut all = Vec::new();
        while let Some(chunk) = body.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(if all.windows(EICAR.len()).any(|w| w == EICAR) {
            Verdict::Infected("Eicar-Test-Signature".into())
        } else {
            Verdict::Clean
        })
    }
    async fn ping(&self) -> filedock_core::Result<()> {
        Ok(())
    }
}

/// An upload waits for its file's verdict whoever gives it. When the sweeper (or another
/// instance) took the file's scan lease first, the upload answered `quarantined` at once
/// instead of waiting for that scan's verdict: EICAR answered 201 (CI, on a busy machine, in
/// `cli/tests/quarantine.rs`). Here the lease is held by another holder before the upload lands,
/// and given up with a verdict only once the upload is waiting.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_waits_for_the_verdict_of_a_scan_another_holder_started() {
    let app = scanning_with("finds-eicar", Arc::new(FindsEicar), 30).await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let p = app
        .post_json(&key, "/v1/uploads", json!({"name": "eicar.txt", "size": EICAR.len()}))
        .await
        .json();
    let id = filedock_core::FileId::parse(p["file"]["id"].as_str().unwrap()).unwrap();
    let lease = format!("scan:{id}");
    let now = common::START;
    assert!(
        app.catalog
            .try_lease(&lease, "elsewhere", now, now + 60_000)
            .await
            .unwrap()
    );

    let upload = async {
        let put = app.put_presigned(&p, EICAR).await;
        let done = app
            .post_json(&key, &format!("/v1/uploads/{id}/complete"), json!({}))
            .await;
        (put, done)
    };
    let elsewhere = async {
        // Once the file has landed (and its upload is waiting), the other holder's scan ends:
        // its lease given up and the file scanned by the sweeper, which finds EICAR.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while app.catalog.file(&id).await.unwrap().unwrap().status != FileStatus::Quarantined {
            assert!(std::time::Instant::now() < deadline, "the file never landed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.catalog.release_lease(&lease, "elsewhere").await.unwrap();
        assert_eq!(app.files.sweep_quarantine().await.unwrap(), 1);
    };
    let ((put, done), ()) = tokio::join!(upload, elsewhere);
    assert!(
        put.status == StatusCode::UNPROCESSABLE_ENTITY || done.status == StatusCode::UNPROCESSABLE_ENTITY,
        "the upload answered before the verdict: PUT {} {}, complete {} {}",
        put.status,
        String::from_utf8_lossy(&put.body),
        done.status,
        String::from_utf8_lossy(&done.body)
    );
    assert_eq!(
        app.catalog.file(&id).await.unwrap().unwrap().status,
        FileStatus::Rejected
    );
}
