use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cid::Cid;

use super::StoreError;
use crate::event::{EventType, NewEvent};
use crate::syntax::{Did, Nsid, RecordKey, Tid};

/// The current head of a repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRoot {
    /// CID of the latest signed commit.
    pub cid: Cid,
    /// `rev` of that commit.
    pub rev: Tid,
    /// When the root last moved.
    pub updated_at: DateTime<Utc>,
}

/// A record in the record index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEntry {
    /// The collection (NSID).
    pub collection: Nsid,
    /// The record key.
    pub rkey: RecordKey,
    /// CID of the record's DAG-CBOR block.
    pub cid: Cid,
    /// `rev` of the commit that last wrote the record.
    pub rev: Tid,
}

/// A change to the record index, applied with a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// Create or replace the record at `collection/rkey`.
    Put {
        /// The collection.
        collection: Nsid,
        /// The record key.
        rkey: RecordKey,
        /// CID of the new record block (which must be among the commit's blocks or already stored).
        cid: Cid,
        /// The blobs the record references (deduplicated). They replace the
        /// record's earlier references, which keeps per-blob reference
        /// counts right across updates.
        blobs: Vec<Cid>,
    },
    /// Remove the record at `collection/rkey`.
    Delete {
        /// The collection.
        collection: Nsid,
        /// The record key.
        rkey: RecordKey,
    },
}

/// Everything one commit changes, written by [`RepoStore::apply_commit`] in
/// one transaction.
#[derive(Debug, Clone)]
pub struct CommitWrite {
    /// The repo.
    pub did: Did,
    /// Compare-and-swap: the root the commit was built on, or `None` when the
    /// commit creates the repo.
    pub expected_root: Option<Cid>,
    /// CID of the new signed commit block.
    pub root: Cid,
    /// `rev` of the new commit.
    pub rev: Tid,
    /// New blocks: the commit, changed MST nodes and records. A block
    /// already stored for this repo is not stored twice; it is marked as
    /// written by this commit's `rev` (for [`RepoStore::blocks_since`]).
    pub blocks: Vec<(Cid, Bytes)>,
    /// Changes to the record index.
    pub records: Vec<RecordWrite>,
    /// The event announcing the commit (`Commit`, or `Sync` for a reset).
    pub event_type: EventType,
    /// DAG-CBOR body of that event, without `seq`.
    pub event_payload: Bytes,
}

impl CommitWrite {
    /// The event this commit sequences.
    pub fn event(&self) -> NewEvent {
        NewEvent {
            did: self.did.clone(),
            event_type: self.event_type,
            payload: self.event_payload.clone(),
        }
    }
}

/// The steps of [`RepoStore::apply_commit`], in order. Backends expose a
/// fault-injection hook keyed by stage so the conformance suite can prove that
/// a failure after any of them leaves nothing behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStage {
    /// The root moved (compare-and-swap done).
    Root,
    /// The blocks are written.
    Blocks,
    /// The record index is updated.
    Records,
    /// The event is sequenced (only the transaction commit remains).
    Event,
}

impl CommitStage {
    /// All stages, in the order `apply_commit` performs them.
    pub const ALL: [Self; 4] = [Self::Root, Self::Blocks, Self::Records, Self::Event];
}

/// A page of the record index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordPage {
    /// Maximum number of records to return.
    pub limit: usize,
    /// Exclusive start: records after (or, when `reverse`, before) this key.
    pub cursor: Option<RecordKey>,
    /// `false`: descending rkey order (newest TIDs first, the
    /// `listRecords` default); `true`: ascending.
    pub reverse: bool,
}

/// Counts describing a stored repo, as `com.atproto.server.checkAccountStatus`
/// reports them. All zero for a DID without a repo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepoStats {
    /// Blocks stored for the repo (current and historical: commits, MST
    /// nodes and records).
    pub blocks: u64,
    /// Records in the record index (the repo's live records).
    pub records: u64,
    /// Distinct blobs referenced by the repo's records.
    pub expected_blobs: u64,
    /// Of [`expected_blobs`](Self::expected_blobs), how many are stored for
    /// the account.
    pub imported_blobs: u64,
}

/// Metadata of one of an account's blobs. The bytes live in the
/// [`BlobStore`](super::BlobStore); this row says whose blob it is, what it
/// is, and whether it is still a temporary upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// The account the blob belongs to.
    pub did: Did,
    /// CIDv1 (raw codec, sha2-256) of the content.
    pub cid: Cid,
    /// MIME type, sniffed from the content or as declared.
    pub mime_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Key of the temporary object while no committed record references the
    /// blob yet; `None` once the blob is permanent.
    pub temp_key: Option<String>,
    /// When the blob was uploaded (refreshed when a temporary blob is
    /// uploaded again, which restarts its grace period).
    pub created_at: DateTime<Utc>,
    /// Set when the blob is taken down; a taken-down blob is not served.
    pub takedown_ref: Option<String>,
}

/// A stored block with the revision of the commit that wrote it, as
/// [`RepoStore::blocks_since`] pages them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevBlock {
    /// `rev` of the commit that stored the block.
    pub rev: Tid,
    /// The block's CID.
    pub cid: Cid,
    /// The block's bytes.
    pub bytes: Bytes,
}

/// A blob that a record references but that is not stored for the account
/// (after `importRepo`, until the blob is uploaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBlob {
    /// The blob's CID.
    pub cid: Cid,
    /// `at://` URI of one record referencing it.
    pub record_uri: String,
}

/// Block storage, repo roots, the record index and the write side of the
/// event log.
///
/// The one write path is [`apply_commit`](Self::apply_commit): blocks, the new
/// root, the record index changes and the sequenced event land in ONE
/// transaction, guarded by a compare-and-swap on the previous root. Either all
/// of it is durable or none of it is.
#[async_trait]
pub trait RepoStore: Send + Sync + 'static {
    /// The block `cid` of `did`'s repo, if stored.
    async fn get_block(&self, did: &Did, cid: &Cid) -> Result<Option<Bytes>, StoreError>;

    /// The subset of `cids` stored for `did`, in no particular order.
    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> Result<Vec<(Cid, Bytes)>, StoreError>;

    /// The repo's current root, or `None` when `did` has no repo.
    async fn get_root(&self, did: &Did) -> Result<Option<RepoRoot>, StoreError>;

    /// One record of the record index.
    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<RecordEntry>, StoreError>;

    /// A page of one collection's records, ordered by record key.
    async fn list_records(
        &self,
        did: &Did,
        collection: &Nsid,
        page: &RecordPage,
    ) -> Result<Vec<RecordEntry>, StoreError>;

    /// The collections that hold at least one record, in NSID order.
    async fn list_collections(&self, did: &Did) -> Result<Vec<Nsid>, StoreError>;

    /// Counts of `did`'s repo for `checkAccountStatus`; all zero for a DID
    /// without a repo.
    async fn repo_stats(&self, did: &Did) -> Result<RepoStats, StoreError>;

    /// Writes a commit atomically and returns the `seq` given to its event.
    ///
    /// Fails with [`StoreError::RootConflict`] when the repo's root is not
    /// `commit.expected_root`; then nothing is written. Of two concurrent
    /// commits built on the same root, exactly one succeeds.
    async fn apply_commit(&self, commit: CommitWrite) -> Result<i64, StoreError>;

    /// Sequences an event that has no commit (`#identity`, `#account`) and
    /// returns its `seq`.
    async fn sequence_event(&self, event: NewEvent) -> Result<i64, StoreError>;

    /// Deletes `did`'s repo and returns the `seq` given to `event`, in ONE
    /// transaction: the repo's blocks, root and record index go; every
    /// earlier event of `did` is invalidated (the [`Sequencer`](super::Sequencer)
    /// no longer serves it); then `event` (the `#account` event announcing
    /// the deletion, which stays valid) is sequenced. Subscribers are woken
    /// as by [`apply_commit`](Self::apply_commit). A DID without a repo
    /// still gets its event sequenced.
    async fn delete_repo(&self, did: &Did, event: NewEvent) -> Result<i64, StoreError>;

    /// Records an upload. When `blob.did` has no blob `blob.cid`, inserts
    /// `blob` and returns it. Otherwise returns the stored record unchanged,
    /// except that a still temporary one gets `blob.created_at` (restarting
    /// its grace period, so a concurrent sweep does not remove it); the
    /// caller then drops its own temporary object when the returned
    /// `temp_key` is not the one it passed.
    async fn put_blob(&self, blob: BlobRecord) -> Result<BlobRecord, StoreError>;

    /// `did`'s blob `cid`, temporary or permanent.
    async fn get_blob(&self, did: &Did, cid: &Cid) -> Result<Option<BlobRecord>, StoreError>;

    /// Marks `did`'s blob `cid` permanent (clears its `temp_key`) after its
    /// bytes were moved to permanent storage. Succeeds when already
    /// permanent; [`StoreError::NotFound`] when there is no such blob.
    async fn mark_blob_permanent(&self, did: &Did, cid: &Cid) -> Result<(), StoreError>;

    /// Whether any of `did`'s records references blob `cid`.
    async fn is_blob_referenced(&self, did: &Did, cid: &Cid) -> Result<bool, StoreError>;

    /// Blobs referenced by `did`'s records but not stored for `did`, ordered
    /// by CID (string order), after `cursor`, at most `limit`; one entry per
    /// blob.
    async fn list_missing_blobs(
        &self,
        did: &Did,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<MissingBlob>, StoreError>;

    /// CIDs of `did`'s permanent blobs, ordered by CID (string order), after
    /// `cursor`, at most `limit`.
    async fn list_blobs(
        &self,
        did: &Did,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<Cid>, StoreError>;

    /// A page of `did`'s blocks written by commits with a `rev` greater than
    /// `since` (the blocks `com.atproto.sync.getRepo?since=` returns),
    /// ordered by (`rev`, CID in string order), starting after `after` (the
    /// `rev` and CID of the last block of the previous page), at most
    /// `limit`. A block is counted with the latest commit that stored it
    /// (see [`CommitWrite::blocks`]), so a block that left the tree and came
    /// back is in the diff.
    async fn blocks_since(
        &self,
        did: &Did,
        since: &Tid,
        after: Option<(&Tid, &Cid)>,
        limit: usize,
    ) -> Result<Vec<RevBlock>, StoreError>;

    /// CIDs of the blobs `did`'s records reference (the blobs
    /// `com.atproto.sync.listBlobs` lists), each once, ordered by CID
    /// (string order), after `cursor`, at most `limit`. With `since`, only
    /// blobs referenced by records last written by a commit with a `rev`
    /// greater than `since`. Whether the blob is stored does not matter.
    async fn list_record_blobs(
        &self,
        did: &Did,
        since: Option<&Tid>,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<Cid>, StoreError>;

    /// Temporary blobs (of any account) uploaded before `created_before`
    /// that no record references: uploads never used. At most `limit`.
    async fn stale_temp_blobs(
        &self,
        created_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError>;

    /// Temporary blobs that a record references: a commit landed but the
    /// server stopped before moving the bytes to permanent storage. At most
    /// `limit`.
    async fn unpromoted_blobs(&self, limit: usize) -> Result<Vec<BlobRecord>, StoreError>;

    /// Permanent blobs that no record references any more (of `did`, or of
    /// every account when `None`). At most `limit`.
    async fn orphaned_blobs(
        &self,
        did: Option<&Did>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError>;

    /// Deletes the row of `did`'s blob `cid` if it is still exactly as the
    /// sweep saw it: with the same `temp_key` (`None`: permanent), uploaded
    /// no later than `created_before` when temporary, and referenced by no
    /// record. Returns whether it was deleted; only then may the caller
    /// delete the bytes.
    async fn delete_blob_if_unused(
        &self,
        did: &Did,
        cid: &Cid,
        temp_key: Option<&str>,
        created_before: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
