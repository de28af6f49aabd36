//! Reading repos out of a [`RepoStore`] for CAR exports, block by block:
//! the whole tree of a commit ([`RepoWalk`]), the blocks written since a
//! revision ([`blocks_since`]), and a record's proof ([`record_proof`]).
//! None of them loads a whole repo: a walk holds at most one batch of
//! blocks and a stack of CIDs that grows with the tree's depth, not its
//! size.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use aurora_core::cid::Cid;
use aurora_core::repo::{BlockSource, CarError, Mst, MstError, node_links, verify_block};
use aurora_core::store::RevBlock;
use aurora_core::syntax::{Did, Tid};
use aurora_core::{RepoStore, StoreError};
use bytes::Bytes;
use futures::Stream;
use futures::future::BoxFuture;

/// Blocks fetched with one `get_blocks` call during a walk: also the most
/// blocks a walk holds at once.
pub(crate) const BATCH: usize = 128;
/// Blocks read per page of [`blocks_since`].
const SINCE_PAGE: usize = 500;
/// Most blocks a record proof may fetch (a valid tree's path is a few
/// nodes; this bounds a corrupt store's damage).
const MAX_PROOF_FETCHES: usize = 128;

/// Why a walk stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalkError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block the tree links to is not stored.
    #[error("block {0} is missing")]
    MissingBlock(Cid),
    /// An MST node is malformed.
    #[error(transparent)]
    Mst(#[from] MstError),
    /// A record block does not hash to its CID.
    #[error(transparent)]
    Car(#[from] CarError),
}

/// Where a walk reads blocks: one batch at a time.
pub(crate) trait BlockFetch: Send + Sync + 'static {
    /// The subset of `cids` that is stored, in any order.
    fn fetch(&self, cids: Vec<Cid>) -> BoxFuture<'static, Result<Vec<(Cid, Bytes)>, StoreError>>;
}

/// A repo's blocks in a [`RepoStore`].
pub(crate) struct StoreBlocks {
    pub(crate) store: Arc<dyn RepoStore>,
    pub(crate) did: Did,
}

impl BlockFetch for StoreBlocks {
    fn fetch(&self, cids: Vec<Cid>) -> BoxFuture<'static, Result<Vec<(Cid, Bytes)>, StoreError>> {
        let store = self.store.clone();
        let did = self.did.clone();
        Box::pin(async move { store.get_blocks(&did, &cids).await })
    }
}

/// A block still to fetch.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// An MST node: its links are followed.
    Node(Cid),
    /// A record: a leaf.
    Record(Cid),
}

impl Pending {
    fn cid(self) -> Cid {
        match self {
            Self::Node(c) | Self::Record(c) => c,
        }
    }
}

/// Every block of one commit's repo: the commit, then its MST nodes and
/// records, depth first. Blocks are fetched [`BATCH`] at a time and handed
/// out one by one; nothing else of the repo is kept.
pub(crate) struct RepoWalk<F> {
    fetch: F,
    /// Fetched, not yet handed out; at most one batch.
    ready: VecDeque<(Cid, Bytes)>,
    /// Still to fetch, the next on top.
    pending: Vec<Pending>,
}

impl<F> std::fmt::Debug for RepoWalk<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoWalk")
            .field("ready", &self.ready.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<F: BlockFetch> RepoWalk<F> {
    /// A walk that starts with the `commit` block and then reads the tree
    /// rooted at `data` (the commit's `data`).
    pub(crate) fn new(fetch: F, commit: (Cid, Bytes), data: Cid) -> Self {
        Self {
            fetch,
            ready: VecDeque::from([commit]),
            pending: vec![Pending::Node(data)],
        }
    }

    /// Blocks the walk holds right now (fetched, not yet handed out).
    #[cfg(test)]
    pub(crate) fn held_blocks(&self) -> usize {
        self.ready.len()
    }

    /// CIDs the walk still has to fetch.
    #[cfg(test)]
    pub(crate) fn pending_cids(&self) -> usize {
        self.pending.len()
    }

    /// The next block, `None` at the end.
    pub(crate) async fn next_block(&mut self) -> Result<Option<(Cid, Bytes)>, WalkError> {
        loop {
            if let Some(block) = self.ready.pop_front() {
                return Ok(Some(block));
            }
            if self.pending.is_empty() {
                return Ok(None);
            }
            self.fetch_batch().await?;
        }
    }

    /// Fetches the top [`BATCH`] pending blocks, queues them, and pushes
    /// what their nodes link to.
    async fn fetch_batch(&mut self) -> Result<(), WalkError> {
        let take = self.pending.len().min(BATCH);
        let mut batch = self.pending.split_off(self.pending.len() - take);
        // The top of the stack first.
        batch.reverse();
        let mut cids: Vec<Cid> = batch.iter().map(|p| p.cid()).collect();
        cids.sort_unstable();
        cids.dedup();
        let mut got: HashMap<Cid, Bytes> = self.fetch.fetch(cids).await?.into_iter().collect();
        let mut children = Vec::new();
        let mut queued = HashSet::new();
        for item in batch {
            let cid = item.cid();
            // Two records with the same content share a block: once per batch.
            if !queued.insert(cid) {
                continue;
            }
            let bytes = got.remove(&cid).ok_or(WalkError::MissingBlock(cid))?;
            match item {
                Pending::Node(_) => {
                    let links = node_links(&cid, &bytes)?;
                    children.extend(links.entries.into_iter().map(|(_, c)| Pending::Record(c)));
                    children.extend(links.subtrees.into_iter().map(Pending::Node));
                }
                Pending::Record(_) => verify_block(&cid, &bytes)?,
            }
            self.ready.push_back((cid, bytes));
        }
        // The first child ends on top.
        self.pending.extend(children.into_iter().rev());
        Ok(())
    }

    /// The walk as a stream; it ends after the first error.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<(Cid, Bytes), WalkError>> + Send
    where
        F: Send,
    {
        futures::stream::unfold(Some(self), |walk| async move {
            let mut walk = walk?;
            match walk.next_block().await {
                Ok(Some(block)) => Some((Ok(block), Some(walk))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

/// The blocks of `did`'s repo written after revision `since`, up to and
/// including revision `up_to` (the root the export names), read a page at a
/// time.
pub(crate) fn blocks_since(
    store: Arc<dyn RepoStore>,
    did: Did,
    since: Tid,
    up_to: Tid,
) -> impl Stream<Item = Result<(Cid, Bytes), StoreError>> + Send {
    struct State {
        store: Arc<dyn RepoStore>,
        did: Did,
        since: Tid,
        up_to: Tid,
        after: Option<(Tid, Cid)>,
        page: VecDeque<RevBlock>,
        last_page: bool,
    }
    let state = State {
        store,
        did,
        since,
        up_to,
        after: None,
        page: VecDeque::new(),
        last_page: false,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        loop {
            if let Some(block) = s.page.pop_front() {
                // Blocks of commits newer than the exported root are not in it.
                if block.rev > s.up_to {
                    return None;
                }
                return Some((Ok((block.cid, block.bytes)), Some(s)));
            }
            if s.last_page {
                return None;
            }
            let after = s.after.as_ref().map(|(rev, cid)| (rev, cid));
            match s
                .store
                .blocks_since(&s.did, &s.since, after, SINCE_PAGE)
                .await
            {
                Ok(page) => {
                    s.last_page = page.len() < SINCE_PAGE;
                    s.after = page.last().map(|b| (b.rev.clone(), b.cid));
                    s.page = page.into();
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
}

/// Blocks fetched so far for reading a tree lazily.
#[derive(Default)]
struct FetchedBlocks(Mutex<HashMap<Cid, Bytes>>);

impl BlockSource for FetchedBlocks {
    fn get_block(&self, cid: &Cid) -> Option<Bytes> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cid)
            .cloned()
    }
}

/// What [`record_proof`] found.
#[derive(Debug)]
pub(crate) struct RecordProof {
    /// The MST nodes proving the key's presence or absence.
    pub(crate) nodes: Vec<(Cid, Bytes)>,
    /// The record's CID when the key is present.
    pub(crate) record: Option<Cid>,
}

/// The proof of `key` in the tree rooted at `data`, reading only the nodes
/// on its path from `did`'s blocks.
pub(crate) async fn record_proof(
    store: &dyn RepoStore,
    did: &Did,
    data: &Cid,
    key: &str,
) -> Result<RecordProof, WalkError> {
    let source = Arc::new(FetchedBlocks::default());
    for _ in 0..MAX_PROOF_FETCHES {
        let attempt = Mst::open(data, source.clone()).and_then(|tree| {
            let nodes = tree.covering_proof(key)?;
            let record = tree.get(key)?;
            Ok(RecordProof { nodes, record })
        });
        let missing = match attempt {
            Ok(proof) => return Ok(proof),
            Err(MstError::MissingBlock(cid)) => cid,
            Err(e) => return Err(e.into()),
        };
        let bytes = store
            .get_block(did, &missing)
            .await?
            .ok_or(WalkError::MissingBlock(missing))?;
        source
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(missing, bytes);
    }
    Err(WalkError::Mst(MstError::Invalid {
        cid: *data,
        reason: "a proof needed more nodes than any valid tree has on a path".to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use aurora_core::crypto::{Curve, SigningKey};
    use aurora_core::data::{Ipld, cid_for, encode};
    use aurora_core::repo::car::car_byte_stream;
    use aurora_core::repo::commit::UnsignedCommit;
    use aurora_core::repo::load_repo_bytes;
    use futures::StreamExt;

    use super::*;

    const DAG_CBOR: u64 = 0x71;
    /// Records with the same content share a block.
    const DISTINCT_RECORDS: usize = 99_000;

    /// Blocks in memory, counting what the walk asks for.
    #[derive(Clone, Default)]
    struct Counting {
        blocks: Arc<HashMap<Cid, Bytes>>,
        calls: Arc<AtomicUsize>,
        largest_batch: Arc<AtomicUsize>,
    }

    impl BlockFetch for Counting {
        fn fetch(
            &self,
            cids: Vec<Cid>,
        ) -> BoxFuture<'static, Result<Vec<(Cid, Bytes)>, StoreError>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.largest_batch.fetch_max(cids.len(), Ordering::Relaxed);
            let out = cids
                .iter()
                .filter_map(|c| self.blocks.get(c).map(|b| (*c, b.clone())))
                .collect();
            Box::pin(async move { Ok(out) })
        }
    }

    fn record(i: usize) -> (Cid, Bytes) {
        let value = Ipld::Map(
            [
                (
                    "$type".to_owned(),
                    Ipld::String("app.bsky.feed.like".into()),
                ),
                // A few records share content: their blocks are shared too.
                (
                    "n".to_owned(),
                    Ipld::Integer((i % DISTINCT_RECORDS) as i128),
                ),
            ]
            .into(),
        );
        let bytes = Bytes::from(encode(&value).unwrap());
        (cid_for(DAG_CBOR, &bytes), bytes)
    }

    /// A signed repo of `n` records: its commit block, tree root and every
    /// block (commit, nodes, records).
    fn repo(n: usize) -> ((Cid, Bytes), Cid, HashMap<Cid, Bytes>, SigningKey) {
        let mut blocks = HashMap::new();
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            let (cid, bytes) = record(i);
            blocks.insert(cid, bytes);
            entries.push((format!("app.bsky.feed.like/{i:012}"), cid));
        }
        let tree = Mst::from_entries(entries).unwrap();
        blocks.extend(tree.blocks().unwrap());
        let key = SigningKey::generate(Curve::K256);
        let did = Did::parse("did:plc:walkwalkwalkwalkwalkwalk").unwrap();
        let commit = UnsignedCommit::new(did, tree.root_cid(), Tid::now()).sign(&key);
        let commit_block = commit.to_block();
        blocks.insert(commit_block.0, commit_block.1.clone());
        (commit_block, tree.root_cid(), blocks, key)
    }

    #[tokio::test]
    async fn a_walk_of_a_large_repo_holds_one_batch() {
        const N: usize = 100_000;
        let (commit, data, blocks, key) = repo(N);
        let fetch = Counting {
            blocks: Arc::new(blocks.clone()),
            ..Counting::default()
        };
        let mut walk = RepoWalk::new(fetch.clone(), commit.clone(), data);
        let mut seen = HashSet::new();
        let (mut max_held, mut max_pending, mut emitted) = (0, 0, 0);
        while let Some((cid, bytes)) = walk.next_block().await.unwrap() {
            assert_eq!(blocks[&cid], bytes);
            seen.insert(cid);
            emitted += 1;
            max_held = max_held.max(walk.held_blocks());
            max_pending = max_pending.max(walk.pending_cids());
        }
        // Every block of the repo; a record block shared by several records
        // at most once per record (once per batch).
        assert_eq!(seen.len(), blocks.len());
        let references = blocks.len() + N - DISTINCT_RECORDS;
        assert!(emitted <= references, "{emitted} > {references}");
        assert!(max_held <= BATCH, "held {max_held} blocks");
        assert!(fetch.largest_batch.load(Ordering::Relaxed) <= BATCH);
        // The stack grows with the tree's depth, not its size.
        assert!(max_pending < 4 * BATCH * 16, "{max_pending} pending CIDs");
        eprintln!(
            "walked {emitted} blocks in {} fetches; at most {max_held} blocks held and {max_pending} CIDs pending",
            fetch.calls.load(Ordering::Relaxed)
        );

        // As a CAR, it is the signed repo.
        let walk = RepoWalk::new(fetch, commit.clone(), data);
        let chunks: Vec<_> = car_byte_stream(vec![commit.0], walk.into_stream())
            .collect()
            .await;
        let car: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap()).collect();
        let loaded = load_repo_bytes(&car, Some(&key.public_key())).unwrap();
        assert_eq!(loaded.mst.len().unwrap(), N);
    }

    #[tokio::test]
    async fn a_missing_or_corrupt_block_ends_the_walk() {
        let (commit, data, blocks, _) = repo(300);
        let victim = *blocks
            .keys()
            .find(|c| **c != commit.0 && **c != data)
            .unwrap();
        let mut without = blocks.clone();
        without.remove(&victim);
        let mut walk = RepoWalk::new(
            Counting {
                blocks: Arc::new(without),
                ..Counting::default()
            },
            commit.clone(),
            data,
        );
        let err = loop {
            match walk.next_block().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("walk finished without block {victim}"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, WalkError::MissingBlock(c) if c == victim),
            "{err}"
        );

        let mut corrupt = blocks;
        corrupt.insert(victim, Bytes::from_static(b"\xa0"));
        let results: Vec<_> = RepoWalk::new(
            Counting {
                blocks: Arc::new(corrupt),
                ..Counting::default()
            },
            commit,
            data,
        )
        .into_stream()
        .collect()
        .await;
        assert!(results.last().unwrap().is_err());
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    }
}
