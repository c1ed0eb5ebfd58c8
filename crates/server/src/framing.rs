//! [`Guarded`]: a connection on which a request carrying both `Content-Length` and
//! `Transfer-Encoding` is refused with 400 (RFC 9112 §6.3: such a message "ought to be handled as
//! an error"; it is how requests are smuggled past a proxy that reads the other header).
//!
//! hyper takes such a request by its `Transfer-Encoding` alone and drops the `Content-Length`
//! before a handler sees the request, so the refusal cannot be made above hyper. The guard sits
//! below it: it follows the message framing of the bytes as they are read (each request head,
//! then its body by `Content-Length` or by chunks, the way hyper's decoder reads them) and, in a
//! head that has both, replaces the final line feed with a space. hyper's parser then refuses the
//! head with 400 Bad Request and closes the connection; no handler runs.
//!
//! Body bytes are counted, never looked at or changed. Where the stream leaves what hyper accepts
//! (a head or chunk line hyper refuses, a head longer than hyper takes) the guard stops following:
//! hyper closes that connection itself. filedock never answers 101, so a connection stays HTTP.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's default limit on a request's header count.
const MAX_HEADERS: usize = 100;

/// An IO stream whose requests are checked as described in the module docs.
pub struct Guarded<S> {
    inner: S,
    framing: Framing,
}

impl<S> Guarded<S> {
    /// `max_head` is the longest head hyper accepts (its read buffer).
    pub fn new(inner: S, max_head: usize) -> Self {
        Guarded {
            inner,
            framing: Framing::new(max_head),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.framing.feed(&mut buf.filled_mut()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a request head (its first bytes, if any, in `Framing::head`).
    Head,
    /// In a body of this many more bytes.
    Length(u64),
    /// In a chunked body.
    Chunk(Chunk),
    /// Not following (hyper refuses the stream from here and closes).
    Off,
}

/// A chunked body's states, as hyper's decoder has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a size's first digit.
    Start,
    Size(u64),
    /// Spaces after a size.
    Lws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: the end, or a trailer line.
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// How a head frames its body.
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Both headers: refused.
    Smuggled,
    /// Something hyper refuses.
    Refused,
}

struct Framing {
    state: State,
    /// A head's bytes so far, when it came in more than one read.
    head: Vec<u8>,
    max_head: usize,
}

impl Framing {
    fn new(max_head: usize) -> Self {
        Framing {
            state: State::Head,
            head: Vec::new(),
            max_head,
        }
    }

    /// Follows the bytes just read; changes one byte of a smuggling head.
    fn feed(&mut self, bytes: &mut [u8]) {
        let mut at = 0;
        while at < bytes.len() {
            match self.state {
                State::Off => return,
                State::Length(left) => {
                    let take = left.min((bytes.len() - at) as u64);
                    at += take as usize;
                    self.state = if take == left {
                        State::Head
                    } else {
                        State::Length(left - take)
                    };
                }
                State::Chunk(Chunk::Data(left)) => {
                    let take = left.min((bytes.len() - at) as u64);
                    at += take as usize;
                    self.state = State::Chunk(if take == left {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - take)
                    });
                }
                State::Chunk(chunk) => {
                    self.state = step(chunk, bytes[at]);
                    at += 1;
                }
                State::Head => at = self.head(bytes, at),
            }
        }
    }

    /// Reads head bytes from `bytes[at..]`; returns where the head ended, or `bytes.len()`.
    fn head(&mut self, bytes: &mut [u8], at: usize) -> usize {
        let new = &bytes[at..];
        // Nothing can end a head without a line feed (a parse per read, as hyper does).
        let ends = new.contains(&b'\n');
        let earlier = self.head.len();
        let parsed = if earlier == 0 {
            if ends { parse(new) } else { Ok(None) }
        } else {
            self.head.extend_from_slice(new);
            if ends { parse(&self.head) } else { Ok(None) }
        };
        match parsed {
            Ok(None) => {
                if earlier == 0 {
                    self.head.extend_from_slice(new);
                }
                if self.head.len() > self.max_head {
                    self.stop();
                }
                bytes.len()
            }
            Err(()) => {
                self.stop();
                bytes.len()
            }
            Ok(Some((len, body))) => {
                let end = at + (len - earlier);
                self.head.clear();
                if self.head.capacity() > 8 * 1024 {
                    self.head.shrink_to(1024);
                }
                self.state = match body {
                    Body::None | Body::Length(0) => State::Head,
                    Body::Length(n) => State::Length(n),
                    Body::Chunked => State::Chunk(Chunk::Start),
                    Body::Refused => State::Off,
                    Body::Smuggled => {
                        // The head's last byte is a line feed, in this read (an earlier read did
                        // not complete the head). A space there makes the head malformed.
                        bytes[end - 1] = b' ';
                        State::Off
                    }
                };
                end
            }
        }
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.head = Vec::new();
    }
}

/// A complete head's length and body framing, `None` if incomplete, `Err` if hyper refuses it.
fn parse(bytes: &[u8]) -> Result<Option<(usize, Body)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let mut length: Option<u64> = None;
    let mut cl = false;
    let mut chunked = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = Some(last_is_chunked(h.value));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            cl = true;
            let n = digits(h.value).ok_or(())?;
            if length.is_some_and(|m| m != n) {
                return Ok(Some((len, Body::Refused)));
            }
            length = Some(n);
        }
    }
    let body = match (chunked, cl) {
        (Some(_), true) => Body::Smuggled,
        _ if chunked.is_some() && req.version != Some(1) => Body::Refused,
        (Some(true), false) => Body::Chunked,
        (Some(false), false) => Body::Refused,
        (None, _) => length.map_or(Body::None, Body::Length),
    };
    Ok(Some((len, body)))
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked` (hyper's rule).
fn last_is_chunked(value: &[u8]) -> bool {
    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// A `Content-Length` value as hyper reads it: digits only.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// One byte of a chunked body outside chunk data.
fn step(chunk: Chunk, b: u8) -> State {
    use Chunk::*;
    let next = match (chunk, b) {
        (Start, b) => hex(b).map(Size),
        (Size(n), b'\t' | b' ') => Some(Lws(n)),
        (Size(n) | Lws(n), b';') => Some(Extension(n)),
        (Size(n) | Lws(n) | Extension(n), b'\r') => Some(SizeLf(n)),
        (Size(n), b) => hex(b).and_then(|d| n.checked_mul(16)?.checked_add(d)).map(Size),
        (Lws(n), b'\t' | b' ') => Some(Lws(n)),
        (Lws(_), _) | (Extension(_), b'\n') => None,
        (Extension(n), _) => Some(Extension(n)),
        (SizeLf(0), b'\n') => Some(EndCr),
        (SizeLf(n), b'\n') => Some(Data(n)),
        (DataCr, b'\r') => Some(DataLf),
        (DataLf, b'\n') => Some(Start),
        (EndCr, b'\r') => Some(EndLf),
        (EndCr | Trailer, _) if b != b'\r' => Some(Trailer),
        (Trailer, b'\r') => Some(TrailerLf),
        (TrailerLf, b'\n') => Some(EndCr),
        (EndLf, b'\n') => return State::Head,
        _ => None,
    };
    next.map_or(State::Off, State::Chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces cut at `cuts`; returns the bytes as hyper would read them and
    /// the state at the end.
    fn through(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, State) {
        let mut f = Framing::new(128 * 1024);
        let mut out = stream.to_vec();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(from, stream.len());
            f.feed(&mut out[from..cut]);
            from = cut;
        }
        (out, f.state)
    }

    fn every_cut(stream: &[u8]) -> impl Iterator<Item = (Vec<u8>, State)> + '_ {
        (0..=stream.len()).flat_map(move |a| {
            [(a, a), (a, a + 1), (a, a + 7), (a, stream.len() / 2)]
                .into_iter()
                .map(move |(a, b)| through(stream, &[a.min(b), a.max(b)]))
        })
    }

    const HONEST: &[u8] = b"POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n\
        GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
        PUT /tus/1 HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n1b \r\nGET / HTTP/1.1\r\nContent-Len\r\n0\r\nX-Trailer: 1\r\n\r\n\
        GET /healthz HTTP/1.1\nHost: x\n\n\
        \r\nGET /readyz HTTP/1.1\r\n\r\n";

    #[test]
    fn honest_streams_pass_unchanged_however_they_are_cut() {
        for (out, state) in every_cut(HONEST) {
            assert_eq!(out, HONEST, "{}", String::from_utf8_lossy(&out));
            assert_eq!(state, State::Head);
        }
    }

    #[test]
    fn a_head_with_both_lengths_loses_its_last_line_feed_however_it_is_cut() {
        for both in [
            &b"POST /v1/files HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST /v1/files HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            b"POST / HTTP/1.1\nTransfer-Encoding: identity\nContent-Length: 3\n\n",
        ] {
            let body = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
            // After an honest request on the same connection, too.
            let first = b"PUT /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
            let stream = [&first[..], both, body].concat();
            for (out, state) in every_cut(&stream) {
                let end = first.len() + both.len() - 1;
                assert_eq!(out[end], b' ');
                assert_eq!([&out[..end], &out[end + 1..]], [&stream[..end], &stream[end + 1..]]);
                assert_eq!(state, State::Off);
                let mut headers = [httparse::EMPTY_HEADER; 8];
                assert!(httparse::Request::new(&mut headers).parse(&out[first.len()..]).is_err());
            }
        }
    }

    #[test]
    fn what_hyper_refuses_ends_the_following() {
        for stream in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            let (out, state) = through(stream, &[]);
            assert_eq!(out, stream);
            assert_eq!(state, State::Off, "{}", String::from_utf8_lossy(stream));
        }
        let mut long = Framing::new(64);
        long.feed(&mut b"GET / HTTP/1.1\r\nX: ".repeat(10));
        assert_eq!(long.state, State::Off);
    }
}
