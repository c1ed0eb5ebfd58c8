//! Part buffers for bytes on their way to S3, under one memory budget.
//!
//! An S3 part is sent whole (so it can be retried), so it has to be held whole in memory. Two
//! things made that expensive before this pool: the body's chunks were kept as they came from
//! the socket, each pinning a larger read buffer, and every upload could hold several parts, so
//! memory grew with the number of uploads. Here every part is copied into a buffer of fixed size
//! taken from a pool with a budget: an upload waits for a buffer (and so reads no more from its
//! client) when the budget is spent, and memory stays at most `budget` whatever the load.
//!
//! Buffers are anonymous memory maps, kept for reuse while uploads come (so their pages are
//! already touched, which is slow the first time on small VMs) and unmapped once the pool has
//! been idle for [`IDLE_RELEASE`], so an idle server gives the memory back to the system.
//! A buffer goes back to the pool when the last [`Bytes`] made from it is dropped, that is when
//! the S3 client is done with it, retries included.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use filedock_core::{ByteStream, Error, Result};
use futures_util::StreamExt;
use memmap2::MmapMut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long the pool keeps unused buffers after the last one was given back.
const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// A budget of part buffers of one size.
#[derive(Debug, Clone)]
pub(crate) struct PartPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    size: usize,
    count: usize,
    idle: Duration,
    permits: Arc<Semaphore>,
    free: Mutex<Free>,
}

#[derive(Debug, Default)]
struct Free {
    maps: Vec<MmapMut>,
    /// Counts takes, so an idle release scheduled before a take does nothing.
    takes: u64,
}

/// How a [`PartBuf::fill`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filled {
    /// The buffer holds as much as was asked; the body may go on.
    Full,
    /// The body ended (the buffer holds what came before the end, maybe nothing).
    End,
}

impl PartPool {
    /// `count` buffers of `size` bytes at most (at least one).
    pub(crate) fn new(size: usize, count: usize) -> Self {
        Self::with_idle_release(size, count, IDLE_RELEASE)
    }

    fn with_idle_release(size: usize, count: usize, idle: Duration) -> Self {
        let count = count.max(1);
        PartPool {
            inner: Arc::new(Inner {
                size,
                count,
                idle,
                permits: Arc::new(Semaphore::new(count)),
                free: Mutex::new(Free::default()),
            }),
        }
    }

    /// An empty buffer; waits while the budget is spent.
    pub(crate) async fn take(&self) -> Result<PartBuf> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(Error::internal)?;
        let map = {
            let mut free = self
                .inner
                .free
                .lock()
                .map_err(|_| Error::internal_msg("part pool poisoned"))?;
            free.takes += 1;
            free.maps.pop()
        };
        let map = match map {
            Some(m) => m,
            None => MmapMut::map_anon(self.inner.size).map_err(Error::internal)?,
        };
        Ok(PartBuf {
            map: Some(map),
            len: 0,
            permit: Some(permit),
            pool: Arc::downgrade(&self.inner),
        })
    }

    /// Buffers mapped now, in use or kept for reuse (for tests).
    #[cfg(test)]
    fn mapped(&self) -> usize {
        let free = self.inner.free.lock().map(|f| f.maps.len()).unwrap_or(0);
        free + self.inner.count - self.inner.permits.available_permits()
    }
}

impl Inner {
    fn give_back(self: &Arc<Self>, map: MmapMut, permit: OwnedSemaphorePermit) {
        let takes = match self.free.lock() {
            Ok(mut free) => {
                free.maps.push(map);
                free.takes
            }
            Err(_) => return,
        };
        drop(permit);
        if self.permits.available_permits() < self.count {
            return;
        }
        // All buffers are back: unmap them unless a take comes within IDLE_RELEASE.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = Arc::downgrade(self);
        let idle = self.idle;
        rt.spawn(async move {
            tokio::time::sleep(idle).await;
            let Some(pool) = pool.upgrade() else { return };
            if let Ok(mut free) = pool.free.lock()
                && free.takes == takes
            {
                free.maps.clear();
            }
        });
    }
}

/// One buffer of a [`PartPool`]: bytes are copied in, then it is frozen into [`Bytes`].
#[derive(Debug)]
pub(crate) struct PartBuf {
    map: Option<MmapMut>,
    len: usize,
    permit: Option<OwnedSemaphorePermit>,
    pool: Weak<Inner>,
}

impl PartBuf {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn space(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(m) => &mut m[self.len..],
            None => &mut [],
        }
    }

    /// Appends `data`; an error if it does not fit.
    pub(crate) fn extend(&mut self, data: &[u8]) -> Result<()> {
        let space = self.space();
        if data.len() > space.len() {
            return Err(Error::internal_msg("a part buffer overflowed"));
        }
        space[..data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(())
    }

    /// Copies from `carry`, then from `body`, until the buffer holds `want` bytes (at most its
    /// size) or the body ends. What of a chunk does not fit stays in `carry` for the next buffer.
    /// An error from the body is returned as is; the bytes before it stay in the buffer.
    pub(crate) async fn fill(&mut self, body: &mut ByteStream, carry: &mut Bytes, want: usize) -> Result<Filled> {
        let want = want.min(self.len + self.space().len());
        loop {
            if !carry.is_empty() {
                let n = carry.len().min(want.saturating_sub(self.len));
                let head = carry.split_to(n);
                self.extend(&head)?;
            }
            if self.len >= want {
                return Ok(Filled::Full);
            }
            match body.next().await {
                Some(chunk) => *carry = chunk?,
                None => return Ok(Filled::End),
            }
        }
    }

    /// Moves the bytes held right by `n`, leaving `n` bytes at the front to be written with
    /// [`PartBuf::write_front`].
    pub(crate) fn shift_right(&mut self, n: usize) -> Result<()> {
        let len = self.len;
        let Some(m) = &mut self.map else {
            return Err(Error::internal_msg("a part buffer was used after freezing"));
        };
        if len + n > m.len() {
            return Err(Error::internal_msg("a part buffer overflowed"));
        }
        m.copy_within(0..len, n);
        self.len += n;
        Ok(())
    }

    /// Writes `data` at `at` within what the buffer holds.
    pub(crate) fn write_front(&mut self, at: usize, data: &[u8]) -> Result<()> {
        let len = self.len;
        match &mut self.map {
            Some(m) if at + data.len() <= len => {
                m[at..at + data.len()].copy_from_slice(data);
                Ok(())
            }
            _ => Err(Error::internal_msg("a part buffer write out of bounds")),
        }
    }

    /// The bytes held, as [`Bytes`]; the buffer goes back to the pool when the last clone is
    /// dropped.
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PartBuf {
    fn as_ref(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[..self.len],
            None => &[],
        }
    }
}

impl Drop for PartBuf {
    fn drop(&mut self) {
        if let (Some(map), Some(permit), Some(pool)) = (self.map.take(), self.permit.take(), self.pool.upgrade()) {
            pool.give_back(map, permit);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn body(chunks: &[&'static [u8]]) -> ByteStream {
        futures_util::stream::iter(chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect::<Vec<_>>()).boxed()
    }

    #[tokio::test]
    async fn fill_cuts_chunks_at_the_buffer_size_and_carries_the_rest() {
        let pool = PartPool::new(4, 2);
        let mut b = body(&[b"abc", b"defgh", b"i"]);
        let mut carry = Bytes::new();
        let mut one = pool.take().await.unwrap();
        assert_eq!(one.fill(&mut b, &mut carry, usize::MAX).await.unwrap(), Filled::Full);
        assert_eq!(one.as_ref(), b"abcd");
        let mut two = pool.take().await.unwrap();
        assert_eq!(two.fill(&mut b, &mut carry, 4).await.unwrap(), Filled::Full);
        assert_eq!(two.as_ref(), b"efgh");
        drop(one);
        let mut three = pool.take().await.unwrap();
        assert_eq!(three.fill(&mut b, &mut carry, 4).await.unwrap(), Filled::End);
        assert_eq!(three.as_ref(), b"i");
        // Shifted right, a prefix goes in front.
        three.shift_right(2).unwrap();
        three.write_front(0, b"xy").unwrap();
        assert_eq!(three.as_ref(), b"xyi");
        assert!(three.write_front(2, b"zz").is_err());
        assert!(three.extend(b"zz").is_err());
    }

    #[tokio::test]
    async fn the_budget_holds_until_the_last_bytes_are_dropped() {
        let pool = PartPool::new(8, 1);
        let mut a = pool.take().await.unwrap();
        a.extend(b"12345678").unwrap();
        let frozen = a.freeze();
        let copy = frozen.clone();
        drop(frozen);
        // The budget is one buffer and `copy` still holds it.
        let waiting = tokio::time::timeout(Duration::from_millis(100), pool.take()).await;
        assert!(waiting.is_err(), "a second buffer was handed out over the budget");
        assert_eq!(&copy[..], b"12345678");
        drop(copy);
        let b = pool.take().await.unwrap();
        assert!(b.is_empty());
        assert_eq!(pool.mapped(), 1, "the buffer is reused, not mapped again");
    }

    #[tokio::test]
    async fn an_idle_pool_unmaps_its_buffers() {
        const IDLE_RELEASE: Duration = Duration::from_secs(1);
        let pool = PartPool::with_idle_release(4096, 2, IDLE_RELEASE);
        let a = pool.take().await.unwrap();
        let b = pool.take().await.unwrap();
        drop(a);
        drop(b);
        assert_eq!(pool.mapped(), 2);
        // A take before the idle time has passed keeps them.
        tokio::time::sleep(IDLE_RELEASE / 2).await;
        drop(pool.take().await.unwrap());
        tokio::time::sleep(IDLE_RELEASE / 2).await;
        assert_eq!(pool.mapped(), 2);
        tokio::time::sleep(IDLE_RELEASE * 2).await;
        assert_eq!(pool.mapped(), 0);
    }
}
