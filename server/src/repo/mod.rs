//! Repositories: the write path (one writer per repo, signed commits,
//! compare-and-swap on the root), the block cache it reads MST nodes
//! through, and record validation.

pub mod blobs;
pub mod block_cache;
pub mod validation;
pub mod writer;

pub use blobs::{BlobManager, SweepReport, UploadError};
pub use block_cache::BlockCache;
pub use writer::{CommitOutcome, RepoWriteError, RepoWriter, Swap};
