//! # aurora-storage-memory
//!
//! [`MemoryStore`] (repo store, sequencer, accounts and OAuth) and
//! [`MemoryBlobStore`], held in process memory. Nothing survives a restart:
//! for tests, examples and throwaway servers. They follow the same contracts
//! as the SQL backends and pass the same conformance suite.

mod blob;
mod oauth;
mod store;

pub use blob::MemoryBlobStore;
pub use store::MemoryStore;
