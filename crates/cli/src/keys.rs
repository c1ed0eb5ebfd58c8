//! `filedock keys`: create, list and revoke keys, either on the catalog directly (with the
//! server's config, on a machine that reaches its database) or, with `--server`, over a running
//! filedock's admin API using an admin (`ad-`) key of the project.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use filedock_core::{Credential, CredentialKind, ProjectId, WorkspaceId};
use serde_json::{Value, json};

use crate::app;
use crate::config::Config;

/// Where to manage keys: the catalog (default) or a running server.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Manage keys over this filedock's admin API (e.g. https://files.example.com) instead of
    /// opening the catalog.
    #[arg(long)]
    pub server: Option<String>,
    /// The admin (ad-) key to use with --server.
    #[arg(long, env = "FILEDOCK_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is the last line of stdout, shown only once.
    Create {
        /// The key's project (with --server: the admin key's project, which may be left out).
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
        /// session (st-), integration (sk-), device (dk-) or admin (ad-).
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        project: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs a `keys` command.
pub async fn run(cfg: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let remote = match &cmd {
        KeysCommand::Create { remote, .. } | KeysCommand::List { remote, .. } | KeysCommand::Revoke { remote, .. } => {
            remote.clone()
        }
    };
    match remote.server {
        Some(server) => {
            let key = remote
                .admin_key
                .context("--server needs an admin key: --admin-key or FILEDOCK_ADMIN_KEY")?;
            over_http(&server, &key, cmd).await
        }
        None => on_catalog(cfg, cmd).await,
    }
}

async fn on_catalog(cfg: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let creds = app::credentials(&cfg).await?;
    match cmd {
        KeysCommand::Create {
            project,
            workspace,
            kind,
            name,
            ..
        } => {
            let project = ProjectId::new(project.context("--project is required")?)?;
            let workspace = workspace.map(WorkspaceId::new).transpose()?;
            let kind = CredentialKind::parse(&kind)?;
            let (c, token) = creds.create(project, workspace, kind, name).await?;
            created(c.kind.as_str(), &c.id, c.project.as_str(), &token);
        }
        KeysCommand::List { project, json, .. } => {
            let project = project.map(ProjectId::new).transpose()?;
            for c in creds.list(project.as_ref()).await? {
                if json {
                    println!("{}", serde_json::to_string(&c)?);
                } else {
                    print_row(&c);
                }
            }
        }
        KeysCommand::Revoke { id, .. } => {
            creds.revoke(&id).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn over_http(server: &str, key: &str, cmd: KeysCommand) -> anyhow::Result<()> {
    let base = format!("{}/v1/admin/keys", server.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req.bearer_auth(key).send().await.context("reaching the server")?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let why = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            bail!("the server answered {status}: {why}");
        }
        Ok(serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    match cmd {
        KeysCommand::Create {
            project,
            workspace,
            kind,
            name,
            ..
        } => {
            let v = send(
                http.post(&base)
                    .json(&json!({"kind": kind, "name": name, "workspace": workspace})),
            )
            .await?;
            let k = &v["key"];
            let made_in = k["project"].as_str().unwrap_or_default();
            let secret = v["secret"].as_str().context("the answer has no secret")?;
            if let Some(p) = project.filter(|p| p != made_in) {
                // Made in the admin key's project, not the one asked for: undo it.
                let id = k["id"].as_str().unwrap_or_default();
                send(http.delete(format!("{base}/{id}"))).await?;
                bail!("this admin key manages project '{made_in}', not '{p}'");
            }
            created(
                k["kind"].as_str().unwrap_or_default(),
                k["id"].as_str().unwrap_or_default(),
                made_in,
                secret,
            );
        }
        KeysCommand::List { json, .. } => {
            let v = send(http.get(&base)).await?;
            for k in v["keys"].as_array().into_iter().flatten() {
                if json {
                    println!("{k}");
                } else {
                    let c = Credential {
                        id: k["id"].as_str().unwrap_or_default().to_owned(),
                        project: ProjectId::new(k["project"].as_str().unwrap_or("-"))?,
                        workspace: k["workspace"].as_str().map(WorkspaceId::new).transpose()?,
                        kind: CredentialKind::parse(k["kind"].as_str().unwrap_or_default())?,
                        name: k["name"].as_str().map(str::to_owned),
                        secret_hash: String::new(),
                        created_at: k["created_at"].as_i64().unwrap_or(0) * 1000,
                        revoked_at: k["revoked_at"].as_i64().map(|t| t * 1000),
                    };
                    print_row(&c);
                }
            }
        }
        KeysCommand::Revoke { id, .. } => {
            send(http.delete(format!("{base}/{id}"))).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

fn created(kind: &str, id: &str, project: &str, token: &str) {
    println!("created {kind} key {id} for project {project}");
    println!("{token}");
}

fn print_row(c: &Credential) {
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
