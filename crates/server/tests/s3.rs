//! The router on the S3 backend: a presigned upload's bytes go straight to the bucket and never
//! through filedock's front door (every request body filedock receives is counted); completion
//! reads them back from the bucket once, for the SHA-256.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use filedock_catalog::SqliteCatalog;
use filedock_core::files::{FileServiceConfig, Retention};
use filedock_core::{Catalog, Clock, CredentialKind, FileService, ProjectId, SystemClock, UrlSigner};
use filedock_server::{AppState, router};
use filedock_storage::{BackendConfig, OpenContext, StoreConfig};
use filedock_testkit::S3Server;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread")]
async fn presigned_bytes_never_pass_through_filedock() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let signer = Arc::new(UrlSigner::new(vec![1u8; 32]).unwrap());
    let ctx = OpenContext {
        data_dir: dir.path().to_owned(),
        public_url: "http://filedock.test".into(),
        signer: signer.clone(),
    };
    let cfg = BackendConfig {
        store: StoreConfig::S3(common::s3_config(&s3)),
        ..BackendConfig::local()
    };
    let backend = filedock_storage::open("s3", &cfg, &ctx).await.unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(SqliteCatalog::in_memory().await.unwrap());
    let config = FileServiceConfig {
        default_backend: "s3".into(),
        policies: filedock_server::dialects::default_policies(),
        upload_ttl_secs: 900,
        unfinished_upload_ttl_secs: 86_400,
        link_ttl_secs: 3600,
        max_link_ttl_secs: 7 * 86_400,
        retention: Retention::default(),
        public_url: "http://filedock.test".into(),
        projects: Default::default(),
        workflows: Vec::new(),
        tasks: Default::default(),
        deliveries: Default::default(),
        prune: Default::default(),
        limits: Default::default(),
        quarantine: Default::default(),
    };
    let files = Arc::new(
        FileService::new(
            catalog,
            vec![backend],
            signer,
            Arc::new(SystemClock) as Arc<dyn Clock>,
            config,
        )
        .unwrap(),
    );
    files.verify_identity().await.unwrap();
    let key = files
        .credentials()
        .create(ProjectId::new("demo").unwrap(), None, CredentialKind::Session, None)
        .await
        .unwrap()
        .1;

    // Count every request body byte filedock receives.
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = router(AppState::new(files, Default::default(), Default::default()).expect("state")).layer(
        axum::middleware::map_request(move |req: Request<Body>| {
            let counter = counter.clone();
            async move {
                let (parts, body) = req.into_parts();
                let counted = body.into_data_stream().inspect(move |chunk| {
                    if let Ok(b) = chunk {
                        counter.fetch_add(b.len() as u64, Ordering::SeqCst);
                    }
                });
                Request::from_parts(parts, Body::from_stream(counted))
            }
        }),
    );
    let call = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            )
        }
    };

    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    png.resize(2 << 20, 7);
    let presign = Request::post("/api/v1/r/files/presign")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({"file_name": "photo.png", "file_size": png.len(), "content_type": "image/png"})
                .to_string(),
        ))
        .unwrap();
    let (status, p) = call(presign).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let url = p["upload_url"].as_str().unwrap();
    assert!(url.starts_with(&s3.endpoint), "{url}");
    let mut put = reqwest::Client::new().put(url).body(png.clone());
    for (h, v) in p["upload_headers"].as_object().unwrap() {
        put = put.header(h.as_str(), v.as_str().unwrap());
    }
    assert_eq!(put.send().await.unwrap().status(), 200);

    let file_key = p["file_key"].as_str().unwrap();
    let lookup = Request::get(format!("/v1/files/lookup?path={}", file_key.replace('/', "%2F")))
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let (status, f) = call(lookup).await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!(
        (f["status"].as_str(), f["size"].as_u64(), f["detected_type"].as_str()),
        (Some("ready"), Some(2 << 20), Some("image/png"))
    );
    // Never through filedock's front door; read back from the bucket once, at completion.
    use sha2::Digest as _;
    assert_eq!(
        f["sha256"].as_str(),
        Some(hex::encode(sha2::Sha256::digest(&png)).as_str()),
        "every ready file has its SHA-256"
    );
    let got = received.load(Ordering::SeqCst);
    assert!(
        got < 1024,
        "filedock received {got} body bytes for a {} byte upload",
        png.len()
    );
}
