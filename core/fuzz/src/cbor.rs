//! `dag_cbor`: aurora-core's DAG-CBOR decoding.

use aurora_core::data::{self, Ipld};

use crate::Outcome;

/// Feeds `data` to the DAG-CBOR decoders and checks what they promise:
///
/// - strict decoding accepts only canonical bytes: re-encoding the value
///   gives the same bytes, and the value is valid ATProto data;
/// - the structural walk (`first_item_len`) agrees with decoding: what
///   decodes is exactly one item, and the walk never claims more bytes
///   than there are;
/// - what strict decoding accepts, lenient decoding accepts as the same
///   value;
/// - the JSON form of an accepted value reads back as the same value,
///   unless a map in it uses the reserved keys `$link` or `$bytes` (which
///   the JSON form cannot tell from a link or bytes);
/// - the data model's validator and the decoder agree on nesting: the
///   accepted value wrapped in one more list is valid exactly when its
///   encoding decodes.
pub fn dag_cbor(data: &[u8]) -> Outcome {
    let first = data::first_item_len(data);
    if let Ok(n) = first {
        assert!(n <= data.len(), "first_item_len {n} > {}", data.len());
        assert!(n > 0, "an item has at least one byte");
    }
    let lenient = data::decode::<Ipld>(data);
    if lenient.is_ok() {
        assert_eq!(first, Ok(data.len()), "decoded bytes are one whole item");
    }
    let strict = data::decode_strict(data);
    let Ok(value) = strict else {
        return Outcome::Rejected;
    };
    assert_eq!(
        lenient.as_ref(),
        Ok(&value),
        "lenient and strict decoding disagree"
    );
    let encoded = data::encode(&value).expect("an accepted value encodes");
    assert_eq!(
        encoded, data,
        "strict decoding accepted non-canonical bytes"
    );
    data::validate(&value).expect("an accepted value is valid data");
    let wrapped = Ipld::List(vec![value.clone()]);
    let wrapped_bytes = data::encode(&wrapped).expect("a list of a value encodes");
    assert_eq!(
        data::validate(&wrapped).is_ok(),
        data::decode_strict(&wrapped_bytes).is_ok(),
        "the validator and the decoder disagree on a value one level deeper"
    );
    let json = data::ipld_to_json(&value).expect("an accepted value has a JSON form");
    if !uses_reserved_keys(&value) {
        let back = data::json_to_ipld(&json);
        assert_eq!(
            back.as_ref(),
            Ok(&value),
            "the JSON form does not read back as the same value"
        );
    }
    Outcome::Accepted
}

/// Whether some map in `value` has a `$link` or `$bytes` key.
fn uses_reserved_keys(value: &Ipld) -> bool {
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Ipld::Map(m) => {
                if m.contains_key("$link") || m.contains_key("$bytes") {
                    return true;
                }
                stack.extend(m.values());
            }
            Ipld::List(items) => stack.extend(items),
            _ => {}
        }
    }
    false
}
