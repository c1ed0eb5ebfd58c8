//! Workflow runs and the runners that execute them.
//!
//! A run names a workflow (by id or slug) and gives its parameters; every one is checked against
//! the declaration, and a file parameter must name a ready, unexpired file of the caller's
//! project. The run becomes a queued [`TaskRecord`]. A device key claims the oldest queued task
//! of its project — one conditional UPDATE, so a claim is exactly-once across instances — and
//! holds it on a lease it renews (heartbeat, presigning an output). A runner that goes silent
//! loses the lease; the task is queued again, or failed after `max_attempts` claims. The runner
//! presigns its outputs (class `output`, keys under `outputs/{project}/{task}/`) and completes
//! the task with their keys, or fails it with a reason.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::auth::Principal;
use crate::blob::PresignedRequest;
use crate::catalog::Change;
use crate::clock::Timestamp;
use crate::context::Context;
use crate::context::{is_visible_to, secs_to_ms};
use crate::error::{Error, Result};
use crate::event_shapes::{EventType, task_data};
use crate::files::{KeyLayout, PresignUpload};
use crate::model::{Class, CredentialKind, FileId, FileRecord, FileStatus, TaskId, TaskRecord, TaskStatus};
use crate::workflow::{ParamType, Workflow};

pub use crate::files::output_prefix;
pub use crate::settings::TaskSettings;

/// How a run names its workflow.
#[derive(Debug, Clone, Copy)]
pub enum WorkflowRef<'a> {
    Id(&'a str),
    Slug(&'a str),
}

/// A task handed to a runner, with its parameters as the runner needs them: a file parameter
/// is `{file_key, download_url, file_name, size, content_type, sha256}`.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    pub task: TaskRecord,
    pub slug: Option<String>,
    pub parameters: Map<String, Value>,
}

/// One output of a succeeded task, with a URL that works until the file expires.
#[derive(Debug, Clone)]
pub struct TaskOutput {
    pub file: FileRecord,
    pub download_url: String,
}

fn param_error(name: &str, e: Error) -> Error {
    if e.is_server_error() {
        e
    } else {
        Error::invalid(format!("parameter '{name}': {e}"))
    }
}

/// How long a waiting claim sleeps between looks, at most, when the catalog does not announce
/// queued tasks (SQLite, or PostgreSQL while its listening connection is down).
const CLAIM_POLL: Duration = Duration::from_millis(250);

/// Workflow runs and the runners' tasks; wakes this instance's waiting claims when one is queued.
#[derive(Debug)]
pub struct Tasks {
    pub(crate) ctx: Arc<Context>,
    pub(crate) files: Arc<crate::files::Files>,
    pub(crate) events: Arc<crate::events::Events>,
    workflows: crate::workflow::Workflows,
    task_signal: tokio::sync::Notify,
}

impl Tasks {
    pub(crate) fn new(
        ctx: Arc<Context>,
        files: Arc<crate::files::Files>,
        events: Arc<crate::events::Events>,
    ) -> Result<Self> {
        let workflows = crate::workflow::Workflows::new(ctx.config.workflows.clone())?;
        Ok(Tasks {
            ctx,
            files,
            events,
            workflows,
            task_signal: tokio::sync::Notify::new(),
        })
    }
}

impl Tasks {
    /// A workflow of the principal's project (404 otherwise).
    pub fn find_workflow(&self, who: &Principal, r: WorkflowRef<'_>) -> Result<&Workflow> {
        match r {
            WorkflowRef::Id(id) => self.workflows.by_id(&who.project, id),
            WorkflowRef::Slug(slug) => self.workflows.by_slug(&who.project, slug),
        }
        .ok_or_else(|| Error::not_found("no such workflow"))
    }

    /// Checks a run's parameters and queues a task. Every declared parameter is checked by type
    /// (a `null` counts as absent); one not declared, a required one missing, or a value of the
    /// wrong type is a 400 naming it.
    pub async fn run_workflow(&self, who: &Principal, r: WorkflowRef<'_>, params: Option<Value>) -> Result<TaskRecord> {
        let wf = self.find_workflow(who, r)?;
        let given = match params {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(Error::invalid("'parameters' must be a JSON object")),
        };
        if let Some(unknown) = given.keys().find(|k| !wf.parameters.iter().any(|p| &p.name == *k)) {
            let known: Vec<&str> = wf.parameters.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::invalid(format!(
                "unknown parameter '{unknown}' (workflow '{}' takes: {})",
                wf.id,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        }
        let mut checked = Map::new();
        for spec in &wf.parameters {
            let name = &spec.name;
            let v = match given.get(name) {
                None | Some(Value::Null) if spec.required => {
                    return Err(Error::invalid(format!("missing required parameter '{name}'")));
                }
                None | Some(Value::Null) => continue,
                Some(v) => v,
            };
            let value = match (spec.kind, v) {
                (ParamType::String, Value::String(_))
                | (ParamType::Number, Value::Number(_))
                | (ParamType::Boolean, Value::Bool(_)) => v.clone(),
                (ParamType::File, Value::String(reference)) => {
                    let rec = self
                        .files
                        .file_by_reference(who, reference)
                        .await
                        .map_err(|e| param_error(name, e))?;
                    if rec.status != FileStatus::Ready {
                        return Err(param_error(name, Error::invalid("the file is not ready")));
                    }
                    serde_json::json!({ "file_id": rec.id })
                }
                (ParamType::File, _) => {
                    return Err(Error::invalid(format!(
                        "parameter '{name}' must be a file: its file_key or path, as a string"
                    )));
                }
                (kind, _) => {
                    return Err(Error::invalid(format!(
                        "parameter '{name}' must be a {}",
                        kind.as_str()
                    )));
                }
            };
            checked.insert(name.clone(), value);
        }
        let t = TaskRecord {
            id: TaskId::generate(),
            project: who.project.clone(),
            workspace: who.workspace.clone(),
            workflow: wf.id.clone(),
            parameters: Value::Object(checked),
            status: TaskStatus::Queued,
            created_by: Some(who.credential_id.clone()),
            runner: None,
            attempts: 0,
            lease_until: None,
            outputs: vec![],
            error: None,
            created_at: self.ctx.clock.now(),
            started_at: None,
            finished_at: None,
        };
        self.ctx.catalog.insert_task(&t).await?;
        self.task_signal.notify_waiters();
        Ok(t)
    }

    /// A task the principal may see (its project, and its workspace when the key has one).
    pub async fn task(&self, who: &Principal, id: &str) -> Result<TaskRecord> {
        let id = TaskId::parse(id)?;
        self.ctx
            .catalog
            .task(&id)
            .await?
            .filter(|t| t.project == who.project && (who.workspace.is_none() || t.workspace == who.workspace))
            .ok_or_else(|| Error::not_found("no such task"))
    }

    fn lease_end(&self) -> Timestamp {
        self.ctx.clock.now() + secs_to_ms(self.ctx.config.tasks.lease_secs)
    }

    /// Hands the oldest queued task of the device key's project to it, waiting up to `wait`
    /// (at most `max_claim_wait_secs`) for one to be queued. `None` when none came.
    pub async fn claim_task(&self, who: &Principal, wait: Duration) -> Result<Option<ClaimedTask>> {
        if who.kind != CredentialKind::Device {
            return Err(Error::Forbidden("only device keys (dk-) claim tasks".into()));
        }
        let wait = wait.min(Duration::from_secs(self.ctx.config.tasks.max_claim_wait_secs));
        let deadline = tokio::time::Instant::now() + wait;
        let mut waited = false;
        loop {
            // Made before looking, so a run queued meanwhile is not missed.
            let signal = self.task_signal.notified();
            let shared = self.ctx.catalog.queued_signal().map(|n| n.notified());
            // A key revoked while its claim waited gets nothing.
            if waited {
                self.ctx.credentials().still_active(&who.credential_id).await?;
            }
            waited = true;
            if let Some(claimed) = self.try_claim(who).await? {
                return Ok(Some(claimed));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            match shared {
                // Woken by a run queued on any instance (the catalog announces it): no query
                // while nothing is queued.
                Some(shared) => {
                    tokio::select! {
                        () = signal => {}
                        () = shared => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                // Woken by a run on this instance, or look again soon (runs on other instances).
                None => {
                    let _ = tokio::time::timeout(CLAIM_POLL.min(deadline - now), signal).await;
                }
            }
        }
    }

    async fn try_claim(&self, who: &Principal) -> Result<Option<ClaimedTask>> {
        self.sweep_tasks().await?;
        loop {
            let queued = self
                .ctx
                .catalog
                .queued_tasks(&who.project, who.workspace.as_ref(), 16)
                .await?;
            if queued.is_empty() {
                return Ok(None);
            }
            for t in queued {
                let now = self.ctx.clock.now();
                if !self
                    .ctx
                    .catalog
                    .claim_task(&t.id, &who.credential_id, now, self.lease_end())
                    .await?
                {
                    continue; // another runner won it
                }
                let t = self
                    .ctx
                    .catalog
                    .task(&t.id)
                    .await?
                    .ok_or_else(|| Error::internal_msg("a claimed task vanished"))?;
                match self.runner_parameters(&t).await? {
                    Ok(parameters) => {
                        let slug = self.workflows.get(&t.workflow).and_then(|w| w.slug.clone());
                        return Ok(Some(ClaimedTask {
                            task: t,
                            slug,
                            parameters,
                        }));
                    }
                    Err(reason) => {
                        // An input is gone: the task cannot run anywhere. Fail it, look on.
                        self.finish(who, &t, TaskStatus::Failed, &[], Some(&reason)).await?;
                    }
                }
            }
        }
    }

    /// The parameters a runner gets; `Err(reason)` when an input file is gone.
    async fn runner_parameters(&self, t: &TaskRecord) -> Result<std::result::Result<Map<String, Value>, String>> {
        let mut out = Map::new();
        let Value::Object(params) = &t.parameters else {
            return Err(Error::internal_msg("a task's parameters are not an object"));
        };
        let now = self.ctx.clock.now();
        for (name, v) in params {
            let file_id = match v {
                Value::Object(o) => o.get("file_id").and_then(Value::as_str),
                _ => None,
            };
            let Some(file_id) = file_id else {
                out.insert(name.clone(), v.clone());
                continue;
            };
            let rec = self
                .ctx
                .catalog
                .file(&FileId::parse(file_id)?)
                .await?
                .filter(|r| r.status == FileStatus::Ready && r.expires_at.is_none_or(|e| e > now));
            let Some(rec) = rec else {
                return Ok(Err(format!(
                    "the input file of parameter '{name}' was deleted or expired before a runner claimed the task"
                )));
            };
            let url = self
                .files
                .link_for(&rec, Some(self.ctx.config.tasks.input_url_ttl_secs))?;
            out.insert(
                name.clone(),
                serde_json::json!({
                    "file_key": rec.key,
                    "download_url": url.url,
                    "file_name": rec.name,
                    "size": rec.size,
                    "content_type": rec.content_type(),
                    "sha256": rec.sha256,
                }),
            );
        }
        Ok(Ok(out))
    }

    /// A task the caller holds as its runner: running, claimed by this key. A task queued again
    /// after its lease ended, claimed by another runner, or finished is a 409.
    async fn held_task(&self, who: &Principal, id: &str) -> Result<TaskRecord> {
        let t = self.task(who, id).await?;
        if t.status == TaskStatus::Running && t.runner.as_deref() == Some(who.credential_id.as_str()) {
            return Ok(t);
        }
        Err(Error::Conflict(match t.status {
            TaskStatus::Queued => "this key does not hold the task (its lease ended and it was queued again)".into(),
            TaskStatus::Running => "another runner holds this task".into(),
            s => format!("the task has {} already", s.as_str()),
        }))
    }

    /// Extends the runner's lease; returns the task with its new `lease_until`.
    pub async fn heartbeat(&self, who: &Principal, id: &str) -> Result<TaskRecord> {
        let t = self.held_task(who, id).await?;
        if !self
            .ctx
            .catalog
            .renew_task(&t.id, &who.credential_id, self.lease_end())
            .await?
        {
            return Err(Error::Conflict("the task's lease ended before the heartbeat".into()));
        }
        self.task(who, id).await
    }

    /// Announces one output of a task the caller runs: a direct upload of class `output` at
    /// `outputs/{project}/{task}/{id}/{name}`. Renews the lease.
    pub async fn presign_output(
        &self,
        who: &Principal,
        id: &str,
        mut req: PresignUpload,
    ) -> Result<(FileRecord, PresignedRequest)> {
        let t = self.heartbeat(who, id).await?;
        req.file.class = Class::Output;
        req.file.ttl_secs = None;
        req.file.key = KeyLayout::TaskOutput(t.id);
        self.files.presign_upload(who, req).await
    }

    /// Completes a task the caller runs with its outputs (their `file_key`s or `path`s): each
    /// must be an output presigned for this task whose bytes have arrived. Completing again
    /// with the same outputs answers the task as it is.
    pub async fn complete_task(&self, who: &Principal, id: &str, outputs: &[String]) -> Result<TaskRecord> {
        let t = self.task(who, id).await?;
        let mut files = Vec::with_capacity(outputs.len());
        let prefix = format!("{}/", output_prefix(&t.project, &t.id));
        for reference in outputs {
            let rec = self
                .files
                .file_by_reference(who, reference)
                .await
                .map_err(|e| param_error(&format!("outputs: {reference}"), e))?;
            if !rec.key.as_str().starts_with(&prefix) || rec.class != Class::Output {
                return Err(Error::invalid(format!(
                    "'{reference}' is not an output of this task (presign outputs with /tasks/{id}/outputs/presign)"
                )));
            }
            if !files.contains(&rec.id) {
                files.push(rec.id);
            }
        }
        if t.status == TaskStatus::Succeeded
            && t.runner.as_deref() == Some(who.credential_id.as_str())
            && t.outputs == files
        {
            return Ok(t);
        }
        let t = self.held_task(who, id).await?;
        self.finish(who, &t, TaskStatus::Succeeded, &files, None).await
    }

    /// Fails a task the caller runs, with a reason (1 to 1000 characters).
    pub async fn fail_task(&self, who: &Principal, id: &str, reason: &str) -> Result<TaskRecord> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 1000 {
            return Err(Error::invalid("'reason' must be 1 to 1000 characters"));
        }
        let t = self.held_task(who, id).await?;
        self.finish(who, &t, TaskStatus::Failed, &[], Some(reason)).await
    }

    async fn finish(
        &self,
        who: &Principal,
        t: &TaskRecord,
        status: TaskStatus,
        outputs: &[FileId],
        error: Option<&str>,
    ) -> Result<TaskRecord> {
        let now = self.ctx.clock.now();
        let done = TaskRecord {
            status,
            outputs: outputs.to_vec(),
            error: error.map(str::to_owned),
            finished_at: Some(now),
            lease_until: None,
            ..t.clone()
        };
        let (event, keys) = self.event_of(&done).await;
        let change = Change::FinishTask {
            id: &t.id,
            runner: &who.credential_id,
            status,
            outputs,
            error,
            at: now,
        };
        let finished = match event {
            Some(event) => {
                self.events
                    .change(change, &t.project, event, || task_data(&done, &keys))
                    .await?
            }
            None => self.ctx.catalog.apply(change, &[]).await?,
        };
        if !finished {
            return Err(Error::Conflict(
                "the task's lease ended before it was finished; it was queued again".into(),
            ));
        }
        let t = self
            .ctx
            .catalog
            .task(&t.id)
            .await?
            .ok_or_else(|| Error::internal_msg("a finished task vanished"))?;
        Ok(t)
    }

    /// The event a task in this state reports, and its outputs' keys for the event.
    async fn event_of(&self, t: &TaskRecord) -> (Option<EventType>, Vec<String>) {
        let event = match t.status {
            TaskStatus::Succeeded => EventType::TaskSucceeded,
            TaskStatus::Failed => EventType::TaskFailed,
            _ => return (None, Vec::new()),
        };
        let mut keys = Vec::with_capacity(t.outputs.len());
        for id in &t.outputs {
            if let Ok(Some(f)) = self.ctx.catalog.file(id).await {
                keys.push(f.key.to_string());
            }
        }
        (Some(event), keys)
    }

    /// A task and, once it succeeded, its outputs that are still kept, each with a download URL
    /// valid until it expires (a presigned URL straight to storage when the backend can sign
    /// that long, else a stable filedock link).
    pub async fn task_outputs(&self, who: &Principal, id: &str) -> Result<(TaskRecord, Vec<TaskOutput>)> {
        let t = self.task(who, id).await?;
        let now = self.ctx.clock.now();
        let mut outputs = Vec::with_capacity(t.outputs.len());
        for fid in &t.outputs {
            let Some(rec) = self.ctx.catalog.file(fid).await? else {
                continue;
            };
            if rec.status != FileStatus::Ready || rec.expires_at.is_some_and(|e| e <= now) || !is_visible_to(&rec, who)
            {
                continue;
            }
            let (download_url, _) = self.files.download_url(&rec, None)?;
            outputs.push(TaskOutput {
                file: rec,
                download_url,
            });
        }
        Ok((t, outputs))
    }

    /// Queues again every task whose runner went silent past its lease — or fails it, once it
    /// was claimed `max_attempts` times. Safe on every instance at once (each change is one
    /// conditional statement).
    pub async fn sweep_tasks(&self) -> Result<usize> {
        let now = self.ctx.clock.now();
        let mut released = 0;
        for t in self.ctx.catalog.lapsed_tasks(now, 100).await? {
            let failure = (t.attempts >= self.ctx.config.tasks.max_attempts)
                .then(|| format!("its runner went silent past the lease {} times", t.attempts));
            let changed = match &failure {
                None => self.ctx.catalog.release_task(&t.id, now, None).await?,
                Some(reason) => {
                    let failed = TaskRecord {
                        status: TaskStatus::Failed,
                        error: Some(reason.clone()),
                        finished_at: Some(now),
                        lease_until: None,
                        ..t.clone()
                    };
                    let change = Change::FailLapsedTask { id: &t.id, now, reason };
                    self.events
                        .change(change, &t.project, EventType::TaskFailed, || task_data(&failed, &[]))
                        .await?
                }
            };
            if changed {
                released += 1;
                if failure.is_none() {
                    self.task_signal.notify_waiters();
                }
            }
        }
        Ok(released)
    }
}
