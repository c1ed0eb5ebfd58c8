//! The OpenAPI document of every route, generated from the handlers' annotations, served at
//! `/openapi.json`, and a docs page (Swagger UI, compiled into the binary) at `/docs/`.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::{Json, Router};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::dialects::{cyberun, huawei, juniortree, native, tokenops, tus, workflows};
use crate::error::{ErrorBody, ErrorDetail};
use crate::{blob, links, ops, web};

/// The keys: `Authorization: Bearer` everywhere, `X-Auth-Token` on Huawei Cloud's route.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "x_auth_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Auth-Token"))),
        );
    }
}

/// Handlers in different modules share names (`complete`, `presign`): such operation ids get
/// their tag in front, so each id is unique as OpenAPI requires.
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item).into_iter().flatten() {
                if let Some(id) = &op.operation_id {
                    *seen.entry(id.clone()).or_default() += 1;
                }
            }
        }
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item).into_iter().flatten() {
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default();
                if let Some(id) = op.operation_id.as_mut()
                    && seen.get(id.as_str()).is_some_and(|&n| n > 1)
                {
                    *id = format!("{tag}_{id}");
                }
            }
        }
    }
}

/// Every operation slot of a path.
fn operations(item: &mut utoipa::openapi::PathItem) -> [&mut Option<utoipa::openapi::path::Operation>; 8] {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
}

/// tus answers the same at `/tus/` as at `/tus`, and discovery (`OPTIONS`) on an upload's URL too.
struct TusAliases;

impl Modify for TusAliases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let paths = &mut openapi.paths.paths;
        let Some(root) = paths.get("/tus").cloned() else {
            return;
        };
        let mut slash = root.clone();
        for op in [&mut slash.post, &mut slash.options].into_iter().flatten() {
            op.operation_id = op.operation_id.as_ref().map(|id| format!("{id}_slash"));
        }
        paths.insert("/tus/".to_owned(), slash);
        if let (Some(item), Some(options)) = (paths.get_mut("/tus/{id}"), root.options) {
            let mut options = options;
            options.operation_id = Some("discover_upload".to_owned());
            let mut id = Parameter::new("id");
            id.parameter_in = ParameterIn::Path;
            id.required = Required::True;
            id.schema = Some(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .into(),
            );
            options
                .parameters
                .get_or_insert_with(Vec::new)
                .push(utoipa::openapi::RefOr::T(id));
            item.options = Some(options);
        }
    }
}

/// The spec.
#[derive(OpenApi)]
#[openapi(
    info(title = "filedock", description = "File intake for AI agents and workflow platforms: the native API, \
        the vendor dialects (TokenOps, Huawei Cloud agent runtime, Juniortree, Cyberun), tus 1.0.0, the signed \
        `/blob/` URLs of stores filedock serves itself, links and operations. Readable at `/docs/`."),
    paths(
        links::open, ops::healthz, ops::readyz, ops::serve_metrics, web::index, serve,
        blob::put_object, blob::get_object,
        tokenops::upload_url, huawei::upload_file, juniortree::upload,
        cyberun::presign,
        tus::discover, tus::create, tus::head, tus::patch, tus::terminate,
        native::upload, native::from_url, native::list, native::lookup, native::get_file, native::download, native::delete_file, native::create_link,
        native::presign, native::complete,
        native::initiate_multipart, native::presign_parts, native::complete_multipart, native::abort_multipart,
        native::create_key, native::list_keys, native::revoke_key,
        cyberun::initiate, cyberun::presign_parts, cyberun::complete, cyberun::abort,
        workflows::run_by_id, workflows::run_by_slug, workflows::claim, workflows::get_task, workflows::result,
        workflows::presign_output, workflows::heartbeat, workflows::complete, workflows::fail
    ),
    components(schemas(
        native::FileView, native::FileList, native::FromUrlRequest, native::SignedRequest, native::PresignRequest, native::PresignResponse,
        native::LinkRequest, native::LinkResponse, native::UploadForm, ErrorBody, ErrorDetail,
        native::MultipartRequest, native::MultipartResponse, native::PartsRequest, native::PartUpload,
        native::PartsResponse, native::CompletedPart, native::CompleteMultipartRequest,
        native::KeyRequest, native::KeyView, native::NewKey, native::KeyList,
        cyberun::InitiateRequest, cyberun::InitiateResponse, cyberun::PresignPartsRequest, cyberun::PartUrl,
        cyberun::PresignPartsResponse, cyberun::CompletedPart, cyberun::CompleteRequest, cyberun::CompleteResponse,
        cyberun::AbortRequest,
        workflows::RunRequest, workflows::RunResponse, workflows::TaskView, workflows::ClaimRequest,
        workflows::ClaimResponse, workflows::OutputView, workflows::ResultResponse, workflows::CompleteRequest,
        workflows::FailRequest
    )),
    modifiers(&Security, &TusAliases, &UniqueOperationIds),
    tags((name = "files", description = "Stored files"), (name = "uploads", description = "Direct and multipart uploads"),
        (name = "links", description = "Stable download links"),
        (name = "tus", description = "tus 1.0.0 resumable uploads: creation, creation-with-upload, creation-defer-length, \
            termination, expiration, checksum, concatenation"),
        (name = "tokenops", description = "TokenOps presigned upload URLs"),
        (name = "huawei", description = "Huawei Cloud agent runtime upload (errors are `{error_code, error_msg}`)"),
        (name = "juniortree", description = "Juniortree's Agent-header upload (errors are `{code, msg, detail}`)"),
        (name = "cyberun", description = "Cyberun's presign (any key) and multipart upload routes (session keys only)"),
        (name = "blob", description = "Presigned URLs of stores filedock serves itself; errors in S3's XML shape"),
        (name = "admin", description = "Keys, managed by an admin (ad-) key within its project"),
        (name = "operations", description = "Health, readiness, metrics, this document and the web page"),
        (name = "workflows", description = "Workflow runs with file parameters, and the tasks runners (device keys) claim"))
)]
pub struct ApiDoc;

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn serve() -> Json<serde_json::Value> {
    static SPEC: OnceLock<serde_json::Value> = OnceLock::new();
    Json(
        SPEC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
            .clone(),
    )
}

/// The docs page at `/docs/`: Swagger UI from assets compiled into the binary (no CDN), reading
/// `/openapi.json`. No schema validator is called out to.
pub fn docs<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let ui = SwaggerUi::new("/docs").config(Config::from("/openapi.json").validator_url("none"));
    Router::from(ui).layer(axum::middleware::map_response(
        |mut resp: axum::response::Response| async move {
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                ),
            );
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            resp
        },
    ))
}
