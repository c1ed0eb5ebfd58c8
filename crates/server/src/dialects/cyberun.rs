//! Cyberun (`shared/seeds/003_…`): `POST /api/v1/r/files/presign` announces an input file and
//! answers a PUT straight to storage whose `Content-Length` and `If-None-Match: *` are signed
//! (missing or different → 403; onto an existing key → 412). Keys of every kind may call it.
//! (Multipart and workflow runs come with later issues.)

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use filedock_core::{Class, Error, FileName, KeyLayout, NewFile, PresignUpload};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::Auth;
use crate::dialects::json_body;
use crate::error::ApiResult;

/// The upload policy Cyberun inputs are checked against (500 MB single PUT by default).
pub const POLICY: &str = "cyberun";

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/r/files/presign", post(presign))
}

/// Request body.
#[derive(Debug, Deserialize)]
pub struct PresignRequest {
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    pub content_type: Option<String>,
}

/// Answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PresignResponse {
    /// `inputs/<project>/<id>/<file_name>`: an opaque reference to pass as a file parameter.
    pub file_key: String,
    pub upload_url: String,
    /// Send every one of these with the PUT, exactly.
    pub upload_headers: BTreeMap<String, String>,
}

async fn presign(State(state): State<AppState>, Auth(who): Auth, body: Bytes) -> ApiResult<Json<PresignResponse>> {
    let req: PresignRequest = json_body(&body)?;
    let name = FileName::new(req.file_name.ok_or_else(|| Error::invalid("'file_name' is required"))?)?;
    let size = req
        .file_size
        .ok_or_else(|| Error::invalid("'file_size' is required (bytes)"))?;
    let mut new = NewFile::named(name);
    new.policy = POLICY.into();
    new.class = Class::Input;
    new.size_hint = Some(size);
    new.declared_type = req.content_type;
    new.key = KeyLayout::Named("inputs");
    let (rec, signed) = state
        .files
        .presign_upload(
            &who,
            PresignUpload {
                file: new,
                sign_content_type: false,
                create_only: true,
            },
        )
        .await?;
    Ok(Json(PresignResponse {
        file_key: rec.key.to_string(),
        upload_url: signed.url,
        upload_headers: signed.headers.into_iter().collect(),
    }))
}
