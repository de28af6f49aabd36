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

/// The head of the CBOR item at `pos`: its major type, additional
/// information, argument, and where its content starts.
fn head(bytes: &[u8], pos: usize) -> Result<(u8, u8, u64, usize), DataError> {
    let malformed = |m: &str| DataError::MalformedCbor(m.to_owned());
    let Some(&initial) = bytes.get(pos) else {
        return Err(malformed("unexpected end of input"));
    };
    let pos = pos + 1;
    let (major, info) = (initial >> 5, initial & 0x1f);
    let (arg, next) = match info {
        0..=23 => (u64::from(info), pos),
        24..=27 => {
            let len = 1usize << (info - 24);
            let slice = bytes
                .get(pos..pos + len)
                .ok_or_else(|| malformed("truncated argument"))?;
            let arg = slice.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            (arg, pos + len)
        }
        31 => {
            return Err(DataError::NonCanonical(
                "indefinite-length items are not allowed",
            ));
        }
        _ => return Err(malformed("reserved additional information")),
    };
    Ok((major, info, arg, next))
}

/// Writes a CBOR head in its shortest form (as DAG-CBOR requires).
fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let major = major << 5;
    let bytes = arg.to_be_bytes();
    // The argument in the initial byte (below 24), or after it in 1, 2, 4
    // or 8 bytes (additional information 24 to 27).
    let (info, len) = match arg {
        0..=23 => (bytes[7], 0),
        24..=0xff => (0x18, 1),
        0x100..=0xffff => (0x19, 2),
        0x1_0000..=0xffff_ffff => (0x1a, 4),
        _ => (0x1b, 8),
    };
    out.push(major | info);
    out.extend_from_slice(&bytes[8 - len..]);
}

/// Whether map key `a` sorts before `b` in DAG-CBOR: shorter first, then
/// bytewise.
fn key_before(a: &[u8], b: &[u8]) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// Appends to `out` the canonical DAG-CBOR map `map` with the integer
/// entry `key: value` added at its place, without decoding the map's
/// values: only its structure and the order of its keys are checked.
/// `map` must not have `key` already.
pub fn append_map_with_int(
    map: &[u8],
    key: &str,
    value: i64,
    out: &mut Vec<u8>,
) -> Result<(), DataError> {
    let invalid = |why: &'static str| DataError::NonCanonical(why);
    let (major, _, count, entries) = head(map, 0)?;
    if major != 5 {
        return Err(DataError::MalformedCbor("not a map".to_owned()));
    }
    let mut pos = entries;
    let mut place = None;
    let mut previous: Option<&[u8]> = None;
    for _ in 0..count {
        let (major, _, len, start) = head(map, pos)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|end| *end <= map.len())
            .ok_or_else(|| DataError::MalformedCbor("truncated string".to_owned()))?;
        let this = &map[start..end];
        if major != 3 {
            return Err(DataError::MalformedCbor(
                "map keys must be strings".to_owned(),
            ));
        }
        if previous.is_some_and(|p| !key_before(p, this)) {
            return Err(invalid("map keys out of order or repeated"));
        }
        if this == key.as_bytes() {
            return Err(invalid("the map has the key already"));
        }
        if place.is_none() && key_before(key.as_bytes(), this) {
            place = Some(pos);
        }
        previous = Some(this);
        pos = end + first_item_len(&map[end..])?;
    }
    if pos != map.len() {
        return Err(DataError::MalformedCbor(
            "trailing bytes after the map".to_owned(),
        ));
    }
    let place = place.unwrap_or(pos);
    out.reserve(map.len() + key.len() + 12);
    write_head(out, 5, count + 1);
    out.extend_from_slice(&map[entries..place]);
    write_head(out, 3, key.len() as u64);
    out.extend_from_slice(key.as_bytes());
    // A negative integer n is written as major type 1 with -1 - n.
    match u64::try_from(value) {
        Ok(positive) => write_head(out, 0, positive),
        Err(_) => write_head(out, 1, value.unsigned_abs() - 1),
    }
    out.extend_from_slice(&map[place..]);
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

        let (major, info, arg, next) = head(bytes, pos)?;
        pos = next;
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
    use std::collections::BTreeMap;

    /// The spliced map is what encoding the map with the entry would
    /// give, wherever the key falls and whatever the value's size.
    #[test]
    fn an_int_entry_is_added_at_its_canonical_place() {
        let maps: Vec<Vec<(&str, Ipld)>> = vec![
            vec![],
            vec![("a", Ipld::Null)],
            vec![("zz", Ipld::Bool(true)), ("ops", Ipld::List(vec![]))],
            vec![
                ("op", Ipld::Integer(1)),
                ("rev", Ipld::String("3l".into())),
                ("sez", Ipld::Bytes(vec![7; 300])),
                ("blocks", Ipld::Bytes(vec![1; 70_000])),
                ("prevData", Ipld::Map([("x".to_owned(), Ipld::Null)].into())),
            ],
        ];
        for entries in maps {
            let map: BTreeMap<String, Ipld> = entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            let bytes = encode(&Ipld::Map(map.clone())).unwrap();
            for value in [0, 23, 24, 255, 65_536, i64::MAX, -1, -25, i64::MIN] {
                let mut out = vec![0xaa];
                append_map_with_int(&bytes, "seq", value, &mut out).unwrap();
                let mut expected = map.clone();
                expected.insert("seq".to_owned(), Ipld::Integer(i128::from(value)));
                assert_eq!(out[0], 0xaa, "appended after what was there");
                assert_eq!(out[1..], encode(&Ipld::Map(expected)).unwrap()[..]);
            }
        }
    }

    #[test]
    fn an_int_entry_is_added_only_to_a_canonical_map_without_it() {
        let add = |bytes: &[u8]| append_map_with_int(bytes, "seq", 1, &mut Vec::new());
        let with_seq = encode(&Ipld::Map([("seq".to_owned(), Ipld::Integer(2))].into())).unwrap();
        assert!(add(&with_seq).is_err(), "the key is there already");
        assert!(
            add(&encode(&Ipld::List(vec![])).unwrap()).is_err(),
            "not a map"
        );
        let mut trailing = encode(&Ipld::Map(BTreeMap::new())).unwrap();
        trailing.push(0);
        assert!(add(&trailing).is_err(), "trailing bytes");
        // {"b": 1, "a": 1}: keys out of order.
        assert!(add(&[0xa2, 0x61, b'b', 1, 0x61, b'a', 1]).is_err());
        // A map with an integer key.
        assert!(add(&[0xa1, 0x01, 0x01]).is_err());
        // Truncated.
        assert!(add(&[0xa1, 0x61]).is_err());
        assert!(add(&[]).is_err());
    }

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
