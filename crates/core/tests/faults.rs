//! Faults the core must survive without losing or inventing a file, on the in-memory backends
//! (the real engines are driven by `crates/cli/tests/faults.rs`): a catalog write whose reply is
//! lost, and instances pointed at another deployment's storage or catalog.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use filedock_core::doctor::Repair;
use filedock_core::files::{FileServiceConfig, Retention};
use filedock_core::identity::IdentityState;
use filedock_core::memory::{MemoryBlobStore, MemoryCatalog};
use filedock_core::{
    Backend, BlobStore, Catalog, Clock, CredentialKind, Error, FileName, FileService, FileStatus, NewFile, Principal,
    ProjectId, SystemClock, UploadPolicy, UrlSigner,
};
use futures_util::StreamExt;

fn service(catalog: Arc<dyn Catalog>, store: Arc<dyn BlobStore>) -> FileService {
    let backend = Backend {
        name: "s3".into(),
        store,
        scheme: "s3".into(),
        host: "bucket".into(),
        regions: Vec::new(),
        max_presign_ttl_secs: 3600,
    };
    let config = FileServiceConfig {
        default_backend: "s3".into(),
        policies: BTreeMap::from([("native".to_owned(), UploadPolicy::max(1 << 20))]),
        upload_ttl_secs: 900,
        unfinished_upload_ttl_secs: 86_400,
        link_ttl_secs: 3600,
        max_link_ttl_secs: 86_400,
        retention: Retention::default(),
        public_url: "http://filedock.test".into(),
        projects: Default::default(),
        workflows: Vec::new(),
        tasks: Default::default(),
        deliveries: Default::default(),
        prune: Default::default(),
        limits: Default::default(),
        quarantine: Default::default(),
    };
    let signer = Arc::new(UrlSigner::new(vec![1u8; 32]).unwrap());
    FileService::new(
        catalog,
        vec![backend],
        signer,
        Arc::new(SystemClock) as Arc<dyn Clock>,
        config,
    )
    .unwrap()
}

async fn principal(files: &FileService) -> Principal {
    let (_, token) = files
        .credentials()
        .create(ProjectId::new("demo").unwrap(), None, CredentialKind::Integration, None)
        .await
        .unwrap();
    files.authenticate(&token).await.unwrap()
}

async fn upload(files: &FileService, who: &Principal, name: &str) -> filedock_core::Result<filedock_core::FileRecord> {
    let body = futures_util::stream::once(async { Ok(Bytes::from_static(b"hello, bytes")) }).boxed();
    files
        .upload(who, NewFile::named(FileName::new(name).unwrap()), body)
        .await
}

#[tokio::test]
async fn an_insert_whose_reply_was_lost_keeps_its_bytes() {
    let catalog = Arc::new(MemoryCatalog::new());
    let store: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new(None));
    let files = service(catalog.clone(), store.clone());
    files.verify_identity().await.unwrap();
    let who = principal(&files).await;

    catalog.lose_next_insert_reply();
    let rec = upload(&files, &who, "a.txt")
        .await
        .expect("the row was written: the upload succeeded");
    let row = catalog.file(&rec.id).await.unwrap().expect("row");
    assert_eq!(row.status, FileStatus::Ready);
    let meta = store.head(&row.key).await.expect("a ready row has its bytes");
    assert_eq!(Some(meta.size), row.size);
}

#[tokio::test]
async fn an_instance_on_an_empty_bucket_refuses_and_changes_nothing() {
    let catalog = Arc::new(MemoryCatalog::new());
    let right: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new(None));
    let fleet = service(catalog.clone(), right.clone());
    fleet.verify_identity().await.unwrap();
    let who = principal(&fleet).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(upload(&fleet, &who, &format!("f{i}.txt")).await.unwrap().id);
    }

    // Another instance: the same catalog, an empty bucket.
    let wrong = service(catalog.clone(), Arc::new(MemoryBlobStore::new(None)));
    match wrong.verify_identity().await {
        Err(Error::Conflict(why)) => assert!(why.contains("'s3'") && why.contains("no deployment marker"), "{why}"),
        other => panic!("not refused: {other:?}"),
    }
    assert!(matches!(wrong.identity(), IdentityState::Refused(_)));
    let ready = wrong.check_ready().await.unwrap_err().to_string();
    assert!(ready.contains("'s3'"), "readiness names the backend: {ready}");
    // No repair runs on its view, not even the orphans-only scan.
    assert!(matches!(
        wrong.doctor(Repair::Orphans, 0).await,
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(wrong.doctor(Repair::All, 0).await, Err(Error::Unavailable(_))));
    for id in &ids {
        assert_eq!(
            catalog.file(id).await.unwrap().unwrap().status,
            FileStatus::Ready,
            "{id} untouched"
        );
    }
    // The fleet still agrees with itself.
    assert!(fleet.verify_identity().await.is_ok());
    assert!(fleet.doctor(Repair::None, 0).await.unwrap().is_clean());
}

#[tokio::test]
async fn an_instance_on_another_database_refuses() {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new(None));
    let fleet = service(Arc::new(MemoryCatalog::new()), store.clone());
    fleet.verify_identity().await.unwrap();
    let who = principal(&fleet).await;
    upload(&fleet, &who, "kept.txt").await.unwrap();

    // A new, empty database beside the fleet's bucket: its scan would call every object an orphan.
    let other_db = Arc::new(MemoryCatalog::new());
    let wrong = service(other_db.clone(), store.clone());
    match wrong.verify_identity().await {
        Err(Error::Conflict(why)) => assert!(why.contains("right database"), "{why}"),
        other => panic!("not refused: {other:?}"),
    }
    assert!(matches!(
        wrong.doctor(Repair::Orphans, 0).await,
        Err(Error::Unavailable(_))
    ));
    assert_eq!(
        store.list("").await.unwrap().len(),
        2,
        "the object and the marker are still there"
    );
}

#[tokio::test]
async fn a_start_up_scan_never_tombstones_a_file_whose_object_it_does_not_see() {
    let catalog = Arc::new(MemoryCatalog::new());
    let store: Arc<dyn BlobStore> = Arc::new(MemoryBlobStore::new(None));
    let files = service(catalog.clone(), store.clone());
    files.verify_identity().await.unwrap();
    let who = principal(&files).await;
    let rec = upload(&files, &who, "gone.txt").await.unwrap();
    store.delete(&rec.key).await.unwrap();

    let scan = files.doctor(Repair::Orphans, 0).await.unwrap();
    assert_eq!(scan.missing.len(), 1, "reported");
    assert_eq!(
        catalog.file(&rec.id).await.unwrap().unwrap().status,
        FileStatus::Ready,
        "not repaired"
    );
    let fix = files.doctor(Repair::All, 0).await.unwrap();
    assert_eq!(fix.missing.len(), 1);
    assert_eq!(
        catalog.file(&rec.id).await.unwrap().unwrap().status,
        FileStatus::Deleted,
        "`doctor --fix` repairs when asked"
    );
}
