//! How the dialects are configured: their settings and the upload policy of each way in.

use std::collections::BTreeMap;

use filedock_core::UploadPolicy;
use serde::{Deserialize, Serialize};

/// The upload policy each way in applies, by name (`[policies.<name>]` in the config).
pub mod policy {
    pub const NATIVE: &str = "native";
    pub const CYBERUN: &str = "cyberun";
    pub const TOKENOPS: &str = "tokenops";
    pub const TUS: &str = "tus";
    pub const HUAWEI: &str = "huawei";
    pub const JUNIORTREE: &str = "juniortree";
    pub const MULTIPART: &str = "multipart";
    pub const CYBERUN_MULTIPART: &str = "cyberun-multipart";
}

/// Settings of the vendor dialects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialectsConfig {
    #[serde(default)]
    pub juniortree: JuniortreeConfig,
}

/// Juniortree's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JuniortreeConfig {
    /// Agent names (the `Agent` header) allowed to upload WITHOUT a key, each into a project.
    /// Off (empty) by default. Anyone who can reach filedock and name such an agent can upload
    /// into its project: only for a trusted network.
    #[serde(default)]
    pub trusted_agents: BTreeMap<String, String>,
}

const MIB: u64 = 1024 * 1024;

fn allow(exts: &str) -> Option<Vec<String>> {
    Some(exts.split_whitespace().map(str::to_owned).collect())
}

/// The default upload policies: filedock's own (`native`) and each seed's limits and types.
pub fn default_policies() -> BTreeMap<String, UploadPolicy> {
    BTreeMap::from([
        // S3's largest single PUT.
        (policy::NATIVE.to_owned(), UploadPolicy::max(5 * 1024 * MIB)),
        // TokenOps is an object-store contract: what a PUT was answered 2xx for is kept.
        (
            policy::TOKENOPS.to_owned(),
            UploadPolicy {
                keep_unmatched: true,
                ..UploadPolicy::max(5 * 1024 * MIB)
            },
        ),
        (
            policy::HUAWEI.to_owned(),
            UploadPolicy {
                max_size: 60 * MIB,
                allow: allow(
                    "doc docx xls xlsx ppt pptx pdf numbers csv \
                     jpg jpeg png gif webp heic heif bmp pcd tif tiff \
                     wav mp3 flac m4a aac ogg wma mid midi \
                     js cpp py java c txt css javascript html json md",
                ),
                allow_empty: true,
                keep_unmatched: false,
                scan: None,
            },
        ),
        (
            policy::JUNIORTREE.to_owned(),
            UploadPolicy {
                max_size: 100 * MIB,
                allow: allow(
                    "jpg jpeg png gif webp svg pdf doc docx txt md mp3 wav ogg flac mp4 avi mov wmv zip rar 7z",
                ),
                allow_empty: false,
                keep_unmatched: false,
                scan: None,
            },
        ),
        (policy::CYBERUN.to_owned(), UploadPolicy::max(500 * MIB)),
        // S3's largest object: multipart and tus are for files of any size.
        (policy::MULTIPART.to_owned(), UploadPolicy::max(5 * 1024 * 1024 * MIB)),
        (
            policy::CYBERUN_MULTIPART.to_owned(),
            UploadPolicy::max(5 * 1024 * 1024 * MIB),
        ),
        (policy::TUS.to_owned(), UploadPolicy::max(5 * 1024 * 1024 * MIB)),
    ])
}

/// Settings of the HTTP front that are not a dialect's: CORS, how stable links answer, fetches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub cors: CorsConfig,
    pub links: LinksConfig,
    /// Upload from a URL: the address guard's allowlist and the fetch timeouts (`[fetch]`).
    pub fetch: FetchConfig,
}

/// Which web pages (origins) may call filedock from a browser (`[cors]`).
///
/// Any origin by default: filedock's credentials are keys sent in headers and signatures in
/// URLs, never cookies, so a page on another origin can do nothing its user's key could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// `["*"]` (any origin), exact origins (`"https://chat.example.com"`), or `[]` (no CORS
    /// headers at all).
    pub allowed_origins: Vec<String>,
    /// How long a browser may keep a preflight's answer, in seconds.
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: vec!["*".into()],
            max_age_secs: 86_400,
        }
    }
}

/// How stable links (`/l/…`: TokenOps' `visit_url`, Juniortree's `id`, `POST /v1/files/{id}/links`
/// with a long TTL) answer (`[links]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// `false` (the default): the link serves the bytes itself (200 or 206, like a download).
    /// `true`: it answers 302 to a short-lived presigned URL, so on S3 the bytes go from the
    /// bucket to the client without passing through filedock (clients must follow redirects).
    pub redirect: bool,
}

/// `[fetch]`: how filedock fetches a URL it is handed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Address ranges (`"10.1.0.0/16"`) and host names (`"files.internal"`) opened despite the
    /// guard. Empty by default: no private, loopback or link-local address is ever fetched.
    pub allow: Vec<String>,
    pub connect_timeout_secs: u64,
    /// From the request sent to the answer's head, and between two reads of its body.
    pub first_byte_timeout_secs: u64,
    /// The whole transfer of a synchronous fetch (the request waits that long at most).
    pub sync_timeout_secs: u64,
    /// The whole transfer of an `"async": true` fetch.
    pub async_timeout_secs: u64,
    pub max_redirects: u32,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            allow: Vec::new(),
            connect_timeout_secs: 10,
            first_byte_timeout_secs: 30,
            sync_timeout_secs: 120,
            async_timeout_secs: 3600,
            max_redirects: 5,
        }
    }
}
