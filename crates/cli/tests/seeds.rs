//! The seeds' own curl commands and Python examples against a started filedock, changed only in
//! host and credentials. They need curl, python3 and `requests`: missing ones fail the test.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use filedock_testkit::S3Server;

/// What both configurations share: Juniortree's Python example sends no key, so this agent is
/// trusted for project demo; Cyberun's example runs the img2img workflow, declared as the
/// workflows issue shows it.
const TRUSTED: &str = r#"[dialects.juniortree.trusted_agents]
fastgpt = "demo"

[[workflows]]
id = "wf_img2img"
slug = "img2img"
project = "demo"
parameters = [ { name = "input_image", type = "file", required = true },
               { name = "prompt", type = "string" } ]
"#;

/// The embedded default, plus a second local backend named like the seed's storage provider.
fn embedded() -> String {
    format!(
        "default_backend = \"local\"\n[backends.local]\ntype = \"local\"\n\
         [backends.cos]\ntype = \"local\"\nscheme = \"cos\"\nregions = [\"ap-guangzhou\"]\n{TRUSTED}"
    )
}

/// S3 (the in-process s3s-fs server) for every backend, PostgreSQL for the catalog.
fn scaled(s3: &S3Server, pg_url: &str) -> String {
    format!(
        "default_backend = \"s3\"\n[backends.s3]\n{b}\n[backends.cos]\n{b}scheme = \"cos\"\nregions = [\"ap-guangzhou\"]\n\
         [catalog]\ntype = \"postgres\"\nurl = \"{pg_url}\"\n{TRUSTED}",
        b = s3.backend_toml()
    )
}

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seeds")
}

fn run(program: &str, script: &str, base: &str, key: &str) {
    run_in(tempfile::tempdir().unwrap().path(), program, script, base, key, None);
}

/// Runs a script in a work directory (scripts that follow each other share one), with a device
/// key in `DEVICE_KEY` when given.
fn run_in(work: &Path, program: &str, script: &str, base: &str, key: &str, device_key: Option<&str>) {
    let out = Command::new(program)
        .arg(seed_dir().join(script))
        .env("BASE", base)
        .env("API_KEY", key)
        .env("DEVICE_KEY", device_key.unwrap_or(""))
        .env("WORK", work)
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

fn run_all(config_text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filedock.toml");
    std::fs::write(&config, config_text).unwrap();
    let data = dir.path().join("data");
    let key = create_key_with(&data, Some(&config), "demo", "integration");
    let device = create_key_with(&data, Some(&config), "demo", "device");
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
    // Cyberun end to end: the seed's example queues a task, a runner with a device key runs it,
    // and the client reads the output through the result's download_url.
    let work = tempfile::tempdir().unwrap();
    run_in(work.path(), "python3", "cyberun.py", &server.base, &key, None);
    run_in(
        work.path(),
        "python3",
        "cyberun_runner.py",
        &server.base,
        &key,
        Some(&device),
    );
    run_in(work.path(), "python3", "cyberun_result.py", &server.base, &key, None);
    run("bash", "huawei.sh", &server.base, &key);
}

#[test]
fn the_seed_examples_work_on_the_embedded_default() {
    run_all(&embedded());
}

#[test]
fn the_seed_examples_work_on_s3_and_postgres() {
    let s3 = S3Server::start();
    let Some(pg) = postgres_database() else { return };
    run_all(&scaled(&s3, &pg));
}
