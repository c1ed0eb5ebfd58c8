//! What the suites share: bodies, keys and records to insert.

pub(super) use bytes::Bytes;
pub(super) use futures_util::StreamExt;

pub(super) use crate::blob::{BlobStore, ByteStream, PutOptions};
pub(super) use crate::catalog::{Catalog, Completion, FileQuery};
pub(super) use crate::error::Error;
pub(super) use crate::model::{
    Class, Concat, Credential, CredentialKind, DeliveryRecord, DeliveryStatus, FileId, FileName, FileRecord,
    FileStatus, ProjectId, StorageKey, TaskId, TaskRecord, TaskStatus, UploadId, UploadKind, UploadRecord,
    UploadStatus, WorkspaceId,
};
pub(super) use crate::range::ByteRange;

pub(super) fn body(chunks: &[&[u8]]) -> ByteStream {
    let v: Vec<_> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(v).boxed()
}

pub(super) fn failing_body() -> ByteStream {
    futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(Error::invalid("client went away")),
    ])
    .boxed()
}

pub(super) async fn read_all(store: &dyn BlobStore, key: &StorageKey, range: Option<ByteRange>) -> Vec<u8> {
    let got = store.get(key, range).await.expect("get");
    let mut out = Vec::new();
    let mut s = got.body;
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

pub(super) fn key(s: &str) -> StorageKey {
    StorageKey::new(s).expect("key")
}

pub(super) fn project(s: &str) -> ProjectId {
    ProjectId::new(s).expect("project")
}

pub(super) fn credential(id: &str, p: &str, kind: CredentialKind) -> Credential {
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

pub(super) fn file(p: &str, ws: Option<&str>, key_: &str, status: FileStatus) -> FileRecord {
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
        origin: Some("https://example.com/dir/ünï code.txt".into()),
        reason: None,
    }
}

pub(super) fn task(p: &str, ws: Option<&str>, created_at: i64) -> TaskRecord {
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

pub(super) fn delivery(p: &str, next_at: i64) -> DeliveryRecord {
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

pub(super) fn upload(expires_at: i64) -> UploadRecord {
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
        concat: Some(Concat::Partial),
        status: UploadStatus::Active,
        created_at: 1_000,
        expires_at,
    }
}

pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub(super) fn one(b: &[u8]) -> ByteStream {
    futures_util::stream::iter(vec![Ok(Bytes::copy_from_slice(b))]).boxed()
}
