//! `filedock upload FILE...`: each file goes as a tus upload (one streaming PATCH, resumed from
//! the server's offset), or, from `--multipart-threshold` up, as a native multipart upload with
//! `--parallel` parts in flight, each PUT to the URL the server presigned (straight to S3 on
//! that backend). Which upload a file is part of is kept in a small state file, so running the
//! same command again after an interruption resumes instead of starting over. When the server
//! knows the file's SHA-256, the local file is hashed and compared.

use common::Meter;
use common::StateFile;
use common::Throttle;
use common::parse_rate;
use common::sha256_file;
use multipart::multipart;
use tus::tus;
mod common;
mod multipart;
mod tus;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use filedock_server::dialects::native::FileView;
use futures_util::StreamExt;

use super::{Api, Connection, Failure, byte_bar, checked};

/// `filedock upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// The files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Files of at least this many bytes go as parallel multipart uploads (default 64 MiB).
    #[arg(long, default_value_t = 64 << 20)]
    pub multipart_threshold: u64,
    /// Parts of one multipart upload in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Files uploaded at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub jobs: u16,
    /// At most this many bytes per second in all (a number with K, M or G: 500K, 20M).
    #[arg(long, value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
}

/// Runs `filedock upload`.
pub async fn run(args: UploadArgs) -> Result<(), Failure> {
    let api = Api::connect(&args.conn)?;
    let files = local_files(&args.files)?;
    let bars = api.bars();
    let total: u64 = files.iter().map(|(_, _, m)| m.len()).sum();
    let overall = (files.len() > 1).then(|| byte_bar(&bars, total, format!("{} files", files.len())));
    let count = files.len();
    let throttle = args.limit_rate.map(|rate| {
        Arc::new(Throttle {
            rate,
            start: std::time::Instant::now(),
            sent: Default::default(),
        })
    });
    let results = futures_util::stream::iter(files)
        .map(|(path, name, meta)| {
            let api = &api;
            let meter = Meter {
                file: byte_bar(&bars, meta.len(), name.clone()),
                overall: overall.clone(),
                bars: bars.clone(),
                json: api.json,
                throttle: throttle.clone(),
            };
            let args = &args;
            async move {
                let r = upload_one(api, meter, args, &path, &name, &meta).await;
                (path, r)
            }
        })
        .buffered(usize::from(args.jobs))
        .collect::<Vec<_>>()
        .await;
    if let Some(o) = overall {
        o.finish();
    }
    let mut failed: Option<Failure> = None;
    let mut failures = 0;
    for (path, r) in results {
        match r {
            Ok((view, resumed_from)) => {
                if api.json {
                    let mut v = serde_json::to_value(&view).unwrap_or_default();
                    v["path"] = serde_json::Value::from(path.display().to_string());
                    v["resumed_from"] = serde_json::Value::from(resumed_from);
                    println!("{v}");
                } else {
                    println!("{}  {:>12}  {}", view.id, view.size.unwrap_or(0), path.display());
                }
            }
            Err(f) => {
                eprintln!("filedock: {}: {}", path.display(), f.message);
                if api.json {
                    println!(
                        "{}",
                        serde_json::json!({"path": path.display().to_string(),
                            "error": {"code": f.code, "message": f.message, "status": f.status}})
                    );
                }
                failures += 1;
                failed.get_or_insert(f);
            }
        }
    }
    match failed {
        None => Ok(()),
        Some(mut f) => {
            f.message = format!(
                "{failures} of {count} uploads failed (run the same command again to resume); the first: {}",
                f.message
            );
            Err(f)
        }
    }
}

/// The files to upload, each with its name (UTF-8) and metadata; anything not a file is refused.
fn local_files(paths: &[PathBuf]) -> Result<Vec<(PathBuf, String, std::fs::Metadata)>, Failure> {
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| Failure::io(p.display(), e))?;
        if !meta.is_file() {
            return Err(Failure::usage(format!("{} is not a file", p.display())));
        }
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Failure::usage(format!("{}: the file name must be UTF-8", p.display())))?
            .to_owned();
        files.push((p.clone(), name, meta));
    }
    Ok(files)
}

/// One file: returns what the server made of it and the offset it resumed from (0 if new).
async fn upload_one(
    api: &Api,
    meter: Meter,
    args: &UploadArgs,
    path: &Path,
    name: &str,
    meta: &std::fs::Metadata,
) -> Result<(FileView, u64), Failure> {
    let size = meta.len();
    let state = StateFile::for_file(api, path, meta)?;
    let r = if size >= args.multipart_threshold && size > 0 {
        multipart(api, path, name, size, &state, &meter, usize::from(args.parallel)).await
    } else {
        tus(api, path, name, size, &state, &meter).await
    };
    let (view, resumed) = r?;
    state.remove();
    meter.file.finish();
    if let Some(remote) = &view.sha256 {
        let local = sha256_file(path).await?;
        if !local.eq_ignore_ascii_case(remote) {
            return Err(Failure::new(
                "integrity",
                format!("the server stored SHA-256 {remote}, but the local file has {local}"),
            ));
        }
    }
    Ok((view, resumed))
}
