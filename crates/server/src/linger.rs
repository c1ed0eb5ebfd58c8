//! Lingering close: a refusal must reach a client that sends its whole body before it reads.
//!
//! filedock often answers before it has read a request's body (a wrong key, a type refused by
//! name, a body over the limit). If the connection then closed with body bytes still arriving,
//! the kernel would reset it, and clients that write the whole body first (Node's fetch,
//! browsers) would see EPIPE or "connection reset" instead of the answer. So a body that a
//! handler drops unread is handed to a task that reads and discards the rest, within bounds, as
//! nginx's lingering close does; hyper meanwhile sends the answer, and keeps the connection if
//! the rest arrived.
//!
//! The bounds are nginx's (`lingering_time` 30 s, `lingering_timeout` 5 s) plus a byte bound:
//! a refused upload may cost at most 256 MiB of reading and 30 s, and a client that stops
//! sending for 5 s is closed on. 256 MiB is more than any body a client sends before looking at
//! the answer in practice (Node and browsers write 50 MiB in well under a second on a LAN) and
//! small next to what a client could make filedock read anyway by uploading.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// The most read and discarded after an early answer.
pub const LINGER_BYTES: u64 = 256 * 1024 * 1024;
/// The longest a drain lasts.
pub const LINGER_TIME: Duration = Duration::from_secs(30);
/// The longest a drain waits for the next piece.
pub const LINGER_IDLE: Duration = Duration::from_secs(5);

/// Wraps each request's body so that, dropped unread, it drains (a `map_request` function).
pub fn lingering(req: Request) -> Request {
    req.map(|body| {
        if body.is_end_stream() {
            body
        } else {
            Body::new(Lingering {
                inner: Some(body),
                ended: false,
            })
        }
    })
}

struct Lingering {
    inner: Option<Body>,
    ended: bool,
}

impl HttpBody for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(HttpBody::size_hint).unwrap_or_default()
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else { return };
        if self.ended || body.is_end_stream() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drain(body));
        }
    }
}

/// Reads and discards what is left of a body, within the bounds.
async fn drain(mut body: Body) {
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut read = 0u64;
    while read < LINGER_BYTES {
        let next = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + LINGER_IDLE), body.frame());
        match next.await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
            // The end, a broken body, or a bound reached: dropping the body lets hyper close.
            Ok(Some(Err(_)) | None) | Err(_) => return,
        }
    }
    tracing::debug!(read, "stopped draining a refused body at the byte bound");
}
