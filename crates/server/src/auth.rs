//! Who is calling: the bearer credential of a request, checked by core.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use filedock_core::{Error, Principal};

use crate::error::ApiError;
use crate::state::AppState;

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates a bearer token (missing → unauthenticated).
pub async fn principal_from(state: &AppState, token: Option<&str>) -> Result<Principal, Error> {
    principal_from_header(state, token, "Authorization: Bearer <key>").await
}

/// Authenticates a token sent in `header` (named in the refusal when it is missing).
pub async fn principal_from_header(state: &AppState, token: Option<&str>, header: &str) -> Result<Principal, Error> {
    let token = token.ok_or_else(|| Error::Unauthenticated(format!("a key is required: send '{header}'")))?;
    state.files.authenticate(token).await
}

/// An authenticated caller of the native API.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Auth(principal_from(state, bearer(&parts.headers)).await?))
    }
}
