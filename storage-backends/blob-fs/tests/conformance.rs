//! The shared blob-store conformance suite, run against the filesystem backend.

use aurora_blob_fs::FsBlobStore;
use aurora_storage_testkit::{BlobHarness, blob_conformance_suite};

async fn blobs(_test: &'static str) -> Option<BlobHarness> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = FsBlobStore::open(dir.path().join("blobs"))
        .await
        .expect("open blob store");
    Some(BlobHarness::new(store).with_guard(dir))
}

blob_conformance_suite!(blobs);
