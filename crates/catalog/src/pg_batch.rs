//! PostgreSQL's way with a batch of new records (`crate::batch`): one statement for all of it.
//! Each column goes as an array and `UNNEST` makes the rows, so the statement's text is the same
//! for any number of rows (one prepared statement, not one per batch size), and the files and
//! the uploads go in one round trip and one commit, all or none, where the statements per table
//! were a round trip and a commit each.

use std::sync::LazyLock;

use filedock_core::Result;
use sqlx::PgPool;

use crate::batch::{FILE_COLUMNS, Job, UPLOAD_COLUMNS};
use crate::rows::{db_err, i64_of};

/// The statement: files first (a pending upload names its file), then uploads.
static INSERT: LazyLock<String> = LazyLock::new(|| {
    const FILE_TYPES: [&str; 23] = [
        "text", "text", "text", "text", "text", "text", "bigint", "text", "text", "text", "text", "text", "text",
        "text", "text", "text", "text", "bigint", "bigint", "bigint", "bigint", "text", "text",
    ];
    const UPLOAD_TYPES: [&str; 16] = [
        "text", "text", "text", "text", "text", "text", "text", "text", "bigint", "bigint", "bigint", "text", "text",
        "text", "bigint", "bigint",
    ];
    let arrays = |types: &[&str], first: usize| {
        types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}[]", first + i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "WITH f AS (INSERT INTO files ({FILE_COLUMNS}) SELECT * FROM UNNEST({})) \
         INSERT INTO uploads ({UPLOAD_COLUMNS}) SELECT * FROM UNNEST({})",
        arrays(&FILE_TYPES, 1),
        arrays(&UPLOAD_TYPES, 1 + FILE_TYPES.len())
    )
});

/// Inserts every job's rows in one statement on the relaxed pool.
pub(crate) async fn insert(pool: &PgPool, jobs: &[Job]) -> Result<()> {
    let files: Vec<_> = jobs.iter().filter_map(|j| j.file.as_ref()).collect();
    let uploads: Vec<_> = jobs.iter().filter_map(|j| j.upload.as_ref()).collect();
    macro_rules! column {
        ($rows:expr, $f:expr) => {
            $rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let q = sqlx::query(INSERT.as_str())
        .bind(column!(files, |f| f.id.as_str()))
        .bind(column!(files, |f| f.project.as_str()))
        .bind(column!(files, |f| f.workspace.as_ref().map(|w| w.as_str())))
        .bind(column!(files, |f| f.backend.as_str()))
        .bind(column!(files, |f| f.key.as_str()))
        .bind(column!(files, |f| f.name.as_str()))
        .bind(column!(files, |f| i64_of(f.size)))
        .bind(column!(files, |f| f.declared_type.as_deref()))
        .bind(column!(files, |f| f.detected_type.as_deref()))
        .bind(column!(files, |f| f.extension.as_deref()))
        .bind(column!(files, |f| f.sha256.as_deref()))
        .bind(column!(files, |f| f.created_by.as_deref()))
        .bind(column!(files, |f| f.agent.as_deref()))
        .bind(column!(files, |f| f.credential_id.as_deref()))
        .bind(column!(files, |f| f.class.as_str()))
        .bind(column!(files, |f| f.status.as_str()))
        .bind(column!(files, |f| f.policy.as_str()))
        .bind(column!(files, |f| f.created_at))
        .bind(column!(files, |f| f.completed_at))
        .bind(column!(files, |f| f.expires_at))
        .bind(column!(files, |f| f.deleted_at))
        .bind(column!(files, |f| f.origin.as_deref()))
        .bind(column!(files, |f| f.reason.as_deref()))
        .bind(column!(uploads, |u| u.id.as_str()))
        .bind(column!(uploads, |u| u.kind.as_str()))
        .bind(column!(uploads, |u| u.project.as_str()))
        .bind(column!(uploads, |u| u.workspace.as_ref().map(|w| w.as_str())))
        .bind(column!(uploads, |u| u.file_id.as_ref().map(|f| f.as_str())))
        .bind(column!(uploads, |u| u.backend.as_str()))
        .bind(column!(uploads, |u| u.key.as_str()))
        .bind(column!(uploads, |u| u.handle.as_str()))
        .bind(column!(uploads, |u| i64_of(u.length)))
        .bind(column!(uploads, |u| i64_of(Some(u.part_size))))
        .bind(column!(uploads, |u| i64_of(Some(u.offset))))
        .bind(column!(uploads, |u| u.metadata.as_deref()))
        .bind(column!(uploads, |u| u
            .concat
            .as_ref()
            .map(filedock_core::model::Concat::to_stored)))
        .bind(column!(uploads, |u| u.status.as_str()))
        .bind(column!(uploads, |u| u.created_at))
        .bind(column!(uploads, |u| u.expires_at));
    q.execute(pool).await.map_err(db_err)?;
    Ok(())
}

/// [`crate::batch::Inserts::insert_together`] for the relaxed pool.
pub(crate) async fn together(pool: &PgPool, jobs: Vec<Job>) -> (Vec<Job>, Option<Result<()>>) {
    let r = insert(pool, &jobs).await;
    (jobs, Some(r))
}

#[cfg(test)]
mod tests {
    use filedock_core::Catalog as _;

    use crate::batch::tests::{jobs, pairs};
    use crate::engine::Engine as _;
    use crate::postgres::PgCatalog;

    #[tokio::test]
    async fn a_batch_is_one_statement_all_or_none() {
        let Some(url) = filedock_testkit::postgres_database().await else {
            return;
        };
        let c = PgCatalog::open(&url, 2).await.unwrap();
        let pairs = pairs(37);
        super::insert(c.0.relaxed(), &jobs(&pairs)).await.unwrap();
        for (f, u) in &pairs {
            assert_eq!(c.file(&f.id).await.unwrap().as_ref(), Some(f));
            assert_eq!(c.upload(&u.id).await.unwrap().as_ref(), Some(u));
        }
        // One row taken: none of the batch goes in.
        let mut again = crate::batch::tests::pairs(3);
        again[1].0.id = pairs[0].0.id.clone();
        assert!(super::insert(c.0.relaxed(), &jobs(&again)).await.is_err());
        assert_eq!(c.file(&again[0].0.id).await.unwrap(), None);
        assert_eq!(c.upload(&again[2].1.id).await.unwrap(), None);
    }
}
