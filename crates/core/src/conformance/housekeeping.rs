//! The catalog's contract for changes made with their events (`apply`) and for pruning what
//! ended (`prune`).

use super::fixtures::*;
use crate::catalog::{Change, Completion, Idempotent, Intent, Prune};

/// A change and its deliveries: both when the change takes effect, neither when it does not.
/// One function on purpose: a suite reads as the contract's rules in order, each an assertion.
pub(super) async fn apply_rules(catalog: &dyn Catalog) {
    let delivered = |p: &'static str| async move {
        catalog
            .deliveries(&project(p), 100)
            .await
            .expect("deliveries")
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>()
    };
    // A ready file inserted with its event.
    let ready = file("epsilon", None, "epsilon/ready", FileStatus::Ready);
    let d1 = delivery("epsilon", 1);
    assert!(
        catalog
            .apply(Change::InsertFile(&ready), std::slice::from_ref(&d1))
            .await
            .expect("insert")
    );
    assert!(catalog.file(&ready.id).await.expect("get").is_some());
    assert_eq!(delivered("epsilon").await, vec![d1.id.clone()]);

    // Completing: once, with its two deliveries; the loser records none.
    let pending = file("epsilon", None, "epsilon/pending", FileStatus::Pending);
    catalog.insert_file(&pending).await.expect("insert pending");
    let c = Completion {
        status: FileStatus::Ready,
        size: 3,
        sha256: Some("cd".repeat(32)),
        detected_type: "text/plain".into(),
        completed_at: 2_000,
    };
    let (d2, d3, d4) = (delivery("epsilon", 2), delivery("epsilon", 3), delivery("epsilon", 4));
    assert!(
        catalog
            .apply(Change::CompleteFile(&pending.id, &c), &[d2.clone(), d3.clone()])
            .await
            .expect("complete")
    );
    assert!(
        !catalog
            .apply(Change::CompleteFile(&pending.id, &c), std::slice::from_ref(&d4))
            .await
            .expect("complete twice")
    );
    let ids = delivered("epsilon").await;
    assert!(
        ids.contains(&d2.id) && ids.contains(&d3.id) && !ids.contains(&d4.id),
        "{ids:?}"
    );
    assert_eq!(
        catalog.file(&pending.id).await.expect("get").map(|f| f.status),
        Some(FileStatus::Ready)
    );

    // Deleting: once.
    let (d5, d6) = (delivery("epsilon", 5), delivery("epsilon", 6));
    assert!(
        catalog
            .apply(Change::DeleteFile(&ready.id, 3_000), std::slice::from_ref(&d5))
            .await
            .expect("delete")
    );
    assert!(
        !catalog
            .apply(Change::DeleteFile(&ready.id, 3_001), std::slice::from_ref(&d6))
            .await
            .expect("delete twice")
    );
    let ids = delivered("epsilon").await;
    assert!(ids.contains(&d5.id) && !ids.contains(&d6.id));

    // A task finished by its runner (a stranger's finish changes nothing and records nothing).
    let t = task("epsilon", None, 100);
    catalog.insert_task(&t).await.expect("insert task");
    assert!(catalog.claim_task(&t.id, "runner", 200, 10_000).await.expect("claim"));
    let finish = |runner: &'static str| Change::FinishTask {
        id: &t.id,
        runner,
        status: TaskStatus::Succeeded,
        outputs: &[],
        error: None,
        at: 300,
    };
    let (d7, d8) = (delivery("epsilon", 7), delivery("epsilon", 8));
    assert!(
        !catalog
            .apply(finish("stranger"), std::slice::from_ref(&d7))
            .await
            .expect("not its runner")
    );
    assert!(
        catalog
            .apply(finish("runner"), std::slice::from_ref(&d8))
            .await
            .expect("finish")
    );
    let ids = delivered("epsilon").await;
    assert!(!ids.contains(&d7.id) && ids.contains(&d8.id));
    assert_eq!(
        catalog.task(&t.id).await.expect("get").map(|t| t.status),
        Some(TaskStatus::Succeeded)
    );

    // A lapsed task failed by the sweep.
    let lapsed = task("epsilon", None, 100);
    catalog.insert_task(&lapsed).await.expect("insert task");
    assert!(
        catalog
            .claim_task(&lapsed.id, "runner", 200, 1_000)
            .await
            .expect("claim")
    );
    let d9 = delivery("epsilon", 9);
    let fail = Change::FailLapsedTask {
        id: &lapsed.id,
        now: 2_000,
        reason: "silent",
    };
    assert!(
        catalog
            .apply(fail, std::slice::from_ref(&d9))
            .await
            .expect("fail lapsed")
    );
    assert!(delivered("epsilon").await.contains(&d9.id));

    // Many deleted at once (a sweep's batch): each live one with its deliveries; one deleted
    // already is left out, and its deliveries are not recorded.
    let batch: Vec<FileRecord> = (0..3)
        .map(|i| file("epsilon", None, &format!("epsilon/batch{i}"), FileStatus::Pending))
        .collect();
    for f in &batch {
        catalog.insert_file(f).await.expect("insert");
    }
    assert!(catalog.delete_file(&batch[1].id, 3_500).await.expect("delete one"));
    let ds: Vec<DeliveryRecord> = (10..13).map(|i| delivery("epsilon", i)).collect();
    let asked: Vec<(FileId, Vec<DeliveryRecord>)> = batch
        .iter()
        .zip(&ds)
        .map(|(f, d)| (f.id.clone(), vec![d.clone()]))
        .collect();
    let mut deleted = catalog.delete_files(&asked, 4_000).await.expect("delete files");
    deleted.sort();
    let mut expected = vec![batch[0].id.clone(), batch[2].id.clone()];
    expected.sort();
    assert_eq!(deleted, expected);
    for f in &batch {
        let got = catalog.file(&f.id).await.expect("get").expect("a tombstone");
        assert_eq!(got.status, FileStatus::Deleted);
    }
    assert_eq!(
        catalog
            .file(&batch[0].id)
            .await
            .expect("get")
            .and_then(|f| f.deleted_at),
        Some(4_000)
    );
    assert_eq!(
        catalog
            .file(&batch[1].id)
            .await
            .expect("get")
            .and_then(|f| f.deleted_at),
        Some(3_500)
    );
    let ids = delivered("epsilon").await;
    assert!(ids.contains(&ds[0].id) && !ids.contains(&ds[1].id) && ids.contains(&ds[2].id));
    assert!(catalog.delete_files(&[], 4_000).await.expect("none").is_empty());
}

/// Intents: one per (backend, key), replaced by a second; found by key and by age, oldest
/// first; removed idempotently.
pub(super) async fn intent_rules(catalog: &dyn Catalog) {
    let intent = |k: &str, at: i64| Intent {
        backend: "b".into(),
        key: key(k),
        instance: "0123456789abcdef".into(),
        created_at: at,
    };
    let (a, b) = (intent("eta/ü n+i.bin", 30), intent("eta/b", 10));
    catalog.insert_intent(&a).await.expect("insert");
    catalog.insert_intent(&b).await.expect("insert");
    let mut again = a.clone();
    again.created_at = 20;
    catalog.insert_intent(&again).await.expect("replace");
    assert_eq!(catalog.intent("b", &a.key).await.expect("get"), Some(again.clone()));
    assert_eq!(catalog.intent("other", &a.key).await.expect("get"), None);
    assert_eq!(
        catalog.intents(25, 10).await.expect("list"),
        vec![b.clone(), again.clone()]
    );
    assert_eq!(catalog.intents(15, 10).await.expect("list"), vec![b.clone()]);
    assert_eq!(catalog.intents(25, 1).await.expect("list").len(), 1);
    catalog.delete_intent("b", &a.key).await.expect("delete");
    catalog.delete_intent("b", &a.key).await.expect("delete twice");
    catalog.delete_intent("b", &b.key).await.expect("delete");
    assert!(catalog.intents(i64::MAX, 10).await.expect("list").is_empty());
}

/// A failed file keeps its reason; only a pending file fails. Idempotency records: one per
/// project and key, replaced only as they were read, settled only by their instance while
/// running, released only while running, pruned once expired. One function on purpose: the
/// contract's rules in order, each an assertion.
pub(super) async fn fail_and_idempotency_rules(catalog: &dyn Catalog) {
    let pending = file("iota", None, "iota/fetched.bin", FileStatus::Pending);
    catalog.insert_file(&pending).await.expect("insert");
    let fail = |at| Change::FailFile {
        id: &pending.id,
        reason: "too_large: over 1 MiB",
        at,
    };
    assert!(catalog.apply(fail(50), &[]).await.expect("fail"));
    assert!(
        !catalog.apply(fail(60), &[]).await.expect("fail twice"),
        "only a pending file fails"
    );
    let got = catalog.file(&pending.id).await.expect("get").expect("row");
    assert_eq!(got.status, FileStatus::Failed);
    assert_eq!(got.reason.as_deref(), Some("too_large: over 1 MiB"));
    assert_eq!(got.completed_at, Some(50));
    assert_eq!(got.origin, pending.origin, "the origin round-trips");

    let rec = Idempotent {
        project: project("iota"),
        key: "k-ü".into(),
        request: "POST /v1/files?name=a.txt".into(),
        body_sha256: None,
        instance: "i1".into(),
        done: false,
        status: None,
        headers: None,
        body: None,
        created_at: 100,
        expires_at: 1_000,
    };
    assert!(catalog.insert_idempotent(&rec).await.expect("insert"));
    assert!(!catalog.insert_idempotent(&rec).await.expect("insert twice"));
    let other_project = Idempotent {
        project: project("kappa"),
        ..rec.clone()
    };
    assert!(
        catalog
            .insert_idempotent(&other_project)
            .await
            .expect("another project")
    );
    assert_eq!(
        catalog.idempotent(&rec.project, &rec.key).await.expect("get"),
        Some(rec.clone())
    );
    assert_eq!(catalog.idempotent(&rec.project, "nope").await.expect("get"), None);
    // Settled by another instance: no; by its own: yes, once.
    let done = Idempotent {
        done: true,
        status: Some(201),
        headers: Some(r#"[["content-type","application/json"]]"#.into()),
        body: Some("e30=".into()),
        body_sha256: Some("ab".repeat(32)),
        ..rec.clone()
    };
    assert!(
        !catalog
            .settle_idempotent(&Idempotent {
                instance: "i2".into(),
                ..done.clone()
            })
            .await
            .expect("settle")
    );
    assert!(catalog.settle_idempotent(&done).await.expect("settle"));
    assert!(
        !catalog.settle_idempotent(&done).await.expect("settle twice"),
        "only a running record settles"
    );
    assert_eq!(
        catalog.idempotent(&rec.project, &rec.key).await.expect("get"),
        Some(done.clone())
    );
    // A done record is not released; a replace must name what it replaces.
    catalog
        .release_idempotent(&rec.project, &rec.key, "i1")
        .await
        .expect("release");
    assert!(catalog.idempotent(&rec.project, &rec.key).await.expect("get").is_some());
    let fresh = Idempotent {
        instance: "i3".into(),
        created_at: 2_000,
        expires_at: 3_000,
        ..rec.clone()
    };
    assert!(
        !catalog
            .replace_idempotent(&rec_at(&rec, 99), &fresh)
            .await
            .expect("stale replace")
    );
    assert!(catalog.replace_idempotent(&done, &fresh).await.expect("replace"));
    assert_eq!(
        catalog.idempotent(&rec.project, &rec.key).await.expect("get"),
        Some(fresh.clone())
    );
    // A running record is released by its instance only.
    catalog
        .release_idempotent(&rec.project, &rec.key, "i1")
        .await
        .expect("release");
    assert!(catalog.idempotent(&rec.project, &rec.key).await.expect("get").is_some());
    catalog
        .release_idempotent(&rec.project, &rec.key, "i3")
        .await
        .expect("release");
    assert_eq!(catalog.idempotent(&rec.project, &rec.key).await.expect("get"), None);
    // Pruned once expired (the other project's record, expiring at 1,000).
    assert_eq!(catalog.prune(Prune::Idempotency, 1_000, 10).await.expect("prune"), 0);
    assert_eq!(catalog.prune(Prune::Idempotency, 1_001, 10).await.expect("prune"), 1);
    assert_eq!(
        catalog.idempotent(&project("kappa"), &rec.key).await.expect("get"),
        None
    );
}

fn rec_at(r: &Idempotent, created_at: i64) -> Idempotent {
    Idempotent {
        created_at,
        ..r.clone()
    }
}

/// Pruning removes what ended before the cut-off and nothing live, in batches of at most the
/// limit. One function on purpose: the contract's rules in order, each an assertion.
pub(super) async fn prune_rules(catalog: &dyn Catalog) {
    const CUT: i64 = 1_000_000;
    // Files: two old tombstones, one recent tombstone, one old ready file.
    let mut old = Vec::new();
    for i in 0..2 {
        let f = file("delta", None, &format!("delta/old{i}"), FileStatus::Ready);
        catalog.insert_file(&f).await.expect("insert");
        assert!(catalog.delete_file(&f.id, CUT - 10).await.expect("delete"));
        old.push(f.id);
    }
    let recent = file("delta", None, "delta/recent", FileStatus::Ready);
    catalog.insert_file(&recent).await.expect("insert");
    assert!(catalog.delete_file(&recent.id, CUT + 10).await.expect("delete"));
    let live = file("delta", None, "delta/live", FileStatus::Ready);
    catalog.insert_file(&live).await.expect("insert");
    assert_eq!(
        catalog.prune(Prune::Tombstones, CUT, 1).await.expect("prune"),
        1,
        "a batch's limit"
    );
    while catalog.prune(Prune::Tombstones, CUT, 100).await.expect("prune") > 0 {}
    for id in &old {
        assert_eq!(catalog.file(id).await.expect("get"), None, "an old tombstone is gone");
    }
    assert!(
        catalog.file(&recent.id).await.expect("get").is_some(),
        "a recent tombstone stays"
    );
    assert!(
        catalog.file(&live.id).await.expect("get").is_some(),
        "a live file stays"
    );

    // Deliveries: settled ones made before the cut-off go; pending ones stay, however old.
    let mut settled = delivery("delta", 1);
    settled.created_at = CUT - 5;
    let mut waiting = delivery("delta", 1);
    waiting.created_at = CUT - 5;
    let mut new = delivery("delta", 1);
    new.created_at = CUT + 5;
    for d in [&settled, &waiting, &new] {
        catalog.insert_delivery(d).await.expect("insert delivery");
    }
    for d in [&settled, &new] {
        catalog
            .settle_delivery(&d.id, DeliveryStatus::Delivered, 1, 0, None, CUT)
            .await
            .expect("settle");
    }
    while catalog.prune(Prune::Deliveries, CUT, 100).await.expect("prune") > 0 {}
    let left: Vec<String> = catalog
        .deliveries(&project("delta"), 100)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(
        !left.contains(&settled.id) && left.contains(&waiting.id) && left.contains(&new.id),
        "{left:?}"
    );

    // Tasks: finished before the cut-off go; queued and running ones stay.
    let done = task("delta", None, 1);
    let queued = task("delta", None, 1);
    let running = task("delta", None, 1);
    for t in [&done, &queued, &running] {
        catalog.insert_task(t).await.expect("insert task");
    }
    assert!(catalog.claim_task(&done.id, "r", 2, CUT * 10).await.expect("claim"));
    assert!(
        catalog
            .finish_task(&done.id, "r", TaskStatus::Failed, &[], Some("x"), CUT - 1)
            .await
            .expect("finish")
    );
    assert!(catalog.claim_task(&running.id, "r", 2, CUT * 10).await.expect("claim"));
    while catalog.prune(Prune::Tasks, CUT, 100).await.expect("prune") > 0 {}
    assert_eq!(catalog.task(&done.id).await.expect("get"), None);
    assert!(catalog.task(&queued.id).await.expect("get").is_some());
    assert!(catalog.task(&running.id).await.expect("get").is_some());

    // Uploads: finished and expired before the cut-off go; active ones stay, however old.
    let ended = upload(CUT - 1);
    let active = upload(CUT - 1);
    for u in [&ended, &active] {
        catalog.insert_upload(u).await.expect("insert upload");
    }
    assert!(
        catalog
            .finish_upload(&ended.id, UploadStatus::Aborted)
            .await
            .expect("abort")
    );
    while catalog.prune(Prune::Uploads, CUT, 100).await.expect("prune") > 0 {}
    assert_eq!(catalog.upload(&ended.id).await.expect("get"), None);
    assert!(catalog.upload(&active.id).await.expect("get").is_some());
}

/// A change made with its event is all or nothing on a real engine: while `refuse(true)` makes
/// the engine refuse every delivery insert (a trigger each engine's test installs; what a crash
/// between the two statements would leave), completing, inserting or deleting a file fails
/// whole and changes nothing; after `refuse(false)`, the same calls succeed with their events.
pub async fn change_and_event_fault_suite<F, Fut>(catalog: &dyn Catalog, refuse: F)
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let pending = file("zeta", None, "zeta/pending", FileStatus::Pending);
    catalog.insert_file(&pending).await.expect("insert pending");
    let ready = file("zeta", None, "zeta/ready", FileStatus::Ready);
    let c = Completion {
        status: FileStatus::Ready,
        size: 3,
        sha256: Some("ef".repeat(32)),
        detected_type: "text/plain".into(),
        completed_at: 2_000,
    };
    refuse(true).await;
    let d = delivery("zeta", 1);
    assert!(
        catalog
            .apply(Change::CompleteFile(&pending.id, &c), std::slice::from_ref(&d))
            .await
            .is_err()
    );
    assert!(
        catalog
            .apply(Change::InsertFile(&ready), std::slice::from_ref(&d))
            .await
            .is_err()
    );
    assert_eq!(
        catalog.file(&pending.id).await.expect("get").map(|f| f.status),
        Some(FileStatus::Pending),
        "the completion was undone with its event"
    );
    assert_eq!(
        catalog.file(&ready.id).await.expect("get"),
        None,
        "the insert was undone"
    );
    assert!(catalog.deliveries(&project("zeta"), 10).await.expect("list").is_empty());
    refuse(false).await;
    assert!(
        catalog
            .apply(Change::CompleteFile(&pending.id, &c), std::slice::from_ref(&d))
            .await
            .expect("complete")
    );
    let d2 = delivery("zeta", 2);
    assert!(
        catalog
            .apply(Change::InsertFile(&ready), std::slice::from_ref(&d2))
            .await
            .expect("insert")
    );
    let ids: Vec<String> = catalog
        .deliveries(&project("zeta"), 10)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert!(ids.contains(&d.id) && ids.contains(&d2.id));
}
