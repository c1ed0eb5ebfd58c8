//! Two instances behind a real nginx (Debian's package), configured with the documented
//! `docs/deploy/nginx.conf` (only its ports changed): tus, native multipart and Cyberun's
//! multipart flows go through it, their requests spread over both instances, and every file
//! reads back identical. Needs nginx (`scripts/test` installs it) and PostgreSQL: under CI a
//! missing one fails the test.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use filedock_testkit::S3Server;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const NGINX: &str = "/usr/sbin/nginx";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx on `port` in front of `upstreams`, from the documented config.
struct Nginx {
    child: Child,
    prefix: PathBuf,
}

impl Nginx {
    fn start(prefix: &Path, port: u16, upstreams: [&str; 2]) -> Nginx {
        let documented =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy/nginx.conf"))
                .unwrap();
        let site = documented
            .replace("127.0.0.1:8081", upstreams[0])
            .replace("127.0.0.1:8082", upstreams[1])
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        assert!(site.contains(upstreams[0]) && site.contains(upstreams[1]) && site.contains(&port.to_string()));
        let p = prefix.display();
        // What /etc/nginx/nginx.conf gives a conf.d file, in a directory of the test's own; the
        // access log names the instance that answered each request.
        let main = format!(
            "user root;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  log_format upstream '$request_method $uri $status $upstream_addr';\n\
               access_log {p}/access.log upstream;\n\
               client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fastcgi;\n\
               uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n  include {p}/filedock.conf;\n}}\n"
        );
        std::fs::create_dir_all(prefix).unwrap();
        std::fs::write(prefix.join("filedock.conf"), site).unwrap();
        std::fs::write(prefix.join("nginx.conf"), main).unwrap();
        let child = Command::new(NGINX)
            .args(["-p"])
            .arg(prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx {
            child,
            prefix: prefix.to_owned(),
        }
    }

    /// The instances that answered requests whose line contains `what`.
    fn upstreams_of(&self, what: &str) -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(self.prefix.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what))
            .filter_map(|l| l.rsplit(' ').next().map(str::to_owned))
            .collect()
    }
}

impl Drop for Nginx {
    /// SIGTERM: the master stops its workers (SIGKILL would leave them running).
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_installed() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false"),
        "{NGINX} is missing: scripts/test installs Debian's nginx"
    );
    eprintln!("SKIPPED: {NGINX} is missing (scripts/test installs it)");
    false
}

#[test]
fn tus_multipart_and_cyberun_through_nginx_over_two_instances() {
    if !nginx_installed() {
        return;
    }
    let s3 = S3Server::start();
    through_nginx(&s3.backend_toml());
}

/// The same on moto's S3 server (an implementation no one here wrote).
#[test]
fn tus_multipart_and_cyberun_through_nginx_over_two_instances_on_moto() {
    if !nginx_installed() {
        return;
    }
    let Some(moto) = filedock_testkit::MotoServer::start() else {
        return;
    };
    through_nginx(&moto.backend_toml());
}

fn through_nginx(backend_toml: &str) {
    let Some(pg) = postgres_database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (lb_port, a_port, b_port) = (free_port(), free_port(), free_port());
    let (a_addr, b_addr) = (format!("127.0.0.1:{a_port}"), format!("127.0.0.1:{b_port}"));
    let base = format!("http://127.0.0.1:{lb_port}");
    let config = dir.path().join("filedock.toml");
    std::fs::write(
        &config,
        format!(
            "public_url = \"{base}\"\nsigning_secret_file = \"{}\"\ndefault_backend = \"s3\"\n\
             [backends.s3]\n{backend_toml}\n[catalog]\ntype = \"postgres\"\nurl = \"{pg}\"\n",
            dir.path().join("signing.key").display(),
        ),
    )
    .unwrap();
    let key = create_key_with(&dir.path().join("a"), Some(&config), "demo", "integration");
    let session = create_key_with(&dir.path().join("a"), Some(&config), "demo", "session");
    let _a = Server::start_at(&dir.path().join("a"), Some(&config), &a_addr);
    let _b = Server::start_at(&dir.path().join("b"), Some(&config), &b_addr);
    let lb = Nginx::start(&dir.path().join("nginx"), lb_port, [&a_addr, &b_addr]);
    let http = Client::new();
    let auth = format!("Bearer {key}");

    // tus: a creation and four PATCHes of 3 MiB through nginx, then the file through nginx.
    let doc = bytes_of(12 << 20, 1);
    let created = http
        .post(format!("{base}/tus/"))
        .header("authorization", &auth)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", doc.len().to_string())
        .header("upload-metadata", "filename ZG9jLmJpbg==")
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&base),
        "tus Location points at the load balancer: {location}"
    );
    let mut file_id = None;
    for (i, chunk) in doc.chunks(3 << 20).enumerate() {
        let resp = http
            .patch(&location)
            .header("authorization", &auth)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", (i * (3 << 20)).to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(chunk.to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 204, "PATCH {i}");
        if let Some(id) = resp.headers().get("filedock-file-id") {
            file_id = Some(id.to_str().unwrap().to_owned());
        }
    }
    let file_id = file_id.expect("the last PATCH names the file");
    let got = http
        .get(format!("{base}/v1/files/{file_id}/content"))
        .header("authorization", &auth)
        .send()
        .unwrap();
    assert_eq!(
        sha(&got.bytes().unwrap()),
        sha(&doc),
        "tus file read back through nginx"
    );
    assert_eq!(
        lb.upstreams_of("PATCH /tus/").len(),
        2,
        "the PATCHes were spread over both instances"
    );

    // Native multipart: parts straight to the bucket, the rest through nginx.
    let big = bytes_of(11 << 20, 2);
    let part_size = 5 << 20;
    let mp: Value = http
        .post(format!("{base}/v1/uploads/multipart"))
        .header("authorization", &auth)
        .json(&json!({"name": "big.bin", "size": big.len(), "part_size": part_size}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let upload = mp["upload_id"].as_str().unwrap();
    let parts: Value = http
        .post(format!("{base}/v1/uploads/multipart/{upload}/parts"))
        .header("authorization", &auth)
        .json(&json!({"part_numbers": [1, 2, 3]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let etags = put_parts(&http, parts["parts"].as_array().unwrap(), "url", &big, part_size);
    let done: Value = http
        .post(format!("{base}/v1/uploads/multipart/{upload}/complete"))
        .header("authorization", &auth)
        .json(&json!({"parts": etags}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(done["status"].as_str(), Some("ready"), "{done}");
    let read = |id: &str| {
        let got = http
            .get(format!("{base}/v1/files/{id}/content"))
            .header("authorization", &auth)
            .send()
            .unwrap();
        sha(&got.bytes().unwrap())
    };
    assert_eq!(
        read(done["id"].as_str().unwrap()),
        sha(&big),
        "multipart file read back through nginx"
    );

    // Cyberun's multipart (session keys), then the file by its key through nginx.
    let cy = bytes_of(6 << 20, 3);
    let session_auth = format!("Bearer {session}");
    let init: Value = http
        .post(format!("{base}/api/v1/uploads/multipart/initiate"))
        .header("authorization", &session_auth)
        .json(&json!({"file_name": "cy.bin", "file_size": cy.len(), "part_size": part_size}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let cy_upload = init["upload_id"].as_str().unwrap();
    let cy_parts: Value = http
        .post(format!("{base}/api/v1/uploads/multipart/presign-parts"))
        .header("authorization", &session_auth)
        .json(&json!({"upload_id": cy_upload, "part_numbers": [1, 2]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let cy_etags = put_parts(
        &http,
        cy_parts["parts"].as_array().unwrap(),
        "upload_url",
        &cy,
        part_size,
    );
    let completed = http
        .post(format!("{base}/api/v1/uploads/multipart/complete"))
        .header("authorization", &session_auth)
        .json(&json!({"upload_id": cy_upload, "parts": cy_etags}))
        .send()
        .unwrap();
    assert_eq!(completed.status().as_u16(), 200);
    let file_key = completed.json::<Value>().unwrap()["file_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let found: Value = http
        .get(format!("{base}/v1/files/lookup"))
        .query(&[("path", &file_key)])
        .header("authorization", &auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        read(found["id"].as_str().unwrap()),
        sha(&cy),
        "Cyberun's file read back through nginx"
    );
    // Readiness through the balancer.
    assert_eq!(
        http.get(format!("{base}/readyz")).send().unwrap().status().as_u16(),
        200
    );
}
