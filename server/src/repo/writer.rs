//! The write path of a repo: one writer per repo at a time, a signed
//! commit per write, stored by compare-and-swap on the root.
//!
//! In this process, writers to one repo queue on a per-repo lock, so they
//! never race each other; writers to different repos run in parallel.
//! Across processes (several `aurora` nodes on one Postgres) the root's
//! compare-and-swap in `apply_commit` decides: a writer that lost rebuilds
//! its commit on the new root and tries again. Either way the repo never
//! forks and no acknowledged write is lost.
//!
//! After each commit the writer remembers the repo's new head and its
//! signing key, so the next write to that repo reads neither from the
//! database. The memory may be stale (another node wrote, or the account
//! was deleted and created again): then the root's compare-and-swap fails,
//! nothing is written, and the writer forgets the entry and builds again
//! from the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aurora_core::cid::Cid;
use aurora_core::crypto::SigningKey;
use aurora_core::repo::commit::SignedCommit;
use aurora_core::repo::{
    LoadedRepo, Mst, PreparedCommit, RecordChange, RepoHead, WriteError, WriteOutcome,
    prepare_commit, prepare_import,
};
use aurora_core::store::RecordPage;
use aurora_core::syntax::{Did, Nsid, RecordKey, Tid, TidClock};
use aurora_core::{PdsContext, StoreError};

use super::{BlobManager, BlockCache};

/// How often a writer rebuilds its commit after losing the root's
/// compare-and-swap to another process before giving up. Between attempts
/// it waits a random time up to a bound that doubles each time (capped),
/// so that two nodes hammering one repo do not keep colliding.
const MAX_ATTEMPTS: u32 = 32;
const MAX_BACKOFF_MS: u64 = 64;
/// How many missing MST nodes one commit may fetch (a tree is a few levels
/// deep; this bounds a corrupt store's damage).
const MAX_FETCHES: usize = 256;
/// What the writer's memory of repo heads may weigh, in bytes (about
/// 16,000 heads, or 1,500 with the path of their last write).
const HEADS_CACHED_BYTES: u64 = 8 * 1024 * 1024;
/// About what a remembered head and key weigh.
const HEAD_BYTES: u32 = 512;
/// About what a tree node kept in memory weighs.
const NODE_BYTES: u32 = 1024;

/// Waits a random time before retry `attempt` (see [`MAX_ATTEMPTS`]).
async fn backoff(attempt: u32) {
    let bound = (1u64 << attempt.min(6)).min(MAX_BACKOFF_MS);
    let wait = rand::random_range(0..=bound);
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
}

/// What the writer remembers of a repo it committed to.
#[derive(Clone)]
struct KnownHead {
    head: RepoHead,
    key: SigningKey,
    /// The tree of `head` with the paths of its commit's writes in memory
    /// (see [`Mst::changed_paths`]): the next write, usually on the same
    /// path, decodes none of those nodes again.
    tree: Option<Mst>,
}

impl KnownHead {
    fn weight(&self) -> u32 {
        let nodes = self.tree.as_ref().map_or(0, Mst::nodes_in_memory);
        u32::try_from(nodes)
            .unwrap_or(u32::MAX)
            .saturating_mul(NODE_BYTES)
            .saturating_add(HEAD_BYTES)
    }
}

/// What a commit is made of.
enum Job<'a> {
    /// Record writes, under swap conditions.
    Write {
        changes: &'a [RecordChange],
        swap: &'a Swap,
    },
    /// A whole repo replacing the current content.
    Import(&'a LoadedRepo),
}

impl Job<'_> {
    /// The label of its metrics.
    fn kind(&self) -> &'static str {
        match self {
            Self::Write { .. } => "write",
            Self::Import(_) => "import",
        }
    }
}

/// Compare-and-swap conditions of a write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swap {
    /// The commit the repo must be at (`swapCommit`).
    pub commit: Option<Cid>,
    /// Records that must be at a CID, or absent (`None`), first (`swapRecord`).
    pub records: Vec<(Nsid, RecordKey, Option<Cid>)>,
}

/// A stored commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The new commit's CID.
    pub commit: Cid,
    /// Its `rev`.
    pub rev: Tid,
    /// The `seq` of its `#commit` event.
    pub seq: i64,
    /// Per write, in order.
    pub outcomes: Vec<WriteOutcome>,
}

/// Why a write failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum RepoWriteError {
    /// The account has no repo here.
    #[error("repo not found: {0}")]
    RepoNotFound(Did),
    /// A swap condition does not hold.
    #[error("{0}")]
    InvalidSwap(String),
    /// The writes do not fit the repo (a create of an existing record, ...).
    #[error(transparent)]
    Write(WriteError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Other writers kept winning the root's compare-and-swap.
    #[error("the repo is changing too fast: try again")]
    Contended,
    /// The repo's data is unreadable (a commit or node missing or corrupt).
    #[error("repo data is corrupt: {0}")]
    Corrupt(String),
    /// A record references a blob the account has not uploaded.
    #[error("Could not find blob: {0}")]
    BlobNotFound(Cid),
}

/// Writes commits to repos (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct RepoWriter {
    ctx: PdsContext,
    cache: BlockCache,
    blobs: BlobManager,
    clock: Arc<TidClock>,
    locks: Arc<Mutex<HashMap<Did, Arc<tokio::sync::Mutex<()>>>>>,
    heads: moka::sync::Cache<Did, KnownHead>,
}

impl std::fmt::Debug for RepoWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoWriter")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl RepoWriter {
    /// A writer over `ctx`'s storage, reading through `cache`, keeping
    /// blob bookkeeping with `blobs`.
    pub fn new(ctx: PdsContext, cache: BlockCache, blobs: BlobManager) -> Self {
        Self {
            ctx,
            cache,
            blobs,
            clock: Arc::new(TidClock::new()),
            locks: Arc::default(),
            heads: moka::sync::Cache::builder()
                .max_capacity(HEADS_CACHED_BYTES)
                .weigher(|_, known: &KnownHead| known.weight())
                .build(),
        }
    }

    /// The TID clock for record keys and revs.
    pub fn clock(&self) -> &TidClock {
        &self.clock
    }

    /// The block cache.
    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// The blob bookkeeping.
    pub fn blobs(&self) -> &BlobManager {
        &self.blobs
    }

    /// Applies `changes` to `did`'s repo as one commit, if `swap` holds.
    pub async fn write(
        &self,
        did: &Did,
        changes: &[RecordChange],
        swap: &Swap,
    ) -> Result<CommitOutcome, RepoWriteError> {
        self.commit(did, Job::Write { changes, swap }).await
    }

    /// Replaces `did`'s repo content with `repo` (see
    /// [`prepare_import`]): one commit, re-signed with the account's key,
    /// announced by `#sync`. The blobs its records reference need not be
    /// uploaded yet (`listMissingBlobs` lists them).
    pub async fn import(
        &self,
        did: &Did,
        repo: &LoadedRepo,
    ) -> Result<CommitOutcome, RepoWriteError> {
        self.commit(did, Job::Import(repo)).await
    }

    /// Runs `job` under the repo's lock; afterwards, blobs only replaced or
    /// deleted records referenced go (in the background).
    async fn commit(&self, did: &Did, job: Job<'_>) -> Result<CommitOutcome, RepoWriteError> {
        let started = std::time::Instant::now();
        let lock = self.repo_lock(did);
        let result = {
            let _guard = lock.lock().await;
            self.commit_with_retry(did, &job).await
        };
        drop(lock);
        self.release_lock(did);
        if let Ok(done) = &result {
            metrics::counter!("aurora_commits_total", "kind" => job.kind()).increment(1);
            metrics::histogram!("aurora_commit_duration_seconds", "kind" => job.kind())
                .record(started.elapsed().as_secs_f64());
            if done.outcomes.iter().any(|o| o.prev.is_some()) {
                self.spawn_orphan_deletion(did);
            }
        }
        result
    }

    /// Builds `job`'s commit on the repo's head and stores it; when another
    /// process moved the root first, builds again on the new root.
    async fn commit_with_retry(
        &self,
        did: &Did,
        job: &Job<'_>,
    ) -> Result<CommitOutcome, RepoWriteError> {
        // The remembered head, for a plain write only (a swapCommit is
        // checked against the database's head). Forgotten until this commit
        // succeeds, so a failure leaves no stale entry behind.
        let mut known = match job {
            Job::Write { swap, .. } if swap.commit.is_none() => self.heads.get(did),
            _ => None,
        };
        self.heads.invalidate(did);
        let mut key = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            // After a remembered attempt failed, both head and key come from
            // the database (the account may have been created again).
            let remembered = known.take();
            let from_memory = remembered.is_some();
            let (signing, head, tree) = match remembered {
                Some(k) => (k.key, Some(k.head), k.tree),
                None => match key.take() {
                    Some(key) => (key, None, None),
                    None => (self.signing_key(did).await?, None, None),
                },
            };
            let built = match job {
                Job::Write { changes, swap } => {
                    self.build_write(did, &signing, head, tree, changes, swap)
                        .await
                }
                Job::Import(repo) => self.build_import(did, &signing, repo).await,
            };
            let (prepared, blobs) = match built {
                Ok(built) => built,
                // Judged against a remembered head that may be stale: judge
                // again against the database's.
                Err(RepoWriteError::Write(_)) if from_memory => continue,
                Err(e) => return Err(e),
            };
            match self.ctx.repos.apply_commit(prepared.write.clone()).await {
                Ok(seq) => {
                    // Not an import's: all of its tree is new.
                    let tree =
                        matches!(job, Job::Write { .. }).then(|| prepared.tree.changed_paths());
                    self.heads.insert(
                        did.clone(),
                        KnownHead {
                            head: RepoHead {
                                commit: prepared.commit,
                                rev: prepared.rev.clone(),
                                data: prepared.tree.root_cid(),
                            },
                            key: signing,
                            tree,
                        },
                    );
                    prepared.tree.mark_stored();
                    // The next write needs the commit and the tree's nodes;
                    // records are never read through the cache.
                    let records: Vec<Cid> =
                        prepared.outcomes.iter().filter_map(|o| o.cid).collect();
                    self.cache.insert_all(
                        prepared
                            .write
                            .blocks
                            .iter()
                            .filter(|(cid, _)| !records.contains(cid))
                            .cloned(),
                    );
                    // Blobs uploaded for the commit become permanent.
                    self.blobs.promote(did, &blobs).await;
                    return Ok(CommitOutcome {
                        commit: prepared.commit,
                        rev: prepared.rev,
                        seq,
                        outcomes: prepared.outcomes,
                    });
                }
                // Another process committed first (or the memory was
                // stale): rebuild on the database's root.
                Err(StoreError::RootConflict { .. }) => {
                    if !from_memory {
                        metrics::counter!("aurora_commit_root_conflicts_total").increment(1);
                        key = Some(signing);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RepoWriteError::Contended)
    }

    /// A write's commit on the current head, once its swap conditions hold
    /// and every blob it references is uploaded; with those blobs.
    async fn build_write(
        &self,
        did: &Did,
        key: &SigningKey,
        head: Option<RepoHead>,
        tree: Option<Mst>,
        changes: &[RecordChange],
        swap: &Swap,
    ) -> Result<(PreparedCommit, Vec<Cid>), RepoWriteError> {
        let head = match head {
            Some(head) => head,
            None => self.head(did).await?,
        };
        if let Some(expected) = swap.commit
            && expected != head.commit
        {
            return Err(RepoWriteError::InvalidSwap(format!(
                "the repo is at commit {}, not {expected}",
                head.commit
            )));
        }
        self.check_record_swaps(did, &swap.records).await?;
        let prepared = self.prepare(did, key, &head, tree, changes).await?;
        let mut blobs: Vec<Cid> = prepared
            .outcomes
            .iter()
            .flat_map(|o| o.blobs.iter().copied())
            .collect();
        blobs.sort_unstable_by_key(Cid::to_bytes);
        blobs.dedup();
        if let Some(missing) = self.blobs.first_missing(did, &blobs).await? {
            return Err(RepoWriteError::BlobNotFound(missing));
        }
        Ok((prepared, blobs))
    }

    /// An import's commit on the current head (if any), with the blobs its
    /// records reference (uploaded or not).
    async fn build_import(
        &self,
        did: &Did,
        key: &SigningKey,
        repo: &LoadedRepo,
    ) -> Result<(PreparedCommit, Vec<Cid>), RepoWriteError> {
        let head = match self.head(did).await {
            Ok(head) => Some(head),
            Err(RepoWriteError::RepoNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let existing = self.all_records(did).await?;
        let prepared = prepare_import(did, key, head.as_ref(), repo, &existing, &self.clock)
            .await
            .map_err(RepoWriteError::Write)?;
        let blobs = prepared
            .outcomes
            .iter()
            .flat_map(|o| o.blobs.iter().copied())
            .collect();
        Ok((prepared, blobs))
    }

    /// Every record of `did`'s index.
    async fn all_records(&self, did: &Did) -> Result<Vec<(Nsid, RecordKey, Cid)>, RepoWriteError> {
        const PAGE: usize = 1000;
        let mut out = Vec::new();
        for collection in self.ctx.repos.list_collections(did).await? {
            let mut cursor = None;
            loop {
                let page = RecordPage {
                    limit: PAGE,
                    cursor: cursor.take(),
                    reverse: true,
                };
                let entries = self.ctx.repos.list_records(did, &collection, &page).await?;
                let n = entries.len();
                cursor = entries.last().map(|e| e.rkey.clone());
                out.extend(
                    entries
                        .into_iter()
                        .map(|e| (collection.clone(), e.rkey, e.cid)),
                );
                if n < PAGE {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Deletes, in the background, `did`'s blobs no record references any
    /// more (after records were replaced or deleted). Off the write's path,
    /// but under the repo's lock so that no write of this process
    /// re-references a blob while it goes.
    fn spawn_orphan_deletion(&self, did: &Did) {
        let writer = self.clone();
        let did = did.clone();
        tokio::spawn(async move {
            let lock = writer.repo_lock(&did);
            let deleted = {
                let _guard = lock.lock().await;
                writer.blobs.delete_orphans(&did).await
            };
            drop(lock);
            writer.release_lock(&did);
            match deleted {
                Ok(0) => {}
                Ok(n) => tracing::debug!(%did, n, "deleted unreferenced blobs"),
                Err(e) => {
                    tracing::warn!(%did, error = %e, "deleting unreferenced blobs failed; the sweep retries");
                }
            }
        });
    }

    /// The account's repo signing key.
    async fn signing_key(&self, did: &Did) -> Result<SigningKey, RepoWriteError> {
        self.ctx
            .accounts
            .get_signing_key(did)
            .await?
            .ok_or_else(|| RepoWriteError::Corrupt(format!("{did} has no signing key")))
    }

    /// The repo's current commit and tree root.
    pub async fn head(&self, did: &Did) -> Result<RepoHead, RepoWriteError> {
        let root = self
            .ctx
            .repos
            .get_root(did)
            .await?
            .ok_or_else(|| RepoWriteError::RepoNotFound(did.clone()))?;
        let block = self.block(did, &root.cid).await?;
        let commit = SignedCommit::from_block(&block)
            .map_err(|e| RepoWriteError::Corrupt(format!("commit {}: {e}", root.cid)))?;
        Ok(RepoHead {
            commit: root.cid,
            rev: commit.rev,
            data: commit.data,
        })
    }

    /// A block of `did`'s repo, through the cache.
    async fn block(&self, did: &Did, cid: &Cid) -> Result<bytes::Bytes, RepoWriteError> {
        if let Some(b) = aurora_core::repo::BlockSource::get_block(&self.cache, cid) {
            return Ok(b);
        }
        let b = self
            .ctx
            .repos
            .get_block(did, cid)
            .await?
            .ok_or_else(|| RepoWriteError::Corrupt(format!("block {cid} is missing")))?;
        self.cache.insert(*cid, b.clone());
        Ok(b)
    }

    async fn check_record_swaps(
        &self,
        did: &Did,
        swaps: &[(Nsid, RecordKey, Option<Cid>)],
    ) -> Result<(), RepoWriteError> {
        for (collection, rkey, expected) in swaps {
            let current = self
                .ctx
                .repos
                .get_record(did, collection, rkey)
                .await?
                .map(|r| r.cid);
            if current != *expected {
                let what =
                    |c: Option<Cid>| c.map_or_else(|| "absent".to_owned(), |c| c.to_string());
                return Err(RepoWriteError::InvalidSwap(format!(
                    "record {collection}/{rkey} is {}, not {}",
                    what(current),
                    what(*expected)
                )));
            }
        }
        Ok(())
    }

    /// Builds the commit, fetching the MST nodes it needs.
    ///
    /// Nodes fetched here are kept for this commit in `fetched`, not only
    /// in the shared cache: a small or busy cache may evict (or decline) a
    /// node before the next attempt reads it.
    async fn prepare(
        &self,
        did: &Did,
        key: &SigningKey,
        head: &RepoHead,
        kept: Option<Mst>,
        changes: &[RecordChange],
    ) -> Result<PreparedCommit, RepoWriteError> {
        let kept = kept.filter(|tree| tree.root_cid() == head.data);
        let mut fetched = HashMap::new();
        for _ in 0..MAX_FETCHES {
            let source = Arc::new(CacheOverlay {
                fetched: fetched.clone(),
                cache: self.cache.clone(),
            });
            let opened = match &kept {
                Some(tree) => Ok(tree.with_source(source)),
                None => Mst::open(&head.data, source),
            };
            let missing = match opened {
                Ok(tree) => {
                    match prepare_commit(did, key, Some(head), &tree, changes, &self.clock).await {
                        Ok(prepared) => return Ok(prepared),
                        Err(e) => e.missing_block().ok_or(RepoWriteError::Write(e))?,
                    }
                }
                Err(aurora_core::repo::MstError::MissingBlock(cid)) => cid,
                Err(e) => return Err(RepoWriteError::Corrupt(e.to_string())),
            };
            let block = self.block(did, &missing).await?;
            fetched.insert(missing, block);
        }
        Err(RepoWriteError::Corrupt(
            "a commit needed more tree nodes than any valid tree has on its paths".to_owned(),
        ))
    }

    fn repo_lock(&self, did: &Did) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(did.clone()).or_default().clone()
    }

    /// Forgets the lock of a repo nobody is writing to, so the map stays
    /// as small as the set of repos being written.
    fn release_lock(&self, did: &Did) {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if locks.get(did).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(did);
        }
    }
}

/// The nodes one commit fetched, over the shared cache.
struct CacheOverlay {
    fetched: HashMap<Cid, bytes::Bytes>,
    cache: BlockCache,
}

impl aurora_core::repo::BlockSource for CacheOverlay {
    fn get_block(&self, cid: &Cid) -> Option<bytes::Bytes> {
        self.fetched
            .get(cid)
            .cloned()
            .or_else(|| aurora_core::repo::BlockSource::get_block(&self.cache, cid))
    }
}
