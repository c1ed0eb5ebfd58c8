//! The test harness: a filedock router on a temp dir (local store + SQLite) with a manual clock,
//! driven in-process, plus helpers to make requests and read answers.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use filedock_catalog::PgCatalog;
use filedock_catalog::SqliteCatalog;
use filedock_core::BlobStore;
use filedock_core::catalog::FileQuery;
use filedock_core::files::{FileServiceConfig, Retention};
use filedock_core::link::SelfServed;
use filedock_core::model::FileStatus;
use filedock_core::{
    Catalog, Clock, CredentialKind, FileService, ManualClock, ProjectId, UploadPolicy, UrlSigner, WorkspaceId,
};
use filedock_server::config::HttpConfig;
use filedock_server::dialects::DialectsConfig;
use filedock_server::{AppState, router};
use filedock_storage::{LocalStore, S3Config, S3Store, Secret};
use filedock_testkit::{S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub const BASE: &str = "http://filedock.test";
pub const START: i64 = 1_767_225_600_000; // 2026-01-01

pub struct TestApp {
    pub router: Router,
    pub clock: Arc<ManualClock>,
    pub catalog: Arc<dyn Catalog>,
    pub files: Arc<FileService>,
    pub store: Arc<dyn BlobStore>,
    /// The local store, in the embedded flavour.
    pub local: Option<Arc<LocalStore>>,
    /// What the service was built from, to build a second instance on the same engines.
    parts: (filedock_core::Backend, Arc<UrlSigner>, FileServiceConfig),
    _s3: Option<S3Server>,
    pub dir: tempfile::TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_policies(BTreeMap::new()).await
    }

    /// An app with every dialect's default policy, `native` limited to 1 MiB, and the given
    /// policies over them.
    pub async fn with_policies(overrides: BTreeMap<String, UploadPolicy>) -> TestApp {
        Self::with_config(overrides, DialectsConfig::default()).await
    }

    /// [`TestApp::with_policies`] with dialect settings.
    pub async fn with_config(overrides: BTreeMap<String, UploadPolicy>, dialects: DialectsConfig) -> TestApp {
        Self::build(overrides, dialects, |_| {}).await
    }

    /// The default app with the HTTP front's settings (CORS, links) changed.
    pub async fn with_http(http: HttpConfig) -> TestApp {
        let mut app = Self::new().await;
        app.router = router(AppState::new(app.files.clone(), Default::default(), http).expect("state"));
        app
    }

    /// An app whose `native` policy takes `native_max` bytes, fetching URLs with `fetch`.
    pub async fn fetching(native_max: u64, fetch: filedock_server::fetch::FetchConfig) -> TestApp {
        let policies = BTreeMap::from([(
            filedock_server::config::policy::NATIVE.to_owned(),
            UploadPolicy::max(native_max),
        )]);
        let mut app = Self::with_policies(policies).await;
        let http = HttpConfig {
            fetch,
            ..Default::default()
        };
        app.router = router(AppState::new(app.files.clone(), Default::default(), http).expect("state"));
        app
    }

    /// The default app with the service's settings changed (workflows, projects, tasks).
    pub async fn configured(customize: impl FnOnce(&mut FileServiceConfig)) -> TestApp {
        Self::build(BTreeMap::new(), DialectsConfig::default(), customize).await
    }

    async fn build(
        overrides: BTreeMap<String, UploadPolicy>,
        dialects: DialectsConfig,
        customize: impl FnOnce(&mut FileServiceConfig),
    ) -> TestApp {
        let mut policies = filedock_server::dialects::default_policies();
        policies.insert("native".into(), UploadPolicy::max(1024 * 1024));
        policies.extend(overrides);

        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let signer = Arc::new(UrlSigner::new(vec![42u8; 32]).unwrap());
        let signing = SelfServed {
            base_url: BASE.into(),
            backend: "local".into(),
            signer: signer.clone(),
        };
        // The flavour decides the engines; the backend is named "local" in both, so the tests'
        // expectations (names, `local://filedock.test/…` paths) hold for both.
        let (store, local, s3, catalog): (Arc<dyn BlobStore>, _, _, Arc<dyn Catalog>) = if scaled() {
            let s3 = S3Server::start();
            let store = Arc::new(S3Store::open(&s3_config(&s3)).unwrap());
            let url = filedock_testkit::postgres_database()
                .await
                .expect("TEST_FLAVOR=s3-postgres needs TEST_PG_URL");
            (store, None, Some(s3), Arc::new(PgCatalog::open(&url, 4).await.unwrap()))
        } else {
            let local = Arc::new(LocalStore::open(dir.path(), Some(signing)).await.unwrap());
            let catalog = Arc::new(SqliteCatalog::open(&dir.path().join("c.db")).await.unwrap());
            (local.clone(), Some(local), None, catalog)
        };
        let backend = filedock_core::Backend {
            name: "local".into(),
            store: store.clone(),
            scheme: "local".into(),
            host: "filedock.test".into(),
            regions: vec![],
            max_presign_ttl_secs: 7 * 86_400,
        };
        let mut config = FileServiceConfig {
            default_backend: "local".into(),
            policies,
            upload_ttl_secs: 900,
            unfinished_upload_ttl_secs: 86_400,
            link_ttl_secs: 3600,
            max_link_ttl_secs: 7 * 86_400,
            retention: Retention::default(),
            public_url: BASE.into(),
            projects: Default::default(),
            workflows: Vec::new(),
            tasks: Default::default(),
            deliveries: Default::default(),
            prune: Default::default(),
            limits: Default::default(),
            quarantine: Default::default(),
        };
        customize(&mut config);
        let parts = (backend.clone(), signer.clone(), config.clone());
        let files = Arc::new(
            FileService::new(
                catalog.clone(),
                vec![backend],
                signer,
                clock.clone() as Arc<dyn Clock>,
                config,
            )
            .unwrap(),
        );
        files.verify_identity().await.unwrap();
        TestApp {
            router: router(AppState::new(files.clone(), dialects, Default::default()).expect("state")),
            clock,
            catalog,
            files,
            store,
            local,
            parts,
            _s3: s3,
            dir,
        }
    }

    /// Another instance on the same catalog, store and clock (as a second process would be).
    pub fn another_instance(&self) -> Arc<FileService> {
        let (backend, signer, config) = self.parts.clone();
        Arc::new(
            FileService::new(
                self.catalog.clone(),
                vec![backend],
                signer,
                self.clock.clone() as Arc<dyn Clock>,
                config,
            )
            .unwrap(),
        )
    }

    /// A store on the same engine and bucket or directory whose URLs are signed with another
    /// secret: what an attacker who guessed the layout but not the key could make.
    pub async fn forger(&self) -> Arc<dyn BlobStore> {
        match &self._s3 {
            Some(s3) => {
                let mut cfg = s3_config(s3);
                cfg.secret_access_key = Some(Secret("not-the-secret-key-of-this-bucket".into()));
                Arc::new(S3Store::open(&cfg).unwrap())
            }
            None => {
                let signing = SelfServed {
                    base_url: BASE.into(),
                    backend: "local".into(),
                    signer: Arc::new(UrlSigner::new(vec![7u8; 32]).unwrap()),
                };
                Arc::new(LocalStore::open(self.dir.path(), Some(signing)).await.unwrap())
            }
        }
    }

    pub async fn key(&self, project: &str, kind: CredentialKind) -> String {
        self.files
            .credentials()
            .create(ProjectId::new(project).unwrap(), None, kind, None)
            .await
            .unwrap()
            .1
    }

    pub async fn workspace_key(&self, project: &str, ws: &str) -> String {
        let ws = Some(WorkspaceId::new(ws).unwrap());
        self.files
            .credentials()
            .create(ProjectId::new(project).unwrap(), ws, CredentialKind::Integration, None)
            .await
            .unwrap()
            .1
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer { status, headers, body }
    }

    /// A request to a URL filedock handed out (absolute, under BASE).
    pub fn to_url(method: &str, url: &str) -> axum::http::request::Builder {
        let path = url
            .strip_prefix(BASE)
            .unwrap_or_else(|| panic!("{url} is not under {BASE}"));
        Request::builder().method(method).uri(path)
    }

    pub async fn upload_raw(&self, key: &str, name: &str, bytes: &[u8]) -> Answer {
        let req = Request::post(format!("/v1/files?name={}", urlencode(name)))
            .header("authorization", format!("Bearer {key}"))
            .header("content-length", bytes.len())
            .body(Body::from(bytes.to_vec()))
            .unwrap();
        self.send(req).await
    }

    pub async fn get(&self, key: &str, path: &str) -> Answer {
        self.send(
            Request::get(path)
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, key: &str, path: &str) -> Answer {
        self.send(
            Request::delete(path)
                .header("authorization", format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn post_json(&self, key: &str, path: &str, body: serde_json::Value) -> Answer {
        let req = Request::post(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(req).await
    }

    /// A native presign (`POST /v1/uploads`) and the PUT of `bytes` through its URL with the
    /// headers it signed; returns the presign's answer and the PUT's status.
    pub async fn presign_and_put(&self, key: &str, name: &str, bytes: &[u8]) -> (serde_json::Value, StatusCode) {
        let p = self
            .post_json(
                key,
                "/v1/uploads",
                serde_json::json!({"name": name, "size": bytes.len()}),
            )
            .await
            .json();
        let put = self.put_presigned(&p, bytes).await;
        (p, put.status)
    }

    /// PUTs `bytes` as a native presign's answer `p` says (its URL and headers).
    pub async fn put_presigned(&self, p: &serde_json::Value, bytes: &[u8]) -> Answer {
        let headers: Vec<(&str, String)> = p["upload"]["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(h, v)| (h.as_str(), v.as_str().unwrap().to_owned()))
            .collect();
        self.call("PUT", p["upload"]["url"].as_str().unwrap(), &headers, bytes.to_vec())
            .await
    }

    /// Every object in the store, and every catalog row of a project (any status).
    /// Objects of files (filedock's own, such as the deployment marker, left out).
    pub async fn stored_objects(&self) -> usize {
        let all = self.store.list("").await.unwrap();
        all.iter()
            .filter(|(k, _)| !k.as_str().starts_with(filedock_core::blob::INTERNAL_PREFIX))
            .count()
    }

    /// Catalog rows of a project's files, every status.
    pub async fn file_rows(&self, project: &str) -> usize {
        let mut n = 0;
        for status in [
            FileStatus::Pending,
            FileStatus::Ready,
            FileStatus::Deleted,
            FileStatus::Failed,
        ] {
            let q = FileQuery {
                project: ProjectId::new(project).unwrap(),
                workspace: None,
                status,
                before: None,
                live_at: 0,
                limit: 10_000,
            };
            n += self.catalog.list_files(&q).await.unwrap().len();
        }
        n
    }

    /// Temp files of the local store (S3 has none).
    pub async fn temp_files(&self) -> usize {
        match &self.local {
            Some(l) => l.temp_files().await.unwrap(),
            None => 0,
        }
    }

    /// A request to any URL: filedock's own (under BASE) through the router, others (the S3
    /// bucket's presigned URLs) over real HTTP. Redirects are not followed.
    pub async fn call(&self, method: &str, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
        if url.starts_with(BASE) {
            let mut req = TestApp::to_url(method, url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            return self.send(req.body(Body::from(body)).unwrap()).await;
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut req = client.request(method.parse().unwrap(), url).body(body);
        for (k, v) in headers {
            // reqwest sets the length from the body.
            if !k.eq_ignore_ascii_case("content-length") {
                req = req.header(*k, v);
            }
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let mut headers = axum::http::HeaderMap::new();
        for (k, v) in resp.headers() {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        Answer {
            status,
            headers,
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A multipart/form-data body with text fields then one file.
pub fn multipart(fields: &[(&str, &str)], file_name: &str, content_type: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----filedock-test-boundary";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\x0f\0\0\x01\x01\x01\0\x18\xdd\x8d\xb4\0\0\0\0IEND\xaeB`\x82";
pub const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";

/// The start of an MP4 (ftyp box), enough for the sniffer.
pub const MP4: &[u8] = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom\0\0\0\x08free";

/// Follows a stable link (`/l/…`) to its presigned URL and reads it.
pub async fn follow(app: &TestApp, url: &str) -> Answer {
    let first = app.call("GET", url, &[], vec![]).await;
    if first.status != StatusCode::FOUND {
        return first;
    }
    let location = first.header("location").unwrap();
    app.call("GET", &location, &[], vec![]).await
}

/// True when the tests run on S3 + PostgreSQL (`TEST_FLAVOR=s3-postgres`) instead of the
/// embedded local disk + SQLite.
pub fn scaled() -> bool {
    std::env::var("TEST_FLAVOR").is_ok_and(|f| f == "s3-postgres")
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// The S3 backend settings for a test S3 server.
pub fn s3_config(s3: &S3Server) -> S3Config {
    S3Config {
        endpoint: s3.endpoint.clone(),
        bucket: S3_BUCKET.into(),
        region: "us-east-1".into(),
        path_style: true,
        access_key_id: S3_ACCESS_KEY.into(),
        secret_access_key: Some(Secret(S3_SECRET_KEY.into())),
        secret_access_key_file: None,
        create_only: Default::default(),
        part_buffer_mib: 48,
        timeout_secs: 30,
    }
}
