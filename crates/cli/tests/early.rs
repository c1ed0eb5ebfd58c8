//! Refusals answered before the body is read reach clients that send the whole body first
//! (issue 22): Node's built-in fetch, 20 of 20 times, on every upload route (the lingering close
//! in `server/src/linger.rs`). Needs `node` (Node 18 or later): missing, the test fails.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Every policy at `max` bytes: 1 MiB makes 5–50 MiB bodies too large; 100 MiB lets the type
/// be refused.
fn config(max: u64) -> String {
    format!(
        r#"
[policies.native]
max_size = {max}
[policies.tokenops]
max_size = {max}
[policies.huawei]
max_size = {max}
allow = ["txt", "pdf"]
[policies.juniortree]
max_size = {max}
allow = ["txt", "png"]
[policies.tus]
max_size = {max}
[limits]
requests_per_second = 0
"#
    )
}

#[test]
fn node_fetch_reads_refusals_of_keys_offsets_and_sizes() {
    node_reads(1 << 20, "401,403,409,413", 11);
}

#[test]
fn node_fetch_reads_refusals_of_types() {
    node_reads(100 << 20, "415", 3);
}

/// Runs the Node script's cases with these statuses against a server with these limits.
fn node_reads(max: u64, cases: &str, count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("filedock.toml");
    std::fs::write(&file, config(max)).unwrap();
    let config = file;
    let data = dir.path().join("data");
    let key = create_key_with(&data, Some(&config), "demo", "integration");
    let server = Server::start_with(&data, Some(&config));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/refusals.mjs");
    let out = Command::new("node")
        .arg(script)
        .env("BASE", &server.base)
        .env("KEY", &key)
        .env("CASES", cases)
        .output()
        .expect("node (Node.js 18 or later) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "some refusals could not be read:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.contains(": 20 of 20 read")).count(),
        count,
        "{stdout}"
    );
}
