//! Running the built `filedock` binary: a CLI call, and a server on a free loopback port.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_filedock");

pub fn filedock(data: &Path, args: &[&str]) -> std::process::Output {
    filedock_with(data, None, args)
}

/// Runs the binary on a data dir, with a config file if given.
pub fn filedock_with(data: &Path, config: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("FILEDOCK_CONFIG")
        .output()
        .expect("run filedock")
}

pub fn create_key(data: &Path, project: &str, kind: &str) -> String {
    create_key_with(data, None, project, kind)
}

/// `filedock keys create`; returns the secret (the last line of stdout).
pub fn create_key_with(data: &Path, config: Option<&Path>, project: &str, kind: &str) -> String {
    let out = filedock_with(data, config, &["keys", "create", "--project", project, "--kind", kind]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Self::start_with(data, None)
    }

    /// Starts with a config file too.
    pub fn start_with(data: &Path, config: Option<&Path>) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_at(data, config, &format!("127.0.0.1:{port}"))
    }

    /// Starts on a given address (to restart a server where its clients expect it).
    pub fn start_at(data: &Path, config: Option<&Path>, listen: &str) -> Server {
        let listen = listen.to_owned();
        let mut cmd = Command::new(BIN);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", &listen])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start filedock");
        // Wait for the "listening" line.
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            if line.contains("filedock listening") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base: format!("http://{listen}"),
        }
    }

    /// Starts on a free port with standard error sent to `stderr` and the given environment,
    /// and waits until `/healthz` answers (it cannot wait for a log line it does not see).
    pub fn start_detached(data: &Path, config: Option<&Path>, stderr: Stdio, env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(BIN);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", &listen])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(stderr)
            .spawn()
            .expect("start filedock");
        let server = Server {
            child,
            base: format!("http://{listen}"),
        };
        let http = reqwest::blocking::Client::new();
        for _ in 0..300 {
            if http.get(format!("{}/healthz", server.base)).send().is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("filedock did not answer /healthz on {listen}");
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Config lines for the scaled flavour: every file in `s3`'s bucket, the catalog in PostgreSQL.
pub fn s3_postgres_toml(s3: &filedock_testkit::S3Server, pg_url: &str) -> String {
    format!(
        "default_backend = \"s3\"\n[backends.s3]\n{}\n[catalog]\ntype = \"postgres\"\nurl = \"{pg_url}\"\n",
        s3.backend_toml()
    )
}

/// A fresh PostgreSQL database for a test (see `filedock_testkit::postgres_database`).
pub fn postgres_database() -> Option<String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(filedock_testkit::postgres_database())
}

/// Uploads `content` as `name` through Juniortree's route and returns the path of its permanent
/// link (`/l/…`), which any instance sharing the signing secret serves.
pub fn juniortree_link_path(base: &str, key: &str, name: &str, content: &str) -> String {
    let form = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n{content}\r\n\
         --b\r\nContent-Disposition: form-data; name=\"created_by\"\r\n\r\nme\r\n--b--\r\n"
    );
    let resp: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{base}/api/v1/upload"))
        .bearer_auth(key)
        .header("agent", "dify")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = resp["data"]["id"].as_str().unwrap();
    id[id.find("/l/").unwrap()..].to_owned()
}

/// `n` bytes of a deterministic pattern (`seed` tells patterns apart).
pub fn bytes_of(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// The SHA-256 of `b`, in hex.
pub fn sha(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

/// PUTs presigned parts (each `{part_number, <url_field>, headers?}`) straight to the bucket;
/// returns `[{part_number, etag}]`.
pub fn put_parts(
    http: &reqwest::blocking::Client,
    parts: &[serde_json::Value],
    url_field: &str,
    bytes: &[u8],
    part_size: usize,
) -> Vec<serde_json::Value> {
    parts
        .iter()
        .map(|p| {
            let n = p["part_number"].as_u64().unwrap() as usize;
            let chunk = &bytes[(n - 1) * part_size..(n * part_size).min(bytes.len())];
            let mut put = http.put(p[url_field].as_str().unwrap()).body(chunk.to_vec());
            if let Some(headers) = p["headers"].as_object() {
                for (h, v) in headers {
                    put = put.header(h.as_str(), v.as_str().unwrap());
                }
            }
            let resp = put.send().unwrap();
            assert!(resp.status().is_success(), "part {n}: {}", resp.status());
            let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
            serde_json::json!({"part_number": n, "etag": etag})
        })
        .collect()
}
