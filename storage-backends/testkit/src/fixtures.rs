//! Small builders of valid test values.

use aurora_core::cid::Cid;
use aurora_core::data::{DAG_CBOR, RAW, cid_for};
use aurora_core::event::{EventType, NewEvent};
use aurora_core::store::{BlobRecord, CommitWrite, RecordWrite};
use aurora_core::syntax::{Did, Handle, Nsid, RecordKey, Tid};
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};

const BASE32_SORT: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A valid TID that sorts like `n`.
pub fn tid(n: u64) -> Tid {
    let mut chars = [b'2'; 13];
    let mut v = n;
    for c in chars.iter_mut().rev() {
        *c = BASE32_SORT[usize::try_from(v % 32).unwrap()];
        v /= 32;
    }
    Tid::parse(String::from_utf8(chars.to_vec()).unwrap()).unwrap()
}

/// `did:plc:<name>`.
pub fn did(name: &str) -> Did {
    Did::parse(format!("did:plc:{name}")).unwrap()
}

/// `<name>.test`.
pub fn handle(name: &str) -> Handle {
    Handle::parse(format!("{name}.test")).unwrap()
}

/// An NSID.
pub fn nsid(s: &str) -> Nsid {
    Nsid::parse(s).unwrap()
}

/// A record key.
pub fn rkey(s: &str) -> RecordKey {
    RecordKey::parse(s).unwrap()
}

/// A block with content `label` and its (dag-cbor codec) CID.
pub fn block(label: &str) -> (Cid, Bytes) {
    let bytes = Bytes::from(label.as_bytes().to_vec());
    (cid_for(DAG_CBOR, &bytes), bytes)
}

/// A record put of `collection/rkey` pointing at `cid`, referencing no blob.
pub fn put(collection: &str, key: &str, cid: Cid) -> RecordWrite {
    put_with_blobs(collection, key, cid, &[])
}

/// A record put of `collection/rkey` pointing at `cid` and referencing `blobs`.
pub fn put_with_blobs(collection: &str, key: &str, cid: Cid, blobs: &[Cid]) -> RecordWrite {
    RecordWrite::Put {
        collection: nsid(collection),
        rkey: rkey(key),
        cid,
        blobs: blobs.to_vec(),
    }
}

/// The CID (raw codec) of a blob with content `label`.
pub fn blob_cid(label: &str) -> Cid {
    cid_for(RAW, label.as_bytes())
}

/// A temporary blob of `did` with content `label`, uploaded at `created_at`
/// (whole seconds, so that every backend stores it exactly), under
/// temporary key `temp-<label>`.
pub fn temp_blob(did: &Did, label: &str, created_at: DateTime<Utc>) -> BlobRecord {
    BlobRecord {
        did: did.clone(),
        cid: blob_cid(label),
        mime_type: "image/png".to_owned(),
        size: label.len() as u64,
        temp_key: Some(format!("temp-{label}")),
        created_at: created_at.trunc_subsecs(0),
        takedown_ref: None,
    }
}

/// A record delete.
pub fn delete(collection: &str, key: &str) -> RecordWrite {
    RecordWrite::Delete {
        collection: nsid(collection),
        rkey: rkey(key),
    }
}

/// A commit of `did` on top of `expected_root`, with a fresh commit block
/// named `label` (which becomes the root), the given extra blocks and
/// record writes, at revision `rev`.
pub fn commit(
    did: &Did,
    expected_root: Option<Cid>,
    label: &str,
    rev: u64,
    extra_blocks: Vec<(Cid, Bytes)>,
    records: Vec<RecordWrite>,
) -> CommitWrite {
    let (root, root_bytes) = block(&format!("commit:{did}:{label}"));
    let mut blocks = vec![(root, root_bytes)];
    blocks.extend(extra_blocks);
    CommitWrite {
        did: did.clone(),
        expected_root,
        root,
        rev: tid(rev),
        blocks,
        records,
        event_type: EventType::Commit,
        event_payload: Bytes::from(format!("event:{label}")),
    }
}

/// An `#identity` event for `did`.
pub fn identity_event(did: &Did, label: &str) -> NewEvent {
    NewEvent {
        did: did.clone(),
        event_type: EventType::Identity,
        payload: Bytes::from(format!("identity:{label}")),
    }
}
