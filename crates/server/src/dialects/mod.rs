//! The APIs filedock speaks. Each dialect parses its own request shapes, calls core, and renders
//! its own answers and error envelope; none holds a business rule.

pub mod cyberun;
pub mod huawei;
pub mod juniortree;
pub mod native;
pub mod tokenops;
pub mod tus;
pub mod workflows;

use std::collections::BTreeMap;

use bytes::Bytes;
use filedock_core::{Error, UploadPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
        (native::POLICY.to_owned(), UploadPolicy::max(5 * 1024 * MIB)),
        (tokenops::POLICY.to_owned(), UploadPolicy::max(5 * 1024 * MIB)),
        (
            huawei::POLICY.to_owned(),
            UploadPolicy {
                max_size: 60 * MIB,
                allow: allow(
                    "doc docx xls xlsx ppt pptx pdf numbers csv \
                     jpg jpeg png gif webp heic heif bmp pcd tif tiff \
                     wav mp3 flac m4a aac ogg wma mid midi \
                     js cpp py java c txt css javascript html json md",
                ),
                allow_empty: true,
            },
        ),
        (
            juniortree::POLICY.to_owned(),
            UploadPolicy {
                max_size: 100 * MIB,
                allow: allow(
                    "jpg jpeg png gif webp svg pdf doc docx txt md mp3 wav ogg flac mp4 avi mov wmv zip rar 7z",
                ),
                allow_empty: false,
            },
        ),
        (cyberun::POLICY.to_owned(), UploadPolicy::max(500 * MIB)),
        // S3's largest object: multipart and tus are for files of any size.
        (
            native::MULTIPART_POLICY.to_owned(),
            UploadPolicy::max(5 * 1024 * 1024 * MIB),
        ),
        (
            cyberun::MULTIPART_POLICY.to_owned(),
            UploadPolicy::max(5 * 1024 * 1024 * MIB),
        ),
        (tus::POLICY.to_owned(), UploadPolicy::max(5 * 1024 * 1024 * MIB)),
    ])
}

/// A query string, with a 400 for anything malformed.
pub fn query<T: DeserializeOwned>(raw: Option<&str>) -> Result<T, Error> {
    // serde_urlencoded decodes bad UTF-8 lossily (to U+FFFD); a name made of overlong or broken
    // sequences must be refused, not stored with replacement characters.
    if percent_encoding::percent_decode(raw.unwrap_or("").as_bytes())
        .decode_utf8()
        .is_err()
    {
        return Err(Error::invalid("malformed query string: it does not decode to UTF-8"));
    }
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| Error::invalid(format!("malformed query string: {e}")))
}

/// A JSON request body, with a 400 for anything malformed.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    if body.is_empty() {
        return Err(Error::invalid("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("malformed JSON body: {e}")))
}
