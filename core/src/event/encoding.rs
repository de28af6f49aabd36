//! The bytes an event sink writes for one event: the documented JSON form
//! ([`super::json`]) or the `subscribeRepos` frame ([`encode_event`]), and
//! the `payload` / `include_records` settings sinks share to choose.

use serde::Deserialize;

use super::json::{JsonEvent, JsonOptions};
use super::{SeqEvent, encode_event};

/// The `payload` setting of a sink: what each message carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The JSON form of the event ([`super::json`]).
    #[default]
    Json,
    /// The event's `subscribeRepos` frame: the DAG-CBOR header and body a
    /// firehose client receives for it.
    Frames,
}

impl PayloadFormat {
    /// The encoding for this format; `include_records` asks for record
    /// bodies in the JSON form, and is refused with frames (which always
    /// carry the record blocks).
    pub fn encoding(self, include_records: bool) -> Result<EventEncoding, PayloadConfigError> {
        match (self, include_records) {
            (Self::Json, records) => Ok(EventEncoding::Json(JsonOptions { records })),
            (Self::Frames, false) => Ok(EventEncoding::Frame),
            (Self::Frames, true) => Err(PayloadConfigError::RecordsWithFrames),
        }
    }
}

/// A `payload` / `include_records` combination that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadConfigError {
    /// `include_records` with `payload = "frames"`.
    #[error(
        "include_records: applies only to payload = \"json\" (frames always carry the record blocks)"
    )]
    RecordsWithFrames,
}

/// How a sink turns an event into message bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEncoding {
    /// The JSON form, with these options.
    Json(JsonOptions),
    /// The `subscribeRepos` frame.
    Frame,
}

/// A stored event that cannot be encoded: its payload is not the body its
/// type requires (corrupt storage, not bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {seq} cannot be encoded: {reason}")]
pub struct EncodeEventError {
    /// The event.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

impl EventEncoding {
    /// The message bytes of `event`.
    pub fn encode(self, event: &SeqEvent) -> Result<Vec<u8>, EncodeEventError> {
        let fail = |reason: String| EncodeEventError {
            seq: event.seq,
            reason,
        };
        match self {
            Self::Json(options) => {
                let json = JsonEvent::from_event(event, options).map_err(|e| fail(e.reason))?;
                serde_json::to_vec(&json).map_err(|e| fail(e.to_string()))
            }
            Self::Frame => encode_event(event.seq, event.event_type, &event.payload)
                .map(|frame| frame.to_vec())
                .map_err(|e| fail(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::Utc;

    use super::*;
    use crate::event::{AccountBody, EventType, Frame, decode_frame};
    use crate::syntax::{Datetime, Did};

    fn account_event() -> SeqEvent {
        let did = Did::parse("did:plc:abc").unwrap();
        let body = AccountBody {
            did: did.clone(),
            active: false,
            status: Some("takendown".into()),
            time: Datetime::now(),
        };
        SeqEvent {
            seq: 7,
            did,
            event_type: EventType::Account,
            time: Utc::now(),
            payload: body.to_payload(),
        }
    }

    #[test]
    fn formats_and_their_encodings() {
        assert_eq!(
            PayloadFormat::Json.encoding(true),
            Ok(EventEncoding::Json(JsonOptions { records: true }))
        );
        assert_eq!(
            PayloadFormat::Frames.encoding(false),
            Ok(EventEncoding::Frame)
        );
        assert_eq!(
            PayloadFormat::Frames.encoding(true),
            Err(PayloadConfigError::RecordsWithFrames)
        );
        let event = account_event();
        let json: serde_json::Value = serde_json::from_slice(
            &EventEncoding::Json(JsonOptions::default())
                .encode(&event)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (&json["seq"], &json["type"], &json["status"]),
            (
                &serde_json::json!(7),
                &serde_json::json!("account"),
                &serde_json::json!("takendown")
            )
        );
        let frame = EventEncoding::Frame.encode(&event).unwrap();
        let Frame::Message { kind, .. } = decode_frame(&frame).unwrap() else {
            panic!("not a message frame")
        };
        assert_eq!(kind, "#account");
    }

    #[test]
    fn a_corrupt_payload_names_the_event() {
        let event = SeqEvent {
            payload: Bytes::from_static(b"not cbor"),
            ..account_event()
        };
        for encoding in [
            EventEncoding::Frame,
            EventEncoding::Json(JsonOptions::default()),
        ] {
            assert_eq!(encoding.encode(&event).unwrap_err().seq, 7);
        }
    }
}
