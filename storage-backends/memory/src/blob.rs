use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aurora_core::cid::Cid;
use aurora_core::data::BlobHasher;
use aurora_core::store::{BlobError, BlobStore, ByteStream, StoredBlob, TempBlob};
use aurora_core::syntax::Did;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

#[derive(Default)]
struct Blobs {
    temp: HashMap<String, (Instant, Bytes)>,
    permanent: HashMap<(Did, Cid), Bytes>,
}

/// A [`BlobStore`] in memory.
#[derive(Clone, Default)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<Blobs>>,
    next_key: Arc<AtomicU64>,
}

impl std::fmt::Debug for MemoryBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBlobStore").finish_non_exhaustive()
    }
}

impl MemoryBlobStore {
    /// An empty blob store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Blobs> {
        self.blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put_temp(&self, mut data: ByteStream) -> Result<TempBlob, BlobError> {
        let mut hasher = BlobHasher::new();
        let mut buf = BytesMut::new();
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(BlobError::Input)?;
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
        }
        let (cid, size) = hasher.finish();
        let key = format!("mem-{}", self.next_key.fetch_add(1, Ordering::Relaxed));
        self.lock()
            .temp
            .insert(key.clone(), (Instant::now(), buf.freeze()));
        Ok(TempBlob { key, cid, size })
    }

    async fn make_permanent(&self, did: &Did, temp_key: &str, cid: &Cid) -> Result<(), BlobError> {
        let mut blobs = self.lock();
        let (_, bytes) = blobs
            .temp
            .remove(temp_key)
            .ok_or_else(|| BlobError::TempNotFound(temp_key.to_owned()))?;
        blobs.permanent.entry((did.clone(), *cid)).or_insert(bytes);
        Ok(())
    }

    async fn get(&self, did: &Did, cid: &Cid) -> Result<Option<StoredBlob>, BlobError> {
        let bytes = self.lock().permanent.get(&(did.clone(), *cid)).cloned();
        Ok(bytes.map(|bytes| StoredBlob {
            size: bytes.len() as u64,
            stream: futures::stream::once(async move { Ok(bytes) }).boxed(),
        }))
    }

    async fn contains(&self, did: &Did, cid: &Cid) -> Result<bool, BlobError> {
        Ok(self.lock().permanent.contains_key(&(did.clone(), *cid)))
    }

    async fn delete(&self, did: &Did, cid: &Cid) -> Result<(), BlobError> {
        self.lock().permanent.remove(&(did.clone(), *cid));
        Ok(())
    }

    async fn delete_temp(&self, temp_key: &str) -> Result<(), BlobError> {
        self.lock().temp.remove(temp_key);
        Ok(())
    }

    async fn delete_temp_older_than(&self, age: Duration) -> Result<u64, BlobError> {
        let mut blobs = self.lock();
        let before = blobs.temp.len();
        blobs.temp.retain(|_, (created, _)| created.elapsed() < age);
        Ok((before - blobs.temp.len()) as u64)
    }
}
