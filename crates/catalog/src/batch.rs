//! Group commit for the records that need no fsync (pending files, new uploads). Creations are
//! many and small; each one as its own statement costs a hand-off to the database (SQLite's
//! worker thread, or a PostgreSQL round trip) and a commit. A single writer task takes every
//! record waiting when it is free and inserts them as one multi-row statement, so 64 clients
//! creating at once share a few statements. A batch the database refuses (one row's unique key,
//! say) is retried row by row, so each caller gets its own row's answer and no other row fails
//! with it.

use std::sync::Arc;

use filedock_core::{Error, FileRecord, Result, UploadRecord};
use tokio::sync::{mpsc, oneshot};

/// Rows in one statement at most (21 columns × 64 stays far below both databases' limits on
/// bound parameters).
pub(crate) const MAX_BATCH: usize = 64;

/// Where batches go: a pool of one database, inserting many rows of a table in one statement.
#[async_trait::async_trait]
pub(crate) trait Inserts: Send + Sync + 'static {
    async fn insert_files(&self, rows: &[&FileRecord]) -> Result<()>;
    async fn insert_uploads(&self, rows: &[&UploadRecord]) -> Result<()>;
    /// A whole batch in one transaction, all or none, where the database has a way that costs
    /// less than the statements above (SQLite's direct connection: one hand-off and one commit
    /// for the batch, not a hand-off and a commit per statement). `None` where it has not: the
    /// batch then goes statement by statement. The jobs come back either way; after an error
    /// the statements decide each job's own answer.
    async fn insert_together(&self, jobs: Vec<Job>) -> (Vec<Job>, Option<Result<()>>) {
        (jobs, None)
    }
}

/// One caller's rows: a file, an upload, or a file and then its upload.
pub(crate) struct Job {
    pub(crate) file: Option<FileRecord>,
    pub(crate) upload: Option<UploadRecord>,
    reply: oneshot::Sender<Result<()>>,
}

/// The sending side of the writer task; the task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
}

impl Batcher {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn spawn(sink: impl Inserts) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(Arc::new(sink), rx));
        Batcher { tx }
    }

    pub(crate) async fn insert(&self, file: Option<&FileRecord>, upload: Option<&UploadRecord>) -> Result<()> {
        let stopped = || Error::Unavailable("the catalog's writer has stopped".into());
        let (reply, rx) = oneshot::channel();
        let job = Job {
            file: file.cloned(),
            upload: upload.cloned(),
            reply,
        };
        self.tx.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn write(sink: Arc<dyn Inserts>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (back, together) = sink.insert_together(std::mem::take(&mut jobs)).await;
        jobs = back;
        if let Some(Ok(())) = together {
            for job in jobs.drain(..) {
                let _ = job.reply.send(Ok(()));
            }
            continue;
        }
        // Files first: a job's upload goes in only once its file is in.
        let mut results: Vec<Result<()>> = jobs.iter().map(|_| Ok(())).collect();
        let files: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].file.is_some()).collect();
        insert_each(&*sink, &jobs, &files, &mut results, |j| Row::File(j.file.as_ref())).await;
        let uploads: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].upload.is_some() && results[i].is_ok())
            .collect();
        insert_each(&*sink, &jobs, &uploads, &mut results, |j| {
            Row::Upload(j.upload.as_ref())
        })
        .await;
        for (job, r) in jobs.drain(..).zip(results) {
            let _ = job.reply.send(r);
        }
    }
}

enum Row<'a> {
    File(Option<&'a FileRecord>),
    Upload(Option<&'a UploadRecord>),
}

/// Inserts the chosen rows of `jobs` in one statement; if the database refuses it, row by row,
/// so each job gets its own row's answer.
async fn insert_each(
    sink: &dyn Inserts,
    jobs: &[Job],
    chosen: &[usize],
    results: &mut [Result<()>],
    row: impl Fn(&Job) -> Row<'_>,
) {
    let rows = |ids: &[usize]| ids.iter().map(|&i| row(&jobs[i])).collect::<Vec<_>>();
    match chosen {
        [] => {}
        [one] => results[*one] = insert(sink, rows(chosen)).await,
        _ => {
            if insert(sink, rows(chosen)).await.is_err() {
                for &i in chosen {
                    results[i] = insert(sink, rows(&[i])).await;
                }
            }
        }
    }
}

async fn insert(sink: &dyn Inserts, rows: Vec<Row<'_>>) -> Result<()> {
    let mut files = Vec::new();
    let mut uploads = Vec::new();
    for r in rows {
        match r {
            Row::File(f) => files.extend(f),
            Row::Upload(u) => uploads.extend(u),
        }
    }
    for chunk in chunks(&files) {
        sink.insert_files(chunk).await?;
    }
    for chunk in chunks(&uploads) {
        sink.insert_uploads(chunk).await?;
    }
    Ok(())
}

/// Splits rows into runs of 64, 32, …, 1 (the largest that fits first), so a connection
/// prepares at most seven statements per table, not one for every batch size (each kept in
/// its statement cache: memory that grew with every new size).
pub(crate) fn chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let n = 1 << rows.len().min(MAX_BATCH).ilog2();
        let (head, rest) = rows.split_at(n);
        rows = rest;
        Some(head)
    })
}

/// The `files` columns a new row sets, in the order they are bound.
pub(crate) const FILE_COLUMNS: &str = "id, project, workspace, backend, storage_key, name, size, declared_type,
    detected_type, extension, sha256, created_by, agent, credential_id, class, status, policy,
    created_at, completed_at, expires_at, deleted_at, origin, reason";

/// The `uploads` columns a new row sets, in the order they are bound.
pub(crate) const UPLOAD_COLUMNS: &str = "id, kind, project, workspace, file_id, backend, storage_key, handle, length,
    part_size, upload_offset, metadata, concat, status, created_at, expires_at";

/// Implements [`Inserts`] for a [`crate::rows::Relaxed`] writer of one database; with
/// `together = f`, `f(self, jobs)` is its [`Inserts::insert_together`].
macro_rules! pool_inserts {
    ($ty:ty, $db:ty) => {
        $crate::batch::pool_inserts!(@impl $ty, $db,);
    };
    ($ty:ty, $db:ty, together = $f:path) => {
        $crate::batch::pool_inserts!(@impl $ty, $db,
            async fn insert_together(
                &self,
                jobs: Vec<$crate::batch::Job>,
            ) -> (Vec<$crate::batch::Job>, Option<filedock_core::Result<()>>) {
                $f(self, jobs).await
            }
        );
    };
    (@impl $ty:ty, $db:ty, $($together:tt)*) => {
        #[async_trait::async_trait]
        impl $crate::batch::Inserts for $ty {
            $($together)*

            async fn insert_files(&self, rows: &[&filedock_core::FileRecord]) -> filedock_core::Result<()> {
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "INSERT INTO files ({}) ",
                    $crate::batch::FILE_COLUMNS
                ));
                q.push_values(rows, |mut b, f| {
                    b.push_bind(f.id.as_str().to_owned())
                        .push_bind(f.project.as_str().to_owned())
                        .push_bind(f.workspace.as_ref().map(|w| w.as_str().to_owned()))
                        .push_bind(f.backend.clone())
                        .push_bind(f.key.as_str().to_owned())
                        .push_bind(f.name.as_str().to_owned())
                        .push_bind($crate::rows::i64_of(f.size))
                        .push_bind(f.declared_type.clone())
                        .push_bind(f.detected_type.clone())
                        .push_bind(f.extension.clone())
                        .push_bind(f.sha256.clone())
                        .push_bind(f.created_by.clone())
                        .push_bind(f.agent.clone())
                        .push_bind(f.credential_id.clone())
                        .push_bind(f.class.as_str())
                        .push_bind(f.status.as_str())
                        .push_bind(f.policy.clone())
                        .push_bind(f.created_at)
                        .push_bind(f.completed_at)
                        .push_bind(f.expires_at)
                        .push_bind(f.deleted_at)
                        .push_bind(f.origin.clone())
                        .push_bind(f.reason.clone());
                });
                let mut c = $crate::rows::Relaxed::conn(self).await?;
                q.build().execute(&mut *c).await.map_err($crate::rows::db_err)?;
                Ok(())
            }

            async fn insert_uploads(&self, rows: &[&filedock_core::UploadRecord]) -> filedock_core::Result<()> {
                let mut q = sqlx::QueryBuilder::<$db>::new(format!(
                    "INSERT INTO uploads ({}) ",
                    $crate::batch::UPLOAD_COLUMNS
                ));
                q.push_values(rows, |mut b, u| {
                    b.push_bind(u.id.as_str().to_owned())
                        .push_bind(u.kind.as_str())
                        .push_bind(u.project.as_str().to_owned())
                        .push_bind(u.workspace.as_ref().map(|w| w.as_str().to_owned()))
                        .push_bind(u.file_id.as_ref().map(|f| f.as_str().to_owned()))
                        .push_bind(u.backend.clone())
                        .push_bind(u.key.as_str().to_owned())
                        .push_bind(u.handle.clone())
                        .push_bind($crate::rows::i64_of(u.length))
                        .push_bind($crate::rows::i64_of(Some(u.part_size)))
                        .push_bind($crate::rows::i64_of(Some(u.offset)))
                        .push_bind(u.metadata.clone())
                        .push_bind(u.concat.as_ref().map(filedock_core::model::Concat::to_stored))
                        .push_bind(u.status.as_str())
                        .push_bind(u.created_at)
                        .push_bind(u.expires_at);
                });
                let mut c = $crate::rows::Relaxed::conn(self).await?;
                q.build().execute(&mut *c).await.map_err($crate::rows::db_err)?;
                Ok(())
            }
        }
    };
}
pub(crate) use pool_inserts;

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use filedock_core::model::{
        Class, FileId, FileName, FileStatus, ProjectId, StorageKey, UploadId, UploadKind, UploadStatus, WorkspaceId,
    };

    use super::*;

    /// `n` pending files, each with its tus upload, every column set.
    pub(crate) fn pairs(n: usize) -> Vec<(FileRecord, UploadRecord)> {
        (0..n)
            .map(|i| {
                let id = FileId::generate();
                let key = StorageKey::new(format!("p/{id}/a{i}.bin")).unwrap();
                let f = FileRecord {
                    id: id.clone(),
                    project: ProjectId::new("p").unwrap(),
                    workspace: Some(WorkspaceId::new("w").unwrap()),
                    backend: "local".into(),
                    key: key.clone(),
                    name: FileName::new(format!("a{i}.bin")).unwrap(),
                    size: Some(1024 + i as u64),
                    declared_type: Some("application/octet-stream".into()),
                    detected_type: None,
                    extension: Some("bin".into()),
                    sha256: None,
                    created_by: Some("me".into()),
                    agent: Some("agent".into()),
                    credential_id: Some("cred".into()),
                    class: Class::Input,
                    status: FileStatus::Pending,
                    policy: "tus".into(),
                    created_at: 1_000 + i as i64,
                    completed_at: None,
                    expires_at: Some(9_000),
                    deleted_at: None,
                    origin: None,
                    reason: None,
                };
                let u = UploadRecord {
                    id: UploadId::generate(),
                    kind: UploadKind::Tus,
                    project: f.project.clone(),
                    workspace: f.workspace.clone(),
                    file_id: Some(id),
                    backend: "local".into(),
                    key,
                    handle: format!("h{i}"),
                    length: Some(1024 + i as u64),
                    part_size: 0,
                    offset: 0,
                    metadata: Some("filename YS5iaW4=".into()),
                    concat: None,
                    status: UploadStatus::Active,
                    created_at: 1_000 + i as i64,
                    expires_at: 9_000,
                };
                (f, u)
            })
            .collect()
    }

    /// A job for each pair (their answers are not awaited).
    pub(crate) fn jobs(pairs: &[(FileRecord, UploadRecord)]) -> Vec<Job> {
        pairs
            .iter()
            .map(|(f, u)| Job {
                file: Some(f.clone()),
                upload: Some(u.clone()),
                reply: oneshot::channel().0,
            })
            .collect()
    }

    /// A sink that counts its calls; `together` is what its batches in one go answer (`None`:
    /// it has no such way).
    #[derive(Clone, Default)]
    struct Counting {
        together: Option<bool>,
        batches: Arc<AtomicUsize>,
        statements: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Inserts for Counting {
        async fn insert_files(&self, _: &[&FileRecord]) -> Result<()> {
            self.statements.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn insert_uploads(&self, _: &[&UploadRecord]) -> Result<()> {
            self.statements.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn insert_together(&self, jobs: Vec<Job>) -> (Vec<Job>, Option<Result<()>>) {
            let Some(ok) = self.together else {
                return (jobs, None);
            };
            self.batches.fetch_add(1, Ordering::SeqCst);
            (
                jobs,
                Some(if ok {
                    Ok(())
                } else {
                    Err(Error::Conflict("taken".into()))
                }),
            )
        }
    }

    async fn run(sink: &Counting) {
        let batcher = Batcher::spawn(sink.clone());
        let mut answers = tokio::task::JoinSet::new();
        for (f, u) in pairs(20) {
            let b = batcher.clone();
            answers.spawn(async move { b.insert(Some(&f), Some(&u)).await });
        }
        while let Some(a) = answers.join_next().await {
            a.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn a_batch_goes_in_one_go_where_the_sink_has_a_way_and_statement_by_statement_otherwise() {
        let together = Counting {
            together: Some(true),
            ..Counting::default()
        };
        run(&together).await;
        assert!(together.batches.load(Ordering::SeqCst) >= 1);
        assert_eq!(together.statements.load(Ordering::SeqCst), 0, "no statement on its own");

        // Refused in one go (a row's unique key, say): the statements give each job its answer.
        let refused = Counting {
            together: Some(false),
            ..Counting::default()
        };
        run(&refused).await;
        assert!(refused.batches.load(Ordering::SeqCst) >= 1);
        assert!(refused.statements.load(Ordering::SeqCst) >= 2, "files, then uploads");

        let without = Counting::default();
        run(&without).await;
        assert_eq!(without.batches.load(Ordering::SeqCst), 0);
        assert!(without.statements.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn batches_split_into_powers_of_two() {
        let rows: Vec<u32> = (0..100).collect();
        let sizes: Vec<usize> = super::chunks(&rows).map(|c| c.len()).collect();
        assert_eq!(sizes, [64, 32, 4]);
        assert_eq!(
            super::chunks(&rows[..37]).map(|c| c.len()).collect::<Vec<_>>(),
            [32, 4, 1]
        );
        assert_eq!(super::chunks::<u32>(&[]).count(), 0);
        let joined: Vec<u32> = super::chunks(&rows).flatten().copied().collect();
        assert_eq!(joined, rows);
    }
}
