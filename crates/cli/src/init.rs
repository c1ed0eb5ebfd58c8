//! `filedock init`: a commented config (`docs/deploy/filedock.toml`) and a fresh signing key, in
//! a directory, for one instance or the first of a fleet. Nothing existing is overwritten.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// The config `init` writes; `@DATA_DIR@` and `@SIGNING_KEY@` are filled in.
const TEMPLATE: &str = include_str!("../../../docs/deploy/filedock.toml");

/// Writes `<dir>/filedock.toml` and `<dir>/signing.key` (data under `<dir>/data` unless given).
pub fn run(dir: &Path, data_dir: Option<&Path>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let config = dir.join("filedock.toml");
    let key = dir.join("signing.key");
    for p in [&config, &key] {
        anyhow::ensure!(!p.exists(), "{} exists; init never overwrites", p.display());
    }
    let data = data_dir.map_or_else(|| dir.join("data"), Path::to_path_buf);
    let secret = hex::encode(filedock_core::auth::random_bytes::<32>()?);
    write_new(&key, secret.as_bytes())?;
    let text = TEMPLATE
        .replace("@DATA_DIR@", &toml_escape(&data.display().to_string()))
        .replace("@SIGNING_KEY@", &toml_escape(&key.display().to_string()));
    write_new(&config, text.as_bytes())?;
    println!("wrote {} and {} (0600)", config.display(), key.display());
    println!("start it: filedock --config {} serve", config.display());
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
