//! The catalog's contract for work in flight: tasks, webhook deliveries, leases, uploads.

use super::fixtures::*;

/// One function on purpose: a suite reads as the contract's rules in order, each an assertion.
pub(super) async fn task_rules(catalog: &dyn Catalog) {
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

pub(super) async fn delivery_rules(catalog: &dyn Catalog) {
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

pub(super) async fn lease_rules(catalog: &dyn Catalog) {
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

    // Live leases by prefix: ended ones and other names are not counted; `_` is no wildcard.
    for (name, until) in [
        ("inst:a", 10_000),
        ("inst:b", 10_000),
        ("inst:c", 6_000),
        ("instXb", 10_000),
    ] {
        assert!(catalog.try_lease(name, name, 5_000, until).await.expect("take"));
    }
    assert!(catalog.try_lease("in_t:d", "d", 5_000, 10_000).await.expect("take"));
    assert_eq!(catalog.live_leases("inst:", 7_000).await.expect("count"), 2);
    assert_eq!(catalog.live_leases("inst:", 5_500).await.expect("count"), 3);
    assert_eq!(catalog.live_leases("in_t:", 7_000).await.expect("count"), 1);
    assert_eq!(catalog.live_leases("nothing:", 7_000).await.expect("count"), 0);
}

/// One function on purpose: a suite reads as the contract's rules in order, each an assertion.
pub(super) async fn upload_rules(catalog: &dyn Catalog) {
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
