//! The client commands of the `filedock` binary: `upload`, `ls`, `get`, `rm` and `link`, against
//! a running filedock's native API (and its tus endpoint for resumable uploads).
//!
//! The server and key come from `--server`/`--key`, else `FILEDOCK_SERVER`/`FILEDOCK_KEY`, else
//! the client config file (`FILEDOCK_CLIENT_CONFIG`, or `$XDG_CONFIG_HOME/filedock/client.toml`,
//! or `~/.config/filedock/client.toml`) with `server = "…"` and `key = "…"`.
//!
//! Exit codes a script can rely on: see [`Failure::exit_code`].

mod files;
mod upload;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use figment::Figment;
use figment::providers::{Format, Toml};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

pub use upload::UploadArgs;

/// Where the server is and who we are; every client command takes these.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// filedock's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "FILEDOCK_SERVER")]
    pub server: Option<String>,
    /// An API key (session or integration key).
    #[arg(long, env = "FILEDOCK_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Machine output: JSON on stdout (errors too), no progress bars.
    #[arg(long)]
    pub json: bool,
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Upload files, with progress; running it again after an interruption resumes each file
    /// where it stopped. Large files go as parallel multipart uploads.
    Upload(UploadArgs),
    /// List the project's files, newest first.
    Ls {
        #[command(flatten)]
        conn: Connection,
        /// At most this many files (default: all).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Download a file; running it again after an interruption resumes with Range.
    Get {
        #[command(flatten)]
        conn: Connection,
        /// The file id.
        id: String,
        /// Where to write it (default: the file's name in the current directory; `-` for stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Delete a file.
    Rm {
        #[command(flatten)]
        conn: Connection,
        /// The file id.
        id: String,
    },
    /// Make a download link that expires.
    Link {
        #[command(flatten)]
        conn: Connection,
        /// The file id.
        id: String,
        /// How long the link works: seconds, or a number with s, m, h or d (default 1h).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
    },
}

/// Runs a client command; returns the process exit code.
pub async fn run(cmd: ClientCommand) -> i32 {
    let json = match &cmd {
        ClientCommand::Upload(a) => a.conn.json,
        ClientCommand::Ls { conn, .. }
        | ClientCommand::Get { conn, .. }
        | ClientCommand::Rm { conn, .. }
        | ClientCommand::Link { conn, .. } => conn.json,
    };
    match dispatch(cmd).await {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("filedock: {}", f.message);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": f.code, "message": f.message, "status": f.status}})
                );
            }
            f.exit_code()
        }
    }
}

async fn dispatch(cmd: ClientCommand) -> Result<(), Failure> {
    match cmd {
        ClientCommand::Upload(a) => upload::run(a).await,
        ClientCommand::Ls { conn, limit } => files::ls(&Api::connect(&conn)?, limit).await,
        ClientCommand::Get { conn, id, output } => files::get(&Api::connect(&conn)?, &id, output).await,
        ClientCommand::Rm { conn, id } => files::rm(&Api::connect(&conn)?, &id).await,
        ClientCommand::Link { conn, id, ttl } => files::link(&Api::connect(&conn)?, &id, ttl).await,
    }
}

/// Why a client command failed.
#[derive(Debug)]
pub struct Failure {
    /// The server's error code (`not_found`, `quota_exceeded`, …), or one of ours
    /// (`usage`, `unreachable`, `io`, `integrity`, `interrupted`).
    pub code: String,
    pub message: String,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
}

impl Failure {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.to_owned(),
            message: message.into(),
            status: None,
        }
    }

    fn usage(message: impl Into<String>) -> Self {
        Self::new("usage", message)
    }

    fn io(what: impl std::fmt::Display, e: std::io::Error) -> Self {
        Self::new("io", format!("{what}: {e}"))
    }

    /// 0 success; 1 anything else (local I/O, integrity); 2 bad usage or configuration;
    /// 3 the key is missing, wrong or not allowed (401, 403); 4 not found (404); 5 refused by a
    /// limit or check (400, 409, 413, 415, 422, 429, 507 …); 6 the server could not be reached
    /// or failed (5xx) — retrying may help.
    pub fn exit_code(&self) -> i32 {
        match (self.code.as_str(), self.status) {
            ("usage", _) => 2,
            (_, Some(401 | 403)) => 3,
            (_, Some(404 | 410)) => 4,
            (_, Some(s)) if s >= 500 && s != 507 => 6,
            (_, Some(_)) => 5,
            ("unreachable", None) => 6,
            _ => 1,
        }
    }
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's Display names the URL, whose query may be a signature: drop it.
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        Failure::new("unreachable", msg)
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    server: Option<String>,
    key: Option<String>,
}

fn config_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FILEDOCK_CLIENT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("filedock").join("client.toml"))
}

/// The native API of one server, with one key.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
    json: bool,
}

impl Api {
    /// Flags and environment first, then the config file.
    pub fn connect(conn: &Connection) -> Result<Api, Failure> {
        let file: ConfigFile = match config_file() {
            Some(p) if p.exists() => Figment::from(Toml::file(&p))
                .extract()
                .map_err(|e| Failure::usage(format!("reading {}: {e}", p.display())))?,
            _ => ConfigFile::default(),
        };
        let server = conn.server.clone().or(file.server).ok_or_else(|| {
            Failure::usage("no server: pass --server, set FILEDOCK_SERVER, or put `server` in the client config")
        })?;
        let key =
            conn.key.clone().or(file.key).ok_or_else(|| {
                Failure::usage("no key: pass --key, set FILEDOCK_KEY, or put `key` in the client config")
            })?;
        let parsed = reqwest::Url::parse(&server).map_err(|e| Failure::usage(format!("--server {server:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Failure::usage(format!("--server {server:?}: use an http or https URL")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("filedock-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Api {
            http,
            base: server.trim_end_matches('/').to_owned(),
            key,
            json: conn.json,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to filedock itself, with the key.
    fn request(&self, method: Method, path_or_url: &str) -> RequestBuilder {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            self.url(path_or_url)
        };
        self.http.request(method, url).bearer_auth(&self.key)
    }

    /// Sends, and turns any answer but 2xx into a [`Failure`] with the server's message.
    async fn send(&self, req: RequestBuilder) -> Result<Response, Failure> {
        checked(req.send().await?).await
    }

    async fn send_json<T: serde::de::DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, Failure> {
        let resp = self.send(req).await?;
        resp.json()
            .await
            .map_err(|e| Failure::new("unreachable", format!("reading the answer: {}", e.without_url())))
    }

    /// Progress bars on stderr when stdout is a terminal and the output is not JSON.
    fn bars(&self) -> MultiProgress {
        if !self.json && std::io::stdout().is_terminal() {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10))
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        }
    }
}

/// Turns a non-2xx answer into a [`Failure`], reading the native envelope if there is one.
async fn checked(resp: Response) -> Result<Response, Failure> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) if v["error"]["code"].is_string() => (
            v["error"]["code"].as_str().unwrap_or_default().to_owned(),
            v["error"]["message"].as_str().unwrap_or_default().to_owned(),
        ),
        _ => (
            status_code_name(status),
            text.chars().take(300).collect::<String>().trim().to_owned(),
        ),
    };
    let message = if message.is_empty() {
        format!("the server answered {status}")
    } else {
        format!("{message} ({status})")
    };
    Err(Failure {
        code,
        message,
        status: Some(status.as_u16()),
    })
}

fn status_code_name(s: StatusCode) -> String {
    s.canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace(' ', "_")
}

/// A byte progress bar: bytes, rate and ETA.
fn byte_bar(bars: &MultiProgress, len: u64, prefix: String) -> ProgressBar {
    let pb = bars.add(ProgressBar::new(len));
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:20!} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>3} [{wide_bar:.cyan/blue}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix);
    pb
}

/// Feeds up to `limit` bytes of `r` to `h` (sha2 0.11 is no `io::Write`).
fn hash_reader(r: &mut impl std::io::Read, h: &mut sha2::Sha256, limit: u64) -> std::io::Result<()> {
    use sha2::Digest;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = limit;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// `90`, `90s`, `15m`, `1h`, `7d` → seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{s:?} is not a usable duration")),
        Some(v) => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }

    #[test]
    fn exit_codes() {
        let with = |code: &str, status: Option<u16>| Failure {
            code: code.to_owned(),
            message: String::new(),
            status,
        };
        assert_eq!(with("usage", None).exit_code(), 2);
        assert_eq!(with("unauthenticated", Some(401)).exit_code(), 3);
        assert_eq!(with("not_found", Some(404)).exit_code(), 4);
        assert_eq!(with("quota_exceeded", Some(507)).exit_code(), 5);
        assert_eq!(with("too_large", Some(413)).exit_code(), 5);
        assert_eq!(with("internal", Some(500)).exit_code(), 6);
        assert_eq!(with("unreachable", None).exit_code(), 6);
        assert_eq!(with("integrity", None).exit_code(), 1);
    }
}
