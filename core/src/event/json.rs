//! The JSON form of a sequenced event: one stable, documented shape for
//! every event sink that writes JSON (webhook, JSON-lines files, Kafka,
//! NATS, ...), so that downstream consumers parse one schema whatever
//! carries it.
//!
//! # Schema (version 1)
//!
//! Every event is an object with these keys:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `seq` | integer | the event's position in the log; strictly increasing |
//! | `time` | string | when the event was sequenced, RFC 3339 UTC with milliseconds (`2026-12-01T12:00:00.000Z`) |
//! | `did` | string | the account (repo) the event is about |
//! | `type` | string | `commit`, `sync`, `identity` or `account` |
//!
//! and, by `type`:
//!
//! - **`commit`** (a new signed commit of the repo):
//!   - `rev` (string): the commit's revision (a TID);
//!   - `since` (string or null): the previous commit's revision, null for
//!     the repo's first commit;
//!   - `commit` (string): the commit's CID;
//!   - `prevData` (string or null): the MST root before this commit;
//!   - `ops` (array): one object per record operation, in commit order:
//!     - `action`: `create`, `update` or `delete`;
//!     - `path`: `<collection>/<rkey>`, and the two parts as `collection`
//!       and `rkey`;
//!     - `cid` (string or null): the new record's CID, null for deletes;
//!     - `prev` (string or null): the replaced record's CID, null for
//!       creates;
//!     - `record` (object, only when record bodies are asked for, see
//!       [`JsonOptions::records`], and only for creates and updates): the
//!       record in the ATProto JSON form of the data model (links as
//!       `{"$link": "<cid>"}`, bytes as `{"$bytes": "<base64>"}`, blobs as
//!       `{"$type": "blob", "ref": {"$link": ...}, "mimeType": ..., "size": ...}`);
//!   - `blobs` (array of strings): CIDs of blobs the commit newly references.
//! - **`sync`** (the repo's state was reset, e.g. by an import): `rev`
//!   (string) and `commit` (string, the CID of the repo's new commit).
//! - **`identity`** (the DID document or handle changed): `handle` (string
//!   or null).
//! - **`account`** (the hosting status changed): `active` (boolean) and
//!   `status` (string or null: `takendown`, `suspended`, `deleted`,
//!   `deactivated`, ... when not active).
//!
//! CIDs in the envelope (`commit`, `ops[].cid`, `blobs`, ...) are plain
//! base32 CID strings; only inside `record` is the data model's `$link`
//! form used. Keys are never removed from this schema; new keys may be
//! added, so consumers should ignore keys they do not know. A field that
//! does not apply is `null` rather than absent, except `record`.
//!
//! ```json
//! {"seq":42,"time":"2026-12-01T12:00:00.000Z","did":"did:plc:ewvi7nxzyoun6zhxrhs64oiz",
//!  "type":"commit","rev":"3lbkqg3vhu22o","since":"3lbkqftsl4o2o",
//!  "commit":"bafyreia...","prevData":"bafyreib...",
//!  "ops":[{"action":"create","path":"app.bsky.feed.post/3lbkqg3vgxs2o",
//!          "collection":"app.bsky.feed.post","rkey":"3lbkqg3vgxs2o",
//!          "cid":"bafyreic...","prev":null,
//!          "record":{"$type":"app.bsky.feed.post","text":"hello","createdAt":"2026-12-01T12:00:00.000Z"}}],
//!  "blobs":[]}
//! ```

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use cid::Cid;
use serde::{Deserialize, Serialize};

use super::{EventType, SeqEvent, decode_payload};
use crate::data::{self, Ipld};
use crate::repo::car::read_car_bytes;

/// What to include beyond the envelope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// Include each created or updated record's body as `ops[].record`,
    /// decoded from the blocks the commit carries.
    pub records: bool,
}

/// A sequenced event in its JSON form (see the [module docs](self) for the
/// schema). Serialize it with `serde_json`; consumers written in Rust can
/// deserialize it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonEvent {
    /// Position in the log.
    pub seq: i64,
    /// When the event was sequenced (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The account the event is about.
    pub did: String,
    /// `type` and the fields of that type.
    #[serde(flatten)]
    pub body: JsonEventBody,
}

/// The type-specific part of a [`JsonEvent`], tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JsonEventBody {
    /// A new signed commit.
    Commit(JsonCommit),
    /// The repo's state was reset.
    Sync(JsonSync),
    /// The DID document or handle changed.
    Identity(JsonIdentity),
    /// The hosting status changed.
    Account(JsonAccount),
}

impl JsonEventBody {
    /// The event type this body belongs to.
    pub const fn event_type(&self) -> EventType {
        match self {
            Self::Commit(_) => EventType::Commit,
            Self::Sync(_) => EventType::Sync,
            Self::Identity(_) => EventType::Identity,
            Self::Account(_) => EventType::Account,
        }
    }
}

/// The fields of a `commit` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonCommit {
    /// The commit's revision.
    pub rev: String,
    /// The previous commit's revision; `None` for the first commit.
    pub since: Option<String>,
    /// The commit's CID.
    pub commit: String,
    /// The MST root before this commit.
    pub prev_data: Option<String>,
    /// The record operations, in commit order.
    pub ops: Vec<JsonOp>,
    /// Blobs newly referenced.
    pub blobs: Vec<String>,
}

/// One record operation of a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonOp {
    /// `create`, `update` or `delete`.
    pub action: String,
    /// `<collection>/<rkey>`.
    pub path: String,
    /// The collection (NSID) part of `path`.
    pub collection: String,
    /// The record key part of `path`.
    pub rkey: String,
    /// The new record's CID; `None` for deletes.
    pub cid: Option<String>,
    /// The replaced record's CID; `None` for creates.
    pub prev: Option<String>,
    /// The record body, when asked for ([`JsonOptions::records`]) and the
    /// operation wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Value>,
}

/// The fields of a `sync` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSync {
    /// The revision of the repo's commit.
    pub rev: String,
    /// The commit's CID.
    pub commit: String,
}

/// The fields of an `identity` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonIdentity {
    /// The account's current handle, when known.
    pub handle: Option<String>,
}

/// The fields of an `account` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonAccount {
    /// Whether the account is active.
    pub active: bool,
    /// Why not, when inactive.
    pub status: Option<String>,
}

/// A stored event that cannot be put in its JSON form: its payload is not
/// the body its type requires. This means corrupt storage, not bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {seq} has no JSON form: {reason}")]
pub struct EventJsonError {
    /// The event.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

impl JsonEvent {
    /// The JSON form of `event`.
    pub fn from_event(event: &SeqEvent, options: JsonOptions) -> Result<Self, EventJsonError> {
        let fail = |reason: String| EventJsonError {
            seq: event.seq,
            reason,
        };
        let payload = decode_payload(&event.payload).map_err(|e| fail(e.to_string()))?;
        let fields = Fields {
            map: &payload,
            seq: event.seq,
        };
        let body = match event.event_type {
            EventType::Commit => JsonEventBody::Commit(commit(&fields, options)?),
            EventType::Sync => {
                let (root, _) = read_car_bytes(fields.bytes("blocks")?)
                    .map_err(|e| fail(format!("blocks: {e}")))?;
                JsonEventBody::Sync(JsonSync {
                    rev: fields.string("rev")?.to_owned(),
                    commit: root.to_string(),
                })
            }
            EventType::Identity => JsonEventBody::Identity(JsonIdentity {
                handle: fields.optional_string("handle")?.map(str::to_owned),
            }),
            EventType::Account => JsonEventBody::Account(JsonAccount {
                active: fields.bool("active")?,
                status: fields.optional_string("status")?.map(str::to_owned),
            }),
        };
        Ok(Self {
            seq: event.seq,
            time: event.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            did: event.did.as_str().to_owned(),
            body,
        })
    }
}

fn commit(fields: &Fields<'_>, options: JsonOptions) -> Result<JsonCommit, EventJsonError> {
    let blocks = if options.records {
        let (_, blocks) = read_car_bytes(fields.bytes("blocks")?)
            .map_err(|e| fields.error(format!("blocks: {e}")))?;
        blocks
    } else {
        BTreeMap::new()
    };
    let ops = fields
        .list("ops")?
        .iter()
        .map(|op| {
            let Ipld::Map(map) = op else {
                return Err(fields.error("an op is not a map".to_owned()));
            };
            let op = Fields {
                map,
                seq: fields.seq,
            };
            let path = op.string("path")?;
            let (collection, rkey) = path
                .split_once('/')
                .ok_or_else(|| op.error(format!("op path {path:?} has no '/'")))?;
            let action = op.string("action")?;
            let cid = op.optional_link("cid")?;
            let record = match cid {
                Some(cid) if options.records && action != "delete" => {
                    Some(record_json(&blocks, cid, path).map_err(|reason| op.error(reason))?)
                }
                _ => None,
            };
            Ok(JsonOp {
                action: action.to_owned(),
                path: path.to_owned(),
                collection: collection.to_owned(),
                rkey: rkey.to_owned(),
                cid: cid.map(|c| c.to_string()),
                prev: op.optional_link("prev")?.map(|c| c.to_string()),
                record,
            })
        })
        .collect::<Result<_, _>>()?;
    let blobs = fields
        .list("blobs")?
        .iter()
        .map(|blob| match blob {
            Ipld::Link(cid) => Ok(cid.to_string()),
            _ => Err(fields.error("a blob is not a link".to_owned())),
        })
        .collect::<Result<_, _>>()?;
    Ok(JsonCommit {
        rev: fields.string("rev")?.to_owned(),
        since: fields.optional_string("since")?.map(str::to_owned),
        commit: fields.link("commit")?.to_string(),
        prev_data: fields.optional_link("prevData")?.map(|c| c.to_string()),
        ops,
        blobs,
    })
}

/// The record `cid` (at `path`) from a commit's blocks, as ATProto JSON.
fn record_json(
    blocks: &BTreeMap<Cid, bytes::Bytes>,
    cid: Cid,
    path: &str,
) -> Result<serde_json::Value, String> {
    let block = blocks
        .get(&cid)
        .ok_or_else(|| format!("the commit's blocks lack record {path} ({cid})"))?;
    let value = data::decode_strict(block).map_err(|e| format!("record {path}: {e}"))?;
    data::ipld_to_json(&value).map_err(|e| format!("record {path}: {e}"))
}

/// Typed access to a payload map's fields, with errors naming the event.
struct Fields<'a> {
    map: &'a BTreeMap<String, Ipld>,
    seq: i64,
}

impl<'a> Fields<'a> {
    fn error(&self, reason: String) -> EventJsonError {
        EventJsonError {
            seq: self.seq,
            reason,
        }
    }

    fn get(&self, key: &str) -> Option<&'a Ipld> {
        self.map.get(key).filter(|v| !matches!(v, Ipld::Null))
    }

    fn wrong(&self, key: &str, expected: &str) -> EventJsonError {
        let found = if self.map.contains_key(key) {
            "something else"
        } else {
            "nothing"
        };
        self.error(format!("{key}: expected {expected}, found {found}"))
    }

    fn string(&self, key: &str) -> Result<&'a str, EventJsonError> {
        self.optional_string(key)?
            .ok_or_else(|| self.wrong(key, "a string"))
    }

    fn optional_string(&self, key: &str) -> Result<Option<&'a str>, EventJsonError> {
        match self.get(key) {
            None => Ok(None),
            Some(Ipld::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    fn link(&self, key: &str) -> Result<Cid, EventJsonError> {
        self.optional_link(key)?
            .ok_or_else(|| self.wrong(key, "a CID link"))
    }

    fn optional_link(&self, key: &str) -> Result<Option<Cid>, EventJsonError> {
        match self.get(key) {
            None => Ok(None),
            Some(Ipld::Link(cid)) => Ok(Some(*cid)),
            Some(_) => Err(self.wrong(key, "a CID link")),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, EventJsonError> {
        match self.get(key) {
            Some(Ipld::Bool(b)) => Ok(*b),
            _ => Err(self.wrong(key, "a boolean")),
        }
    }

    fn bytes(&self, key: &str) -> Result<&'a [u8], EventJsonError> {
        match self.get(key) {
            Some(Ipld::Bytes(b)) => Ok(b),
            _ => Err(self.wrong(key, "bytes")),
        }
    }

    fn list(&self, key: &str) -> Result<&'a [Ipld], EventJsonError> {
        match self.get(key) {
            Some(Ipld::List(items)) => Ok(items),
            _ => Err(self.wrong(key, "a list")),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::data::{DAG_CBOR, cid_for, json_to_ipld};
    use crate::event::{AccountBody, CommitBody, IdentityBody, OpAction, RepoOp, SyncBody};
    use crate::repo::car::car_bytes;
    use crate::syntax::{Datetime, Did, Handle, TidClock};

    fn did() -> Did {
        Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap()
    }

    fn seq_event(seq: i64, event_type: EventType, payload: Bytes) -> SeqEvent {
        SeqEvent {
            seq,
            did: did(),
            event_type,
            time: Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap(),
            payload,
        }
    }

    /// Runs an in-memory CAR write (it never waits).
    fn car(
        write: impl std::future::Future<Output = Result<Vec<u8>, crate::repo::car::CarError>>,
    ) -> Vec<u8> {
        futures::FutureExt::now_or_never(write).unwrap().unwrap()
    }

    fn block(value: &serde_json::Value) -> (Cid, Vec<u8>) {
        let bytes = data::encode(&json_to_ipld(value).unwrap()).unwrap();
        (cid_for(DAG_CBOR, &bytes), bytes)
    }

    /// A commit creating one record, updating one and deleting one, with
    /// the created and updated records in its CAR.
    fn commit_event() -> (SeqEvent, serde_json::Value, serde_json::Value) {
        let clock = TidClock::with_clock_id(7);
        let (since, rev) = (clock.next(), clock.next());
        let blob = cid_for(crate::data::RAW, b"image");
        let post = json!({
            "$type": "app.bsky.feed.post",
            "text": "hello",
            "createdAt": "2026-12-01T12:00:00.000Z",
            "embed": {"$type": "app.bsky.embed.images", "images": [{"alt": "", "image": {
                "$type": "blob", "ref": {"$link": blob.to_string()},
                "mimeType": "image/png", "size": 5}}]},
            "tag": {"$bytes": "AQID"},
        });
        let profile = json!({"$type": "app.bsky.actor.profile", "displayName": "A"});
        let (post_cid, post_bytes) = block(&post);
        let (profile_cid, profile_bytes) = block(&profile);
        let commit_cid = cid_for(DAG_CBOR, b"\xa0");
        let old = cid_for(DAG_CBOR, b"\x01");
        let car = car(car_bytes(
            commit_cid,
            [
                (commit_cid, b"\xa0".to_vec()),
                (post_cid, post_bytes),
                (profile_cid, profile_bytes),
            ],
        ));
        let body = CommitBody {
            repo: did(),
            commit: commit_cid,
            rev,
            since: Some(since),
            blocks: Bytes::from(car),
            ops: vec![
                RepoOp {
                    action: OpAction::Create,
                    path: "app.bsky.feed.post/3lbkqg3vgxs2o".into(),
                    cid: Some(post_cid),
                    prev: None,
                },
                RepoOp {
                    action: OpAction::Update,
                    path: "app.bsky.actor.profile/self".into(),
                    cid: Some(profile_cid),
                    prev: Some(old),
                },
                RepoOp {
                    action: OpAction::Delete,
                    path: "app.bsky.feed.like/3lbkqftsl4o2o".into(),
                    cid: None,
                    prev: Some(old),
                },
            ],
            blobs: vec![blob],
            prev_data: Some(old),
            time: Datetime::now(),
        };
        (
            seq_event(42, EventType::Commit, body.to_payload()),
            post,
            profile,
        )
    }

    #[test]
    fn commits_carry_the_envelope_ops_and_blobs() {
        let (event, ..) = commit_event();
        let json =
            serde_json::to_value(JsonEvent::from_event(&event, JsonOptions::default()).unwrap())
                .unwrap();
        let JsonEventBody::Commit(commit) = JsonEvent::from_event(&event, JsonOptions::default())
            .unwrap()
            .body
        else {
            panic!("not a commit")
        };
        assert_eq!(json["seq"], 42);
        assert_eq!(json["time"], "2026-12-01T12:00:00.000Z");
        assert_eq!(json["did"], "did:plc:ewvi7nxzyoun6zhxrhs64oiz");
        assert_eq!(json["type"], "commit");
        assert_eq!(json["rev"], commit.rev);
        assert_eq!(json["since"], commit.since.unwrap());
        assert_eq!(json["commit"], cid_for(DAG_CBOR, b"\xa0").to_string());
        assert_eq!(json["prevData"], cid_for(DAG_CBOR, b"\x01").to_string());
        assert_eq!(
            json["blobs"],
            json!([cid_for(crate::data::RAW, b"image").to_string()])
        );
        let ops = json["ops"].as_array().unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0]["action"], "create");
        assert_eq!(ops[0]["collection"], "app.bsky.feed.post");
        assert_eq!(ops[0]["rkey"], "3lbkqg3vgxs2o");
        assert_eq!(ops[0]["prev"], serde_json::Value::Null);
        assert_eq!(ops[1]["action"], "update");
        assert_eq!(ops[2]["cid"], serde_json::Value::Null);
        assert!(ops.iter().all(|op| op.get("record").is_none()));
    }

    #[test]
    fn record_bodies_are_atproto_json_when_asked_for() {
        let (event, post, profile) = commit_event();
        let json = serde_json::to_value(
            JsonEvent::from_event(&event, JsonOptions { records: true }).unwrap(),
        )
        .unwrap();
        let ops = json["ops"].as_array().unwrap();
        assert_eq!(ops[0]["record"], post);
        assert_eq!(ops[0]["record"]["tag"], json!({"$bytes": "AQID"}));
        assert_eq!(ops[1]["record"], profile);
        assert!(ops[2].get("record").is_none(), "a delete has no record");

        // A commit whose CAR lacks a record it names is reported, not skipped.
        let mut body = decode_payload(&event.payload).unwrap();
        let only_commit = car(car_bytes(
            cid_for(DAG_CBOR, b"\xa0"),
            [(cid_for(DAG_CBOR, b"\xa0"), b"\xa0".to_vec())],
        ));
        body.insert("blocks".into(), Ipld::Bytes(only_commit));
        let broken = seq_event(
            43,
            EventType::Commit,
            Bytes::from(data::encode(&Ipld::Map(body)).unwrap()),
        );
        let e = JsonEvent::from_event(&broken, JsonOptions { records: true }).unwrap_err();
        assert_eq!(e.seq, 43);
        assert!(e.reason.contains("app.bsky.feed.post/3lbkqg3vgxs2o"), "{e}");
        // Without record bodies the same event converts.
        JsonEvent::from_event(&broken, JsonOptions::default()).unwrap();
    }

    /// The JSON form of `event`, without record bodies.
    fn plain_json(event: &SeqEvent) -> serde_json::Value {
        serde_json::to_value(JsonEvent::from_event(event, JsonOptions::default()).unwrap()).unwrap()
    }

    #[test]
    fn identity_account_and_sync_events() {
        let time = Datetime::now();
        let identity = IdentityBody {
            did: did(),
            handle: Some(Handle::parse("alice.test").unwrap()),
            time: time.clone(),
        };
        let json = plain_json(&seq_event(1, EventType::Identity, identity.to_payload()));
        assert_eq!(
            json,
            json!({"seq": 1, "time": "2026-12-01T12:00:00.000Z",
                   "did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "type": "identity",
                   "handle": "alice.test"})
        );
        let no_handle = IdentityBody {
            handle: None,
            ..identity
        };
        let json = plain_json(&seq_event(2, EventType::Identity, no_handle.to_payload()));
        assert_eq!(json["handle"], serde_json::Value::Null);

        let account = AccountBody {
            did: did(),
            active: false,
            status: Some("takendown".into()),
            time: time.clone(),
        };
        let json = plain_json(&seq_event(3, EventType::Account, account.to_payload()));
        assert_eq!(
            (&json["type"], &json["active"]),
            (&json!("account"), &json!(false))
        );
        assert_eq!(json["status"], "takendown");

        let commit_cid = cid_for(DAG_CBOR, b"\xa0");
        let car = car(car_bytes(commit_cid, [(commit_cid, b"\xa0".to_vec())]));
        let rev = TidClock::with_clock_id(1).next();
        let sync = SyncBody {
            did: did(),
            blocks: Bytes::from(car),
            rev: rev.clone(),
            time,
        };
        let event = JsonEvent::from_event(
            &seq_event(4, EventType::Sync, sync.to_payload()),
            JsonOptions::default(),
        )
        .unwrap();
        assert_eq!(
            event.body,
            JsonEventBody::Sync(JsonSync {
                rev: rev.as_str().to_owned(),
                commit: commit_cid.to_string(),
            })
        );
        assert_eq!(event.body.event_type(), EventType::Sync);
    }

    #[test]
    fn the_json_form_reads_back() {
        let (event, ..) = commit_event();
        let json = JsonEvent::from_event(&event, JsonOptions { records: true }).unwrap();
        let text = serde_json::to_string(&json).unwrap();
        let back: JsonEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_an_error() {
        let identity_as_commit = IdentityBody {
            did: did(),
            handle: None,
            time: Datetime::now(),
        }
        .to_payload();
        let e = JsonEvent::from_event(
            &seq_event(9, EventType::Commit, identity_as_commit),
            JsonOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.seq, 9);
        assert!(e.to_string().contains("event 9"), "{e}");
        let e = JsonEvent::from_event(
            &seq_event(10, EventType::Account, Bytes::from_static(b"\xff")),
            JsonOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.seq, 10);
    }
}
