//! The `filedock` binary, run as a user would: keys offline beside a live server, uploads over a
//! real socket, SIGKILL in the middle of an upload and restart, graceful SIGTERM.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

use std::path::Path;
use std::time::Duration;

use sha2::Digest;

mod common;

use common::*;

fn temp_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("blobs/local/tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn object_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        // filedock's own objects (the deployment marker) are no file's.
        .filter(|p| !p.ends_with(".filedock"))
        .map(|p| if p.is_dir() { object_files(&p) } else { 1 })
        .sum()
}

#[test]
fn keys_create_list_revoke_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let sk = create_key(data, "demo", "integration");
    assert!(sk.starts_with("sk-") && sk.len() == 83, "{sk}");
    for (kind, prefix) in [("session", "st-"), ("device", "dk-"), ("admin", "ad-")] {
        assert!(create_key(data, "demo", kind).starts_with(prefix));
    }
    let bad = filedock(data, &["keys", "create", "--project", "files", "--kind", "integration"]);
    assert!(!bad.status.success(), "a reserved project id is refused");
    let bad = filedock(data, &["keys", "create", "--project", "demo", "--kind", "root"]);
    assert!(!bad.status.success(), "an unknown kind is refused");

    let server = Server::start(data);
    let client = reqwest::blocking::Client::new();
    let files = format!("{}/v1/files", server.base);
    assert_eq!(client.get(&files).send().unwrap().status(), 401);
    assert_eq!(client.get(&files).bearer_auth(&sk).send().unwrap().status(), 200);

    // A key made while the server runs works at once; a key revoked stops at once.
    let late = create_key(data, "demo", "integration");
    assert_eq!(client.get(&files).bearer_auth(&late).send().unwrap().status(), 200);
    let list = String::from_utf8(filedock(data, &["keys", "list", "--project", "demo", "--json"]).stdout).unwrap();
    assert_eq!(list.lines().count(), 5);
    assert!(!list.contains(&sk[3..]), "secrets are never listed");
    let id = &late[3..19];
    let out = filedock(data, &["keys", "revoke", id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(client.get(&files).bearer_auth(&late).send().unwrap().status(), 401);
    assert!(
        !filedock(data, &["keys", "revoke", id]).status.success(),
        "revoking twice says so"
    );
    let db = std::fs::read(data.join("filedock.db")).unwrap();
    assert!(
        !db.windows(20).any(|w| w == &sk.as_bytes()[19..39]),
        "the secret is not in the database"
    );
}

#[test]
fn uploads_over_a_real_socket_come_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let key = create_key(data, "demo", "integration");
    let server = Server::start(data);
    let client = reqwest::blocking::Client::new();
    let bytes: Vec<u8> = (0..(24u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let resp = client
        .post(format!("{}/v1/files?name=big.bin", server.base))
        .bearer_auth(&key)
        .body(bytes.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let f: serde_json::Value = resp.json().unwrap();
    assert_eq!(f["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    let got = client
        .get(format!(
            "{}/v1/files/{}/content",
            server.base,
            f["id"].as_str().unwrap()
        ))
        .bearer_auth(&key)
        .send()
        .unwrap();
    assert_eq!(got.bytes().unwrap().as_ref(), bytes.as_slice());
}

/// A body that sends `first` bytes, then stalls until `done` is set (or 10 s pass).
fn stalled_body(first: usize, done: std::sync::Arc<std::sync::atomic::AtomicBool>) -> reqwest::blocking::Body {
    struct Stall {
        left: usize,
        done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }
    impl std::io::Read for Stall {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                for _ in 0..400 {
                    if self.done.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                return Err(std::io::Error::other("stalled on purpose"));
            }
            let n = buf.len().min(self.left);
            buf[..n].fill(b'a');
            self.left -= n;
            Ok(n)
        }
    }
    reqwest::blocking::Body::sized(Stall { left: first, done }, 64 << 20)
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn sigkill_mid_upload_leaves_nothing_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let key = create_key(&data, "demo", "integration");
    let mut server = Server::start(&data);
    let url = format!("{}/v1/files?name=partial.txt", server.base);
    let k = key.clone();
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = stalled_body(1 << 20, killed.clone());
    let upload = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(url)
            .bearer_auth(k)
            .body(body)
            .send()
    });
    wait_for(|| temp_files(&data) == 1, "the upload's temp file");
    server.signal("KILL");
    let _ = server.child.wait();
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(upload.join().unwrap().is_err(), "the client sees the connection die");
    assert_eq!(temp_files(&data), 1, "the crash left a temp file");

    let server = Server::start(&data);
    assert_eq!(temp_files(&data), 0, "start-up removed it");
    assert_eq!(object_files(&data.join("blobs/local/objects")), 0, "no blob");
    let list: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("{}/v1/files", server.base))
        .bearer_auth(&key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["files"], serde_json::json!([]), "no record");
}

#[test]
fn sigterm_lets_an_inflight_upload_finish() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let key = create_key(&data, "demo", "integration");
    let mut server = Server::start(&data);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    struct Gated {
        sent: usize,
        rx: std::sync::mpsc::Receiver<()>,
    }
    impl std::io::Read for Gated {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.sent == 1 << 20 {
                let _ = self.rx.recv_timeout(Duration::from_secs(10));
            }
            if self.sent == 2 << 20 {
                return Ok(0);
            }
            let n = buf
                .len()
                .min((if self.sent < 1 << 20 { 1 << 20 } else { 2 << 20 }) - self.sent);
            buf[..n].fill(b'b');
            self.sent += n;
            Ok(n)
        }
    }
    let url = format!("{}/v1/files?name=slow.txt", server.base);
    let k = key.clone();
    let upload = std::thread::spawn(move || {
        let body = reqwest::blocking::Body::sized(Gated { sent: 0, rx }, 2 << 20);
        reqwest::blocking::Client::new()
            .post(url)
            .bearer_auth(k)
            .body(body)
            .send()
            .map(|r| r.status())
    });
    wait_for(|| temp_files(&data) == 1, "the upload to start");
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    tx.send(()).unwrap();
    assert_eq!(upload.join().unwrap().unwrap(), 201, "the in-flight upload completes");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "clean exit after the drain: {status:?}");
    assert_eq!(object_files(&data.join("blobs/local/objects")), 1);
}

#[test]
fn permanent_links_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let key = create_key(&data, "demo", "integration");
    let server = Server::start(&data);
    let client = reqwest::blocking::Client::new();
    let path = juniortree_link_path(&server.base, &key, "a.txt", "still here");
    drop(server);
    let server = Server::start(&data);
    // The link names the old address; the restarted server listens on a new port.
    let got = client.get(format!("{}{path}", server.base)).send().unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().unwrap(), "still here");
}

/// Mistakes in workflows, projects and webhooks stop `serve` with a message naming them.
#[test]
fn bad_workflow_and_webhook_settings_stop_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let wf = "[[workflows]]\nid = \"wf_a\"\nproject = \"demo\"\n";
    for (text, says) in [
        (format!("{wf}{wf}"), "two workflows have the id 'wf_a'"),
        (
            format!("{wf}parameters = [ {{ name = \"x\", type = \"image\" }} ]\n"),
            "image",
        ),
        (
            "[[projects.demo.webhooks]]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"short\"\n".to_owned(),
            "at least 16 bytes",
        ),
        (
            "[[projects.demo.webhooks]]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"0123456789abcdef\"\nevents = [\"file.read\"]\n"
                .to_owned(),
            "file.read",
        ),
        ("[projects.files.retention]\ninput_secs = 1\n".to_owned(), "reserved"),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, &text).unwrap();
        let out = filedock_with(&dir.path().join("data"), Some(&config), &["serve", "--listen", "127.0.0.1:0"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(err.contains(says), "{text}\n→ {err}");
    }
}

/// `filedock init` writes a config that starts as written and a private signing key; it never
/// overwrites either.
#[test]
fn init_writes_a_config_that_runs_and_a_signing_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let out = std::process::Command::new(BIN)
        .args(["init", "--dir"])
        .arg(&etc)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = std::fs::read_to_string(etc.join("signing.key")).unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    for f in ["signing.key", "filedock.toml"] {
        let mode = std::fs::metadata(etc.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let again = std::process::Command::new(BIN)
        .args(["init", "--dir"])
        .arg(&etc)
        .output()
        .unwrap();
    assert!(!again.status.success(), "a second init must not overwrite");
    assert_eq!(std::fs::read_to_string(etc.join("signing.key")).unwrap(), key);
    // The config runs (the data dir it names, etc/data, given as the harness gives it).
    let config = etc.join("filedock.toml");
    let data = etc.join("data");
    let api_key = create_key_with(&data, Some(&config), "demo", "integration");
    let server = Server::start_with(&data, Some(&config));
    let up = reqwest::blocking::Client::new()
        .post(format!("{}/v1/files?name=a.txt", server.base))
        .bearer_auth(&api_key)
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(up.status().as_u16(), 201);
    let text = std::fs::read_to_string(&config).unwrap();
    let canonical = etc.canonicalize().unwrap();
    assert!(
        text.contains(&format!("data_dir = \"{}/data\"", canonical.display())),
        "{text}"
    );
    assert!(text.contains(&format!(
        "signing_secret_file = \"{}/signing.key\"",
        canonical.display()
    )));
}
