//! Cyberun's workflow runs (`shared/seeds/003_…`, step 3) and the task routes of the runners
//! that execute them, under `/api/v1/r/`:
//!
//! - `POST workflows/{workflowId}/run`, `POST workflows/slug/{workflowSlug}/run` with
//!   `{"parameters": {…}}` → `{task_id}` (any key of the project);
//! - `POST tasks/claim` with `{"wait_secs": n}` → `{task_id, workflow, workflow_slug,
//!   parameters, attempt, lease_expires_at}`, or 204 when no task came (device keys only);
//! - `POST tasks/{id}/outputs/presign` (the presign's body and answer), `POST tasks/{id}/heartbeat`,
//!   `POST tasks/{id}/complete` with `{outputs: [file_key, …]}`, `POST tasks/{id}/fail` with
//!   `{reason}` (the runner that holds the task);
//! - `GET tasks/{id}` → the task; `GET tasks/{id}/result` → `{status, outputs: [{file_key,
//!   file_name, size, download_url}], download_url, error}`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use filedock_core::{ClaimedTask, Error, TaskRecord, WorkflowRef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::body::json_body;
use crate::dialects::cyberun::{PresignResponse, presign_request, presign_response};
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/r/workflows/{workflow_id}/run", post(run_by_id))
        .route("/api/v1/r/workflows/slug/{workflow_slug}/run", post(run_by_slug))
        .route("/api/v1/r/tasks/claim", post(claim))
        .route("/api/v1/r/tasks/{task_id}", get(get_task))
        .route("/api/v1/r/tasks/{task_id}/result", get(result))
        .route("/api/v1/r/tasks/{task_id}/outputs/presign", post(presign_output))
        .route("/api/v1/r/tasks/{task_id}/heartbeat", post(heartbeat))
        .route("/api/v1/r/tasks/{task_id}/complete", post(complete))
        .route("/api/v1/r/tasks/{task_id}/fail", post(fail))
}

/// A run's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The workflow's parameters by name: strings, numbers, booleans, and for `file` parameters
    /// a `file_key` (or `path`) of a ready file of the project.
    #[schema(value_type = Object)]
    pub parameters: Option<serde_json::Value>,
}

/// A run's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunResponse {
    pub task_id: String,
}

/// A task, as its creator and its runner see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub task_id: String,
    pub workflow: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// How many times it was claimed.
    pub attempts: u32,
    /// While running: when the runner's lease ends (Unix seconds).
    pub lease_expires_at: Option<i64>,
    /// The outputs' `file_key`s, once succeeded.
    pub outputs: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

async fn task_view(state: &AppState, t: &TaskRecord) -> ApiResult<TaskView> {
    let mut outputs = Vec::with_capacity(t.outputs.len());
    for id in &t.outputs {
        if let Some(f) = state.files.file_record(id).await? {
            outputs.push(f.key.to_string());
        }
    }
    Ok(TaskView {
        task_id: t.id.to_string(),
        workflow: t.workflow.clone(),
        status: t.status.as_str().to_owned(),
        attempts: t.attempts,
        lease_expires_at: t.lease_until.map(secs),
        outputs,
        error: t.error.clone(),
        created_at: secs(t.created_at),
        started_at: t.started_at.map(secs),
        finished_at: t.finished_at.map(secs),
    })
}

async fn run(
    state: &AppState,
    who: &filedock_core::Principal,
    r: WorkflowRef<'_>,
    body: &Bytes,
) -> ApiResult<Json<RunResponse>> {
    let req: RunRequest = json_body(body)?;
    let t = state.files.run_workflow(who, r, req.parameters).await?;
    Ok(Json(RunResponse {
        task_id: t.id.to_string(),
    }))
}

#[utoipa::path(post, path = "/api/v1/r/workflows/{workflow_id}/run", tag = "workflows",
    params(("workflow_id" = String, Path, description = "The workflow's id")),
    request_body(content = RunRequest, content_type = "application/json"),
    responses((status = 200, body = RunResponse),
        (status = 400, description = "An unknown, missing or mistyped parameter (named), or a file parameter that is not a ready file of the project", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, description = "No such workflow in the key's project", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_by_id(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RunResponse>> {
    run(&state, &who, WorkflowRef::Id(&id), &body).await
}

#[utoipa::path(post, path = "/api/v1/r/workflows/slug/{workflow_slug}/run", tag = "workflows",
    params(("workflow_slug" = String, Path, description = "The workflow's slug")),
    request_body(content = RunRequest, content_type = "application/json"),
    responses((status = 200, body = RunResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_by_slug(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(slug): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RunResponse>> {
    run(&state, &who, WorkflowRef::Slug(&slug), &body).await
}

/// A claim's body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// How long to wait for a task when none is queued, in seconds (default 0, at most the
    /// server's `tasks.max_claim_wait_secs`).
    pub wait_secs: Option<u64>,
}

/// A claimed task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimResponse {
    pub task_id: String,
    /// The workflow's id.
    pub workflow: String,
    pub workflow_slug: Option<String>,
    /// The parameters; each file parameter is `{file_key, download_url, file_name, size,
    /// content_type, sha256}` with a short-lived URL straight to storage.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// 1 for the first claim, more when earlier runners went silent.
    pub attempt: u32,
    /// When the lease ends unless renewed (heartbeat, outputs/presign), Unix seconds.
    pub lease_expires_at: Option<i64>,
}

impl From<ClaimedTask> for ClaimResponse {
    fn from(c: ClaimedTask) -> Self {
        ClaimResponse {
            task_id: c.task.id.to_string(),
            workflow: c.task.workflow,
            workflow_slug: c.slug,
            parameters: c.parameters,
            attempt: c.task.attempts,
            lease_expires_at: c.task.lease_until.map(secs),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/r/tasks/claim", tag = "workflows",
    request_body(content = ClaimRequest, content_type = "application/json"),
    responses((status = 200, body = ClaimResponse), (status = 204, description = "No task was queued within the wait"),
        (status = 400, description = "A body that is not a claim", body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, description = "Not a device (dk-) key", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn claim(State(state): State<AppState>, Auth(who): Auth, body: Bytes) -> ApiResult<Response> {
    let req: ClaimRequest = if body.is_empty() {
        ClaimRequest::default()
    } else {
        json_body(&body)?
    };
    let wait = Duration::from_secs(req.wait_secs.unwrap_or(0));
    Ok(match state.files.claim_task(&who, wait).await? {
        Some(c) => Json(ClaimResponse::from(c)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[utoipa::path(get, path = "/api/v1/r/tasks/{task_id}", tag = "workflows",
    params(("task_id" = String, Path)),
    responses((status = 200, body = TaskView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_task(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let t = state.files.task(&who, &id).await?;
    Ok(Json(task_view(&state, &t).await?))
}

/// One output of a succeeded task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OutputView {
    pub file_key: String,
    pub file_name: String,
    pub size: Option<u64>,
    /// Valid until the output expires.
    pub download_url: String,
}

/// A task's result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultResponse {
    pub status: String,
    /// The outputs still kept (expired ones are left out).
    pub outputs: Vec<OutputView>,
    /// The first output's URL.
    pub download_url: Option<String>,
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/r/tasks/{task_id}/result", tag = "workflows",
    params(("task_id" = String, Path)),
    responses((status = 200, body = ResultResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn result(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ResultResponse>> {
    let (t, outputs) = state.files.task_outputs(&who, &id).await?;
    let outputs: Vec<OutputView> = outputs
        .into_iter()
        .map(|o| OutputView {
            file_key: o.file.key.to_string(),
            file_name: o.file.name.to_string(),
            size: o.file.size,
            download_url: o.download_url,
        })
        .collect();
    Ok(Json(ResultResponse {
        status: t.status.as_str().to_owned(),
        download_url: outputs.first().map(|o| o.download_url.clone()),
        outputs,
        error: t.error,
    }))
}

#[utoipa::path(post, path = "/api/v1/r/tasks/{task_id}/outputs/presign", tag = "workflows",
    params(("task_id" = String, Path)),
    request_body(content = Object, content_type = "application/json", description = "As /api/v1/r/files/presign: {file_name, file_size, content_type}"),
    responses((status = 200, description = "As /api/v1/r/files/presign: {file_key, upload_url, upload_headers}; the key is under outputs/"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key does not hold the task", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn presign_output(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<PresignResponse>> {
    let (rec, signed) = state.files.presign_output(&who, &id, presign_request(&body)?).await?;
    Ok(Json(presign_response(&rec, signed)))
}

#[utoipa::path(post, path = "/api/v1/r/tasks/{task_id}/heartbeat", tag = "workflows",
    params(("task_id" = String, Path)),
    responses((status = 200, description = "The lease was extended", body = TaskView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key does not hold the task", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn heartbeat(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let t = state.files.heartbeat(&who, &id).await?;
    Ok(Json(task_view(&state, &t).await?))
}

/// A completion's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The outputs' `file_key`s (from outputs/presign), uploaded.
    pub outputs: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/api/v1/r/tasks/{task_id}/complete", tag = "workflows",
    params(("task_id" = String, Path)),
    request_body(content = CompleteRequest, content_type = "application/json"),
    responses((status = 200, body = TaskView),
        (status = 400, description = "An output that is not this task's, or not uploaded", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "The key does not hold the task", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<TaskView>> {
    let req: CompleteRequest = json_body(&body)?;
    let outputs = req
        .outputs
        .ok_or_else(|| Error::invalid("'outputs' is required (a list of file_keys)"))?;
    let t = state.files.complete_task(&who, &id, &outputs).await?;
    Ok(Json(task_view(&state, &t).await?))
}

/// A failure's body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub reason: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/r/tasks/{task_id}/fail", tag = "workflows",
    params(("task_id" = String, Path)),
    request_body(content = FailRequest, content_type = "application/json"),
    responses((status = 200, body = TaskView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "The key does not hold the task", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn fail(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<TaskView>> {
    let req: FailRequest = json_body(&body)?;
    let reason = req.reason.ok_or_else(|| Error::invalid("'reason' is required"))?;
    let t = state.files.fail_task(&who, &id, &reason).await?;
    Ok(Json(task_view(&state, &t).await?))
}
