//! The local store's own tests (the shared contract is `filedock_core::conformance`).

use super::*;

#[tokio::test]
async fn passes_the_blob_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), None).await.unwrap();
    filedock_core::conformance::blob_store_suite(&store, true).await;
    filedock_core::conformance::multipart_suite(&store).await;
    filedock_core::conformance::append_suite(&store).await;
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

/// A listing that meets objects and directories being removed (a sweep, a delete, the
/// start-up scan of another process) lists what is there and fails on nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_while_objects_vanish_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), None).await.unwrap();
    let objects = dir.path().join("objects");
    for round in 0..5 {
        for d in 0..40 {
            let sub = objects.join(format!("r{round}/d{d}"));
            std::fs::create_dir_all(&sub).unwrap();
            for f in 0..25 {
                std::fs::write(sub.join(format!("f{f}")), b"x").unwrap();
            }
        }
        let root = objects.join(format!("r{round}"));
        let remover = std::thread::spawn(move || std::fs::remove_dir_all(root).unwrap());
        while !remover.is_finished() {
            let listed = store.list("").await;
            assert!(listed.is_ok(), "round {round}: {listed:?}");
        }
        remover.join().unwrap();
        assert!(store.list("").await.unwrap().is_empty());
    }
}
