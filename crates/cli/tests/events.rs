//! Webhooks end to end on the real binary: a receiver on loopback gets every event exactly once,
//! with a valid signature, although it refused the first attempts and filedock was SIGKILLed
//! and restarted in between (the deliveries wait in the catalog). Also: the retention sweep in
//! the running server, as a `file.deleted` event.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

const SECRET: &str = "whsec-test-0123456789abcdef";

/// One request the receiver got: the event id and type, whether its signature held, and what
/// the receiver answered.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    event: String,
    signed_ok: bool,
    answered: u16,
    body: Value,
}

/// A tiny HTTP/1.1 receiver: answers 503 until `accept` is set, then 200.
struct Receiver {
    url: String,
    accept: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let accept = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let (a, g) = (accept.clone(), got.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = BTreeMap::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
                let len: usize = headers["content-length"].parse().unwrap();
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                let ts = &headers["filedock-timestamp"];
                let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(format!("{ts}.{body}").as_bytes());
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let fresh = (ts.parse::<i64>().unwrap()
                    - std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64)
                    .abs()
                    < 300;
                let answered = if a.load(Ordering::SeqCst) { 200 } else { 503 };
                g.lock().unwrap().push(Received {
                    event_id: headers["filedock-event-id"].clone(),
                    event: headers["filedock-event"].clone(),
                    signed_ok: headers["filedock-signature"] == expected && fresh,
                    answered,
                    body: serde_json::from_str(&body).unwrap(),
                });
                let reason = if answered == 200 { "OK" } else { "Service Unavailable" };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {answered} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, accept, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until `done` holds for what was received.
    fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Received]) -> bool) {
        let start = Instant::now();
        while !done(&self.received()) {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}: {:#?}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_webhook_receiver_gets_each_event_exactly_once_across_a_crash() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filedock.toml");
    std::fs::write(
        &config,
        format!(
            "sweep_interval_secs = 1\n\
             [webhook_delivery]\nretry_base_secs = 1\ntimeout_secs = 2\n\
             [projects.demo.retention]\ninput_secs = 3\nasset_secs = 0\n\
             [[projects.demo.webhooks]]\nname = \"receiver\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\
             [[workflows]]\nid = \"wf_echo\"\nproject = \"demo\"\nparameters = [ {{ name = \"text\", type = \"string\" }} ]\n",
            receiver.url
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let sk = create_key_with(&data, Some(&config), "demo", "integration");
    let dk = create_key_with(&data, Some(&config), "demo", "device");
    let server = Server::start_with(&data, Some(&config));
    let http = reqwest::blocking::Client::new();
    let base = server.base.clone();

    // file.ready and file.deleted; task.failed and task.succeeded.
    let up: Value = http
        .post(format!("{base}/v1/files?name=a.txt&class=asset"))
        .bearer_auth(&sk)
        .body("hello")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = up["id"].as_str().unwrap();
    let del = http
        .delete(format!("{base}/v1/files/{id}"))
        .bearer_auth(&sk)
        .send()
        .unwrap();
    assert_eq!(del.status(), 204);
    let mut tasks = Vec::new();
    for (i, end) in ["fail", "complete"].iter().enumerate() {
        let t: Value = http
            .post(format!("{base}/api/v1/r/workflows/wf_echo/run"))
            .bearer_auth(&sk)
            .json(&json!({"parameters": {"text": format!("run {i}")}}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let task_id = t["task_id"].as_str().unwrap().to_owned();
        let c = http
            .post(format!("{base}/api/v1/r/tasks/claim"))
            .bearer_auth(&dk)
            .send()
            .unwrap();
        assert_eq!(c.status(), 200);
        let body = if *end == "fail" {
            json!({"reason": "no GPU"})
        } else {
            json!({"outputs": []})
        };
        let r = http
            .post(format!("{base}/api/v1/r/tasks/{task_id}/{end}"))
            .bearer_auth(&dk)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
        tasks.push(task_id);
    }
    let wanted = ["file.ready", "file.deleted", "task.failed", "task.succeeded"];

    // The receiver refuses: every event is tried, and retried.
    receiver.wait_for(
        Duration::from_secs(20),
        "a first attempt of every event, and a retry",
        |got| {
            wanted.iter().all(|w| got.iter().any(|r| r.event == *w))
                && got
                    .iter()
                    .any(|r| got.iter().filter(|s| s.event_id == r.event_id).count() >= 2)
        },
    );

    // Crash, the receiver comes back, filedock restarts on the same catalog.
    server.signal("KILL");
    drop(server);
    receiver.accept.store(true, Ordering::SeqCst);
    let server = Server::start_with(&data, Some(&config));
    receiver.wait_for(Duration::from_secs(30), "every event acknowledged", |got| {
        wanted
            .iter()
            .all(|w| got.iter().any(|r| r.event == *w && r.answered == 200))
    });

    // An input uploaded now expires after 3 s; the running server's sweep deletes it.
    let short: Value = http
        .post(format!("{}/v1/files?name=short.txt", server.base))
        .bearer_auth(&sk)
        .body("brief")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let short_id = short["id"].as_str().unwrap().to_owned();
    receiver.wait_for(Duration::from_secs(30), "the sweep's file.deleted", |got| {
        got.iter().any(|r| {
            r.event == "file.deleted" && r.body["data"]["file"]["id"] == short_id.as_str() && r.answered == 200
        })
    });
    let gone = http
        .get(format!("{}/v1/files/{short_id}", server.base))
        .bearer_auth(&sk)
        .send()
        .unwrap();
    assert_eq!(gone.status(), 404);
    std::thread::sleep(Duration::from_secs(3));

    let got = receiver.received();
    assert!(
        got.iter().all(|r| r.signed_ok),
        "every signature valid and fresh: {got:#?}"
    );
    let mut acked: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in got.iter().filter(|r| r.answered == 200) {
        acked.entry(r.event_id.as_str()).or_default().push(r.event.as_str());
    }
    assert!(
        acked.values().all(|v| v.len() == 1),
        "each event acknowledged exactly once: {acked:?}"
    );
    let mut kinds: Vec<&str> = acked.values().map(|v| v[0]).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "file.deleted",
            "file.deleted",
            "file.ready",
            "file.ready",
            "task.failed",
            "task.succeeded"
        ],
        "a.txt's ready and deleted, the two tasks, short.txt's ready and swept"
    );
    let failed = got.iter().find(|r| r.event == "task.failed").unwrap();
    assert_eq!(failed.body["data"]["task"]["id"], tasks[0].as_str());
    assert_eq!(failed.body["data"]["task"]["error"], "no GPU");
    assert_eq!(failed.body["project"], "demo");
}
