//! The deployment's identity: one id kept in the catalog (setting `deployment_id`) and in a
//! marker object in every backend (`.filedock/deployment`). An instance that finds them
//! disagreeing — pointed at the wrong bucket, directory or database — refuses to serve and says
//! why, instead of "repairing" a catalog against storage it does not own.
//!
//! The rules, checked at start and again until they hold:
//! - the catalog has no id yet (a new deployment, or one from before identities): the backends
//!   must not carry another deployment's marker; each gets this one's;
//! - a backend carries another id: refused (wrong bucket or wrong database);
//! - a backend carries no marker while the catalog holds files on it: refused (an empty or
//!   wrong bucket); without files there, it gets the marker (a newly configured backend).
//!
//! Not a security boundary: it guards against mistakes, not against someone who edits both.

use std::sync::RwLock;

use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crate::blob::{BlobStore, INTERNAL_PREFIX, PutOptions};
use crate::error::{Error, Result};
use crate::model::StorageKey;

/// The catalog setting that holds the id.
pub const SETTING: &str = "deployment_id";

/// The marker's key in every backend.
pub fn marker_key() -> StorageKey {
    StorageKey::new(format!("{INTERNAL_PREFIX}deployment")).expect("a valid constant key")
}

/// Where the check stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityState {
    /// Not checked yet, or a dependency did not answer: the reason.
    Unverified(String),
    /// The catalog and every backend agree on this id.
    Verified(String),
    /// They disagree: the reason (a configuration error, not a passing fault).
    Refused(String),
}

/// An instance's view of the identity check.
#[derive(Debug)]
pub struct Identity(RwLock<IdentityState>);

impl Default for Identity {
    fn default() -> Self {
        Identity(RwLock::new(IdentityState::Unverified(
            "the deployment identity has not been checked yet".into(),
        )))
    }
}

impl Identity {
    /// The current state.
    pub fn state(&self) -> IdentityState {
        match self.0.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn set(&self, to: IdentityState) {
        match self.0.write() {
            Ok(mut s) => *s = to,
            Err(p) => *p.into_inner() = to,
        }
    }

    /// Why this instance may not serve yet, if it may not.
    pub fn refusal(&self) -> Option<String> {
        match self.state() {
            IdentityState::Verified(_) => None,
            IdentityState::Unverified(why) | IdentityState::Refused(why) => Some(why),
        }
    }
}

pub(crate) async fn read_marker(store: &dyn BlobStore) -> Result<Option<String>> {
    match store.get(&marker_key(), None).await {
        Ok(got) => {
            let mut text = Vec::new();
            let mut body = got.body;
            while let Some(chunk) = body.next().await {
                text.extend_from_slice(&chunk?);
            }
            Ok(Some(String::from_utf8_lossy(&text).trim().to_owned()))
        }
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) async fn write_marker(store: &dyn BlobStore, id: &str) -> Result<()> {
    let body = Bytes::from(format!("{id}\n"));
    store
        .put(
            &marker_key(),
            stream::once(async move { Ok(body) }).boxed(),
            PutOptions { create_only: false },
        )
        .await?;
    Ok(())
}
