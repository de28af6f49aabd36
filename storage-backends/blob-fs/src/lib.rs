//! # aurora-blob-fs
//!
//! [`FsBlobStore`]: blobs as files under one directory.
//!
//! ```text
//! <root>/tmp/<32 hex chars>          uploads not yet referenced by a record
//! <root>/blobs/<escaped DID>/<CID>   permanent blobs, one folder per account
//! ```
//!
//! Uploads stream to a temporary file and are fsynced before the upload
//! returns; `make_permanent` is an atomic rename within the same filesystem
//! followed by an fsync of the folder, so a blob referenced by a committed
//! record survives a crash. Every path component is derived from validated
//! or escaped input, so no parameter can point outside the root.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aurora_core::cid::Cid;
use aurora_core::data::BlobHasher;
use aurora_core::store::{BlobError, BlobStore, ByteStream, StoredBlob, TempBlob};
use aurora_core::syntax::Did;
use futures::StreamExt;
use tokio::fs;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

/// A [`BlobStore`] on the local filesystem.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// Opens (creating when missing) a blob store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join("tmp")).await?;
        fs::create_dir_all(root.join("blobs")).await?;
        Ok(Self { root })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn temp_path(&self, key: &str) -> Result<PathBuf, BlobError> {
        // Keys are ours: 32 lowercase hex characters. Anything else cannot
        // name a temporary file (and cannot escape the folder).
        if key.len() == 32 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(self.root.join("tmp").join(key))
        } else {
            Err(BlobError::TempNotFound(key.to_owned()))
        }
    }

    fn account_dir(&self, did: &Did) -> PathBuf {
        self.root.join("blobs").join(escape_did(did))
    }

    fn blob_path(&self, did: &Did, cid: &Cid) -> PathBuf {
        // A CID's string form is multibase base32: letters and digits only.
        self.account_dir(did).join(cid.to_string())
    }
}

/// Escapes a DID into one safe folder name: letters, digits and `-` stay,
/// every other byte becomes `%XX`. Injective, and never `.` or `..`.
fn escape_did(did: &Did) -> String {
    let mut out = String::with_capacity(did.as_str().len() + 8);
    for b in did.as_str().bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push_str(&hex::encode_upper([b]));
        }
    }
    out
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir).await?.sync_all().await
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put_temp(&self, mut data: ByteStream) -> Result<TempBlob, BlobError> {
        let key = hex::encode(rand::random::<[u8; 16]>());
        let path = self.temp_path(&key)?;
        let mut file = fs::File::create(&path).await.map_err(BlobError::Storage)?;
        let mut hasher = BlobHasher::new();
        let written: Result<(), BlobError> = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(BlobError::Input)?;
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(BlobError::Storage)?;
            }
            file.sync_all().await.map_err(BlobError::Storage)
        }
        .await;
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(&path).await;
            return Err(e);
        }
        let (cid, size) = hasher.finish();
        Ok(TempBlob { key, cid, size })
    }

    async fn make_permanent(&self, did: &Did, temp_key: &str, cid: &Cid) -> Result<(), BlobError> {
        let temp = self.temp_path(temp_key)?;
        let dir = self.account_dir(did);
        fs::create_dir_all(&dir).await.map_err(BlobError::Storage)?;
        let target = self.blob_path(did, cid);
        if fs::try_exists(&target).await.map_err(BlobError::Storage)? {
            let _ = fs::remove_file(&temp).await;
            return Ok(());
        }
        match fs::rename(&temp, &target).await {
            Ok(()) => sync_dir(&dir).await.map_err(BlobError::Storage),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::TempNotFound(temp_key.to_owned()))
            }
            Err(e) => Err(BlobError::Storage(e)),
        }
    }

    async fn get(&self, did: &Did, cid: &Cid) -> Result<Option<StoredBlob>, BlobError> {
        let file = match fs::File::open(self.blob_path(did, cid)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BlobError::Storage(e)),
        };
        let size = file.metadata().await.map_err(BlobError::Storage)?.len();
        Ok(Some(StoredBlob {
            size,
            stream: ReaderStream::with_capacity(file, 64 * 1024).boxed(),
        }))
    }

    async fn contains(&self, did: &Did, cid: &Cid) -> Result<bool, BlobError> {
        fs::try_exists(self.blob_path(did, cid))
            .await
            .map_err(BlobError::Storage)
    }

    async fn delete(&self, did: &Did, cid: &Cid) -> Result<(), BlobError> {
        match fs::remove_file(self.blob_path(did, cid)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::Storage(e)),
        }
    }

    async fn delete_temp(&self, temp_key: &str) -> Result<(), BlobError> {
        let Ok(path) = self.temp_path(temp_key) else {
            return Ok(());
        };
        match fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::Storage(e)),
        }
    }

    async fn delete_temp_older_than(&self, age: Duration) -> Result<u64, BlobError> {
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut entries = fs::read_dir(self.root.join("tmp"))
            .await
            .map_err(BlobError::Storage)?;
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await.map_err(BlobError::Storage)? {
            let modified = entry.metadata().await.and_then(|m| m.modified());
            if matches!(modified, Ok(t) if t <= cutoff)
                && fs::remove_file(entry.path()).await.is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_escaping_is_safe_and_injective() {
        let a = escape_did(&Did::parse("did:web:x:y").unwrap());
        let b = escape_did(&Did::parse("did:web:x%3Ay").unwrap());
        assert_ne!(a, b);
        let dots = escape_did(&Did::parse("did:web:..").unwrap());
        assert!(!dots.contains('.') && !dots.contains('/'));
    }
}
