//! `/v1/admin/keys`: keys managed over HTTP by an admin (`ad-`) key, within its own project (and
//! its workspace, if it has one): create (the secret is in that answer only), list, revoke. The
//! CLI's `filedock keys … --server URL` calls these.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Json, Router};
use bytes::Bytes;
use filedock_core::{Credential, CredentialKind, WorkspaceId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::body::json_body;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/keys", axum::routing::post(create_key).get(list_keys))
        .route("/v1/admin/keys/{id}", axum::routing::delete(revoke_key))
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// `session` (st-), `integration` (sk-), `device` (dk-) or `admin` (ad-).
    #[schema(example = "integration")]
    pub kind: String,
    /// A label for people (at most 128 characters).
    pub name: Option<String>,
    /// Limit the key to one workspace of the project.
    pub workspace: Option<String>,
}

/// A key, never its secret. Times are Unix seconds.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub kind: String,
    /// How its secrets start (`sk-`, …).
    pub prefix: String,
    pub project: String,
    pub workspace: Option<String>,
    pub name: Option<String>,
    pub created_at: i64,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
}

impl From<&Credential> for KeyView {
    fn from(c: &Credential) -> Self {
        KeyView {
            id: c.id.clone(),
            kind: c.kind.as_str().to_owned(),
            prefix: c.kind.prefix().to_owned(),
            project: c.project.to_string(),
            workspace: c.workspace.as_ref().map(ToString::to_string),
            name: c.name.clone(),
            created_at: c.created_at / 1000,
            revoked_at: c.revoked_at.map(|t| t / 1000),
        }
    }
}

/// A new key and its secret, shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NewKey {
    pub key: KeyView,
    /// The bearer token: `Authorization: Bearer <secret>`. filedock keeps only its hash.
    pub secret: String,
}

/// The project's keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// Create a key in the admin key's project.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin",
    request_body(content = KeyRequest, content_type = "application/json"),
    responses((status = 201, body = NewKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin (ad-) key, or another workspace", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<NewKey>)> {
    let req: KeyRequest = json_body(&body)?;
    let kind = CredentialKind::parse(&req.kind)?;
    let workspace = req.workspace.map(WorkspaceId::new).transpose()?;
    let (c, secret) = state
        .files
        .credentials()
        .create_as(&who, workspace, kind, req.name)
        .await?;
    tracing::info!(key = %c.id, kind = c.kind.as_str(), project = %c.project, by = %who.credential_id, "key created");
    Ok((
        StatusCode::CREATED,
        Json(NewKey {
            key: KeyView::from(&c),
            secret,
        }),
    ))
}

/// List the keys of the admin key's project (revoked ones too).
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin (ad-) key", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_keys(State(state): State<AppState>, Auth(who): Auth) -> ApiResult<Json<KeyList>> {
    let keys = state.files.credentials().list_as(&who).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Revoke a key of the admin key's project: it stops working at once, on every instance.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin (ad-) key", body = ErrorBody),
        (status = 404, description = "No active key with this id in the project", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.files.credentials().revoke_as(&who, &id).await?;
    tracing::info!(key = %id, by = %who.credential_id, "key revoked");
    Ok(StatusCode::NO_CONTENT)
}
