//! A process-wide cache of repo blocks (MST nodes and commits), so that a
//! write reads the few nodes on its path from memory instead of the
//! database. Blocks are content-addressed: a cached block is valid forever,
//! whichever repo it came from.

use std::sync::Arc;

use aurora_core::cid::Cid;
use aurora_core::repo::BlockSource;
use bytes::Bytes;

/// Default capacity, in bytes of cached blocks.
pub const DEFAULT_CAPACITY_BYTES: u64 = 4 * 1024 * 1024;

/// A bounded cache of blocks by CID. Cheap to clone.
#[derive(Clone)]
pub struct BlockCache {
    blocks: moka::sync::Cache<Cid, Bytes>,
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
                .weigher(|_, v: &Bytes| {
                    u32::try_from(v.len().saturating_add(64)).unwrap_or(u32::MAX)
                })
                .build(),
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
