//! filedock-testkit: the real things filedock's tests run against, started or found by the tests
//! themselves — an S3 protocol server (s3s + s3s-fs, which verifies SigV4 including presigned
//! query auth and every signed header) on a loopback port, and PostgreSQL test databases.
//!
//! Not for production code: only test targets depend on it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test infrastructure fails loudly"
)]

mod clamd;
pub use clamd::{Clamd, EICAR, EICAR_SIGNATURE};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper_util::rt::{TokioExecutor, TokioIo};

/// The access key of the test S3 server.
pub const S3_ACCESS_KEY: &str = "AKFILEDOCKTEST";
/// The secret key of the test S3 server.
pub const S3_SECRET_KEY: &str = "SKfiledock/test+secret";
/// The bucket every test S3 server has.
pub const S3_BUCKET: &str = "filedock-test";

/// s3s-fs as AWS S3 behaves where filedock depends on it: ListParts lists each part's ETag (the
/// MD5 of its bytes, as UploadPart answered it), which s3s-fs 0.14 leaves out, and aborting an
/// unknown upload is NoSuchUpload. Every other call
/// goes to s3s-fs unchanged.
struct Fs {
    inner: s3s_fs::FileSystem,
    root: std::path::PathBuf,
}

macro_rules! delegate {
    ($($name:ident($input:ident) -> $output:ident;)* { $($own:item)* }) => {
        #[async_trait::async_trait]
        impl s3s::S3 for Fs {
            $(
                async fn $name(
                    &self,
                    req: s3s::S3Request<s3s::dto::$input>,
                ) -> s3s::S3Result<s3s::S3Response<s3s::dto::$output>> {
                    self.inner.$name(req).await
                }
            )*
            $($own)*
        }
    };
}

delegate! {
        create_bucket(CreateBucketInput) -> CreateBucketOutput;
        copy_object(CopyObjectInput) -> CopyObjectOutput;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
        delete_object(DeleteObjectInput) -> DeleteObjectOutput;
        delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
        get_object(GetObjectInput) -> GetObjectOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        head_object(HeadObjectInput) -> HeadObjectOutput;
        list_buckets(ListBucketsInput) -> ListBucketsOutput;
        list_objects(ListObjectsInput) -> ListObjectsOutput;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
        put_object(PutObjectInput) -> PutObjectOutput;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
        upload_part(UploadPartInput) -> UploadPartOutput;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
        complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    {
    /// s3s-fs answers AccessDenied for an upload id it does not know; S3 answers NoSuchUpload.
    async fn abort_multipart_upload(
        &self,
        req: s3s::S3Request<s3s::dto::AbortMultipartUploadInput>,
    ) -> s3s::S3Result<s3s::S3Response<s3s::dto::AbortMultipartUploadOutput>> {
        self.inner.abort_multipart_upload(req).await.map_err(|e| {
            if *e.code() == s3s::S3ErrorCode::AccessDenied {
                s3s::S3Error::new(s3s::S3ErrorCode::NoSuchUpload)
            } else {
                e
            }
        })
    }

    async fn list_parts(
        &self,
        req: s3s::S3Request<s3s::dto::ListPartsInput>,
    ) -> s3s::S3Result<s3s::S3Response<s3s::dto::ListPartsOutput>> {
        use md5::Digest;
        let upload_id = req.input.upload_id.clone();
        let mut resp = self.inner.list_parts(req).await?;
        for part in resp.output.parts.iter_mut().flatten() {
            let Some(n) = part.part_number else { continue };
            let path = self.root.join(format!(".upload_id-{upload_id}.part-{n}"));
            if let Ok(bytes) = std::fs::read(&path) {
                let sum = md5::Md5::digest(&bytes);
                let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
                part.e_tag = Some(s3s::dto::ETag::Strong(hex));
            }
        }
        Ok(resp)
    }
    }
}

/// An S3 server on `127.0.0.1`, storing under a temp dir, running on its own thread until
/// dropped.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Requests served.
    requests: Arc<AtomicU64>,
    _dir: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// Starts a server with one empty bucket, [`S3_BUCKET`], in a temp dir removed on drop.
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = S3Server::start_at(dir.path(), "127.0.0.1:0");
        server._dir = Some(dir);
        server
    }

    /// Starts a server storing under `root` (which must exist), listening on `addr`, with the
    /// bucket [`S3_BUCKET`] created if missing.
    pub fn start_at(root: &std::path::Path, addr: &str) -> S3Server {
        if !root.join(S3_BUCKET).is_dir() {
            std::fs::create_dir(root.join(S3_BUCKET)).unwrap();
        }
        let root = root.to_owned();
        let addr = addr.to_owned();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&root).unwrap();
                let mut b = s3s::service::S3ServiceBuilder::new(Fs {
                    inner: fs,
                    root: root.clone(),
                });
                b.set_auth(s3s::auth::SimpleAuth::from_single(S3_ACCESS_KEY, S3_SECRET_KEY));
                let svc = b.build();
                let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((sock, _)) = accepted else { continue };
                            counter.fetch_add(1, Ordering::SeqCst);
                            let svc = svc.clone();
                            tokio::spawn(async move {
                                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(sock), svc)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        let addr = addr_rx.recv().unwrap();
        S3Server {
            endpoint: format!("http://{addr}"),
            requests,
            _dir: None,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// A TOML table body for a filedock `s3` backend on this server.
    pub fn backend_toml(&self) -> String {
        format!(
            "type = \"s3\"\nendpoint = \"{}\"\nbucket = \"{S3_BUCKET}\"\npath_style = true\naccess_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{S3_SECRET_KEY}\"\n",
            self.endpoint
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The PostgreSQL server tests use: `TEST_PG_URL` (a superuser URL, e.g.
/// `postgres://filedock:filedock@127.0.0.1:5432/postgres`; `scripts/test` starts the server and
/// sets it). Without it: under `CI=true` this panics — PostgreSQL tests never skip in CI —
/// elsewhere it returns `None` and the caller skips, saying so.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
            panic!("TEST_PG_URL is not set: the PostgreSQL tests must run in CI (run scripts/test)")
        }
        _ => {
            eprintln!("SKIPPED: TEST_PG_URL is not set; run scripts/test to start PostgreSQL");
            None
        }
    }
}

/// A new, empty database on the test server; returns its URL.
pub async fn postgres_database() -> Option<String> {
    let admin = postgres_admin_url()?;
    let name = format!("filedock_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at TEST_PG_URL: {e}"));
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').expect("TEST_PG_URL ends with /<database>");
    Some(format!("{base}/{name}"))
}

/// A PostgreSQL server of a test's own (a new cluster in a temp dir, on a free loopback port),
/// so that the test can stop and start it without touching the shared test server. Needs the
/// machine's PostgreSQL binaries (`scripts/postgres` installs them) and root, which runs them as
/// the `postgres` user (`initdb` refuses root). Stopped (`-m immediate`) when dropped.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    /// `postgres://filedock@127.0.0.1:<port>/filedock` (trust authentication on loopback).
    pub url: String,
    port: u16,
}

impl PrivatePostgres {
    /// Creates and starts the cluster with one database, `filedock`.
    pub fn start() -> PrivatePostgres {
        let versions =
            std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed (scripts/postgres installs it)");
        let mut versions: Vec<u32> = versions
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        versions.sort_unstable();
        let version = versions.last().expect("a PostgreSQL version");
        let bin = std::path::PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        let dir = tempfile::Builder::new().prefix("filedock-pg-").tempdir().unwrap();
        let chown = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            chown.success(),
            "chown the cluster's dir to postgres (the tests run as root)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePostgres {
            url: format!("postgres://filedock@127.0.0.1:{port}/filedock"),
            dir,
            bin,
            port,
        };
        pg.as_postgres(
            "initdb",
            &[
                "-D",
                &pg.data().to_string_lossy(),
                "-U",
                "filedock",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        pg.start_again();
        pg.as_postgres(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "filedock", "filedock"],
        );
        pg
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) {
        let out = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediately(&self) {
        self.as_postgres(
            "pg_ctl",
            &["-D", &self.data().to_string_lossy(), "-m", "immediate", "-w", "stop"],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data().to_string_lossy(), "-m", "immediate", "stop"])
            .output();
    }
}

/// moto's S3 server (`moto[server]` from PyPI, pinned by `scripts/moto`, which `scripts/test`
/// runs and whose printed path it exports as `TEST_MOTO`): an S3 implementation no one here
/// wrote, one process per test on a free loopback port, with the bucket [`S3_BUCKET`]. Killed
/// when dropped.
pub struct MotoServer {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    child: std::process::Child,
    _log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Starts one. Without `TEST_MOTO`: under `CI=true` this panics — the moto tests never skip
    /// in CI — elsewhere it returns `None` and the caller skips, saying so.
    pub fn start() -> Option<MotoServer> {
        let bin = match std::env::var("TEST_MOTO") {
            Ok(b) if !b.is_empty() => b,
            _ if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
                panic!("TEST_MOTO is not set: the moto tests must run in CI (run scripts/test)")
            }
            _ => {
                eprintln!("SKIPPED: TEST_MOTO is not set; export TEST_MOTO=$(scripts/moto)");
                return None;
            }
        };
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = tempfile::NamedTempFile::new().unwrap();
            let mut child = std::process::Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(log.reopen().unwrap())
                .stderr(log.reopen().unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run TEST_MOTO={bin}: {e}"));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if let Ok(status) = raw_http(port, "PUT", &format!("/{S3_BUCKET}")) {
                    assert!(status == 200, "moto answered {status} to creating the bucket");
                    return Some(MotoServer {
                        endpoint: format!("http://127.0.0.1:{port}"),
                        child,
                        _log: log,
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "moto did not start on port {port}: {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        panic!("moto did not start in 5 attempts")
    }

    /// A TOML table body for a filedock `s3` backend on this server.
    pub fn backend_toml(&self) -> String {
        format!(
            "type = \"s3\"\nendpoint = \"{}\"\nbucket = \"{S3_BUCKET}\"\npath_style = true\naccess_key_id = \"{S3_ACCESS_KEY}\"\nsecret_access_key = \"{S3_SECRET_KEY}\"\n",
            self.endpoint
        )
    }

    /// The process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one bodiless request to `127.0.0.1:port` and returns the answer's status.
fn raw_http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))
}
