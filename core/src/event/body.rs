//! The bodies of repo events as `com.atproto.sync.subscribeRepos` defines
//! them, encoded once as DAG-CBOR without `seq` (which the sequencer adds
//! when the event is framed).

use std::collections::BTreeMap;

use bytes::Bytes;
use cid::Cid;

use crate::data::{self, DataError, Ipld};
use crate::syntax::{Datetime, Did, Handle, Tid};

/// What a commit operation did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpAction {
    /// A new record.
    Create,
    /// A changed record.
    Update,
    /// A removed record.
    Delete,
}

impl OpAction {
    /// The lexicon name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// One record operation of a `#commit` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoOp {
    /// Create, update or delete.
    pub action: OpAction,
    /// `<collection>/<rkey>`.
    pub path: String,
    /// The new record CID (`None` for deletes).
    pub cid: Option<Cid>,
    /// The previous record CID (sync 1.1; `None` for creates).
    pub prev: Option<Cid>,
}

/// A `#commit` event body (sync 1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitBody {
    /// The repo's DID.
    pub repo: Did,
    /// CID of the new commit.
    pub commit: Cid,
    /// `rev` of the new commit.
    pub rev: Tid,
    /// `rev` of the previous commit (`None` for the first).
    pub since: Option<Tid>,
    /// CAR of the commit block, the changed MST nodes, the new records and
    /// the proof blocks for inversion.
    pub blocks: Bytes,
    /// The record operations.
    pub ops: Vec<RepoOp>,
    /// Blobs newly referenced.
    pub blobs: Vec<Cid>,
    /// The MST root before this commit (sync 1.1), `None` for the first.
    pub prev_data: Option<Cid>,
    /// When the event was produced.
    pub time: Datetime,
}

/// An `#identity` event body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityBody {
    /// The account.
    pub did: Did,
    /// Its current handle, when known.
    pub handle: Option<Handle>,
    /// When the event was produced.
    pub time: Datetime,
}

/// An `#account` event body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBody {
    /// The account.
    pub did: Did,
    /// Whether the account is active (hosted and serving).
    pub active: bool,
    /// Why not, when inactive: `takendown`, `suspended`, `deleted`, `deactivated`.
    pub status: Option<String>,
    /// When the event was produced.
    pub time: Datetime,
}

/// A `#sync` event body: the repo's state was reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncBody {
    /// The account.
    pub did: Did,
    /// CAR holding the commit block.
    pub blocks: Bytes,
    /// `rev` of the commit.
    pub rev: Tid,
    /// When the event was produced.
    pub time: Datetime,
}

fn map(entries: impl IntoIterator<Item = (&'static str, Ipld)>) -> Ipld {
    Ipld::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn string(s: impl Into<String>) -> Ipld {
    Ipld::String(s.into())
}

fn encode(value: &Ipld) -> Bytes {
    // Maps of strings, bytes, bools, links and lists always encode.
    Bytes::from(data::encode(value).unwrap_or_default())
}

impl CommitBody {
    /// The DAG-CBOR payload (without `seq`).
    pub fn to_payload(&self) -> Bytes {
        let ops = self
            .ops
            .iter()
            .map(|op| {
                let mut m = vec![
                    ("action", string(op.action.as_str())),
                    ("path", string(op.path.clone())),
                    ("cid", op.cid.map_or(Ipld::Null, Ipld::Link)),
                ];
                if let Some(prev) = op.prev {
                    m.push(("prev", Ipld::Link(prev)));
                }
                map(m)
            })
            .collect();
        let mut m = vec![
            ("repo", string(self.repo.as_str())),
            ("commit", Ipld::Link(self.commit)),
            ("rev", string(self.rev.as_str())),
            (
                "since",
                self.since
                    .as_ref()
                    .map_or(Ipld::Null, |s| string(s.as_str())),
            ),
            ("blocks", Ipld::Bytes(self.blocks.to_vec())),
            ("ops", Ipld::List(ops)),
            (
                "blobs",
                Ipld::List(self.blobs.iter().copied().map(Ipld::Link).collect()),
            ),
            ("time", string(self.time.as_str())),
            // Deprecated fields the lexicon still requires.
            ("rebase", Ipld::Bool(false)),
            ("tooBig", Ipld::Bool(false)),
        ];
        if let Some(prev_data) = self.prev_data {
            m.push(("prevData", Ipld::Link(prev_data)));
        }
        encode(&map(m))
    }
}

impl IdentityBody {
    /// The DAG-CBOR payload (without `seq`).
    pub fn to_payload(&self) -> Bytes {
        let mut m = vec![
            ("did", string(self.did.as_str())),
            ("time", string(self.time.as_str())),
        ];
        if let Some(handle) = &self.handle {
            m.push(("handle", string(handle.as_str())));
        }
        encode(&map(m))
    }
}

impl AccountBody {
    /// The DAG-CBOR payload (without `seq`).
    pub fn to_payload(&self) -> Bytes {
        let mut m = vec![
            ("did", string(self.did.as_str())),
            ("active", Ipld::Bool(self.active)),
            ("time", string(self.time.as_str())),
        ];
        if let Some(status) = &self.status {
            m.push(("status", string(status.clone())));
        }
        encode(&map(m))
    }
}

impl SyncBody {
    /// The DAG-CBOR payload (without `seq`).
    pub fn to_payload(&self) -> Bytes {
        encode(&map([
            ("did", string(self.did.as_str())),
            ("blocks", Ipld::Bytes(self.blocks.to_vec())),
            ("rev", string(self.rev.as_str())),
            ("time", string(self.time.as_str())),
        ]))
    }
}

/// Decodes a stored payload back into a data-model map.
pub fn decode_payload(payload: &[u8]) -> Result<BTreeMap<String, Ipld>, DataError> {
    match data::decode_strict(payload)? {
        Ipld::Map(m) => Ok(m),
        _ => Err(DataError::invalid("event", "payload is not a map")),
    }
}
