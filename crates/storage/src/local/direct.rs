//! Writing files with direct I/O (`O_DIRECT`, aligned buffers handed to a blocking thread),
//! falling back to buffered writes where the file system refuses it; appends at an offset.

use std::io::{ErrorKind, SeekFrom};

use std::path::Path;

use filedock_core::{ByteStream, Error, Result};
use futures_util::StreamExt;

/// Write buffer per upload: large enough to keep syscalls few, small enough for many at once.
pub(super) const WRITE_BUF: usize = 256 * 1024;

/// The alignment direct I/O needs (offsets, lengths and buffer addresses).
pub(super) const DIRECT_ALIGN: usize = 4096;

/// Each of an upload's two direct-I/O buffers, at first. Every full buffer is one hand-off to a
/// blocking thread, and on these VMs a hand-off costs about as much as copying 100 KiB.
pub(super) const DIRECT_BUF: usize = 128 * 1024;

/// Each buffer once an upload has passed [`DIRECT_GROW_AFTER`]: a large upload makes 1,024
/// hand-offs per GiB, not 8,192, while many small uploads at once keep 256 KiB each (measured:
/// `bench/TUNING.md`).
pub(super) const DIRECT_BUF_LARGE: usize = 1024 * 1024;

pub(super) const DIRECT_GROW_AFTER: u64 = 32 * 1024 * 1024;

/// How much of a tus PATCH's body goes to its blocking writer at a time (and the size of the
/// writer's direct-I/O buffer).
pub(super) const APPEND_BATCH: usize = 512 * 1024;

/// A buffer whose data starts at a [`DIRECT_ALIGN`] boundary (safe code: a larger `Vec`, used
/// from its first aligned byte).
pub(super) struct AlignedBuf {
    /// Zeros up to `start`, then the data; never grown past its first allocation (so `start`
    /// stays aligned) and never zeroed beyond `start`: a PATCH's buffer is filled by copying.
    v: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    fn new(cap: usize) -> Self {
        let mut v = Vec::<u8>::with_capacity(cap + DIRECT_ALIGN);
        let start = v.as_ptr().align_offset(DIRECT_ALIGN);
        v.resize(start, 0);
        AlignedBuf { v, start, cap }
    }

    fn cap(&self) -> usize {
        self.cap
    }

    fn len(&self) -> usize {
        self.v.len() - self.start
    }

    fn clear(&mut self) {
        self.v.truncate(self.start);
    }

    /// Copies as much of `data` as fits; returns how much.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.cap - self.len());
        self.v.extend_from_slice(&data[..n]);
        n
    }

    fn data(&self) -> &[u8] {
        &self.v[self.start..]
    }
}

/// Writes a buffer on a blocking thread; a tail that is not a multiple of [`DIRECT_ALIGN`] is
/// written with direct I/O turned off (the file is then at its end).
pub(super) fn write_block(
    mut file: std::fs::File,
    mut buf: AlignedBuf,
) -> std::io::Result<(std::fs::File, AlignedBuf)> {
    use std::io::Write;
    let data = buf.data();
    let aligned = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    file.write_all(&data[..aligned])?;
    if aligned < data.len() {
        let flags = rustix::fs::fcntl_getfl(&file)?;
        rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::DIRECT)?;
        file.write_all(&data[aligned..])?;
    }
    buf.clear();
    Ok((file, buf))
}

/// Appends batches of chunks to a staged upload at `offset`, then syncs its data; returns the
/// new end. Only the first append (at offset 0) creates the file: past offset 0 a missing file
/// is an upload that was aborted (or lost), and takes nothing. Bytes past `offset` (written,
/// never acknowledged) are dropped first. From an aligned offset the bytes go with direct I/O,
/// through a buffer of `buf` bytes, like a whole upload's.
pub(super) fn append_blocking(
    path: &Path,
    offset: u64,
    buf: usize,
    next: impl FnMut() -> Option<Vec<bytes::Bytes>>,
) -> Result<u64> {
    let written = append_inner(path, offset, buf, next);
    if written.is_err() {
        // What a failed append wrote past the recorded offset was never acknowledged: drop it
        // now, not when the upload expires (on a full disk that space is what is missing).
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path)
            && f.metadata().is_ok_and(|m| m.len() > offset)
        {
            let _ = f.set_len(offset).and_then(|()| f.sync_data());
        }
    }
    written
}

pub(super) fn append_inner(
    path: &Path,
    offset: u64,
    buf: usize,
    mut next: impl FnMut() -> Option<Vec<bytes::Bytes>>,
) -> Result<u64> {
    use std::io::{Seek as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let open = |direct: bool| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(offset == 0);
        if direct {
            o.custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32);
        }
        o.open(path)
    };
    let aligned = offset.is_multiple_of(DIRECT_ALIGN as u64);
    let (mut file, direct) = match open(aligned) {
        Ok(f) => (f, aligned),
        Err(e) if aligned && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            (open(false).map_err(no_upload)?, false)
        }
        Err(e) => return Err(no_upload(e)),
    };
    let len = file.metadata()?.len();
    if len < offset {
        return Err(Error::internal_msg(format!(
            "the staged upload holds {len} bytes, fewer than its recorded offset {offset}"
        )));
    }
    if len > offset {
        // Written after the last acknowledged offset, then never acknowledged: drop it.
        file.set_len(offset)?;
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut end = offset;
    let file = if direct {
        let mut buf = AlignedBuf::new(buf);
        while let Some(batch) = next() {
            for c in batch {
                end += c.len() as u64;
                let mut rest = &c[..];
                while !rest.is_empty() {
                    rest = &rest[buf.fill(rest)..];
                    if buf.len() == buf.cap() {
                        file.write_all(buf.data())?;
                        buf.clear();
                    }
                }
            }
        }
        write_block(file, buf)?.0
    } else {
        let mut w = std::io::BufWriter::with_capacity(WRITE_BUF, file);
        while let Some(batch) = next() {
            for c in batch {
                w.write_all(&c)?;
                end += c.len() as u64;
            }
        }
        w.into_inner().map_err(|e| e.into_error())?
    };
    file.sync_data()?;
    Ok(end)
}

pub(super) async fn join<T: Send + 'static>(h: tokio::task::JoinHandle<std::io::Result<T>>) -> Result<T> {
    Ok(h.await.map_err(Error::internal)??)
}

/// Streams `body` into a file opened with `O_DIRECT`, through two buffers of [`DIRECT_BUF`]
/// (later [`DIRECT_BUF_LARGE`]): one fills while the other is written. Then fsyncs.
pub(super) async fn write_direct(file: std::fs::File, mut body: ByteStream) -> Result<()> {
    let mut file = Some(file);
    let mut filling = AlignedBuf::new(DIRECT_BUF);
    let mut spare = Some(AlignedBuf::new(DIRECT_BUF));
    let mut writing: Option<tokio::task::JoinHandle<std::io::Result<(std::fs::File, AlignedBuf)>>> = None;
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let n = filling.fill(rest);
            rest = &rest[n..];
            if filling.len() == filling.cap() {
                if let Some(h) = writing.take() {
                    let (f, b) = join(h).await?;
                    file = Some(f);
                    spare = Some(b);
                }
                written += filling.len() as u64;
                let size = if written >= DIRECT_GROW_AFTER {
                    DIRECT_BUF_LARGE
                } else {
                    DIRECT_BUF
                };
                let next = spare
                    .take()
                    .filter(|b| b.cap() == size)
                    .unwrap_or_else(|| AlignedBuf::new(size));
                let full = std::mem::replace(&mut filling, next);
                let f = file
                    .take()
                    .ok_or_else(|| Error::internal_msg("direct writer lost its file"))?;
                writing = Some(tokio::task::spawn_blocking(move || write_block(f, full)));
            }
        }
    }
    if let Some(h) = writing.take() {
        let (f, _) = join(h).await?;
        file = Some(f);
    }
    let f = file
        .take()
        .ok_or_else(|| Error::internal_msg("direct writer lost its file"))?;
    let f = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let (f, _) = write_block(f, filling)?;
        f.sync_all()?;
        Ok(f)
    });
    join(f).await?;
    Ok(())
}

pub(super) fn no_upload(e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::not_found("no such upload")
    } else {
        Error::from(e)
    }
}
