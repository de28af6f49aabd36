//! The ATProto data model: DAG-CBOR values ([`Ipld`]), their JSON form,
//! blob references, and CIDs.
//!
//! ATProto uses CIDv1 with sha2-256 and one of two codecs: `dag-cbor` for
//! records, commits and MST nodes, `raw` for blobs.

mod blob;
mod cbor;
mod json;

pub use blob::{BlobRef, collect_blob_refs};
pub use cbor::{MAX_DEPTH, append_map_with_int, decode, decode_strict, encode, first_item_len};
pub use ipld_core::ipld::Ipld;
#[cfg(test)]
pub(crate) use json::BASE64_LENIENT;
pub use json::{ipld_to_json, json_to_ipld, validate};

/// Why a value is not valid ATProto data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// Bytes are not well-formed DAG-CBOR.
    #[error("malformed DAG-CBOR: {0}")]
    MalformedCbor(String),
    /// Well-formed CBOR that is not in DAG-CBOR's canonical form (map key
    /// order, minimal integers, definite lengths).
    #[error("DAG-CBOR is not canonical: {0}")]
    NonCanonical(&'static str),
    /// Floating-point numbers are not part of the ATProto data model.
    #[error("floating-point numbers are not allowed")]
    Float,
    /// An integer outside the 64-bit signed range.
    #[error("integer out of range")]
    IntegerRange,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("data nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A malformed `$link`, `$bytes`, `$type` or blob.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which construct.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Not valid JSON.
    #[error("malformed JSON: {0}")]
    Json(String),
}

impl DataError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

use cid::Cid;
use cid::multihash::Multihash;
use sha2::{Digest, Sha256};

/// Multicodec code of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec code of raw bytes (blobs).
pub const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// The CIDv1 of `digest` (a sha2-256 digest) under `codec`.
pub fn cid_from_sha256(codec: u64, digest: &[u8; 32]) -> Cid {
    // A 32-byte digest always fits the 64-byte multihash.
    let mh = Multihash::<64>::wrap(SHA2_256, digest).unwrap_or_default();
    Cid::new_v1(codec, mh)
}

/// The CIDv1 (sha2-256) of `bytes` under `codec`.
pub fn cid_for(codec: u64, bytes: &[u8]) -> Cid {
    cid_from_sha256(codec, &Sha256::digest(bytes).into())
}

/// Hashes blob content as it streams past, giving its raw-codec CID and size.
#[derive(Debug, Clone, Default)]
pub struct BlobHasher {
    sha: Sha256,
    size: u64,
}

impl BlobHasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.sha.update(chunk);
        self.size += chunk.len() as u64;
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The CID (raw codec) and size of everything fed.
    pub fn finish(self) -> (Cid, u64) {
        (cid_from_sha256(RAW, &self.sha.finalize().into()), self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_cids() {
        // The empty byte string, as raw and as dag-cbor.
        assert_eq!(
            cid_for(RAW, b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert!(
            cid_for(DAG_CBOR, b"\xa0")
                .to_string()
                .starts_with("bafyrei")
        );
        let mut h = BlobHasher::new();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), (cid_for(RAW, b"hello world"), 11));
    }
}
