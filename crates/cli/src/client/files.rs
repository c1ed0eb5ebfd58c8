//! `filedock ls`, `get`, `rm` and `link`.

use std::io::Write;
use std::path::PathBuf;

use filedock_server::dialects::native::{FileList, FileView, LinkResponse};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Api, Failure, byte_bar};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `3s`, `5m`, `2h`, `4d`.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `1.5 MiB`.
fn size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

pub async fn ls(api: &Api, limit: Option<usize>) -> Result<(), Failure> {
    let mut files: Vec<FileView> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = api.request(Method::GET, "/v1/files");
        let want = limit.map(|l| l.saturating_sub(files.len()).min(1000)).unwrap_or(1000);
        req = req.query(&[("limit", want.to_string())]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let page: FileList = api.send_json(req).await?;
        files.extend(page.files);
        cursor = page.next_cursor;
        if cursor.is_none() || limit.is_some_and(|l| files.len() >= l) {
            break;
        }
    }
    if let Some(l) = limit {
        files.truncate(l);
    }
    if api.json {
        println!("{}", serde_json::json!({ "files": files }));
        return Ok(());
    }
    let t = now();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<36}  {:>10}  {:<24}  {:>5}  {:>7}  NAME",
        "ID", "SIZE", "TYPE", "AGE", "EXPIRES"
    );
    for f in &files {
        let expires = f.expires_at.map(|e| age(e - t)).unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(
            out,
            "{:<36}  {:>10}  {:<24}  {:>5}  {:>7}  {}{}",
            f.id,
            f.size.map(size).unwrap_or_else(|| "-".to_owned()),
            f.content_type,
            age(t - f.created_at),
            expires,
            f.name,
            if f.status == "ready" { "" } else { " (pending)" }
        );
    }
    Ok(())
}

/// Downloads into `<output>.part`, resuming with Range from its length, checks the SHA-256 the
/// server recorded, then renames it into place.
pub async fn get(api: &Api, id: &str, output: Option<PathBuf>) -> Result<(), Failure> {
    let view: FileView = api
        .send_json(api.request(Method::GET, &format!("/v1/files/{id}")))
        .await?;
    let to_stdout = output.as_deref().is_some_and(|p| p.as_os_str() == "-");
    // The server refuses names with a path in them; a name is safe to use in this directory.
    let out = output.unwrap_or_else(|| PathBuf::from(&view.name));
    let part = part_path(&out);
    let have = if to_stdout {
        0
    } else {
        tokio::fs::metadata(&part).await.map(|m| m.len()).unwrap_or(0)
    };
    let resp = request_from(api, id, have).await?;
    let (resp, start) = if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE && view.size == Some(have) {
        (None, have)
    } else {
        let resp = super::checked(resp).await?;
        let start = if resp.status() == StatusCode::PARTIAL_CONTENT {
            have
        } else {
            0
        };
        (Some(resp), start)
    };
    let total = view.size.unwrap_or(0);
    let bars = api.bars();
    let pb = byte_bar(&bars, total, view.name.clone());
    pb.set_position(start);
    let mut hasher = Sha256::new();
    if start > 0 {
        // Hash what is already here, so the whole file is checked.
        let mut f = std::fs::File::open(&part).map_err(|e| Failure::io(part.display(), e))?;
        super::hash_reader(&mut f, &mut hasher, start).map_err(|e| Failure::io(part.display(), e))?;
    }
    let written = match resp {
        Some(resp) => {
            let to = if to_stdout {
                Sink::Stdout
            } else {
                Sink::File(&part, start)
            };
            write_body(resp, to, &mut hasher, &pb, start).await?
        }
        None => start,
    };
    pb.finish();
    if view.size.is_some_and(|s| s != written) {
        return Err(Failure::new(
            "unreachable",
            format!("the download stopped at {written} of {total} bytes; run the same command again to resume"),
        ));
    }
    let local = hex::encode(hasher.finalize());
    if let Some(remote) = &view.sha256
        && !remote.eq_ignore_ascii_case(&local)
    {
        if !to_stdout {
            let _ = std::fs::remove_file(&part);
        }
        return Err(Failure::new(
            "integrity",
            format!("the download has SHA-256 {local}, the server recorded {remote}; removed it"),
        ));
    }
    if !to_stdout {
        std::fs::rename(&part, &out).map_err(|e| Failure::io(out.display(), e))?;
    }
    if api.json {
        println!(
            "{}",
            serde_json::json!({"id": view.id, "path": if to_stdout { "-".to_owned() } else { out.display().to_string() },
                "size": written, "sha256": local, "resumed_from": start})
        );
    } else if !to_stdout {
        println!("{}  {}", out.display(), size(written));
    }
    Ok(())
}

/// Where a download to `out` is written until it is whole and checked.
fn part_path(out: &std::path::Path) -> PathBuf {
    let mut s = out.to_path_buf().into_os_string();
    s.push(".part");
    PathBuf::from(s)
}

/// Asks for a file's bytes from offset `have` on (all of them when 0).
async fn request_from(api: &Api, id: &str, have: u64) -> Result<reqwest::Response, Failure> {
    let mut req = api.request(Method::GET, &format!("/v1/files/{id}/content"));
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    Ok(req.send().await?)
}

/// Where a download goes: standard output, or the `.part` file, appended from `start`.
enum Sink<'a> {
    Stdout,
    File(&'a std::path::Path, u64),
}

/// Streams a download's body into its sink, hashing it and moving the bar; returns where the
/// file now ends.
async fn write_body(
    resp: reqwest::Response,
    to: Sink<'_>,
    hasher: &mut Sha256,
    pb: &indicatif::ProgressBar,
    start: u64,
) -> Result<u64, Failure> {
    let (mut sink, part): (Box<dyn tokio::io::AsyncWrite + Unpin + Send>, _) = match to {
        Sink::Stdout => (Box::new(tokio::io::stdout()), std::path::Path::new("-")),
        Sink::File(part, start) => {
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(start > 0)
                .write(true)
                .truncate(start == 0)
                .open(part)
                .await
                .map_err(|e| Failure::io(part.display(), e))?;
            (Box::new(f), part)
        }
    };
    let mut written = start;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        sink.write_all(&chunk)
            .await
            .map_err(|e| Failure::io(part.display(), e))?;
        written += chunk.len() as u64;
        pb.set_position(written);
    }
    sink.flush().await.map_err(|e| Failure::io(part.display(), e))?;
    Ok(written)
}

pub async fn rm(api: &Api, id: &str) -> Result<(), Failure> {
    api.send(api.request(Method::DELETE, &format!("/v1/files/{id}")))
        .await?;
    if api.json {
        println!("{}", serde_json::json!({"id": id, "deleted": true}));
    } else {
        println!("deleted {id}");
    }
    Ok(())
}

pub async fn link(api: &Api, id: &str, ttl: u64) -> Result<(), Failure> {
    let link: LinkResponse = api
        .send_json(
            api.request(Method::POST, &format!("/v1/files/{id}/links"))
                .json(&serde_json::json!({ "ttl_seconds": ttl })),
        )
        .await?;
    if api.json {
        println!(
            "{}",
            serde_json::json!({"id": id, "url": link.url, "expires_at": link.expires_at})
        );
    } else {
        println!("{}", link.url);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human() {
        assert_eq!(size(5), "5 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(500 << 20), "500.0 MiB");
        assert_eq!(age(59), "59s");
        assert_eq!(age(3600), "1h");
        assert_eq!(age(-5), "0s");
    }
}
