//! Taking a file from a URL, for the native route and the MCP tool alike: vet, then stream the
//! body through the same checks as any upload — while the request waits (bounded; the refusals
//! and the source's errors are the request's answer), or in the background with a pending file
//! answered at once (what goes wrong later fails the file, with its reason).

use std::sync::Arc;
use std::time::Duration;

use filedock_core::files::KeyLayout;
use filedock_core::{Class, Error, FileName, FileRecord, FileService, NewFile, Principal};

use super::{Fetcher, last_segment, origin_of};

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
    let mut new = NewFile::named(FileName::new("download")?);
    new.class = req.class;
    new.ttl_secs = req.ttl_secs;
    new.policy = req.policy;
    new.key = KeyLayout::Native;
    new.origin = Some(origin_of(&url));
    let secs = if req.background {
        fetch.config.async_timeout_secs
    } else {
        fetch.config.sync_timeout_secs
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs.max(1));
    if req.background {
        // Answered before the source is asked: the name cannot wait for its headers.
        fetch.precheck(&url).await?;
        new.name = FileName::new(
            req.name
                .or_else(|| last_segment(&url))
                .unwrap_or_else(|| "download".into()),
        )?;
        let announced = files.announce(who, new).await?;
        let rec = announced.record().clone();
        let (files, fetch) = (files.clone(), fetch.clone());
        tokio::spawn(async move {
            let done = match fetch.open(url).await {
                Ok(opened) => {
                    let length = opened.length;
                    files.fill(announced, length, opened.body(deadline)).await.map(|_| ())
                }
                Err(e) => {
                    files.abandon(announced, &e).await;
                    Err(e)
                }
            };
            if let Err(e) = done {
                tracing::info!(
                    code = e.code(),
                    "a background fetch from a URL failed; the file is failed"
                );
            }
        });
        return Ok(rec);
    }
    let opened = fetch.open(url).await?;
    if let Some(n) = req.name.or_else(|| opened.name.clone()) {
        new.name = FileName::new(n)?;
    }
    new.declared_type = opened.content_type.clone();
    // The announced length is checked against the policy before a byte is read, and then held
    // to: a source that sends more or less fails.
    new.size_hint = opened.length;
    let length = opened.length;
    files.upload(who, new, opened.body(deadline)).await.inspect_err(|e| {
        tracing::info!(code = e.code(), length, "a fetch from a URL was refused");
    })
}
