//! The shared storage conformance suites, run against the in-memory backend.

// The suite awaits its factories; these happen to need no awaiting.
#![allow(clippy::unused_async)]

use aurora_storage_memory::{MemoryBlobStore, MemoryStore};
use aurora_storage_testkit::{
    BlobHarness, StoreHarness, blob_conformance_suite, store_conformance_suite,
};

async fn store(_test: &'static str) -> Option<StoreHarness> {
    Some(StoreHarness::new(
        MemoryStore::new(),
        MemoryStore::with_fault_after,
    ))
}

async fn blobs(_test: &'static str) -> Option<BlobHarness> {
    Some(BlobHarness::new(MemoryBlobStore::new()))
}

store_conformance_suite!(store);
blob_conformance_suite!(blobs);
