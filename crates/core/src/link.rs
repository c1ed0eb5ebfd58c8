//! Signed URLs for stores that filedock serves itself (the local disk): HMAC-SHA256 over the
//! method, backend, key, expiry, the signed headers' values and the response overrides. The
//! rules copy S3's presigned URLs: a signed header missing or different → 403, expired → 403.
//!
//! URL form: `{base}/blob/{backend}/{key}?X-Fd-Expires=…&X-Fd-SignedHeaders=a;b&X-Fd-Max=…&
//! response-content-type=…&response-content-disposition=…&X-Fd-Signature=…`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Characters escaped in a key's path segments.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']')
    .add(b'+')
    .add(b'&')
    .add(b'=')
    .add(b';');
/// Characters escaped in query values.
const QUERY: &AsciiSet = &PATH_SEGMENT
    .add(b',')
    .add(b':')
    .add(b'@')
    .add(b'$')
    .add(b'!')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*');

/// Headers a presigned request may sign.
pub const SIGNABLE_HEADERS: &[&str] = &["content-length", "content-type", "if-none-match"];

/// What a signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignedParams {
    pub method: String,
    pub backend: String,
    pub key: String,
    /// Unix seconds.
    pub expires: i64,
    /// Lowercase header names and the values the request must carry.
    pub headers: Vec<(String, String)>,
    pub max_size: Option<u64>,
    pub response_content_type: Option<String>,
    pub response_content_disposition: Option<String>,
    /// A part of a multipart upload: filedock's upload id and the part number.
    pub part: Option<(String, u32)>,
}

/// What a verified request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub create_only: bool,
    pub content_length: Option<u64>,
    pub max_size: Option<u64>,
    pub response_content_type: Option<String>,
    pub response_content_disposition: Option<String>,
    /// The multipart upload and part number the URL puts, if it puts a part.
    pub part: Option<(String, u32)>,
}

/// Signs and verifies URLs with one secret.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

fn string_to_sign(p: &SignedParams) -> Result<String> {
    let mut s = String::from("FD1-HMAC-SHA256\n");
    let names: Vec<&str> = p.headers.iter().map(|(n, _)| n.as_str()).collect();
    let mut parts = vec![p.method.as_str(), p.backend.as_str(), p.key.as_str()];
    let expires = p.expires.to_string();
    parts.push(&expires);
    let joined = names.join(";");
    parts.push(&joined);
    for (_, v) in &p.headers {
        parts.push(v);
    }
    let max = p.max_size.map(|m| m.to_string()).unwrap_or_default();
    parts.push(&max);
    parts.push(p.response_content_type.as_deref().unwrap_or(""));
    parts.push(p.response_content_disposition.as_deref().unwrap_or(""));
    // Only part URLs carry these two lines, so every other URL's signature is unchanged.
    let part_number = p.part.as_ref().map(|(_, n)| n.to_string()).unwrap_or_default();
    if let Some((upload, _)) = &p.part {
        parts.push(upload);
        parts.push(&part_number);
    }
    for part in parts {
        // Every field is one line; a value with a line break could forge another layout.
        if part.contains(['\n', '\r']) {
            return Err(Error::Forbidden("signature does not match".into()));
        }
        s.push_str(part);
        s.push('\n');
    }
    Ok(s)
}

impl UrlSigner {
    /// A signer with a secret of at least 32 bytes.
    pub fn new(key: Vec<u8>) -> Result<Self> {
        if key.len() < 32 {
            return Err(Error::invalid("the signing secret must be at least 32 bytes"));
        }
        Ok(UrlSigner { key })
    }

    fn mac(&self, p: &SignedParams) -> Result<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).map_err(Error::internal)?;
        mac.update(string_to_sign(p)?.as_bytes());
        Ok(mac)
    }

    /// The full URL for a request, under `base` (e.g. `http://host:8080`).
    pub fn url(&self, base: &str, p: &SignedParams) -> Result<String> {
        let sig = URL_SAFE_NO_PAD.encode(self.mac(p)?.finalize().into_bytes());
        let path: Vec<String> = p
            .key
            .split('/')
            .map(|s| utf8_percent_encode(s, PATH_SEGMENT).to_string())
            .collect();
        let mut url = format!(
            "{}/blob/{}/{}?X-Fd-Expires={}",
            base.trim_end_matches('/'),
            utf8_percent_encode(&p.backend, PATH_SEGMENT),
            path.join("/"),
            p.expires
        );
        let q = |v: &str| utf8_percent_encode(v, QUERY).to_string();
        if !p.headers.is_empty() {
            let names: Vec<&str> = p.headers.iter().map(|(n, _)| n.as_str()).collect();
            url.push_str(&format!("&X-Fd-SignedHeaders={}", q(&names.join(";"))));
        }
        if let Some(m) = p.max_size {
            url.push_str(&format!("&X-Fd-Max={m}"));
        }
        if let Some(v) = &p.response_content_type {
            url.push_str(&format!("&response-content-type={}", q(v)));
        }
        if let Some(v) = &p.response_content_disposition {
            url.push_str(&format!("&response-content-disposition={}", q(v)));
        }
        if let Some((upload, n)) = &p.part {
            url.push_str(&format!("&X-Fd-Upload={}&X-Fd-Part={n}", q(upload)));
        }
        url.push_str(&format!("&X-Fd-Signature={sig}"));
        Ok(url)
    }

    /// Verifies a request to `/blob/{backend}/{key}`: `query` is the raw query string, `header`
    /// looks up a request header, `now` is Unix seconds.
    pub fn verify(
        &self,
        method: &str,
        backend: &str,
        key: &str,
        query: &str,
        header: impl Fn(&str) -> Option<String>,
        now: i64,
    ) -> Result<Verified> {
        let denied = |m: &str| Error::Forbidden(m.to_owned());
        let UrlParams {
            expires,
            signed_names,
            max_size,
            rct,
            rcd,
            sig,
            upload,
            part_number,
        } = UrlParams::parse(query)?;
        let (Some(expires), Some(sig)) = (expires, sig) else {
            return Err(denied("this URL carries no signature"));
        };
        let expires: i64 = expires.parse().map_err(|_| denied("malformed expiry"))?;
        let max_size = max_size
            .map(|m| m.parse::<u64>())
            .transpose()
            .map_err(|_| denied("malformed size limit"))?;
        let part = match (upload, part_number) {
            (None, None) => None,
            (Some(u), Some(n)) => Some((u, n.parse::<u32>().map_err(|_| denied("malformed part number"))?)),
            _ => return Err(denied("signature does not match")),
        };
        let headers = signed_headers(signed_names.as_deref().unwrap_or(""), header)?;
        let params = SignedParams {
            method: method.to_owned(),
            backend: backend.to_owned(),
            key: key.to_owned(),
            expires,
            headers,
            max_size,
            response_content_type: rct,
            response_content_disposition: rcd,
            part,
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig.as_bytes())
            .map_err(|_| denied("signature does not match"))?;
        // verify_slice compares in constant time.
        self.mac(&params)?
            .verify_slice(&sig)
            .map_err(|_| denied("signature does not match"))?;
        if now > expires {
            return Err(denied("request has expired"));
        }
        let find = |n: &str| params.headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
        let content_length = find("content-length")
            .map(|v| v.parse::<u64>())
            .transpose()
            .map_err(|_| denied("malformed content-length"))?;
        Ok(Verified {
            create_only: find("if-none-match").is_some_and(|v| v == "*"),
            content_length,
            max_size: params.max_size,
            response_content_type: params.response_content_type,
            response_content_disposition: params.response_content_disposition,
            part: params.part,
        })
    }
}

impl UrlSigner {
    /// A stable link token for a file: `{id}.{expires}.{sig}`, `expires` in Unix seconds or 0
    /// for none. It names the file, not its bytes: filedock answers it with a fresh presigned URL
    /// as long as the file exists.
    pub fn link_token(&self, file_id: &str, expires: i64) -> Result<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).map_err(Error::internal)?;
        mac.update(format!("FD1-LINK\n{file_id}\n{expires}\n").as_bytes());
        Ok(format!(
            "{file_id}.{expires}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        ))
    }

    /// Checks a stable link token; returns the file id. `now` is Unix seconds.
    pub fn verify_link_token(&self, token: &str, now: i64) -> Result<String> {
        let denied = || Error::Forbidden("invalid link".into());
        let mut parts = token.split('.');
        let (Some(id), Some(exp), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(denied());
        };
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(denied());
        }
        let expires: i64 = exp.parse().map_err(|_| denied())?;
        let sig = URL_SAFE_NO_PAD.decode(sig.as_bytes()).map_err(|_| denied())?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).map_err(Error::internal)?;
        mac.update(format!("FD1-LINK\n{id}\n{expires}\n").as_bytes());
        mac.verify_slice(&sig).map_err(|_| denied())?;
        if expires != 0 && now > expires {
            return Err(Error::Forbidden("link has expired".into()));
        }
        Ok(id.to_owned())
    }
}

/// Splits a signed URL made by [`UrlSigner::url`] into (backend, key, query); for tests and tools.
pub fn split_blob_url(url: &str) -> Option<(String, String, String)> {
    let path_and_query = &url[url.find("/blob/")? + "/blob/".len()..];
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let (backend, key) = path.split_once('/')?;
    let dec = |s: &str| percent_decode_str(s).decode_utf8().ok().map(|c| c.into_owned());
    Some((dec(backend)?, dec(key)?, query.to_owned()))
}

/// Presigning for a store whose URLs filedock serves itself at `{base_url}/blob/{backend}/…`.
#[derive(Debug, Clone)]
pub struct SelfServed {
    pub base_url: String,
    pub backend: String,
    pub signer: std::sync::Arc<UrlSigner>,
}

impl SelfServed {
    /// A presigned PUT; the headers it signs are returned for the client to send.
    pub fn presign_put(&self, req: &crate::blob::PresignPut) -> Result<crate::blob::PresignedRequest> {
        let mut signed = Vec::new();
        let mut shown = Vec::new();
        if let Some(n) = req.content_length {
            signed.push(("content-length".to_owned(), n.to_string()));
            shown.push(("Content-Length".to_owned(), n.to_string()));
        }
        if let Some(t) = &req.content_type {
            signed.push(("content-type".to_owned(), t.clone()));
            shown.push(("Content-Type".to_owned(), t.clone()));
        }
        if req.create_only {
            signed.push(("if-none-match".to_owned(), "*".to_owned()));
            shown.push(("If-None-Match".to_owned(), "*".to_owned()));
        }
        let p = SignedParams {
            method: "PUT".into(),
            backend: self.backend.clone(),
            key: req.key.as_str().to_owned(),
            expires: req.expires_at.div_euclid(1000),
            headers: signed,
            max_size: if req.content_length.is_none() {
                req.max_size
            } else {
                None
            },
            ..Default::default()
        };
        Ok(crate::blob::PresignedRequest {
            method: "PUT",
            url: self.signer.url(&self.base_url, &p)?,
            headers: shown,
            expires_at: req.expires_at,
        })
    }

    /// A presigned PUT of one part of a multipart upload, with its exact length signed.
    pub fn presign_part(&self, req: &crate::blob::PresignPart) -> Result<crate::blob::PresignedRequest> {
        let n = req.content_length.to_string();
        let p = SignedParams {
            method: "PUT".into(),
            backend: self.backend.clone(),
            key: req.key.as_str().to_owned(),
            expires: req.expires_at.div_euclid(1000),
            headers: vec![("content-length".to_owned(), n.clone())],
            part: Some((req.upload_id.clone(), req.number)),
            ..Default::default()
        };
        Ok(crate::blob::PresignedRequest {
            method: "PUT",
            url: self.signer.url(&self.base_url, &p)?,
            headers: vec![("Content-Length".to_owned(), n)],
            expires_at: req.expires_at,
        })
    }

    /// A presigned GET.
    pub fn presign_get(&self, req: &crate::blob::PresignGet) -> Result<crate::blob::PresignedRequest> {
        let p = SignedParams {
            method: "GET".into(),
            backend: self.backend.clone(),
            key: req.key.as_str().to_owned(),
            expires: req.expires_at.div_euclid(1000),
            response_content_type: req.response_content_type.clone(),
            response_content_disposition: req.response_content_disposition.clone(),
            ..Default::default()
        };
        Ok(crate::blob::PresignedRequest {
            method: "GET",
            url: self.signer.url(&self.base_url, &p)?,
            headers: Vec::new(),
            expires_at: req.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(vec![7u8; 32]).unwrap()
    }

    fn put_params() -> SignedParams {
        SignedParams {
            method: "PUT".into(),
            backend: "local".into(),
            key: "demo/my files/ü.mp4".into(),
            expires: 1000,
            headers: vec![
                ("content-length".into(), "5".into()),
                ("if-none-match".into(), "*".into()),
            ],
            ..Default::default()
        }
    }

    fn hdrs(cl: Option<&'static str>, inm: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
        move |n: &str| match n {
            "content-length" => cl.map(String::from),
            "if-none-match" => inm.map(String::from),
            _ => None,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let s = signer();
        let url = s.url("http://h:1", &put_params()).unwrap();
        let (backend, key, query) = split_blob_url(&url).unwrap();
        assert_eq!(key, "demo/my files/ü.mp4");
        let ok = s
            .verify("PUT", &backend, &key, &query, hdrs(Some("5"), Some("*")), 999)
            .unwrap();
        assert!(ok.create_only);
        assert_eq!(ok.content_length, Some(5));

        let refused = |r: Result<Verified>| assert!(matches!(r, Err(Error::Forbidden(_))));
        refused(s.verify("PUT", &backend, &key, &query, hdrs(Some("6"), Some("*")), 999));
        refused(s.verify("PUT", &backend, &key, &query, hdrs(Some("5"), None), 999));
        refused(s.verify("PUT", &backend, &key, &query, hdrs(Some("5"), Some("*")), 1001));
        refused(s.verify("GET", &backend, &key, &query, hdrs(Some("5"), Some("*")), 999));
        refused(s.verify("PUT", &backend, "demo/other", &query, hdrs(Some("5"), Some("*")), 999));
        refused(s.verify("PUT", "s3", &key, &query, hdrs(Some("5"), Some("*")), 999));
        let tampered = query.replace("X-Fd-Expires=1000", "X-Fd-Expires=9000");
        refused(s.verify("PUT", &backend, &key, &tampered, hdrs(Some("5"), Some("*")), 999));
        let other = UrlSigner::new(vec![8u8; 32]).unwrap();
        refused(other.verify("PUT", &backend, &key, &query, hdrs(Some("5"), Some("*")), 999));
        refused(s.verify("PUT", &backend, &key, "", hdrs(Some("5"), Some("*")), 999));
    }

    #[test]
    fn part_urls_sign_the_upload_and_the_part_number() {
        let s = signer();
        let mut p = put_params();
        p.part = Some(("0123abcd".into(), 7));
        let url = s.url("http://h", &p).unwrap();
        let (b, k, q) = split_blob_url(&url).unwrap();
        let ok = s.verify("PUT", &b, &k, &q, hdrs(Some("5"), Some("*")), 999).unwrap();
        assert_eq!(ok.part, Some(("0123abcd".to_owned(), 7)));
        let refused = |q: &str| {
            assert!(matches!(
                s.verify("PUT", &b, &k, q, hdrs(Some("5"), Some("*")), 999),
                Err(Error::Forbidden(_))
            ))
        };
        refused(&q.replace("X-Fd-Part=7", "X-Fd-Part=8"));
        refused(&q.replace("X-Fd-Upload=0123abcd", "X-Fd-Upload=0123abce"));
        refused(&q.replace("&X-Fd-Part=7", ""));
        refused(&q.replace("&X-Fd-Upload=0123abcd&X-Fd-Part=7", ""));
    }

    #[test]
    fn link_tokens() {
        let s = signer();
        let t = s.link_token("abc123", 100).unwrap();
        assert_eq!(s.verify_link_token(&t, 100).unwrap(), "abc123");
        assert!(s.verify_link_token(&t, 101).is_err(), "expired");
        let forever = s.link_token("abc123", 0).unwrap();
        assert!(s.verify_link_token(&forever, i64::MAX).is_ok());
        assert!(s.verify_link_token(&t.replace("abc123", "abc124"), 1).is_err());
        assert!(s.verify_link_token(&t.replace(".100.", ".0."), 1).is_err());
        assert!(UrlSigner::new(vec![9u8; 32]).unwrap().verify_link_token(&t, 1).is_err());
        for junk in ["", "a.b", "a.1.c.d", "../x.1.sig"] {
            assert!(s.verify_link_token(junk, 1).is_err(), "{junk}");
        }
    }

    #[test]
    fn get_with_response_overrides() {
        let s = signer();
        let p = SignedParams {
            method: "GET".into(),
            backend: "local".into(),
            key: "k".into(),
            expires: 10,
            response_content_disposition: Some(crate::disposition::attachment("a b&c=d.txt")),
            response_content_type: Some("text/plain; charset=utf-8".into()),
            ..Default::default()
        };
        let url = s.url("http://h", &p).unwrap();
        let (b, k, q) = split_blob_url(&url).unwrap();
        let v = s.verify("GET", &b, &k, &q, |_| None, 5).unwrap();
        assert_eq!(v.response_content_disposition, p.response_content_disposition);
        assert_eq!(v.response_content_type, p.response_content_type);
        let swapped = q.replace("text%2Fplain", "text%2Fhtml");
        assert!(s.verify("GET", &b, &k, &swapped, |_| None, 5).is_err());
    }
}

/// The headers a URL signs (`X-Fd-SignedHeaders`, `;`-separated), with the values the request
/// sent; each must be one that can be signed, and present.
fn signed_headers(names: &str, header: impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>> {
    let denied = |m: &str| Error::Forbidden(m.to_owned());
    let mut headers = Vec::new();
    for name in names.split(';').filter(|n| !n.is_empty()) {
        if !SIGNABLE_HEADERS.contains(&name) {
            return Err(denied("unknown signed header"));
        }
        let value = header(name).ok_or_else(|| denied(&format!("the signed header {name} is missing")))?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(headers)
}

/// A signed URL's own query parameters, each at most once (other parameters are not signed and
/// are ignored).
#[derive(Default)]
struct UrlParams {
    expires: Option<String>,
    signed_names: Option<String>,
    max_size: Option<String>,
    rct: Option<String>,
    rcd: Option<String>,
    sig: Option<String>,
    upload: Option<String>,
    part_number: Option<String>,
}

impl UrlParams {
    fn parse(query: &str) -> Result<Self> {
        let denied = |m: &str| Error::Forbidden(m.to_owned());
        let mut p = UrlParams::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode_str(&v.replace('+', " "))
                .decode_utf8()
                .map_err(|_| denied("malformed query"))?
                .into_owned();
            let slot = match k {
                "X-Fd-Expires" => &mut p.expires,
                "X-Fd-SignedHeaders" => &mut p.signed_names,
                "X-Fd-Max" => &mut p.max_size,
                "response-content-type" => &mut p.rct,
                "response-content-disposition" => &mut p.rcd,
                "X-Fd-Signature" => &mut p.sig,
                "X-Fd-Upload" => &mut p.upload,
                "X-Fd-Part" => &mut p.part_number,
                _ => continue,
            };
            if slot.replace(v).is_some() {
                return Err(denied("a signed URL parameter appears twice"));
            }
        }
        Ok(p)
    }
}
