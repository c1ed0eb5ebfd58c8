//! The seeds' own curl commands and Python examples against a started filedock, changed only in
//! host and credentials. They need curl, python3 and `requests`: missing ones fail the test.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use filedock_testkit::S3Server;

/// What both configurations share: Juniortree's Python example sends no key, so this agent is
/// trusted for project demo.
const TRUSTED: &str = "[dialects.juniortree.trusted_agents]\nfastgpt = \"demo\"\n";

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

fn run_all(config_text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("filedock.toml");
    std::fs::write(&config, config_text).unwrap();
    let data = dir.path().join("data");
    let key = create_key_with(&data, Some(&config), "demo", "integration");
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
