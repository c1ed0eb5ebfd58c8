//! An S3-compatible store (AWS S3, MinIO, Ceph RGW, Garage, COS, OBS, OSS, R2, GCS interop).
//! Every call goes through one client (`rest`: `rusty-s3` signs, `reqwest` sends).
//! A body that passes through filedock goes up in one PUT when it is
//! smaller than a part, otherwise as a multipart upload whose parts are copied into buffers of
//! one pool with a memory budget ([`crate::parts`]); every presigned URL is made with `rusty-s3` and
//! points straight at the bucket, with `Content-Length`, `Content-Type` (when given) and the
//! backend's create-only header signed.
//!
//! Create-only is a capability of the store, not an assumption: AWS, MinIO and s3s honour
//! `If-None-Match: *`, COS and OSS their own `x-*-forbid-overwrite`, Garage none. filedock's
//! unique keys and the catalog's unique constraint are the guarantee; the header is defence in
//! depth. A multipart upload has no create-only mode anywhere: it is checked with a HEAD before
//! completing (not atomic).
//!
//! Multipart uploads whose parts clients PUT straight to the bucket (filedock presigns each
//! UploadPart with its exact length) are driven with S3's own calls, signed by `rusty-s3`.
//! Resumable (tus) uploads ride on one S3 multipart upload too: bytes are cut into parts of
//! [`APPEND_PART`]; what is left over after a request is kept as a staging object under
//! `.filedock/append/{key}/{offset}` until enough arrives for a part, so any chunk size works.
//! The multipart upload is made with the first part (its id kept in
//! `.filedock/append/{key}/upload-id`), so a creation costs no S3 call; an upload that ends
//! before a part's worth is published with one PUT.
//! Every step is idempotent on retry: a part or staging object beyond the offset the catalog
//! recorded is ignored and replaced, and staging objects are deleted only once a part the
//! catalog counts covers them.
//!
//! - `config`: the settings; `store`: [`S3Store`] and its `BlobStore` impl;
//! - `sender`: bodies larger than a part; `append`: tus on multipart; `rest`: the client, every S3 call;
//! - `common`: sizes, internal keys and conversions they share.

mod append;
mod common;
mod config;
mod rest;
mod sender;
mod store;

pub use config::{CreateOnly, S3Config, Secret};
pub use store::S3Store;
