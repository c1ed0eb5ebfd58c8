//! The OpenAPI document, generated from the handlers' annotations, served at `/openapi.json`.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dialects::{cyberun, native, workflows};
use crate::error::{ErrorBody, ErrorDetail};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The spec.
#[derive(OpenApi)]
#[openapi(
    info(title = "filedock", description = "File intake for AI agents and workflow platforms: the native API."),
    paths(
        crate::links::open,
        native::upload, native::list, native::lookup, native::get_file, native::download, native::delete_file, native::create_link,
        native::presign, native::complete,
        native::initiate_multipart, native::presign_parts, native::complete_multipart, native::abort_multipart,
        cyberun::initiate, cyberun::presign_parts, cyberun::complete, cyberun::abort,
        workflows::run_by_id, workflows::run_by_slug, workflows::claim, workflows::get_task, workflows::result,
        workflows::presign_output, workflows::heartbeat, workflows::complete, workflows::fail
    ),
    components(schemas(
        native::FileView, native::FileList, native::SignedRequest, native::PresignRequest, native::PresignResponse,
        native::LinkRequest, native::LinkResponse, native::UploadForm, ErrorBody, ErrorDetail,
        native::MultipartRequest, native::MultipartResponse, native::PartsRequest, native::PartUpload,
        native::PartsResponse, native::CompletedPart, native::CompleteMultipartRequest,
        cyberun::InitiateRequest, cyberun::InitiateResponse, cyberun::PresignPartsRequest, cyberun::PartUrl,
        cyberun::PresignPartsResponse, cyberun::CompletedPart, cyberun::CompleteRequest, cyberun::CompleteResponse,
        cyberun::AbortRequest,
        workflows::RunRequest, workflows::RunResponse, workflows::TaskView, workflows::ClaimRequest,
        workflows::ClaimResponse, workflows::OutputView, workflows::ResultResponse, workflows::CompleteRequest,
        workflows::FailRequest
    )),
    modifiers(&BearerAuth),
    tags((name = "files", description = "Stored files"), (name = "uploads", description = "Direct and multipart uploads"),
        (name = "cyberun", description = "Cyberun's multipart upload routes (session keys only)"),
        (name = "workflows", description = "Workflow runs with file parameters, and the tasks runners (device keys) claim"))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn serve() -> Json<serde_json::Value> {
    static SPEC: OnceLock<serde_json::Value> = OnceLock::new();
    Json(
        SPEC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
            .clone(),
    )
}
