//! Whether an instance may serve: its deployment identity verified (see [`crate::identity`]),
//! its catalog and backends answering within [`READY_DEADLINE`], its background jobs running.

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::identity::{IdentityState, SETTING, read_marker, write_marker};
use crate::model::StorageKey;

/// How long `/readyz` waits for any one dependency: a probe must answer quickly even when a
/// dependency hangs.
pub const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether this instance may serve, and the repairs `doctor` makes.
#[derive(Debug)]
pub struct Readiness {
    pub(crate) ctx: Arc<Context>,
    identity: crate::identity::Identity,
}

impl Readiness {
    pub(crate) fn new(ctx: Arc<Context>) -> Self {
        Readiness {
            ctx,
            identity: Default::default(),
        }
    }
}

impl Readiness {
    /// Whether this instance can serve: its deployment identity is verified, the catalog and
    /// every backend answer (a read of the catalog and a HEAD of a key that never exists: not
    /// found is an answer), each within [`READY_DEADLINE`], and every background job has
    /// completed a run recently. Names everything that fails, never with a secret.
    pub async fn check_ready(&self) -> Result<()> {
        let catalog = async {
            match tokio::time::timeout(READY_DEADLINE, self.ctx.catalog.credential("readiness-probe")).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "readiness: the catalog does not answer");
                    Some("the catalog does not answer".to_owned())
                }
                Err(_) => Some(format!("the catalog did not answer within {READY_DEADLINE:?}")),
            }
        };
        let probe = StorageKey::new(format!("{}readyz", crate::blob::INTERNAL_PREFIX))?;
        let stores = futures_util::future::join_all(self.ctx.backends.iter().map(|(name, b)| {
            let probe = probe.clone();
            async move {
                match tokio::time::timeout(READY_DEADLINE, b.store.head(&probe)).await {
                    Ok(Ok(_) | Err(Error::NotFound(_))) => None,
                    Ok(Err(e)) => {
                        tracing::warn!(backend = %name, error = %e, "readiness: a backend does not answer");
                        Some(format!("storage backend '{name}' does not answer"))
                    }
                    Err(_) => Some(format!(
                        "storage backend '{name}' did not answer within {READY_DEADLINE:?}"
                    )),
                }
            }
        }));
        let (catalog, stores) = futures_util::future::join(catalog, stores).await;
        let mut problems: Vec<String> = self.refusal().into_iter().collect();
        problems.extend(catalog);
        problems.extend(stores.into_iter().flatten());
        problems.extend(self.ctx.jobs.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Unavailable(problems.join("; ")))
        }
    }

    /// The identity check's current state.
    pub fn identity(&self) -> IdentityState {
        self.identity.state()
    }

    /// Why this instance refuses requests (identity not verified), if it does.
    pub fn refusal(&self) -> Option<String> {
        self.identity.refusal()
    }

    /// Checks the catalog's and every backend's deployment id (see the module doc), writing what
    /// is missing and allowed. Records and returns the outcome: `Unavailable` when a dependency
    /// does not answer (check again later), `Conflict` when they disagree.
    pub async fn verify_identity(&self) -> Result<String> {
        let outcome = self.check_identity().await;
        self.identity.set(match &outcome {
            Ok(id) => IdentityState::Verified(id.clone()),
            Err(Error::Conflict(why)) => IdentityState::Refused(why.clone()),
            Err(e) => IdentityState::Unverified(format!("the deployment identity cannot be checked: {e}")),
        });
        match &outcome {
            Ok(_) => {}
            Err(Error::Conflict(why)) => tracing::error!("refusing to serve: {why}"),
            Err(e) => tracing::warn!(error = %e, "the deployment identity cannot be checked yet"),
        }
        outcome
    }

    async fn check_identity(&self) -> Result<String> {
        let recorded = self.ctx.catalog.setting(SETTING).await?;
        let mut markers = Vec::new();
        for (name, b) in self.ctx.backends() {
            let marker = read_marker(b.store.as_ref())
                .await
                .map_err(|e| Error::Unavailable(format!("storage backend '{name}' does not answer: {e}")))?;
            markers.push((name.to_owned(), marker));
        }
        let fresh = recorded.is_none();
        let id = match recorded {
            Some(id) => id,
            None => {
                // A new catalog (or one from before identities). A backend that belongs to a
                // deployment means this is not that deployment's database.
                if let Some((name, Some(other))) = markers.iter().find(|(_, m)| m.is_some()) {
                    return Err(Error::Conflict(format!(
                        "storage backend '{name}' belongs to deployment {other}, but the catalog has no \
                         deployment id: is this the right database?"
                    )));
                }
                let candidate = uuid::Uuid::now_v7().to_string();
                self.ctx.catalog.init_setting(SETTING, &candidate).await?
            }
        };
        for (name, marker) in markers {
            match marker {
                Some(m) if m == id => {}
                Some(m) => {
                    return Err(Error::Conflict(format!(
                        "storage backend '{name}' belongs to deployment {m}, the catalog to deployment {id}: \
                         the wrong bucket or the wrong database"
                    )));
                }
                None => {
                    // A catalog that had no id yet adopts its backends as they are.
                    if !fresh && self.ctx.catalog.has_files_on(&name).await? {
                        return Err(Error::Conflict(format!(
                            "storage backend '{name}' has no deployment marker, but the catalog of deployment {id} \
                             holds files on it: the backend is empty or not this deployment's (check its bucket, \
                             directory and credentials)"
                        )));
                    }
                    write_marker(self.ctx.backend(Some(&name))?.store.as_ref(), &id)
                        .await
                        .map_err(|e| Error::Unavailable(format!("storage backend '{name}' does not answer: {e}")))?;
                    tracing::info!(backend = %name, deployment = %id, "wrote the deployment marker");
                }
            }
        }
        Ok(id)
    }
}
