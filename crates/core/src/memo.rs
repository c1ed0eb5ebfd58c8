//! What an instance remembers of the uploads it has seen, to spare catalog reads and second
//! passes over bytes: `FactsMemory` (who may write an upload, under which policy) and
//! `RunningDigests` (a tus upload's SHA-256 so far). Both are bounded, and only ever a
//! shortcut: whatever is not remembered is read again.

use std::collections::HashMap;

use sha2::Sha256;

use crate::model::{Concat, UploadId, UploadKind, UploadRecord};

/// What never changes about an upload: whose it is, its kind, whether it is a tus final, and
/// its file's policy. An instance keeps them for the uploads it has made or read, so a PATCH
/// checks who may write and under which policy without two catalog reads; the upload's state
/// (status, offset, expiry) is still read with its lock, fresh each time.
#[derive(Debug, Clone)]
pub(crate) struct UploadFacts {
    pub(crate) kind: UploadKind,
    pub(crate) project: crate::model::ProjectId,
    pub(crate) workspace: Option<crate::model::WorkspaceId>,
    pub(crate) final_concat: bool,
    pub(crate) policy: String,
}

impl UploadFacts {
    pub(crate) fn visible_to(&self, who: &crate::auth::Principal, kind: UploadKind) -> bool {
        self.kind == kind && self.project == who.project && (who.workspace.is_none() || self.workspace == who.workspace)
    }
}

/// Facts of the uploads this instance has seen, at most [`FACTS_REMEMBERED`] (then it starts
/// again empty).
#[derive(Debug, Default)]
pub(crate) struct FactsMemory(std::sync::Mutex<HashMap<UploadId, UploadFacts>>);

const FACTS_REMEMBERED: usize = 10_000;

/// The SHA-256 of a tus upload's bytes so far, for uploads whose every PATCH since offset 0
/// came to this instance: their completion then need not read the file back (a client that
/// sends 8 MiB PATCHes would otherwise have its whole file read and hashed a second time). An
/// entry is used only by a PATCH at exactly its offset, under the upload's lock; anything else
/// (another instance went on, a restart, a PATCH cut short) falls back to reading the file.
/// At most [`DIGESTS_REMEMBERED`] (then it starts again empty).
#[derive(Debug, Default)]
pub(crate) struct RunningDigests(std::sync::Mutex<HashMap<UploadId, (u64, Sha256)>>);

const DIGESTS_REMEMBERED: usize = 4_096;

impl RunningDigests {
    /// The digest of bytes `0..offset`, if this instance saw all of them.
    pub(crate) fn at(&self, id: &UploadId, offset: u64) -> Option<Sha256> {
        let all = self.0.lock().ok()?;
        all.get(id).filter(|(end, _)| *end == offset).map(|(_, h)| h.clone())
    }

    pub(crate) fn put(&self, id: &UploadId, end: u64, digest: Sha256) {
        if let Ok(mut all) = self.0.lock() {
            if all.len() >= DIGESTS_REMEMBERED {
                all.clear();
            }
            all.insert(id.clone(), (end, digest));
        }
    }

    pub(crate) fn forget(&self, id: &UploadId) {
        if let Ok(mut all) = self.0.lock() {
            all.remove(id);
        }
    }
}

impl FactsMemory {
    pub(crate) fn get(&self, id: &UploadId) -> Option<UploadFacts> {
        self.0.lock().ok()?.get(id).cloned()
    }

    pub(crate) fn put(&self, u: &UploadRecord, policy: &str) -> UploadFacts {
        let facts = UploadFacts {
            kind: u.kind,
            project: u.project.clone(),
            workspace: u.workspace.clone(),
            final_concat: matches!(u.concat, Some(Concat::Final(_))),
            policy: policy.to_owned(),
        };
        if let Ok(mut all) = self.0.lock() {
            if all.len() >= FACTS_REMEMBERED {
                all.clear();
            }
            all.insert(u.id.clone(), facts.clone());
        }
        facts
    }
}
