//! Signed repository commits, version 3 of the ATProto repository spec
//! (<https://atproto.com/specs/repository>).
//!
//! A commit is the one signed object of a repository: it names the account
//! (`did`), the root of the MST holding the records (`data`), a revision
//! (`rev`, a TID that grows with every commit) and, for compatibility,
//! `prev` (the previous commit, present but usually null in version 3). The
//! signature covers the DAG-CBOR encoding of the commit without its `sig`
//! field, so whoever holds the account's signing key vouches for the whole
//! tree through `data`.
//!
//! The wire form is a DAG-CBOR map with exactly the fields `did`, `version`
//! (the integer 3), `data`, `rev`, `prev` and `sig` (64 bytes, `r || s`,
//! low-S). Encoding goes through [`Ipld`] maps, so field order is always
//! DAG-CBOR's canonical order; decoding ([`SignedCommit::from_block`]) is
//! strict: canonical DAG-CBOR, exactly these fields with these types, and
//! version 3. Because the accepted bytes are canonical, re-encoding a
//! decoded commit gives the same bytes and so the same CID.

use std::collections::BTreeMap;

use bytes::Bytes;
use cid::Cid;

use crate::crypto::{CryptoError, PublicKey, SIGNATURE_LEN, SigningKey};
use crate::data::{self, DAG_CBOR, DataError, Ipld, cid_for};
use crate::syntax::{Did, SyntaxError, Tid};

/// The only commit version this module reads and writes.
pub const COMMIT_VERSION: i128 = 3;

/// The fields of a signed commit, in canonical (DAG-CBOR) order.
const FIELDS: [&str; 6] = ["did", "rev", "sig", "data", "prev", "version"];

/// Why a commit block was rejected or a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The block is not canonical DAG-CBOR ATProto data.
    #[error("commit block is not valid DAG-CBOR: {0}")]
    Decode(#[source] DataError),
    /// The block is DAG-CBOR but not a map.
    #[error("commit block is not a map")]
    NotAMap,
    /// A required field is absent.
    #[error("commit has no {0:?} field")]
    MissingField(&'static str),
    /// A field that version 3 commits do not have.
    #[error("commit has an unexpected field {0:?}")]
    UnexpectedField(String),
    /// A field has the wrong data-model type.
    #[error("commit field {field:?} must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// The type it must have.
        expected: &'static str,
    },
    /// A `version` other than 3.
    #[error("unsupported commit version {0}: only version 3 is supported")]
    UnsupportedVersion(i128),
    /// `did` is not a DID or `rev` is not a TID.
    #[error("commit field {field:?} is invalid: {source}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        source: SyntaxError,
    },
    /// `sig` is not 64 bytes.
    #[error("commit signature must be {SIGNATURE_LEN} bytes, got {0}")]
    SignatureLength(usize),
    /// The signature does not verify with the given key.
    #[error("commit signature does not verify: {0}")]
    Signature(#[source] CryptoError),
}

/// A commit before signing: what the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnsignedCommit {
    /// The account whose repository this is.
    pub did: Did,
    /// The root of the repository's MST.
    pub data: Cid,
    /// The revision: a TID greater than every earlier commit's.
    pub rev: Tid,
    /// The previous commit; `None` (encoded as null) is normal in version 3.
    pub prev: Option<Cid>,
}

impl UnsignedCommit {
    /// A commit of `did`'s tree rooted at `data`, at revision `rev`, with a
    /// null `prev`.
    pub fn new(did: Did, data: Cid, rev: Tid) -> Self {
        Self {
            did,
            data,
            rev,
            prev: None,
        }
    }

    /// The DAG-CBOR encoding of this unsigned commit: the bytes the
    /// signature covers.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_map(self.to_map())
    }

    /// Signs the commit with the account's signing key.
    pub fn sign(self, key: &SigningKey) -> SignedCommit {
        let sig = key.sign(&self.to_bytes());
        SignedCommit {
            did: self.did,
            data: self.data,
            rev: self.rev,
            prev: self.prev,
            sig,
        }
    }

    fn to_map(&self) -> BTreeMap<String, Ipld> {
        [
            ("did", Ipld::String(self.did.as_str().to_owned())),
            ("version", Ipld::Integer(COMMIT_VERSION)),
            ("data", Ipld::Link(self.data)),
            ("rev", Ipld::String(self.rev.as_str().to_owned())),
            ("prev", self.prev.map_or(Ipld::Null, Ipld::Link)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// A signed commit, as stored in a repository block.
///
/// Holding a `SignedCommit` says nothing about its signature being valid:
/// call [`verify`](Self::verify) with the account's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedCommit {
    /// The account whose repository this is.
    pub did: Did,
    /// The root of the repository's MST.
    pub data: Cid,
    /// The revision: a TID greater than every earlier commit's.
    pub rev: Tid,
    /// The previous commit; `None` (encoded as null) is normal in version 3.
    pub prev: Option<Cid>,
    /// The signature (`r || s`, low-S) of the unsigned commit's encoding.
    pub sig: [u8; SIGNATURE_LEN],
}

impl SignedCommit {
    /// The commit without its signature.
    pub fn unsigned(&self) -> UnsignedCommit {
        UnsignedCommit {
            did: self.did.clone(),
            data: self.data,
            rev: self.rev.clone(),
            prev: self.prev,
        }
    }

    /// The DAG-CBOR encoding of the signed commit.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut map = self.unsigned().to_map();
        map.insert("sig".to_owned(), Ipld::Bytes(self.sig.to_vec()));
        encode_map(map)
    }

    /// The commit's block: its CID (CIDv1, dag-cbor, sha2-256) and bytes.
    pub fn to_block(&self) -> (Cid, Bytes) {
        let bytes = self.to_bytes();
        (cid_for(DAG_CBOR, &bytes), Bytes::from(bytes))
    }

    /// The commit's CID.
    pub fn cid(&self) -> Cid {
        cid_for(DAG_CBOR, &self.to_bytes())
    }

    /// Decodes an untrusted commit block: canonical DAG-CBOR, exactly the
    /// six version 3 fields with their types, `version` 3, `did` a DID,
    /// `rev` a TID and `sig` 64 bytes. The signature is not checked here.
    pub fn from_block(bytes: &[u8]) -> Result<Self, CommitError> {
        let Ipld::Map(mut map) = data::decode_strict(bytes).map_err(CommitError::Decode)? else {
            return Err(CommitError::NotAMap);
        };
        if let Some(extra) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(CommitError::UnexpectedField(
                extra.chars().take(64).collect(),
            ));
        }
        let mut take =
            |field: &'static str| map.remove(field).ok_or(CommitError::MissingField(field));
        let wrong = |field, expected| CommitError::WrongType { field, expected };

        match take("version")? {
            Ipld::Integer(COMMIT_VERSION) => {}
            Ipld::Integer(v) => return Err(CommitError::UnsupportedVersion(v)),
            _ => return Err(wrong("version", "an integer")),
        }
        let Ipld::String(did) = take("did")? else {
            return Err(wrong("did", "a string"));
        };
        let did = Did::parse(did).map_err(|source| CommitError::InvalidField {
            field: "did",
            source,
        })?;
        let Ipld::Link(data) = take("data")? else {
            return Err(wrong("data", "a CID link"));
        };
        let Ipld::String(rev) = take("rev")? else {
            return Err(wrong("rev", "a string"));
        };
        let rev = Tid::parse(rev).map_err(|source| CommitError::InvalidField {
            field: "rev",
            source,
        })?;
        let prev = match take("prev")? {
            Ipld::Null => None,
            Ipld::Link(cid) => Some(cid),
            _ => return Err(wrong("prev", "a CID link or null")),
        };
        let Ipld::Bytes(sig) = take("sig")? else {
            return Err(wrong("sig", "bytes"));
        };
        let sig: [u8; SIGNATURE_LEN] = sig
            .as_slice()
            .try_into()
            .map_err(|_| CommitError::SignatureLength(sig.len()))?;
        Ok(Self {
            did,
            data,
            rev,
            prev,
            sig,
        })
    }

    /// Checks the signature against the account's public key: ECDSA over
    /// the unsigned commit's DAG-CBOR encoding, low-S.
    pub fn verify(&self, key: &PublicKey) -> Result<(), CommitError> {
        key.verify(&self.unsigned().to_bytes(), &self.sig)
            .map_err(CommitError::Signature)
    }
}

/// Encodes a commit map. Encoding an in-memory map of strings, integers,
/// bytes, links and null cannot fail.
fn encode_map(map: BTreeMap<String, Ipld>) -> Vec<u8> {
    data::encode(&Ipld::Map(map)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Curve;
    use crate::syntax::TidClock;

    fn did() -> Did {
        Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap()
    }

    fn commit() -> UnsignedCommit {
        UnsignedCommit::new(did(), cid_for(DAG_CBOR, b"\xa0"), TidClock::new().next())
    }

    /// A map with the fields of a valid signed commit, for mutation.
    fn valid_map() -> BTreeMap<String, Ipld> {
        let signed = commit().sign(&SigningKey::generate(Curve::K256));
        let Ipld::Map(map) = data::decode_strict(&signed.to_bytes()).unwrap() else {
            panic!("not a map");
        };
        map
    }

    fn decode_map(map: BTreeMap<String, Ipld>) -> Result<SignedCommit, CommitError> {
        SignedCommit::from_block(&data::encode(&Ipld::Map(map)).unwrap())
    }

    #[test]
    fn sign_verify_round_trip_both_curves() {
        for curve in Curve::ALL {
            let key = SigningKey::generate(curve);
            let unsigned = commit();
            let signed = unsigned.clone().sign(&key);
            signed.verify(&key.public_key()).unwrap();
            let (cid, bytes) = signed.to_block();
            assert_eq!(cid, signed.cid());
            let decoded = SignedCommit::from_block(&bytes).unwrap();
            assert_eq!(decoded, signed);
            decoded.verify(&key.public_key()).unwrap();
            assert_eq!(decoded.unsigned(), unsigned);
        }
    }

    #[test]
    fn signature_covers_the_unsigned_encoding() {
        let key = SigningKey::generate(Curve::P256);
        let unsigned = commit();
        let signed = unsigned.clone().sign(&key);
        key.public_key()
            .verify(&unsigned.to_bytes(), &signed.sig)
            .unwrap();
        // The unsigned encoding is the signed map without `sig`.
        let mut map = valid_map();
        map.remove("sig");
        let Ipld::Map(unsigned_map) = data::decode_strict(&unsigned.to_bytes()).unwrap() else {
            panic!("not a map");
        };
        assert_eq!(
            unsigned_map.keys().collect::<Vec<_>>(),
            map.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn tampered_fields_fail_verification() {
        let key = SigningKey::generate(Curve::K256);
        let public = key.public_key();
        let signed = commit().sign(&key);

        let mut t = signed.clone();
        t.data = cid_for(DAG_CBOR, b"\xa1\x61a\x01");
        assert!(matches!(t.verify(&public), Err(CommitError::Signature(_))));

        let mut t = signed.clone();
        t.rev = TidClock::new().next_after(&signed.rev);
        assert!(matches!(t.verify(&public), Err(CommitError::Signature(_))));

        let mut t = signed.clone();
        t.did = Did::parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        assert!(matches!(t.verify(&public), Err(CommitError::Signature(_))));

        let mut t = signed.clone();
        t.prev = Some(signed.data);
        assert!(matches!(t.verify(&public), Err(CommitError::Signature(_))));

        let mut t = signed;
        t.sig[10] ^= 1;
        assert!(t.verify(&public).is_err());
    }

    #[test]
    fn wrong_key_fails_verification() {
        for curve in Curve::ALL {
            let signed = commit().sign(&SigningKey::generate(curve));
            for other in Curve::ALL {
                let wrong = SigningKey::generate(other).public_key();
                assert!(matches!(
                    signed.verify(&wrong),
                    Err(CommitError::Signature(_))
                ));
            }
        }
    }

    #[test]
    fn byte_exact_round_trip() {
        let key = SigningKey::generate(Curve::K256);
        let mut unsigned = commit();
        unsigned.prev = Some(cid_for(DAG_CBOR, b"\xa0"));
        for c in [commit(), unsigned] {
            let signed = c.sign(&key);
            let (cid, bytes) = signed.to_block();
            let decoded = SignedCommit::from_block(&bytes).unwrap();
            let (cid2, bytes2) = decoded.to_block();
            assert_eq!(bytes, bytes2);
            assert_eq!(cid, cid2);
        }
    }

    #[test]
    fn canonical_field_order() {
        let signed = commit().sign(&SigningKey::generate(Curve::K256));
        let bytes = signed.to_bytes();
        // A 6-entry map whose first key is "did" and last is "version".
        assert_eq!(bytes[0], 0xa6);
        assert_eq!(&bytes[1..5], b"\x63did");
        assert!(FIELDS.iter().all(|f| valid_map().contains_key(*f)));
    }

    #[test]
    fn rejects_other_versions() {
        for v in [2, 1, 4, 0, -3] {
            let mut map = valid_map();
            map.insert("version".into(), Ipld::Integer(v));
            assert_eq!(decode_map(map), Err(CommitError::UnsupportedVersion(v)));
        }
        let mut map = valid_map();
        map.insert("version".into(), Ipld::String("3".into()));
        assert!(matches!(
            decode_map(map),
            Err(CommitError::WrongType {
                field: "version",
                ..
            })
        ));
    }

    #[test]
    fn rejects_missing_fields() {
        for field in FIELDS {
            let mut map = valid_map();
            map.remove(field);
            assert_eq!(decode_map(map), Err(CommitError::MissingField(field)));
        }
    }

    #[test]
    fn rejects_extra_fields() {
        let mut map = valid_map();
        map.insert("extra".into(), Ipld::Null);
        assert_eq!(
            decode_map(map),
            Err(CommitError::UnexpectedField("extra".into()))
        );
    }

    #[test]
    fn rejects_wrong_types() {
        let link = Ipld::Link(cid_for(DAG_CBOR, b"\xa0"));
        let cases = [
            ("did", Ipld::Bytes(b"did:plc:x".to_vec())),
            ("data", Ipld::Null),
            ("data", Ipld::String("bafyrei".into())),
            ("rev", Ipld::Integer(1)),
            ("prev", Ipld::String("x".into())),
            ("sig", Ipld::String("x".into())),
            ("sig", link),
        ];
        for (field, value) in cases {
            let mut map = valid_map();
            map.insert(field.into(), value);
            assert!(
                matches!(decode_map(map), Err(CommitError::WrongType { field: f, .. }) if f == field),
                "{field}"
            );
        }
    }

    #[test]
    fn rejects_invalid_values() {
        let mut map = valid_map();
        map.insert("did".into(), Ipld::String("not-a-did".into()));
        assert!(matches!(
            decode_map(map),
            Err(CommitError::InvalidField { field: "did", .. })
        ));
        let mut map = valid_map();
        map.insert("rev".into(), Ipld::String("3jzfcijpj2z2".into()));
        assert!(matches!(
            decode_map(map),
            Err(CommitError::InvalidField { field: "rev", .. })
        ));
        for len in [0, 63, 65, 72] {
            let mut map = valid_map();
            map.insert("sig".into(), Ipld::Bytes(vec![1; len]));
            assert_eq!(decode_map(map), Err(CommitError::SignatureLength(len)));
        }
    }

    #[test]
    fn rejects_non_maps_and_non_canonical_bytes() {
        let list = data::encode(&Ipld::List(vec![])).unwrap();
        assert_eq!(SignedCommit::from_block(&list), Err(CommitError::NotAMap));
        assert!(matches!(
            SignedCommit::from_block(b"\xff"),
            Err(CommitError::Decode(_))
        ));
        assert!(matches!(
            SignedCommit::from_block(b""),
            Err(CommitError::Decode(_))
        ));
        // A valid commit with a non-minimal integer for `version`.
        let bytes = commit().sign(&SigningKey::generate(Curve::K256)).to_bytes();
        let tail = b"\x67version\x03";
        assert!(bytes.ends_with(tail));
        let mut padded = bytes[..bytes.len() - 1].to_vec();
        padded.extend_from_slice(b"\x18\x03");
        assert!(matches!(
            SignedCommit::from_block(&padded),
            Err(CommitError::Decode(DataError::NonCanonical(_)))
        ));
    }

    proptest::proptest! {
        /// Random bytes, and a real commit with one byte changed, decode to
        /// an error or a commit, never a panic; a changed commit never
        /// verifies under the original key.
        #[test]
        fn decoding_garbage_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            flip in proptest::prelude::any::<usize>(),
        ) {
            let _ = SignedCommit::from_block(&bytes);
            let key = SigningKey::generate(Curve::K256);
            let commit = UnsignedCommit::new(
                Did::parse("did:plc:abc").unwrap(),
                crate::data::cid_for(crate::data::DAG_CBOR, b"root"),
                crate::syntax::TidClock::with_clock_id(1).next(),
            )
            .sign(&key);
            let mut mangled = commit.to_bytes();
            let at = flip % mangled.len();
            mangled[at] ^= 0x01;
            if let Ok(decoded) = SignedCommit::from_block(&mangled) {
                proptest::prop_assert!(decoded.verify(&key.public_key()).is_err());
            }
        }
    }
}
