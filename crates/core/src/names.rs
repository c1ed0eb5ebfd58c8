//! What a name or a relative path may not be: a path in disguise (percent-encoded, or one
//! under Unicode compatibility normalization), or text that displays as other text.

use crate::error::{Error, Result};

/// True if percent-decoding `seg` (once or twice) yields a path separator, a `.`/`..` segment or a
/// control character: `%2e%2e`, `%2F`, `%5C`, `%00`, `%252e%252e`.
pub(crate) fn hides_a_path(seg: &str) -> bool {
    let mut cur = std::borrow::Cow::Borrowed(seg);
    for _ in 0..2 {
        if !cur.contains('%') {
            return false;
        }
        let dec = percent_encoding::percent_decode_str(&cur).collect::<Vec<u8>>();
        let text = String::from_utf8_lossy(&dec).into_owned();
        if text == "." || text == ".." || text.contains(['/', '\\']) || text.chars().any(char::is_control) {
            return true;
        }
        cur = std::borrow::Cow::Owned(text);
    }
    false
}

/// Bidirectional controls (U+061C, U+200E/F, U+202A–E, U+2066–9): they make a name display as
/// another (`invoice\u{202E}fdp.exe` shows as `invoiceexe.pdf`), so no name or path may hold one.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether a name or path segment becomes a path under Unicode compatibility normalization
/// (NFKC), which file systems, archivers and other services apply: full-width `．．／`, the
/// two-dot leader `‥`, small or full-width solidi.
pub(crate) fn normalizes_to_a_path(seg: &str) -> bool {
    if seg.is_ascii() {
        return false;
    }
    let n = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(seg);
    n.contains(['/', '\\']) || n.split(['/', '\\']).any(|part| part == "." || part == "..")
}

/// Checks a client-given relative path (TokenOps' `path`, a storage key): non-empty, at most
/// `max` bytes, not absolute, no `..`/`.`/empty segment, no backslash, no control character.
pub fn validate_relative_path(s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid("path must not be empty"));
    }
    if s.len() > max {
        return Err(Error::invalid(format!("path must be at most {max} bytes")));
    }
    if s.starts_with('/') {
        return Err(Error::invalid("path must be relative"));
    }
    if s.contains('\\') {
        return Err(Error::invalid("path must not contain a backslash"));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid("path must not contain control characters"));
    }
    if s.chars().any(is_bidi_control) {
        return Err(Error::invalid("path must not contain bidirectional control characters"));
    }
    for seg in s.split('/') {
        match seg {
            "" => return Err(Error::invalid("path must not contain empty segments")),
            "." | ".." => return Err(Error::invalid("path must not contain '.' or '..' segments")),
            _ => {}
        }
        // A file system takes at most 255 bytes per name (and so does this path's last part,
        // the file's name).
        if seg.len() > 255 {
            return Err(Error::invalid("each segment of a path must be at most 255 bytes"));
        }
        if normalizes_to_a_path(seg) {
            return Err(Error::invalid(
                "path must not contain characters that normalize to '.', '..' or a slash",
            ));
        }
        // A segment a proxy or a client would decode into a traversal is refused as one.
        if hides_a_path(seg) {
            return Err(Error::invalid(
                "path must not contain percent-encoded '.', '..', slashes or control characters",
            ));
        }
    }
    Ok(())
}
