//! The local-disk store. Objects live at `<root>/objects/<key>`; a body is written to
//! `<root>/tmp/`, fsynced, then published by a hard link (create-only: fails if the key exists)
//! or a rename (replace), and the directory is fsynced. A body that fails leaves only its temp
//! file, which is removed at once — and at the next start if the process died.

use std::io::{ErrorKind, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use filedock_core::link::SelfServed;
use filedock_core::{
    BlobStore, ByteRange, ByteStream, Error, GetResult, ObjectMeta, PresignGet, PresignPut, PresignedRequest,
    PutOptions, Result, StorageKey,
};
use futures_util::StreamExt;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

/// Write buffer per upload: large enough to keep syscalls few, small enough for many at once.
const WRITE_BUF: usize = 256 * 1024;
/// Read chunk size for downloads.
const READ_CHUNK: usize = 64 * 1024;

/// Blobs in a directory.
#[derive(Debug)]
pub struct LocalStore {
    objects: PathBuf,
    tmp: PathBuf,
    signing: Option<SelfServed>,
}

fn not_found(e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::not_found("no such key")
    } else {
        Error::internal(e)
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
        fs::create_dir_all(&objects).await?;
        fs::create_dir_all(&tmp).await?;
        let mut removed = 0;
        let mut entries = fs::read_dir(&tmp).await?;
        while let Some(e) = entries.next_entry().await? {
            fs::remove_file(e.path()).await?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(root = %root.display(), removed, "removed temp files of unfinished uploads");
        }
        Ok(LocalStore { objects, tmp, signing })
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

    async fn write_temp(&self, tmp: &Path, mut body: ByteStream) -> Result<()> {
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

    async fn prune_dirs(&self, mut dir: Option<&Path>) {
        while let Some(d) = dir {
            if d == self.objects || !d.starts_with(&self.objects) || fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    async fn put(&self, key: &StorageKey, body: ByteStream, opts: PutOptions) -> Result<ObjectMeta> {
        let tmp = self.tmp.join(uuid::Uuid::now_v7().simple().to_string());
        let target = self.path(key);
        let r = async {
            self.write_temp(&tmp, body).await?;
            self.publish(&tmp, &target, opts.create_only).await?;
            Ok(meta_of(&fs::metadata(&target).await?))
        }
        .await;
        // After a hard link the temp name is a second link; after a rename it is gone.
        match fs::remove_file(&tmp).await {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                tracing::warn!(path = %tmp.display(), error = %e, "could not remove a temp file")
            }
            _ => {}
        }
        r
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
        let path = self.path(key);
        match fs::remove_file(&path).await {
            Ok(()) => {
                self.prune_dirs(path.parent()).await;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(StorageKey, ObjectMeta)>> {
        let root = self.objects.clone();
        let prefix = prefix.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?;
                    let m = entry.metadata()?;
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_blob_store_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), None).await.unwrap();
        filedock_core::conformance::blob_store_suite(&store, true).await;
        assert_eq!(store.temp_files().await.unwrap(), 0, "no temp file is left behind");
    }

    #[tokio::test]
    async fn open_removes_leftover_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), None).await.unwrap();
        std::fs::write(dir.path().join("tmp").join("crashed-upload"), b"partial").unwrap();
        assert_eq!(store.temp_files().await.unwrap(), 1);
        let reopened = LocalStore::open(dir.path(), None).await.unwrap();
        assert_eq!(reopened.temp_files().await.unwrap(), 0);
    }
}
