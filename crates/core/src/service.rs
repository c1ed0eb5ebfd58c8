//! [`FileService`]: the one way files come in and go out — a facade over the capabilities,
//! each in its own module with its own state, sharing a [`Context`]: events (`events`), files
//! (`files`, `access`, `retention`), uploads (`uploads`), tasks (`tasks`), readiness, identity
//! and repair (`readiness`, `doctor`). Its methods only forward.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::auth::*;
use crate::blob::*;
use crate::catalog::*;
use crate::clock::*;
use crate::context::Context;
use crate::doctor::*;
use crate::error::Result;
use crate::event_shapes::*;
use crate::events::Events;
use crate::files::*;
use crate::identity::*;
use crate::link::*;
use crate::model::*;
use crate::policy::UploadPolicy;
use crate::range::ByteRange;
use crate::readiness::Readiness;
use crate::settings::*;
use crate::tasks::*;
use crate::uploads::*;
use crate::workflow::Workflow;

/// The files, credentials, uploads, tasks and events of every project.
#[derive(Debug)]
pub struct FileService {
    ctx: Arc<Context>,
    events: Arc<Events>,
    files: Arc<Files>,
    uploads: Uploads,
    tasks: Tasks,
    readiness: Readiness,
    idempotency: crate::idempotency::Idempotency,
}

impl FileService {
    /// A service over a catalog and its backends. Fails if the default backend or the `native`
    /// policy is missing, or a setting is invalid.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        backends: Vec<Backend>,
        signer: Arc<UrlSigner>,
        clock: Arc<dyn Clock>,
        config: FileServiceConfig,
    ) -> Result<Self> {
        let ctx = Arc::new(Context::new(catalog, backends, signer, clock, config)?);
        let events = Arc::new(Events::new(ctx.clone()));
        let files = Arc::new(Files::new(ctx.clone(), events.clone()));
        Ok(FileService {
            uploads: Uploads::new(ctx.clone(), files.clone()),
            tasks: Tasks::new(ctx.clone(), files.clone(), events.clone())?,
            readiness: Readiness::new(ctx.clone()),
            idempotency: crate::idempotency::Idempotency::new(ctx.clone()),
            ctx,
            events,
            files,
        })
    }

    /// See [`Quarantine::sweep`](crate::quarantine::Quarantine::sweep).
    pub async fn sweep_quarantine(&self) -> Result<usize> {
        self.files.quarantine.sweep().await
    }

    /// See [`Quarantine::check_scanners`](crate::quarantine::Quarantine::check_scanners).
    pub async fn check_scanners(&self) -> Result<()> {
        self.files.quarantine.check_scanners().await
    }

    /// Idempotency keys: see [`crate::idempotency`].
    pub fn idempotency(&self) -> &crate::idempotency::Idempotency {
        &self.idempotency
    }

    // ---- shared: backends, settings, keys, limits ----
    /// See [`Context::backends`](crate::context::Context::backends).
    pub fn backends(&self) -> impl Iterator<Item = (&str, &Backend)> {
        self.ctx.backends()
    }
    /// See [`Context::clock`](crate::context::Context::clock).
    pub fn clock(&self) -> &dyn Clock {
        self.ctx.clock()
    }
    /// See [`Context::config`](crate::context::Context::config).
    pub fn config(&self) -> &FileServiceConfig {
        self.ctx.config()
    }
    /// See [`Context::backend`](crate::context::Context::backend).
    pub fn backend(&self, name: Option<&str>) -> Result<&Backend> {
        self.ctx.backend(name)
    }
    /// See [`Context::policy`](crate::context::Context::policy).
    pub fn policy(&self, name: &str) -> Result<&UploadPolicy> {
        self.ctx.policy(name)
    }
    /// See [`Context::authenticate`](crate::context::Context::authenticate).
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        self.ctx.authenticate(token).await
    }
    /// See [`Context::admit`](crate::context::Context::admit): one request of the project's
    /// rate (for callers that authenticate once for many operations, as an MCP session does).
    pub fn admit(&self, project: &ProjectId) -> Result<()> {
        self.ctx.admit(project)
    }
    /// See [`Context::limits`](crate::context::Context::limits).
    pub fn limits(&self, project: &ProjectId) -> crate::limits::Limits {
        self.ctx.limits(project)
    }
    /// See [`Context::check_quota`](crate::context::Context::check_quota).
    pub async fn check_quota(&self, project: &ProjectId, add_bytes: u64) -> Result<()> {
        self.ctx.check_quota(project, add_bytes).await
    }
    /// See [`Context::uploads_in_progress_total`](crate::context::Context::uploads_in_progress_total).
    pub fn uploads_in_progress_total(&self) -> u64 {
        self.ctx.uploads_in_progress_total()
    }
    /// See [`Context::jobs`](crate::context::Context::jobs).
    pub fn jobs(&self) -> &Arc<crate::jobs::Supervisor> {
        self.ctx.jobs()
    }
    /// See [`Context::heartbeat`](crate::context::Context::heartbeat).
    pub async fn fleet_heartbeat(&self) -> Result<u32> {
        self.ctx.heartbeat().await
    }
    /// See [`Context::uploads_in_progress`](crate::context::Context::uploads_in_progress).
    pub fn uploads_in_progress(&self, project: &ProjectId) -> u32 {
        self.ctx.uploads_in_progress(project)
    }
    /// See [`Context::upload_slot`](crate::context::Context::upload_slot).
    pub fn upload_slot(&self, project: &ProjectId) -> Result<crate::limits::UploadSlot> {
        self.ctx.upload_slot(project)
    }
    /// See [`Context::credentials`](crate::context::Context::credentials).
    pub fn credentials(&self) -> &Credentials {
        self.ctx.credentials()
    }
    /// See [`Context::retention_secs`](crate::context::Context::retention_secs).
    pub fn retention_secs(&self, project: &ProjectId, class: Class) -> Option<u64> {
        self.ctx.retention_secs(project, class)
    }

    // ---- events ----
    /// See [`Events::deliveries_signal`](crate::events::Events::deliveries_signal).
    pub fn deliveries_signal(&self) -> &tokio::sync::Notify {
        self.events.deliveries_signal()
    }
    /// See [`Events::has_webhooks`](crate::events::Events::has_webhooks).
    pub fn has_webhooks(&self) -> bool {
        self.events.has_webhooks()
    }
    /// See [`Events::delivery_settings`](crate::events::Events::delivery_settings).
    pub fn delivery_settings(&self) -> &DeliverySettings {
        self.events.delivery_settings()
    }
    /// See [`Events::take_deliveries`](crate::events::Events::take_deliveries).
    pub async fn take_deliveries(&self, limit: u32) -> Result<Vec<Outgoing>> {
        self.events.take_deliveries(limit).await
    }
    /// See [`Events::settle_delivery`](crate::events::Events::settle_delivery).
    pub async fn settle_delivery(&self, d: &DeliveryRecord, outcome: std::result::Result<u16, String>) -> Result<()> {
        self.events.settle_delivery(d, outcome).await
    }

    // ---- files ----
    /// See [`Files::upload`](crate::files::Files::upload).
    pub async fn upload(&self, who: &Principal, new: NewFile, body: ByteStream) -> Result<FileRecord> {
        self.files.upload(who, new, body).await
    }
    /// See [`Files::stage`](crate::files::Files::stage).
    pub async fn stage(&self, who: &Principal, new: NewFile, body: ByteStream) -> Result<Staged> {
        self.files.stage(who, new, body).await
    }
    /// See [`Files::commit`](crate::files::Files::commit).
    pub async fn commit(&self, staged: Staged) -> Result<FileRecord> {
        self.files.commit(staged).await
    }
    /// See [`Files::discard`](crate::files::Files::discard).
    pub async fn discard(&self, staged: Staged) {
        self.files.discard(staged).await
    }
    /// See [`Files::announce`](crate::files::Files::announce).
    pub async fn announce(&self, who: &Principal, new: NewFile) -> Result<crate::fetched::Announced> {
        self.files.announce(who, new).await
    }
    /// See [`Files::fill`](crate::files::Files::fill).
    pub async fn fill(
        &self,
        announced: crate::fetched::Announced,
        size_hint: Option<u64>,
        body: ByteStream,
    ) -> Result<FileRecord> {
        self.files.fill(announced, size_hint, body).await
    }
    /// See [`Files::abandon`](crate::files::Files::abandon).
    pub async fn abandon(&self, announced: crate::fetched::Announced, why: &crate::Error) {
        self.files.abandon(announced, why).await
    }
    /// See [`Files::presign_upload`](crate::files::Files::presign_upload).
    pub async fn presign_upload(&self, who: &Principal, req: PresignUpload) -> Result<(FileRecord, PresignedRequest)> {
        self.files.presign_upload(who, req).await
    }
    /// See [`Files::complete_upload`](crate::files::Files::complete_upload).
    pub async fn complete_upload(&self, who: &Principal, id: &FileId) -> Result<FileRecord> {
        self.files.complete_upload(who, id).await
    }
    /// See [`Files::file_record`](crate::files::Files::file_record).
    pub async fn file_record(&self, id: &FileId) -> Result<Option<FileRecord>> {
        self.files.file_record(id).await
    }
    /// See [`Files::visible_file`](crate::files::Files::visible_file).
    pub async fn visible_file(&self, who: &Principal, id: &FileId) -> Result<FileRecord> {
        self.files.visible_file(who, id).await
    }
    /// See [`Files::ready_file`](crate::files::Files::ready_file).
    pub async fn ready_file(&self, who: &Principal, id: &FileId) -> Result<FileRecord> {
        self.files.ready_file(who, id).await
    }
    /// See [`Files::list`](crate::files::Files::list).
    pub async fn list(
        &self,
        who: &Principal,
        before: Option<FileId>,
        limit: u32,
    ) -> Result<(Vec<FileRecord>, Option<FileId>)> {
        self.files.list(who, before, limit).await
    }
    /// See [`Files::delete`](crate::files::Files::delete).
    pub async fn delete(&self, who: &Principal, id: &FileId) -> Result<()> {
        self.files.delete(who, id).await
    }
    /// See [`Files::download`](crate::files::Files::download).
    pub async fn download(
        &self,
        who: &Principal,
        id: &FileId,
        range: Option<ByteRange>,
    ) -> Result<(FileRecord, GetResult)> {
        self.files.download(who, id, range).await
    }
    /// See [`Files::link`](crate::files::Files::link).
    pub async fn link(&self, who: &Principal, id: &FileId, ttl_secs: Option<u64>) -> Result<PresignedRequest> {
        self.files.link(who, id, ttl_secs).await
    }
    /// See [`Files::link_for`](crate::files::Files::link_for).
    pub fn link_for(&self, rec: &FileRecord, ttl_secs: Option<u64>) -> Result<PresignedRequest> {
        self.files.link_for(rec, ttl_secs)
    }
    /// See [`Files::download_url`](crate::files::Files::download_url).
    pub fn download_url(&self, rec: &FileRecord, ttl_secs: Option<u64>) -> Result<(String, Option<Timestamp>)> {
        self.files.download_url(rec, ttl_secs)
    }
    /// See [`Files::stable_link`](crate::files::Files::stable_link).
    pub fn stable_link(&self, rec: &FileRecord, until: Option<Timestamp>) -> Result<String> {
        self.files.stable_link(rec, until)
    }
    /// See [`Files::open_link`](crate::files::Files::open_link).
    pub async fn open_link(&self, token: &str) -> Result<PresignedRequest> {
        self.files.open_link(token).await
    }
    /// See [`Files::read_link`](crate::files::Files::read_link).
    pub async fn read_link(&self, token: &str, range: Option<ByteRange>) -> Result<(FileRecord, GetResult)> {
        self.files.read_link(token, range).await
    }
    /// See [`Files::reference`](crate::files::Files::reference).
    pub fn reference(&self, rec: &FileRecord) -> Result<String> {
        self.files.reference(rec)
    }
    /// See [`Files::file_by_reference`](crate::files::Files::file_by_reference).
    pub async fn file_by_reference(&self, who: &Principal, reference: &str) -> Result<FileRecord> {
        self.files.file_by_reference(who, reference).await
    }
    /// See [`Files::direct_put`](crate::files::Files::direct_put).
    pub async fn direct_put(
        &self,
        backend: &str,
        key: &str,
        query: &str,
        header: &(dyn Fn(&str) -> Option<String> + Sync),
        body: ByteStream,
    ) -> Result<ObjectMeta> {
        self.files.direct_put(backend, key, query, header, body).await
    }
    /// See [`Files::direct_get`](crate::files::Files::direct_get).
    pub async fn direct_get(
        &self,
        backend: &str,
        key: &str,
        query: &str,
        range: Option<ByteRange>,
    ) -> Result<(Verified, GetResult)> {
        self.files.direct_get(backend, key, query, range).await
    }
    /// See [`Files::sweep_files`](crate::files::Files::sweep_files).
    pub async fn sweep_files(&self) -> Result<usize> {
        self.files.sweep_files().await
    }
    /// See [`Files::sweep_incoming`](crate::files::Files::sweep_incoming).
    pub async fn sweep_incoming(&self) -> Result<usize> {
        let n = self.files.sweep_incoming().await?;
        crate::jobs::swept("incoming", n);
        Ok(n)
    }
    /// See [`Files::prune_records`](crate::files::Files::prune_records).
    pub async fn prune_records(&self) -> Result<usize> {
        self.files.prune_records().await
    }

    // ---- uploads (multipart, tus) ----
    /// See [`Uploads::upload_for`](crate::uploads::Uploads::upload_for).
    pub async fn upload_for(&self, who: &crate::auth::Principal, id: &str, kind: UploadKind) -> Result<UploadRecord> {
        self.uploads.upload_for(who, id, kind).await
    }
    /// See [`Uploads::abort_upload`](crate::uploads::Uploads::abort_upload).
    pub async fn abort_upload(&self, who: &crate::auth::Principal, id: &str, kind: UploadKind) -> Result<()> {
        self.uploads.abort_upload(who, id, kind).await
    }
    /// See [`Uploads::sweep_uploads`](crate::uploads::Uploads::sweep_uploads).
    pub async fn sweep_uploads(&self) -> Result<usize> {
        self.uploads.sweep_uploads().await
    }
    /// See [`Uploads::initiate_multipart`](crate::uploads::Uploads::initiate_multipart).
    pub async fn initiate_multipart(
        &self,
        who: &crate::auth::Principal,
        new: NewFile,
        part_size: Option<u64>,
    ) -> Result<(UploadRecord, FileRecord)> {
        self.uploads.initiate_multipart(who, new, part_size).await
    }
    /// See [`Uploads::part_count`](crate::uploads::Uploads::part_count).
    pub fn part_count(u: &UploadRecord) -> u64 {
        Uploads::part_count(u)
    }
    /// See [`Uploads::presign_parts`](crate::uploads::Uploads::presign_parts).
    pub async fn presign_parts(
        &self,
        who: &crate::auth::Principal,
        id: &str,
        numbers: &[u32],
    ) -> Result<Vec<(u32, PresignedRequest)>> {
        self.uploads.presign_parts(who, id, numbers).await
    }
    /// See [`Uploads::complete_multipart`](crate::uploads::Uploads::complete_multipart).
    pub async fn complete_multipart(
        &self,
        who: &crate::auth::Principal,
        id: &str,
        parts: &[(u32, String)],
    ) -> Result<FileRecord> {
        self.uploads.complete_multipart(who, id, parts).await
    }
    /// See [`Uploads::tus_create`](crate::uploads::Uploads::tus_create).
    pub async fn tus_create(&self, who: &crate::auth::Principal, req: TusCreate) -> Result<UploadRecord> {
        self.uploads.tus_create(who, req).await
    }
    /// See [`Uploads::tus_upload`](crate::uploads::Uploads::tus_upload).
    pub async fn tus_upload(&self, who: &crate::auth::Principal, id: &str) -> Result<UploadRecord> {
        self.uploads.tus_upload(who, id).await
    }
    /// See [`Uploads::tus_append`](crate::uploads::Uploads::tus_append).
    pub async fn tus_append(
        &self,
        who: &crate::auth::Principal,
        id: &str,
        offset: u64,
        length: Option<u64>,
        checksum: Option<Checksum>,
        body: ByteStream,
    ) -> Result<UploadRecord> {
        self.uploads.tus_append(who, id, offset, length, checksum, body).await
    }
    /// See [`Uploads::tus_file`](crate::uploads::Uploads::tus_file).
    pub async fn tus_file(&self, u: &UploadRecord) -> Result<Option<FileRecord>> {
        self.uploads.tus_file(u).await
    }
    /// See [`Uploads::tus_concat`](crate::uploads::Uploads::tus_concat).
    pub async fn tus_concat(
        &self,
        who: &crate::auth::Principal,
        partials: &[String],
        file: NewFile,
        metadata: Option<String>,
    ) -> Result<UploadRecord> {
        self.uploads.tus_concat(who, partials, file, metadata).await
    }

    // ---- workflows and tasks ----
    /// See [`Tasks::find_workflow`](crate::tasks::Tasks::find_workflow).
    pub fn find_workflow(&self, who: &Principal, r: WorkflowRef<'_>) -> Result<&Workflow> {
        self.tasks.find_workflow(who, r)
    }
    /// See [`Tasks::run_workflow`](crate::tasks::Tasks::run_workflow).
    pub async fn run_workflow(&self, who: &Principal, r: WorkflowRef<'_>, params: Option<Value>) -> Result<TaskRecord> {
        self.tasks.run_workflow(who, r, params).await
    }
    /// See [`Tasks::task`](crate::tasks::Tasks::task).
    pub async fn task(&self, who: &Principal, id: &str) -> Result<TaskRecord> {
        self.tasks.task(who, id).await
    }
    /// See [`Tasks::claim_task`](crate::tasks::Tasks::claim_task).
    pub async fn claim_task(&self, who: &Principal, wait: Duration) -> Result<Option<ClaimedTask>> {
        self.tasks.claim_task(who, wait).await
    }
    /// See [`Tasks::heartbeat`](crate::tasks::Tasks::heartbeat).
    pub async fn heartbeat(&self, who: &Principal, id: &str) -> Result<TaskRecord> {
        self.tasks.heartbeat(who, id).await
    }
    /// See [`Tasks::presign_output`](crate::tasks::Tasks::presign_output).
    pub async fn presign_output(
        &self,
        who: &Principal,
        id: &str,
        req: PresignUpload,
    ) -> Result<(FileRecord, PresignedRequest)> {
        self.tasks.presign_output(who, id, req).await
    }
    /// See [`Tasks::complete_task`](crate::tasks::Tasks::complete_task).
    pub async fn complete_task(&self, who: &Principal, id: &str, outputs: &[String]) -> Result<TaskRecord> {
        self.tasks.complete_task(who, id, outputs).await
    }
    /// See [`Tasks::fail_task`](crate::tasks::Tasks::fail_task).
    pub async fn fail_task(&self, who: &Principal, id: &str, reason: &str) -> Result<TaskRecord> {
        self.tasks.fail_task(who, id, reason).await
    }
    /// See [`Tasks::task_outputs`](crate::tasks::Tasks::task_outputs).
    pub async fn task_outputs(&self, who: &Principal, id: &str) -> Result<(TaskRecord, Vec<TaskOutput>)> {
        self.tasks.task_outputs(who, id).await
    }
    /// See [`Tasks::sweep_tasks`](crate::tasks::Tasks::sweep_tasks).
    pub async fn sweep_tasks(&self) -> Result<usize> {
        let n = self.tasks.sweep_tasks().await?;
        crate::jobs::swept("tasks", n);
        Ok(n)
    }

    // ---- readiness, identity and repair ----
    /// See [`Readiness::check_ready`](crate::readiness::Readiness::check_ready).
    pub async fn check_ready(&self) -> Result<()> {
        self.readiness.check_ready().await
    }
    /// See [`Readiness::identity`](crate::readiness::Readiness::identity).
    pub fn identity(&self) -> IdentityState {
        self.readiness.identity()
    }
    /// See [`Readiness::refusal`](crate::readiness::Readiness::refusal).
    pub fn refusal(&self) -> Option<String> {
        self.readiness.refusal()
    }
    /// See [`Readiness::verify_identity`](crate::readiness::Readiness::verify_identity).
    pub async fn verify_identity(&self) -> Result<String> {
        self.readiness.verify_identity().await
    }
    /// See [`Readiness::sweep_intents`](crate::readiness::Readiness::sweep_intents).
    pub async fn sweep_intents(&self, grace_secs: u64) -> Result<usize> {
        let n = self.readiness.sweep_intents(grace_secs).await?;
        crate::jobs::swept("intents", n);
        Ok(n)
    }
    /// See [`Readiness::doctor`](crate::readiness::Readiness::doctor).
    pub async fn doctor(&self, repair: Repair, grace_secs: u64) -> Result<DoctorReport> {
        self.readiness.doctor(repair, grace_secs).await
    }
}
