//! Workflow runs, tasks and runners, retention and events, in-process on both flavours
//! (`TEST_FLAVOR=s3-postgres` for S3 + PostgreSQL), with the clock moved instead of sleeping.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use filedock_core::files::FileServiceConfig;
use filedock_core::{
    Clock, CredentialKind, DeliverySettings, DeliveryStatus, EventType, FileId, FileStatus, ParamType, ParameterSpec,
    ProjectId, ProjectSettings, RetentionOverride, TaskSettings, Webhook, Workflow,
};
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;

fn param(name: &str, kind: ParamType, required: bool) -> ParameterSpec {
    ParameterSpec {
        name: name.into(),
        kind,
        required,
    }
}

/// The workflow, plus one with every parameter type, and one of another project.
fn workflows(c: &mut FileServiceConfig) {
    c.workflows = vec![
        Workflow {
            id: "wf_img2img".into(),
            slug: Some("img2img".into()),
            project: "demo".into(),
            parameters: vec![
                param("input_image", ParamType::File, true),
                param("prompt", ParamType::String, false),
            ],
        },
        Workflow {
            id: "wf_all".into(),
            slug: None,
            project: "demo".into(),
            parameters: vec![
                param("doc", ParamType::File, false),
                param("text", ParamType::String, false),
                param("n", ParamType::Number, false),
                param("hd", ParamType::Boolean, false),
            ],
        },
        Workflow {
            id: "wf_other".into(),
            slug: Some("img2img".into()),
            project: "other".into(),
            parameters: vec![],
        },
    ];
    c.tasks = TaskSettings {
        lease_secs: 60,
        max_attempts: 2,
        max_claim_wait_secs: 5,
        input_url_ttl_secs: 900,
    };
}

/// The `upload_headers` of a presign answer, to send with its PUT.
fn signed_headers(presign: &Value) -> Vec<(&str, String)> {
    presign["upload_headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// Cyberun's presign and PUT; returns the `file_key`.
async fn presigned_input(app: &TestApp, key: &str, name: &str, bytes: &[u8], put: bool) -> String {
    let a = app
        .post_json(
            key,
            "/api/v1/r/files/presign",
            json!({"file_name": name, "file_size": bytes.len(), "content_type": "image/png"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", String::from_utf8_lossy(&a.body));
    let p = a.json();
    if put {
        let headers = signed_headers(&p);
        let put = app
            .call("PUT", p["upload_url"].as_str().unwrap(), &headers, bytes.to_vec())
            .await;
        assert_eq!(put.status, StatusCode::OK, "{}", String::from_utf8_lossy(&put.body));
    }
    p["file_key"].as_str().unwrap().to_owned()
}

fn message(a: &Answer) -> String {
    a.json()["error"]["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_run_checks_every_parameter_and_names_the_bad_one() {
    let app = TestApp::configured(workflows).await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let stranger = app.key("other", CredentialKind::Integration).await;
    let photo = presigned_input(&app, &sk, "photo.png", PNG, true).await;
    let unsent = presigned_input(&app, &sk, "later.png", PNG, false).await;
    let theirs = presigned_input(&app, &stranger, "theirs.png", PNG, true).await;
    let run = |body: Value| {
        let app = &app;
        let sk = sk.clone();
        async move { app.post_json(&sk, "/api/v1/r/workflows/wf_all/run", body).await }
    };

    for (body, names) in [
        (json!({"parameters": {"colour": "red"}}), "colour"),
        (json!({"parameters": {"text": 5}}), "text"),
        (json!({"parameters": {"n": "5"}}), "'n'"),
        (json!({"parameters": {"hd": "yes"}}), "hd"),
        (json!({"parameters": {"doc": 42}}), "doc"),
        (json!({"parameters": {"doc": "inputs/demo/0000/none.png"}}), "doc"),
        (json!({"parameters": {"doc": theirs}}), "doc"),
        (json!({"parameters": {"doc": unsent}}), "doc"),
        (json!({"parameters": ["doc"]}), "parameters"),
    ] {
        let a = run(body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&a).contains(names), "{body}: {}", message(&a));
    }
    let missing = app
        .post_json(
            &sk,
            "/api/v1/r/workflows/slug/img2img/run",
            json!({"parameters": {"prompt": "x"}}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(message(&missing).contains("input_image"), "{}", message(&missing));
    let null_required = app
        .post_json(
            &sk,
            "/api/v1/r/workflows/wf_img2img/run",
            json!({"parameters": {"input_image": null}}),
        )
        .await;
    assert_eq!(null_required.status, StatusCode::BAD_REQUEST);

    // Workflows are found in the key's project only.
    let body = json!({"parameters": {"input_image": photo}});
    for (key, path, want) in [
        (&sk, "/api/v1/r/workflows/wf_other/run", StatusCode::NOT_FOUND),
        (&sk, "/api/v1/r/workflows/nope/run", StatusCode::NOT_FOUND),
        (&sk, "/api/v1/r/workflows/slug/nope/run", StatusCode::NOT_FOUND),
        (&stranger, "/api/v1/r/workflows/wf_img2img/run", StatusCode::NOT_FOUND),
        (
            &"sk-0000000000000000-bogus".to_owned(),
            "/api/v1/r/workflows/wf_img2img/run",
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        assert_eq!(app.post_json(key, path, body.clone()).await.status, want, "{path}");
    }
    let other_slug = app
        .post_json(&stranger, "/api/v1/r/workflows/slug/img2img/run", json!({}))
        .await;
    assert_eq!(
        other_slug.status,
        StatusCode::OK,
        "the same slug in another project is its own workflow"
    );

    // Valid runs, by id and by slug, with every type and with a path reference.
    let by_slug = app
        .post_json(
            &sk,
            "/api/v1/r/workflows/slug/img2img/run",
            json!({"parameters": {"input_image": photo, "prompt": "enhance"}}),
        )
        .await;
    assert_eq!(
        by_slug.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&by_slug.body)
    );
    let task_id = by_slug.json()["task_id"].as_str().unwrap().to_owned();
    assert_eq!(task_id.len(), 32);
    let all = run(
        json!({"parameters": {"doc": format!("local://filedock.test/{photo}"), "text": "t", "n": 2.5, "hd": true}}),
    )
    .await;
    assert_eq!(all.status, StatusCode::OK, "{}", String::from_utf8_lossy(&all.body));
    let empty = run(json!({})).await;
    assert_eq!(empty.status, StatusCode::OK, "no parameter is required by wf_all");

    let t = app.get(&sk, &format!("/api/v1/r/tasks/{task_id}")).await;
    assert_eq!(t.status, StatusCode::OK);
    let t = t.json();
    assert_eq!(
        (t["status"].as_str(), t["workflow"].as_str(), t["attempts"].as_u64()),
        (Some("queued"), Some("wf_img2img"), Some(0))
    );
    assert_eq!(
        app.get(&stranger, &format!("/api/v1/r/tasks/{task_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&sk, "/api/v1/r/tasks/not-an-id").await.status,
        StatusCode::NOT_FOUND
    );

    // An input that expired before the run is refused too.
    app.clock.advance(DAY_MS + 1);
    let late = app
        .post_json(
            &sk,
            "/api/v1/r/workflows/wf_img2img/run",
            json!({"parameters": {"input_image": photo}}),
        )
        .await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    assert!(message(&late).contains("input_image"));
}

#[tokio::test]
async fn a_runner_claims_downloads_uploads_its_output_and_completes() {
    let app = TestApp::configured(workflows).await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let dk = app.key("demo", CredentialKind::Device).await;
    let dk2 = app.key("demo", CredentialKind::Device).await;
    let foreign_dk = app.key("other", CredentialKind::Device).await;
    let photo = presigned_input(&app, &sk, "photo.png", PNG, true).await;
    let run = app
        .post_json(
            &sk,
            "/api/v1/r/workflows/slug/img2img/run",
            json!({"parameters": {"input_image": photo, "prompt": "enhance"}}),
        )
        .await
        .json();
    let task_id = run["task_id"].as_str().unwrap().to_owned();

    // Only device keys claim, and only their project's tasks.
    let sk_claim = app.post_json(&sk, "/api/v1/r/tasks/claim", json!({})).await;
    assert_eq!(sk_claim.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.post_json(&foreign_dk, "/api/v1/r/tasks/claim", json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let claim = app
        .post_json(&dk, "/api/v1/r/tasks/claim", json!({"wait_secs": 1}))
        .await;
    assert_eq!(claim.status, StatusCode::OK, "{}", String::from_utf8_lossy(&claim.body));
    let c = claim.json();
    assert_eq!(c["task_id"], task_id.as_str());
    assert_eq!(
        (
            c["workflow"].as_str(),
            c["workflow_slug"].as_str(),
            c["attempt"].as_u64()
        ),
        (Some("wf_img2img"), Some("img2img"), Some(1))
    );
    assert_eq!(c["parameters"]["prompt"], "enhance");
    let input = &c["parameters"]["input_image"];
    assert_eq!(input["file_key"], photo.as_str());
    assert_eq!(
        (input["file_name"].as_str(), input["size"].as_u64()),
        (Some("photo.png"), Some(PNG.len() as u64))
    );
    let url = input["download_url"].as_str().unwrap();
    if scaled() {
        assert!(
            !url.starts_with(BASE),
            "on S3 the runner downloads straight from the bucket: {url}"
        );
    }
    let got = app.call("GET", url, &[], vec![]).await;
    assert_eq!((got.status, got.body.as_slice()), (StatusCode::OK, PNG));
    // Nothing else is queued: an empty body waits 0 s, a short wait times out with 204.
    assert_eq!(
        app.post_json(&dk2, "/api/v1/r/tasks/claim", json!({"wait_secs": 1}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    let t = app.get(&sk, &format!("/api/v1/r/tasks/{task_id}")).await.json();
    assert_eq!(
        (t["status"].as_str(), t["attempts"].as_u64()),
        (Some("running"), Some(1))
    );
    let pending = app.get(&sk, &format!("/api/v1/r/tasks/{task_id}/result")).await.json();
    assert_eq!(
        pending,
        json!({"status": "running", "outputs": [], "download_url": null, "error": null})
    );

    // Another runner may not presign, complete or fail it.
    let out_req = json!({"file_name": "enhanced.png", "file_size": PNG.len(), "content_type": "image/png"});
    for (path, body) in [
        ("outputs/presign", json!({"file_name": "a.png", "file_size": 1})),
        ("heartbeat", json!({})),
        ("complete", json!({"outputs": []})),
        ("fail", json!({"reason": "x"})),
    ] {
        let a = app
            .post_json(&dk2, &format!("/api/v1/r/tasks/{task_id}/{path}"), body)
            .await;
        assert_eq!(
            a.status,
            StatusCode::CONFLICT,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    let o = app
        .post_json(&dk, &format!("/api/v1/r/tasks/{task_id}/outputs/presign"), out_req)
        .await;
    assert_eq!(o.status, StatusCode::OK, "{}", String::from_utf8_lossy(&o.body));
    let o = o.json();
    let out_key = o["file_key"].as_str().unwrap().to_owned();
    assert!(
        out_key.starts_with(&format!("outputs/demo/{task_id}/")) && out_key.ends_with("/enhanced.png"),
        "{out_key}"
    );
    // Completing before the bytes arrive, or with an input, is refused; the task stays running.
    let early = app
        .post_json(
            &dk,
            &format!("/api/v1/r/tasks/{task_id}/complete"),
            json!({"outputs": [out_key]}),
        )
        .await;
    assert_eq!(
        early.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&early.body)
    );
    let with_input = app
        .post_json(
            &dk,
            &format!("/api/v1/r/tasks/{task_id}/complete"),
            json!({"outputs": [photo]}),
        )
        .await;
    assert_eq!(with_input.status, StatusCode::BAD_REQUEST);
    assert!(message(&with_input).contains("not an output of this task"));
    let headers = signed_headers(&o);
    let put = app
        .call("PUT", o["upload_url"].as_str().unwrap(), &headers, PNG.to_vec())
        .await;
    assert_eq!(put.status, StatusCode::OK);

    let hb = app
        .post_json(&dk, &format!("/api/v1/r/tasks/{task_id}/heartbeat"), json!({}))
        .await;
    assert_eq!(hb.status, StatusCode::OK);
    let done = app
        .post_json(
            &dk,
            &format!("/api/v1/r/tasks/{task_id}/complete"),
            json!({"outputs": [out_key]}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(done.json()["status"], "succeeded");
    assert_eq!(done.json()["outputs"], json!([out_key]));
    let again = app
        .post_json(
            &dk,
            &format!("/api/v1/r/tasks/{task_id}/complete"),
            json!({"outputs": [out_key]}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "completing again with the same outputs is idempotent"
    );
    let late_fail = app
        .post_json(
            &dk,
            &format!("/api/v1/r/tasks/{task_id}/fail"),
            json!({"reason": "late"}),
        )
        .await;
    assert_eq!(late_fail.status, StatusCode::CONFLICT);

    // The client's result: the output with a URL valid until the output expires (7 days).
    let r = app.get(&sk, &format!("/api/v1/r/tasks/{task_id}/result")).await.json();
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["outputs"][0]["file_key"], out_key.as_str());
    assert_eq!(
        (r["outputs"][0]["file_name"].as_str(), r["outputs"][0]["size"].as_u64()),
        (Some("enhanced.png"), Some(PNG.len() as u64))
    );
    assert_eq!(r["download_url"], r["outputs"][0]["download_url"]);
    app.clock.advance(6 * DAY_MS);
    let got = follow(&app, r["download_url"].as_str().unwrap()).await;
    assert_eq!(
        (got.status, got.body.as_slice()),
        (StatusCode::OK, PNG),
        "still valid after 6 days"
    );
    let rec = app
        .catalog
        .file_by_key("local", &filedock_core::StorageKey::new(out_key.clone()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.class, filedock_core::Class::Output);
    assert_eq!(rec.expires_at, Some(rec.created_at + 7 * DAY_MS));
    app.clock.advance(DAY_MS);
    let r = app.get(&sk, &format!("/api/v1/r/tasks/{task_id}/result")).await.json();
    assert_eq!(
        (r["outputs"].as_array().unwrap().len(), &r["download_url"]),
        (0, &Value::Null),
        "expired outputs are left out"
    );
}

#[tokio::test]
async fn a_runner_fails_a_task_with_a_reason() {
    let app = TestApp::configured(workflows).await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let dk = app.key("demo", CredentialKind::Device).await;
    let task_id = app
        .post_json(
            &sk,
            "/api/v1/r/workflows/wf_all/run",
            json!({"parameters": {"text": "x"}}),
        )
        .await
        .json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = app.post_json(&dk, "/api/v1/r/tasks/claim", json!({})).await.json();
    assert_eq!(c["parameters"], json!({"text": "x"}));
    let path = format!("/api/v1/r/tasks/{task_id}/fail");
    assert_eq!(
        app.post_json(&dk, &path, json!({"reason": "  "})).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.post_json(&dk, &path, json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
    let f = app.post_json(&dk, &path, json!({"reason": "out of memory"})).await;
    assert_eq!(f.status, StatusCode::OK);
    let r = app.get(&sk, &format!("/api/v1/r/tasks/{task_id}/result")).await.json();
    assert_eq!(
        r,
        json!({"status": "failed", "outputs": [], "download_url": null, "error": "out of memory"})
    );
}

#[tokio::test]
async fn a_silent_runner_loses_its_task_and_it_fails_after_the_last_attempt() {
    let app = TestApp::configured(workflows).await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let (r1, r2) = (
        app.key("demo", CredentialKind::Device).await,
        app.key("demo", CredentialKind::Device).await,
    );
    let task_id = app
        .post_json(&sk, "/api/v1/r/workflows/wf_all/run", json!({}))
        .await
        .json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.post_json(&r1, "/api/v1/r/tasks/claim", json!({})).await.json()["attempt"],
        1
    );
    // A heartbeat keeps it; silence past the 60 s lease loses it.
    app.clock.advance(50_000);
    assert_eq!(
        app.post_json(&r1, &format!("/api/v1/r/tasks/{task_id}/heartbeat"), json!({}))
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(50_000);
    assert_eq!(
        app.post_json(&r2, "/api/v1/r/tasks/claim", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    app.clock.advance(11_000);
    let c = app.post_json(&r2, "/api/v1/r/tasks/claim", json!({})).await;
    assert_eq!(c.status, StatusCode::OK, "queued again once the lease ended");
    assert_eq!(
        (c.json()["task_id"].as_str(), c.json()["attempt"].as_u64()),
        (Some(task_id.as_str()), Some(2))
    );
    let stale = app
        .post_json(
            &r1,
            &format!("/api/v1/r/tasks/{task_id}/complete"),
            json!({"outputs": []}),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "the first runner lost it");
    // The second runner goes silent too: that was the last attempt.
    app.clock.advance(61_000);
    assert_eq!(app.files.sweep_tasks().await.unwrap(), 1);
    let t = app.get(&sk, &format!("/api/v1/r/tasks/{task_id}")).await.json();
    assert_eq!(t["status"], "failed");
    assert!(t["error"].as_str().unwrap().contains("silent"), "{t}");
    assert_eq!(
        app.post_json(&r1, "/api/v1/r/tasks/claim", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_waiting_claim_gets_a_task_queued_while_it_waits() {
    let app = TestApp::configured(workflows).await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let dk = app.key("demo", CredentialKind::Device).await;
    let runner = app.files.authenticate(&dk).await.unwrap();
    let files = app.files.clone();
    let waiting = tokio::spawn(async move { files.claim_task(&runner, Duration::from_secs(5)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let id = app
        .post_json(&sk, "/api/v1/r/workflows/wf_all/run", json!({}))
        .await
        .json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let claimed = waiting
        .await
        .unwrap()
        .unwrap()
        .expect("the waiting claim gets the task");
    assert_eq!(claimed.task.id.as_str(), id);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "woken by the run, not by the end of the wait"
    );
}

#[tokio::test]
async fn a_device_key_revoked_while_its_claim_waits_gets_no_task() {
    let app = TestApp::configured(workflows).await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let dk = app.key("demo", CredentialKind::Device).await;
    let runner = app.files.authenticate(&dk).await.unwrap();
    let files = app.files.clone();
    let who = runner.clone();
    let waiting = tokio::spawn(async move { files.claim_task(&who, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.files.credentials().revoke(&runner.credential_id).await.unwrap();
    let id = app
        .post_json(&sk, "/api/v1/r/workflows/wf_all/run", json!({}))
        .await
        .json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let claimed = waiting.await.unwrap();
    assert!(
        matches!(claimed, Err(filedock_core::Error::Unauthenticated(_))),
        "a revoked key gets no task: {:?}",
        claimed.map(|c| c.map(|t| t.task.id))
    );
    let task = app.get(&sk, &format!("/api/v1/r/tasks/{id}")).await.json();
    assert_eq!(task["status"], "queued", "the task waits for a runner that may have it");
}

#[tokio::test]
async fn two_instances_claiming_at_once_never_hand_out_one_task_twice() {
    let app = TestApp::configured(workflows).await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let mut ids = BTreeSet::new();
    for i in 0..40 {
        let a = app
            .post_json(&sk, "/api/v1/r/workflows/wf_all/run", json!({"parameters": {"n": i}}))
            .await;
        ids.insert(a.json()["task_id"].as_str().unwrap().to_owned());
    }
    let instances = [app.files.clone(), app.another_instance()];
    let mut claimers = Vec::new();
    for i in 0..8 {
        let files = instances[i % 2].clone();
        let who = files
            .authenticate(&app.key("demo", CredentialKind::Device).await)
            .await
            .unwrap();
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(c) = files.claim_task(&who, Duration::ZERO).await.unwrap() {
                got.push(c.task.id.to_string());
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let unique: BTreeSet<String> = claimed.iter().cloned().collect();
    assert_eq!(claimed.len(), 40, "every task handed out once: {claimed:?}");
    assert_eq!(unique, ids);
}

#[tokio::test]
async fn expired_files_are_swept_blob_first_and_their_links_stop_working() {
    let app = TestApp::configured(|c| {
        c.projects.insert(
            "brief".into(),
            ProjectSettings {
                retention: RetentionOverride {
                    input_secs: Some(60),
                    output_secs: None,
                    asset_secs: Some(0),
                },
                webhooks: vec![],
                limits: Default::default(),
                scan: None,
            },
        );
    })
    .await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let up = app.upload_raw(&sk, "in.txt", b"input bytes").await.json();
    let id = FileId::parse(up["id"].as_str().unwrap()).unwrap();
    let kept = app
        .send(
            axum::http::Request::post("/v1/files?name=kept.txt&class=asset")
                .header("authorization", format!("Bearer {sk}"))
                .body(axum::body::Body::from("asset bytes"))
                .unwrap(),
        )
        .await
        .json();
    assert_eq!(kept["expires_at"], Value::Null);
    let link = app
        .post_json(&sk, &format!("/v1/files/{id}/links"), json!({}))
        .await
        .json();
    let presigned = link["url"].as_str().unwrap().to_owned();
    let rec = app.catalog.file(&id).await.unwrap().unwrap();
    let stable = app.files.stable_link(&rec, None).unwrap();
    assert_eq!(follow(&app, &stable).await.status, StatusCode::OK);
    assert_eq!(app.call("GET", &presigned, &[], vec![]).await.status, StatusCode::OK);

    // Per-project retention: 60 s for inputs, assets kept.
    let brief = app.key("brief", CredentialKind::Integration).await;
    let b = app.upload_raw(&brief, "b.txt", b"brief").await.json();
    assert_eq!(
        b["expires_at"].as_i64().unwrap() - b["created_at"].as_i64().unwrap(),
        60
    );

    // A day later, before any sweep: gone on every route.
    app.clock.advance(DAY_MS + 1_000);
    assert_eq!(
        app.get(&sk, &format!("/v1/files/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&sk, &format!("/v1/files/{id}/content")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post_json(&sk, &format!("/v1/files/{id}/links"), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.call("GET", &stable, &[], vec![]).await.status, StatusCode::GONE);
    if !scaled() {
        // filedock's own signed URL was capped at the file's expiry. (S3 checks presigned URLs
        // against its own clock, which the test cannot move; they stop after the sweep.)
        let early = app.call("GET", &presigned, &[], vec![]).await.status;
        assert_eq!(early, StatusCode::FORBIDDEN);
    }
    assert!(app.store.head(&rec.key).await.is_ok(), "the blob waits for the sweep");

    // Another instance holds the sweep: this one leaves the files alone.
    let now = app.clock.now();
    assert!(
        app.catalog
            .try_lease("sweep:files", "someone-else", now, now + 120_000)
            .await
            .unwrap()
    );
    assert_eq!(app.files.sweep_files().await.unwrap(), 0);
    assert!(app.store.head(&rec.key).await.is_ok());
    app.clock.advance(121_000);

    // An interrupted sweep (blob deleted, record not) is finished by the next one.
    let brief_rec = app
        .catalog
        .file(&FileId::parse(b["id"].as_str().unwrap()).unwrap())
        .await
        .unwrap()
        .unwrap();
    app.store.delete(&brief_rec.key).await.unwrap();
    assert_eq!(app.files.sweep_files().await.unwrap(), 2, "the input and the brief one");
    for r in [&rec, &brief_rec] {
        assert!(
            matches!(app.store.head(&r.key).await, Err(filedock_core::Error::NotFound(_))),
            "blob gone"
        );
        let after = app.catalog.file(&r.id).await.unwrap().unwrap();
        assert_eq!(after.status, FileStatus::Deleted, "record is a tombstone");
    }
    assert_eq!(app.files.sweep_files().await.unwrap(), 0, "a re-run finds nothing");
    assert_eq!(app.call("GET", &stable, &[], vec![]).await.status, StatusCode::GONE);
    let after = app.call("GET", &presigned, &[], vec![]).await.status;
    assert!(
        matches!(after, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{after}"
    );
    let asset = app
        .get(&sk, &format!("/v1/files/{}/content", kept["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (asset.status, asset.body.as_slice()),
        (StatusCode::OK, b"asset bytes".as_slice()),
        "assets stay"
    );
}

fn hook(events: Vec<EventType>) -> Webhook {
    Webhook {
        name: Some("receiver".into()),
        url: "http://127.0.0.1:9/hook".into(),
        secret: "whsec-0123456789abcdef".into(),
        events,
    }
}

#[tokio::test]
async fn events_are_recorded_per_webhook_signed_and_retried_with_backoff() {
    let app = TestApp::configured(|c| {
        workflows(c);
        c.projects.insert(
            "demo".into(),
            ProjectSettings {
                retention: RetentionOverride::default(),
                webhooks: vec![hook(EventType::ALL.to_vec())],
                limits: Default::default(),
                scan: None,
            },
        );
        c.projects.insert(
            "quiet".into(),
            ProjectSettings {
                retention: RetentionOverride::default(),
                webhooks: vec![hook(vec![EventType::TaskFailed])],
                limits: Default::default(),
                scan: None,
            },
        );
        c.deliveries = DeliverySettings {
            retry_base_secs: 10,
            max_attempts: 3,
            timeout_secs: 5,
        };
    })
    .await;
    let sk = app.key("demo", CredentialKind::Integration).await;
    let dk = app.key("demo", CredentialKind::Device).await;
    let quiet = app.key("quiet", CredentialKind::Integration).await;
    let up = app.upload_raw(&sk, "a.txt", b"hello").await.json();
    assert_eq!(
        app.upload_raw(&quiet, "q.txt", b"quiet").await.status,
        StatusCode::CREATED
    );
    let del = app
        .send(
            axum::http::Request::delete(format!("/v1/files/{}", up["id"].as_str().unwrap()))
                .header("authorization", format!("Bearer {sk}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let photo = presigned_input(&app, &sk, "p.png", PNG, true).await;
    let task = app
        .post_json(
            &sk,
            "/api/v1/r/workflows/wf_img2img/run",
            json!({"parameters": {"input_image": photo}}),
        )
        .await
        .json();
    app.post_json(&dk, "/api/v1/r/tasks/claim", json!({})).await;
    let path = format!("/api/v1/r/tasks/{}/complete", task["task_id"].as_str().unwrap());
    assert_eq!(
        app.post_json(&dk, &path, json!({"outputs": []})).await.status,
        StatusCode::OK
    );

    let demo = ProjectId::new("demo").unwrap();
    let recorded = app.catalog.deliveries(&demo, 100).await.unwrap();
    let kinds: Vec<&str> = recorded.iter().rev().map(|d| d.event.as_str()).collect();
    assert_eq!(
        kinds,
        ["file.ready", "file.deleted", "file.ready", "task.succeeded"],
        "the presigned input is ready once it is used"
    );
    assert!(
        app.catalog
            .deliveries(&ProjectId::new("quiet").unwrap(), 10)
            .await
            .unwrap()
            .is_empty(),
        "not subscribed"
    );
    let payload: Value = serde_json::from_str(&recorded[0].payload).unwrap();
    assert_eq!(payload["type"], "task.succeeded");
    assert_eq!(payload["data"]["task"]["id"], task["task_id"]);
    assert_eq!(payload["data"]["task"]["status"], "succeeded");
    let deleted: Value = serde_json::from_str(&recorded[2].payload).unwrap();
    assert_eq!(deleted["data"]["file"]["id"], up["id"]);

    // Taken once, signed over "{timestamp}.{body}".
    let out = app.files.take_deliveries(10).await.unwrap();
    assert_eq!(out.len(), 4);
    assert!(
        app.another_instance().take_deliveries(10).await.unwrap().is_empty(),
        "leased to the first instance"
    );
    let first = out.iter().find(|o| o.delivery.event == "file.ready").unwrap();
    let h = |name: &str| {
        first
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(h("Filedock-Event-Id"), first.delivery.event_id);
    let ts: i64 = h("Filedock-Timestamp").parse().unwrap();
    assert_eq!(ts, app.clock.now() / 1000);
    assert_eq!(
        h("Filedock-Signature"),
        filedock_core::events::signature(b"whsec-0123456789abcdef", ts, &first.body)
    );
    assert!(h("Filedock-Signature").starts_with("sha256="));

    // A 500, then no answer, then the last attempt fails; others are delivered.
    for o in &out {
        let outcome = if o.delivery.id == first.delivery.id {
            Ok(500)
        } else {
            Ok(204)
        };
        app.files.settle_delivery(&o.delivery, outcome).await.unwrap();
    }
    assert!(
        app.files.take_deliveries(10).await.unwrap().is_empty(),
        "the retry waits 10 s"
    );
    app.clock.advance(10_000);
    let retry = app.files.take_deliveries(10).await.unwrap();
    assert_eq!(retry.len(), 1);
    app.files
        .settle_delivery(&retry[0].delivery, Err("connection refused".into()))
        .await
        .unwrap();
    app.clock.advance(19_999);
    assert!(app.files.take_deliveries(10).await.unwrap().is_empty(), "then 20 s");
    app.clock.advance(1);
    let last = app.files.take_deliveries(10).await.unwrap();
    app.files.settle_delivery(&last[0].delivery, Ok(503)).await.unwrap();
    let all = app.catalog.deliveries(&demo, 100).await.unwrap();
    let failed = all.iter().find(|d| d.id == first.delivery.id).unwrap();
    assert_eq!((failed.status, failed.attempts), (DeliveryStatus::Failed, 3));
    assert!(failed.last_error.as_deref().unwrap().contains("503"));
    assert_eq!(all.iter().filter(|d| d.status == DeliveryStatus::Delivered).count(), 3);
    app.clock.advance(DAY_MS);
    assert!(app.files.take_deliveries(10).await.unwrap().is_empty(), "given up");

    // A sweep of an expired file is an event too.
    let before = all.len();
    app.upload_raw(&sk, "old.txt", b"old").await;
    app.clock.advance(DAY_MS + 1);
    assert_eq!(
        app.files.sweep_files().await.unwrap(),
        3,
        "old.txt, the presigned input, and quiet's file"
    );
    let all = app.catalog.deliveries(&demo, 100).await.unwrap();
    assert_eq!(all.len(), before + 3);
    assert_eq!(all.iter().take(2).filter(|d| d.event == "file.deleted").count(), 2);
}
