//! The Model Context Protocol at `/mcp`: filedock's files and workflows as tools and resources
//! for agents, over the Streamable HTTP transport of the official Rust SDK (`rmcp`).
//!
//! - **Stateless**: no MCP session is kept between requests (`legacy_session_mode` off), so any
//!   instance of a fleet answers any request; answers are plain JSON where the SDK can.
//! - **Keys**: the same filedock keys, `Authorization: Bearer`; a request without a valid one is
//!   a 401 before the protocol sees it. A key sees only its project (and workspace).
//! - **One core**: every tool calls [`filedock_core::FileService`] as the HTTP routes do (same
//!   checks, quotas, retention, events); each tool call takes one request of the project's rate.
//! - **Errors a model can act on**: a refused operation is a tool result with `isError` and
//!   `{"error": {"code", "message"}}` naming the rule (`too_large`, `unsupported_type`,
//!   `quota_exceeded`, `rate_limited`, `not_found`, …), never a protocol error; malformed
//!   arguments are the protocol's `invalid params`.
//!
//! The tools are in `tools`, text paging in `text`; resources (`filedock://files/{id}`) here.

mod text;
mod tools;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use filedock_core::{Error, FileId, Principal};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CacheScope, CallToolResult, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool_handler};

use crate::error::ApiError;
use crate::state::AppState;

/// The largest file `resources/read` returns inline; a larger one is answered with a link.
pub const MAX_INLINE_BYTES: u64 = 1024 * 1024;

/// The largest JSON-RPC request taken (an `upload_file` carries its content in it).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// A page of `resources/list`.
const RESOURCE_PAGE: u32 = 100;

/// The URI of a file as a resource.
pub fn file_uri(id: &FileId) -> String {
    format!("filedock://files/{id}")
}

/// filedock as an MCP server.
#[derive(Clone)]
pub struct Filedock {
    state: AppState,
    tool_router: ToolRouter<Filedock>,
}

impl std::fmt::Debug for Filedock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filedock").finish_non_exhaustive()
    }
}

/// The `/mcp` route: the SDK's service behind the key check.
pub fn routes(state: AppState) -> Router<AppState> {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        // Keys guard this endpoint; the Host check is for unauthenticated local servers.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(MAX_REQUEST_BYTES);
    let for_service = state.clone();
    let service = StreamableHttpService::new(
        move || Ok(Filedock::new(for_service.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
}

/// The key check: the caller's [`Principal`] goes into the request for the tools to find.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = crate::auth::bearer(req.headers()).map(str::to_owned);
    let Some(token) = token else {
        return ApiError(Error::Unauthenticated(
            "a key is required: send 'Authorization: Bearer <key>'".into(),
        ))
        .into_response();
    };
    // The rate is taken per tool call, where a refusal is a result the model can read.
    match state.files.credentials().authenticate(&token).await {
        Ok(who) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Err(e) => ApiError(e).into_response(),
    }
}

impl Filedock {
    fn new(state: AppState) -> Self {
        Filedock {
            state,
            tool_router: Self::tool_router(),
        }
    }
}

/// The caller of a request (put there by [`authenticate`]).
fn principal(ctx: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    ctx.extensions
        .get::<Parts>()
        .and_then(|p| p.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("no caller on the request", None))
}

/// A refusal as a tool result a model can act on.
fn refused(e: &Error) -> CallToolResult {
    crate::error::log_if_server_error(e);
    let mut body = serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}});
    if let Error::RateLimited(_, secs) | Error::InProgress(_, secs) = e {
        body["error"]["retry_after_secs"] = (*secs).into();
    }
    CallToolResult::structured_error(body)
}

/// A refusal of a resource request: a protocol error (resources have no error results).
fn resource_error(e: &Error, uri: &str) -> ErrorData {
    crate::error::log_if_server_error(e);
    match e {
        Error::NotFound(_) | Error::Gone(_) => ErrorData::resource_not_found(format!("{uri}: {e}"), None),
        Error::Invalid(_) => ErrorData::invalid_params(e.to_string(), None),
        _ => ErrorData::internal_error(format!("{}: {e}", e.code()), None),
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Filedock {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(Implementation::new("filedock", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "filedock stores files for this project. Upload with upload_file (text or base64) or \
                 upload_from_url; find files with list_files and get_file; read a text file with \
                 read_file_text, page by page; share with create_link; run a workflow on files with \
                 run_workflow and poll get_task_result. A refused call returns an error result whose \
                 code names the rule (too_large, unsupported_type, quota_exceeded, rate_limited, \
                 not_found). Creating tools take an idempotency_key: a retry with the same key makes \
                 nothing twice.",
            )
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let who = principal(&ctx)?;
        let fail = |e: Error| resource_error(&e, "filedock://files");
        self.state.files.admit(&who.project).map_err(fail)?;
        let before = match request.and_then(|r| r.cursor) {
            Some(c) => Some(FileId::parse(&c).map_err(|_| ErrorData::invalid_params("malformed cursor", None))?),
            None => None,
        };
        let (files, next) = self.state.files.list(&who, before, RESOURCE_PAGE).await.map_err(fail)?;
        let resources = files
            .iter()
            .map(|f| {
                Resource::new(file_uri(&f.id), f.name.to_string())
                    .with_mime_type(f.content_type())
                    .with_size(f.size.unwrap_or(0))
            })
            .collect();
        let mut page = ListResourcesResult::with_all_items(resources)
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private);
        page.next_cursor = next.map(|n| n.to_string());
        Ok(page)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let t = ResourceTemplate::new("filedock://files/{id}", "file")
            .with_description("A file of this project by id: its text or bytes (up to 1 MiB), else a download link");
        Ok(ListResourceTemplatesResult::with_all_items(vec![t]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let who = principal(&ctx)?;
        let uri = request.uri;
        let fail = |e: Error| resource_error(&e, &uri);
        self.state.files.admit(&who.project).map_err(fail)?;
        let id = uri
            .strip_prefix("filedock://files/")
            .and_then(|id| FileId::parse(id).ok())
            .ok_or_else(|| ErrorData::resource_not_found(format!("{uri}: not a filedock file URI"), None))?;
        let rec = self.state.files.ready_file(&who, &id).await.map_err(fail)?;
        let size = rec.size.unwrap_or(0);
        let contents = if size > MAX_INLINE_BYTES {
            let link = self.state.files.link(&who, &id, None).await.map_err(fail)?;
            ResourceContents::text(link.url, uri.clone()).with_mime_type("text/uri-list")
        } else {
            let bytes = text::read_all(&self.state.files, &who, &id, MAX_INLINE_BYTES)
                .await
                .map_err(fail)?;
            match text::decode(&rec, &bytes) {
                Some(t) => ResourceContents::text(t, uri.clone()).with_mime_type(rec.content_type()),
                None => ResourceContents::blob(base64::engine::general_purpose::STANDARD.encode(&bytes), uri.clone())
                    .with_mime_type(rec.content_type()),
            }
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}
