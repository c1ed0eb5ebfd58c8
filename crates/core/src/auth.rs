//! Credentials: minting secrets, hashing them, parsing a presented token, and the [`Principal`] a
//! request acts as. A secret is `<prefix><16 hex id><64 hex secret>`: the id finds the row, the
//! secret's SHA-256 is compared in constant time with the stored hash.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{Credential, CredentialKind, ProjectId, WorkspaceId};

/// Who a request acts as, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub credential_id: String,
    pub project: ProjectId,
    /// When set, the principal sees and makes files of this workspace only.
    pub workspace: Option<WorkspaceId>,
    pub kind: CredentialKind,
}

impl Principal {
    /// A principal for a credential row.
    pub fn of(c: &Credential) -> Self {
        Principal {
            credential_id: c.id.clone(),
            project: c.project.clone(),
            workspace: c.workspace.clone(),
            kind: c.kind,
        }
    }
}

/// Lowercase hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Fills a buffer from the OS random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::internal_msg(format!("random source failed: {e}")))?;
    Ok(buf)
}

/// A newly minted secret: the full token to show once, and its parts.
pub struct MintedSecret {
    pub token: String,
    pub id: String,
    pub secret_hash: String,
}

/// Mints a token for a kind.
pub fn mint_secret(kind: CredentialKind) -> Result<MintedSecret> {
    let id = hex::encode(random_bytes::<8>()?);
    let secret = hex::encode(random_bytes::<32>()?);
    Ok(MintedSecret {
        token: format!("{}{id}{secret}", kind.prefix()),
        secret_hash: hash_secret(&secret),
        id,
    })
}

/// A presented token, split (not yet checked against the catalog).
#[derive(Debug)]
pub struct PresentedToken<'a> {
    pub kind: CredentialKind,
    pub id: &'a str,
    pub secret: &'a str,
}

/// Splits a presented token; anything malformed is unauthenticated.
pub fn parse_token(token: &str) -> Result<PresentedToken<'_>> {
    let bad = || Error::Unauthenticated("invalid credential".into());
    let kind = CredentialKind::ALL
        .into_iter()
        .find(|k| token.starts_with(k.prefix()))
        .ok_or_else(bad)?;
    let rest = &token[kind.prefix().len()..];
    if rest.len() != 80 || !rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    let (id, secret) = rest.split_at(16);
    Ok(PresentedToken { kind, id, secret })
}

/// Checks a presented token against its stored row: same kind, not revoked, hash equal (constant
/// time).
pub fn verify(presented: &PresentedToken<'_>, stored: &Credential) -> Result<Principal> {
    let bad = || Error::Unauthenticated("invalid credential".into());
    let computed = hash_secret(presented.secret);
    let equal: bool = computed.as_bytes().ct_eq(stored.secret_hash.as_bytes()).into();
    if !equal || stored.kind != presented.kind || stored.id != presented.id {
        return Err(bad());
    }
    if stored.revoked_at.is_some() {
        return Err(Error::Unauthenticated("credential revoked".into()));
    }
    Ok(Principal::of(stored))
}

/// Making, listing, revoking and checking credentials. Needs only the catalog, so the
/// `filedock keys` commands can use it beside a running server.
#[derive(Debug, Clone)]
pub struct Credentials {
    catalog: Arc<dyn Catalog>,
    clock: Arc<dyn Clock>,
    cache: Arc<Mutex<Cache>>,
}

/// Credential rows read earlier, valid while the catalog's credentials version is the one they
/// were read under (see [`Catalog::credentials_version`]). Only rows that exist are kept, and
/// each request is still checked against its row (hash, kind, revocation), so the cache saves a
/// database read and decides nothing.
#[derive(Debug, Default)]
struct Cache {
    version: Option<u128>,
    rows: HashMap<String, Credential>,
}

/// Rows kept at most; past that the cache starts again empty.
const CACHED_CREDENTIALS: usize = 4096;

impl Cache {
    /// The row for an id, if it was read under `version` (a new version empties the cache).
    fn get(&mut self, version: u128, id: &str) -> Option<Credential> {
        if self.version != Some(version) {
            self.rows.clear();
            self.version = Some(version);
        }
        self.rows.get(id).cloned()
    }

    /// Keeps a row read under `version`, unless the version moved on meanwhile.
    fn put(&mut self, version: u128, row: &Credential) {
        if self.version == Some(version) {
            if self.rows.len() >= CACHED_CREDENTIALS {
                self.rows.clear();
            }
            self.rows.insert(row.id.clone(), row.clone());
        }
    }
}

impl Credentials {
    /// Credentials kept in a catalog.
    pub fn new(catalog: Arc<dyn Catalog>, clock: Arc<dyn Clock>) -> Self {
        Credentials {
            catalog,
            clock,
            cache: Arc::default(),
        }
    }

    /// Finds the principal of a presented bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let presented = parse_token(token)?;
        // Read before the row: a change committed after this read moves the version on, and
        // the row is then not kept.
        let version = self.catalog.credentials_version();
        let cached = version.and_then(|v| self.cache().get(v, presented.id));
        let stored = match cached {
            Some(row) => row,
            None => {
                let row = self
                    .catalog
                    .credential(presented.id)
                    .await?
                    .ok_or_else(|| Error::Unauthenticated("invalid credential".into()))?;
                if let Some(v) = version {
                    self.cache().put(v, &row);
                }
                row
            }
        };
        verify(&presented, &stored)
    }

    /// Whether the credential `id` still exists and is not revoked (a long request, such as a
    /// task claim that waits, asks again before it hands anything out).
    pub async fn still_active(&self, id: &str) -> Result<()> {
        let version = self.catalog.credentials_version();
        let row = match version.and_then(|v| self.cache().get(v, id)) {
            Some(row) => Some(row),
            None => self.catalog.credential(id).await?,
        };
        match row {
            Some(c) if c.revoked_at.is_none() => Ok(()),
            _ => Err(Error::Unauthenticated("the credential was revoked".into())),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes a credential; returns its row and the secret, which is shown once and never stored.
    pub async fn create(
        &self,
        project: ProjectId,
        workspace: Option<WorkspaceId>,
        kind: CredentialKind,
        name: Option<String>,
    ) -> Result<(Credential, String)> {
        let minted = mint_secret(kind)?;
        let c = Credential {
            id: minted.id,
            project,
            workspace,
            kind,
            name,
            secret_hash: minted.secret_hash,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        self.catalog.insert_credential(&c).await?;
        Ok((c, minted.token))
    }

    /// Lists credentials (never their secrets).
    pub async fn list(&self, project: Option<&ProjectId>) -> Result<Vec<Credential>> {
        self.catalog.list_credentials(project).await
    }

    /// Revokes a credential; it stops working at once.
    pub async fn revoke(&self, id: &str) -> Result<()> {
        if self.catalog.revoke_credential(id, self.clock.now()).await? {
            Ok(())
        } else {
            Err(Error::not_found(format!("no active key with id '{id}'")))
        }
    }
}

/// Key management over the API: an admin (`ad-`) key manages the keys of its own project (and
/// of its workspace only, if it has one); no other kind may.
impl Credentials {
    fn admin_of(who: &Principal) -> Result<()> {
        if who.kind == CredentialKind::Admin {
            Ok(())
        } else {
            Err(Error::Forbidden("managing keys needs an admin (ad-) key".into()))
        }
    }

    /// Creates a key in the admin's project; its secret is in the answer only.
    pub async fn create_as(
        &self,
        who: &Principal,
        workspace: Option<WorkspaceId>,
        kind: CredentialKind,
        name: Option<String>,
    ) -> Result<(Credential, String)> {
        Self::admin_of(who)?;
        let workspace = match (&who.workspace, workspace) {
            (Some(own), Some(w)) if *own != w => {
                return Err(Error::Forbidden(format!("this key manages workspace '{own}' only")));
            }
            (Some(own), _) => Some(own.clone()),
            (None, w) => w,
        };
        if let Some(n) = &name
            && (n.chars().count() > 128 || n.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "a key's name is at most 128 characters, none of them control characters",
            ));
        }
        self.create(who.project.clone(), workspace, kind, name).await
    }

    /// The keys of the admin's project (and workspace), never their secrets.
    pub async fn list_as(&self, who: &Principal) -> Result<Vec<Credential>> {
        Self::admin_of(who)?;
        let mut keys = self.list(Some(&who.project)).await?;
        if let Some(own) = &who.workspace {
            keys.retain(|c| c.workspace.as_ref() == Some(own));
        }
        Ok(keys)
    }

    /// Revokes a key of the admin's project (another project's key is not found).
    pub async fn revoke_as(&self, who: &Principal, id: &str) -> Result<()> {
        Self::admin_of(who)?;
        let mine = self
            .catalog
            .credential(id)
            .await?
            .is_some_and(|c| c.project == who.project && (who.workspace.is_none() || c.workspace == who.workspace));
        if !mine {
            return Err(Error::not_found(format!("no active key with id '{id}'")));
        }
        self.revoke(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(m: &MintedSecret, kind: CredentialKind) -> Credential {
        Credential {
            id: m.id.clone(),
            project: ProjectId::new("p").unwrap(),
            workspace: None,
            kind,
            name: None,
            secret_hash: m.secret_hash.clone(),
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn mint_parse_verify() {
        let m = mint_secret(CredentialKind::Integration).unwrap();
        assert!(m.token.starts_with("sk-"));
        let p = parse_token(&m.token).unwrap();
        assert_eq!(p.id, m.id);
        let stored = row(&m, CredentialKind::Integration);
        assert_eq!(verify(&p, &stored).unwrap().project.as_str(), "p");

        let mut revoked = stored.clone();
        revoked.revoked_at = Some(1);
        assert!(matches!(verify(&p, &revoked), Err(Error::Unauthenticated(_))));

        let mut tampered = m.token.clone();
        tampered.pop();
        tampered.push(if m.token.ends_with('0') { '1' } else { '0' });
        assert!(verify(&parse_token(&tampered).unwrap(), &stored).is_err());

        let other_kind = m.token.replacen("sk-", "dk-", 1);
        assert!(verify(&parse_token(&other_kind).unwrap(), &stored).is_err());
    }

    #[test]
    fn malformed_tokens() {
        for t in [
            "",
            "sk-",
            "sk-xyz",
            "xx-0123456789abcdef",
            &format!("sk-{}", "A".repeat(80)),
        ] {
            assert!(parse_token(t).is_err(), "{t}");
        }
    }
}
