//! Taking a file from a URL, for the native route and the MCP tool alike: vet, open (the
//! refusals and the source's errors are the request's answer), then stream the body through the
//! same checks as any upload — while the request waits (bounded), or in the background with a
//! pending file answered at once.

use filedock_core::files::KeyLayout;
use filedock_core::{Class, Error, FileName, FileRecord, NewFile, Principal};

use std::sync::Arc;

use filedock_core::FileService;

use super::Fetcher;

/// What to fetch and how to keep it.
#[derive(Debug, Clone)]
pub struct FromUrl {
    pub url: String,
    pub name: Option<String>,
    pub class: Class,
    pub ttl_secs: Option<u64>,
    /// Answer at once with a pending file; the bytes follow in the background.
    pub background: bool,
    /// The upload policy (`native`).
    pub policy: String,
}

/// Fetches `req.url` into a new file of `who`'s project. Returns the file: ready, or (in the
/// background form) pending.
pub async fn take(
    files: &Arc<FileService>,
    fetch: &Fetcher,
    who: &Principal,
    req: FromUrl,
) -> Result<FileRecord, Error> {
    let url = fetch.vet(&req.url)?;
    let origin = crate::fetch::origin_of(&url);
    let opened = fetch.open(url).await?;
    let name = match req.name.or_else(|| opened.name.clone()) {
        Some(n) => FileName::new(n)?,
        None => FileName::new("download")?,
    };
    let mut new = NewFile::named(name);
    new.class = req.class;
    new.ttl_secs = req.ttl_secs;
    new.policy = req.policy;
    new.key = KeyLayout::Native;
    new.declared_type = opened.content_type.clone();
    new.origin = Some(origin);
    // The announced length is checked against the policy before a byte is read, and then held
    // to: a source that sends more or less fails.
    new.size_hint = opened.length;
    let secs = if req.background {
        fetch.config.async_timeout_secs
    } else {
        fetch.config.sync_timeout_secs
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs.max(1));
    if !req.background {
        let length = opened.length;
        return files.upload(who, new, opened.body(deadline)).await.inspect_err(|e| {
            tracing::info!(code = e.code(), length, "a fetch from a URL was refused");
        });
    }
    let announced = files.announce(who, new).await?;
    let rec = announced.record().clone();
    let files = files.clone();
    let length = opened.length;
    tokio::spawn(async move {
        if let Err(e) = files.fill(announced, length, opened.body(deadline)).await {
            tracing::info!(
                code = e.code(),
                "a background fetch from a URL failed; the file is failed"
            );
        }
    });
    Ok(rec)
}
