//! Event-stream frames (`subscribeRepos` over WebSocket): each binary
//! message is two DAG-CBOR values back to back, a header
//! `{op: 1, t: "#commit"}` (or `{op: -1}` for an error) and the body.

use bytes::Bytes;

use super::EventType;
use crate::data::{self, DataError, Ipld};

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A message: its type (`#commit`, `#identity`, `#info`, ...) and body.
    Message {
        /// The `t` of the header, e.g. `#commit`.
        kind: String,
        /// The body.
        body: Ipld,
    },
    /// An error; the stream ends after it.
    Error {
        /// The error name, e.g. `FutureCursor`.
        error: String,
        /// Optional detail.
        message: Option<String>,
    },
}

fn header(op: i128, kind: Option<&str>) -> Ipld {
    let mut m = std::collections::BTreeMap::new();
    m.insert("op".to_owned(), Ipld::Integer(op));
    if let Some(kind) = kind {
        m.insert("t".to_owned(), Ipld::String(kind.to_owned()));
    }
    Ipld::Map(m)
}

fn two(header: &Ipld, body: &Ipld) -> Result<Bytes, DataError> {
    let mut out = data::encode(header)?;
    out.extend(data::encode(body)?);
    Ok(Bytes::from(out))
}

/// Frames a stored event: its payload with `seq` added, under a `#<type>` header.
///
/// `seq` is written into the stored payload (a canonical map) at its place
/// among the keys, without decoding and encoding the payload again: its
/// blocks make it most of the frame, and each event is framed once for
/// all subscribers but on the path of every write.
pub fn encode_event(seq: i64, event_type: EventType, payload: &[u8]) -> Result<Bytes, DataError> {
    let mut out = data::encode(&header(1, Some(&format!("#{}", event_type.as_str()))))?;
    data::append_map_with_int(payload, "seq", seq, &mut out)?;
    Ok(Bytes::from(out))
}

/// An `#info` message (e.g. `OutdatedCursor`).
pub fn encode_info(name: &str, message: Option<&str>) -> Result<Bytes, DataError> {
    let mut body = std::collections::BTreeMap::new();
    body.insert("name".to_owned(), Ipld::String(name.to_owned()));
    if let Some(m) = message {
        body.insert("message".to_owned(), Ipld::String(m.to_owned()));
    }
    two(&header(1, Some("#info")), &Ipld::Map(body))
}

/// An error frame (e.g. `FutureCursor`, `ConsumerTooSlow`).
pub fn encode_error(error: &str, message: Option<&str>) -> Result<Bytes, DataError> {
    let mut body = std::collections::BTreeMap::new();
    body.insert("error".to_owned(), Ipld::String(error.to_owned()));
    if let Some(m) = message {
        body.insert("message".to_owned(), Ipld::String(m.to_owned()));
    }
    two(&header(-1, None), &Ipld::Map(body))
}

/// Splits and decodes a frame.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, DataError> {
    let split = data::first_item_len(bytes)?;
    let header = data::decode_strict(&bytes[..split])?;
    let body = data::decode_strict(&bytes[split..])?;
    let Ipld::Map(h) = header else {
        return Err(DataError::invalid("frame", "header is not a map"));
    };
    match (h.get("op"), h.get("t")) {
        (Some(Ipld::Integer(1)), Some(Ipld::String(kind))) => Ok(Frame::Message {
            kind: kind.clone(),
            body,
        }),
        (Some(Ipld::Integer(-1)), _) => {
            let Ipld::Map(b) = body else {
                return Err(DataError::invalid("frame", "error body is not a map"));
            };
            let text = |k: &str| match b.get(k) {
                Some(Ipld::String(s)) => Some(s.clone()),
                _ => None,
            };
            Ok(Frame::Error {
                error: text("error")
                    .ok_or_else(|| DataError::invalid("frame", "error frame without error"))?,
                message: text("message"),
            })
        }
        _ => Err(DataError::invalid("frame", "unknown header op")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DAG_CBOR, cid_for};
    use crate::event::{AccountBody, CommitBody, IdentityBody, OpAction, RepoOp};
    use crate::syntax::{Datetime, Did, Handle, TidClock};

    fn map_of(body: &Ipld) -> &std::collections::BTreeMap<String, Ipld> {
        let Ipld::Map(m) = body else {
            panic!("not a map")
        };
        m
    }

    #[test]
    fn commit_frames_carry_every_lexicon_field() {
        let clock = TidClock::with_clock_id(1);
        let (rev, since) = (clock.next(), clock.next());
        let record = cid_for(DAG_CBOR, b"record");
        let body = CommitBody {
            repo: Did::parse("did:plc:abc").unwrap(),
            commit: cid_for(DAG_CBOR, b"commit"),
            rev: since.clone(),
            since: Some(rev),
            blocks: Bytes::from_static(b"car bytes"),
            ops: vec![
                RepoOp {
                    action: OpAction::Create,
                    path: "app.bsky.feed.post/1".into(),
                    cid: Some(record),
                    prev: None,
                },
                RepoOp {
                    action: OpAction::Delete,
                    path: "app.bsky.feed.post/0".into(),
                    cid: None,
                    prev: Some(record),
                },
            ],
            blobs: vec![],
            prev_data: Some(cid_for(DAG_CBOR, b"old root")),
            time: Datetime::now(),
        };
        let frame = encode_event(42, EventType::Commit, &body.to_payload()).unwrap();
        let Frame::Message {
            kind,
            body: decoded,
        } = decode_frame(&frame).unwrap()
        else {
            panic!()
        };
        assert_eq!(kind, "#commit");
        let m = map_of(&decoded);
        for field in [
            "seq", "rebase", "tooBig", "repo", "commit", "rev", "since", "blocks", "ops", "blobs",
            "time", "prevData",
        ] {
            assert!(m.contains_key(field), "missing {field}");
        }
        assert_eq!(m["seq"], Ipld::Integer(42));
        assert_eq!(m["tooBig"], Ipld::Bool(false));
        let Ipld::List(ops) = &m["ops"] else { panic!() };
        assert_eq!(map_of(&ops[1])["cid"], Ipld::Null);
        assert_eq!(map_of(&ops[1])["prev"], Ipld::Link(record));
        assert!(!map_of(&ops[0]).contains_key("prev"));
    }

    #[test]
    fn identity_account_info_and_error_frames() {
        let did = Did::parse("did:plc:abc").unwrap();
        let time = Datetime::now();
        let identity = IdentityBody {
            did: did.clone(),
            handle: Some(Handle::parse("a.test").unwrap()),
            time: time.clone(),
        };
        let Frame::Message { kind, body } =
            decode_frame(&encode_event(1, EventType::Identity, &identity.to_payload()).unwrap())
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(kind, "#identity");
        assert_eq!(map_of(&body)["handle"], Ipld::String("a.test".into()));
        let account = AccountBody {
            did,
            active: false,
            status: Some("takendown".into()),
            time,
        };
        let Frame::Message { kind, body } =
            decode_frame(&encode_event(2, EventType::Account, &account.to_payload()).unwrap())
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(kind, "#account");
        assert_eq!(map_of(&body)["active"], Ipld::Bool(false));
        let Frame::Message { kind, body } =
            decode_frame(&encode_info("OutdatedCursor", Some("too old")).unwrap()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (kind.as_str(), &map_of(&body)["name"]),
            ("#info", &Ipld::String("OutdatedCursor".into()))
        );
        assert_eq!(
            decode_frame(&encode_error("FutureCursor", None).unwrap()).unwrap(),
            Frame::Error {
                error: "FutureCursor".into(),
                message: None
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn random_frames_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode_frame(&bytes);
        }
    }
}
