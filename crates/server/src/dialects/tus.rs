//! tus 1.0.0 resumable uploads at `/tus/`: the core protocol plus creation,
//! creation-with-upload, creation-defer-length, termination, expiration, checksum (sha1, sha256)
//! and concatenation. Every request but `OPTIONS` needs a bearer key, and only the creator's
//! project (and workspace, for a workspace key) can see, resume, finish or terminate an upload;
//! anyone else gets 404, as for a file.
//!
//! The offset lives in the catalog, so an upload resumes after a restart and through any
//! instance; one PATCH at a time holds the upload's lease lock. `Upload-Metadata` `filename` and
//! `filetype` become the file's name and declared type; when the last byte arrives the file is
//! checked like any other, and its id is in the `Filedock-File-Id` header.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::options;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use filedock_core::model::Concat;
use filedock_core::uploads::{Checksum, ChecksumAlgorithm, TusCreate};
use filedock_core::{Class, Error, FileName, KeyLayout, NewFile, UploadRecord, UploadStatus};

use crate::auth::Auth;
use crate::body;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// The policy tus uploads are checked against.
pub const POLICY: &str = crate::config::policy::TUS;
/// The protocol version spoken.
pub const VERSION: &str = "1.0.0";
/// The extensions supported, as `Tus-Extension` lists them.
pub const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation";
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tus", options(discover).post(create))
        .route("/tus/", options(discover).post(create))
        .route("/tus/{id}", options(discover).head(head).patch(patch).delete(terminate))
        .layer(axum::middleware::from_fn(protocol))
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Every answer says `Tus-Resumable`; a request (but `OPTIONS`) for another version is 412.
async fn protocol(req: axum::extract::Request, next: Next) -> Response {
    let resumable = HeaderName::from_static("tus-resumable");
    let version_ok = req
        .headers()
        .get(&resumable)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == VERSION);
    let mut resp = if req.method() != Method::OPTIONS && !version_ok {
        let mut r = crate::error::ApiError(filedock_core::Error::PreconditionFailed(
            "this server speaks tus 1.0.0: send Tus-Resumable: 1.0.0".into(),
        ))
        .into_response();
        r.headers_mut().insert(
            HeaderName::from_static("tus-version"),
            HeaderValue::from_static(VERSION),
        );
        r
    } else {
        next.run(req).await
    };
    resp.headers_mut().insert(resumable, HeaderValue::from_static(VERSION));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// tus discovery: the version, extensions, largest upload and checksum algorithms (no key needed).
/// Also answered on `/tus/` and `/tus/{id}`.
#[utoipa::path(options, path = "/tus", tag = "tus",
    responses((status = 204, description = "What this server supports", headers(
        ("Tus-Version" = String, description = "1.0.0"), ("Tus-Extension" = String), ("Tus-Max-Size" = u64),
        ("Tus-Checksum-Algorithm" = String)))))]
pub async fn discover(State(state): State<AppState>) -> Response {
    let max = state.files.policy(POLICY).map(|p| p.max_size).unwrap_or(0);
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        HeaderName::from_static("tus-version"),
        HeaderValue::from_static(VERSION),
    );
    h.insert(
        HeaderName::from_static("tus-extension"),
        HeaderValue::from_static(EXTENSIONS),
    );
    h.insert(HeaderName::from_static("tus-max-size"), hv(&max.to_string()));
    h.insert(
        HeaderName::from_static("tus-checksum-algorithm"),
        HeaderValue::from_static(ChecksumAlgorithm::NAMES),
    );
    r
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn number(h: &HeaderMap, name: &str) -> Result<Option<u64>, Error> {
    header_str(h, name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Error::invalid(format!("{name} must be a non-negative integer")))
        })
        .transpose()
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent).
pub fn parse_metadata(raw: &str) -> Result<Vec<(String, Option<String>)>, Error> {
    let mut out = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = pair.split(' ').filter(|s| !s.is_empty());
        let key = it.next().unwrap_or_default().to_owned();
        let value = match it.next() {
            Some(v) => {
                let bytes = STANDARD
                    .decode(v)
                    .map_err(|_| Error::invalid(format!("Upload-Metadata: the value of '{key}' is not base64")))?;
                Some(
                    String::from_utf8(bytes)
                        .map_err(|_| Error::invalid(format!("Upload-Metadata: the value of '{key}' is not UTF-8")))?,
                )
            }
            None => None,
        };
        if it.next().is_some() || key.is_empty() {
            return Err(Error::invalid("Upload-Metadata is malformed"));
        }
        if out.iter().any(|(k, _)| k == &key) {
            return Err(Error::invalid(format!("Upload-Metadata names '{key}' twice")));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn checksum_of(h: &HeaderMap) -> Result<Option<Checksum>, Error> {
    let Some(raw) = header_str(h, "upload-checksum") else {
        return Ok(None);
    };
    let (algo, digest) = raw
        .split_once(' ')
        .ok_or_else(|| Error::invalid("Upload-Checksum must be '<algorithm> <base64 digest>'"))?;
    let algorithm = ChecksumAlgorithm::parse(algo.trim())?;
    let digest = STANDARD
        .decode(digest.trim())
        .map_err(|_| Error::invalid("Upload-Checksum: the digest is not base64"))?;
    Ok(Some(Checksum { algorithm, digest }))
}

/// Every tus header a creation or a PATCH parses, in one call: `Upload-Metadata` (and the file
/// name in it), `Upload-Length`, `Upload-Offset`, `Upload-Defer-Length`, `Upload-Checksum` and the
/// upload URLs of `Upload-Concat: final;…`. What the fuzz target `tus_headers` drives.
pub fn parse_headers(h: &HeaderMap) -> Result<(), Error> {
    let meta = parse_metadata(header_str(h, "upload-metadata").unwrap_or(""))?;
    new_file(&meta)?;
    number(h, "upload-length")?;
    number(h, "upload-offset")?;
    number(h, "upload-defer-length")?;
    checksum_of(h)?;
    if let Some(urls) = header_str(h, "upload-concat").and_then(|c| c.strip_prefix("final;")) {
        for url in urls.split(' ').filter(|u| !u.is_empty()) {
            id_of_url(url)?;
        }
    }
    Ok(())
}

fn location(state: &AppState, u: &UploadRecord) -> String {
    format!("{}/tus/{}", state.files.config().public_url, u.id)
}

/// The headers that describe an upload (HEAD, and after a PATCH or POST).
async fn describe(state: &AppState, u: &UploadRecord, resp: &mut Response, full: bool) {
    let h = resp.headers_mut();
    h.insert(HeaderName::from_static("upload-offset"), hv(&u.offset.to_string()));
    let expires = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u.expires_at.max(0) as u64);
    if u.status == UploadStatus::Active {
        h.insert(
            HeaderName::from_static("upload-expires"),
            hv(&httpdate::fmt_http_date(expires)),
        );
    }
    if full {
        match u.length {
            Some(l) => h.insert(HeaderName::from_static("upload-length"), hv(&l.to_string())),
            None => h.insert(
                HeaderName::from_static("upload-defer-length"),
                HeaderValue::from_static("1"),
            ),
        };
        if let Some(m) = &u.metadata {
            h.insert(HeaderName::from_static("upload-metadata"), hv(m));
        }
        if let Some(c) = &u.concat {
            let shown = match c {
                Concat::Final(ids) => {
                    let urls: Vec<String> = ids.iter().map(|id| format!("/tus/{id}")).collect();
                    format!("final;{}", urls.join(" "))
                }
                Concat::Partial => c.to_stored(),
            };
            h.insert(HeaderName::from_static("upload-concat"), hv(&shown));
        }
    }
    if let Ok(Some(f)) = state.files.tus_file(u).await {
        resp.headers_mut()
            .insert(HeaderName::from_static("filedock-file-id"), hv(f.id.as_str()));
    }
}

/// The upload id in an `Upload-Concat: final;` URL (absolute or a path).
fn id_of_url(url: &str) -> Result<String, Error> {
    let path = url.split('?').next().unwrap_or(url);
    let id = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if path.contains("/tus/") || !path.contains('/') {
        Ok(id.to_owned())
    } else {
        Err(Error::invalid(format!(
            "'{url}' is not a tus upload URL of this server"
        )))
    }
}

fn new_file(meta: &[(String, Option<String>)]) -> Result<NewFile, Error> {
    let get = |k: &str| meta.iter().find(|(key, _)| key == k).and_then(|(_, v)| v.clone());
    let name = match get("filename") {
        Some(n) => FileName::new(&n)?,
        None => FileName::new("upload")?,
    };
    let mut new = NewFile::named(name);
    new.declared_type = get("filetype").or_else(|| get("filetype".to_uppercase().as_str()));
    new.policy = POLICY.into();
    new.class = Class::Input;
    new.key = KeyLayout::Native;
    Ok(new)
}

/// tus creation (also at `/tus/`): creation-with-upload when the body is
/// `application/offset+octet-stream`; `Upload-Concat` makes a partial or final upload.
#[utoipa::path(post, path = "/tus", tag = "tus",
    params(
        ("Tus-Resumable" = String, Header, example = "1.0.0", description = "Must be 1.0.0 (412 otherwise)"),
        ("Upload-Length" = Option<u64>, Header, description = "The whole upload's size in bytes"),
        ("Upload-Defer-Length" = Option<String>, Header, description = "1: the length comes with a later PATCH"),
        ("Upload-Metadata" = Option<String>, Header,
            description = "Comma-separated `key base64(value)` pairs; `filename` and `filetype` name and type the file"),
        ("Upload-Concat" = Option<String>, Header, description = "`partial`, or `final;<upload URLs>`"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|sha256 <base64 digest>` of a body sent with the creation")),
    request_body(content((String = "application/offset+octet-stream")), description = "Optional: the first bytes"),
    responses(
        (status = 201, description = "Created", headers(("Location" = String), ("Upload-Offset" = u64), ("Upload-Expires" = String))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 412, description = "Tus-Resumable is not 1.0.0"),
        (status = 413, description = "Over Tus-Max-Size or the quota", body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 460, description = "Checksum mismatch", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let metadata = header_str(&headers, "upload-metadata").map(str::to_owned);
    let meta = parse_metadata(metadata.as_deref().unwrap_or(""))?;
    let mut new = new_file(&meta)?;
    let concat = header_str(&headers, "upload-concat");
    if let Some(final_) = concat.and_then(|c| c.strip_prefix("final;")) {
        let ids = final_
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(id_of_url)
            .collect::<Result<Vec<_>, _>>()?;
        let u = state.files.tus_concat(&who, &ids, new, metadata).await?;
        let mut resp = StatusCode::CREATED.into_response();
        resp.headers_mut().insert(header::LOCATION, hv(&location(&state, &u)));
        describe(&state, &u, &mut resp, false).await;
        return Ok(resp);
    }
    let partial = match concat {
        None => false,
        Some("partial") => true,
        Some(_) => return Err(Error::invalid("Upload-Concat must be 'partial' or 'final;<urls>'").into()),
    };
    let length = number(&headers, "upload-length")?;
    let defer_length = match header_str(&headers, "upload-defer-length") {
        None => false,
        Some("1") => true,
        Some(_) => return Err(Error::invalid("Upload-Defer-Length must be 1").into()),
    };
    if length.is_some() && defer_length {
        return Err(Error::invalid("send Upload-Length or Upload-Defer-Length, not both").into());
    }
    new.size_hint = length;
    let u = state
        .files
        .tus_create(
            &who,
            TusCreate {
                file: new,
                defer_length,
                metadata,
                partial,
            },
        )
        .await?;
    // creation-with-upload: a body of offset+octet-stream is the first PATCH.
    let typed = header_str(&headers, "content-type") == Some(OFFSET_OCTET_STREAM);
    if !typed && body::content_length(&headers).is_some_and(|n| n > 0) {
        return Err(Error::UnsupportedType(format!("a body must be sent as {OFFSET_OCTET_STREAM}")).into());
    }
    let u = if typed {
        let id = u.id.to_string();
        match state
            .files
            .tus_append(&who, &id, 0, None, checksum_of(&headers)?, body::raw(body))
            .await
        {
            Ok(u) => u,
            // The upload exists either way: answer its Location with the offset it reached.
            Err(e) if !matches!(e, Error::UnsupportedType(_) | Error::TooLarge(_)) => {
                tracing::info!(upload = %id, error = %e, "the body sent with a creation stopped early");
                state.files.tus_upload(&who, &id).await?
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        u
    };
    let mut resp = StatusCode::CREATED.into_response();
    resp.headers_mut().insert(header::LOCATION, hv(&location(&state, &u)));
    describe(&state, &u, &mut resp, false).await;
    Ok(resp)
}

/// tus: where an upload stands (its offset); `Filedock-File-Id` once it is a file.
#[utoipa::path(head, path = "/tus/{id}", tag = "tus",
    params(("id" = String, Path), ("Tus-Resumable" = String, Header, example = "1.0.0")),
    responses(
        (status = 200, description = "The upload", headers(("Upload-Offset" = u64), ("Upload-Length" = u64),
            ("Upload-Metadata" = String), ("Upload-Expires" = String), ("Filedock-File-Id" = String))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody),
        (status = 412, description = "Tus-Resumable is not 1.0.0")),
    security(("bearer" = [])))]
pub async fn head(State(state): State<AppState>, Auth(who): Auth, Path(id): Path<String>) -> ApiResult<Response> {
    let u = state.files.tus_upload(&who, &id).await?;
    let mut resp = StatusCode::OK.into_response();
    describe(&state, &u, &mut resp, true).await;
    Ok(resp)
}

/// tus: append bytes at `Upload-Offset`.
#[utoipa::path(patch, path = "/tus/{id}", tag = "tus",
    params(("id" = String, Path), ("Tus-Resumable" = String, Header, example = "1.0.0"),
        ("Upload-Offset" = u64, Header, description = "Must equal the upload's offset (409 otherwise)"),
        ("Upload-Length" = Option<u64>, Header, description = "For a deferred length"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|sha256 <base64 digest>` of this body")),
    request_body(content((String = "application/offset+octet-stream"))),
    responses(
        (status = 204, description = "Appended", headers(("Upload-Offset" = u64), ("Filedock-File-Id" = String))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Wrong offset", body = ErrorBody), (status = 410, body = ErrorBody),
        (status = 412, description = "Tus-Resumable is not 1.0.0"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 423, description = "Another PATCH is running", body = ErrorBody),
        (status = 460, description = "Checksum mismatch", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if header_str(&headers, "content-type") != Some(OFFSET_OCTET_STREAM) {
        return Err(Error::UnsupportedType(format!("a PATCH body must be sent as {OFFSET_OCTET_STREAM}")).into());
    }
    let offset = number(&headers, "upload-offset")?.ok_or_else(|| Error::invalid("Upload-Offset is required"))?;
    let length = number(&headers, "upload-length")?;
    let checksum = checksum_of(&headers)?;
    let u = state
        .files
        .tus_append(&who, &id, offset, length, checksum, body::raw(body))
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    describe(&state, &u, &mut resp, false).await;
    Ok(resp)
}

/// tus termination: the upload and its bytes are removed.
#[utoipa::path(delete, path = "/tus/{id}", tag = "tus",
    params(("id" = String, Path), ("Tus-Resumable" = String, Header, example = "1.0.0")),
    responses((status = 204, description = "Terminated"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 412, description = "Tus-Resumable is not 1.0.0")),
    security(("bearer" = [])))]
pub async fn terminate(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .files
        .abort_upload(&who, &id, filedock_core::UploadKind::Tus)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata() {
        let m = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential").unwrap();
        assert_eq!(
            m,
            vec![
                ("filename".to_owned(), Some("world_domination_plan.pdf".to_owned())),
                ("is_confidential".to_owned(), None)
            ]
        );
        assert!(parse_metadata("filename !!!").is_err());
        assert!(parse_metadata("a YQ==,a YQ==").is_err());
        assert!(parse_metadata("a YQ== YQ==").is_err());
        assert_eq!(parse_metadata("").unwrap(), vec![]);
    }

    #[test]
    fn concat_urls() {
        assert_eq!(id_of_url("http://h/tus/abc").unwrap(), "abc");
        assert_eq!(id_of_url("/tus/abc").unwrap(), "abc");
        assert_eq!(id_of_url("abc").unwrap(), "abc");
        assert!(id_of_url("http://h/elsewhere/abc").is_err());
    }
}
