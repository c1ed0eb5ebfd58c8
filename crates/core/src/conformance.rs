//! Conformance suites for [`BlobStore`] and [`Catalog`]: every backend runs them in its tests
//! (memory here; local disk, SQLite, and later S3 and PostgreSQL in their crates), so all of
//! them keep the contracts written on the traits. The functions panic on the first broken rule.

use bytes::Bytes;
use futures_util::StreamExt;

use crate::blob::{BlobStore, ByteStream, PutOptions};
use crate::catalog::{Catalog, Completion, FileQuery};
use crate::error::Error;
use crate::model::{
    Class, Credential, CredentialKind, DeliveryRecord, DeliveryStatus, FileId, FileName, FileRecord, FileStatus,
    ProjectId, StorageKey, TaskId, TaskRecord, TaskStatus, UploadId, UploadKind, UploadRecord, UploadStatus,
    WorkspaceId,
};
use crate::range::ByteRange;

fn body(chunks: &[&[u8]]) -> ByteStream {
    let v: Vec<_> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(v).boxed()
}

fn failing_body() -> ByteStream {
    futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(Error::invalid("client went away")),
    ])
    .boxed()
}

async fn read_all(store: &dyn BlobStore, key: &StorageKey, range: Option<ByteRange>) -> Vec<u8> {
    let got = store.get(key, range).await.expect("get");
    let mut out = Vec::new();
    let mut s = got.body;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

fn key(s: &str) -> StorageKey {
    StorageKey::new(s).expect("key")
}

/// Checks a [`BlobStore`] against its contract. The store should be empty under `conformance/`.
/// `atomic_create`: the store promises that of two racing create-only puts exactly one wins (the
/// local disk and memory do; s3s-fs, the S3 test server, checks `If-None-Match` non-atomically).
pub async fn blob_store_suite(store: &dyn BlobStore, atomic_create: bool) {
    // A missing object is NotFound, under filedock's own prefix too (where its markers live),
    // and an object written there reads back.
    let internal = key(".filedock/conformance-marker");
    let missing = store.get(&internal, None).await.map(|g| g.meta);
    assert!(
        matches!(missing, Err(Error::NotFound(_))),
        "get of a missing key: {missing:?}"
    );
    assert!(
        matches!(store.head(&internal).await, Err(Error::NotFound(_))),
        "head of a missing key"
    );
    store
        .put(&internal, body(&[b"marker"]), PutOptions::default())
        .await
        .expect("put under .filedock/");
    assert_eq!(read_all(store, &internal, None).await, b"marker");
    store.delete(&internal).await.expect("delete");

    let k = key("conformance/a/b/one.txt");
    let meta = store
        .put(&k, body(&[b"hello ", b"world"]), PutOptions::default())
        .await
        .expect("put");
    assert_eq!(meta.size, 11);
    assert_eq!(read_all(store, &k, None).await, b"hello world");
    let head = store.head(&k).await.expect("head");
    assert_eq!(head.size, 11);
    assert_eq!(head.etag, meta.etag);

    // Ranges.
    assert_eq!(read_all(store, &k, Some(ByteRange::Bounded(0, 4))).await, b"hello");
    assert_eq!(read_all(store, &k, Some(ByteRange::From(6))).await, b"world");
    assert_eq!(read_all(store, &k, Some(ByteRange::Suffix(3))).await, b"rld");
    let got = store
        .get(&k, Some(ByteRange::Bounded(2, 100)))
        .await
        .expect("get range");
    assert_eq!(got.range, 2..11);
    assert!(matches!(
        store.get(&k, Some(ByteRange::From(11))).await,
        Err(Error::RangeNotSatisfiable(11))
    ));

    // Create-only leaves the existing object untouched.
    let r = store.put(&k, body(&[b"other"]), PutOptions { create_only: true }).await;
    assert!(
        matches!(r, Err(Error::PreconditionFailed(_))),
        "create-only over an object: {r:?}"
    );
    assert_eq!(read_all(store, &k, None).await, b"hello world");

    // A plain put replaces.
    store
        .put(&k, body(&[b"v2"]), PutOptions::default())
        .await
        .expect("overwrite");
    assert_eq!(read_all(store, &k, None).await, b"v2");
    assert_ne!(
        store.head(&k).await.expect("head").etag,
        meta.etag,
        "etag changes with the content"
    );

    // A failed body leaves nothing behind, and does not disturb an existing object.
    let bad = key("conformance/failed.bin");
    assert!(
        store
            .put(&bad, failing_body(), PutOptions { create_only: true })
            .await
            .is_err()
    );
    assert!(matches!(store.head(&bad).await, Err(Error::NotFound(_))));
    assert!(store.put(&k, failing_body(), PutOptions::default()).await.is_err());
    assert_eq!(read_all(store, &k, None).await, b"v2");

    // Empty objects.
    let empty = key("conformance/empty");
    assert_eq!(
        store
            .put(&empty, body(&[]), PutOptions { create_only: true })
            .await
            .expect("empty")
            .size,
        0
    );
    assert_eq!(read_all(store, &empty, None).await, b"");

    // Missing keys.
    let missing = key("conformance/missing");
    assert!(matches!(store.get(&missing, None).await, Err(Error::NotFound(_))));
    assert!(matches!(store.head(&missing).await, Err(Error::NotFound(_))));

    // Listing by prefix, in key order.
    let listed: Vec<String> = store
        .list("conformance/")
        .await
        .expect("list")
        .into_iter()
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(
        listed,
        vec!["conformance/a/b/one.txt".to_owned(), "conformance/empty".to_owned()]
    );
    assert_eq!(store.list("conformance/a/").await.expect("list").len(), 1);

    // Delete is idempotent.
    store.delete(&k).await.expect("delete");
    store.delete(&k).await.expect("delete again");
    assert!(matches!(store.head(&k).await, Err(Error::NotFound(_))));
    store.delete(&empty).await.expect("delete");
    assert!(store.list("conformance/").await.expect("list").is_empty());

    // Concurrent create-only puts: exactly one wins (where the store promises it); at least one.
    let race = key("conformance/race");
    let (a, b) = futures_util::join!(
        store.put(&race, body(&[b"a"]), PutOptions { create_only: true }),
        store.put(&race, body(&[b"b"]), PutOptions { create_only: true })
    );
    let winners = a.is_ok() as u8 + b.is_ok() as u8;
    if atomic_create {
        assert_eq!(winners, 1, "one of two create-only puts wins");
    } else {
        assert!(winners >= 1, "a create-only put on a free key succeeds");
    }
    store.delete(&race).await.expect("delete");
}

fn project(s: &str) -> ProjectId {
    ProjectId::new(s).expect("project")
}

fn credential(id: &str, p: &str, kind: CredentialKind) -> Credential {
    Credential {
        id: id.to_owned(),
        project: project(p),
        workspace: None,
        kind,
        name: Some("test".into()),
        secret_hash: format!("{:0>64}", id),
        created_at: 1,
        revoked_at: None,
    }
}

fn file(p: &str, ws: Option<&str>, key_: &str, status: FileStatus) -> FileRecord {
    FileRecord {
        id: FileId::generate(),
        project: project(p),
        workspace: ws.map(|w| WorkspaceId::new(w).expect("ws")),
        backend: "b".into(),
        key: key(key_),
        name: FileName::new("ünï code.txt").expect("name"),
        size: Some(3),
        declared_type: Some("text/plain".into()),
        detected_type: None,
        extension: Some("txt".into()),
        sha256: None,
        created_by: Some("me".into()),
        agent: Some("fastgpt".into()),
        credential_id: Some("c1".into()),
        class: Class::Input,
        status,
        policy: "native".into(),
        created_at: 1_000,
        completed_at: None,
        expires_at: Some(10_000),
        deleted_at: None,
    }
}

/// Checks a [`Catalog`] against its contract. The catalog should be empty.
pub async fn catalog_suite(catalog: &dyn Catalog) {
    // Credentials.
    let c1 = credential("00000000000000c1", "alpha", CredentialKind::Integration);
    let mut c2 = credential("00000000000000c2", "beta", CredentialKind::Device);
    c2.workspace = Some(WorkspaceId::new("ws1").expect("ws"));
    catalog.insert_credential(&c1).await.expect("insert c1");
    catalog.insert_credential(&c2).await.expect("insert c2");
    assert!(matches!(catalog.insert_credential(&c1).await, Err(Error::Conflict(_))));
    assert_eq!(catalog.credential(&c1.id).await.expect("get"), Some(c1.clone()));
    assert_eq!(catalog.credential(&c2.id).await.expect("get"), Some(c2.clone()));
    assert_eq!(catalog.credential("nope").await.expect("get"), None);
    assert_eq!(catalog.list_credentials(None).await.expect("list").len(), 2);
    assert_eq!(
        catalog.list_credentials(Some(&project("beta"))).await.expect("list"),
        vec![c2.clone()]
    );
    assert!(catalog.revoke_credential(&c1.id, 5).await.expect("revoke"));
    assert!(!catalog.revoke_credential(&c1.id, 6).await.expect("revoke twice"));
    assert!(!catalog.revoke_credential("nope", 6).await.expect("revoke missing"));
    assert_eq!(
        catalog
            .credential(&c1.id)
            .await
            .expect("get")
            .and_then(|c| c.revoked_at),
        Some(5)
    );

    // Files: insert, get, round trip of every field.
    let mut f1 = file("alpha", None, "alpha/one.txt", FileStatus::Ready);
    f1.sha256 = Some("ab".repeat(32));
    f1.detected_type = Some("text/plain; charset=utf-8".into());
    f1.completed_at = Some(1_001);
    catalog.insert_file(&f1).await.expect("insert f1");
    assert_eq!(catalog.file(&f1.id).await.expect("get"), Some(f1.clone()));
    assert_eq!(catalog.file(&FileId::generate()).await.expect("get"), None);
    assert!(
        matches!(catalog.insert_file(&f1).await, Err(Error::Conflict(_))),
        "same id"
    );
    let same_key = file("alpha", None, "alpha/one.txt", FileStatus::Pending);
    assert!(
        matches!(catalog.insert_file(&same_key).await, Err(Error::Conflict(_))),
        "same backend and key"
    );

    // Pending → ready, exactly once.
    let f2 = file("alpha", Some("ws1"), "alpha/two.txt", FileStatus::Pending);
    catalog.insert_file(&f2).await.expect("insert f2");
    let c = Completion {
        size: 3,
        sha256: Some("cd".repeat(32)),
        detected_type: "text/plain".into(),
        completed_at: 2_000,
    };
    assert!(catalog.complete_file(&f2.id, &c).await.expect("complete"));
    assert!(!catalog.complete_file(&f2.id, &c).await.expect("complete twice"));
    let done = catalog.file(&f2.id).await.expect("get").expect("exists");
    assert_eq!(
        (done.status, done.size, done.sha256.as_deref(), done.completed_at),
        (FileStatus::Ready, Some(3), c.sha256.as_deref(), Some(2_000))
    );

    // Listing: newest first, by project, workspace, status, expiry, with a cursor.
    let mut f3 = file("alpha", None, "alpha/three.txt", FileStatus::Ready);
    f3.expires_at = None;
    catalog.insert_file(&f3).await.expect("insert f3");
    let other = file("beta", None, "beta/x.txt", FileStatus::Ready);
    catalog.insert_file(&other).await.expect("insert other");
    let q = |ws: Option<&str>, before: Option<FileId>, live_at: i64, limit: u32| FileQuery {
        project: project("alpha"),
        workspace: ws.map(|w| WorkspaceId::new(w).expect("ws")),
        status: FileStatus::Ready,
        before,
        live_at,
        limit,
    };
    let ids = |v: Vec<FileRecord>| v.into_iter().map(|f| f.id).collect::<Vec<_>>();
    assert_eq!(
        ids(catalog.list_files(&q(None, None, 0, 10)).await.expect("list")),
        vec![f3.id.clone(), f2.id.clone(), f1.id.clone()]
    );
    assert_eq!(
        ids(catalog.list_files(&q(None, None, 0, 2)).await.expect("list")),
        vec![f3.id.clone(), f2.id.clone()]
    );
    assert_eq!(
        ids(catalog
            .list_files(&q(None, Some(f2.id.clone()), 0, 10))
            .await
            .expect("list")),
        vec![f1.id.clone()]
    );
    assert_eq!(
        ids(catalog.list_files(&q(Some("ws1"), None, 0, 10)).await.expect("list")),
        vec![f2.id.clone()]
    );
    assert_eq!(
        ids(catalog.list_files(&q(None, None, 10_000, 10)).await.expect("list")),
        vec![f3.id.clone()],
        "expired files are left out"
    );

    // Delete: a tombstone, exactly once, and the key is free again.
    assert!(catalog.delete_file(&f1.id, 3_000).await.expect("delete"));
    assert!(!catalog.delete_file(&f1.id, 3_001).await.expect("delete twice"));
    let gone = catalog.file(&f1.id).await.expect("get").expect("tombstone");
    assert_eq!((gone.status, gone.deleted_at), (FileStatus::Deleted, Some(3_000)));
    assert_eq!(
        ids(catalog.list_files(&q(None, None, 0, 10)).await.expect("list")),
        vec![f3.id.clone(), f2.id.clone()]
    );
    catalog
        .insert_file(&same_key)
        .await
        .expect("a deleted file's key can be used again");

    // Remove drops the row.
    catalog.remove_file(&same_key.id).await.expect("remove");
    assert_eq!(catalog.file(&same_key.id).await.expect("get"), None);
    catalog.remove_file(&same_key.id).await.expect("remove is idempotent");

    // Expired files: not deleted, expiry reached, soonest first.
    assert_eq!(
        ids(catalog.expired_files(10_000, 10).await.expect("expired")),
        vec![f2.id.clone(), other.id.clone()],
        "the deleted file and the one kept forever are left out"
    );
    assert!(catalog.expired_files(9_999, 10).await.expect("expired").is_empty());
    assert_eq!(catalog.expired_files(10_000, 1).await.expect("expired").len(), 1);

    usage_rules(catalog).await;
    upload_rules(catalog).await;
    task_rules(catalog).await;
    delivery_rules(catalog).await;
    lease_rules(catalog).await;
    setting_rules(catalog).await;
    concurrent_creation_rules(catalog).await;
}

/// Settings are written once: the first value stays; `has_files_on` sees live files only.
async fn setting_rules(catalog: &dyn Catalog) {
    assert_eq!(catalog.setting("deployment_id").await.expect("read"), None);
    assert_eq!(catalog.init_setting("deployment_id", "one").await.expect("init"), "one");
    assert_eq!(
        catalog.init_setting("deployment_id", "two").await.expect("init again"),
        "one",
        "the first value stays"
    );
    assert_eq!(
        catalog.setting("deployment_id").await.expect("read"),
        Some("one".into())
    );
    assert!(!catalog.has_files_on("never-configured").await.expect("has files"));
    let f = file("alpha", None, "settings/live.bin", FileStatus::Ready);
    let f = FileRecord {
        backend: "settings-backend".into(),
        ..f
    };
    catalog.insert_file(&f).await.expect("insert");
    assert!(catalog.has_files_on("settings-backend").await.expect("has files"));
    assert!(catalog.delete_file(&f.id, 5_000).await.expect("delete"));
    assert!(
        !catalog.has_files_on("settings-backend").await.expect("has files"),
        "a tombstone is no file"
    );
}

/// Pending files and uploads created at once (a catalog may insert them together): each caller
/// gets its own row's answer, a refused row refuses no other, and every stored row reads back
/// whole.
async fn concurrent_creation_rules(catalog: &dyn Catalog) {
    let taken = file("gamma", None, "gamma/taken", FileStatus::Ready);
    catalog.insert_file(&taken).await.expect("insert taken");
    let mut files: Vec<FileRecord> = (0..40)
        .map(|i| file("gamma", Some("ws1"), &format!("gamma/{i}"), FileStatus::Pending))
        .collect();
    files[7].key = taken.key.clone();
    files[31].id = files[3].id.clone();
    let results = futures_util::future::join_all(files.iter().map(|f| catalog.insert_file(f))).await;
    for (i, r) in results.iter().enumerate() {
        match i {
            7 => assert!(matches!(r, Err(Error::Conflict(_))), "the taken key: {r:?}"),
            3 | 31 => {}
            _ => assert!(r.is_ok(), "file {i}: {r:?}"),
        }
    }
    assert_eq!(
        results.iter().filter(|r| matches!(r, Err(Error::Conflict(_)))).count(),
        2,
        "the taken key, and one of the two files with the same id"
    );
    for (i, f) in files.iter().enumerate().filter(|(i, _)| ![3, 7, 31].contains(i)) {
        assert_eq!(catalog.file(&f.id).await.expect("get").as_ref(), Some(f), "file {i}");
    }
    let winner = catalog.file(&files[3].id).await.expect("get").expect("one of the two");
    assert!(winner == files[3] || winner == files[31]);

    // A file and its upload together: the upload goes in only with its file.
    let pairs: Vec<(FileRecord, UploadRecord)> = (0..12)
        .map(|i| {
            let f = file("gamma", None, &format!("gamma/pair{i}"), FileStatus::Pending);
            let mut u = upload(60_000);
            u.file_id = Some(f.id.clone());
            (f, u)
        })
        .collect();
    let mut pairs = pairs;
    pairs[5].0.key = taken.key.clone();
    let results = futures_util::future::join_all(pairs.iter().map(|(f, u)| catalog.insert_file_and_upload(f, u))).await;
    for (i, ((f, u), r)) in pairs.iter().zip(&results).enumerate() {
        if i == 5 {
            assert!(matches!(r, Err(Error::Conflict(_))), "the taken key: {r:?}");
            assert_eq!(
                catalog.upload(&u.id).await.expect("get"),
                None,
                "no upload without its file"
            );
        } else {
            assert!(r.is_ok(), "pair {i}: {r:?}");
            assert_eq!(catalog.file(&f.id).await.expect("get").as_ref(), Some(f));
            assert_eq!(catalog.upload(&u.id).await.expect("get").as_ref(), Some(u));
        }
    }

    let existing = upload(60_000);
    catalog.insert_upload(&existing).await.expect("insert upload");
    let mut uploads: Vec<UploadRecord> = (0..24).map(|_| upload(60_000)).collect();
    uploads[11].id = existing.id.clone();
    let results = futures_util::future::join_all(uploads.iter().map(|u| catalog.insert_upload(u))).await;
    for (i, (u, r)) in uploads.iter().zip(&results).enumerate() {
        if i == 11 {
            assert!(matches!(r, Err(Error::Conflict(_))), "the existing id: {r:?}");
            assert_eq!(catalog.upload(&u.id).await.expect("get"), Some(existing.clone()));
        } else {
            assert!(r.is_ok(), "upload {i}: {r:?}");
            assert_eq!(
                catalog.upload(&u.id).await.expect("get").as_ref(),
                Some(u),
                "upload {i}"
            );
        }
    }
}

/// Usage counts a project's live files and their bytes.
async fn usage_rules(catalog: &dyn Catalog) {
    use crate::limits::Usage;
    let p = project("usage");
    assert_eq!(catalog.usage(&p, 0).await.expect("usage"), Usage::default());
    let mut big = file("usage", None, "usage/big", FileStatus::Ready);
    big.size = Some(5_000_000_000);
    big.expires_at = None;
    let mut pending = file("usage", Some("ws1"), "usage/pending", FileStatus::Pending);
    pending.size = None;
    let short = file("usage", None, "usage/short", FileStatus::Ready);
    let gone = file("usage", None, "usage/gone", FileStatus::Ready);
    let elsewhere = file("other-usage", None, "other/x", FileStatus::Ready);
    for f in [&big, &pending, &short, &gone, &elsewhere] {
        catalog.insert_file(f).await.expect("insert");
    }
    catalog.delete_file(&gone.id, 2_000).await.expect("delete");
    assert_eq!(
        catalog.usage(&p, 5_000).await.expect("usage"),
        Usage {
            files: 3,
            bytes: 5_000_000_003
        },
        "deleted files and other projects are left out; a pending file without a size counts 0 bytes"
    );
    assert_eq!(
        catalog.usage(&p, 10_000).await.expect("usage"),
        Usage {
            files: 1,
            bytes: 5_000_000_000
        },
        "expired files are left out"
    );
    // A partial upload (tus concatenation) holds bytes of no file yet: it counts as a file of
    // its length (or of what it received) until it is aborted or expires.
    let mut partial = upload(20_000);
    partial.project = p.clone();
    partial.file_id = None;
    partial.length = Some(700);
    partial.key = key("usage/partial");
    catalog.insert_upload(&partial).await.expect("insert partial");
    let mut other = upload(20_000);
    other.project = p.clone();
    other.concat = None;
    other.key = key("usage/not-partial");
    catalog.insert_upload(&other).await.expect("insert upload");
    assert_eq!(
        catalog.usage(&p, 10_000).await.expect("usage"),
        Usage {
            files: 2,
            bytes: 5_000_000_700
        },
        "a partial upload counts; an upload with a pending file counts through its file"
    );
    assert!(
        catalog
            .finish_upload(&partial.id, UploadStatus::Aborted)
            .await
            .expect("abort")
    );
    assert_eq!(
        catalog.usage(&p, 10_000).await.expect("usage").files,
        1,
        "an aborted partial upload is left out"
    );
    assert!(
        catalog
            .finish_upload(&other.id, UploadStatus::Aborted)
            .await
            .expect("abort")
    );
}

fn task(p: &str, ws: Option<&str>, created_at: i64) -> TaskRecord {
    TaskRecord {
        id: TaskId::generate(),
        project: project(p),
        workspace: ws.map(|w| WorkspaceId::new(w).expect("ws")),
        workflow: "wf_img2img".into(),
        parameters: serde_json::json!({"input_image": {"file_id": FileId::generate()}, "prompt": "enhance", "n": 2}),
        status: TaskStatus::Queued,
        created_by: Some("00000000000000c1".into()),
        runner: None,
        attempts: 0,
        lease_until: None,
        outputs: vec![],
        error: None,
        created_at,
        started_at: None,
        finished_at: None,
    }
}

async fn task_rules(catalog: &dyn Catalog) {
    let t1 = task("alpha", None, 100);
    let t2 = task("alpha", Some("ws1"), 200);
    let t3 = task("beta", None, 50);
    for t in [&t1, &t2, &t3] {
        catalog.insert_task(t).await.expect("insert task");
    }
    assert!(matches!(catalog.insert_task(&t1).await, Err(Error::Conflict(_))));
    assert_eq!(catalog.task(&t1.id).await.expect("get"), Some(t1.clone()), "round trip");
    assert_eq!(catalog.task(&TaskId::generate()).await.expect("get"), None);
    let ids = |v: Vec<TaskRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(catalog.queued_tasks(&project("alpha"), None, 10).await.expect("queued")),
        vec![t1.id.clone(), t2.id.clone()],
        "oldest first, one project"
    );
    let ws1 = WorkspaceId::new("ws1").expect("ws");
    assert_eq!(
        ids(catalog
            .queued_tasks(&project("alpha"), Some(&ws1), 10)
            .await
            .expect("queued")),
        vec![t2.id.clone()]
    );

    // Claimed once; the runner holds it.
    assert!(catalog.claim_task(&t1.id, "r1", 1_000, 2_000).await.expect("claim"));
    assert!(
        !catalog
            .claim_task(&t1.id, "r2", 1_000, 2_000)
            .await
            .expect("claim twice")
    );
    let got = catalog.task(&t1.id).await.expect("get").expect("exists");
    assert_eq!(
        (
            got.status,
            got.runner.as_deref(),
            got.attempts,
            got.lease_until,
            got.started_at
        ),
        (TaskStatus::Running, Some("r1"), 1, Some(2_000), Some(1_000))
    );
    assert_eq!(
        ids(catalog.queued_tasks(&project("alpha"), None, 10).await.expect("queued")),
        vec![t2.id.clone()]
    );
    assert!(catalog.renew_task(&t1.id, "r1", 3_000).await.expect("renew"));
    assert!(!catalog.renew_task(&t1.id, "r2", 9_000).await.expect("renew by another"));
    assert!(catalog.lapsed_tasks(3_000, 10).await.expect("lapsed").is_empty());
    assert_eq!(
        ids(catalog.lapsed_tasks(3_001, 10).await.expect("lapsed")),
        vec![t1.id.clone()]
    );
    assert!(
        !catalog.release_task(&t1.id, 3_000, None).await.expect("release"),
        "not while the lease runs"
    );

    // Lapsed: queued again, claimed by another runner; the first can no longer finish it.
    assert!(catalog.release_task(&t1.id, 3_001, None).await.expect("release"));
    assert!(!catalog.release_task(&t1.id, 3_001, None).await.expect("release twice"));
    assert!(
        catalog
            .claim_task(&t1.id, "r2", 3_002, 4_000)
            .await
            .expect("claim again")
    );
    let out = [FileId::generate(), FileId::generate()];
    assert!(
        !catalog
            .finish_task(&t1.id, "r1", TaskStatus::Succeeded, &out, None, 3_500)
            .await
            .expect("finish by the old runner")
    );
    assert!(
        catalog
            .finish_task(&t1.id, "r2", TaskStatus::Succeeded, &out, None, 3_500)
            .await
            .expect("finish")
    );
    assert!(
        !catalog
            .finish_task(&t1.id, "r2", TaskStatus::Failed, &[], Some("late"), 3_600)
            .await
            .expect("finish twice")
    );
    let done = catalog.task(&t1.id).await.expect("get").expect("exists");
    assert_eq!(
        (
            done.status,
            done.outputs.clone(),
            done.attempts,
            done.finished_at,
            done.started_at,
            done.lease_until
        ),
        (TaskStatus::Succeeded, out.to_vec(), 2, Some(3_500), Some(1_000), None)
    );

    // Lapsed too often: failed with the reason.
    assert!(catalog.claim_task(&t3.id, "r1", 1_000, 2_000).await.expect("claim"));
    assert!(
        catalog
            .release_task(&t3.id, 2_001, Some("lost its runner"))
            .await
            .expect("fail")
    );
    let failed = catalog.task(&t3.id).await.expect("get").expect("exists");
    assert_eq!(
        (failed.status, failed.error.as_deref(), failed.finished_at),
        (TaskStatus::Failed, Some("lost its runner"), Some(2_001))
    );
    assert!(
        !catalog
            .claim_task(&t3.id, "r1", 3_000, 4_000)
            .await
            .expect("claim a failed task")
    );
}

fn delivery(p: &str, next_at: i64) -> DeliveryRecord {
    DeliveryRecord {
        id: FileId::generate().to_string(),
        event_id: FileId::generate().to_string(),
        project: project(p),
        webhook: "hook".into(),
        event: "file.ready".into(),
        payload: r#"{"type":"file.ready"}"#.into(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_at,
        last_error: None,
        created_at: next_at,
        delivered_at: None,
    }
}

async fn delivery_rules(catalog: &dyn Catalog) {
    let d1 = delivery("alpha", 100);
    let d2 = delivery("alpha", 200);
    let d3 = delivery("beta", 150);
    for d in [&d1, &d2, &d3] {
        catalog.insert_delivery(d).await.expect("insert delivery");
    }
    assert!(matches!(catalog.insert_delivery(&d1).await, Err(Error::Conflict(_))));
    let ids = |v: Vec<DeliveryRecord>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(catalog.due_deliveries(150, 10).await.expect("due")),
        vec![d1.id.clone(), d3.id.clone()]
    );
    assert_eq!(
        catalog.deliveries(&project("alpha"), 10).await.expect("list"),
        vec![d2.clone(), d1.clone()]
    );

    // Taken once; due again when the lease ends.
    assert!(catalog.lease_delivery(&d1.id, 150, 1_000).await.expect("lease"));
    assert!(!catalog.lease_delivery(&d1.id, 150, 1_000).await.expect("lease twice"));
    assert_eq!(
        ids(catalog.due_deliveries(999, 10).await.expect("due")),
        vec![d3.id.clone(), d2.id.clone()]
    );
    assert!(ids(catalog.due_deliveries(1_000, 10).await.expect("due")).contains(&d1.id));

    // A retry, then delivered; a settled delivery stays settled.
    catalog
        .settle_delivery(&d1.id, DeliveryStatus::Pending, 1, 5_000, Some("HTTP 500"), 1_001)
        .await
        .expect("retry");
    let again = &catalog.deliveries(&project("alpha"), 10).await.expect("list")[1];
    assert_eq!(
        (again.status, again.attempts, again.next_at, again.last_error.as_deref()),
        (DeliveryStatus::Pending, 1, 5_000, Some("HTTP 500"))
    );
    catalog
        .settle_delivery(&d1.id, DeliveryStatus::Delivered, 2, 5_000, None, 5_001)
        .await
        .expect("delivered");
    catalog
        .settle_delivery(&d1.id, DeliveryStatus::Failed, 3, 9_000, Some("late"), 9_001)
        .await
        .expect("settled already");
    let done = &catalog.deliveries(&project("alpha"), 10).await.expect("list")[1];
    assert_eq!(
        (
            done.status,
            done.attempts,
            done.delivered_at,
            done.last_error.as_deref()
        ),
        (DeliveryStatus::Delivered, 2, Some(5_001), None)
    );
    assert!(!ids(catalog.due_deliveries(10_000, 10).await.expect("due")).contains(&d1.id));
}

async fn lease_rules(catalog: &dyn Catalog) {
    assert!(catalog.try_lease("sweep", "a", 1_000, 2_000).await.expect("take"));
    assert!(!catalog.try_lease("sweep", "b", 1_500, 2_500).await.expect("held"));
    assert!(
        catalog
            .try_lease("other", "b", 1_500, 2_500)
            .await
            .expect("another name")
    );
    assert!(catalog.try_lease("sweep", "a", 1_500, 3_000).await.expect("extend"));
    assert!(!catalog.try_lease("sweep", "b", 2_999, 4_000).await.expect("still held"));
    assert!(
        catalog
            .try_lease("sweep", "b", 3_001, 4_000)
            .await
            .expect("taken over once ended")
    );
    catalog
        .release_lease("sweep", "a")
        .await
        .expect("release by a non-holder");
    assert!(
        !catalog
            .try_lease("sweep", "a", 3_002, 5_000)
            .await
            .expect("b still holds it")
    );
    catalog.release_lease("sweep", "b").await.expect("release");
    assert!(
        catalog
            .try_lease("sweep", "a", 3_003, 5_000)
            .await
            .expect("free after release")
    );
}

fn upload(expires_at: i64) -> UploadRecord {
    UploadRecord {
        id: UploadId::generate(),
        kind: UploadKind::Tus,
        project: project("alpha"),
        workspace: Some(WorkspaceId::new("ws1").expect("ws")),
        file_id: Some(FileId::generate()),
        backend: "local".into(),
        key: key("alpha/big.bin"),
        handle: "h-1".into(),
        length: None,
        part_size: 5 << 20,
        offset: 0,
        metadata: Some("filename YS5iaW4=".into()),
        concat: Some("partial".into()),
        status: UploadStatus::Active,
        created_at: 1_000,
        expires_at,
    }
}

async fn upload_rules(catalog: &dyn Catalog) {
    let u = upload(50_000);
    catalog.insert_upload(&u).await.expect("insert upload");
    assert!(matches!(catalog.insert_upload(&u).await, Err(Error::Conflict(_))));
    assert_eq!(
        catalog.upload(&u.id).await.expect("get"),
        Some(u.clone()),
        "every field"
    );
    assert_eq!(catalog.upload(&UploadId::generate()).await.expect("get"), None);

    // The lock is a lease: held, extended by its holder, taken over only once it lapses.
    assert!(catalog.lock_upload(&u.id, "a", 2_000, 3_000).await.expect("lock"));
    assert!(!catalog.lock_upload(&u.id, "b", 2_500, 3_500).await.expect("held"));
    assert!(catalog.lock_upload(&u.id, "a", 2_900, 4_000).await.expect("extend"));
    assert!(!catalog.lock_upload(&u.id, "b", 3_500, 4_500).await.expect("still held"));
    assert!(
        !catalog
            .advance_upload(&u.id, "b", 9, None, 60_000)
            .await
            .expect("not the holder")
    );
    assert!(
        catalog
            .advance_upload(&u.id, "a", 10, None, 60_000)
            .await
            .expect("advance")
    );
    assert!(
        catalog
            .advance_upload(&u.id, "a", 12, Some(20), 60_000)
            .await
            .expect("late length")
    );
    assert!(
        catalog
            .lock_upload(&u.id, "b", 4_001, 5_000)
            .await
            .expect("lapsed lease")
    );
    assert!(
        !catalog
            .advance_upload(&u.id, "a", 13, None, 60_000)
            .await
            .expect("lost the lock")
    );
    catalog
        .unlock_upload(&u.id, "a")
        .await
        .expect("unlock by a non-holder is a no-op");
    assert!(
        !catalog
            .lock_upload(&u.id, "c", 4_500, 5_500)
            .await
            .expect("b still holds")
    );
    catalog.unlock_upload(&u.id, "b").await.expect("unlock");
    assert!(catalog.lock_upload(&u.id, "c", 4_500, 5_500).await.expect("free again"));
    let got = catalog.upload(&u.id).await.expect("get").expect("exists");
    assert_eq!((got.offset, got.length, got.expires_at), (12, Some(20), 60_000));

    // Locking with the row, and advancing with the unlock, each as one step.
    assert_eq!(
        catalog
            .lock_and_read_upload(&u.id, "d", 5_000, 6_000)
            .await
            .expect("held by c"),
        None
    );
    let read = catalog
        .lock_and_read_upload(&u.id, "c", 5_000, 6_000)
        .await
        .expect("extend and read")
        .expect("c holds it");
    assert_eq!(
        (read.id.clone(), read.offset, read.length),
        (u.id.clone(), 12, Some(20))
    );
    assert!(
        !catalog
            .advance_and_unlock_upload(&u.id, "d", 15, None, 61_000)
            .await
            .expect("not the holder")
    );
    assert!(
        catalog
            .advance_and_unlock_upload(&u.id, "c", 15, None, 61_000)
            .await
            .expect("advance and unlock")
    );
    let got = catalog.upload(&u.id).await.expect("get").expect("exists");
    assert_eq!((got.offset, got.length, got.expires_at), (15, Some(20), 61_000));
    let taken = catalog
        .lock_and_read_upload(&u.id, "d", 5_001, 6_000)
        .await
        .expect("free after the unlock");
    assert_eq!(taken.map(|t| t.offset), Some(15));
    catalog.unlock_upload(&u.id, "d").await.expect("unlock");

    // Expiry, then finishing exactly once (which frees the lock and ends locking).
    let old = upload(10_000);
    catalog.insert_upload(&old).await.expect("insert old");
    let ids = |v: Vec<UploadRecord>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(
        ids(catalog.expired_uploads(10_000, 10).await.expect("expired")),
        vec![old.id.clone()]
    );
    assert_eq!(
        ids(catalog.expired_uploads(70_000, 10).await.expect("expired")),
        vec![old.id.clone(), u.id.clone()]
    );
    assert_eq!(catalog.expired_uploads(70_000, 1).await.expect("expired").len(), 1);
    assert!(
        catalog
            .finish_upload(&old.id, UploadStatus::Aborted)
            .await
            .expect("abort")
    );
    assert!(
        !catalog
            .finish_upload(&old.id, UploadStatus::Completed)
            .await
            .expect("twice")
    );
    assert!(
        catalog
            .finish_upload(&u.id, UploadStatus::Completed)
            .await
            .expect("complete")
    );
    assert!(
        !catalog
            .lock_upload(&u.id, "d", 1, 2)
            .await
            .expect("finished uploads do not lock")
    );
    assert!(catalog.expired_uploads(70_000, 10).await.expect("expired").is_empty());
    assert_eq!(
        catalog.upload(&u.id).await.expect("get").map(|u| u.status),
        Some(UploadStatus::Completed)
    );
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn one(b: &[u8]) -> ByteStream {
    futures_util::stream::iter(vec![Ok(Bytes::copy_from_slice(b))]).boxed()
}

/// Checks a store's multipart uploads (S3's model). Parts but the last are 5 MiB, S3's minimum.
pub async fn multipart_suite(store: &dyn BlobStore) {
    const MIB5: usize = 5 << 20;
    let k = key("conformance/multipart.bin");
    let (p1, p2) = (pattern(MIB5, 1), pattern(1000, 2));
    let h = store.create_multipart(&k).await.expect("create");
    // Out of order, and a part put twice is replaced.
    let second = store
        .put_part(&k, &h, 2, one(&pattern(1000, 9)), 1000)
        .await
        .expect("part 2");
    let second_again = store.put_part(&k, &h, 2, one(&p2), 1000).await.expect("part 2 again");
    assert_ne!(second.etag, second_again.etag, "a new part has a new ETag");
    let first = store.put_part(&k, &h, 1, one(&p1), MIB5 as u64).await.expect("part 1");
    assert_eq!((first.number, first.size), (1, MIB5 as u64));
    let listed = store.list_parts(&k, &h).await.expect("list parts");
    assert_eq!(listed, vec![first.clone(), second_again.clone()]);
    assert!(
        matches!(store.head(&k).await, Err(Error::NotFound(_))),
        "nothing visible before complete"
    );
    let meta = store
        .complete_multipart(&k, &h, &[first, second_again])
        .await
        .expect("complete");
    assert_eq!(meta.size, (MIB5 + 1000) as u64);
    let mut want = p1;
    want.extend_from_slice(&p2);
    assert!(read_all(store, &k, None).await == want, "the parts joined in order");
    assert!(
        store.list_parts(&k, &h).await.map_or(true, |p| p.is_empty()),
        "no part is left after complete"
    );
    store.delete(&k).await.expect("delete");

    // Abort drops every part, and is idempotent.
    let h = store.create_multipart(&k).await.expect("create");
    store.put_part(&k, &h, 1, one(b"abc"), 3).await.expect("part");
    store.abort_multipart(&k, &h).await.expect("abort");
    store.abort_multipart(&k, &h).await.expect("abort again");
    assert!(matches!(store.head(&k).await, Err(Error::NotFound(_))));
}

/// Checks a store's resumable appends (tus), across its minimum part size where it has one.
pub async fn append_suite(store: &dyn BlobStore) {
    let k = key("conformance/appended.bin");
    let data = pattern((6 << 20) + 123, 3);
    let h = store.append_create(&k).await.expect("create");
    let (off, err) = store.append(&k, &h, 0, one(&data[..100])).await.expect("append");
    assert_eq!((off, err.is_none()), (100, true));
    // A body that fails part way keeps what arrived before the error.
    let failing = futures_util::stream::iter(vec![
        Ok(Bytes::copy_from_slice(&data[100..1000])),
        Err(Error::invalid("client went away")),
    ])
    .boxed();
    let (off, err) = store.append(&k, &h, 100, failing).await.expect("append");
    assert_eq!((off, err.is_some()), (1000, true));
    // Bytes stored past the offset the caller recorded are dropped (it never acknowledged them,
    // say it crashed first): the next append at that offset replaces them.
    let (off, _) = store
        .append(&k, &h, 1000, one(&pattern(4000, 77)))
        .await
        .expect("append");
    assert_eq!(off, 5000);
    let (off, _) = store
        .append(&k, &h, 1000, one(&data[1000..(5 << 20) + 7]))
        .await
        .expect("append");
    assert_eq!(off, (5 << 20) + 7);
    let (off, _) = store
        .append(&k, &h, off, one(&data[(5 << 20) + 7..]))
        .await
        .expect("append");
    assert_eq!(off, data.len() as u64);
    assert!(
        matches!(store.head(&k).await, Err(Error::NotFound(_))),
        "nothing visible before finish"
    );
    let meta = store.append_finish(&k, &h, off).await.expect("finish");
    assert_eq!(meta.size, data.len() as u64);
    assert!(read_all(store, &k, None).await == data, "the bytes as appended");
    store.delete(&k).await.expect("delete");

    // Many small appends across the part size (staged pieces joined into a part), one re-sent.
    let data = pattern((6 << 20) + 3, 9);
    let h = store.append_create(&k).await.expect("create");
    let mut off = 0usize;
    for (i, piece) in data.chunks(300 << 10).enumerate() {
        if i == 10 {
            // Bytes written but never acknowledged are replaced by the next append at the offset.
            store
                .append(&k, &h, off as u64, one(&pattern(1000, 3)))
                .await
                .expect("append");
        }
        let (end, err) = store.append(&k, &h, off as u64, one(piece)).await.expect("append");
        assert!(err.is_none());
        off += piece.len();
        assert_eq!(end, off as u64, "offset after piece {i}");
    }
    let meta = store.append_finish(&k, &h, off as u64).await.expect("finish");
    assert_eq!(meta.size, data.len() as u64);
    assert!(
        read_all(store, &k, None).await == data,
        "the bytes of many small appends"
    );
    store.delete(&k).await.expect("delete");

    // Bodies already in memory (`append_bytes`) at aligned and unaligned offsets, in several
    // chunks, mixed with streamed ones; bytes past a recorded offset are dropped as above.
    let data = pattern((1 << 20) + 4321, 5);
    let h = store.append_create(&k).await.expect("create");
    let chunks = |r: std::ops::Range<usize>| {
        let mid = r.start + (r.end - r.start) / 3;
        vec![
            Bytes::copy_from_slice(&data[r.start..mid]),
            Bytes::copy_from_slice(&data[mid..r.end]),
        ]
    };
    let bytes = |off: usize, end: usize| store.append_bytes(&k, &h, off as u64, chunks(off..end));
    assert_eq!(bytes(0, 8192).await.expect("append bytes"), 8192);
    assert_eq!(bytes(8192, 70_001).await.expect("append bytes"), 70_001);
    assert_eq!(bytes(70_001, 200_000).await.expect("append bytes"), 200_000);
    store
        .append_bytes(&k, &h, 200_000, vec![Bytes::from(pattern(9000, 8))])
        .await
        .expect("append bytes");
    let (off, _) = store
        .append(&k, &h, 200_000, one(&data[200_000..600_000]))
        .await
        .expect("append");
    assert_eq!(off, 600_000);
    assert_eq!(
        bytes(600_000, data.len()).await.expect("append bytes"),
        data.len() as u64
    );
    let meta = store.append_finish(&k, &h, data.len() as u64).await.expect("finish");
    assert_eq!(meta.size, data.len() as u64);
    assert!(
        read_all(store, &k, None).await == data,
        "the bytes of appends from memory"
    );
    store.delete(&k).await.expect("delete");

    // Empty, and abort.
    let h = store.append_create(&k).await.expect("create");
    assert_eq!(store.append_finish(&k, &h, 0).await.expect("finish empty").size, 0);
    store.delete(&k).await.expect("delete");
    let h = store.append_create(&k).await.expect("create");
    store.append(&k, &h, 0, one(b"xyz")).await.expect("append");
    store.append_abort(&k, &h).await.expect("abort");
    store.append_abort(&k, &h).await.expect("abort again");
    assert!(
        store.append(&k, &h, 3, one(b"more")).await.is_err(),
        "an aborted upload takes nothing"
    );
    assert!(
        store
            .append_bytes(&k, &h, 3, vec![Bytes::from_static(b"more")])
            .await
            .is_err(),
        "an aborted upload takes nothing from memory either"
    );
    assert!(matches!(store.head(&k).await, Err(Error::NotFound(_))));
}
