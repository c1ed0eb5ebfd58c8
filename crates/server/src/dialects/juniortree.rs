//! Juniortree (`shared/seeds/002_…`): `POST /api/v1/upload` with header `Agent`, multipart
//! `file` and `created_by` (in any order: the seed's own curl sends the file first). Answers
//! `{code, msg, data{id, name, size, extension, mime_type, created_by, created_at}}` where `id` is
//! a permanent link (until the file is deleted); errors are `{code, msg, detail}` with the HTTP
//! status equal to `code`. Keys are `uploads/YYYY/MM/DD/<32 hex>.<ext>`.
//!
//! A filedock key (Bearer) is required, unless the operator maps the agent to a project in
//! `dialects.juniortree.trusted_agents` (off by default; for trusted networks only).

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use filedock_core::{Class, CredentialKind, Error, FileName, KeyLayout, NewFile, Principal, ProjectId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{bearer, principal_from};
use crate::body;
use crate::error::{log_if_server_error, status_of, with_error_headers};
use crate::state::AppState;

/// The upload policy (100 MB and the seed's types by default).
pub const POLICY: &str = crate::config::policy::JUNIORTREE;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/upload", post(upload))
}

/// Juniortree's error body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = juniortree::Error)]
pub struct JtError {
    pub code: u16,
    pub msg: String,
    pub detail: String,
}

/// A core error in Juniortree's envelope.
#[derive(Debug)]
pub struct JuniortreeError(Error);

impl From<Error> for JuniortreeError {
    fn from(e: Error) -> Self {
        JuniortreeError(e)
    }
}

/// The seed's message for a form without a file, and its documented detail.
const MISSING_FILE: &str = "Missing required parameter: file";

fn detail_for(e: &Error) -> &'static str {
    match e {
        Error::Invalid(m) if m == MISSING_FILE => "请确保上传了文件",
        Error::Invalid(_) => "Check that every required parameter is present and the file is not empty",
        Error::TooLarge(_) => "A single file may be at most 100MB",
        Error::UnsupportedType(_) => {
            "Supported: jpg, jpeg, png, gif, webp, svg, pdf, doc, docx, txt, md, mp3, wav, ogg, flac, mp4, avi, mov, wmv, zip, rar, 7z"
        }
        Error::Unauthenticated(_) => "Send a filedock key as 'Authorization: Bearer <key>'",
        Error::Internal(_) | Error::Unavailable(_) => "Try again later or contact support",
        _ => "",
    }
}

impl IntoResponse for JuniortreeError {
    fn into_response(self) -> Response {
        let e = self.0;
        log_if_server_error(&e);
        let status = status_of(&e);
        let body = JtError {
            code: status.as_u16(),
            msg: e.to_string(),
            detail: detail_for(&e).to_owned(),
        };
        with_error_headers(&e, (status, Json(body)).into_response())
    }
}

/// The form (`multipart/form-data`, fields in any order).
#[derive(Debug, ToSchema)]
#[schema(as = juniortree::UploadForm)]
#[allow(dead_code)] // Only its schema is used: the form is read by `body::form`.
pub struct UploadForm {
    /// The file (100 MB at most, of the seed's types, not empty).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Who uploads it (required).
    created_by: String,
}

/// The file as Juniortree describes it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = juniortree::UploadedFile)]
pub struct UploadedFile {
    /// A permanent URL of the file (until it is deleted).
    pub id: String,
    pub name: String,
    pub size: u64,
    pub extension: String,
    pub mime_type: String,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = juniortree::UploadResponse)]
pub struct UploadResponse {
    pub code: u16,
    pub msg: String,
    pub data: UploadedFile,
}

async fn principal(state: &AppState, headers: &HeaderMap, agent: &str) -> Result<Principal, Error> {
    let token = bearer(headers);
    if token.is_none()
        && let Some(project) = state.dialects.juniortree.trusted_agents.get(agent)
    {
        return Ok(Principal {
            credential_id: format!("agent:{agent}"),
            project: ProjectId::new(project.clone())?,
            workspace: None,
            kind: CredentialKind::Integration,
        });
    }
    principal_from(state, token).await
}

/// Juniortree: upload a file for an agent.
#[utoipa::path(post, path = "/api/v1/upload", tag = "juniortree",
    params(("Agent" = String, Header, description = "The uploading agent's name (at most 128 characters)")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 200, body = UploadResponse),
        (status = 400, body = JtError), (status = 401, body = JtError),
        (status = 413, body = JtError), (status = 415, body = JtError)),
    security(("bearer" = []), ()))]
pub async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadResponse>, JuniortreeError> {
    let agent = headers
        .get("agent")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::invalid("Missing required header: Agent"))?
        .to_owned();
    if agent.len() > 128 || agent.chars().any(char::is_control) {
        return Err(Error::invalid("the Agent header must be a name of at most 128 characters").into());
    }
    let who = principal(&state, &headers, &agent).await?;
    let max = state.files.policy(POLICY)?.max_size;
    let mut form = body::form(&headers, body, max, "the body must be multipart/form-data")?;
    let part = form.file().await?.ok_or_else(|| Error::invalid(MISSING_FILE))?;
    let mut new = NewFile::named(FileName::new(part.file_name.as_deref().unwrap_or(""))?);
    new.policy = POLICY.into();
    new.class = Class::Asset;
    new.agent = Some(agent);
    new.declared_type = part.content_type;
    new.key = KeyLayout::Dated("uploads");
    let mut staged = state.files.stage(&who, new, part.body).await?;
    let created_by = match form.rest().await {
        Ok(()) => form
            .field("created_by")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        Err(e) => {
            state.files.discard(staged).await;
            return Err(e.into());
        }
    };
    let Some(created_by) = created_by else {
        state.files.discard(staged).await;
        return Err(Error::invalid("Missing required parameter: created_by").into());
    };
    staged.set_created_by(Some(created_by.clone()));
    let rec = state.files.commit(staged).await?;
    let (id, _) = state.files.download_url(&rec, None)?;
    Ok(Json(UploadResponse {
        code: 200,
        msg: "File uploaded successfully".into(),
        data: UploadedFile {
            id,
            name: rec.name.to_string(),
            size: rec.size.unwrap_or(0),
            extension: rec.extension.clone().unwrap_or_default(),
            mime_type: rec
                .detected_type
                .clone()
                .unwrap_or_else(|| rec.content_type().to_owned()),
            created_by,
            created_at: rec.created_at / 1000,
        },
    }))
}
