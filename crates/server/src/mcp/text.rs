//! A file's text for a model: decoded from the charset its content was found in (the upload
//! check records it: `text/plain; charset=gbk`), paged by character offset and length, read no
//! further than the page needs.

use std::sync::Arc;

use encoding_rs::{Encoding, UTF_8};
use filedock_core::{Error, FileId, FileRecord, FileService, Principal};
use futures_util::StreamExt;
use serde::Serialize;

/// The most characters one `read_file_text` call returns.
pub const MAX_PAGE_CHARS: u32 = 32 * 1024;

/// A page of a file's text.
#[derive(Debug, Serialize)]
pub struct Page {
    pub text: String,
    /// The character offset of the page.
    pub offset: u64,
    /// Characters in the page.
    pub chars: u64,
    /// Where the next page starts; absent at the end of the text.
    pub next_offset: Option<u64>,
    /// The charset the file was decoded from.
    pub charset: String,
}

/// Whether a file's content is text (with a charset, or a textual type).
fn is_text(rec: &FileRecord) -> bool {
    let t = rec.content_type().to_ascii_lowercase();
    let essence = t.split(';').next().unwrap_or("").trim().to_owned();
    t.contains("charset=")
        || essence.starts_with("text/")
        || ["json", "xml", "javascript", "yaml", "toml", "x-sh", "csv"]
            .iter()
            .any(|k| essence.ends_with(k))
}

fn encoding_of(rec: &FileRecord) -> &'static Encoding {
    let t = rec.content_type().to_ascii_lowercase();
    t.split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .find_map(|c| Encoding::for_label(c.trim_matches('"').as_bytes()))
        .unwrap_or(UTF_8)
}

/// A small file's text, or `None` when it is not text.
pub fn decode(rec: &FileRecord, bytes: &[u8]) -> Option<String> {
    is_text(rec).then(|| encoding_of(rec).decode(bytes).0.into_owned())
}

/// A file's bytes, at most `max` of them (the caller checked its size).
pub async fn read_all(files: &Arc<FileService>, who: &Principal, id: &FileId, max: u64) -> Result<Vec<u8>, Error> {
    let (_, got) = files.download(who, id, None).await?;
    let mut body = got.body;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
        if out.len() as u64 > max {
            return Err(Error::TooLarge(format!("the file is over {max} bytes")));
        }
    }
    Ok(out)
}

/// The characters `offset .. offset + length` of a text file (`length` at most
/// [`MAX_PAGE_CHARS`]).
pub async fn page(
    files: &Arc<FileService>,
    who: &Principal,
    id: &FileId,
    offset: u64,
    length: u32,
) -> Result<Page, Error> {
    let rec = files.ready_file(who, id).await?;
    if !is_text(&rec) {
        return Err(Error::UnsupportedType(format!(
            "this file is not text (it is {}); get_file gives a download link",
            rec.content_type()
        )));
    }
    let length = u64::from(length.clamp(1, MAX_PAGE_CHARS));
    let encoding = encoding_of(&rec);
    let mut decoder = encoding.new_decoder();
    let (_, got) = files.download(who, id, None).await?;
    let mut body = got.body;
    let (mut seen, mut text, mut taken, mut more) = (0u64, String::new(), 0u64, false);
    let mut last = false;
    while !more && !last {
        let chunk = match body.next().await {
            Some(c) => c?,
            None => {
                last = true;
                bytes::Bytes::new()
            }
        };
        let mut decoded = String::with_capacity(decoder.max_utf8_buffer_length(chunk.len()).unwrap_or(chunk.len() * 3));
        let _ = decoder.decode_to_string(&chunk, &mut decoded, last);
        for ch in decoded.chars() {
            if seen < offset {
                seen += 1;
            } else if taken < length {
                text.push(ch);
                taken += 1;
            } else {
                more = true;
                break;
            }
        }
    }
    Ok(Page {
        text,
        offset,
        chars: taken,
        next_offset: more.then_some(offset + taken),
        charset: encoding.name().to_ascii_lowercase(),
    })
}
