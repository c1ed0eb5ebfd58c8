//! HTTP byte ranges (RFC 9110 §14): one range per request; anything else is ignored and the
//! whole object is served, as the RFC allows.

use std::ops::Range;

use crate::error::{Error, Result};

/// One requested byte range, before the object's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive).
    Bounded(u64, u64),
    /// `bytes=a-`.
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a `Range` header value. `None` for anything that is not one well-formed byte range
    /// (such a header is ignored).
    pub fn parse(value: &str) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        };
        match (a.trim(), b.trim()) {
            ("", n) => Some(ByteRange::Suffix(num(n)?)),
            (a, "") => Some(ByteRange::From(num(a)?)),
            (a, b) => {
                let (a, b) = (num(a)?, num(b)?);
                (a <= b).then_some(ByteRange::Bounded(a, b))
            }
        }
    }

    /// The half-open range within an object of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<Range<u64>> {
        let r = match self {
            ByteRange::Bounded(a, b) if a < size => a..(b.saturating_add(1)).min(size),
            ByteRange::From(a) if a < size => a..size,
            ByteRange::Suffix(n) if n > 0 && size > 0 => size.saturating_sub(n)..size,
            _ => return Err(Error::RangeNotSatisfiable(size)),
        };
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_resolve() {
        assert_eq!(ByteRange::parse("bytes=0-499").unwrap().resolve(1000).unwrap(), 0..500);
        assert_eq!(
            ByteRange::parse("bytes=500-").unwrap().resolve(1000).unwrap(),
            500..1000
        );
        assert_eq!(
            ByteRange::parse("bytes=-100").unwrap().resolve(1000).unwrap(),
            900..1000
        );
        assert_eq!(ByteRange::parse("bytes=-5000").unwrap().resolve(1000).unwrap(), 0..1000);
        assert_eq!(
            ByteRange::parse("bytes=990-5000").unwrap().resolve(1000).unwrap(),
            990..1000
        );
        assert!(matches!(
            ByteRange::parse("bytes=1000-").unwrap().resolve(1000),
            Err(Error::RangeNotSatisfiable(1000))
        ));
        assert!(ByteRange::parse("bytes=0-1").unwrap().resolve(0).is_err());
        for ignored in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(ByteRange::parse(ignored), None, "{ignored}");
        }
    }
}
