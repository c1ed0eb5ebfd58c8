//! Upload from a URL: filedock fetches the bytes itself, behind the address guard (`guard`).
//! A URL is vetted before anything is sent: only `http` and `https`, and an address literal must
//! pass the guard. A host name is resolved once, by the guard's resolver, which refuses it if
//! any address it resolves to is denied; the connection is made to exactly those addresses (no
//! second lookup for a rebinding answer to slip into). Redirects are followed by hand, each
//! vetted the same way, at most `max_redirects`. Timeouts bound the connection, the wait for
//! the answer's head, every read of its body and the whole transfer.

pub mod guard;
mod take;

pub use take::{FromUrl, take};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use filedock_core::Error;
use filedock_core::blob::ByteStream;
use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

pub use guard::Allow;

pub use crate::config::FetchConfig;

/// An answer whose head arrived: where it ended up, what it says of its body, and the body.
pub struct Opened {
    /// The URL that answered (after redirects).
    pub url: Url,
    pub length: Option<u64>,
    pub content_type: Option<String>,
    /// The file name the answer suggests (`Content-Disposition`, else the path's last segment).
    pub name: Option<String>,
    pub response: reqwest::Response,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// The body as a stream that ends with [`Error::SourceTimeout`] at `deadline` and with
    /// [`Error::SourceFailed`] if the source breaks off.
    pub fn body(self, deadline: tokio::time::Instant) -> ByteStream {
        let inner = self.response.bytes_stream();
        futures_util::stream::unfold(Some(inner), move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Err(_) => Some((
                    Err(Error::SourceTimeout("the source did not send its body in time".into())),
                    None,
                )),
                Ok(None) => None,
                Ok(Some(Ok(b))) => Some((Ok::<Bytes, Error>(b), Some(inner))),
                Ok(Some(Err(e))) => Some((Err(source_error(&e)), None)),
            }
        })
        .boxed()
    }
}

/// Fetches URLs behind the guard.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    allow: Arc<Allow>,
    pub config: FetchConfig,
}

/// The guard's resolver: one lookup, every address vetted, those addresses used.
#[derive(Debug)]
struct Vetting {
    allow: Arc<Allow>,
}

/// A host name refused by the guard (carried through reqwest's error to be told apart).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Resolve for Vetting {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match lookup(&allow, &host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(Lookup::Refused(why)) => Err(Box::new(Refused(why)) as Box<dyn std::error::Error + Send + Sync>),
                Err(Lookup::Failed(why)) => Err(why.into()),
            }
        })
    }
}

/// Why a name gave no address to connect to.
enum Lookup {
    /// It resolves to a denied address.
    Refused(String),
    /// It does not resolve.
    Failed(String),
}

/// Resolves `host` once and vets every address (unless the host was opened by name).
async fn lookup(allow: &Allow, host: &str) -> Result<Vec<SocketAddr>, Lookup> {
    // `host.` and `host` are one name; some resolvers know only the second.
    let host = host.trim_end_matches('.');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| Lookup::Failed(format!("cannot resolve '{host}': {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Lookup::Failed(format!("'{host}' has no address")));
    }
    if !allow.host(host) {
        for a in &addrs {
            if let Some(why) = allow.refusal(a.ip()) {
                return Err(Lookup::Refused(format!("'{host}' resolves to {why} ({})", a.ip())));
            }
        }
    }
    Ok(addrs)
}

impl Fetcher {
    /// A fetcher for `config`; refuses a malformed allowlist.
    pub fn new(config: FetchConfig) -> Result<Fetcher, String> {
        let allow = Arc::new(Allow::parse(&config.allow)?);
        let client = reqwest::Client::builder()
            // A proxy from the environment would connect to addresses the guard never saw.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(Vetting { allow: allow.clone() }))
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
            .read_timeout(Duration::from_secs(config.first_byte_timeout_secs.max(1)))
            .user_agent(concat!("filedock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make the fetch client: {e}"))?;
        Ok(Fetcher { client, allow, config })
    }

    /// Parses and vets a URL before anything is sent.
    pub fn vet(&self, raw: &str) -> Result<Url, Error> {
        let url = Url::parse(raw.trim()).map_err(|e| Error::UrlRefused(format!("not a URL: {e}")))?;
        self.vet_url(&url)?;
        Ok(url)
    }

    fn vet_url(&self, url: &Url) -> Result<(), Error> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::UrlRefused(format!(
                "only http and https URLs are fetched, not '{}'",
                url.scheme()
            )));
        }
        let ip = match url.host() {
            None => return Err(Error::UrlRefused("the URL has no host".into())),
            // RFC 6761: `localhost` and its subdomains are loopback, whatever a resolver says.
            Some(Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if (d == "localhost" || d.ends_with(".localhost")) && !self.allow.host(&d) {
                    return Err(Error::UrlRefused(format!("the URL's host '{d}' is a loopback name")));
                }
                return Ok(());
            }
            Some(Host::Ipv4(v)) => std::net::IpAddr::V4(v),
            Some(Host::Ipv6(v)) => std::net::IpAddr::V6(v),
        };
        match self.allow.refusal(ip) {
            Some(why) => Err(Error::UrlRefused(format!("the URL's host {ip} is {why}"))),
            None => Ok(()),
        }
    }

    /// Vets a URL's host name on what it resolves to now, for an answer before anything is sent
    /// (an `async` fetch answers at once). Only an early answer: the connection is vetted again
    /// by the resolver it uses, so a name that resolves differently later is refused then.
    pub async fn precheck(&self, url: &Url) -> Result<(), Error> {
        match url.host() {
            Some(Host::Domain(d)) => match lookup(&self.allow, d).await {
                Ok(_) => Ok(()),
                Err(Lookup::Refused(why)) => Err(Error::UrlRefused(why)),
                Err(Lookup::Failed(why)) => Err(Error::SourceFailed(why)),
            },
            _ => Ok(()),
        }
    }

    /// Sends the GET and follows redirects (each vetted) to an answer with a 2xx head.
    pub async fn open(&self, url: Url) -> Result<Opened, Error> {
        let first_byte = Duration::from_secs(self.config.first_byte_timeout_secs.max(1));
        let mut url = url;
        let mut hops = 0;
        loop {
            self.vet_url(&url)?;
            let sent = tokio::time::timeout(first_byte, self.client.get(url.clone()).send()).await;
            let resp = match sent {
                Err(_) => return Err(Error::SourceTimeout("the source did not answer in time".into())),
                Ok(Err(e)) => return Err(source_error(&e)),
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            if status.is_redirection() {
                let to = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| Error::SourceFailed(format!("the source answered {status} with no Location")))?;
                let next = url
                    .join(to)
                    .map_err(|e| Error::UrlRefused(format!("the source redirected to a bad URL: {e}")))?;
                hops += 1;
                if hops > self.config.max_redirects {
                    return Err(Error::UrlRefused(format!(
                        "more than {} redirects",
                        self.config.max_redirects
                    )));
                }
                url = next;
                continue;
            }
            if !status.is_success() {
                return Err(Error::SourceFailed(format!("the source answered {status}")));
            }
            let header = |h| {
                resp.headers()
                    .get(h)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            };
            let content_type = header(reqwest::header::CONTENT_TYPE).map(str::to_owned);
            let name = header(reqwest::header::CONTENT_DISPOSITION)
                .and_then(filename_of)
                .or_else(|| last_segment(&url));
            return Ok(Opened {
                length: resp.content_length(),
                content_type,
                name,
                url,
                response: resp,
            });
        }
    }
}

/// A core error for a failed request or body read.
fn source_error(e: &reqwest::Error) -> Error {
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Error::UrlRefused(r.0.clone());
        }
        src = s.source();
    }
    if e.is_timeout() {
        return Error::SourceTimeout("the source stopped sending".into());
    }
    if e.is_connect() {
        return Error::SourceFailed("could not connect to the source".into());
    }
    Error::SourceFailed("the source broke off".into())
}

/// `filename="…"` of a `Content-Disposition` (the plain form; `filename*` is not decoded).
fn filename_of(v: &str) -> Option<String> {
    v.split(';').find_map(|p| {
        let (k, val) = p.trim().split_once('=')?;
        (k.trim().eq_ignore_ascii_case("filename"))
            .then(|| val.trim().trim_matches('"').to_owned())
            .filter(|n| !n.is_empty())
    })
}

/// The last segment of a URL's path, decoded (a file name to fall back on).
pub(crate) fn last_segment(url: &Url) -> Option<String> {
    let seg = url.path_segments()?.next_back()?;
    let name = percent_encoding::percent_decode_str(seg).decode_utf8().ok()?;
    (!name.is_empty()).then(|| name.into_owned())
}

/// What a file records as its origin: the URL without credentials, query or fragment (a
/// presigned URL's signature is a secret).
pub fn origin_of(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resolver vets every address a name resolves to; the refusal comes out of reqwest as
    /// `url_refused` (a name that is not `localhost`'s spelling reaches it the same way).
    #[tokio::test]
    async fn names_are_vetted_on_what_they_resolve_to() {
        let f = Fetcher::new(FetchConfig::default()).expect("fetcher");
        let e = f.client.get("http://localhost:9/").send().await.expect_err("refused");
        let e = source_error(&e);
        assert_eq!(e.code(), "url_refused", "{e}");
        assert!(e.to_string().contains("loopback"), "{e}");
        // Opened by range, the same name resolves and is connected to (nothing listens: 502).
        let open = FetchConfig {
            allow: vec!["127.0.0.0/8".into(), "::1".into()],
            connect_timeout_secs: 2,
            ..Default::default()
        };
        let f = Fetcher::new(open).expect("fetcher");
        let e = f
            .client
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("nothing listens");
        assert_eq!(source_error(&e).code(), "source_failed");
        // Opened by name, too.
        let by_name = FetchConfig {
            allow: vec!["localhost".into()],
            ..Default::default()
        };
        let f = Fetcher::new(by_name).expect("fetcher");
        assert!(f.vet("http://localhost:9/x").is_ok());
        let e = f
            .client
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("nothing listens");
        assert_eq!(source_error(&e).code(), "source_failed");
    }

    #[test]
    fn origins_drop_credentials_query_and_fragment() {
        let u = Url::parse("https://me:pw@example.com/a/b%20c.pdf?X-Amz-Signature=s#f").expect("url");
        assert_eq!(origin_of(&u), "https://example.com/a/b%20c.pdf");
        assert_eq!(filename_of("attachment; filename=\"r.pdf\""), Some("r.pdf".into()));
        assert_eq!(last_segment(&u), Some("b c.pdf".into()));
    }
}
