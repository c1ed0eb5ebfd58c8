//! The blob store's contract: whole objects, multipart uploads, appends.

use super::fixtures::*;

/// Checks a [`BlobStore`] against its contract. The store should be empty under `conformance/`.
/// `atomic_create`: the store promises that of two racing create-only puts exactly one wins (the
/// local disk and memory do; s3s-fs, the S3 test server, checks `If-None-Match` non-atomically).
/// One function on purpose: a suite reads as the contract's rules in order, each an assertion.
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

    // A copy (to a key with spaces, `+` and non-ASCII) reads back the same; the source stays.
    let from = key(".filedock/incoming/conformance/ü n+i.bin");
    let to = key("conformance/copied/ü n+i.bin");
    store
        .put(&from, body(&[b"copied ", b"bytes"]), PutOptions::default())
        .await
        .expect("put the source");
    let copied = store.copy(&from, &to).await.expect("copy");
    assert_eq!(copied.size, 12);
    assert_eq!(read_all(store, &to, None).await, b"copied bytes");
    assert_eq!(read_all(store, &from, None).await, b"copied bytes");
    assert!(matches!(
        store
            .copy(&key("conformance/no-such-source"), &key("conformance/x"))
            .await,
        Err(Error::NotFound(_))
    ));
    store.delete(&from).await.expect("delete");
    store.delete(&to).await.expect("delete");

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

    // Many at once: present and missing keys alike are gone, nothing reported failed.
    let many: Vec<StorageKey> = (0..5).map(|i| key(&format!("conformance/many/{i}"))).collect();
    for k in &many[..3] {
        store.put(k, body(&[b"x"]), PutOptions::default()).await.expect("put");
    }
    let failed = store.delete_many(&many).await.expect("delete many");
    assert!(failed.is_empty(), "{failed:?}");
    assert!(store.list("conformance/many/").await.expect("list").is_empty());
    assert!(store.delete_many(&[]).await.expect("delete none").is_empty());

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
/// One function on purpose: a suite reads as the contract's rules in order, each an assertion.
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
