//! The APIs filedock speaks. Each dialect parses its own request shapes, calls core, and renders
//! its own answers and error envelope; none holds a business rule.

pub mod cyberun;
pub mod huawei;
pub mod juniortree;
pub mod native;
pub mod tokenops;

use std::collections::BTreeMap;

use bytes::Bytes;
use filedock_core::Error;
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

/// A JSON request body, with a 400 for anything malformed.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Error> {
    if body.is_empty() {
        return Err(Error::invalid("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("malformed JSON body: {e}")))
}
