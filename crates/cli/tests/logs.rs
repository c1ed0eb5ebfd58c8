//! Structured logs: with `log_format = "json"` every line is one JSON object, each request has an
//! access line with its request id (the `x-request-id` the client sees), and no line holds a key,
//! an `Authorization` header or a signed query string — not even at debug level.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, create_key};

/// `serve` on `data` and a free port, set up by `configure`, its standard error piped: the
/// server, its base URL, and its log lines as they come.
fn serve_logging(
    data: &std::path::Path,
    configure: impl FnOnce(&mut Command),
) -> (std::process::Child, String, std::sync::mpsc::Receiver<String>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped());
    configure(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, format!("http://127.0.0.1:{port}"), rx)
}

/// Every directory under `dir` is 0700 and every file 0600.
fn assert_private(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_private(&path);
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
}

#[test]
fn json_logs_carry_request_ids_and_no_secrets_and_the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    // A data dir as a umask of 022 leaves it: open to every local user.
    let data_dir = root.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = DataDir(data_dir);
    let key = create_key(data.path(), "demo", "integration");
    let (mut child, base, rx) = serve_logging(data.path(), |c| {
        c.env("FILEDOCK_LOG_FORMAT", "json").env("RUST_LOG", "debug");
    });
    let http = reqwest::blocking::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // An upload, a signed link fetched, a presigned PUT, a wrong key, a tus upload.
    let up = http
        .post(format!("{base}/v1/files?name=a.txt"))
        .bearer_auth(&key)
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(up.status(), 201);
    let upload_request_id = up.headers()["x-request-id"].to_str().unwrap().to_owned();
    let file: serde_json::Value = up.json().unwrap();
    let link: serde_json::Value = http
        .post(format!("{base}/v1/files/{}/links", file["id"].as_str().unwrap()))
        .bearer_auth(&key)
        .json(&serde_json::json!({}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let link_url = link["url"].as_str().unwrap().to_owned();
    assert_eq!(http.get(&link_url).send().unwrap().status(), 200);
    let presign: serde_json::Value = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "b.txt", "size": 3}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let put_url = presign["upload"]["url"].as_str().unwrap().to_owned();
    let mut put = http.put(&put_url).body("abc");
    for (k, v) in presign["upload"]["headers"].as_object().unwrap() {
        put = put.header(k, v.as_str().unwrap());
    }
    assert!(put.send().unwrap().status().is_success());
    // A tampered signature is refused, and its query is not logged either.
    let tampered = put_url.replace("X-Fd-Signature=", "X-Fd-Signature=AAAA");
    assert!(
        http.put(&tampered)
            .body("abc")
            .send()
            .unwrap()
            .status()
            .is_client_error()
    );
    assert_eq!(
        http.get(format!("{base}/v1/files"))
            .bearer_auth("sk-not-a-real-key-123456")
            .send()
            .unwrap()
            .status(),
        401
    );
    let tus = http
        .post(format!("{base}/tus/"))
        .bearer_auth(&key)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "0")
        .send()
        .unwrap();
    assert!(tus.status().is_success());

    // A permanent link (Juniortree's `data.id`, TokenOps' `visit_url`): its path is the secret.
    let link_path = common::juniortree_link_path(&base, &key, "note.txt", "hello");
    assert_eq!(http.get(format!("{base}{link_path}")).send().unwrap().status(), 200);
    let token = link_path.trim_start_matches("/l/").to_owned();

    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(lines.len() > 10, "{lines:?}");

    let signature = |url: &str| {
        let q = url.split_once('?').unwrap().1;
        q.split('&')
            .find(|p| p.contains("Signature="))
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned()
    };
    let secrets = [
        key.clone(),
        key[3..].to_owned(),
        "sk-not-a-real-key-123456".to_owned(),
        signature(&link_url),
        signature(&put_url),
        "X-Fd-Signature".to_owned(),
        "X-Fd-Expires".to_owned(),
        token[6..].to_owned(),
    ];
    let mut access = 0;
    let mut ids = std::collections::HashSet::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "a secret ({s}) in a log line: {line}");
        }
        assert!(!line.to_ascii_lowercase().contains("bearer "), "{line}");
        if v["fields"]["message"] == "finished processing request" {
            access += 1;
            let id = v["span"]["request_id"].as_str().unwrap();
            assert_eq!(id.len(), 36, "{line}");
            assert!(
                v["span"]["path"].is_string() && v["fields"]["status"].is_number(),
                "{line}"
            );
            assert!(!v["span"]["path"].as_str().unwrap().contains('?'), "{line}");
            ids.insert(id.to_owned());
        }
    }
    assert!(access >= 8, "one access line per request: {access}");
    assert!(
        ids.contains(&upload_request_id),
        "the client's x-request-id is in the log"
    );
    println!("{} log lines, {access} access lines, none with a secret", lines.len());
    assert_private(data.path());
}

/// Text logs (the default format) to a pipe carry no colour codes: those are for a terminal, and
/// in a file they surrounded every field name (`request_id\x1b[2m=\x1b[0m…`).
#[test]
fn text_logs_to_a_pipe_are_plain() {
    let root = tempfile::tempdir().unwrap();
    let (mut child, base, rx) = serve_logging(root.path(), |c| {
        c.env_remove("FILEDOCK_LOG_FORMAT").env_remove("NO_COLOR");
    });
    let http = reqwest::blocking::Client::new();
    let mut refused = false;
    for _ in 0..200 {
        // Refused without a key: an access line at info.
        if let Ok(r) = http.get(format!("{base}/v1/files")).send() {
            refused = r.status() == 401;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(refused, "the server answers 401 without a key");
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lines.iter().any(|l: &String| l.contains("finished processing request")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("no access line within 30 s: {lines:?}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    for line in &lines {
        assert!(
            !line.contains('\x1b'),
            "a colour code in a log line to a pipe: {line:?}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("request_id=")), "{lines:?}");
}

struct DataDir(std::path::PathBuf);

impl DataDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}
