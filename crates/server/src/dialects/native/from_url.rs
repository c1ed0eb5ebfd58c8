//! `POST /v1/files/from-url`: filedock fetches a URL into a new file (see `crate::fetch`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FileView, POLICY, class_of};
use crate::auth::Auth;
use crate::body::json_body;
use crate::error::{ApiResult, ErrorBody};
use crate::fetch::{FromUrl, take};
use crate::state::AppState;

/// Body of `POST /v1/files/from-url`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromUrlRequest {
    /// An `http` or `https` URL on a public address (or one the operator allowed).
    pub url: String,
    /// The file's name (default: the source's `Content-Disposition` file name, else the URL
    /// path's last segment).
    pub name: Option<String>,
    /// `input` (default), `output` or `asset`.
    pub class: Option<String>,
    /// Keep the file this many seconds instead of the class's retention.
    pub ttl_seconds: Option<u64>,
    /// `true`: answer 202 at once with a pending file; it becomes `ready` or `failed` in the
    /// background (`file.ready` / `file.failed` events). Default: wait for the bytes (bounded).
    #[serde(default, rename = "async")]
    pub background: bool,
}

/// Fetch a URL into a new file (same checks as an upload; the file records its origin).
#[utoipa::path(post, path = "/v1/files/from-url", tag = "files",
    request_body(content = FromUrlRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Fetched, stored and checked", body = FileView),
        (status = 202, description = "Fetching in the background: a pending file", body = FileView),
        (status = 400, description = "Malformed, or `url_refused`: not http(s), or a denied address (also after a redirect)", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "The source's body is over the size limit; nothing stored", body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody),
        (status = 502, description = "`source_failed`: the source could not be reached, answered an error or broke off", body = ErrorBody),
        (status = 504, description = "`source_timeout`: the source did not answer or send in time", body = ErrorBody),
        (status = 507, body = ErrorBody)
    ), security(("bearer" = [])))]
pub async fn from_url(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<FileView>)> {
    let req: FromUrlRequest = json_body(&body)?;
    let background = req.background;
    let rec = take(
        &state.files,
        &state.fetch,
        &who,
        FromUrl {
            url: req.url,
            name: req.name,
            class: class_of(req.class.as_deref())?,
            ttl_secs: req.ttl_seconds,
            background,
            policy: POLICY.into(),
        },
    )
    .await?;
    let status = if background {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(FileView::from(&rec))))
}
