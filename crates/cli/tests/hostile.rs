//! Hostile clients on a real socket: idle and slow connections are closed after the header
//! timeout, a stalled body gets 408 after the body timeout, a Content-Length that lies either way
//! never stores more or less than was declared, chunked bodies are taken whole or not at all.
//! Both flavours; the timeouts are set to 1 s here (30 s and 60 s by default).

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use filedock_testkit::S3Server;
use serde_json::Value;
use sha2::Digest;

/// Reads until the server closes the connection or `limit` passes; returns what came and when
/// the connection ended (`None` if it was still open at `limit`).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), Some(start.elapsed())),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), None)
}

fn status_of(answer: &str) -> Option<u16> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://")).unwrap()
}

fn files(base: &str, key: &str) -> Vec<Value> {
    let v: Value = reqwest::blocking::Client::new()
        .get(format!("{base}/v1/files"))
        .bearer_auth(key)
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["files"].as_array().unwrap().clone()
}

fn hostile_clients(flavour: &str, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("filedock.toml");
    std::fs::write(
        &cfg,
        format!("header_timeout_secs = 1\nbody_timeout_secs = 1\n{backend}"),
    )
    .unwrap();
    let key = create_key_with(&data, Some(&cfg), "hostile", "integration");
    let server = Server::start_with(&data, Some(&cfg));
    let base = server.base.clone();
    let head = |extra: &str| {
        format!("POST /v1/files?name=x.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n{extra}\r\n")
    };
    let mut tried = 0;

    // An idle connection, and one that sends its headers a byte at a time: both closed.
    tried += 1;
    let mut idle = connect(&base);
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(4)),
        "{flavour}: an idle connection is closed: {closed:?}"
    );

    tried += 1;
    let mut slow = connect(&base);
    let start = Instant::now();
    let mut dropped = None;
    for b in head("").bytes().chain(std::iter::repeat(b'x')).take(200) {
        if slow.write_all(&[b]).is_err() {
            dropped = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let (_, closed) = read_until_closed(&mut slow, Duration::from_millis(1));
        if closed.is_some() {
            dropped = Some(start.elapsed());
            break;
        }
    }
    assert!(
        dropped.is_some_and(|t| t < Duration::from_secs(5)),
        "{flavour}: a client trickling its headers is cut off: {dropped:?}"
    );

    // A body that stalls: 408 after the body timeout, nothing stored.
    tried += 1;
    let mut stall = connect(&base);
    stall.write_all(head("Content-Length: 1000\r\n").as_bytes()).unwrap();
    stall.write_all(b"0123456789").unwrap();
    let (answer, closed) = read_until_closed(&mut stall, Duration::from_secs(6));
    assert_eq!(status_of(&answer), Some(408), "{flavour}: {answer}");
    assert!(closed.is_some(), "{flavour}: the stalled connection is closed");

    // Content-Length larger than the body (the client hangs up): 400, nothing stored.
    tried += 1;
    let mut short = connect(&base);
    short.write_all(head("Content-Length: 1000\r\n").as_bytes()).unwrap();
    short.write_all(b"0123456789").unwrap();
    short.shutdown(Shutdown::Write).unwrap();
    let (answer, _) = read_until_closed(&mut short, Duration::from_secs(5));
    assert!(
        answer.is_empty() || status_of(&answer).is_some_and(|s| (400..500).contains(&s)),
        "{flavour}: {answer}"
    );

    // Content-Length smaller than what follows: exactly the declared bytes are the file, and
    // the rest is not a request.
    tried += 1;
    let mut long = connect(&base);
    long.write_all(head("Content-Length: 5\r\n").as_bytes()).unwrap();
    long.write_all(b"helloGARBAGE-NOT-HTTP\r\n\r\n").unwrap();
    let (answer, _) = read_until_closed(&mut long, Duration::from_secs(5));
    // hyper may see the garbage and drop the connection before the upload answers (then the
    // upload is abandoned, nothing stored); if it answers, the file is exactly the 5 bytes.
    let stored_hello = status_of(&answer) == Some(201);
    if stored_hello {
        assert!(
            answer.contains(&hex::encode(sha2::Sha256::digest(b"hello"))),
            "{flavour}: {answer}"
        );
        assert!(
            answer.contains("HTTP/1.1 400"),
            "{flavour}: the trailing bytes are refused: {answer}"
        );
    } else {
        assert!(
            answer.is_empty() || status_of(&answer) == Some(400),
            "{flavour}: {answer}"
        );
    }

    // Chunked: a well-formed body is taken whole; a malformed one is refused.
    tried += 1;
    let mut chunked = connect(&base);
    chunked
        .write_all(head("Transfer-Encoding: chunked\r\nConnection: close\r\n").as_bytes())
        .unwrap();
    chunked
        .write_all(b"5\r\nchunk\r\n6\r\ned bod\r\n1\r\ny\r\n0\r\n\r\n")
        .unwrap();
    let (answer, _) = read_until_closed(&mut chunked, Duration::from_secs(5));
    assert_eq!(status_of(&answer), Some(201), "{flavour}: {answer}");
    assert!(
        answer.contains(&hex::encode(sha2::Sha256::digest(b"chunked body"))),
        "{answer}"
    );

    for (what, bad) in [
        ("bad chunk size", &b"zz\r\nhello\r\n0\r\n\r\n"[..]),
        ("chunk longer than its size", b"2\r\nhello\r\n0\r\n\r\n"),
        ("no last chunk", b"5\r\nhello\r\n"),
    ] {
        tried += 1;
        let mut s = connect(&base);
        s.write_all(head("Transfer-Encoding: chunked\r\n").as_bytes()).unwrap();
        s.write_all(bad).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (answer, _) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(
            answer.is_empty() || status_of(&answer).is_some_and(|s| (400..500).contains(&s)),
            "{flavour}: {what}: {answer}"
        );
    }

    // Both Content-Length and Transfer-Encoding (request smuggling): 400 and the connection
    // closed, in either order, also after an honest request on the same connection; no handler
    // runs (no file is stored, checked at the end).
    for both in [
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n",
    ] {
        for after_honest in [false, true] {
            tried += 1;
            let mut s = connect(&base);
            if after_honest {
                s.write_all(
                    format!("GET /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n").as_bytes(),
                )
                .unwrap();
            }
            s.write_all(head(both).as_bytes()).unwrap();
            s.write_all(b"5\r\nhello\r\n0\r\n\r\n").unwrap();
            let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(5));
            assert!(
                closed.is_some(),
                "{flavour}: {both:?}: the connection stays open: {answer}"
            );
            let last = match answer.rfind("HTTP/1.1 ") {
                Some(at) => &answer[at..],
                None => "",
            };
            assert_eq!(status_of(last), Some(400), "{flavour}: {both:?}: {answer}");
            if after_honest {
                assert_eq!(status_of(&answer), Some(200), "{flavour}: {answer}");
            }
        }
    }

    // Oversized headers: refused before any handler runs.
    tried += 1;
    let mut big = connect(&base);
    let _ = big.write_all(head(&format!("X-Big: {}\r\n", "a".repeat(1 << 20))).as_bytes());
    let (answer, _) = read_until_closed(&mut big, Duration::from_secs(5));
    assert!(
        answer.is_empty() || status_of(&answer).is_some_and(|s| s == 431 || s == 400),
        "{flavour}: a 1 MiB header: {answer}"
    );

    // Only the two honest uploads are files; the server still serves.
    let listed = files(&base, &key);
    let mut sizes: Vec<u64> = listed.iter().map(|f| f["size"].as_u64().unwrap()).collect();
    sizes.sort();
    let honest = if stored_hello { vec![5, 12] } else { vec![12] };
    assert_eq!(sizes, honest, "{flavour}: {listed:?}");
    let tmp = data.join("blobs").join("local").join("tmp");
    if tmp.exists() {
        assert_eq!(
            std::fs::read_dir(&tmp).unwrap().count(),
            0,
            "{flavour}: no temp file is left"
        );
    }
    eprintln!(
        "{flavour}: {tried} hostile connections, each cut off or refused, {} honest files stored",
        honest.len()
    );
}

#[test]
fn hostile_clients_on_the_embedded_default() {
    hostile_clients("embedded", "");
}

#[test]
fn hostile_clients_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    hostile_clients("S3 + PostgreSQL", &s3_postgres_toml(&s3, &pg));
}
