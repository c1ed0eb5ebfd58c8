//! The `filedock` binary: `serve` runs the service; `keys` manages credentials offline, on the
//! same data dir and config, also while a server runs; `doctor` checks storage against the
//! catalog; `upload`, `ls`, `get`, `rm` and `link` are the client (see `client`).

mod app;
mod client;
mod config;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use filedock_core::{CredentialKind, ProjectId, WorkspaceId};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, FlagOverrides};

/// filedock: file intake for AI agents and workflow platforms.
#[derive(Debug, Parser)]
#[command(name = "filedock", version, about)]
struct Cli {
    /// TOML config file.
    #[arg(long, global = true, env = "FILEDOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (catalog, local blobs, signing secret). Default ./filedock-data.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on. Default 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Base URL clients reach filedock at. Default http://<listen>.
        #[arg(long)]
        public_url: Option<String>,
    },
    /// Manage credentials.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Compare storage with the catalog: objects no file owns (orphans), files whose object is
    /// gone, sizes that differ. Exits 0 when clean (or repaired), 1 when something was found.
    Doctor {
        /// Delete orphan objects older than the grace period and make rows of missing objects
        /// tombstones.
        #[arg(long)]
        fix: bool,
        /// Grace period in seconds for orphans (default: `orphan_grace_secs`, 3600).
        #[arg(long)]
        grace_secs: Option<u64>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; its secret is the last line of stdout, shown only once.
    Create {
        #[arg(long)]
        project: String,
        #[arg(long)]
        workspace: Option<String>,
        /// session (st-), integration (sk-), device (dk-) or admin (ad-).
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        project: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke { id: String },
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: letting in-flight requests finish");
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let files = app::file_service(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, public_url = %cfg.public_url(), data_dir = %cfg.data_dir.display(), "filedock listening");
    let files = Arc::new(files);
    if cfg.startup_scan {
        let files = files.clone();
        let grace = cfg.orphan_grace_secs;
        tokio::spawn(async move {
            match files.doctor(true, grace).await {
                Ok(r) if r.is_clean() => tracing::info!(
                    objects = r.objects,
                    files = r.rows,
                    "start-up scan: storage and catalog agree"
                ),
                Ok(r) => tracing::warn!(
                    objects = r.objects,
                    files = r.rows,
                    orphans_deleted = r.orphans.len(),
                    missing = r.missing.len(),
                    size_mismatches = r.size_mismatches.len(),
                    "start-up scan repaired differences between storage and catalog"
                ),
                Err(e) => tracing::warn!(error = %e, "the start-up scan failed; run `filedock doctor`"),
            }
        });
    }
    let sweeper = tokio::spawn(sweep(
        files.clone(),
        Duration::from_secs(cfg.sweep_interval_secs.max(1)),
    ));
    // Without webhooks there is nothing to deliver (and no reason to look every second).
    let deliverer = files
        .has_webhooks()
        .then(|| tokio::spawn(filedock_server::webhooks::deliver(files.clone())));
    let router = filedock_server::router(filedock_server::AppState {
        files,
        dialects: Arc::new(cfg.dialects.clone()),
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let timeouts = filedock_server::Timeouts {
        header: Duration::from_secs(cfg.header_timeout_secs.max(1)),
        body_idle: Duration::from_secs(cfg.body_timeout_secs.max(1)),
    };
    let server = tokio::spawn(filedock_server::serve(listener, router, timeouts, async {
        let _ = rx.await;
    }));
    shutdown_signal().await;
    sweeper.abort();
    if let Some(d) = deliverer {
        d.abort();
    }
    let _ = tx.send(());
    match tokio::time::timeout(Duration::from_secs(cfg.shutdown_grace_secs), server).await {
        Ok(joined) => joined??,
        Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
    }
    Ok(())
}

/// Now and then: aborts abandoned uploads (each under its lock in the catalog), deletes expired
/// files (one instance at a time, under a lease in the catalog), and queues again the tasks of
/// runners gone silent (each one conditional statement). Instances sharing a catalog never do
/// one thing twice.
async fn sweep(files: Arc<filedock_core::FileService>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        metrics::counter!("filedock_sweeper_runs_total").increment(1);
        match files.sweep_uploads().await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("filedock_swept_total", "kind" => "uploads").increment(n as u64);
                tracing::info!(aborted = n, "swept abandoned uploads")
            }
            Err(e) => {
                metrics::counter!("filedock_sweep_errors_total", "kind" => "uploads").increment(1);
                tracing::warn!(error = %e, "the upload sweep failed; retrying at the next interval")
            }
        }
        match files.sweep_files().await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("filedock_swept_total", "kind" => "files").increment(n as u64);
                tracing::info!(deleted = n, "swept expired files")
            }
            Err(e) => {
                metrics::counter!("filedock_sweep_errors_total", "kind" => "files").increment(1);
                tracing::warn!(error = %e, "the retention sweep failed; retrying at the next interval")
            }
        }
        match files.sweep_tasks().await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("filedock_swept_total", "kind" => "tasks").increment(n as u64);
                tracing::info!(released = n, "released the tasks of silent runners")
            }
            Err(e) => {
                metrics::counter!("filedock_sweep_errors_total", "kind" => "tasks").increment(1);
                tracing::warn!(error = %e, "the task sweep failed; retrying at the next interval")
            }
        }
    }
}

fn print_report(r: &filedock_core::doctor::DoctorReport, json: bool) -> anyhow::Result<()> {
    if json {
        let v = serde_json::json!({
            "objects": r.objects,
            "rows": r.rows,
            "orphans": r.orphans.iter().map(|(b, k, size)| serde_json::json!({"backend": b, "key": k.as_str(), "size": size})).collect::<Vec<_>>(),
            "young_orphans": r.young_orphans,
            "missing": r.missing.iter().map(|f| serde_json::json!({"id": f.id.as_str(), "backend": f.backend, "key": f.key.as_str()})).collect::<Vec<_>>(),
            "size_mismatches": r.size_mismatches.iter().map(|(f, size)| serde_json::json!({"id": f.id.as_str(), "recorded": f.size, "stored": size})).collect::<Vec<_>>(),
            "repaired": r.repaired,
            "clean": r.is_clean(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("checked {} objects and {} ready files", r.objects, r.rows);
    let verb = if r.repaired { "deleted" } else { "found" };
    for (b, k, size) in &r.orphans {
        println!("orphan ({verb}): {b}:{k} ({size} bytes)");
    }
    for f in &r.missing {
        let what = if r.repaired { "now a tombstone" } else { "object gone" };
        println!("missing ({what}): file {} at {}:{}", f.id, f.backend, f.key);
    }
    for (f, size) in &r.size_mismatches {
        println!(
            "size mismatch: file {} records {:?} bytes, its object has {size}",
            f.id, f.size
        );
    }
    if r.young_orphans > 0 {
        println!(
            "{} objects without a file are younger than the grace period (left alone)",
            r.young_orphans
        );
    }
    println!(
        "{}",
        match (r.is_clean(), r.repaired) {
            (true, _) => "clean",
            (false, true) => "repaired",
            (false, false) => "problems found (run with --fix to repair)",
        }
    );
    Ok(())
}

async fn keys(cfg: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let creds = app::credentials(&cfg).await?;
    match cmd {
        KeysCommand::Create {
            project,
            workspace,
            kind,
            name,
        } => {
            let project = ProjectId::new(project)?;
            let workspace = workspace.map(WorkspaceId::new).transpose()?;
            let kind = CredentialKind::parse(&kind)?;
            let (c, token) = creds.create(project, workspace, kind, name).await?;
            println!("created {} key {} for project {}", c.kind.as_str(), c.id, c.project);
            println!("{token}");
        }
        KeysCommand::List { project, json } => {
            let project = project.map(ProjectId::new).transpose()?;
            for c in creds.list(project.as_ref()).await? {
                if json {
                    println!("{}", serde_json::to_string(&c)?);
                } else {
                    let state = if c.revoked_at.is_some() { "revoked" } else { "active" };
                    let ws = c.workspace.as_ref().map(|w| w.as_str()).unwrap_or("-");
                    let name = c.name.as_deref().unwrap_or("-");
                    println!(
                        "{}  {}{}…  {:<11}  {:<7}  project={}  workspace={}  name={}",
                        c.id,
                        c.kind.prefix(),
                        c.id,
                        c.kind.as_str(),
                        state,
                        c.project,
                        ws,
                        name
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            creds.revoke(&id).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// mimalloc rather than glibc's malloc: a creation allocates and frees a few hundred small objects
/// across threads, and glibc spent ~13% of the CPU on them (64-concurrent tus creations: 15,200 ->
/// 18,700/s). Built without transparent huge pages, which tripled the resident memory of an idle
/// arena.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (listen, public_url) = match cli.command {
        Command::Serve { listen, ref public_url } => (listen, public_url.clone()),
        Command::Keys(_) | Command::Doctor { .. } => (None, None),
        // The client needs no server config: a server URL and a key.
        Command::Client(cmd) => std::process::exit(client::run(cmd).await),
    };
    let cfg = Config::load(
        cli.config.as_deref(),
        FlagOverrides {
            listen,
            data_dir: cli.data_dir.clone(),
            public_url,
        },
    )?;
    match cli.command {
        Command::Serve { .. } => {
            init_logging(&cfg.log_format);
            serve(cfg).await
        }
        Command::Keys(cmd) => keys(cfg, cmd).await,
        Command::Client(_) => unreachable!("handled above"),
        Command::Doctor { fix, grace_secs, json } => {
            init_logging(&cfg.log_format);
            let grace = grace_secs.unwrap_or(cfg.orphan_grace_secs);
            let files = app::file_service(&cfg).await?;
            let report = files.doctor(fix, grace).await?;
            print_report(&report, json)?;
            if !report.is_clean() && !fix {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
