//! `Content-Disposition` per RFC 6266: an ASCII `filename` fallback and the exact UTF-8 name in
//! `filename*`, so any name — quotes, CR/LF, non-ASCII — is safe in the header.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// RFC 5987 `attr-char`: everything else is percent-encoded.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="<ascii>"; filename*=UTF-8''<pct-encoded>`.
pub fn attachment(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' && c != '%' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_anything_safely() {
        assert_eq!(
            attachment("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        let h = attachment("weird\"\r\n名字.png");
        assert!(h.is_ascii());
        assert!(!h.contains('\r') && !h.contains('\n'));
        assert!(h.contains("filename=\"weird_____.png\""), "{h}");
        assert!(
            h.contains("filename*=UTF-8''weird%22%0D%0A%E5%90%8D%E5%AD%97.png"),
            "{h}"
        );
    }
}
