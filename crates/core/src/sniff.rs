//! Content type detection: magic bytes (via `infer`) checked against the name's extension, and
//! text in a known encoding for text formats ([`crate::text`]). The rules are data ([`rule_for`]); the decision is [`check_head`].

/// How many leading bytes the sniffer looks at.
pub const HEAD_LEN: usize = 8192;

const OOXML_DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const OOXML_XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
const OOXML_PPTX: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation";
const OLE: &[&str] = &[
    "application/x-ole-storage",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
];
const ZIP_FAMILY: &[&str] = &[
    "application/zip",
    OOXML_DOCX,
    OOXML_XLSX,
    OOXML_PPTX,
    "application/epub+zip",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/java",
];

/// What content an extension must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Binary: the sniffed type must be one of these; the first is the canonical type.
    Magic(&'static [&'static str]),
    /// Text: decodable text (UTF-8, UTF-16 with a BOM or a detected legacy encoding) with no
    /// binary signature; served as this type, with the detected charset.
    Text(&'static str),
    /// Kodak Photo CD or a point cloud file (`.pcd`): checked by hand.
    Pcd,
}

/// The content rule for a lowercase extension, if filedock knows it.
pub fn rule_for(ext: &str) -> Option<Rule> {
    use Rule::*;
    Some(match ext {
        "jpg" | "jpeg" => Magic(&["image/jpeg"]),
        "png" => Magic(&["image/png"]),
        "gif" => Magic(&["image/gif"]),
        "webp" => Magic(&["image/webp"]),
        "bmp" => Magic(&["image/bmp"]),
        "tif" | "tiff" => Magic(&["image/tiff"]),
        "heic" | "heif" => Magic(&["image/heif", "image/avif"]),
        "avif" => Magic(&["image/avif", "image/heif"]),
        "ico" => Magic(&["image/vnd.microsoft.icon"]),
        "pcd" => Pcd,
        "pdf" => Magic(&["application/pdf"]),
        "doc" | "xls" | "ppt" => Magic(OLE),
        "docx" => Magic(&[OOXML_DOCX, "application/zip"]),
        "xlsx" => Magic(&[OOXML_XLSX, "application/zip"]),
        "pptx" => Magic(&[OOXML_PPTX, "application/zip"]),
        // Apple Numbers (iWork 2013+) is a zip package.
        "numbers" => Magic(&["application/zip"]),
        "zip" => Magic(ZIP_FAMILY),
        "rar" => Magic(&["application/vnd.rar"]),
        "7z" => Magic(&["application/x-7z-compressed"]),
        "gz" | "tgz" => Magic(&["application/gzip"]),
        "tar" => Magic(&["application/x-tar"]),
        "wav" => Magic(&["audio/x-wav"]),
        "mp3" => Magic(&["audio/mpeg"]),
        "flac" => Magic(&["audio/x-flac"]),
        "m4a" => Magic(&["audio/m4a", "video/mp4"]),
        "aac" => Magic(&["audio/aac"]),
        "ogg" | "oga" => Magic(&["audio/ogg", "audio/opus"]),
        "opus" => Magic(&["audio/opus", "audio/ogg"]),
        "mid" | "midi" => Magic(&["audio/midi"]),
        // WMA and WMV share the ASF container, which infer names video/x-ms-wmv.
        "wma" => Magic(&["audio/x-ms-wma", "video/x-ms-wmv"]),
        "wmv" => Magic(&["video/x-ms-wmv"]),
        "mp4" | "m4v" => Magic(&["video/mp4", "video/x-m4v", "video/quicktime"]),
        "mov" => Magic(&["video/quicktime", "video/mp4"]),
        "avi" => Magic(&["video/x-msvideo"]),
        "mkv" => Magic(&["video/x-matroska"]),
        "webm" => Magic(&["video/webm", "video/x-matroska"]),
        "txt" | "text" | "log" => Text("text/plain; charset=utf-8"),
        "md" | "markdown" => Text("text/markdown; charset=utf-8"),
        "csv" => Text("text/csv; charset=utf-8"),
        "tsv" => Text("text/tab-separated-values; charset=utf-8"),
        "json" => Text("application/json"),
        "js" | "javascript" | "mjs" => Text("text/javascript; charset=utf-8"),
        "ts" => Text("text/plain; charset=utf-8"),
        "py" => Text("text/x-python; charset=utf-8"),
        "java" => Text("text/x-java; charset=utf-8"),
        "c" | "h" => Text("text/x-c; charset=utf-8"),
        "cpp" | "cc" | "cxx" | "hpp" => Text("text/x-c++; charset=utf-8"),
        "css" => Text("text/css; charset=utf-8"),
        "html" | "htm" => Text("text/html; charset=utf-8"),
        "xml" => Text("application/xml"),
        "svg" => Text("image/svg+xml"),
        "yaml" | "yml" => Text("application/yaml"),
        "toml" => Text("application/toml"),
        _ => return None,
    })
}

/// The canonical type of an extension known to filedock, else a guess from its name.
pub fn type_for_extension(ext: &str) -> Option<String> {
    match rule_for(ext) {
        Some(Rule::Magic(types)) => Some(types[0].to_owned()),
        Some(Rule::Text(t)) => Some(t.to_owned()),
        Some(Rule::Pcd) => Some("image/x-photo-cd".to_owned()),
        None => mime_guess::from_ext(ext).first_raw().map(str::to_owned),
    }
}

/// Whether bytes are UTF-8, allowing an incomplete character at the end when more may follow.
pub fn utf8_prefix_ok(bytes: &[u8], complete: bool) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => !complete && e.error_len().is_none(),
    }
}

/// Why content was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub String);

/// Decides a file's type from its first bytes (`complete` when the head is the whole file).
/// With a known extension the content must match it; with an unknown or no extension the
/// sniffed type (or text/plain for UTF-8, else octet-stream) is taken as is.
pub fn check_head(ext: Option<&str>, head: &[u8], complete: bool) -> Result<String, Mismatch> {
    let sniffed = infer::get(head).map(|t| t.mime_type());
    let text_sniff = |s: Option<&str>| s.is_none_or(|m| m.starts_with("text/"));
    let Some(ext) = ext else {
        return Ok(generic(sniffed, head, complete));
    };
    match rule_for(ext) {
        None => Ok(generic(sniffed, head, complete)),
        Some(Rule::Magic(types)) => match sniffed {
            Some(m) if types.contains(&m) => Ok(if m == "application/zip" || OLE.contains(&m) {
                types[0].to_owned()
            } else {
                m.to_owned()
            }),
            Some(m) => Err(Mismatch(format!(
                "content is {m}, which does not match the extension .{ext}"
            ))),
            None => Err(Mismatch(format!("content does not look like a .{ext} file"))),
        },
        Some(Rule::Text(t)) => match crate::text::check(head, complete) {
            Ok(charset) if text_sniff(sniffed) => Ok(crate::text::with_charset(t, &charset)),
            Ok(_) => Err(Mismatch(format!(".{ext} files must be text"))),
            Err(why) => Err(Mismatch(format!(".{ext} files must be text: {}", why.0))),
        },
        Some(Rule::Pcd) => {
            let photo_cd = head.len() >= 2055 && &head[2048..2055] == b"PCD_IPI";
            let point_cloud =
                (head.starts_with(b"# .PCD") || head.starts_with(b"VERSION")) && utf8_prefix_ok(head, complete);
            if photo_cd {
                Ok("image/x-photo-cd".to_owned())
            } else if point_cloud {
                Ok("text/plain; charset=utf-8".to_owned())
            } else {
                Err(Mismatch("content does not look like a .pcd file".to_owned()))
            }
        }
    }
}

/// Whether content must stay text beyond the head (checked by the meter on the stream).
pub fn is_text_extension(ext: Option<&str>) -> bool {
    matches!(ext.and_then(rule_for), Some(Rule::Text(_)))
}

fn generic(sniffed: Option<&'static str>, head: &[u8], complete: bool) -> String {
    match sniffed {
        Some(m) => m.to_owned(),
        None if utf8_prefix_ok(head, complete) => "text/plain; charset=utf-8".to_owned(),
        None => "application/octet-stream".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";

    #[test]
    fn magic_must_match_extension() {
        assert_eq!(check_head(Some("png"), PNG, true).unwrap(), "image/png");
        assert_eq!(check_head(Some("pdf"), PDF, true).unwrap(), "application/pdf");
        assert!(check_head(Some("pdf"), PNG, true).is_err());
        assert!(check_head(Some("png"), b"hello", true).is_err());
    }

    #[test]
    fn text_rules() {
        assert_eq!(
            check_head(Some("txt"), "héllo".as_bytes(), true).unwrap(),
            "text/plain; charset=utf-8"
        );
        assert!(check_head(Some("txt"), b"\x00\x01\x02\xff\x00bad", true).is_err());
        let gbk = encoding_rs::GBK
            .encode(&"中文的逗号分隔文件，默认编码。\n".repeat(20))
            .0
            .into_owned();
        assert_eq!(check_head(Some("csv"), &gbk, true).unwrap(), "text/csv; charset=gbk");
        assert!(check_head(Some("md"), PNG, true).is_err());
        // A head cut in the middle of a character is fine while more bytes may follow.
        let cut = &"é".as_bytes()[..1];
        assert!(check_head(Some("txt"), cut, false).is_ok());
        // Whole, the lone byte is not UTF-8: a legacy encoding reads it (as "Ă" in windows-1250).
        assert_ne!(check_head(Some("txt"), cut, true).unwrap(), "text/plain; charset=utf-8");
    }

    #[test]
    fn unknown_extensions_take_the_sniffed_type() {
        assert_eq!(check_head(Some("bin"), PNG, true).unwrap(), "image/png");
        assert_eq!(check_head(None, b"plain", true).unwrap(), "text/plain; charset=utf-8");
        assert_eq!(
            check_head(None, b"\x00\xff\x00", true).unwrap(),
            "application/octet-stream"
        );
    }

    #[test]
    fn pcd() {
        let mut photo_cd = vec![0u8; 4096];
        photo_cd[2048..2055].copy_from_slice(b"PCD_IPI");
        assert!(check_head(Some("pcd"), &photo_cd, true).is_ok());
        assert!(check_head(Some("pcd"), b"# .PCD v0.7 - Point Cloud Data\nVERSION 0.7\n", true).is_ok());
        assert!(check_head(Some("pcd"), PNG, true).is_err());
    }
}
