//! The seeds' own curl commands and Python examples against a started filedock, changed only in
//! host and credentials. They need curl, python3 and `requests`: missing ones fail the test.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const CONFIG: &str = r#"
# Two backends, as a TokenOps deployment has: the default, and one named like the seed's
# storage provider (COS), here on local disk too.
default_backend = "local"

[backends.local]
type = "local"

[backends.cos]
type = "local"
scheme = "cos"
regions = ["ap-guangzhou"]

# Juniortree's Python example sends no key: this agent is trusted for project demo.
[dialects.juniortree.trusted_agents]
fastgpt = "demo"
"#;

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds")
}

fn run(program: &str, script: &str, base: &str, key: &str) {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(program)
        .arg(seed_dir().join(script))
        .env("BASE", base)
        .env("API_KEY", key)
        .env("WORK", work.path())
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed to run the seed examples: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    println!("{text}");
}

#[test]
fn the_seed_examples_work_unchanged_but_for_host_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filedock.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .args(["keys", "create", "--project", "demo", "--kind", "integration"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let server = Server::start_with(&data, Some(&config));
    let ok = Command::new("python3")
        .args(["-c", "import requests"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with the requests package is needed to run the seed examples"
    );
    run("bash", "tokenops.sh", &server.base, &key);
    run("bash", "juniortree.sh", &server.base, &key);
    run("python3", "juniortree.py", &server.base, &key);
    run("python3", "cyberun.py", &server.base, &key);
    run("bash", "huawei.sh", &server.base, &key);
}
