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

use std::sync::Arc;

use aurora_core::cid::Cid;
use aurora_core::repo::BlockSource;
use bytes::Bytes;

/// Default capacity, in bytes of cached blocks.
pub const DEFAULT_CAPACITY_BYTES: u64 = 4 * 1024 * 1024;

/// A bounded cache of blocks by CID. Cheap to clone.
#[derive(Clone)]
pub struct BlockCache {
    blocks: moka::sync::Cache<Cid, Bytes, foldhash::fast::RandomState>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("entries", &self.blocks.entry_count())
            .field("bytes", &self.blocks.weighted_size())
            .finish()
    }
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY_BYTES)
    }
}

impl BlockCache {
    /// A cache holding up to about `capacity_bytes` of blocks.
    pub fn new(capacity_bytes: u64) -> Self {
        Self {
            blocks: moka::sync::Cache::builder()
                .max_capacity(capacity_bytes)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .weigher(|_, v: &Bytes| {
                    u32::try_from(v.len().saturating_add(64)).unwrap_or(u32::MAX)
                })
                // A CID's digest is already uniform; SipHash over its 64-byte
                // array showed in profiles.
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// Adds blocks.
    pub fn insert_all(&self, blocks: impl IntoIterator<Item = (Cid, Bytes)>) {
        for (cid, bytes) in blocks {
            self.blocks.insert(cid, bytes);
        }
    }

    /// Adds one block.
    pub fn insert(&self, cid: Cid, bytes: Bytes) {
        self.blocks.insert(cid, bytes);
    }

    /// A block source over this cache, for opening trees.
    pub fn source(&self) -> Arc<dyn BlockSource + Send + Sync> {
        Arc::new(self.clone())
    }
}

impl BlockSource for BlockCache {
    fn get_block(&self, cid: &Cid) -> Option<Bytes> {
        self.blocks.get(cid)
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
            cache.blocks.run_pending_tasks();
        }
        for n in 990..1000 {
            assert!(cache.get_block(&block(n).0).is_some(), "block {n}");
        }
        assert!(cache.blocks.weighted_size() <= 64 * 1024);
    }
}
