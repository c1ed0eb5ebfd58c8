//! S3-style multipart uploads: a pending file whose parts the client PUTs to presigned URLs (or
//! through filedock's own signed URLs on the local store), completed once under the lease.

use super::{MAX_PRESIGN_PARTS, MIN_PART_SIZE, plan_parts};
use crate::blob::{ByteStream, ObjectMeta, PresignPart, PresignedRequest};
use crate::context::Context;
use crate::context::secs_to_ms;
use crate::error::{Error, Result};
use crate::files::NewFile;
use crate::meter::exact_length;
use crate::model::StorageKey;
use crate::model::{FileRecord, UploadId, UploadKind, UploadRecord, UploadStatus};
use crate::uploads::Uploads;

pub(super) fn part_len(u: &UploadRecord, number: u32) -> Result<u64> {
    let size = u.length.unwrap_or(0);
    let count = size.div_ceil(u.part_size.max(1));
    if number == 0 || u64::from(number) > count {
        return Err(Error::invalid(format!("part_number must be between 1 and {count}")));
    }
    let start = u64::from(number - 1) * u.part_size;
    Ok(u.part_size.min(size - start))
}

pub(super) fn bare_etag(e: &str) -> &str {
    e.trim().trim_start_matches("W/").trim_matches('"')
}

impl Uploads {
    /// Starts a multipart upload of a file of `new.size_hint` bytes: a pending file and an
    /// upload whose parts the client PUTs to presigned URLs. Returns the upload and its file.
    pub async fn initiate_multipart(
        &self,
        who: &crate::auth::Principal,
        new: NewFile,
        part_size: Option<u64>,
    ) -> Result<(UploadRecord, FileRecord)> {
        let size = new
            .size_hint
            .ok_or_else(|| Error::invalid("file_size is required for a multipart upload"))?;
        let (part_size, _) = plan_parts(size, part_size)?;
        let policy = new.policy.clone();
        let (u, file) = self
            .new_upload(who, UploadKind::Multipart, &new, &policy, part_size, false)
            .await?;
        self.insert_upload(&u, file.as_ref()).await?;
        let file = file.ok_or_else(|| Error::internal_msg("a multipart upload without its file"))?;
        Ok((u, file))
    }

    /// How many parts an upload has.
    pub fn part_count(u: &UploadRecord) -> u64 {
        u.length.unwrap_or(0).div_ceil(u.part_size.max(1))
    }

    /// Presigned PUTs for some parts of a multipart upload, each with its exact length signed.
    pub async fn presign_parts(
        &self,
        who: &crate::auth::Principal,
        id: &str,
        numbers: &[u32],
    ) -> Result<Vec<(u32, PresignedRequest)>> {
        if numbers.is_empty() || numbers.len() > MAX_PRESIGN_PARTS {
            return Err(Error::invalid(format!(
                "part_numbers must list 1 to {MAX_PRESIGN_PARTS} parts"
            )));
        }
        let u = self.upload_for(who, id, UploadKind::Multipart).await?;
        if u.status != UploadStatus::Active {
            return Err(Error::Conflict("the upload is already complete".into()));
        }
        let backend = self.ctx.backend(Some(&u.backend))?;
        let now = self.ctx.clock.now();
        let ttl = self.ctx.config.upload_ttl_secs.min(backend.max_presign_ttl_secs);
        let expires_at = (now + secs_to_ms(ttl)).min(u.expires_at);
        let expires_in_secs = u64::try_from((expires_at - now) / 1000).unwrap_or(0).max(1);
        numbers
            .iter()
            .map(|&n| {
                let req = PresignPart {
                    key: u.key.clone(),
                    handle: u.handle.clone(),
                    upload_id: u.id.to_string(),
                    number: n,
                    content_length: part_len(&u, n)?,
                    expires_at,
                    expires_in_secs,
                };
                Ok((n, backend.store.presign_part(&req)?))
            })
            .collect()
    }

    /// Completes a multipart upload from the parts the client lists (`(part_number, etag)`, in
    /// ascending order): every listed part must be stored with that ETag, every part but the
    /// last at least 5 MiB, and the total the declared size. The joined file is then checked
    /// like any other. Completing a completed upload returns its file.
    pub async fn complete_multipart(
        &self,
        who: &crate::auth::Principal,
        id: &str,
        parts: &[(u32, String)],
    ) -> Result<FileRecord> {
        let u = self.upload_for(who, id, UploadKind::Multipart).await?;
        let fid = u
            .file_id
            .clone()
            .ok_or_else(|| Error::internal_msg("a multipart upload without its file"))?;
        if u.status == UploadStatus::Completed {
            return self.files.visible_file(who, &fid).await;
        }
        if parts.is_empty() {
            return Err(Error::invalid("parts must list at least one part"));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(Error::invalid(
                "parts must be listed in ascending order of part_number, each once",
            ));
        }
        for (n, _) in parts {
            part_len(&u, *n)?;
        }
        let lease = self.lock(&u.id, false).await?;
        let r = self.complete_locked(&u, parts).await;
        match &r {
            // The client can fix its list and try again.
            Err(Error::Invalid(_)) => self.unlock(lease).await,
            Err(e) if e.is_server_error() => self.unlock(lease).await,
            Err(_) => self.drop_upload(&u).await,
            Ok(_) => {
                self.ctx.catalog.finish_upload(&u.id, UploadStatus::Completed).await?;
            }
        }
        r
    }

    pub(super) async fn complete_locked(&self, u: &UploadRecord, parts: &[(u32, String)]) -> Result<FileRecord> {
        let backend = self.ctx.backend(Some(&u.backend))?;
        let stored = backend.store.list_parts(&u.key, &u.handle).await?;
        let mut chosen = Vec::with_capacity(parts.len());
        let mut total = 0u64;
        for (i, (n, etag)) in parts.iter().enumerate() {
            let p = stored
                .iter()
                .find(|p| p.number == *n)
                .ok_or_else(|| Error::invalid(format!("part {n} has not been uploaded")))?;
            // A store that does not list ETags checks them itself at complete.
            if !p.etag.is_empty() && bare_etag(&p.etag) != bare_etag(etag) {
                return Err(Error::invalid(format!(
                    "part {n}: the ETag {etag} is not the one the part's upload answered"
                )));
            }
            if i + 1 < parts.len() && p.size < MIN_PART_SIZE {
                return Err(Error::invalid(format!(
                    "part {n} is {} bytes; every part but the last must be at least {MIN_PART_SIZE} bytes",
                    p.size
                )));
            }
            total += p.size;
            chosen.push(p.clone());
        }
        let size = u.length.unwrap_or(0);
        if total != size {
            return Err(Error::invalid(format!(
                "the parts listed total {total} bytes, but file_size is {size}"
            )));
        }
        backend.store.complete_multipart(&u.key, &u.handle, &chosen).await?;
        let fid = u
            .file_id
            .as_ref()
            .ok_or_else(|| Error::internal_msg("a multipart upload without its file"))?;
        let rec = self
            .ctx
            .catalog
            .file(fid)
            .await?
            .ok_or_else(|| Error::internal_msg("a multipart upload's file record is missing"))?;
        self.files.complete(rec).await
    }
}

impl Context {
    /// Serves a presigned part PUT to a self-served store (see [`FileService::direct_put`]).
    pub(crate) async fn direct_put_part(
        &self,
        backend: &crate::files::Backend,
        key: &StorageKey,
        upload_id: &str,
        number: u32,
        len: u64,
        body: ByteStream,
    ) -> Result<ObjectMeta> {
        let expected = || Error::Forbidden("no upload is expected at this key".into());
        let id = UploadId::parse(upload_id).map_err(|_| expected())?;
        let u = self.catalog.upload(&id).await?.ok_or_else(expected)?;
        if u.kind != UploadKind::Multipart
            || u.backend != backend.name
            || &u.key != key
            || u.status != UploadStatus::Active
            || u.expires_at <= self.clock.now()
        {
            return Err(expected());
        }
        if part_len(&u, number)? != len {
            return Err(Error::Forbidden("the part's length is not the one signed".into()));
        }
        // A part streaming through this instance is an upload in progress like any other.
        let _slot = self.upload_slot(&u.project)?;
        let p = backend
            .store
            .put_part(key, &u.handle, number, exact_length(body, len), len)
            .await?;
        Ok(ObjectMeta {
            size: p.size,
            etag: p.etag,
            modified: self.clock.now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uploads::{DEFAULT_PART_SIZE, MAX_PARTS};

    #[test]
    pub(super) fn part_plans() {
        assert_eq!(plan_parts(1, None).unwrap(), (DEFAULT_PART_SIZE, 1));
        assert_eq!(plan_parts(1 << 30, None).unwrap(), (DEFAULT_PART_SIZE, 128));
        assert_eq!(plan_parts(1 << 30, Some(128 << 20)).unwrap(), (128 << 20, 8));
        // A file too big for 10,000 default parts gets bigger parts.
        let (p, n) = plan_parts(200 << 30, None).unwrap();
        assert!(n <= MAX_PARTS && p >= MIN_PART_SIZE && p % (1 << 20) == 0, "{p} {n}");
        assert!(plan_parts(0, None).is_err());
        assert!(plan_parts(100 << 20, Some(1 << 20)).is_err(), "parts under 5 MiB");
        assert_eq!(
            plan_parts(1000, Some(1000)).unwrap(),
            (1000, 1),
            "one small part is fine"
        );
        assert!(plan_parts(100 << 30, Some(5 << 20)).is_err(), "over 10,000 parts");
        assert!(plan_parts(10 << 30, Some(6 << 30)).is_err(), "parts over 5 GiB");
    }

    #[test]
    pub(super) fn etags_compare_without_quotes() {
        assert_eq!(bare_etag("\"abc\""), "abc");
        assert_eq!(bare_etag("abc"), "abc");
        assert_eq!(bare_etag(" W/\"abc\" "), "abc");
    }
}
