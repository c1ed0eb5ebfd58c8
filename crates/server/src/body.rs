//! Request bodies as core [`ByteStream`]s: raw bodies and multipart/form-data file fields
//! (streamed with multer; text fields before the file are read, bounded).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use filedock_core::{ByteStream, Error};
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;

/// Largest text field of a multipart form.
pub const MAX_TEXT_FIELD: u64 = 64 * 1024;
/// Most text fields a multipart form may carry.
pub const MAX_TEXT_FIELDS: usize = 64;
/// Room for multipart framing and text fields on top of the file limit.
const MULTIPART_SLACK: u64 = 1024 * 1024;

fn body_error(e: axum::Error) -> Error {
    let mut src: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = src {
        if s.is::<http_body_util::LengthLimitError>() {
            return Error::TooLarge("the body is over the limit".into());
        }
        if s.is::<tower_http::timeout::TimeoutError>() {
            return stalled();
        }
        src = s.source();
    }
    Error::invalid(format!("the request body could not be read: {e}"))
}

fn stalled() -> Error {
    Error::Timeout("the request body stalled: no bytes arrived within the body timeout".into())
}

/// A raw body as a stream.
pub fn raw(body: Body) -> ByteStream {
    body.into_data_stream().map_err(body_error).boxed()
}

/// `Content-Length`, if present and well-formed.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The boundary, if the request is multipart/form-data.
pub fn multipart_boundary(headers: &HeaderMap) -> Option<Result<String, Error>> {
    let ct = headers.get(axum::http::header::CONTENT_TYPE)?.to_str().ok()?;
    if !ct.trim_start().to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    Some(multer::parse_boundary(ct).map_err(|_| Error::invalid("multipart/form-data without a boundary")))
}

/// Most bytes a part's headers (with the boundary line before them) may take. multer holds a
/// part's headers in memory until their blank line, so without this a client could make it buffer
/// the whole body limit.
pub const MAX_PART_HEADERS: u64 = 16 * 1024;
/// Pieces the body is cut into before multer sees it, so the header budget counts bytes that
/// multer must hold rather than however large a chunk the connection delivered.
const PIECE: usize = 16 * 1024;

/// The part headers went over [`MAX_PART_HEADERS`].
#[derive(Debug)]
struct PartHeadersTooLarge;

impl std::fmt::Display for PartHeadersTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a part's headers are over {MAX_PART_HEADERS} bytes")
    }
}

impl std::error::Error for PartHeadersTooLarge {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body in pieces of at most [`PIECE`] bytes, failing once more than `budget` bytes are read
/// while the budget is set (it is `u64::MAX`, unlimited, while a part's body is read).
fn budgeted(body: Body, budget: Arc<AtomicU64>) -> impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    body.into_data_stream()
        .map_ok(|mut b| {
            let mut pieces = Vec::with_capacity(b.len() / PIECE + 1);
            while b.len() > PIECE {
                pieces.push(Ok::<Bytes, axum::Error>(b.split_to(PIECE)));
            }
            pieces.push(Ok(b));
            futures_util::stream::iter(pieces)
        })
        .try_flatten()
        .map(move |r| {
            let b = r.map_err(|e| Box::new(e) as BoxError)?;
            let left = budget.load(Ordering::Relaxed);
            if left != u64::MAX {
                let n = b.len() as u64;
                if n > left {
                    return Err(Box::new(PartHeadersTooLarge) as BoxError);
                }
                budget.store(left - n, Ordering::Relaxed);
            }
            Ok(b)
        })
}

fn multer_error(e: multer::Error) -> Error {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            Error::TooLarge("the body is over the limit".into())
        }
        multer::Error::StreamReadFailed(inner) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
            while let Some(s) = src {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Error::TooLarge("the body is over the limit".into());
                }
                if s.is::<tower_http::timeout::TimeoutError>() {
                    return stalled();
                }
                if s.is::<PartHeadersTooLarge>() {
                    return Error::invalid(format!("malformed multipart body: {s}"));
                }
                src = s.source();
            }
            Error::invalid(format!("the request body could not be read: {inner}"))
        }
        other => Error::invalid(format!("malformed multipart body: {other}")),
    }
}

/// A file field of a multipart form, still streaming.
pub struct FilePart {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub body: ByteStream,
}

/// Opens a multipart form whose file field may hold `max_file` bytes. A declared body length
/// over the limit (even allowing for text fields) is refused (413) before anything is read; a
/// body that is not multipart/form-data gets `not_multipart` (400).
pub fn form(headers: &HeaderMap, body: Body, max_file: u64, not_multipart: &str) -> Result<FormReader, Error> {
    let boundary = multipart_boundary(headers).ok_or_else(|| Error::invalid(not_multipart))??;
    if let Some(n) = content_length(headers)
        && n.saturating_sub(MAX_TEXT_FIELD) > max_file
    {
        return Err(Error::TooLarge(format!(
            "the body is {n} bytes; files here may have at most {max_file}"
        )));
    }
    Ok(FormReader::new(body, boundary, "file", max_file))
}

/// A multipart form, read in order: text fields up to the file, the file (streaming), then any
/// text fields after it. At most 64 text fields of at most [`MAX_TEXT_FIELD`] bytes each.
pub struct FormReader {
    inner: multer::Multipart<'static>,
    file_field: String,
    fields: HashMap<String, String>,
    /// Text fields read, repeated names included.
    seen: usize,
    /// Bytes left for the part headers being looked for (see [`MAX_PART_HEADERS`]).
    header_budget: Arc<AtomicU64>,
}

impl FormReader {
    /// A reader whose file field may hold up to `max_file` bytes.
    pub fn new(body: Body, boundary: String, file_field: &str, max_file: u64) -> Self {
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new()
                .whole_stream(max_file.saturating_add(MULTIPART_SLACK))
                .per_field(MAX_TEXT_FIELD)
                .for_field(file_field.to_owned(), max_file.saturating_add(1)),
        );
        let header_budget = Arc::new(AtomicU64::new(u64::MAX));
        FormReader {
            inner: multer::Multipart::with_constraints(budgeted(body, header_budget.clone()), boundary, constraints),
            file_field: file_field.to_owned(),
            fields: HashMap::new(),
            seen: 0,
            header_budget,
        }
    }

    /// The next part, its headers read within [`MAX_PART_HEADERS`] (plus one piece of lookahead).
    async fn next_field(&mut self) -> Result<Option<multer::Field<'static>>, Error> {
        self.header_budget
            .store(MAX_PART_HEADERS + PIECE as u64, Ordering::Relaxed);
        let field = self.inner.next_field().await.map_err(multer_error);
        self.header_budget.store(u64::MAX, Ordering::Relaxed);
        field
    }

    /// Reads text fields up to the file field and returns the file, still streaming (`None` if
    /// the form has no file field; then every field has been read).
    pub async fn file(&mut self) -> Result<Option<FilePart>, Error> {
        while let Some(field) = self.next_field().await? {
            if field.name() == Some(self.file_field.as_str()) {
                let file_name = field.file_name().map(str::to_owned);
                let content_type = field.content_type().map(|m| m.to_string());
                return Ok(Some(FilePart {
                    file_name,
                    content_type,
                    body: field.map_err(multer_error).boxed(),
                }));
            }
            self.read_text(field).await?;
        }
        Ok(None)
    }

    /// Reads the text fields after the file (call once the file's stream has been consumed).
    pub async fn rest(&mut self) -> Result<(), Error> {
        while let Some(field) = self.next_field().await? {
            if field.name() == Some(self.file_field.as_str()) {
                return Err(Error::invalid(format!(
                    "the form has more than one '{}' field",
                    self.file_field
                )));
            }
            self.read_text(field).await?;
        }
        Ok(())
    }

    /// A text field read so far.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    async fn read_text(&mut self, mut field: multer::Field<'static>) -> Result<(), Error> {
        let name = field.name().unwrap_or("").to_owned();
        self.seen += 1;
        if self.seen > MAX_TEXT_FIELDS {
            return Err(Error::invalid(format!(
                "too many form fields (at most {MAX_TEXT_FIELDS})"
            )));
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multer_error)? {
            value.extend_from_slice(&chunk);
        }
        let value =
            String::from_utf8(value).map_err(|_| Error::invalid(format!("form field '{name}' is not UTF-8")))?;
        self.fields.insert(name, value);
        Ok(())
    }
}

/// A query string, with a 400 for anything malformed.
pub fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, Error> {
    // serde_urlencoded decodes bad UTF-8 lossily (to U+FFFD); a name made of overlong or broken
    // sequences must be refused, not stored with replacement characters.
    if percent_encoding::percent_decode(raw.unwrap_or("").as_bytes())
        .decode_utf8()
        .is_err()
    {
        return Err(Error::invalid("malformed query string: it does not decode to UTF-8"));
    }
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| Error::invalid(format!("malformed query string: {e}")))
}

/// A JSON request body, with a 400 for anything malformed.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    if body.is_empty() {
        return Err(Error::invalid("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("malformed JSON body: {e}")))
}
