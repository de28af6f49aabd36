//! A process-wide cache of repo blocks (MST nodes and commits), so that a
//! write reads the few nodes on its path from memory instead of the
//! database. Blocks are content-addressed: a cached block is valid forever,
//! whichever repo it came from.
//!
//! The blocks a write needs are the ones the previous write to that repo
//! made (the nodes on its path and the commit), so the newest blocks are
//! the hot ones. The cache therefore evicts the least recently used block
//! and admits every new one: a frequency-based admission policy (moka's
//! default, TinyLFU) turns new blocks away once the cache is full, and
//! under load that sent more than one read per write to the database.
//!
//! It is a few mutex-guarded LRU lists, sharded by CID. Every entry is
//! touched once or twice in its life and each operation is a hash lookup
//! and a list splice, so a lock held for that long is cheaper than a
//! concurrent cache's bookkeeping (moka's showed at 3-4% of the server's
//! CPU under write load).

use std::sync::{Arc, Mutex, PoisonError};

use aurora_core::cid::Cid;
use aurora_core::repo::BlockSource;
use bytes::Bytes;
use hashlink::LinkedHashMap;

/// Default capacity, in bytes of cached blocks.
pub const DEFAULT_CAPACITY_BYTES: u64 = 4 * 1024 * 1024;

/// Independent LRU lists; a CID's first digest byte picks its list.
const SHARDS: usize = 8;

/// What a block costs the cache beyond its bytes (key, links, `Bytes`).
const ENTRY_OVERHEAD: u64 = 64;

/// A bounded cache of blocks by CID. Cheap to clone.
#[derive(Clone)]
pub struct BlockCache {
    shards: Arc<[Mutex<Shard>; SHARDS]>,
    /// Bytes each shard holds at most.
    shard_capacity: u64,
}

/// One LRU list: least recently used at the front.
#[derive(Default)]
struct Shard {
    blocks: LinkedHashMap<Cid, Bytes, foldhash::fast::RandomState>,
    bytes: u64,
}

fn weight(bytes: &Bytes) -> u64 {
    u64::try_from(bytes.len())
        .unwrap_or(u64::MAX)
        .saturating_add(ENTRY_OVERHEAD)
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("entries", &self.entry_count())
            .field("bytes", &self.weighted_size())
            .finish()
    }
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY_BYTES)
    }
}

impl BlockCache {
    /// A cache holding up to about `capacity_bytes` of blocks (none at 0).
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            shards: Arc::new(std::array::from_fn(|_| Mutex::default())),
            shard_capacity: capacity_bytes / SHARDS as u64,
        }
    }

    fn shard(&self, cid: &Cid) -> std::sync::MutexGuard<'_, Shard> {
        // A CID's digest is already uniform (SHA-256 for repo blocks).
        let pick = cid.hash().digest().first().copied().unwrap_or(0);
        lock(&self.shards[usize::from(pick) % SHARDS])
    }

    /// Adds blocks.
    pub fn insert_all(&self, blocks: impl IntoIterator<Item = (Cid, Bytes)>) {
        for (cid, bytes) in blocks {
            self.insert(cid, bytes);
        }
    }

    /// Adds one block, as the most recently used; evicts the least
    /// recently used ones past the capacity.
    pub fn insert(&self, cid: Cid, bytes: Bytes) {
        let added = weight(&bytes);
        if added > self.shard_capacity {
            return;
        }
        let mut shard = self.shard(&cid);
        if let Some(old) = shard.blocks.insert(cid, bytes) {
            shard.bytes = shard.bytes.saturating_sub(weight(&old));
        }
        shard.bytes = shard.bytes.saturating_add(added);
        while shard.bytes > self.shard_capacity {
            let Some((_, evicted)) = shard.blocks.pop_front() else {
                break;
            };
            shard.bytes = shard.bytes.saturating_sub(weight(&evicted));
        }
    }

    /// A block source over this cache, for opening trees.
    pub fn source(&self) -> Arc<dyn BlockSource + Send + Sync> {
        Arc::new(self.clone())
    }

    /// How many blocks are cached.
    pub fn entry_count(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).blocks.len())
            .sum()
    }

    /// The bytes the cached blocks weigh, as counted against the capacity.
    pub fn weighted_size(&self) -> u64 {
        self.shards.iter().map(|shard| lock(shard).bytes).sum()
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BlockSource for BlockCache {
    fn get_block(&self, cid: &Cid) -> Option<Bytes> {
        self.shard(cid).blocks.to_back(cid).cloned()
    }
}

#[cfg(test)]
mod tests {
    use aurora_core::data::{DAG_CBOR, cid_for};

    use super::*;

    fn block(n: u32) -> (Cid, Bytes) {
        let mut bytes = vec![0u8; 1000];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        (cid_for(DAG_CBOR, &bytes), Bytes::from(bytes))
    }

    /// The writer's pattern: each write reads the blocks the one before it
    /// made and adds its own. Long after the cache filled up, the newest
    /// blocks are still there.
    #[test]
    fn a_full_cache_keeps_the_newest_blocks() {
        let cache = BlockCache::new(64 * 1024);
        for n in 0..1000 {
            if n > 0 {
                assert!(
                    cache.get_block(&block(n - 1).0).is_some(),
                    "block {}",
                    n - 1
                );
            }
            let (cid, bytes) = block(n);
            cache.insert(cid, bytes);
        }
        for n in 990..1000 {
            assert!(cache.get_block(&block(n).0).is_some(), "block {n}");
        }
        assert!(cache.weighted_size() <= 64 * 1024);
    }
}
