//! Repository events: what the sequencer numbers and the firehose and event
//! sinks deliver.
//!
//! The store keeps each event as DAG-CBOR bytes of the event body *without*
//! its `seq` (the sequence number is the row key, assigned at commit), so an
//! event is encoded once, at write time, and framed with its `seq` when sent.
//!
//! Sinks that write JSON use [`json`], the one documented JSON form of an
//! event; [`encoding`] gives a sink's message bytes in either form.

mod body;
pub mod encoding;
mod frame;
pub mod json;

pub use body::{AccountBody, CommitBody, IdentityBody, OpAction, RepoOp, SyncBody, decode_payload};
pub use frame::{Frame, decode_frame, encode_error, encode_event, encode_info};
pub use json::{JsonEvent, JsonOptions};

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::syntax::Did;

/// The kinds of event in the log, as named by `com.atproto.sync.subscribeRepos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `#commit`: a new signed commit of a repo.
    Commit,
    /// `#sync`: the repo's state was reset (e.g. after `importRepo`).
    Sync,
    /// `#identity`: the account's DID document or handle changed.
    Identity,
    /// `#account`: the account's hosting status changed.
    Account,
}

impl EventType {
    /// The name stored in the `event_type` column and used in `$type` (`#commit` etc.).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Sync => "sync",
            Self::Identity => "identity",
            Self::Account => "account",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown event type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "commit" => Ok(Self::Commit),
            "sync" => Ok(Self::Sync),
            "identity" => Ok(Self::Identity),
            "account" => Ok(Self::Account),
            other => Err(UnknownEventType(other.to_owned())),
        }
    }
}

/// An event ready to be sequenced: everything but its `seq` and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The repo (account) the event is about.
    pub did: Did,
    /// Which kind of event.
    pub event_type: EventType,
    /// The event body as DAG-CBOR, without `seq`.
    pub payload: Bytes,
}

/// An event as stored in the log, with the sequence number it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqEvent {
    /// Position in the log; strictly increasing in commit order.
    pub seq: i64,
    /// The repo (account) the event is about.
    pub did: Did,
    /// Which kind of event.
    pub event_type: EventType,
    /// When the event was sequenced.
    pub time: DateTime<Utc>,
    /// The event body as DAG-CBOR, without `seq`.
    pub payload: Bytes,
}
