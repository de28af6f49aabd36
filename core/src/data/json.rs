//! The JSON form of the ATProto data model, and the data model's own rules.
//!
//! In JSON, a CID link is `{"$link": "<cid>"}` and bytes are
//! `{"$bytes": "<base64>"}` (standard alphabet, no padding); both objects
//! have exactly that one key. Numbers are integers (an integral float such
//! as `123.0` is read as the integer it is). An object's `$type`, when
//! present, is a non-empty string, and an object of `$type` `blob` is a
//! well-formed blob reference.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use cid::Cid;
use ipld_core::ipld::Ipld;
use serde_json::Value;

use super::{BlobRef, DataError, MAX_DEPTH};

/// Standard base64 that accepts input with or without padding.
pub(crate) const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Converts ATProto JSON to a data-model value, enforcing the data model.
pub fn json_to_ipld(value: &Value) -> Result<Ipld, DataError> {
    let ipld = convert_json(value, 0)?;
    validate(&ipld)?;
    Ok(ipld)
}

fn convert_json(value: &Value, depth: usize) -> Result<Ipld, DataError> {
    if depth >= MAX_DEPTH {
        return Err(DataError::TooDeep);
    }
    Ok(match value {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::String(s) => Ipld::String(s.clone()),
        Value::Number(n) => Ipld::Integer(json_integer(n)?),
        Value::Array(items) => Ipld::List(
            items
                .iter()
                .map(|v| convert_json(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            if let Some(link) = map.get("$link") {
                if map.len() != 1 {
                    return Err(DataError::invalid(
                        "$link",
                        "an object with $link has no other keys",
                    ));
                }
                let Value::String(s) = link else {
                    return Err(DataError::invalid("$link", "must be a string"));
                };
                let cid = Cid::try_from(s.as_str())
                    .map_err(|e| DataError::invalid("$link", format!("{s:?}: {e}")))?;
                return Ok(Ipld::Link(cid));
            }
            if let Some(bytes) = map.get("$bytes") {
                if map.len() != 1 {
                    return Err(DataError::invalid(
                        "$bytes",
                        "an object with $bytes has no other keys",
                    ));
                }
                let Value::String(s) = bytes else {
                    return Err(DataError::invalid("$bytes", "must be a base64 string"));
                };
                let decoded = BASE64_LENIENT
                    .decode(s)
                    .map_err(|e| DataError::invalid("$bytes", e.to_string()))?;
                return Ok(Ipld::Bytes(decoded));
            }
            let mut out = BTreeMap::new();
            for (k, v) in map {
                out.insert(k.clone(), convert_json(v, depth + 1)?);
            }
            Ipld::Map(out)
        }
    })
}

fn json_integer(n: &serde_json::Number) -> Result<i128, DataError> {
    if let Some(i) = n.as_i64() {
        return Ok(i128::from(i));
    }
    if n.as_u64().is_some() {
        return Err(DataError::IntegerRange);
    }
    match n.as_f64() {
        // An integral float (`123.0`) is the integer it denotes.
        #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
        Some(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Ok(f as i128),
        _ => Err(DataError::Float),
    }
}

/// Converts a data-model value to ATProto JSON.
pub fn ipld_to_json(value: &Ipld) -> Result<Value, DataError> {
    Ok(match value {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => Value::from(i64::try_from(*i).map_err(|_| DataError::IntegerRange)?),
        Ipld::Float(_) => return Err(DataError::Float),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => {
            serde_json::json!({ "$bytes": general_purpose::STANDARD_NO_PAD.encode(b) })
        }
        Ipld::List(items) => {
            Value::Array(items.iter().map(ipld_to_json).collect::<Result<_, _>>()?)
        }
        Ipld::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), ipld_to_json(v)?)))
                .collect::<Result<_, DataError>>()?,
        ),
        Ipld::Link(cid) => serde_json::json!({ "$link": cid.to_string() }),
    })
}

/// Checks a value against the ATProto data model: no floats, 64-bit
/// integers, bounded depth, well-formed `$type` and blobs.
pub fn validate(value: &Ipld) -> Result<(), DataError> {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth >= MAX_DEPTH {
            return Err(DataError::TooDeep);
        }
        match v {
            Ipld::Float(_) => return Err(DataError::Float),
            Ipld::Integer(i) if i64::try_from(*i).is_err() => return Err(DataError::IntegerRange),
            Ipld::List(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Ipld::Map(map) => {
                match map.get("$type") {
                    Some(Ipld::String(t)) if t == "blob" => {
                        BlobRef::from_ipld(v)?;
                    }
                    None => {}
                    Some(Ipld::String(t)) if !t.is_empty() => {}
                    Some(_) => {
                        return Err(DataError::invalid("$type", "must be a non-empty string"));
                    }
                }
                stack.extend(map.values().map(|i| (i, depth + 1)));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DAG_CBOR, cid_for, decode_strict, encode};
    use base64::engine::general_purpose::STANDARD_NO_PAD;

    fn fixtures(name: &str) -> Option<Vec<Value>> {
        crate::interop::cases(&format!("data-model/{name}"))
    }

    #[test]
    fn interop_data_model_fixtures() {
        let Some(cases) = fixtures("data-model-fixtures.json") else {
            return;
        };
        for case in &cases {
            let ipld = json_to_ipld(&case["json"]).unwrap();
            let cbor = encode(&ipld).unwrap();
            let expected = STANDARD_NO_PAD
                .decode(case["cbor_base64"].as_str().unwrap())
                .unwrap();
            assert_eq!(cbor, expected, "CBOR of {}", case["json"]);
            assert_eq!(
                cid_for(DAG_CBOR, &cbor).to_string(),
                case["cid"].as_str().unwrap()
            );
            // And back: CBOR -> data model -> JSON is the same JSON.
            let decoded = decode_strict(&expected).unwrap();
            assert_eq!(decoded, ipld);
            assert_eq!(ipld_to_json(&decoded).unwrap(), case["json"]);
        }
        eprintln!("data-model-fixtures.json: {} cases passed", cases.len());
        assert!(!cases.is_empty());
    }

    #[test]
    fn interop_data_model_valid_and_invalid() {
        if let Some(cases) = fixtures("data-model-valid.json") {
            for case in &cases {
                let ipld =
                    json_to_ipld(&case["json"]).unwrap_or_else(|e| panic!("{}: {e}", case["note"]));
                let cbor = encode(&ipld).unwrap();
                assert_eq!(decode_strict(&cbor).unwrap(), ipld, "{}", case["note"]);
            }
            eprintln!("data-model-valid.json: {} cases passed", cases.len());
        }
        if let Some(cases) = fixtures("data-model-invalid.json") {
            for case in &cases {
                let result = json_to_ipld(&case["json"]).and_then(|v| {
                    // A record (the fixtures' top level) must be an object.
                    if matches!(v, Ipld::Map(_)) {
                        Ok(v)
                    } else {
                        Err(DataError::invalid("record", "not an object"))
                    }
                });
                assert!(result.is_err(), "accepted invalid: {}", case["note"]);
            }
            eprintln!("data-model-invalid.json: {} cases passed", cases.len());
        }
    }

    #[test]
    fn links_bytes_and_numbers() {
        let cid = cid_for(DAG_CBOR, b"x");
        let v = json_to_ipld(&serde_json::json!({
            "l": { "$link": cid.to_string() },
            "b": { "$bytes": "AQID" },
            "padded": { "$bytes": "AQI=" },
            "n": -5,
            "f": 7.0,
        }))
        .unwrap();
        let Ipld::Map(m) = &v else { panic!() };
        assert_eq!(m["l"], Ipld::Link(cid));
        assert_eq!(m["b"], Ipld::Bytes(vec![1, 2, 3]));
        assert_eq!(m["padded"], Ipld::Bytes(vec![1, 2]));
        assert_eq!(m["f"], Ipld::Integer(7));
        let back = ipld_to_json(&v).unwrap();
        assert_eq!(back["b"]["$bytes"], "AQID");
        assert_eq!(back["padded"]["$bytes"], "AQI");
        assert!(matches!(
            json_to_ipld(&serde_json::json!({ "x": 1.5 })),
            Err(DataError::Float)
        ));
        assert!(matches!(
            json_to_ipld(&serde_json::json!({ "x": u64::MAX })),
            Err(DataError::IntegerRange)
        ));
        let mut deep = serde_json::json!(1);
        for _ in 0..200 {
            deep = serde_json::json!([deep]);
        }
        assert!(matches!(json_to_ipld(&deep), Err(DataError::TooDeep)));
    }
}
