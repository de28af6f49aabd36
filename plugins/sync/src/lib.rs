//! # aurora-sync
//!
//! The `com.atproto.sync` API of Aurora Locus as a [`Plugin`]: what relays,
//! AppViews and migrating clients read from a PDS.
//!
//! - `getRepo` (optionally `since` a rev), `getRecord` (the record with its
//!   MST proof) and `getBlocks`: CAR files, streamed out of the
//!   [`RepoStore`](aurora_core::RepoStore) block by block, so exporting a
//!   repo of any size keeps memory flat.
//! - `getLatestCommit`, `getRepoStatus`, `listRepos`, `listBlobs`, and
//!   `getBlob` (streamed from the [`BlobStore`](aurora_core::BlobStore) with
//!   the reference PDS's security headers).
//! - Taken-down, suspended, deactivated and deleted accounts are not served
//!   (`RepoTakendown`, `RepoSuspended`, `RepoDeactivated`, `RepoNotFound`).
//! - `requestCrawl` to the configured relays at start-up and after writes
//!   (see [`CrawlSettings`]), as a background task.
//!
//! The plugin sees the server only through [`PdsContext`].

mod access;
mod crawl;
mod handlers;
mod query;
mod walk;

use aurora_core::{BackgroundTask, PdsContext, Plugin, XrpcRoute};

pub use crawl::{CrawlSettings, DEFAULT_CRAWL_INTERVAL};

/// The sync API plugin.
///
/// ```ignore
/// let pds = builder
///     .plugin(SyncPlugin::new().with_crawlers(http_client, vec!["https://bsky.network".into()]))
///     .build()?;
/// ```
#[derive(Debug, Clone, Default)]
pub struct SyncPlugin {
    crawl: Option<CrawlSettings>,
}

impl SyncPlugin {
    /// The sync API, asking no relay to crawl.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `requestCrawl` with this service's hostname to each of
    /// `crawlers` (relay base URLs) through `http`: at start-up, and on a
    /// write at most once per [`DEFAULT_CRAWL_INTERVAL`]. No crawlers, no
    /// requests.
    #[must_use]
    pub fn with_crawlers(mut self, http: reqwest::Client, crawlers: Vec<String>) -> Self {
        self.crawl = (!crawlers.is_empty()).then(|| CrawlSettings {
            http,
            crawlers,
            interval: DEFAULT_CRAWL_INTERVAL,
        });
        self
    }

    /// Sets the least time between two write-triggered crawl requests.
    #[must_use]
    pub fn with_crawl_interval(mut self, interval: std::time::Duration) -> Self {
        if let Some(crawl) = &mut self.crawl {
            crawl.interval = interval;
        }
        self
    }
}

impl Plugin for SyncPlugin {
    fn name(&self) -> &'static str {
        "sync"
    }

    fn routes(&self, ctx: &PdsContext) -> Vec<XrpcRoute> {
        handlers::routes(ctx)
    }

    fn tasks(&self, ctx: &PdsContext) -> Vec<BackgroundTask> {
        self.crawl
            .iter()
            .map(|settings| {
                BackgroundTask::new(
                    "request crawl",
                    crawl::run(
                        settings.clone(),
                        ctx.service.hostname.clone(),
                        ctx.sequencer.clone(),
                    ),
                )
            })
            .collect()
    }
}
