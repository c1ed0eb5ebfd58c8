//! Upload policies: the limits a route puts on what it takes (size, types, empty files). Each
//! dialect names its policy; operators override them in config.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sniff;

/// Limits for one way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadPolicy {
    /// Largest accepted file, in bytes.
    pub max_size: u64,
    /// Extensions allowed (lowercase, no dot). `None` allows any; the content must still match a
    /// known extension.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Whether a zero-byte file is accepted.
    #[serde(default = "yes")]
    pub allow_empty: bool,
    /// Content that does not match its name's extension (or text that is not text) is kept and
    /// served as `application/octet-stream` instead of refused. For ways in whose clients were
    /// told "stored" before filedock saw the bytes (TokenOps' presigned PUT: a 2xx is final).
    #[serde(default)]
    pub keep_unmatched: bool,
    /// The scanner (`[scanners.<name>]`) whose verdict a file waits for, quarantined, before it
    /// can be used. `None`: ready once checked.
    #[serde(default)]
    pub scan: Option<String>,
}

/// The type of kept content that does not match its name.
pub const UNMATCHED: &str = "application/octet-stream";

fn yes() -> bool {
    true
}

impl UploadPolicy {
    /// A policy with a size limit and no type restriction.
    pub fn max(max_size: u64) -> Self {
        UploadPolicy {
            max_size,
            allow: None,
            allow_empty: true,
            keep_unmatched: false,
            scan: None,
        }
    }

    /// Checks a declared size before any byte is stored.
    pub fn check_size(&self, size: u64) -> Result<()> {
        if size > self.max_size {
            return Err(Error::TooLarge(format!(
                "file is {size} bytes; the limit is {} bytes",
                self.max_size
            )));
        }
        Ok(())
    }

    /// Checks an extension against the allowlist (by name only; the content is checked later).
    /// A name without an extension passes here: its content must then sniff to an allowed type.
    pub fn check_extension(&self, ext: Option<&str>) -> Result<()> {
        let Some(allow) = &self.allow else {
            return Ok(());
        };
        match ext {
            Some(e) if allow.iter().any(|a| a == e) => Ok(()),
            Some(e) => Err(Error::UnsupportedType(format!(
                ".{e} files are not accepted here (allowed: {})",
                allow.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// For a name without an extension under an allowlist: the allowed extension the content
    /// sniffs to (`jpg` for a JPEG), which the file then takes.
    pub fn sniffed_extension(&self, ext: Option<&str>, head: &[u8]) -> Option<String> {
        let allow = self.allow.as_ref()?;
        if ext.is_some() {
            return None;
        }
        let sniffed = infer::get(head)?.extension();
        allow.iter().find(|a| a.as_str() == sniffed).cloned()
    }

    /// Checks a file's first bytes; returns the detected type (`application/octet-stream` for
    /// content that does not match, if the policy keeps it).
    pub fn check_content(&self, ext: Option<&str>, head: &[u8], complete: bool) -> Result<String> {
        self.check_extension(ext)?;
        let sniffed = self.sniffed_extension(ext, head);
        if let (None, Some(allow)) = (ext.or(sniffed.as_deref()), &self.allow) {
            return Err(Error::UnsupportedType(format!(
                "a file without an extension must be one of the types accepted here (allowed: {})",
                allow.join(", ")
            )));
        }
        match sniff::check_head(ext.or(sniffed.as_deref()), head, complete) {
            Ok(t) => Ok(t),
            Err(_) if self.keep_unmatched => Ok(UNMATCHED.to_owned()),
            Err(m) => Err(Error::UnsupportedType(m.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist() {
        let p = UploadPolicy {
            max_size: 10,
            allow: Some(vec!["pdf".into()]),
            allow_empty: true,
            keep_unmatched: false,
            scan: None,
        };
        assert!(p.check_extension(Some("pdf")).is_ok());
        assert!(matches!(p.check_extension(Some("png")), Err(Error::UnsupportedType(_))));
        // Without an extension the content decides: a PDF passes, anything else does not.
        assert!(p.check_extension(None).is_ok());
        assert_eq!(p.sniffed_extension(None, b"%PDF-1.7\n").as_deref(), Some("pdf"));
        assert!(p.check_content(None, b"%PDF-1.7\n", true).is_ok());
        assert!(matches!(
            p.check_content(None, b"\x89PNG\r\n\x1a\n", true),
            Err(Error::UnsupportedType(_))
        ));
        assert!(matches!(
            p.check_content(None, b"plain text", true),
            Err(Error::UnsupportedType(_))
        ));
        assert!(matches!(p.check_size(11), Err(Error::TooLarge(_))));
        assert!(p.check_size(10).is_ok());
    }
}
