use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use futures::stream::BoxStream;

use crate::syntax::Did;

/// A stream of byte chunks, in or out of a [`BlobStore`].
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Errors of a [`BlobStore`].
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The temporary upload does not exist (expired or never uploaded).
    #[error("temporary blob {0} not found")]
    TempNotFound(String),
    /// The input stream failed (client went away, size limit hit, ...).
    #[error("reading blob data failed: {0}")]
    Input(std::io::Error),
    /// The storage itself failed.
    #[error("blob storage failed: {0}")]
    Storage(std::io::Error),
}

/// The result of a temporary upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TempBlob {
    /// Opaque key of the temporary object.
    pub key: String,
    /// CIDv1 (raw codec, sha2-256) of the content.
    pub cid: Cid,
    /// Size in bytes.
    pub size: u64,
}

/// A stored blob, opened for reading.
pub struct StoredBlob {
    /// Size in bytes.
    pub size: u64,
    /// The content.
    pub stream: ByteStream,
}

impl std::fmt::Debug for StoredBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredBlob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Blob storage: uploads land in a temporary area, and become permanent
/// (per account, under their CID) once a committed record references them.
///
/// All data is streamed; no method holds a whole blob in memory.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `data` into a new temporary object, hashing as it goes.
    async fn put_temp(&self, data: ByteStream) -> Result<TempBlob, BlobError>;

    /// Moves a temporary object to permanent storage as `did`'s blob `cid`.
    /// Idempotent: if the blob is already permanent, the temporary object is
    /// dropped and this succeeds.
    async fn make_permanent(&self, did: &Did, temp_key: &str, cid: &Cid) -> Result<(), BlobError>;

    /// Opens `did`'s permanent blob `cid`.
    async fn get(&self, did: &Did, cid: &Cid) -> Result<Option<StoredBlob>, BlobError>;

    /// Whether `did` has the permanent blob `cid`.
    async fn contains(&self, did: &Did, cid: &Cid) -> Result<bool, BlobError>;

    /// Deletes `did`'s permanent blob `cid`; deleting a missing blob succeeds.
    async fn delete(&self, did: &Did, cid: &Cid) -> Result<(), BlobError>;

    /// Deletes a temporary object; deleting a missing one succeeds.
    async fn delete_temp(&self, temp_key: &str) -> Result<(), BlobError>;

    /// Deletes temporary objects older than `age`; returns how many.
    async fn delete_temp_older_than(&self, age: Duration) -> Result<u64, BlobError>;
}
