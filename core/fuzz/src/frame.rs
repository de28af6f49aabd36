//! `firehose_frame`: the `subscribeRepos` frame decoder, and what a
//! consumer does next with a frame (read the commit's CAR, put the event
//! in its JSON form).

use std::collections::BTreeMap;

use aurora_core::data::{self, Ipld};
use aurora_core::event::encoding::EventEncoding;
use aurora_core::event::{
    Frame, JsonEvent, JsonOptions, decode_frame, encode_error, encode_event, encode_info,
};
use aurora_core::syntax::Did;
use aurora_core::{EventType, SeqEvent};
use bytes::Bytes;

use crate::Outcome;
use crate::fixtures::{self, fixtures};

/// Decodes `data` as a frame and checks what the decoder promises:
///
/// - it accepts exactly two canonical DAG-CBOR items back to back: the
///   frame is the encoding of its header followed by the encoding of its
///   body;
/// - a frame of an event type (`#commit`, `#identity`, `#account`,
///   `#sync`) whose header is just `{op: 1, t}` and whose body has a `seq`
///   is what the server sends for that event: framing the body without
///   `seq` again gives the same bytes, in both of the ways the server and
///   the sinks do it;
/// - the same for `#info` and error frames of the documented shapes;
/// - a commit's or sync's `blocks` go through the CAR target's checks, and
///   the JSON form of an event, when there is one, serialises and reads
///   back as itself.
pub fn firehose_frame(data: &[u8]) -> Outcome {
    let frame = decode_frame(data);
    let split = data::first_item_len(data);
    let Ok(frame) = frame else {
        return Outcome::Rejected;
    };
    let split = split.expect("a decoded frame has a header item");
    let header = data::decode_strict(&data[..split]).expect("a decoded frame's header");
    let body = data::decode_strict(&data[split..]).expect("a decoded frame's body");
    let mut reencoded = data::encode(&header).expect("a header encodes");
    reencoded.extend(data::encode(&body).expect("a body encodes"));
    assert_eq!(reencoded, data, "a decoded frame is not canonical");
    let Ipld::Map(header) = header else {
        panic!("a frame with a header that is not a map was accepted");
    };

    match frame {
        Frame::Message { kind, body: b } => {
            assert_eq!(b, body, "the frame's body is not its second item");
            assert_eq!(header.get("op"), Some(&Ipld::Integer(1)));
            assert_eq!(header.get("t"), Some(&Ipld::String(kind.clone())));
            let exact_header = header.len() == 2;
            if let Ipld::Map(body) = &body {
                if let Some(blocks) = body.get("blocks").and_then(bytes_of) {
                    let _ = crate::car::car(blocks);
                }
                let event_type = kind.strip_prefix('#').and_then(|t| t.parse().ok());
                if let Some(event_type) = event_type {
                    check_event(data, event_type, body, exact_header);
                } else if kind == "#info" && exact_header {
                    check_info(data, body);
                }
            }
        }
        Frame::Error { error, message } => {
            assert_eq!(header.get("op"), Some(&Ipld::Integer(-1)));
            let Ipld::Map(body) = &body else {
                panic!("an error frame whose body is not a map was accepted");
            };
            assert_eq!(body.get("error"), Some(&Ipld::String(error.clone())));
            let documented = header.len() == 1
                && body.keys().all(|k| k == "error" || k == "message")
                && body
                    .get("message")
                    .is_none_or(|m| matches!(m, Ipld::String(_)));
            if documented {
                let again = encode_error(&error, message.as_deref()).expect("an error frame");
                assert_eq!(again, data, "an error frame does not re-encode");
            }
        }
    }
    Outcome::Accepted
}

fn bytes_of(v: &Ipld) -> Option<&[u8]> {
    match v {
        Ipld::Bytes(b) => Some(b),
        _ => None,
    }
}

/// The checks of an event frame (see [`firehose_frame`]).
fn check_event(data: &[u8], event_type: EventType, body: &BTreeMap<String, Ipld>, exact: bool) {
    let seq = match body.get("seq") {
        Some(Ipld::Integer(seq)) => i64::try_from(*seq).ok(),
        _ => None,
    };
    let mut payload = body.clone();
    payload.remove("seq");
    let payload = Bytes::from(data::encode(&Ipld::Map(payload)).expect("a payload encodes"));
    let did = ["repo", "did"]
        .iter()
        .find_map(|k| match body.get(*k) {
            Some(Ipld::String(s)) => Did::parse(s.as_str()).ok(),
            _ => None,
        })
        .unwrap_or_else(|| fixtures().account.clone());
    let event = SeqEvent {
        seq: seq.unwrap_or(0),
        did,
        event_type,
        time: fixtures::now(),
        payload,
    };
    if let (Some(seq), true) = (seq, exact) {
        let framed = encode_event(seq, event_type, &event.payload).expect("a stored event frames");
        assert_eq!(framed, data, "an event frame does not re-encode");
        let sink = EventEncoding::Frame
            .encode(&event)
            .expect("a sink frames a stored event");
        assert_eq!(sink, data, "a sink frames an event differently");
    }
    for records in [false, true] {
        let Ok(json) = JsonEvent::from_event(&event, JsonOptions { records }) else {
            continue;
        };
        assert_eq!(json.body.event_type(), event_type);
        let text = serde_json::to_vec(&json).expect("a JSON event serialises");
        let back: JsonEvent = serde_json::from_slice(&text).unwrap_or_else(|e| {
            panic!(
                "a JSON event does not read back: {e}: {}",
                String::from_utf8_lossy(&text)
            )
        });
        assert_eq!(back, json, "a JSON event reads back as another");
        let sink = EventEncoding::Json(JsonOptions { records })
            .encode(&event)
            .expect("a sink encodes what has a JSON form");
        assert_eq!(sink, text, "a sink's JSON differs from the JSON form");
    }
}

/// The checks of an `#info` frame.
fn check_info(data: &[u8], body: &BTreeMap<String, Ipld>) {
    let text = |k: &str| match body.get(k) {
        Some(Ipld::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let documented = body.keys().all(|k| k == "name" || k == "message")
        && text("name").is_some()
        && (body.get("message").is_none() || text("message").is_some());
    if let (true, Some(name)) = (documented, text("name")) {
        let again = encode_info(name, text("message")).expect("an info frame");
        assert_eq!(again, data, "an info frame does not re-encode");
    }
}
