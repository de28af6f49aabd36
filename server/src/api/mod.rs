//! The PDS's own XRPC methods, as a `Plugin`: one
//! module per lexicon namespace (`com.atproto.server`, ...), plus the
//! `/.well-known/atproto-did` answer for hosted handles.

mod app_bsky_actor;
mod com_atproto_admin;
mod com_atproto_identity;
mod com_atproto_repo;
mod com_atproto_server;
pub mod well_known;

use std::sync::Arc;
use std::time::Duration;

use aurora_core::{BackgroundTask, PdsContext, Plugin, XrpcRoute};

use crate::accounts::{AccountDeps, AccountManager};
use crate::repo::{BlobManager, BlockCache, RepoWriter};

/// Blob limits of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobSettings {
    /// Largest accepted upload, in bytes.
    pub max_bytes: u64,
    /// How long an upload no record references is kept.
    pub temp_grace: Duration,
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            max_bytes: 100 * 1024 * 1024,
            temp_grace: Duration::from_secs(3600),
        }
    }
}

/// The built-in PDS API.
#[derive(Debug, Clone)]
pub struct PdsApi {
    deps: Arc<AccountDeps>,
    blobs: BlobSettings,
    block_cache_bytes: u64,
}

impl PdsApi {
    /// The API over accounts managed with `deps`.
    pub fn new(deps: Arc<AccountDeps>) -> Self {
        Self {
            deps,
            blobs: BlobSettings::default(),
            block_cache_bytes: crate::repo::block_cache::DEFAULT_CAPACITY_BYTES,
        }
    }

    /// Sets the blob limits.
    #[must_use]
    pub fn with_blob_settings(mut self, blobs: BlobSettings) -> Self {
        self.blobs = blobs;
        self
    }

    /// Sets the size of the writers' cache of repo blocks.
    #[must_use]
    pub fn with_block_cache_bytes(mut self, bytes: u64) -> Self {
        self.block_cache_bytes = bytes;
        self
    }

    /// Blob bookkeeping over `ctx`.
    pub fn blob_manager(&self, ctx: &PdsContext) -> BlobManager {
        BlobManager::new(ctx.clone(), self.blobs.max_bytes, self.blobs.temp_grace)
    }

    /// The account manager the API's handlers use, over `ctx`.
    pub fn account_manager(&self, ctx: &PdsContext) -> AccountManager {
        AccountManager::new(ctx.clone(), self.deps.clone())
    }
}

impl Plugin for PdsApi {
    fn name(&self) -> &'static str {
        "pds-api"
    }

    fn routes(&self, ctx: &PdsContext) -> Vec<XrpcRoute> {
        let accounts = self.account_manager(ctx);
        let mut routes = com_atproto_server::routes(ctx, &accounts);
        routes.extend(com_atproto_identity::routes(&accounts));
        routes.extend(com_atproto_admin::routes(&accounts));
        let writer = RepoWriter::new(
            ctx.clone(),
            BlockCache::new(self.block_cache_bytes),
            self.blob_manager(ctx),
        );
        routes.extend(com_atproto_repo::routes(&accounts, &writer));
        routes.extend(app_bsky_actor::routes(&accounts));
        routes
    }

    fn tasks(&self, ctx: &PdsContext) -> Vec<BackgroundTask> {
        // Sweep often enough that an unused upload outlives its grace
        // period by at most half of it (and at most five minutes).
        let every = (self.blobs.temp_grace / 2)
            .min(Duration::from_secs(300))
            .max(Duration::from_secs(1));
        let sweeper = self.blob_manager(ctx);
        vec![BackgroundTask::new(
            "blob sweep",
            sweeper.run_sweeper(every),
        )]
    }
}
