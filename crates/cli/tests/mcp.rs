//! The MCP server at `/mcp`, driven by the official MCP Python SDK (`mcp` from PyPI, pinned by
//! `scripts/mcp-sdk`) against the real binary, on the embedded default and on S3 + PostgreSQL:
//! every tool, resources, a wrong key, another project's file, a too-large upload, a
//! rate-limited call, a refused URL, idempotent retries (`clients/mcp_client.py` lists them).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, create_key_with, postgres_database, s3_postgres_toml};
use filedock_testkit::S3Server;

/// The SDK's python: `TEST_MCP_PYTHON` (scripts/test sets it). In CI it must be there.
fn sdk_python() -> Option<String> {
    match std::env::var("TEST_MCP_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("CI").is_ok() => panic!("TEST_MCP_PYTHON is not set: run scripts/mcp-sdk"),
        Err(_) => {
            eprintln!("skipped: TEST_MCP_PYTHON is not set (export TEST_MCP_PYTHON=$(scripts/mcp-sdk))");
            None
        }
    }
}

const CONFIG: &str = r#"
[fetch]
allow = ["127.0.0.1/32"]

[policies.native]
max_size = 2097152

[[workflows]]
id = "wf_echo"
slug = "echo"
project = "demo"
parameters = [ { name = "text", type = "string", required = true }, { name = "doc", type = "file" } ]

[projects.limited.limits]
requests_per_second = 1
burst = 2
"#;

fn drive(data: &Path, extra: &str) {
    let Some(python) = sdk_python() else { return };
    let cfg = data.join("filedock.toml");
    std::fs::write(&cfg, format!("{extra}\n{CONFIG}")).unwrap();
    let key = create_key_with(data, Some(&cfg), "demo", "integration");
    let other = create_key_with(data, Some(&cfg), "other", "integration");
    let limited = create_key_with(data, Some(&cfg), "limited", "integration");
    let server = Server::start_with(data, Some(&cfg));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mcp_client.py");
    let out = Command::new(python)
        .args([script, &server.base, &key, &other, &limited])
        .output()
        .expect("run the MCP client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the MCP client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let n: u32 = last
        .strip_prefix("ok: ")
        .and_then(|s| s.strip_suffix(" checks"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    assert!(n >= 60, "{n} checks ran: {stdout}");
    eprintln!("the MCP client: {last}");
}

#[test]
fn the_python_sdk_uses_every_tool_on_the_embedded_default() {
    let data = tempfile::tempdir().unwrap();
    drive(data.path(), "");
}

#[test]
fn the_python_sdk_uses_every_tool_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    let data = tempfile::tempdir().unwrap();
    drive(data.path(), &s3_postgres_toml(&s3, &pg));
}
