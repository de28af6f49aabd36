//! DAG-CBOR encoding and strict decoding.
//!
//! Decoding untrusted bytes first walks the CBOR structure without
//! recursion, rejecting floats, indefinite lengths, tags other than 42 (CID)
//! and nesting deeper than [`MAX_DEPTH`], so that the recursive decoder
//! afterwards cannot be driven into a stack overflow. Strict decoding then
//! re-encodes the value and requires the same bytes: that is the canonical
//! form check (map keys sorted length-first, minimal integer and length
//! encodings).

use ipld_core::ipld::Ipld;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::DataError;

/// How deep values may nest: the top-level value is at depth 0, and every
/// value (scalar, array or map) must be at a depth below `MAX_DEPTH`. This
/// is the recursive decoder's own limit, so that whatever the checks here
/// and [`validate`](super::validate) accept also decodes.
pub const MAX_DEPTH: usize = 128;

/// Encodes a value as DAG-CBOR.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, DataError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| DataError::MalformedCbor(e.to_string()))
}

/// Decodes DAG-CBOR we wrote ourselves (blocks read back from our own
/// storage): structure-checked, but not re-encoded for the canonical check.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DataError> {
    check_structure(bytes)?;
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| DataError::MalformedCbor(e.to_string()))
}

/// Decodes untrusted DAG-CBOR into a data-model value, rejecting anything
/// that is not canonical ATProto data.
pub fn decode_strict(bytes: &[u8]) -> Result<Ipld, DataError> {
    let value: Ipld = decode(bytes)?;
    if encode(&value)? != bytes {
        return Err(DataError::NonCanonical(
            "re-encoding differs (unsorted map keys, duplicate keys or non-minimal encoding)",
        ));
    }
    super::validate(&value)?;
    Ok(value)
}

/// Checks that `bytes` is exactly one CBOR item within DAG-CBOR's subset.
fn check_structure(bytes: &[u8]) -> Result<(), DataError> {
    if first_item_len(bytes)? != bytes.len() {
        return Err(DataError::MalformedCbor(
            "trailing bytes after the value".to_owned(),
        ));
    }
    Ok(())
}

/// Walks the first CBOR item in `bytes` iteratively, checking it stays
/// within DAG-CBOR's subset, and returns its length in bytes. (Event-stream
/// frames are two items back to back.)
pub fn first_item_len(bytes: &[u8]) -> Result<usize, DataError> {
    let malformed = |m: &str| DataError::MalformedCbor(m.to_owned());
    // Items still expected at each open nesting level.
    let mut pending: Vec<u64> = Vec::new();
    let mut pos = 0usize;
    let mut remaining_top = 1u64;
    loop {
        // Close finished containers.
        while let Some(0) = pending.last() {
            pending.pop();
        }
        let expecting = match pending.last_mut() {
            Some(n) => n,
            None if remaining_top > 0 => &mut remaining_top,
            None => break,
        };
        *expecting -= 1;

        let Some(&initial) = bytes.get(pos) else {
            return Err(malformed("unexpected end of input"));
        };
        pos += 1;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg: u64 = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let len = 1usize << (info - 24);
                let slice = bytes
                    .get(pos..pos + len)
                    .ok_or_else(|| malformed("truncated argument"))?;
                pos += len;
                slice.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            31 => {
                return Err(DataError::NonCanonical(
                    "indefinite-length items are not allowed",
                ));
            }
            _ => return Err(malformed("reserved additional information")),
        };
        match major {
            0 | 1 => {}
            2 | 3 => {
                let len = usize::try_from(arg).map_err(|_| malformed("length too large"))?;
                let end = pos
                    .checked_add(len)
                    .ok_or_else(|| malformed("length too large"))?;
                if end > bytes.len() {
                    return Err(malformed("truncated string"));
                }
                pos = end;
            }
            4 | 5 => {
                let items = if major == 5 {
                    arg.checked_mul(2)
                } else {
                    Some(arg)
                }
                .ok_or_else(|| malformed("length too large"))?;
                // Each item needs at least one byte: reject absurd lengths early.
                if items > (bytes.len() - pos) as u64 {
                    return Err(malformed("container longer than the input"));
                }
                if items > 0 {
                    // The items will be at depth `pending.len() + 1`.
                    if pending.len() + 1 >= MAX_DEPTH {
                        return Err(DataError::TooDeep);
                    }
                    pending.push(items);
                }
            }
            6 => {
                if arg != 42 {
                    return Err(malformed("only tag 42 (CID) is allowed"));
                }
                // The tagged item (a byte string) follows.
                match pending.last_mut() {
                    Some(n) => *n += 1,
                    None => remaining_top += 1,
                }
            }
            _ => match info {
                20..=22 => {}
                25..=27 => return Err(DataError::Float),
                _ => return Err(malformed("unsupported simple value")),
            },
        }
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_hostile_structures_without_panicking() {
        // Deep nesting: 100k nested one-element arrays.
        let deep = vec![0x81u8; 100_000];
        assert_eq!(decode::<Ipld>(&deep), Err(DataError::TooDeep));
        // A map claiming 2^32 entries.
        assert!(decode::<Ipld>(&[0xbb, 0, 0, 0, 1, 0, 0, 0, 0]).is_err());
        // Float.
        assert_eq!(
            decode::<Ipld>(&[0xfb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18]),
            Err(DataError::Float)
        );
        // Indefinite-length array.
        assert!(matches!(
            decode::<Ipld>(&[0x9f, 0x01, 0xff]),
            Err(DataError::NonCanonical(_))
        ));
        // Trailing bytes, truncation, empty input.
        assert!(decode::<Ipld>(&[0x01, 0x01]).is_err());
        assert!(decode::<Ipld>(&[0x62, b'a']).is_err());
        assert!(decode::<Ipld>(&[]).is_err());
        // Non-canonical: a map with keys out of order {"b":1,"a":2}.
        let unsorted = [0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02];
        assert!(matches!(
            decode_strict(&unsorted),
            Err(DataError::NonCanonical(_))
        ));
        // Non-minimal integer: 1 encoded in two bytes.
        assert!(matches!(
            decode_strict(&[0x18, 0x01]),
            Err(DataError::NonCanonical(_))
        ));
        // Other tags.
        assert!(decode::<Ipld>(&[0xc1, 0x01]).is_err());
    }

    /// Found by the fuzz campaign (core/fuzz, corpus/dag_cbor/crash-3e922d08bc4c1c7d):
    /// values at depth 128 passed `validate` and the structural walk but
    /// not the recursive decoder, so a record that `json_to_ipld` accepted
    /// encoded to bytes that `decode` refused.
    #[test]
    fn the_depth_limit_is_the_decoders() {
        use crate::data::{ipld_to_json, json_to_ipld, validate};
        let nest = |levels: usize, leaf: Ipld| (1..levels).fold(leaf, |v, _| Ipld::List(vec![v]));
        for leaf in [
            Ipld::Integer(0),
            Ipld::List(vec![]),
            Ipld::Map(std::collections::BTreeMap::new()),
        ] {
            // Values at depths 0 to MAX_DEPTH - 1: valid, and they decode.
            let deepest = nest(MAX_DEPTH, leaf.clone());
            assert_eq!(validate(&deepest), Ok(()));
            let bytes = encode(&deepest).unwrap();
            assert_eq!(decode_strict(&bytes), Ok(deepest.clone()));
            let json = ipld_to_json(&deepest).unwrap();
            assert_eq!(json_to_ipld(&json), Ok(deepest));
            // One level more: refused everywhere.
            let deeper = nest(MAX_DEPTH + 1, leaf);
            assert_eq!(validate(&deeper), Err(DataError::TooDeep));
            assert_eq!(
                decode::<Ipld>(&encode(&deeper).unwrap()),
                Err(DataError::TooDeep)
            );
            let json = ipld_to_json(&deeper).unwrap();
            assert_eq!(json_to_ipld(&json), Err(DataError::TooDeep));
        }
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode_strict(&bytes);
        }
    }
}
