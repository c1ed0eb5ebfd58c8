//! Huawei Cloud agent runtime (`shared/seeds/001_…`):
//! `POST /v1/{project_id}/agent-runtime/upload-file` with the token in `X-Auth-Token`, the file
//! as multipart field `file`, `workspace_id` in the query, `expires` (days) and `is_image` in the
//! query or the form. Answers `{url, headers: [{"Host"}], file_name}` where `url` downloads the
//! file for `expires` days and not after. Errors are `{error_code, error_msg}`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use filedock_core::{Class, Error, FileName, KeyLayout, NewFile, Principal, ProjectId, WorkspaceId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::principal_from_header;
use crate::body;
use crate::error::{log_if_server_error, status_of, with_error_headers};
use crate::state::AppState;

/// The upload policy (60 MB and the seed's formats by default).
pub const POLICY: &str = crate::config::policy::HUAWEI;
/// Longest `expires` accepted, in days.
const MAX_EXPIRES_DAYS: u64 = 3650;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/{project_id}/agent-runtime/upload-file", post(upload_file))
}

/// Huawei Cloud's error body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = huawei::Error)]
pub struct HuaweiError {
    /// `FD.<HTTP status>`, e.g. `FD.0415`.
    pub error_code: String,
    pub error_msg: String,
}

/// A core error in Huawei Cloud's envelope.
#[derive(Debug)]
pub struct HwError(Error);

impl From<Error> for HwError {
    fn from(e: Error) -> Self {
        HwError(e)
    }
}

impl IntoResponse for HwError {
    fn into_response(self) -> Response {
        let e = self.0;
        log_if_server_error(&e);
        let status = status_of(&e);
        let body = HuaweiError {
            error_code: format!("FD.{:04}", status.as_u16()),
            error_msg: e.to_string(),
        };
        with_error_headers(&e, (status, Json(body)).into_response())
    }
}

/// Query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The workspace (a workspace-bound token may only name its own).
    pub workspace_id: Option<String>,
    /// Days the answered `url` works (1 to 3650); may also be a form field.
    pub expires: Option<String>,
    /// `true` when the file must be an image; may also be a form field.
    pub is_image: Option<String>,
}

/// The form (`multipart/form-data`).
#[derive(Debug, ToSchema)]
#[schema(as = huawei::UploadForm)]
#[allow(dead_code)] // Only its schema is used: the form is read by `body::form`.
pub struct UploadForm {
    /// The file (60 MB at most, of the seed's types).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    expires: Option<String>,
    is_image: Option<String>,
}

/// Answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = huawei::UploadFileResponse)]
pub struct UploadFileResponse {
    /// Downloads the file for `expires` days (with the `Host` header below).
    pub url: String,
    pub headers: Vec<std::collections::BTreeMap<String, String>>,
    pub file_name: String,
}

fn parse_bool(name: &str, v: &str) -> Result<bool, Error> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(Error::invalid(format!("'{name}' must be true or false"))),
    }
}

fn parse_days(v: &str) -> Result<u64, Error> {
    match v.trim().parse::<u64>() {
        Ok(d) if (1..=MAX_EXPIRES_DAYS).contains(&d) => Ok(d),
        _ => Err(Error::invalid(format!(
            "'expires' must be a whole number of days from 1 to {MAX_EXPIRES_DAYS}"
        ))),
    }
}

/// The principal for this project and workspace: the token must belong to `project_id` (403
/// otherwise); a workspace-bound token may only name its own workspace.
fn scoped(mut who: Principal, project: &ProjectId, workspace: Option<WorkspaceId>) -> Result<Principal, Error> {
    if &who.project != project {
        return Err(Error::Forbidden("the token does not belong to this project".into()));
    }
    match (&who.workspace, workspace) {
        (Some(mine), Some(asked)) if mine != &asked => {
            Err(Error::Forbidden("the token does not belong to this workspace".into()))
        }
        (None, Some(asked)) => {
            who.workspace = Some(asked);
            Ok(who)
        }
        _ => Ok(who),
    }
}

/// Huawei Cloud agent runtime: upload a file (the token in `X-Auth-Token`).
#[utoipa::path(post, path = "/v1/{project_id}/agent-runtime/upload-file", tag = "huawei",
    params(("project_id" = String, Path, description = "Must be the token's project"), UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, body = UploadFileResponse),
        (status = 400, body = HuaweiError), (status = 401, body = HuaweiError),
        (status = 403, description = "The token belongs to another project or workspace", body = HuaweiError),
        (status = 413, body = HuaweiError), (status = 415, body = HuaweiError)),
    security(("x_auth_token" = [])))]
pub async fn upload_file(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadFileResponse>, HwError> {
    let q: UploadQuery = crate::body::query(raw.as_deref())?;
    let project = ProjectId::new(project_id)?;
    let token = headers.get("x-auth-token").and_then(|v| v.to_str().ok());
    let who = principal_from_header(&state, token, "X-Auth-Token: <key>").await?;
    let workspace = q.workspace_id.as_deref().map(WorkspaceId::new).transpose()?;
    let who = scoped(who, &project, workspace)?;
    let max = state.files.policy(POLICY)?.max_size;
    let mut form = body::form(
        &headers,
        body,
        max,
        "the file must be sent as multipart/form-data, in the field 'file' (a JSON body cannot carry the file)",
    )?;
    let part = form
        .file()
        .await?
        .ok_or_else(|| Error::invalid("the form has no 'file' field"))?;
    let mut new = NewFile::named(FileName::new(part.file_name.as_deref().unwrap_or(""))?);
    new.policy = POLICY.into();
    new.class = Class::Input;
    new.declared_type = part.content_type;
    new.key = KeyLayout::Native;
    let mut staged = state.files.stage(&who, new, part.body).await?;
    // `expires` and `is_image` may come after the file: read the rest, then decide.
    let decided = async {
        form.rest().await?;
        let expires = q
            .expires
            .as_deref()
            .or(form.field("expires"))
            .filter(|v| !v.trim().is_empty())
            .map(parse_days)
            .transpose()?;
        let is_image = q
            .is_image
            .as_deref()
            .or(form.field("is_image"))
            .map(|v| parse_bool("is_image", v))
            .transpose()?
            .unwrap_or(false);
        let detected = staged.record().detected_type.as_deref().unwrap_or("");
        if is_image && !detected.starts_with("image/") && staged.record().extension.as_deref() != Some("pcd") {
            return Err(Error::UnsupportedType(format!(
                "is_image is true, but the file is {detected}"
            )));
        }
        Ok(expires)
    }
    .await;
    let expires = match decided {
        Ok(e) => e,
        Err(e) => {
            state.files.discard(staged).await;
            return Err(e.into());
        }
    };
    if let Some(days) = expires {
        staged.set_ttl_secs(days * 86_400);
    }
    let rec = state.files.commit(staged).await?;
    let (url, _) = state.files.download_url(&rec, expires.map(|d| d * 86_400))?;
    let host = host_header(&url);
    Ok(Json(UploadFileResponse {
        url,
        headers: vec![[("Host".to_owned(), host)].into_iter().collect()],
        file_name: rec.name.to_string(),
    }))
}

/// The `Host` header a client sends to `url`, with its port (as the seed's example shows it).
fn host_header(url: &str) -> String {
    let host = url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("");
    if host.contains(':') {
        host.to_owned()
    } else if url.starts_with("https://") {
        format!("{host}:443")
    } else {
        format!("{host}:80")
    }
}
