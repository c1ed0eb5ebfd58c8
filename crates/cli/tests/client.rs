//! The client commands of the `filedock` binary against a real server: upload (tus and parallel
//! multipart, with resume after a kill), ls, get (with Range resume), link, rm, the exit codes,
//! and progress bars only on a terminal (a pseudo-terminal made by `script(1)`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Server, create_key_with, postgres_database, s3_postgres_toml};
use filedock_testkit::S3Server;
use sha2::{Digest, Sha256};

/// A client call with server, key and state dir from the environment, as a user would set them.
fn client(base: &str, key: &str, state: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("FILEDOCK_SERVER", base)
        .env("FILEDOCK_KEY", key)
        .env("FILEDOCK_STATE_DIR", state)
        .env("FILEDOCK_CLIENT_CONFIG", state.join("no-such-config.toml"))
        .output()
        .unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic bytes that do not compress or repeat within a part.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn client_commands(data: &Path, config: Option<&Path>) {
    let server = Server::start_with(data, config);
    let key = create_key_with(data, config, "demo", "integration");
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let base = server.base.as_str();

    // Three files in one call: an empty one and a small one by tus, a 20 MiB one as a parallel
    // multipart upload (threshold 10 MiB, 8 MiB parts, so three parts).
    let small = content(300_000, 1);
    let big = content(20 << 20, 2);
    let files = [
        write_file(work.path(), "empty.txt", b""),
        write_file(work.path(), "small.bin", &small),
        write_file(work.path(), "big.bin", &big),
    ];
    let mut args = vec![
        "upload",
        "--json",
        "--multipart-threshold",
        "10485760",
        "--parallel",
        "3",
    ];
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    let out = client(base, &key, &state, &args);
    // Progress bars never reach a pipe.
    assert!(
        !out.stderr.contains(&b'\x1b'),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let empty_refused = !out.status.success();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let by_name = |n: &str| lines.iter().find(|l| l["path"].as_str().unwrap().ends_with(n)).unwrap();
    for (name, data) in [("small.bin", &small), ("big.bin", &big)] {
        let l = by_name(name);
        assert_eq!(l["size"], data.len() as u64, "{l}");
        assert_eq!(l["status"], "ready");
        assert_eq!(l["resumed_from"], 0);
        if let Some(h) = l["sha256"].as_str() {
            assert_eq!(h, sha256_hex(data));
        }
    }
    // Zero bytes: stored, or refused with a clear error, never half-made.
    let e = by_name("empty.txt");
    assert_eq!(empty_refused, e["error"].is_object(), "{e}");
    assert!(
        e["size"] == 0 || e["error"]["status"].as_u64().is_some_and(|s| (400..500).contains(&s)),
        "{e}"
    );
    // Nothing left to resume.
    assert_eq!(std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0), 0);

    // ls: both files, newest first.
    let out = client(base, &key, &state, &["ls", "--json"]);
    ok(&out);
    let listed = &json_lines(&out)[0]["files"];
    let big_id = by_name("big.bin")["id"].as_str().unwrap().to_owned();
    let small_id = by_name("small.bin")["id"].as_str().unwrap().to_owned();
    for id in [&big_id, &small_id] {
        assert!(
            listed.as_array().unwrap().iter().any(|f| f["id"] == id.as_str()),
            "{listed}"
        );
    }
    let out = client(base, &key, &state, &["ls"]);
    ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("ID ") && text.contains("big.bin") && text.contains("20.0 MiB"),
        "{text}"
    );

    // get: whole, then resumed from a partial download with Range.
    let dl = work.path().join("dl.bin");
    let out = client(
        base,
        &key,
        &state,
        &["get", &big_id, "-o", dl.to_str().unwrap(), "--json"],
    );
    ok(&out);
    assert_eq!(std::fs::read(&dl).unwrap(), big);
    assert_eq!(json_lines(&out)[0]["resumed_from"], 0);
    let dl2 = work.path().join("dl2.bin");
    std::fs::write(work.path().join("dl2.bin.part"), &big[..7_000_000]).unwrap();
    let out = client(
        base,
        &key,
        &state,
        &["get", &big_id, "-o", dl2.to_str().unwrap(), "--json"],
    );
    ok(&out);
    assert_eq!(json_lines(&out)[0]["resumed_from"], 7_000_000);
    assert_eq!(std::fs::read(&dl2).unwrap(), big);
    assert!(!work.path().join("dl2.bin.part").exists());
    // A corrupt partial download is caught by the SHA-256 and removed (on S3 direct uploads are
    // not hashed, so there it cannot be told).
    if by_name("big.bin")["sha256"].is_string() {
        let dl3 = work.path().join("dl3.bin");
        std::fs::write(work.path().join("dl3.bin.part"), vec![0u8; 1000]).unwrap();
        let out = client(base, &key, &state, &["get", &big_id, "-o", dl3.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("SHA-256"));
        assert!(!dl3.exists() && !work.path().join("dl3.bin.part").exists());
    }

    // link: a URL that serves the bytes without a key.
    let out = client(base, &key, &state, &["link", &small_id, "--ttl", "10m"]);
    ok(&out);
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let got = reqwest::blocking::get(&url).unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().unwrap().as_ref(), &small[..]);
    let out = client(base, &key, &state, &["link", &small_id, "--ttl", "1w"]);
    assert_eq!(out.status.code(), Some(2), "a bad --ttl is a usage error");

    // rm, then the file is gone: exit 4 for a script to tell.
    let out = client(base, &key, &state, &["rm", &small_id, "--json"]);
    ok(&out);
    assert_eq!(json_lines(&out)[0]["deleted"], true);
    let out = client(base, &key, &state, &["get", &small_id, "--json"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(json_lines(&out)[0]["error"]["code"], "not_found");

    // Exit codes: a wrong key 3, no key 2, no server reachable 6, a missing local file 1.
    let out = client(base, "sk-wrong", &state, &["ls"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN)
        .args(["ls", "--server", base])
        .env_remove("FILEDOCK_KEY")
        .env("FILEDOCK_CLIENT_CONFIG", state.join("none.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = client(&format!("http://{closed}"), &key, &state, &["ls", "--json"]);
    assert_eq!(down.status.code(), Some(6));
    assert_eq!(json_lines(&down)[0]["error"]["code"], "unreachable");
    let out = client(base, &key, &state, &["upload", "/no/such/file"]);
    assert_eq!(out.status.code(), Some(1));

    // The config file, when neither flags nor environment say.
    let cfg = work.path().join("client.toml");
    std::fs::write(&cfg, format!("server = \"{base}\"\nkey = \"{key}\"\n")).unwrap();
    let out = Command::new(BIN)
        .args(["ls", "--json"])
        .env_remove("FILEDOCK_SERVER")
        .env_remove("FILEDOCK_KEY")
        .env("FILEDOCK_CLIENT_CONFIG", &cfg)
        .output()
        .unwrap();
    ok(&out);
    // The key never appears in what the client prints.
    for out in [&out, &down] {
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&key));
        assert!(!String::from_utf8_lossy(&out.stderr).contains(&key));
    }
}

#[test]
fn client_commands_on_the_embedded_default() {
    let data = tempfile::tempdir().unwrap();
    client_commands(data.path(), None);
}

#[test]
fn client_commands_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    let data = tempfile::tempdir().unwrap();
    let cfg = data.path().join("filedock.toml");
    std::fs::write(&cfg, s3_postgres_toml(&s3, &pg)).unwrap();
    client_commands(data.path(), Some(&cfg));
}

/// `cmd` in a pseudo-terminal (util-linux `script`); the terminal's output goes to `log`.
fn in_pty(cmd: &str, env: &[(&str, &str)], log: &Path) -> std::process::Child {
    let mut c = Command::new("script");
    c.args(["-q", "-f", "-e", "-c", cmd, "/dev/null"])
        .env("COLUMNS", "120")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("script(1) from util-linux")
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
            (ppid == pid).then(|| e.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

/// SIGKILLs the program `script(1)` runs (it is in a session of its own), then `script`.
fn kill_in_pty(child: &mut std::process::Child) {
    use rustix::process::{Pid, Signal, kill_process};
    let inner = children_of(child.id());
    assert!(!inner.is_empty(), "nothing runs in the terminal");
    for pid in inner {
        let pid = Pid::from_raw(pid).unwrap();
        assert!(pid.as_raw_nonzero().get() > 1);
        let _ = kill_process(pid, Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until the state dir holds a state file that `ready` accepts.
fn wait_for_state(state: &Path, ready: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = std::fs::read_dir(state).into_iter().flatten().flatten().any(|e| {
            e.path().extension().is_some_and(|x| x == "json")
                && std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .is_some_and(|v| ready(&v))
        });
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "the upload made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn resumed_at(log: &str) -> u64 {
    let i = log
        .find("resuming at ")
        .unwrap_or_else(|| panic!("no resume in: {log}"))
        + "resuming at ".len();
    log[i..].split(' ').next().unwrap().parse().unwrap()
}

/// The acceptance case: 500 MiB with a progress bar in a terminal, killed part way, then the same
/// command again resumes (not restarts) and the file is whole.
#[test]
fn a_500_mib_upload_shows_progress_in_a_terminal_and_resumes_after_a_kill() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = create_key_with(data.path(), None, "demo", "integration");
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let big = content(500 << 20, 3);
    let path = write_file(work.path(), "big500.bin", &big);
    let env = [
        ("FILEDOCK_SERVER", server.base.as_str()),
        ("FILEDOCK_KEY", key.as_str()),
        ("FILEDOCK_STATE_DIR", state.to_str().unwrap()),
    ];
    // Slowed to 100 MiB/s so that the kill lands part way whatever the machine.
    let cmd = format!("exec {BIN} upload --parallel 4 --limit-rate 100M {}", path.display());
    let log1 = work.path().join("pty1.log");
    let mut first = in_pty(&cmd, &env, &log1);
    wait_for_state(&state, |v| v["etags"].as_array().is_some_and(|e| e.len() >= 6));
    kill_in_pty(&mut first);
    let shown = String::from_utf8_lossy(&std::fs::read(&log1).unwrap()).into_owned();
    // A live bar: the name, bytes of the total, a rate, an ETA, redrawn in place.
    assert!(shown.contains("big500.bin"), "{shown}");
    assert!(shown.contains("/500.00 MiB"), "{shown}");
    assert!(shown.contains("MiB/s") && shown.contains("ETA"), "{shown}");
    assert!(shown.contains("\x1b["), "{shown}");

    let log2 = work.path().join("pty2.log");
    let mut second = in_pty(&format!("{BIN} upload --parallel 4 {}", path.display()), &env, &log2);
    assert!(second.wait().unwrap().success());
    let shown = String::from_utf8_lossy(&std::fs::read(&log2).unwrap()).into_owned();
    let from = resumed_at(&shown);
    assert!((6 * (8 << 20)..500 << 20).contains(&from), "resumed at {from}");
    println!("500 MiB: the second run resumed at {from} bytes");

    // One file, whole.
    let out = client(&server.base, &key, &state, &["ls", "--json"]);
    ok(&out);
    let files = json_lines(&out)[0]["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["size"], 500u64 << 20);
    assert_eq!(files[0]["sha256"], sha256_hex(&big));
}

/// An upload run in the background at `rate`, its output dropped (to be killed part way).
fn slow_upload(base: &str, key: &str, state: &Path, path: &Path, rate: &str) -> std::process::Child {
    Command::new(BIN)
        .args(["upload", "--limit-rate", rate, path.to_str().unwrap()])
        .env("FILEDOCK_SERVER", base)
        .env("FILEDOCK_KEY", key)
        .env("FILEDOCK_STATE_DIR", state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A tus upload killed part way resumes from the offset the server kept.
#[test]
fn a_tus_upload_resumes_after_a_kill() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = create_key_with(data.path(), None, "demo", "integration");
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let body = content(40 << 20, 4);
    let path = write_file(work.path(), "forty.bin", &body);
    let mut first = slow_upload(&server.base, &key, &state, &path, "10M");
    wait_for_state(&state, |v| v["kind"] == "tus");
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap();
    let _ = first.wait();
    let out = client(
        &server.base,
        &key,
        &state,
        &["upload", "--json", path.to_str().unwrap()],
    );
    ok(&out);
    let l = &json_lines(&out)[0];
    let from = l["resumed_from"].as_u64().unwrap();
    assert!(from > 0 && from < 40 << 20, "resumed at {from}");
    assert_eq!(l["sha256"], sha256_hex(&body));
    println!("40 MiB tus: the second run resumed at {from} bytes");
}

/// One HTTP/1.1 request head on a fresh connection to `base`; the stream, to write a body or
/// read the answer.
fn raw_request(base: &str, head: &str) -> std::net::TcpStream {
    use std::io::Write as _;
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(head.replace('\n', "\r\n").as_bytes()).unwrap();
    s
}

/// The Upload-Offset of a tus upload, by HEAD.
fn tus_offset(base: &str, key: &str, path: &str) -> u64 {
    use std::io::Read as _;
    let mut s = raw_request(
        base,
        &format!(
            "HEAD {path} HTTP/1.1\nHost: x\nAuthorization: Bearer {key}\nTus-Resumable: 1.0.0\nConnection: close\n\n"
        ),
    );
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("upload-offset: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{answer}"))
}

/// A second run that starts while the killed run's PATCH is still open on the server: its HEAD
/// sees the offset from before that PATCH, which then keeps its bytes, so the second run's PATCH
/// is refused with 409. The client asks again and goes on from where the server is.
#[test]
fn a_run_started_while_an_earlier_patch_is_still_open_goes_on_from_the_true_offset() {
    use std::io::Write as _;
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = create_key_with(data.path(), None, "demo", "integration");
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let body = content(8 << 20, 5);
    let path = write_file(work.path(), "eight.bin", &body);
    // A run that only gets as far as creating the upload and saving its state.
    let mut first = slow_upload(&server.base, &key, &state, &path, "64K");
    wait_for_state(&state, |v| v["kind"] == "tus");
    first.kill().unwrap();
    let _ = first.wait();
    let saved = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))
        .unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(saved.path()).unwrap()).unwrap();
    let url = saved["url"].as_str().unwrap();
    let upload_path = &url[url.find("/tus/").unwrap()..];
    // Wait until the killed run's own PATCH has ended on the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut start = tus_offset(&server.base, &key, upload_path);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = tus_offset(&server.base, &key, upload_path);
        if now == start {
            break;
        }
        start = now;
        assert!(Instant::now() < deadline, "the killed run's PATCH did not end");
    }
    // Another writer's PATCH, held open with 1 MiB sent: the server holds the upload's lock.
    let start = usize::try_from(start).unwrap();
    let mut held = raw_request(
        &server.base,
        &format!(
            "PATCH {upload_path} HTTP/1.1\nHost: x\nAuthorization: Bearer {key}\nTus-Resumable: 1.0.0\n\
             Upload-Offset: {start}\nContent-Type: application/offset+octet-stream\nContent-Length: {}\n\n",
            body.len() - start
        ),
    );
    held.write_all(&body[start..start + (1 << 20)]).unwrap();
    held.flush().unwrap();
    let second = Command::new(BIN)
        .args(["upload", "--json", path.to_str().unwrap()])
        .env("FILEDOCK_SERVER", &server.base)
        .env("FILEDOCK_KEY", &key)
        .env("FILEDOCK_STATE_DIR", &state)
        .env("FILEDOCK_CLIENT_CONFIG", state.join("no-such-config.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give the second run time to HEAD and to wait on the lock with its PATCH, then let the held
    // PATCH end: the server keeps the megabyte it got.
    std::thread::sleep(Duration::from_millis(1500));
    drop(held);
    let out = second.wait_with_output().unwrap();
    ok(&out);
    let l = &json_lines(&out)[0];
    assert_eq!(l["sha256"], sha256_hex(&body));
    assert_eq!(l["size"], body.len() as u64);
    assert_eq!(l["resumed_from"], (start + (1 << 20)) as u64, "{l}");
}

/// `filedock keys … --server`: keys managed over a running server's admin API, with an admin key
/// and no access to its catalog.
#[test]
fn keys_over_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = create_key_with(&data, None, "demo", "admin");
    let server = Server::start(&data);
    let elsewhere = dir.path().join("elsewhere"); // no catalog here
    let keys = |args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&elsewhere)
            .arg("keys")
            .args(args)
            .args(["--server", &server.base])
            .env("FILEDOCK_ADMIN_KEY", &admin)
            .env_remove("FILEDOCK_CONFIG")
            .output()
            .unwrap()
    };
    let made = keys(&["create", "--kind", "integration", "--name", "ci"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let out = String::from_utf8(made.stdout).unwrap();
    let secret = out.lines().last().unwrap().to_owned();
    assert!(secret.starts_with("sk-") && out.contains("for project demo"), "{out}");
    let http = reqwest::blocking::Client::new();
    let files = |k: &str| {
        http.get(format!("{}/v1/files", server.base))
            .bearer_auth(k)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(files(&secret), 200);
    let listed = keys(&["list", "--json"]);
    let lines = String::from_utf8(listed.stdout).unwrap();
    let id = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|k| k["name"] == "ci")
        .expect("the new key is listed")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!lines.contains(&secret), "a listing never shows a secret");
    // Another project than the admin key's: refused, and nothing is left made.
    let other = keys(&["create", "--kind", "device", "--project", "other"]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("manages project 'demo'"));
    let revoked = keys(&["revoke", &id]);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert_eq!(files(&secret), 401);
    // Not an admin key: the server's refusal is shown.
    let refused = Command::new(BIN)
        .args(["keys", "list", "--server", &server.base, "--admin-key", &secret])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(!elsewhere.exists(), "no catalog was opened");
}
