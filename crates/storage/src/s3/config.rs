//! An S3 backend's settings: bucket, endpoint, credentials (kept out of logs), the
//! create-only header the store honours, part buffers and timeouts.

use std::path::PathBuf;

use std::time::Duration;

use filedock_core::{Error, Result};

use serde::{Deserialize, Serialize};

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How a backend refuses to overwrite an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CreateOnly {
    /// `If-None-Match: *` (AWS S3, MinIO, Ceph RGW, R2, s3s).
    #[default]
    #[serde(rename = "if-none-match")]
    IfNoneMatch,
    /// `x-cos-forbid-overwrite: true` (Tencent COS).
    #[serde(rename = "x-cos-forbid-overwrite")]
    CosForbidOverwrite,
    /// `x-oss-forbid-overwrite: true` (Alibaba OSS).
    #[serde(rename = "x-oss-forbid-overwrite")]
    OssForbidOverwrite,
    /// No header (the store honours none, e.g. Garage): unique keys only.
    #[serde(rename = "none")]
    None,
}

impl CreateOnly {
    /// The header and value a create-only PUT carries, if any.
    pub fn header(self) -> Option<(&'static str, &'static str)> {
        match self {
            CreateOnly::IfNoneMatch => Some(("If-None-Match", "*")),
            CreateOnly::CosForbidOverwrite => Some(("x-cos-forbid-overwrite", "true")),
            CreateOnly::OssForbidOverwrite => Some(("x-oss-forbid-overwrite", "true")),
            CreateOnly::None => None,
        }
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The endpoint, e.g. `https://s3.us-east-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub bucket: String,
    /// The signing region (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-host (`bucket.endpoint/key`).
    #[serde(default)]
    pub path_style: bool,
    /// The access key id.
    pub access_key_id: String,
    /// The secret key, e.g. from `FILEDOCK_BACKENDS__<NAME>__SECRET_ACCESS_KEY`; or use
    /// `secret_access_key_file`.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// A file holding the secret key (trailing whitespace ignored).
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// The create-only header flavour: `if-none-match` (default), `x-cos-forbid-overwrite`,
    /// `x-oss-forbid-overwrite` or `none`.
    #[serde(default)]
    pub create_only: CreateOnly,
    /// Memory for parts on their way to the bucket, in MiB, shared by all uploads through this
    /// backend (default 48: six 8 MiB buffers). An upload waits, reading nothing more from its
    /// client, while it is spent; each upload holds at most two parts (one sending, one filling).
    #[serde(default = "default_part_buffer_mib")]
    pub part_buffer_mib: u32,
    /// The longest one S3 call may take, in seconds (default 30), including 5 s to connect; for
    /// a read, until its first byte (the bytes then stream as fast as their reader takes them).
    /// A call that runs out is tried once more, then answered 503 `unavailable`: a frozen store
    /// cannot hold requests for ever. A multipart complete gets as long again per GiB.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_part_buffer_mib() -> u32 {
    48
}

fn default_timeout_secs() -> u64 {
    30
}

/// To connect to the store.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest pause within the answer of a call filedock reads whole (multipart calls).
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl S3Config {
    pub(super) fn secret(&self) -> Result<String> {
        match (&self.secret_access_key, &self.secret_access_key_file) {
            (Some(s), _) => Ok(s.0.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|s| s.trim_end().to_owned())
                .map_err(|e| Error::invalid(format!("cannot read secret_access_key_file {}: {e}", f.display()))),
            (None, None) => Err(Error::invalid(
                "an s3 backend needs secret_access_key or secret_access_key_file",
            )),
        }
    }
}
