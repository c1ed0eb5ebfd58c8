//! The `filedock` binary: `serve` runs the service; `keys` manages credentials offline, on the
//! same data dir and config, also while a server runs; `doctor` checks storage against the
//! catalog; `upload`, `ls`, `get`, `rm` and `link` are the client (see `client`).

mod app;
mod client;
mod config;
mod init;
mod keys;
mod logsink;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use filedock_core::FileService;
use filedock_core::doctor::Repair;
use filedock_core::jobs::JobSpec;
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
    Keys(keys::KeysCommand),
    /// Write a commented config and a new signing key into a directory (for one instance, or
    /// the first of a fleet: copy both to the others). Never overwrites.
    Init {
        /// Where to write filedock.toml and signing.key.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The data dir the config names (default: <dir>/data).
        #[arg(long = "data")]
        data: Option<PathBuf>,
    },
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

/// Logs to standard error through [`logsink::LogSink`]: a failing or stalled sink drops lines,
/// never requests. Keep the guard until exit: it writes what is still queued.
fn init_logging(format: &str) -> Option<logsink::FlushOnDrop> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (sink, guard) = match logsink::LogSink::stderr() {
        Ok(s) => s,
        Err(_) => return None,
    };
    // Colours only for a person at a terminal: in a file or a collector's pipe the escape codes
    // are noise around every field.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(sink);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
    Some(guard)
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
    // The metrics recorder before anything counts: jobs that run once at start (the identity
    // check, the start-up scan) ran before the router installed it, and their runs were lost.
    filedock_server::ops::metrics_handle();
    let files = Arc::new(app::file_service(&cfg).await?);
    // Before the first request: an instance on the wrong bucket or database must not take one.
    // If a dependency does not answer yet, requests get 503 until the identity job succeeds.
    let _ = tokio::time::timeout(IDENTITY_FIRST_WAIT, files.verify_identity()).await;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, public_url = %cfg.public_url(), data_dir = %cfg.data_dir.display(), "filedock listening");
    let jobs = background_jobs(&files, &cfg);
    let state = filedock_server::AppState::new(
        files,
        cfg.dialects.clone(),
        filedock_server::config::HttpConfig {
            cors: cfg.cors.clone(),
            links: cfg.links.clone(),
            fetch: cfg.fetch.clone(),
        },
    )
    .map_err(anyhow::Error::msg)?;
    let router = filedock_server::router(state);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let timeouts = filedock_server::Timeouts {
        header: Duration::from_secs(cfg.header_timeout_secs.max(1)),
        body_idle: Duration::from_secs(cfg.body_timeout_secs.max(1)),
    };
    let server = tokio::spawn(filedock_server::serve(listener, router, timeouts, async {
        let _ = rx.await;
    }));
    shutdown_signal().await;
    for job in jobs {
        job.abort();
    }
    let _ = tx.send(());
    match tokio::time::timeout(Duration::from_secs(cfg.shutdown_grace_secs), server).await {
        Ok(joined) => joined??,
        Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
    }
    Ok(())
}

/// How long `serve` waits for the first identity check before it listens.
const IDENTITY_FIRST_WAIT: Duration = Duration::from_secs(10);
/// How often an instance says it is alive and counts the fleet (it counts for 10 s after).
const FLEET_HEARTBEAT: Duration = Duration::from_secs(2);

/// How often an unverified identity is checked again.
const IDENTITY_RETRY: Duration = Duration::from_secs(5);

/// Starts the background jobs under the file service's supervisor (see `filedock_core::jobs`):
/// the identity check until it holds, the start-up scan (orphans only, once the identity holds),
/// the fleet heartbeat, the sweeper, and webhook deliveries when any are configured. One
/// function on purpose: the table of every job an instance runs, in one place.
fn background_jobs(files: &Arc<FileService>, cfg: &Config) -> Vec<tokio::task::JoinHandle<()>> {
    let sup = files.jobs().clone();
    let every = Duration::from_secs(cfg.sweep_interval_secs.max(1));
    let mut jobs = Vec::new();
    let f = files.clone();
    jobs.push(sup.spawn(
        JobSpec {
            name: "identity",
            every: IDENTITY_RETRY,
            stale_after: Duration::from_secs(60),
            once: true,
        },
        move || {
            let f = f.clone();
            async move { f.verify_identity().await.map(|_| ()) }
        },
    ));
    if cfg.startup_scan {
        let f = files.clone();
        let grace = cfg.orphan_grace_secs;
        jobs.push(sup.spawn(
            JobSpec {
                name: "startup-scan",
                every: IDENTITY_RETRY,
                // A scan of a large bucket takes a while; it is reported only if it keeps failing.
                stale_after: Duration::from_secs(3600),
                once: true,
            },
            move || {
                let f = f.clone();
                async move { startup_scan(&f, grace).await }
            },
        ));
    }
    // Alive in the catalog, and the fleet counted: each instance's share of the rate limit and
    // the upload cap (see `filedock_core::limits`).
    let f = files.clone();
    jobs.push(sup.spawn(
        JobSpec {
            name: "fleet",
            every: FLEET_HEARTBEAT,
            stale_after: Duration::from_secs(60),
            once: false,
        },
        move || {
            let f = f.clone();
            async move {
                let n = f.fleet_heartbeat().await?;
                metrics::gauge!("filedock_fleet_instances").set(f64::from(n));
                Ok(())
            }
        },
    ));
    let f = files.clone();
    let grace = cfg.orphan_grace_secs;
    jobs.push(sup.spawn(
        JobSpec {
            name: "sweeper",
            every,
            stale_after: (every * 5).max(Duration::from_secs(60)),
            once: false,
        },
        move || {
            let f = f.clone();
            async move { sweep(&f, grace).await }
        },
    ));
    // Quarantined files whose scan is due (after a scanner failed, or an upload stopped waiting).
    if !cfg.scanners.is_empty() {
        let f = files.clone();
        jobs.push(sup.spawn(
            JobSpec {
                name: "quarantine",
                every: Duration::from_secs(2),
                stale_after: Duration::from_secs(600),
                once: false,
            },
            move || {
                let f = f.clone();
                async move { f.sweep_quarantine().await.map(|_| ()) }
            },
        ));
    }
    // Without webhooks there is nothing to deliver (and no reason to look every second).
    if files.has_webhooks() {
        match filedock_server::webhooks::Deliverer::new(files.clone()) {
            Ok(d) => {
                let d = Arc::new(d);
                jobs.push(sup.spawn(
                    JobSpec {
                        name: "webhooks",
                        every: Duration::ZERO,
                        stale_after: d.stale_after(),
                        once: false,
                    },
                    move || {
                        let d = d.clone();
                        async move { d.round().await }
                    },
                ));
            }
            Err(e) => tracing::error!(error = %e, "cannot build the webhook client; no webhook will be delivered"),
        }
    }
    jobs
}

/// The start-up scan: deletes orphans past the grace period and reports the rest. It never
/// turns a row into a tombstone (that is `doctor --fix`, asked for by a person), and it waits
/// until the deployment identity holds.
async fn startup_scan(files: &FileService, grace: u64) -> filedock_core::Result<()> {
    if let Some(why) = files.refusal() {
        return Err(filedock_core::Error::Unavailable(why));
    }
    let r = files.doctor(Repair::Orphans, grace).await?;
    if r.orphans.is_empty() && r.missing.is_empty() && r.size_mismatches.is_empty() {
        tracing::info!(
            objects = r.objects,
            files = r.rows,
            "start-up scan: storage and catalog agree"
        );
    } else {
        tracing::warn!(
            objects = r.objects,
            files = r.rows,
            orphans_deleted = r.orphans.len(),
            missing = r.missing.len(),
            size_mismatches = r.size_mismatches.len(),
            "start-up scan: deleted orphans; files whose object is missing and sizes that differ are left \
             as they are (see `filedock doctor`)"
        );
    }
    Ok(())
}

/// One round of the sweeper: aborts abandoned uploads (each under its lock in the catalog),
/// deletes expired files (one instance at a time, under a lease in the catalog), queues again
/// the tasks of runners gone silent (each one conditional statement), and prunes records that
/// ended longer ago than `[prune]` keeps them. Instances sharing a catalog
/// never do one thing twice. Nothing while the deployment identity does not hold.
async fn sweep(files: &FileService, grace_secs: u64) -> filedock_core::Result<()> {
    if let Some(why) = files.refusal() {
        return Err(filedock_core::Error::Unavailable(why));
    }
    metrics::counter!("filedock_sweeper_runs_total").increment(1);
    let mut failed = None;
    let outcomes = [
        ("uploads", "aborted abandoned uploads", files.sweep_uploads().await),
        ("files", "deleted expired files", files.sweep_files().await),
        (
            "tasks",
            "released the tasks of silent runners",
            files.sweep_tasks().await,
        ),
        (
            "incoming",
            "deleted presigned PUTs no completion takes",
            files.sweep_incoming().await,
        ),
        (
            "intents",
            "cleaned up after crashed uploads",
            files.sweep_intents(grace_secs).await,
        ),
        ("records", "pruned ended records", files.prune_records().await),
    ];
    for (kind, done, outcome) in outcomes {
        match outcome {
            Ok(0) => {}
            // Counted in `filedock_swept_total` as each sweep went.
            Ok(n) => {
                tracing::info!(count = n, "sweeper: {done}");
            }
            Err(e) => {
                metrics::counter!("filedock_sweep_errors_total", "kind" => kind).increment(1);
                tracing::warn!(kind, error = %e, "a sweep failed; retrying at the next interval");
                failed = Some(e);
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

fn print_report(r: &filedock_core::doctor::DoctorReport, json: bool) -> anyhow::Result<()> {
    if json {
        let v = serde_json::json!({
            "objects": r.objects,
            "rows": r.rows,
            "orphans": r.orphans.iter().map(|(b, k, size)| serde_json::json!({"backend": b, "key": k.as_str(), "size": size})).collect::<Vec<_>>(),
            "young_orphans": r.young_orphans,
            "in_flight": r.in_flight,
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
    if r.in_flight > 0 {
        println!(
            "{} objects without a file are uploads in flight (left alone)",
            r.in_flight
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

/// Creates the data dir as 0700, or makes an existing one 0700 (files made by an older version
/// under a looser umask are then out of other users' reach too).
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data dir {}", dir.display()))?;
    // A dir this user does not own (a mounted volume) keeps its mode; what filedock creates in
    // it is still 0600/0700 (the umask).
    if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
        // Not eprintln!, which panics when standard error cannot be written.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "warning: could not make the data dir {} private (0700): {e}",
            dir.display()
        );
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
        Command::Init { ref dir, ref data } => return init::run(dir, data.as_deref()),
        // The client needs no server config: a server URL and a key.
        Command::Client(cmd) => std::process::exit(client::run(cmd).await),
    };
    // Files filedock creates (blobs, the catalog, its logs, the signing key) are for its own user
    // only, whatever the umask it was started with; an existing data dir is closed the same way.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cfg = Config::load(
        cli.config.as_deref(),
        FlagOverrides {
            listen,
            data_dir: cli.data_dir.clone(),
            public_url,
        },
    )?;
    if matches!(cli.command, Command::Serve { .. }) || cfg.data_dir.exists() {
        private_data_dir(&cfg.data_dir)?;
    }
    match cli.command {
        Command::Serve { .. } => {
            let _flush = init_logging(&cfg.log_format);
            serve(cfg).await
        }
        Command::Keys(cmd) => keys::run(cfg, cmd).await,
        Command::Client(_) | Command::Init { .. } => unreachable!("handled above"),
        Command::Doctor { fix, grace_secs, json } => {
            let flush = init_logging(&cfg.log_format);
            let grace = grace_secs.unwrap_or(cfg.orphan_grace_secs);
            let files = app::file_service(&cfg).await?;
            let repair = if fix {
                // A repair acts only on a deployment whose catalog and storage belong together.
                files.verify_identity().await?;
                Repair::All
            } else {
                Repair::None
            };
            let report = files.doctor(repair, grace).await?;
            print_report(&report, json)?;
            if !report.is_clean() && !fix {
                drop(flush);
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
