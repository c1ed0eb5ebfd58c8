//! The catalog's contract for files, credentials, settings, usage and concurrent creation.

use super::fixtures::*;
use super::housekeeping::{apply_rules, fail_and_idempotency_rules, intent_rules, prune_rules};
use super::work::{delivery_rules, lease_rules, task_rules, upload_rules};

/// Checks a [`Catalog`] against its contract. The catalog should be empty.
/// One function on purpose: a suite reads as the contract's rules in order, each an assertion.
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
        status: FileStatus::Ready,
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
    apply_rules(catalog).await;
    intent_rules(catalog).await;
    fail_and_idempotency_rules(catalog).await;
    prune_rules(catalog).await;
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
