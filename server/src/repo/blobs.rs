//! Blobs: uploads, the move to permanent storage once a committed record
//! references them, and the sweeps that remove what nothing uses.
//!
//! The life of a blob:
//! 1. `uploadBlob` streams the body into the [`BlobStore`]'s temporary area
//!    (never holding it in memory), sniffs its MIME type from the first bytes
//!    and records a temporary [`BlobRecord`].
//! 2. A write whose records reference the blob checks it exists
//!    ([`BlobManager::check_refs`]); once the commit is stored, the blob is
//!    made permanent ([`BlobManager::promote`]).
//! 3. When the last record referencing a blob is deleted or updated away,
//!    the blob is deleted ([`BlobManager::delete_orphans`]).
//! 4. A background sweep ([`BlobManager::sweep`]) removes temporary uploads
//!    no record took up within the grace period, finishes promotions a crash
//!    interrupted, and deletes orphans a crash left behind.
//!
//! Rows go before bytes: a blob's row is deleted (conditionally, in one
//! statement that also checks no record references it) before its bytes,
//! so a blob is never listed without its bytes being readable, and a
//! reference added concurrently keeps the blob.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aurora_core::PdsContext;
use aurora_core::cid::Cid;
use aurora_core::store::{BlobError, BlobRecord, ByteStream, StoreError};
use aurora_core::syntax::Did;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;

/// How many bytes of an upload MIME sniffing looks at.
const SNIFF_BYTES: usize = 512;
/// Rows one sweep step handles at a time.
const SWEEP_BATCH: usize = 500;

/// Why an upload failed. Nothing was kept.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The body is larger than the configured limit.
    #[error("blob is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Reading the body failed (the client went away).
    #[error("reading the upload failed: {0}")]
    Input(std::io::Error),
    /// Storage failed.
    #[error(transparent)]
    Blob(BlobError),
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Blob bookkeeping over a [`PdsContext`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobManager {
    ctx: PdsContext,
    max_bytes: u64,
    grace: Duration,
}

impl BlobManager {
    /// Blobs of `ctx`, with uploads limited to `max_bytes` and unused
    /// uploads kept for `grace`.
    pub fn new(ctx: PdsContext, max_bytes: u64, grace: Duration) -> Self {
        Self {
            ctx,
            max_bytes,
            grace,
        }
    }

    /// The largest accepted upload.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Stores an upload of `did`'s as a temporary blob. The MIME type is
    /// sniffed from the content; when that finds nothing, the declared
    /// `content_type` is kept (as the reference PDS does), else
    /// `application/octet-stream`.
    pub async fn upload(
        &self,
        did: &Did,
        content_type: Option<&str>,
        body: ByteStream,
    ) -> Result<BlobRecord, UploadError> {
        let limit = self.max_bytes;
        let head = Arc::new(Mutex::new(Vec::with_capacity(SNIFF_BYTES)));
        let too_large = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counted = {
            let head = head.clone();
            let too_large = too_large.clone();
            let mut seen: u64 = 0;
            body.map(move |chunk| {
                let chunk = chunk?;
                seen += chunk.len() as u64;
                if seen > limit {
                    too_large.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(std::io::Error::other("blob too large"));
                }
                let mut head = head.lock().unwrap_or_else(PoisonError::into_inner);
                if head.len() < SNIFF_BYTES {
                    let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                Ok::<Bytes, std::io::Error>(chunk)
            })
            .boxed()
        };
        let temp = match self.ctx.blobs.put_temp(counted).await {
            Ok(t) => t,
            Err(_) if too_large.load(std::sync::atomic::Ordering::Relaxed) => {
                return Err(UploadError::TooLarge { limit });
            }
            Err(BlobError::Input(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(UploadError::TooLarge { limit });
            }
            Err(BlobError::Input(e)) => return Err(UploadError::Input(e)),
            Err(e) => return Err(UploadError::Blob(e)),
        };
        let mime_type = {
            let head = head.lock().unwrap_or_else(PoisonError::into_inner);
            sniff_mime(&head, content_type)
        };
        let record = BlobRecord {
            did: did.clone(),
            cid: temp.cid,
            mime_type,
            size: temp.size,
            temp_key: Some(temp.key.clone()),
            created_at: Utc::now(),
            takedown_ref: None,
        };
        let stored = match self.ctx.repos.put_blob(record).await {
            Ok(stored) => stored,
            Err(e) => {
                self.drop_temp(&temp.key).await;
                return Err(e.into());
            }
        };
        if stored.temp_key.as_deref() != Some(temp.key.as_str()) {
            // The account has this blob already: keep the stored copy.
            self.drop_temp(&temp.key).await;
        }
        // A record may reference the blob already (an imported repo whose
        // blobs are uploaded afterwards): then it is permanent at once.
        if stored.temp_key.is_some() && self.ctx.repos.is_blob_referenced(did, &stored.cid).await? {
            self.promote(did, &[stored.cid]).await;
            return Ok(BlobRecord {
                temp_key: None,
                ..stored
            });
        }
        Ok(stored)
    }

    /// The first of `cids` that `did` has not uploaded, if any.
    pub async fn first_missing(&self, did: &Did, cids: &[Cid]) -> Result<Option<Cid>, StoreError> {
        for cid in cids {
            if self.ctx.repos.get_blob(did, cid).await?.is_none() {
                return Ok(Some(*cid));
            }
        }
        Ok(None)
    }

    /// Makes `did`'s blobs `cids` permanent after a commit that references
    /// them was stored. Failures are logged: the sweep finishes the job.
    pub async fn promote(&self, did: &Did, cids: &[Cid]) {
        for cid in cids {
            if let Err(e) = self.promote_one(did, cid).await {
                tracing::warn!(%did, %cid, error = %e, "making a blob permanent failed; the sweep retries");
            }
        }
    }

    async fn promote_one(
        &self,
        did: &Did,
        cid: &Cid,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let Some(blob) = self.ctx.repos.get_blob(did, cid).await? else {
            return Ok(());
        };
        if let Some(key) = &blob.temp_key {
            match self.ctx.blobs.make_permanent(did, key, cid).await {
                Ok(()) => {}
                // Moved by a concurrent promotion already.
                Err(BlobError::TempNotFound(_)) if self.ctx.blobs.contains(did, cid).await? => {}
                Err(e) => return Err(e.into()),
            }
            self.ctx.repos.mark_blob_permanent(did, cid).await?;
        }
        Ok(())
    }

    /// Deletes `did`'s blobs that no record references any more (after a
    /// commit that deleted or updated records). Returns how many.
    pub async fn delete_orphans(&self, did: &Did) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let orphans = self
                .ctx
                .repos
                .orphaned_blobs(Some(did), SWEEP_BATCH)
                .await?;
            let n = orphans.len();
            deleted += self.delete_unused(orphans).await?;
            if n < SWEEP_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// Deletes each blob whose row is still as listed and unreferenced,
    /// row first, then bytes. Returns how many.
    async fn delete_unused(&self, blobs: Vec<BlobRecord>) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let now = Utc::now();
        for blob in blobs {
            let cutoff = if blob.temp_key.is_some() {
                now - chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX)
            } else {
                now
            };
            if !self
                .ctx
                .repos
                .delete_blob_if_unused(&blob.did, &blob.cid, blob.temp_key.as_deref(), cutoff)
                .await?
            {
                continue;
            }
            deleted += 1;
            let bytes = match &blob.temp_key {
                Some(key) => self.ctx.blobs.delete_temp(key).await,
                None => self.ctx.blobs.delete(&blob.did, &blob.cid).await,
            };
            if let Err(e) = bytes {
                // The row is gone, so nothing serves it; the bytes are only
                // wasted space.
                tracing::warn!(did = %blob.did, cid = %blob.cid, error = %e, "deleting blob bytes failed");
            }
        }
        Ok(deleted)
    }

    async fn drop_temp(&self, key: &str) {
        if let Err(e) = self.ctx.blobs.delete_temp(key).await {
            tracing::warn!(error = %e, "deleting a temporary upload failed");
        }
    }

    /// One pass of the background sweep; returns what it did.
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        // Promotions a crash interrupted.
        for blob in self.ctx.repos.unpromoted_blobs(SWEEP_BATCH).await? {
            self.promote(&blob.did, &[blob.cid]).await;
            report.promoted += 1;
        }
        // Uploads never used within the grace period.
        let cutoff =
            Utc::now() - chrono::Duration::from_std(self.grace).unwrap_or(chrono::Duration::MAX);
        loop {
            let stale = self.ctx.repos.stale_temp_blobs(cutoff, SWEEP_BATCH).await?;
            let n = stale.len();
            report.stale_uploads += self.delete_unused(stale).await?;
            if n < SWEEP_BATCH {
                break;
            }
        }
        // Orphans whose deletion a crash interrupted.
        loop {
            let orphans = self.ctx.repos.orphaned_blobs(None, SWEEP_BATCH).await?;
            let n = orphans.len();
            report.orphans += self.delete_unused(orphans).await?;
            if n < SWEEP_BATCH {
                break;
            }
        }
        // Temporary files without a row (an upload cut off by a crash
        // between storing the bytes and the row).
        report.temp_files = self
            .ctx
            .blobs
            .delete_temp_older_than(self.grace)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "deleting old temporary uploads failed");
                0
            });
        Ok(report)
    }

    /// Runs [`sweep`](Self::sweep) every `every`, forever.
    pub async fn run_sweeper(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.sweep().await {
                Ok(r) if r == SweepReport::default() => {}
                Ok(r) => tracing::info!(?r, "blob sweep"),
                Err(e) => tracing::warn!(error = %e, "blob sweep failed"),
            }
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Blobs made permanent that a crash had left temporary.
    pub promoted: u64,
    /// Unused uploads deleted.
    pub stale_uploads: u64,
    /// Unreferenced permanent blobs deleted.
    pub orphans: u64,
    /// Temporary files without a row deleted.
    pub temp_files: u64,
}

/// The MIME type of content starting with `head`: sniffed, else the
/// declared one (when it is a plausible MIME type), else
/// `application/octet-stream`.
pub fn sniff_mime(head: &[u8], declared: Option<&str>) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    match declared.map(str::trim) {
        Some(t) if is_mime(t) && t != "*/*" => t.to_ascii_lowercase(),
        _ => "application/octet-stream".to_owned(),
    }
}

fn is_mime(t: &str) -> bool {
    let essence = t.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-*".contains(&b))
    };
    token(kind) && token(sub) && t.len() <= 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_prefers_content_over_declared_type() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff_mime(png, Some("text/plain")), "image/png");
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
        assert_eq!(sniff_mime(jpeg, None), "image/jpeg");
        assert_eq!(sniff_mime(b"hello", Some("text/plain")), "text/plain");
        assert_eq!(
            sniff_mime(b"hello", Some("not a mime")),
            "application/octet-stream"
        );
        assert_eq!(
            sniff_mime(b"hello", Some("*/*")),
            "application/octet-stream"
        );
        assert_eq!(sniff_mime(b"hello", None), "application/octet-stream");
    }
}
