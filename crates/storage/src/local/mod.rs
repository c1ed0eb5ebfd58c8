//! The local-disk store. Objects live at `<root>/objects/<key>`; a body is written to
//! `<root>/tmp/`, fsynced, then published by a hard link (create-only: fails if the key exists)
//! or a rename (replace), and the directory is fsynced. A body that fails leaves only its temp
//! file, which is removed at once — and at the next start if the process died.
//!
//! Unfinished uploads live under `<root>/uploads/`, and survive restarts (they are resumable):
//! a multipart upload is a directory of part files named `{number:05}.{etag}`, joined by
//! in-kernel copies at complete; a tus upload is one file appended to, truncated back to the
//! offset the catalog recorded before each append (so bytes written but never acknowledged are
//! dropped), and published by hard link.

mod direct;

use direct::APPEND_BATCH;
use direct::DIRECT_ALIGN;
use direct::WRITE_BUF;
use direct::append_blocking;
use direct::no_upload;
use direct::write_direct;
use std::io::{ErrorKind, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use filedock_core::link::SelfServed;
use filedock_core::{
    BlobStore, ByteRange, ByteStream, Error, GetResult, ObjectMeta, Part, PresignGet, PresignPart, PresignPut,
    PresignedRequest, PutOptions, Result, StorageKey,
};
use futures_util::StreamExt;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

/// Read chunk size for downloads.
const READ_CHUNK: usize = 64 * 1024;

/// Blobs in a directory.
#[derive(Debug)]
pub struct LocalStore {
    objects: PathBuf,
    tmp: PathBuf,
    uploads: PathBuf,
    signing: Option<SelfServed>,
}

fn not_found(e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::not_found("no such key")
    } else {
        Error::from(e)
    }
}

/// A removal that finds nothing to remove succeeded (removals are idempotent).
fn removed(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn meta_of(m: &std::fs::Metadata) -> ObjectMeta {
    let modified_ns = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
    ObjectMeta {
        size: m.len(),
        etag: format!("\"{:x}-{:x}-{:x}\"", m.ino(), m.len(), modified_ns),
        modified: (modified_ns / 1_000_000) as i64,
    }
}

async fn fsync_dir(dir: &Path) -> Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(Error::internal)??;
    Ok(())
}

impl LocalStore {
    /// Opens (creating) a store at `root`, and removes temp files left by a crash.
    pub async fn open(root: &Path, signing: Option<SelfServed>) -> Result<Self> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        let uploads = root.join("uploads");
        fs::create_dir_all(&objects).await?;
        fs::create_dir_all(&tmp).await?;
        fs::create_dir_all(&uploads).await?;
        let mut removed = 0;
        let mut entries = fs::read_dir(&tmp).await?;
        while let Some(e) = entries.next_entry().await? {
            fs::remove_file(e.path()).await?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(root = %root.display(), removed, "removed temp files of unfinished uploads");
        }
        Ok(LocalStore {
            objects,
            tmp,
            uploads,
            signing,
        })
    }

    fn path(&self, key: &StorageKey) -> PathBuf {
        // StorageKey has no empty, '.' or '..' segment and no backslash: joining stays inside.
        self.objects.join(key.as_str())
    }

    /// Files in the temp directory (uploads in progress, or left by a crash before a restart).
    pub async fn temp_files(&self) -> Result<usize> {
        let mut n = 0;
        let mut entries = fs::read_dir(&self.tmp).await?;
        while entries.next_entry().await?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    async fn write_temp(&self, tmp: &Path, body: ByteStream) -> Result<()> {
        // Direct I/O where the file system takes it (not tmpfs): the bytes go from our buffer to
        // the disk without first being copied into the page cache, which on these VMs cost more
        // CPU than everything else an upload does.
        let direct = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(tmp)
            .await;
        match direct {
            Ok(file) => return write_direct(file.into_std().await, body).await,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {}
            Err(e) => return Err(e.into()),
        }
        self.write_buffered(tmp, body).await
    }

    async fn write_buffered(&self, tmp: &Path, mut body: ByteStream) -> Result<()> {
        let file = fs::OpenOptions::new().write(true).create_new(true).open(tmp).await?;
        let mut w = BufWriter::with_capacity(WRITE_BUF, file);
        while let Some(chunk) = body.next().await {
            w.write_all(&chunk?).await?;
        }
        w.flush().await?;
        w.into_inner().sync_all().await?;
        Ok(())
    }

    async fn publish(&self, tmp: &Path, target: &Path, create_only: bool) -> Result<()> {
        let parent = target
            .parent()
            .ok_or_else(|| Error::internal_msg("object path has no parent"))?;
        // A concurrent delete may prune the directory between these two steps: retry once.
        for attempt in 0..2 {
            fs::create_dir_all(parent).await?;
            let r = if create_only {
                fs::hard_link(tmp, target).await
            } else {
                fs::rename(tmp, target).await
            };
            match r {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(Error::PreconditionFailed("an object already exists at this key".into()));
                }
                Err(e) if e.kind() == ErrorKind::NotFound && attempt == 0 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        fsync_dir(parent).await
    }

    /// A store handle names a directory or file under `uploads/`: only what this store minted.
    fn upload_path(&self, handle: &str, suffix: &str) -> Result<PathBuf> {
        if handle.len() != 32 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::not_found("no such upload"));
        }
        Ok(self.uploads.join(format!("{handle}{suffix}")))
    }

    /// The parts of a multipart upload, by number, with their paths.
    async fn parts(&self, handle: &str) -> Result<Vec<(Part, PathBuf)>> {
        let dir = self.upload_path(handle, "")?;
        let mut entries = fs::read_dir(&dir).await.map_err(no_upload)?;
        let mut out = Vec::new();
        while let Some(e) = entries.next_entry().await? {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((n, etag)) = name.split_once('.') else {
                continue; // a part being written
            };
            let Ok(number) = n.parse::<u32>() else { continue };
            let size = e.metadata().await?.len();
            out.push((
                Part {
                    number,
                    etag: format!("\"{etag}\""),
                    size,
                },
                e.path(),
            ));
        }
        out.sort_by_key(|(p, _)| p.number);
        Ok(out)
    }
}

/// Removes an object's file and the directories up to `objects` that it leaves empty; a missing
/// file is removed already.
fn remove_object(objects: &Path, path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == objects || !d.starts_with(objects) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// Removes a temp file when dropped, unless it was renamed away. Runs even when the future that
/// owns it is dropped at an await (a client that went away mid-body).
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                tracing::warn!(path = %self.0.display(), error = %e, "could not remove a temp file")
            }
            _ => {}
        }
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn put(&self, key: &StorageKey, body: ByteStream, opts: PutOptions) -> Result<ObjectMeta> {
        let tmp = self.tmp.join(uuid::Uuid::now_v7().simple().to_string());
        // Removes the temp name however this ends — error, success (after a hard link it is a
        // second link; after a rename it is gone) or the request being dropped mid-body.
        let _guard = TempGuard(tmp.clone());
        let target = self.path(key);
        self.write_temp(&tmp, body).await?;
        self.publish(&tmp, &target, opts.create_only).await?;
        Ok(meta_of(&fs::metadata(&target).await?))
    }

    async fn get(&self, key: &StorageKey, range: Option<ByteRange>) -> Result<GetResult> {
        let mut file = fs::File::open(self.path(key)).await.map_err(not_found)?;
        let meta = meta_of(&file.metadata().await?);
        let r = match range {
            Some(r) => r.resolve(meta.size)?,
            None => 0..meta.size,
        };
        if r.start > 0 {
            file.seek(SeekFrom::Start(r.start)).await?;
        }
        let reader = file.take(r.end - r.start);
        let body = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK)
            .map(|c| c.map_err(Error::from))
            .boxed();
        Ok(GetResult { meta, range: r, body })
    }

    async fn head(&self, key: &StorageKey) -> Result<ObjectMeta> {
        let m = fs::metadata(self.path(key)).await.map_err(not_found)?;
        if !m.is_file() {
            return Err(Error::not_found("no such key"));
        }
        Ok(meta_of(&m))
    }

    async fn delete(&self, key: &StorageKey) -> Result<()> {
        let (objects, path) = (self.objects.clone(), self.path(key));
        tokio::task::spawn_blocking(move || remove_object(&objects, &path))
            .await
            .map_err(Error::internal)?
            .map_err(Error::from)
    }

    /// One blocking task for the whole batch (a sweep's): a hand-off per key cost more than
    /// the unlink.
    async fn delete_many(&self, keys: &[StorageKey]) -> Result<Vec<(StorageKey, Error)>> {
        let objects = self.objects.clone();
        let paths: Vec<(StorageKey, PathBuf)> = keys.iter().map(|k| (k.clone(), self.path(k))).collect();
        tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .filter_map(|(key, path)| remove_object(&objects, &path).err().map(|e| (key, e.into())))
                .collect()
        })
        .await
        .map_err(Error::internal)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(StorageKey, ObjectMeta)>> {
        let root = self.objects.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                // An object or a directory that goes away while we list (a delete, a sweep, an
                // upload's temp file) is simply not listed: it is gone, not an error.
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                for entry in entries {
                    let entry = entry?;
                    let m = match entry.metadata() {
                        Ok(m) => m,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    };
                    if m.is_dir() {
                        stack.push(entry.path());
                    } else if m.is_file() {
                        let rel = entry
                            .path()
                            .strip_prefix(&root)
                            .map_err(Error::internal)?
                            .to_string_lossy()
                            .into_owned();
                        if rel.starts_with(&prefix) {
                            out.push((StorageKey::new(rel)?, meta_of(&m)));
                        }
                    }
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
        .await
        .map_err(Error::internal)?
    }

    async fn create_multipart(&self, _key: &StorageKey) -> Result<String> {
        let handle = uuid::Uuid::now_v7().simple().to_string();
        fs::create_dir(self.upload_path(&handle, "")?).await?;
        fsync_dir(&self.uploads).await?;
        Ok(handle)
    }

    async fn put_part(&self, _key: &StorageKey, handle: &str, number: u32, body: ByteStream, len: u64) -> Result<Part> {
        let dir = self.upload_path(handle, "")?;
        if !fs::try_exists(&dir).await? {
            return Err(Error::not_found("no such upload"));
        }
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let tmp = dir.join(format!("tmp-{tag}"));
        let _guard = TempGuard(tmp.clone());
        let written: Result<Part> = async {
            self.write_temp(&tmp, body).await?;
            let size = fs::metadata(&tmp).await?.len();
            if size != len {
                return Err(Error::invalid(format!("the part is {size} bytes, not {len}")));
            }
            // A part put again replaces the old one.
            for (old, path) in self.parts(handle).await? {
                if old.number == number {
                    fs::remove_file(path).await?;
                }
            }
            fs::rename(&tmp, dir.join(format!("{number:05}.{tag}"))).await?;
            fsync_dir(&dir).await?;
            Ok(Part {
                number,
                etag: format!("\"{tag}\""),
                size,
            })
        }
        .await;
        written
    }

    async fn list_parts(&self, _key: &StorageKey, handle: &str) -> Result<Vec<Part>> {
        Ok(self.parts(handle).await?.into_iter().map(|(p, _)| p).collect())
    }

    async fn complete_multipart(&self, key: &StorageKey, handle: &str, parts: &[Part]) -> Result<ObjectMeta> {
        let stored = self.parts(handle).await?;
        let mut sources = Vec::with_capacity(parts.len());
        for p in parts {
            let (_, path) = stored
                .iter()
                .find(|(s, _)| s.number == p.number && s.etag == p.etag)
                .ok_or_else(|| Error::invalid(format!("part {} is not stored with that ETag", p.number)))?;
            sources.push(path.clone());
        }
        let tmp = self.tmp.join(uuid::Uuid::now_v7().simple().to_string());
        let target = self.path(key);
        let tmp2 = tmp.clone();
        let joined: Result<ObjectMeta> = async {
            // std::io::copy between two files is copy_file_range on Linux: the bytes stay in the kernel.
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let mut out = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp2)?;
                for src in sources {
                    std::io::copy(&mut std::fs::File::open(src)?, &mut out)?;
                }
                out.sync_all()
            })
            .await
            .map_err(Error::internal)??;
            self.publish(&tmp, &target, true).await?;
            Ok(meta_of(&fs::metadata(&target).await?))
        }
        .await;
        let _ = fs::remove_file(&tmp).await;
        let meta = joined?;
        self.abort_multipart(key, handle).await?;
        Ok(meta)
    }

    async fn abort_multipart(&self, _key: &StorageKey, handle: &str) -> Result<()> {
        removed(fs::remove_dir_all(self.upload_path(handle, "")?).await)
    }

    fn presign_part(&self, req: &PresignPart) -> Result<PresignedRequest> {
        self.signing
            .as_ref()
            .ok_or_else(|| Error::invalid("this store has no public URL to sign"))?
            .presign_part(req)
    }

    async fn append_create(&self, _key: &StorageKey) -> Result<String> {
        // Nothing is written yet: the first append (at offset 0) creates the staging file, so a
        // creation costs no file system work (creating files in one directory from many threads
        // contends on the directory's lock), and an upload that never sends a byte leaves no
        // file. An upload in progress is relaxed state, like its catalog row: after a power
        // failure its file may be gone, and the upload answers 404 so the client starts over;
        // the bytes of each PATCH are synced before their offset is recorded, and the finished
        // file is published durably.
        let handle = uuid::Uuid::now_v7().simple().to_string();
        self.upload_path(&handle, ".append")?;
        Ok(handle)
    }

    async fn append(
        &self,
        _key: &StorageKey,
        handle: &str,
        offset: u64,
        mut body: ByteStream,
    ) -> Result<(u64, Option<Error>)> {
        // One blocking task does all of it (open, truncate, writes, sync): a PATCH then costs
        // one hand-off to a blocking thread, not one per file operation. Chunks go to it in
        // batches of [`APPEND_BATCH`], so a large PATCH wakes it once per batch.
        let path = self.upload_path(handle, ".append")?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<bytes::Bytes>>(1);
        let writer =
            tokio::task::spawn_blocking(move || append_blocking(&path, offset, APPEND_BATCH, || rx.blocking_recv()));
        let mut failed = None;
        let mut batch = Vec::new();
        let mut batched = 0;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => {
                    batched += c.len();
                    batch.push(c);
                    if batched >= APPEND_BATCH {
                        batched = 0;
                        if tx.send(std::mem::take(&mut batch)).await.is_err() {
                            break; // the writer failed: its error is the answer
                        }
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        drop(tx);
        let end = writer.await.map_err(Error::internal)??;
        Ok((end, failed))
    }

    async fn append_bytes(
        &self,
        _key: &StorageKey,
        handle: &str,
        offset: u64,
        chunks: Vec<bytes::Bytes>,
    ) -> Result<u64> {
        // The whole body written and synced in place, with a direct-I/O buffer of its size.
        let path = self.upload_path(handle, ".append")?;
        let size = chunks.iter().map(|c| c.len()).sum::<usize>();
        let buf = size.div_ceil(DIRECT_ALIGN).max(1) * DIRECT_ALIGN;
        let mut chunks = Some(chunks);
        filedock_core::blocking::in_place(move || append_blocking(&path, offset, buf, || chunks.take())).await?
    }

    async fn append_finish(&self, key: &StorageKey, handle: &str, length: u64) -> Result<ObjectMeta> {
        let path = self.upload_path(handle, ".append")?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create(length == 0) // an empty upload never appended
            .open(&path)
            .await
            .map_err(no_upload)?;
        let len = file.metadata().await?.len();
        if len < length {
            return Err(Error::internal_msg(format!(
                "the staged upload holds {len} bytes, not {length}"
            )));
        }
        if len > length {
            file.set_len(length).await?;
            file.sync_all().await?;
        }
        drop(file);
        let target = self.path(key);
        self.publish(&path, &target, true).await?;
        let meta = meta_of(&fs::metadata(&target).await?);
        self.append_abort(key, handle).await?;
        Ok(meta)
    }

    async fn append_abort(&self, _key: &StorageKey, handle: &str) -> Result<()> {
        removed(fs::remove_file(self.upload_path(handle, ".append")?).await)
    }

    fn presign_put(&self, req: &PresignPut) -> Result<PresignedRequest> {
        self.signing
            .as_ref()
            .ok_or_else(|| Error::invalid("this store has no public URL to sign"))?
            .presign_put(req)
    }

    fn presign_get(&self, req: &PresignGet) -> Result<PresignedRequest> {
        self.signing
            .as_ref()
            .ok_or_else(|| Error::invalid("this store has no public URL to sign"))?
            .presign_get(req)
    }

    fn self_served(&self) -> bool {
        self.signing.is_some()
    }
}

#[cfg(test)]
mod tests;
