//! The MCP tools: each a thin call into the core, its arguments a JSON schema with descriptions
//! written for a model, its answer a JSON object, and a refusal an error result naming the rule.

use std::future::Future;

use axum::http::request::Parts;
use base64::Engine as _;
use filedock_core::files::KeyLayout;
use filedock_core::idempotency::{Begun, Kept};
use filedock_core::{Class, Error, FileId, FileName, NewFile, Principal, WorkflowRef};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Filedock, refused, text};
use crate::dialects::native::{FileView, POLICY};
use crate::fetch::{FromUrl, take};

/// The largest content `upload_file` takes (decoded); larger files go by URL or the HTTP API.
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UploadFileArgs {
    /// The file name, with its extension (e.g. "report.pdf", "notes.md"): the content must match it.
    pub name: String,
    /// The content: the text itself (encoding "text") or base64 of the bytes (encoding "base64").
    pub content: String,
    /// "text" (the default) or "base64".
    #[serde(default)]
    pub encoding: Option<String>,
    /// "input" (the default), "output" or "asset": decides how long the file is kept.
    #[serde(default)]
    pub class: Option<String>,
    /// Any unique string: calling again with the same key returns the first result and stores nothing twice.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UploadFromUrlArgs {
    /// An http or https URL on the public internet; filedock downloads it.
    pub url: String,
    /// The file name (default: the name the source gives, else the URL's last path segment).
    #[serde(default)]
    pub name: Option<String>,
    /// "input" (the default), "output" or "asset".
    #[serde(default)]
    pub class: Option<String>,
    /// true: return at once with a pending file and download in the background (poll get_file).
    #[serde(default, rename = "async")]
    pub background: Option<bool>,
    /// Any unique string: calling again with the same key returns the first result and fetches nothing twice.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListFilesArgs {
    /// How many files (1 to 100, default 20), newest first.
    #[serde(default)]
    pub limit: Option<u32>,
    /// The next_cursor of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FileArgs {
    /// The file's id (from upload_file, list_files or a filedock://files/{id} resource).
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LinkArgs {
    /// The file's id.
    pub id: String,
    /// How long the link works, in seconds (default 3600).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Any unique string: calling again with the same key returns the same link.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReadTextArgs {
    /// The file's id.
    pub id: String,
    /// The first character to return (default 0); use next_offset from the previous page.
    #[serde(default)]
    pub offset: Option<u64>,
    /// How many characters (default and most: 32768).
    #[serde(default)]
    pub length: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunArgs {
    /// The workflow's id or slug.
    pub workflow: String,
    /// The workflow's parameters by name; a file parameter takes a file's key (the "key" of get_file).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Any unique string: calling again with the same key returns the same task and runs nothing twice.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TaskArgs {
    /// The task id that run_workflow returned.
    pub task_id: String,
}

fn class_of(s: Option<&str>) -> Result<Class, Error> {
    match s {
        None => Ok(Class::Input),
        Some(c) => Class::parse(c).map_err(|_| Error::invalid("class must be input, output or asset")),
    }
}

fn view(rec: &filedock_core::FileRecord) -> Value {
    serde_json::to_value(FileView::from(rec)).unwrap_or(Value::Null)
}

/// What a call answered: a JSON object, or the refusal.
type Answer = Result<Value, Error>;

fn answer(a: Answer) -> CallToolResult {
    match a {
        Ok(v) => CallToolResult::structured(v),
        Err(e) => refused(&e),
    }
}

#[tool_router(vis = "pub(super)")]
impl Filedock {
    /// The caller, after one request of its project's rate.
    fn caller(&self, parts: &Parts) -> Result<Principal, Error> {
        let who = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Error::internal_msg("no caller on the request"))?;
        self.state.files.admit(&who.project)?;
        Ok(who)
    }

    /// Runs a creating call once per idempotency key (see `crate::idempotency`): a repeat of the
    /// same call gets the first result; the key with other arguments is refused.
    async fn once<A, F, Fut>(&self, who: &Principal, tool: &str, key: Option<&str>, args: &A, run: F) -> CallToolResult
    where
        A: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer>,
    {
        let Some(key) = key else { return answer(run().await) };
        let digest = hex::encode(Sha256::digest(serde_json::to_vec(args).unwrap_or_default()));
        let idem = self.state.files.idempotency();
        match idem.begin(&who.project, key, &format!("mcp {tool} {digest}")).await {
            Err(e) => refused(&e),
            Ok(Begun::Running(secs)) => refused(&Error::InProgress(
                "the first call with this idempotency key is still running; retry".into(),
                secs,
            )),
            Ok(Begun::Replay(kept)) => match serde_json::from_slice(&kept.body) {
                Ok(v) => CallToolResult::structured(v),
                Err(_) => refused(&Error::internal_msg("a kept result is malformed")),
            },
            Ok(Begun::Fresh(claim)) => match run().await {
                Ok(v) => {
                    let kept = Kept {
                        status: 200,
                        headers: Vec::new(),
                        body: serde_json::to_vec(&v).unwrap_or_default(),
                        body_sha256: None,
                    };
                    idem.keep(claim, &kept).await;
                    CallToolResult::structured(v)
                }
                Err(e) => {
                    idem.release(claim).await;
                    refused(&e)
                }
            },
        }
    }

    #[tool(
        description = "Store a file in filedock from its content (text, or base64 for binary; at most 10 MiB). \
        The content is checked like any upload: size limit, type (the content must match the name's extension), \
        quota. Returns the file: id, name, size, content_type, sha256, status."
    )]
    async fn upload_file(
        &self,
        Parameters(args): Parameters<UploadFileArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = match self.caller(&parts) {
            Ok(w) => w,
            Err(e) => return Ok(refused(&e)),
        };
        let key = args.idempotency_key.clone();
        let mut canonical = args.clone();
        canonical.idempotency_key = None;
        Ok(self
            .once(&who, "upload_file", key.as_deref(), &canonical, || {
                self.upload(&who, args)
            })
            .await)
    }

    async fn upload(&self, who: &Principal, args: UploadFileArgs) -> Answer {
        let bytes = match args.encoding.as_deref().unwrap_or("text") {
            "text" => args.content.into_bytes(),
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(args.content.trim())
                .map_err(|_| Error::invalid("content is not valid base64"))?,
            other => {
                return Err(Error::invalid(format!(
                    "encoding must be text or base64, not '{other}'"
                )));
            }
        };
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(Error::TooLarge(format!(
                "upload_file takes at most {MAX_UPLOAD_BYTES} bytes; use upload_from_url or filedock's HTTP API"
            )));
        }
        let mut new = NewFile::named(FileName::new(args.name)?);
        new.class = class_of(args.class.as_deref())?;
        new.policy = POLICY.into();
        new.key = KeyLayout::Native;
        new.size_hint = Some(bytes.len() as u64);
        let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(bytes)) });
        let rec = self.state.files.upload(who, new, Box::pin(body)).await?;
        Ok(view(&rec))
    }

    #[tool(
        description = "Store a file that filedock downloads from an http(s) URL on the public internet \
        (private and local addresses are refused). Checked like any upload. With async=true it returns at once \
        with a pending file; poll get_file until its status is ready or failed."
    )]
    async fn upload_from_url(
        &self,
        Parameters(args): Parameters<UploadFromUrlArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = match self.caller(&parts) {
            Ok(w) => w,
            Err(e) => return Ok(refused(&e)),
        };
        let key = args.idempotency_key.clone();
        let mut canonical = args.clone();
        canonical.idempotency_key = None;
        let run = || async {
            let req = FromUrl {
                url: args.url.clone(),
                name: args.name.clone(),
                class: class_of(args.class.as_deref())?,
                ttl_secs: None,
                background: args.background.unwrap_or(false),
                policy: POLICY.into(),
            };
            let rec = take(&self.state.files, &self.state.fetch, &who, req).await?;
            Ok(view(&rec))
        };
        Ok(self
            .once(&who, "upload_from_url", key.as_deref(), &canonical, run)
            .await)
    }

    #[tool(
        description = "List this project's ready files, newest first: id, name, size, content_type, \
        created_at. Pass next_cursor back as cursor for the next page."
    )]
    async fn list_files(
        &self,
        Parameters(args): Parameters<ListFilesArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let run = async {
            let who = self.caller(&parts)?;
            let before = match args.cursor.as_deref().filter(|c| !c.is_empty()) {
                Some(c) => Some(FileId::parse(c).map_err(|_| Error::invalid("malformed cursor"))?),
                None => None,
            };
            let limit = args.limit.unwrap_or(20).clamp(1, 100);
            let (files, next) = self.state.files.list(&who, before, limit).await?;
            Ok(json!({
                "files": files.iter().map(view).collect::<Vec<_>>(),
                "next_cursor": next.map(|n| n.to_string()),
            }))
        };
        Ok(answer(run.await))
    }

    #[tool(
        description = "A file's details (name, size, type, sha256, status, expiry) and, once it is ready, a \
        download_url anyone can GET for an hour."
    )]
    async fn get_file(
        &self,
        Parameters(args): Parameters<FileArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let run = async {
            let who = self.caller(&parts)?;
            let id = FileId::parse(&args.id)?;
            let rec = self.state.files.visible_file(&who, &id).await?;
            let mut out = json!({"file": view(&rec)});
            if rec.status == filedock_core::FileStatus::Ready {
                let link = self.state.files.link(&who, &id, None).await?;
                out["download_url"] = link.url.into();
                out["download_url_expires_at"] = (link.expires_at / 1000).into();
            }
            Ok(out)
        };
        Ok(answer(run.await))
    }

    #[tool(
        description = "A download link for a file that anyone can GET until it expires (ttl_seconds, \
        default 3600). Share it instead of the file's bytes."
    )]
    async fn create_link(
        &self,
        Parameters(args): Parameters<LinkArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = match self.caller(&parts) {
            Ok(w) => w,
            Err(e) => return Ok(refused(&e)),
        };
        let key = args.idempotency_key.clone();
        let mut canonical = args.clone();
        canonical.idempotency_key = None;
        let run = || async {
            let id = FileId::parse(&args.id)?;
            let link = self.state.files.link(&who, &id, args.ttl_seconds).await?;
            Ok(json!({"url": link.url, "expires_at": link.expires_at / 1000}))
        };
        Ok(self.once(&who, "create_link", key.as_deref(), &canonical, run).await)
    }

    #[tool(description = "Delete a file: its bytes go and its links stop working. Cannot be undone.")]
    async fn delete_file(
        &self,
        Parameters(args): Parameters<FileArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let run = async {
            let who = self.caller(&parts)?;
            self.state.files.delete(&who, &FileId::parse(&args.id)?).await?;
            Ok(json!({"deleted": args.id}))
        };
        Ok(answer(run.await))
    }

    #[tool(
        description = "Read a text file's text (decoded from its charset), one page at a time: offset and \
        length in characters, at most 32768 per call. next_offset says where the next page starts; it is \
        absent at the end."
    )]
    async fn read_file_text(
        &self,
        Parameters(args): Parameters<ReadTextArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let run = async {
            let who = self.caller(&parts)?;
            let id = FileId::parse(&args.id)?;
            let length = args.length.unwrap_or(text::MAX_PAGE_CHARS);
            let page = text::page(&self.state.files, &who, &id, args.offset.unwrap_or(0), length).await?;
            serde_json::to_value(page).map_err(Error::internal)
        };
        Ok(answer(run.await))
    }

    #[tool(
        description = "Start a workflow run (by workflow id or slug) with its parameters, checked as the \
        HTTP API checks them (unknown, missing or mistyped parameters are named). Returns task_id; poll \
        get_task_result."
    )]
    async fn run_workflow(
        &self,
        Parameters(args): Parameters<RunArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = match self.caller(&parts) {
            Ok(w) => w,
            Err(e) => return Ok(refused(&e)),
        };
        let key = args.idempotency_key.clone();
        let mut canonical = args.clone();
        canonical.idempotency_key = None;
        let run = || async {
            let files = &self.state.files;
            let by = match files.find_workflow(&who, WorkflowRef::Id(&args.workflow)) {
                Ok(_) => WorkflowRef::Id(&args.workflow),
                Err(_) => WorkflowRef::Slug(&args.workflow),
            };
            let t = files.run_workflow(&who, by, args.parameters.clone()).await?;
            Ok(json!({"task_id": t.id.to_string(), "status": t.status.as_str()}))
        };
        Ok(self.once(&who, "run_workflow", key.as_deref(), &canonical, run).await)
    }

    #[tool(
        description = "A workflow task's status (queued, running, succeeded, failed), its error if it \
        failed, and its output files with download links once it succeeded."
    )]
    async fn get_task_result(
        &self,
        Parameters(args): Parameters<TaskArgs>,
        rmcp::handler::server::tool::Extension(parts): rmcp::handler::server::tool::Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let run = async {
            let who = self.caller(&parts)?;
            let (t, outputs) = self.state.files.task_outputs(&who, &args.task_id).await?;
            let outputs: Vec<Value> = outputs
                .iter()
                .map(|o| json!({"file": view(&o.file), "download_url": o.download_url}))
                .collect();
            Ok(json!({"task_id": t.id.to_string(), "status": t.status.as_str(), "error": t.error, "outputs": outputs}))
        };
        Ok(answer(run.await))
    }
}
