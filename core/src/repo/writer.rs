//! Turning record writes into a signed commit: the MST changes, the new
//! record and node blocks, the signed commit, the record-index changes and
//! the `#commit` event (sync 1.1) — everything
//! [`RepoStore::apply_commit`](crate::store::RepoStore::apply_commit) writes
//! in one transaction.
//!
//! [`prepare_commit`] works on a [`Mst`] opened lazily over a block source.
//! When the tree needs a node the source does not have, it fails with
//! [`WriteError::Mst`] carrying [`MstError::MissingBlock`]; the caller
//! fetches that block from storage and calls again. All tree work happens
//! before anything is signed, so a retry costs no signature.

use std::collections::BTreeSet;

use bytes::Bytes;
use cid::Cid;

use crate::crypto::SigningKey;
use crate::data::{self, DAG_CBOR, DataError, Ipld, cid_for, collect_blob_refs};
use crate::event::{CommitBody, EventType, OpAction, RepoOp};
use crate::repo::car::{CarError, car_bytes};
use crate::repo::commit::UnsignedCommit;
use crate::repo::mst::{Mst, MstError};
use crate::store::{CommitWrite, RecordWrite};
use crate::syntax::{Datetime, Did, Nsid, RecordKey, Tid, TidClock};

/// What a write does to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAction {
    /// Add a record; fails if one exists at the path.
    Create,
    /// Replace a record; fails if none exists at the path.
    Update,
    /// Remove a record; fails if none exists at the path.
    Delete,
}

/// One record write.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordChange {
    /// Create, update or delete.
    pub action: WriteAction,
    /// The collection.
    pub collection: Nsid,
    /// The record key.
    pub rkey: RecordKey,
    /// The record (for creates and updates).
    pub record: Option<Ipld>,
}

impl RecordChange {
    /// `<collection>/<rkey>`: the record's MST key.
    pub fn path(&self) -> String {
        format!("{}/{}", self.collection, self.rkey)
    }
}

/// The repo's current commit, which the new one follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoHead {
    /// CID of the current commit.
    pub commit: Cid,
    /// Its `rev`.
    pub rev: Tid,
    /// Its MST root (`data`).
    pub data: Cid,
}

/// What one write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The action.
    pub action: WriteAction,
    /// The collection.
    pub collection: Nsid,
    /// The record key.
    pub rkey: RecordKey,
    /// The new record's CID (`None` for deletes).
    pub cid: Option<Cid>,
    /// The replaced or removed record's CID (`None` for creates).
    pub prev: Option<Cid>,
    /// Blobs the new record references.
    pub blobs: Vec<Cid>,
}

/// A commit ready to be stored.
#[derive(Debug, Clone)]
pub struct PreparedCommit {
    /// What `apply_commit` writes.
    pub write: CommitWrite,
    /// CID of the new commit.
    pub commit: Cid,
    /// Its `rev`.
    pub rev: Tid,
    /// Per write, in order.
    pub outcomes: Vec<WriteOutcome>,
    /// The tree after the commit (its new nodes are not yet marked stored).
    pub tree: Mst,
}

/// Why writes could not become a commit.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The tree could not be read or changed; [`MstError::MissingBlock`]
    /// means "fetch this block and try again".
    #[error(transparent)]
    Mst(#[from] MstError),
    /// A create found a record at its path.
    #[error("a record already exists at {0}")]
    RecordExists(String),
    /// An update or delete found no record at its path.
    #[error("no record at {0}")]
    RecordNotFound(String),
    /// A create or update came without a record.
    #[error("no record given for {0}")]
    MissingRecord(String),
    /// Two writes of one commit touch the same path.
    #[error("more than one write to {0} in one commit")]
    DuplicatePath(String),
    /// A record could not be encoded as DAG-CBOR.
    #[error("record {path} cannot be encoded: {source}")]
    Encode {
        /// The record's path.
        path: String,
        /// Why.
        source: DataError,
    },
    /// The event's CAR could not be written.
    #[error(transparent)]
    Car(#[from] CarError),
    /// An imported tree holds a key that is not `<collection>/<rkey>`.
    #[error("{0} is not a record path (<collection>/<record key>)")]
    InvalidPath(String),
}

impl WriteError {
    /// The block to fetch before trying again, if that is the problem.
    pub fn missing_block(&self) -> Option<Cid> {
        match self {
            Self::Mst(MstError::MissingBlock(cid)) => Some(*cid),
            _ => None,
        }
    }
}

/// A record encoded for storage.
struct EncodedRecord {
    cid: Cid,
    bytes: Bytes,
    blobs: Vec<Cid>,
}

fn encode_record(path: &str, record: &Ipld) -> Result<EncodedRecord, WriteError> {
    let bytes = Bytes::from(data::encode(record).map_err(|source| WriteError::Encode {
        path: path.to_owned(),
        source,
    })?);
    let cid = cid_for(DAG_CBOR, &bytes);
    let mut blobs: Vec<Cid> = collect_blob_refs(record)
        .into_iter()
        .map(|b| b.cid)
        .collect();
    blobs.sort_unstable_by_key(Cid::to_bytes);
    blobs.dedup();
    Ok(EncodedRecord { cid, bytes, blobs })
}

/// The tree after a commit's changes, with what they did.
struct Applied {
    tree: Mst,
    outcomes: Vec<WriteOutcome>,
    records: Vec<(Cid, Bytes)>,
    index: Vec<RecordWrite>,
}

/// Applies `changes` to `tree`, checking each against the record there.
fn apply_changes(tree: &Mst, changes: &[RecordChange]) -> Result<Applied, WriteError> {
    let mut seen = BTreeSet::new();
    let mut next = tree.clone();
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut records = Vec::new();
    let mut index = Vec::with_capacity(changes.len());
    for change in changes {
        let path = change.path();
        if !seen.insert(path.clone()) {
            return Err(WriteError::DuplicatePath(path));
        }
        let prev = next.get(&path)?;
        let encoded = match change.action {
            WriteAction::Create | WriteAction::Update => {
                let record = change
                    .record
                    .as_ref()
                    .ok_or_else(|| WriteError::MissingRecord(path.clone()))?;
                Some(encode_record(&path, record)?)
            }
            WriteAction::Delete => None,
        };
        match (change.action, prev) {
            (WriteAction::Create, Some(_)) => return Err(WriteError::RecordExists(path)),
            (WriteAction::Update | WriteAction::Delete, None) => {
                return Err(WriteError::RecordNotFound(path));
            }
            _ => {}
        }
        if let Some(rec) = &encoded {
            next = next.insert(&path, rec.cid)?;
            index.push(RecordWrite::Put {
                collection: change.collection.clone(),
                rkey: change.rkey.clone(),
                cid: rec.cid,
                blobs: rec.blobs.clone(),
            });
        } else {
            next = next
                .delete(&path)?
                .ok_or_else(|| WriteError::RecordNotFound(path.clone()))?;
            index.push(RecordWrite::Delete {
                collection: change.collection.clone(),
                rkey: change.rkey.clone(),
            });
        }
        outcomes.push(WriteOutcome {
            action: change.action,
            collection: change.collection.clone(),
            rkey: change.rkey.clone(),
            cid: encoded.as_ref().map(|r| r.cid),
            prev,
            blobs: encoded
                .as_ref()
                .map(|r| r.blobs.clone())
                .unwrap_or_default(),
        });
        if let Some(rec) = encoded {
            records.push((rec.cid, rec.bytes));
        }
    }
    Ok(Applied {
        tree: next,
        outcomes,
        records,
        index,
    })
}

/// Applies `changes` to `tree` (the repo at `head`, `None` for a new
/// repo), signs the commit with `key`, and assembles the store write and
/// the `#commit` event.
///
/// The event's `blocks` hold the commit, the new MST nodes, the new
/// records, and for every changed path the nodes proving it in the new
/// tree (enough for a relay to check the ops and invert them back to
/// `prevData`).
pub async fn prepare_commit(
    did: &Did,
    key: &SigningKey,
    head: Option<&RepoHead>,
    tree: &Mst,
    changes: &[RecordChange],
    clock: &TidClock,
) -> Result<PreparedCommit, WriteError> {
    // 1. The tree: every read that may need a missing block happens here.
    let applied = apply_changes(tree, changes)?;
    let (next, outcomes, records, index) = (
        applied.tree,
        applied.outcomes,
        applied.records,
        applied.index,
    );
    let mut proofs = Vec::new();
    for change in changes {
        proofs.extend(next.covering_proof(&change.path())?);
    }
    let new_nodes = next.unstored_blocks();

    // 2. Sign.
    let rev = match head {
        Some(h) => clock.next_after(&h.rev),
        None => clock.next(),
    };
    let data = next.root_cid();
    let signed = UnsignedCommit::new(did.clone(), data, rev.clone()).sign(key);
    let (commit_cid, commit_block) = signed.to_block();

    // 3. Blocks for the store (new ones only) and for the event (with proofs).
    let mut stored: Vec<(Cid, Bytes)> = Vec::with_capacity(1 + new_nodes.len() + records.len());
    stored.push((commit_cid, commit_block));
    stored.extend(new_nodes);
    stored.extend(records);
    let mut event_blocks = stored.clone();
    event_blocks.extend(proofs);
    let mut included = BTreeSet::new();
    event_blocks.retain(|(cid, _)| included.insert(cid.to_bytes()));
    let car = car_bytes(commit_cid, event_blocks).await?;

    let mut blobs: Vec<Cid> = outcomes
        .iter()
        .flat_map(|o| o.blobs.iter().copied())
        .collect();
    blobs.sort_unstable_by_key(Cid::to_bytes);
    blobs.dedup();
    let body = CommitBody {
        repo: did.clone(),
        commit: commit_cid,
        rev: rev.clone(),
        since: head.map(|h| h.rev.clone()),
        blocks: Bytes::from(car),
        ops: outcomes
            .iter()
            .map(|o| RepoOp {
                action: match o.action {
                    WriteAction::Create => OpAction::Create,
                    WriteAction::Update => OpAction::Update,
                    WriteAction::Delete => OpAction::Delete,
                },
                path: format!("{}/{}", o.collection, o.rkey),
                cid: o.cid,
                prev: o.prev,
            })
            .collect(),
        blobs,
        prev_data: head.map(|h| h.data),
        time: Datetime::now(),
    };
    Ok(PreparedCommit {
        write: CommitWrite {
            did: did.clone(),
            expected_root: head.map(|h| h.commit),
            root: commit_cid,
            rev: rev.clone(),
            blocks: stored,
            records: index,
            event_type: EventType::Commit,
            event_payload: body.to_payload(),
        },
        commit: commit_cid,
        rev,
        outcomes,
        tree: next,
    })
}

/// Replaces a repo's content with `repo`, a checked repository (from
/// `com.atproto.repo.importRepo`, or a reset): a new commit over the same
/// tree, signed by `key` (an imported commit was signed by the old host),
/// announced by `#sync` rather than `#commit`.
///
/// `existing` is the repo's record index before the import (collection,
/// key, CID); records not in `repo` leave the index. The outcomes list a
/// create for every imported record (with its blobs) and a delete for every
/// record that left.
pub async fn prepare_import(
    did: &Did,
    key: &SigningKey,
    head: Option<&RepoHead>,
    repo: &crate::repo::LoadedRepo,
    existing: &[(Nsid, RecordKey, Cid)],
    clock: &TidClock,
) -> Result<PreparedCommit, WriteError> {
    let entries = repo.mst.entries()?;
    let mut stored: Vec<(Cid, Bytes)> = repo.mst.blocks()?;
    let mut index = Vec::with_capacity(entries.len() + existing.len());
    let mut outcomes = Vec::with_capacity(entries.len());
    let mut kept = BTreeSet::new();
    for (path, cid) in &entries {
        let bytes = repo
            .blocks
            .get(cid)
            .ok_or_else(|| WriteError::MissingRecord(path.clone()))?;
        let (collection, rkey) = split_path(path)?;
        let record: Ipld = data::decode(bytes).map_err(|source| WriteError::Encode {
            path: path.clone(),
            source,
        })?;
        let mut blobs: Vec<Cid> = collect_blob_refs(&record)
            .into_iter()
            .map(|b| b.cid)
            .collect();
        blobs.sort_unstable_by_key(Cid::to_bytes);
        blobs.dedup();
        stored.push((*cid, bytes.clone()));
        index.push(RecordWrite::Put {
            collection: collection.clone(),
            rkey: rkey.clone(),
            cid: *cid,
            blobs: blobs.clone(),
        });
        kept.insert(path.as_str());
        outcomes.push(WriteOutcome {
            action: WriteAction::Create,
            collection,
            rkey,
            cid: Some(*cid),
            prev: None,
            blobs,
        });
    }
    for (collection, rkey, cid) in existing {
        if !kept.contains(format!("{collection}/{rkey}").as_str()) {
            index.push(RecordWrite::Delete {
                collection: collection.clone(),
                rkey: rkey.clone(),
            });
            outcomes.push(WriteOutcome {
                action: WriteAction::Delete,
                collection: collection.clone(),
                rkey: rkey.clone(),
                cid: None,
                prev: Some(*cid),
                blobs: Vec::new(),
            });
        }
    }
    let rev = match head {
        Some(h) => clock.next_after(&h.rev),
        None => clock.next(),
    };
    let signed = UnsignedCommit::new(did.clone(), repo.commit.data, rev.clone()).sign(key);
    let (commit_cid, commit_block) = signed.to_block();
    let car = car_bytes(commit_cid, [(commit_cid, commit_block.clone())]).await?;
    stored.push((commit_cid, commit_block));
    let body = crate::event::SyncBody {
        did: did.clone(),
        blocks: Bytes::from(car),
        rev: rev.clone(),
        time: Datetime::now(),
    };
    Ok(PreparedCommit {
        write: CommitWrite {
            did: did.clone(),
            expected_root: head.map(|h| h.commit),
            root: commit_cid,
            rev: rev.clone(),
            blocks: stored,
            records: index,
            event_type: EventType::Sync,
            event_payload: body.to_payload(),
        },
        commit: commit_cid,
        rev,
        outcomes,
        tree: repo.mst.clone(),
    })
}

/// `<collection>/<rkey>` of an MST key.
fn split_path(path: &str) -> Result<(Nsid, RecordKey), WriteError> {
    let bad = || WriteError::InvalidPath(path.to_owned());
    let (collection, rkey) = path.split_once('/').ok_or_else(bad)?;
    Ok((
        Nsid::parse(collection).map_err(|_| bad())?,
        RecordKey::parse(rkey).map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests;
