//! filedock-core: the domain of a file intake service — files, uploads, credentials, limits, type
//! checks and signed links — and the two traits its backends implement ([`BlobStore`] for bytes,
//! [`Catalog`] for records).
//!
//! It is not an HTTP server and knows no vendor dialect: those live in `filedock-server`, and call
//! [`FileService`], which is the one way files come in and go out. It knows no concrete backend
//! either (those live in `filedock-storage` and `filedock-catalog`); `memory` holds in-memory ones
//! for tests, and `conformance` the suites every backend passes (both behind the `testing`
//! feature: production builds do not contain them).

pub mod access;
mod arrival;
pub mod auth;
pub mod blob;
pub mod blocking;
pub mod catalog;
pub mod clock;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod context;
pub mod disposition;
pub mod doctor;
pub mod error;
pub mod event_shapes;
pub mod events;
pub mod fetched;
pub mod files;
pub mod idempotency;
pub mod identity;
pub mod incoming;
pub mod jobs;
pub mod limits;
pub mod link;
pub mod memo;
#[cfg(feature = "testing")]
pub mod memory;
pub mod meter;
pub mod model;
pub mod names;
pub mod policy;
pub mod quarantine;
pub mod range;
pub mod readiness;
pub mod retention;
pub mod scan;
pub mod service;
pub mod settings;
pub mod sniff;
pub mod tasks;
pub mod text;
pub mod uploads;
pub mod workflow;

pub use auth::{Credentials, Principal, hash_secret};
pub use blob::{
    BlobStore, ByteStream, GetResult, ObjectMeta, Part, PresignGet, PresignPart, PresignPut, PresignedRequest,
    PutOptions,
};
pub use catalog::Catalog;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, Result};
pub use events::{DeliverySettings, EventType, Webhook};
pub use files::{
    Backend, FileServiceConfig, KeyLayout, NewFile, PresignUpload, ProjectSettings, RetentionOverride, Staged,
};
pub use link::UrlSigner;
pub use model::{
    Class, Credential, CredentialKind, DeliveryRecord, DeliveryStatus, FileId, FileName, FileRecord, FileStatus,
    ProjectId, StorageKey, TaskId, TaskRecord, TaskStatus, UploadId, UploadKind, UploadRecord, UploadStatus,
    WorkspaceId,
};
pub use policy::UploadPolicy;
pub use range::ByteRange;
pub use service::FileService;
pub use settings::PruneSettings;
pub use tasks::{ClaimedTask, TaskOutput, TaskSettings, WorkflowRef};
pub use uploads::{Checksum, ChecksumAlgorithm, TusCreate};
pub use workflow::{ParamType, ParameterSpec, Workflow};
