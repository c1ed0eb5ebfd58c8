//! Operations: `/healthz`, `/readyz` (and what makes it fail), `/metrics` with its counters
//! moving. Both flavours.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use filedock_core::CredentialKind;

/// The value of the first sample of `name` whose labels contain every `labels` pair.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .next()
        .unwrap_or(0.0)
}

async fn metrics(app: &TestApp) -> String {
    let ans = app.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(ans.status, StatusCode::OK);
    assert!(ans.header("content-type").unwrap().starts_with("text/plain"));
    String::from_utf8(ans.body).unwrap()
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::new().await;
    let health = app.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!((health.status, health.body.as_slice()), (StatusCode::OK, &b"ok"[..]));
    let ready = app.send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["status"], "ready");

    let key = app.key("ops", CredentialKind::Integration).await;
    let upload = [r#"route="/v1/files""#, r#"method="POST""#, r#"status="201""#];
    let before = metrics(&app).await;
    let (n0, bytes0) = (
        sample(&before, "filedock_http_requests_total", &upload),
        sample(&before, "filedock_http_request_bytes_total", &[r#"route="/v1/files""#]),
    );
    let timed0 = sample(
        &before,
        "filedock_upload_duration_seconds_count",
        &[r#"route="/v1/files""#],
    );
    for i in 0..3 {
        assert_eq!(
            app.upload_raw(&key, &format!("{i}.txt"), b"12345").await.status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        app.get(&key, "/v1/files/00000000000000000000000000000000").await.status,
        StatusCode::NOT_FOUND
    );
    let after = metrics(&app).await;
    // Tests in this binary share the recorder: at least this test's requests were counted.
    assert!(
        sample(&after, "filedock_http_requests_total", &upload) >= n0 + 3.0,
        "{after}"
    );
    assert!(sample(&after, "filedock_http_request_bytes_total", &[r#"route="/v1/files""#]) >= bytes0 + 15.0);
    assert!(
        sample(
            &after,
            "filedock_upload_duration_seconds_count",
            &[r#"route="/v1/files""#]
        ) >= timed0 + 3.0
    );
    assert!(
        sample(
            &after,
            "filedock_http_requests_total",
            &[r#"route="/v1/files/{id}""#, r#"status="404""#]
        ) >= 1.0,
        "labels carry the route template, not the id"
    );
    assert!(after.contains("filedock_uploads_in_progress"), "{after}");
    assert!(!after.contains(&key), "no secret in the metrics");
}

#[tokio::test]
async fn readiness_fails_when_storage_does_not_answer() {
    let app = TestApp::new().await;
    if app.local.is_none() {
        // The S3 flavour's server runs until the harness drops it; the local store is the one
        // this test can break.
        assert!(scaled());
        return;
    }
    // Replace the objects directory with a file: every key now fails with "not a directory".
    let objects = app.dir.path().join("objects");
    std::fs::remove_dir_all(&objects).unwrap();
    std::fs::write(&objects, b"not a directory").unwrap();
    let ready = app.send(Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["reason"], "storage backend 'local' does not answer");
}

/// Answers no handler made are JSON in the native envelope: an unknown route, a method a route
/// does not take, a JSON body over the extractor's limit, a tus request of another version.
#[tokio::test]
async fn errors_outside_handlers_are_json() {
    let app = TestApp::new().await;
    let key = app.key("demo", CredentialKind::Integration).await;
    let unknown = app.get(&key, "/v1/nothing/here").await;
    let wrong_method = app
        .send(
            Request::put("/v1/files")
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let huge = app
        .send(
            Request::post("/v1/uploads")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(format!("{{\"name\": \"{}\"}}", "a".repeat(3 << 20))))
                .unwrap(),
        )
        .await;
    let tus = app
        .send(
            Request::post("/tus/")
                .header("authorization", format!("Bearer {key}"))
                .header("tus-resumable", "0.2.2")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    for (a, status, code) in [
        (&unknown, StatusCode::NOT_FOUND, "not_found"),
        (&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        (&huge, StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        (&tus, StatusCode::PRECONDITION_FAILED, "precondition_failed"),
    ] {
        assert_eq!(a.status, status);
        assert_eq!(
            a.header("content-type").as_deref(),
            Some("application/json"),
            "{status}"
        );
        assert_eq!(a.json()["error"]["code"], code, "{status}");
    }
    assert!(wrong_method.header("allow").is_some(), "405 keeps Allow");
    assert_eq!(tus.header("tus-version").as_deref(), Some("1.0.0"));
}

/// An instance's own uploads in flight are never orphans to its own start-up scan, even before
/// its first heartbeat is written (found by the S3 crash test: a scan that ran before the
/// heartbeat deleted the object of an upload that was then answered 201, and read back 404).
#[tokio::test]
async fn the_scan_never_deletes_this_instances_upload_in_flight() {
    use filedock_core::doctor::Repair;
    use filedock_core::{FileName, NewFile, Principal};
    let app = TestApp::new().await;
    let key = app.key("p1", CredentialKind::Integration).await;
    let who: Principal = app.files.authenticate(&key).await.unwrap();
    // No heartbeat has been written: the instance is as it is right after a start.
    let body = futures_util::stream::once(async { Ok(bytes::Bytes::from_static(b"in flight")) });
    let staged = app
        .files
        .stage(&who, NewFile::named(FileName::new("f.txt").unwrap()), Box::pin(body))
        .await
        .unwrap();
    let report = app.files.doctor(Repair::Orphans, 0).await.unwrap();
    assert_eq!(report.in_flight, 1, "{report:?}");
    assert!(report.orphans.is_empty(), "{report:?}");
    assert_eq!(app.files.sweep_intents(0).await.unwrap(), 0);
    let rec = app.files.commit(staged).await.unwrap();
    let got = app.get(&key, &format!("/v1/files/{}/content", rec.id)).await;
    assert_eq!((got.status, got.body.as_slice()), (StatusCode::OK, &b"in flight"[..]));
}

/// Counts what `filedock_swept_total{kind}` is increased by, call by call.
#[derive(Default)]
struct SweepCounts(std::sync::Arc<std::sync::Mutex<Vec<(String, u64)>>>);

struct KindCounter {
    kind: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<(String, u64)>>>,
}

impl metrics::CounterFn for KindCounter {
    fn increment(&self, value: u64) {
        self.log.lock().unwrap().push((self.kind.clone(), value));
    }
    fn absolute(&self, _: u64) {}
}

impl metrics::Recorder for SweepCounts {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() != "filedock_swept_total" {
            return metrics::Counter::noop();
        }
        let kind = key.labels().find(|l| l.key() == "kind").map(|l| l.value().to_owned());
        metrics::Counter::from_arc(std::sync::Arc::new(KindCounter {
            kind: kind.unwrap_or_default(),
            log: self.0.clone(),
        }))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// A long sweep shows its progress while it runs: `filedock_swept_total{kind="files"}` grows
/// with every batch, not once at the end (1.78 million expired presigns once swept for hours
/// with the counter at 0). Every expired file's objects go with its row: a presigned PUT's
/// bytes (on S3 at the incoming key), a ready file's blob.
#[tokio::test]
async fn a_long_sweep_counts_every_batch_as_it_goes() {
    let app = TestApp::new().await;
    // The objects carry the S3 server's time: the manual clock starts there.
    app.clock.set(filedock_core::Clock::now(&filedock_core::SystemClock));
    let key = app.key("sweep", CredentialKind::Integration).await;
    let (p, put) = app.presign_and_put(&key, "a.pdf", b"%PDF-1.4\nswept\n%%EOF\n").await;
    assert_eq!(put, StatusCode::OK);
    assert_eq!(
        app.upload_raw(&key, "ready.txt", b"ready bytes").await.status,
        StatusCode::CREATED
    );
    // 1,300 more pending files, as presigns that never arrive leave them.
    let id = filedock_core::FileId::parse(p["file"]["id"].as_str().unwrap()).unwrap();
    let template = app.catalog.file(&id).await.unwrap().unwrap();
    for i in 0..1_300 {
        let mut f = template.clone();
        f.id = filedock_core::FileId::generate();
        f.key = filedock_core::StorageKey::new(format!("sweep/never/{i}")).unwrap();
        app.catalog.insert_file(&f).await.unwrap();
    }
    assert!(app.stored_objects().await >= 1);

    app.clock.advance(2 * 86_400_000);
    let counts = SweepCounts::default();
    let log = counts.0.clone();
    let swept = {
        let _recorder = metrics::set_default_local_recorder(&counts);
        app.files.sweep_files().await.unwrap()
    };
    assert_eq!(swept, 1_302);
    let files: Vec<u64> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == "files")
        .map(|(_, n)| *n)
        .collect();
    // Batches of 128 on a catalog of one writer (SQLite), of 512 elsewhere.
    let size = if app.catalog.one_writer() { 128 } else { 512 };
    let mut expected = vec![size; 1_302 / size as usize];
    expected.push(1_302 % size);
    assert_eq!(files, expected, "one count per batch");
    let live = app
        .catalog
        .expired_files(filedock_core::Clock::now(&*app.clock), 10)
        .await
        .unwrap();
    assert!(live.is_empty(), "{live:?}");
    assert_eq!(app.stored_objects().await, 0);
    let incoming = format!("{}incoming/", filedock_core::blob::INTERNAL_PREFIX);
    assert!(app.store.list(&incoming).await.unwrap().is_empty());
    assert_eq!(app.files.sweep_files().await.unwrap(), 0, "nothing left");
}
