//! ClamAV's `clamd` as a [`Scanner`]: the `INSTREAM` command over TCP or a unix socket, the body
//! streamed in chunks (each a 4-byte big-endian length and its bytes, a zero length to end), the
//! reply `stream: OK`, `stream: <signature> FOUND`, or an error. The body is never held whole.
//! clamd refuses a stream over its `StreamMaxLength`; the limit configured here stops sending
//! before that, so a too-large body is told apart from a failing daemon.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use filedock_core::Error;
use filedock_core::blob::ByteStream;
use filedock_core::scan::{Scanner, Verdict};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most bytes sent in one `INSTREAM` chunk.
const CHUNK: usize = 64 * 1024;

/// The longest reply read.
const MAX_REPLY: usize = 4096;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `host:port`.
    Tcp(String),
    /// A unix socket's path.
    Unix(PathBuf),
}

impl ClamdAddress {
    /// `unix:/run/clamav/clamd.ctl` or `/run/…` (a path), else `host:port`.
    pub fn parse(s: &str) -> ClamdAddress {
        match s.strip_prefix("unix:") {
            Some(p) => ClamdAddress::Unix(PathBuf::from(p)),
            None if s.starts_with('/') => ClamdAddress::Unix(PathBuf::from(s)),
            None => ClamdAddress::Tcp(s.to_owned()),
        }
    }
}

/// A clamd client.
#[derive(Debug, Clone)]
pub struct ClamAv {
    address: ClamdAddress,
    /// The largest body sent (clamd's `StreamMaxLength`, or less).
    max_bytes: u64,
    /// Connecting, and waiting for any one read or write.
    timeout: Duration,
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

fn down(what: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("the virus scanner (clamd) {what}"))
}

impl ClamAv {
    /// A client of the clamd at `address` sending at most `max_bytes` per scan.
    pub fn new(address: ClamdAddress, max_bytes: u64, timeout: Duration) -> ClamAv {
        ClamAv {
            address,
            max_bytes,
            timeout,
        }
    }

    async fn connect(&self) -> Result<Box<dyn Conn>, Error> {
        let c: std::io::Result<Box<dyn Conn>> = match &self.address {
            ClamdAddress::Tcp(a) => tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(a))
                .await
                .map_err(|_| std::io::Error::other("timed out"))
                .and_then(|r| r.map(|s| Box::new(s) as Box<dyn Conn>)),
            ClamdAddress::Unix(p) => tokio::time::timeout(self.timeout, tokio::net::UnixStream::connect(p))
                .await
                .map_err(|_| std::io::Error::other("timed out"))
                .and_then(|r| r.map(|s| Box::new(s) as Box<dyn Conn>)),
        };
        c.map_err(|e| down(format_args!("cannot be reached: {e}")))
    }

    async fn write(&self, conn: &mut Box<dyn Conn>, bytes: &[u8]) -> Result<(), Error> {
        match tokio::time::timeout(self.timeout, conn.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(down(format_args!("closed the stream: {e}"))),
            Err(_) => Err(down("stopped reading")),
        }
    }

    /// Reads the reply up to its NUL (or the end).
    async fn reply(&self, conn: &mut Box<dyn Conn>) -> Result<String, Error> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = match tokio::time::timeout(self.timeout, conn.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(down(format_args!("broke off its reply: {e}"))),
                Err(_) => return Err(down("did not reply in time")),
            };
            out.extend_from_slice(&buf[..n]);
            if n == 0 || out.contains(&0) || out.len() > MAX_REPLY {
                break;
            }
        }
        let end = out.iter().position(|b| *b == 0).unwrap_or(out.len());
        Ok(String::from_utf8_lossy(&out[..end]).trim().to_owned())
    }
}

/// A reply to `INSTREAM`.
fn verdict_of(reply: &str) -> Result<Verdict, Error> {
    let body = reply.strip_prefix("stream:").unwrap_or(reply).trim();
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        return Ok(Verdict::Infected(name.trim().to_owned()));
    }
    if body.contains("size limit exceeded") {
        return Err(Error::TooLarge("over the virus scanner's stream limit".into()));
    }
    Err(down(format_args!("answered an error: {body}")))
}

#[async_trait]
impl Scanner for ClamAv {
    fn max_bytes(&self) -> Option<u64> {
        Some(self.max_bytes)
    }

    async fn scan(&self, mut body: ByteStream, size: u64) -> Result<Verdict, Error> {
        if size > self.max_bytes {
            return Err(Error::TooLarge(format!(
                "{size} bytes is over the virus scanner's limit of {}",
                self.max_bytes
            )));
        }
        let mut conn = self.connect().await?;
        self.write(&mut conn, b"zINSTREAM\0").await?;
        let mut sent = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            sent += chunk.len() as u64;
            if sent > self.max_bytes {
                return Err(Error::TooLarge("over the virus scanner's limit".into()));
            }
            for piece in chunk.chunks(CHUNK) {
                let len = u32::try_from(piece.len()).map_err(Error::internal)?;
                let sending = self.write(&mut conn, &len.to_be_bytes()).await;
                let sending = match sending {
                    Ok(()) => self.write(&mut conn, piece).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = sending {
                    // clamd closes a stream it will not take; its reply says why.
                    return match self.reply(&mut conn).await {
                        Ok(r) if !r.is_empty() => verdict_of(&r),
                        _ => Err(e),
                    };
                }
            }
        }
        self.write(&mut conn, &0u32.to_be_bytes()).await?;
        verdict_of(&self.reply(&mut conn).await?)
    }

    async fn ping(&self) -> Result<(), Error> {
        let mut conn = self.connect().await?;
        self.write(&mut conn, b"zPING\0").await?;
        match self.reply(&mut conn).await?.as_str() {
            "PONG" => Ok(()),
            other => Err(down(format_args!("answered PING with '{other}'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_verdicts() {
        assert_eq!(verdict_of("stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            verdict_of("stream: Eicar-Test-Signature.UNOFFICIAL FOUND").unwrap(),
            Verdict::Infected("Eicar-Test-Signature.UNOFFICIAL".into())
        );
        assert!(matches!(
            verdict_of("INSTREAM size limit exceeded. ERROR"),
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            verdict_of("stream: Can't allocate memory ERROR"),
            Err(Error::Unavailable(_))
        ));
        assert_eq!(
            ClamdAddress::parse("unix:/run/c.ctl"),
            ClamdAddress::Unix("/run/c.ctl".into())
        );
        assert_eq!(
            ClamdAddress::parse("127.0.0.1:3310"),
            ClamdAddress::Tcp("127.0.0.1:3310".into())
        );
    }
}
