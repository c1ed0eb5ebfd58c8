//! Answers that carry an object's bytes: status 200 or 206, length, range, validators, type and
//! a safe `Content-Disposition`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use filedock_core::{ByteRange, GetResult};

/// The single byte range a request asks for, if any.
pub fn requested_range(headers: &HeaderMap) -> Option<ByteRange> {
    headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse)
}

/// Streams an object (or the range of it that was read).
pub fn object(got: GetResult, content_type: &str, disposition: Option<&str>, partial: bool) -> Response {
    let len = got.range.end - got.range.start;
    let mut resp = Response::new(Body::from_stream(got.body));
    *resp.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, content_type);
    set(header::CONTENT_LENGTH, &len.to_string());
    set(header::ACCEPT_RANGES, "bytes");
    set(header::ETAG, &got.meta.etag);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    let modified = std::time::UNIX_EPOCH + std::time::Duration::from_millis(got.meta.modified.max(0) as u64);
    set(header::LAST_MODIFIED, &httpdate::fmt_http_date(modified));
    if let Some(d) = disposition {
        set(header::CONTENT_DISPOSITION, d);
    }
    if partial {
        set(
            header::CONTENT_RANGE,
            &format!(
                "bytes {}-{}/{}",
                got.range.start,
                got.range.end.saturating_sub(1),
                got.meta.size
            ),
        );
    }
    resp
}
