use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, btree_map};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use aurora_core::cid::Cid;
use aurora_core::crypto::SigningKey;
use aurora_core::event::{NewEvent, SeqEvent};
use aurora_core::store::{
    Account, AccountLookup, AccountStatus, AccountStore, AppPassword, BlobRecord, CommitStage,
    CommitWrite, EmailToken, EmailTokenPurpose, InviteCode, InviteCodeSort, InviteCodeUse,
    MissingBlob, NewInviteCode, RecordEntry, RecordPage, RecordWrite, RefreshToken, RepoRoot,
    RepoStats, RepoStore, RevBlock, SeqWatch, Sequencer, SinkCursor, SinkCursorStore, SinkLease,
    StoreError, constant_time_eq, normalize_email,
};
use aurora_core::syntax::{AtUri, Did, Handle, Nsid, RecordKey, Tid};
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::watch;

#[derive(Default)]
struct Repo {
    root: Option<RepoRoot>,
    blocks: HashMap<Cid, Bytes>,
    /// The `rev` of the latest commit that stored each block.
    block_revs: HashMap<Cid, Tid>,
    /// collection -> rkey -> entry, ordered like the SQL index.
    records: BTreeMap<Nsid, BTreeMap<RecordKey, RecordEntry>>,
    /// Record `at://` URI -> the blobs it references (records referencing
    /// none are absent).
    blob_refs: BTreeMap<String, BTreeSet<Cid>>,
}

impl Repo {
    fn references(&self, cid: &Cid) -> bool {
        self.blob_refs.values().any(|blobs| blobs.contains(cid))
    }
}

#[derive(Default)]
pub(crate) struct State {
    repos: HashMap<Did, Repo>,
    events: BTreeMap<i64, SeqEvent>,
    /// Events that are kept but no longer served (their repo was deleted).
    invalidated: HashSet<i64>,
    last_seq: i64,
    accounts: BTreeMap<Did, Account>,
    signing_keys: HashMap<Did, SigningKey>,
    refresh_tokens: HashMap<String, RefreshToken>,
    app_passwords: BTreeMap<(Did, String), AppPassword>,
    email_tokens: HashMap<(Did, EmailTokenPurpose), EmailToken>,
    invite_codes: BTreeMap<String, InviteCode>,
    /// Blob metadata by account and CID (as a string, the SQL order).
    blobs: BTreeMap<(Did, String), BlobRecord>,
    preferences: HashMap<Did, Vec<serde_json::Value>>,
    sink_cursors: BTreeMap<String, SinkCursor>,
    sink_leases: BTreeMap<String, SinkLease>,
    pub(crate) oauth: crate::oauth::OAuthState,
}

impl State {
    fn account_mut(&mut self, did: &Did) -> Result<&mut Account, StoreError> {
        self.accounts
            .get_mut(did)
            .ok_or(StoreError::NotFound("account"))
    }

    fn blob_referenced(&self, did: &Did, cid: &Cid) -> bool {
        self.repos.get(did).is_some_and(|r| r.references(cid))
    }

    /// Blobs matching `keep`, in `(did, cid)` order, at most `limit`.
    fn blobs_where(&self, limit: usize, keep: impl Fn(&BlobRecord) -> bool) -> Vec<BlobRecord> {
        self.blobs
            .values()
            .filter(|b| keep(b))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Temporary blobs matching `keep`, oldest first, at most `limit`.
    fn temp_blobs_where(
        &self,
        limit: usize,
        keep: impl Fn(&BlobRecord) -> bool,
    ) -> Vec<BlobRecord> {
        let mut found = self.blobs_where(usize::MAX, |b| b.temp_key.is_some() && keep(b));
        found.sort_by_cached_key(|b| (b.created_at, b.did.clone(), b.cid.to_string()));
        found.truncate(limit);
        found
    }

    fn end_sessions(&mut self, did: &Did, app_password: Option<&str>) -> u64 {
        let before = self.refresh_tokens.len();
        self.refresh_tokens.retain(|_, t| {
            &t.did != did
                || app_password.is_some_and(|name| t.app_password.as_deref() != Some(name))
        });
        (before - self.refresh_tokens.len()) as u64
    }
}

/// Where an invite code sits in a listing: `(n, code)` ordered by `n`
/// descending, then code; `n` is the creation time in microseconds
/// ([`InviteCodeSort::Recent`]) or the number of uses ([`InviteCodeSort::Usage`]).
fn invite_sort_key(sort: InviteCodeSort, code: &InviteCode) -> (i64, &str) {
    let n = match sort {
        InviteCodeSort::Recent => code.created_at.timestamp_micros(),
        InviteCodeSort::Usage => i64::try_from(code.uses.len()).unwrap_or(i64::MAX),
    };
    (n, &code.code)
}

fn invite_cursor_prefix(sort: InviteCodeSort) -> &'static str {
    match sort {
        InviteCodeSort::Recent => "r:",
        InviteCodeSort::Usage => "u:",
    }
}

/// The `(n, code)` of a cursor made by `list_invite_codes` for `sort`.
fn decode_invite_cursor(sort: InviteCodeSort, cursor: &str) -> Option<(i64, &str)> {
    let (n, code) = cursor
        .strip_prefix(invite_cursor_prefix(sort))?
        .split_once(':')?;
    Some((n.parse().ok()?, code))
}

impl State {
    fn push_event(&mut self, event: NewEvent) -> i64 {
        self.last_seq += 1;
        let seq = self.last_seq;
        self.events.insert(
            seq,
            SeqEvent {
                seq,
                did: event.did,
                event_type: event.event_type,
                time: Utc::now(),
                payload: event.payload,
            },
        );
        seq
    }
}

/// Repo store, sequencer and account store in memory.
///
/// One mutex guards all state; `apply_commit` checks and stages everything
/// before mutating, so a failure leaves no trace.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    head: Arc<watch::Sender<i64>>,
    fault_at: Option<CommitStage>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("head", &*self.head.borrow())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            head: Arc::new(watch::channel(0).0),
            fault_at: None,
        }
    }

    /// A view of the same data whose `apply_commit` fails right after
    /// `stage`, for fault-injection tests. Not for production.
    #[doc(hidden)]
    #[must_use]
    pub fn with_fault_after(&self, stage: CommitStage) -> Self {
        Self {
            fault_at: Some(stage),
            ..self.clone()
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave state half-changed
        // (mutations happen after all checks), so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fault(&self, stage: CommitStage) -> Result<(), StoreError> {
        if self.fault_at == Some(stage) {
            return Err(StoreError::Backend(
                format!("injected fault after {stage:?}").into(),
            ));
        }
        Ok(())
    }

    /// Tells subscribers that events up to `seq` are committed. Two
    /// writers may finish in either order; the head only moves forward.
    fn advance_head(&self, seq: i64) {
        self.head.send_if_modified(|head| {
            let moved = seq > *head;
            if moved {
                *head = seq;
            }
            moved
        });
    }
}

#[async_trait]
impl RepoStore for MemoryStore {
    async fn get_block(&self, did: &Did, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .lock()
            .repos
            .get(did)
            .and_then(|r| r.blocks.get(cid).cloned()))
    }

    async fn get_blocks(&self, did: &Did, cids: &[Cid]) -> Result<Vec<(Cid, Bytes)>, StoreError> {
        let state = self.lock();
        let Some(repo) = state.repos.get(did) else {
            return Ok(Vec::new());
        };
        Ok(cids
            .iter()
            .filter_map(|cid| repo.blocks.get(cid).map(|b| (*cid, b.clone())))
            .collect())
    }

    async fn get_root(&self, did: &Did) -> Result<Option<RepoRoot>, StoreError> {
        Ok(self.lock().repos.get(did).and_then(|r| r.root.clone()))
    }

    async fn get_record(
        &self,
        did: &Did,
        collection: &Nsid,
        rkey: &RecordKey,
    ) -> Result<Option<RecordEntry>, StoreError> {
        Ok(self
            .lock()
            .repos
            .get(did)
            .and_then(|r| r.records.get(collection)?.get(rkey).cloned()))
    }

    async fn list_records(
        &self,
        did: &Did,
        collection: &Nsid,
        page: &RecordPage,
    ) -> Result<Vec<RecordEntry>, StoreError> {
        let state = self.lock();
        let Some(repo) = state.repos.get(did) else {
            return Ok(Vec::new());
        };
        let Some(records) = repo.records.get(collection) else {
            return Ok(Vec::new());
        };
        let cursor = page.cursor.as_ref();
        let entries: Vec<RecordEntry> = if page.reverse {
            records
                .values()
                .filter(|e| cursor.is_none_or(|c| e.rkey > *c))
                .take(page.limit)
                .cloned()
                .collect()
        } else {
            records
                .values()
                .rev()
                .filter(|e| cursor.is_none_or(|c| e.rkey < *c))
                .take(page.limit)
                .cloned()
                .collect()
        };
        Ok(entries)
    }

    async fn list_collections(&self, did: &Did) -> Result<Vec<Nsid>, StoreError> {
        let state = self.lock();
        Ok(state
            .repos
            .get(did)
            .map(|r| r.records.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn repo_stats(&self, did: &Did) -> Result<RepoStats, StoreError> {
        let state = self.lock();
        let Some(repo) = state.repos.get(did) else {
            return Ok(RepoStats::default());
        };
        let referenced: BTreeSet<&Cid> = repo.blob_refs.values().flatten().collect();
        let imported = referenced
            .iter()
            .filter(|cid| state.blobs.contains_key(&(did.clone(), cid.to_string())))
            .count();
        Ok(RepoStats {
            blocks: repo.blocks.len() as u64,
            records: repo.records.values().map(|r| r.len() as u64).sum(),
            expected_blobs: referenced.len() as u64,
            imported_blobs: imported as u64,
        })
    }

    async fn apply_commit(&self, commit: CommitWrite) -> Result<i64, StoreError> {
        let mut state = self.lock();
        let current = state
            .repos
            .get(&commit.did)
            .and_then(|r| r.root.as_ref())
            .map(|r| r.cid);
        if current != commit.expected_root {
            return Err(StoreError::RootConflict {
                did: commit.did,
                expected: commit.expected_root,
            });
        }
        // Every stage is checked before anything is mutated.
        for stage in CommitStage::ALL {
            self.fault(stage)?;
        }
        let event = commit.event();
        let repo = state.repos.entry(commit.did.clone()).or_default();
        repo.root = Some(RepoRoot {
            cid: commit.root,
            rev: commit.rev.clone(),
            updated_at: Utc::now(),
        });
        for (cid, bytes) in commit.blocks {
            repo.blocks.entry(cid).or_insert(bytes);
            repo.block_revs.insert(cid, commit.rev.clone());
        }
        for write in commit.records {
            match write {
                RecordWrite::Put {
                    collection,
                    rkey,
                    cid,
                    blobs,
                } => {
                    let uri = AtUri::for_record(&commit.did, &collection, &rkey);
                    if blobs.is_empty() {
                        repo.blob_refs.remove(uri.as_str());
                    } else {
                        repo.blob_refs
                            .insert(uri.as_str().to_owned(), blobs.into_iter().collect());
                    }
                    let entry = RecordEntry {
                        collection: collection.clone(),
                        rkey: rkey.clone(),
                        cid,
                        rev: commit.rev.clone(),
                    };
                    repo.records
                        .entry(collection)
                        .or_default()
                        .insert(rkey, entry);
                }
                RecordWrite::Delete { collection, rkey } => {
                    let uri = AtUri::for_record(&commit.did, &collection, &rkey);
                    repo.blob_refs.remove(uri.as_str());
                    if let Some(records) = repo.records.get_mut(&collection) {
                        records.remove(&rkey);
                        if records.is_empty() {
                            repo.records.remove(&collection);
                        }
                    }
                }
            }
        }
        let seq = state.push_event(event);
        drop(state);
        self.advance_head(seq);
        Ok(seq)
    }

    async fn sequence_event(&self, event: NewEvent) -> Result<i64, StoreError> {
        let seq = self.lock().push_event(event);
        self.advance_head(seq);
        Ok(seq)
    }

    async fn delete_repo(&self, did: &Did, event: NewEvent) -> Result<i64, StoreError> {
        let mut state = self.lock();
        state.repos.remove(did);
        state.blobs.retain(|(owner, _), _| owner != did);
        let earlier: Vec<i64> = state
            .events
            .values()
            .filter(|e| &e.did == did)
            .map(|e| e.seq)
            .collect();
        state.invalidated.extend(earlier);
        let seq = state.push_event(event);
        drop(state);
        self.advance_head(seq);
        Ok(seq)
    }

    async fn put_blob(&self, blob: BlobRecord) -> Result<BlobRecord, StoreError> {
        let mut state = self.lock();
        match state.blobs.entry((blob.did.clone(), blob.cid.to_string())) {
            btree_map::Entry::Vacant(e) => Ok(e.insert(blob).clone()),
            btree_map::Entry::Occupied(mut e) => {
                let stored = e.get_mut();
                if stored.temp_key.is_some() {
                    stored.created_at = blob.created_at;
                }
                Ok(stored.clone())
            }
        }
    }

    async fn get_blob(&self, did: &Did, cid: &Cid) -> Result<Option<BlobRecord>, StoreError> {
        Ok(self
            .lock()
            .blobs
            .get(&(did.clone(), cid.to_string()))
            .cloned())
    }

    async fn mark_blob_permanent(&self, did: &Did, cid: &Cid) -> Result<(), StoreError> {
        self.lock()
            .blobs
            .get_mut(&(did.clone(), cid.to_string()))
            .ok_or(StoreError::NotFound("blob"))?
            .temp_key = None;
        Ok(())
    }

    async fn is_blob_referenced(&self, did: &Did, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.lock().blob_referenced(did, cid))
    }

    async fn list_missing_blobs(
        &self,
        did: &Did,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<MissingBlob>, StoreError> {
        let state = self.lock();
        let Some(repo) = state.repos.get(did) else {
            return Ok(Vec::new());
        };
        let cursor = cursor.map(ToString::to_string);
        // CID (string) -> the first URI (in URI order) referencing it.
        let mut missing: BTreeMap<String, (Cid, &String)> = BTreeMap::new();
        for (uri, blobs) in &repo.blob_refs {
            for cid in blobs {
                let key = cid.to_string();
                if cursor.as_ref().is_some_and(|c| key <= *c)
                    || state.blobs.contains_key(&(did.clone(), key.clone()))
                {
                    continue;
                }
                missing.entry(key).or_insert((*cid, uri));
            }
        }
        Ok(missing
            .into_values()
            .take(limit)
            .map(|(cid, uri)| MissingBlob {
                cid,
                record_uri: uri.clone(),
            })
            .collect())
    }

    async fn list_blobs(
        &self,
        did: &Did,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<Cid>, StoreError> {
        let state = self.lock();
        let cursor = cursor.map(ToString::to_string);
        Ok(state
            .blobs
            .range((did.clone(), String::new())..)
            .take_while(|((owner, _), _)| owner == did)
            .filter(|((_, cid), b)| b.temp_key.is_none() && cursor.as_ref().is_none_or(|c| cid > c))
            .take(limit)
            .map(|(_, b)| b.cid)
            .collect())
    }

    async fn blocks_since(
        &self,
        did: &Did,
        since: &Tid,
        after: Option<(&Tid, &Cid)>,
        limit: usize,
    ) -> Result<Vec<RevBlock>, StoreError> {
        let state = self.lock();
        let Some(repo) = state.repos.get(did) else {
            return Ok(Vec::new());
        };
        // (rev, CID string): the SQL order.
        let after = after.map(|(rev, cid)| (rev.as_str().to_owned(), cid.to_string()));
        let mut newer: Vec<((String, String), &Cid)> = repo
            .block_revs
            .iter()
            .filter(|(_, rev)| *rev > since)
            .map(|(cid, rev)| ((rev.as_str().to_owned(), cid.to_string()), cid))
            .filter(|(key, _)| after.as_ref().is_none_or(|a| key > a))
            .collect();
        newer.sort_unstable();
        Ok(newer
            .into_iter()
            .take(limit)
            .map(|(_, cid)| RevBlock {
                rev: repo.block_revs[cid].clone(),
                cid: *cid,
                bytes: repo.blocks[cid].clone(),
            })
            .collect())
    }

    async fn list_record_blobs(
        &self,
        did: &Did,
        since: Option<&Tid>,
        cursor: Option<&Cid>,
        limit: usize,
    ) -> Result<Vec<Cid>, StoreError> {
        let state = self.lock();
        let Some(repo) = state.repos.get(did) else {
            return Ok(Vec::new());
        };
        let cursor = cursor.map(ToString::to_string);
        // CID (string, the SQL order) -> CID.
        let mut found: BTreeMap<String, Cid> = BTreeMap::new();
        for entry in repo.records.values().flat_map(BTreeMap::values) {
            if since.is_some_and(|since| entry.rev <= *since) {
                continue;
            }
            let uri = AtUri::for_record(did, &entry.collection, &entry.rkey);
            for cid in repo.blob_refs.get(uri.as_str()).into_iter().flatten() {
                let key = cid.to_string();
                if cursor.as_ref().is_none_or(|c| key > *c) {
                    found.insert(key, *cid);
                }
            }
        }
        Ok(found.into_values().take(limit).collect())
    }

    async fn stale_temp_blobs(
        &self,
        created_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        let state = self.lock();
        Ok(state.temp_blobs_where(limit, |b| {
            b.created_at < created_before && !state.blob_referenced(&b.did, &b.cid)
        }))
    }

    async fn unpromoted_blobs(&self, limit: usize) -> Result<Vec<BlobRecord>, StoreError> {
        let state = self.lock();
        Ok(state.temp_blobs_where(limit, |b| state.blob_referenced(&b.did, &b.cid)))
    }

    async fn orphaned_blobs(
        &self,
        did: Option<&Did>,
        limit: usize,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        let state = self.lock();
        Ok(state.blobs_where(limit, |b| {
            b.temp_key.is_none()
                && did.is_none_or(|d| &b.did == d)
                && !state.blob_referenced(&b.did, &b.cid)
        }))
    }

    async fn delete_blob_if_unused(
        &self,
        did: &Did,
        cid: &Cid,
        temp_key: Option<&str>,
        created_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let key = (did.clone(), cid.to_string());
        let unchanged = state.blobs.get(&key).is_some_and(|b| {
            b.temp_key.as_deref() == temp_key
                && (temp_key.is_none() || b.created_at <= created_before)
        });
        if !unchanged || state.blob_referenced(did, cid) {
            return Ok(false);
        }
        state.blobs.remove(&key);
        Ok(true)
    }
}

#[async_trait]
impl SinkCursorStore for MemoryStore {
    async fn sink_cursor(&self, name: &str) -> Result<Option<SinkCursor>, StoreError> {
        Ok(self.lock().sink_cursors.get(name).cloned())
    }

    async fn set_sink_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError> {
        let cursor = SinkCursor {
            name: name.to_owned(),
            seq,
            updated_at: Utc::now(),
        };
        self.lock().sink_cursors.insert(name.to_owned(), cursor);
        Ok(())
    }

    async fn list_sink_cursors(&self) -> Result<Vec<SinkCursor>, StoreError> {
        Ok(self.lock().sink_cursors.values().cloned().collect())
    }

    async fn delete_sink_cursor(&self, name: &str) -> Result<bool, StoreError> {
        let mut state = self.lock();
        state.sink_leases.remove(name);
        Ok(state.sink_cursors.remove(name).is_some())
    }

    async fn acquire_sink_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let expires_at = SinkLease::expiry(now, ttl);
        let mut state = self.lock();
        if let Some(lease) = state.sink_leases.get(name)
            && lease.holder != holder
            && lease.expires_at >= now
        {
            return Ok(false);
        }
        state.sink_leases.insert(
            name.to_owned(),
            SinkLease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                expires_at,
            },
        );
        Ok(true)
    }

    async fn release_sink_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state
            .sink_leases
            .get(name)
            .is_some_and(|l| l.holder == holder)
        {
            state.sink_leases.remove(name);
        }
        Ok(())
    }

    async fn list_sink_leases(&self) -> Result<Vec<SinkLease>, StoreError> {
        Ok(self.lock().sink_leases.values().cloned().collect())
    }
}

#[async_trait]
impl Sequencer for MemoryStore {
    async fn current_seq(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.lock().events.keys().next_back().copied())
    }

    async fn oldest_seq(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.lock().events.keys().next().copied())
    }

    async fn events_in_range(
        &self,
        after: i64,
        up_to: i64,
        limit: usize,
    ) -> Result<Vec<SeqEvent>, StoreError> {
        if after >= up_to {
            return Ok(Vec::new());
        }
        let state = self.lock();
        Ok(state
            .events
            .range(after + 1..=up_to)
            .filter(|(seq, _)| !state.invalidated.contains(seq))
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    fn subscribe(&self) -> SeqWatch {
        self.head.subscribe()
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let Some(&newest) = state.events.keys().next_back() else {
            return Ok(0);
        };
        // Events a sink has yet to acknowledge stay too.
        let delete_below = state
            .sink_cursors
            .values()
            .map(|c| c.seq.saturating_add(1))
            .min()
            .map_or(newest, |below| below.min(newest));
        let old: Vec<i64> = state
            .events
            .range(..delete_below)
            .filter(|(_, e)| e.time < before)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in &old {
            state.events.remove(seq);
            state.invalidated.remove(seq);
        }
        Ok(old.len() as u64)
    }
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn create_account(
        &self,
        new: aurora_core::store::NewAccount,
    ) -> Result<Account, StoreError> {
        let mut state = self.lock();
        if let Some(code) = &new.invite_code {
            match state.invite_codes.get(code) {
                Some(c) if !c.disabled && c.available_uses > 0 => {}
                _ => return Err(StoreError::InvalidInviteCode),
            }
        }
        let email = new.normalized_email();
        if state.accounts.contains_key(&new.did) {
            return Err(StoreError::AlreadyExists { field: "did" });
        }
        for existing in state.accounts.values() {
            if existing.handle == new.handle {
                return Err(StoreError::AlreadyExists { field: "handle" });
            }
            if email.is_some() && existing.email == email {
                return Err(StoreError::AlreadyExists { field: "email" });
            }
        }
        if let Some(key) = new.signing_key.clone() {
            state.signing_keys.insert(new.did.clone(), key);
        }
        let invite_code = new.invite_code.clone();
        let account = new.into_account();
        if let Some(code) = invite_code.and_then(|c| state.invite_codes.get_mut(&c)) {
            code.available_uses -= 1;
            // A DID that signs up again with the same code keeps its first use.
            if !code.uses.iter().any(|u| u.used_by == account.did) {
                code.uses.push(InviteCodeUse {
                    used_by: account.did.clone(),
                    used_at: account.created_at.trunc_subsecs(6),
                });
            }
        }
        state.accounts.insert(account.did.clone(), account.clone());
        Ok(account)
    }

    async fn get_signing_key(&self, did: &Did) -> Result<Option<SigningKey>, StoreError> {
        Ok(self.lock().signing_keys.get(did).cloned())
    }

    async fn get_account(&self, lookup: AccountLookup<'_>) -> Result<Option<Account>, StoreError> {
        let state = self.lock();
        let found = match lookup {
            AccountLookup::Did(did) => state.accounts.get(did),
            AccountLookup::Handle(handle) => state.accounts.values().find(|a| &a.handle == handle),
            AccountLookup::Email(_) => {
                let email = lookup.normalized_email();
                state.accounts.values().find(|a| a.email == email)
            }
        };
        Ok(found.cloned())
    }

    async fn list_accounts(
        &self,
        cursor: Option<&Did>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError> {
        let state = self.lock();
        let iter: Box<dyn Iterator<Item = &Account>> = match cursor {
            Some(c) => Box::new(
                state
                    .accounts
                    .range((
                        std::ops::Bound::Excluded(c.clone()),
                        std::ops::Bound::Unbounded,
                    ))
                    .map(|(_, a)| a),
            ),
            None => Box::new(state.accounts.values()),
        };
        Ok(iter.take(limit).cloned().collect())
    }

    async fn update_handle(&self, did: &Did, handle: &Handle) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state
            .accounts
            .values()
            .any(|a| &a.handle == handle && &a.did != did)
        {
            return Err(StoreError::AlreadyExists { field: "handle" });
        }
        let account = state
            .accounts
            .get_mut(did)
            .ok_or(StoreError::NotFound("account"))?;
        account.handle = handle.clone();
        Ok(())
    }

    async fn update_status(&self, did: &Did, status: AccountStatus) -> Result<(), StoreError> {
        let mut state = self.lock();
        let account = state
            .accounts
            .get_mut(did)
            .ok_or(StoreError::NotFound("account"))?;
        account.status = status;
        Ok(())
    }

    async fn set_takedown_ref(
        &self,
        did: &Did,
        takedown_ref: Option<&str>,
    ) -> Result<(), StoreError> {
        self.lock().account_mut(did)?.takedown_ref = takedown_ref.map(str::to_owned);
        Ok(())
    }

    async fn delete_account(&self, did: &Did) -> Result<(), StoreError> {
        let mut state = self.lock();
        state
            .accounts
            .remove(did)
            .ok_or(StoreError::NotFound("account"))?;
        state.signing_keys.remove(did);
        state.end_sessions(did, None);
        state.oauth.forget_account(did);
        state.app_passwords.retain(|(owner, _), _| owner != did);
        state.email_tokens.retain(|(owner, _), _| owner != did);
        state.preferences.remove(did);
        Ok(())
    }

    async fn update_password(&self, did: &Did, password_hash: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.account_mut(did)?.password_hash = Some(password_hash.to_owned());
        state.end_sessions(did, None);
        state.oauth.end_sessions(did);
        Ok(())
    }

    async fn update_email(&self, did: &Did, email: Option<&str>) -> Result<(), StoreError> {
        let mut state = self.lock();
        let email = email.map(normalize_email);
        if email.is_some()
            && state
                .accounts
                .values()
                .any(|a| a.email == email && &a.did != did)
        {
            return Err(StoreError::AlreadyExists { field: "email" });
        }
        let account = state.account_mut(did)?;
        account.email = email;
        account.email_confirmed_at = None;
        Ok(())
    }

    async fn confirm_email(&self, did: &Did, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.lock().account_mut(did)?.email_confirmed_at = Some(at);
        Ok(())
    }

    async fn create_refresh_token(&self, token: RefreshToken) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.refresh_tokens.contains_key(&token.id) {
            return Err(StoreError::AlreadyExists {
                field: "refresh token id",
            });
        }
        state.refresh_tokens.insert(token.id.clone(), token);
        Ok(())
    }

    async fn get_refresh_token(&self, id: &str) -> Result<Option<RefreshToken>, StoreError> {
        Ok(self.lock().refresh_tokens.get(id).cloned())
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<RefreshToken>, StoreError> {
        Ok(self
            .lock()
            .refresh_tokens
            .values()
            .filter(|t| t.session_id == session_id)
            .max_by(|a, b| (a.expires_at, &a.id).cmp(&(b.expires_at, &b.id)))
            .cloned())
    }

    async fn rotate_refresh_token(
        &self,
        old_id: &str,
        new: RefreshToken,
    ) -> Result<Option<RefreshToken>, StoreError> {
        let mut state = self.lock();
        let Some(old) = state.refresh_tokens.remove(old_id) else {
            return Ok(None);
        };
        state.refresh_tokens.insert(new.id.clone(), new);
        Ok(Some(old))
    }

    async fn delete_refresh_token(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().refresh_tokens.remove(id).is_some())
    }

    async fn delete_refresh_tokens(
        &self,
        did: &Did,
        app_password: Option<&str>,
    ) -> Result<u64, StoreError> {
        Ok(self.lock().end_sessions(did, app_password))
    }

    async fn create_app_password(&self, app: AppPassword) -> Result<(), StoreError> {
        let mut state = self.lock();
        let key = (app.did.clone(), app.name.clone());
        if state.app_passwords.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                field: "app password name",
            });
        }
        state.app_passwords.insert(key, app);
        Ok(())
    }

    async fn list_app_passwords(&self, did: &Did) -> Result<Vec<AppPassword>, StoreError> {
        Ok(self
            .lock()
            .app_passwords
            .iter()
            .filter(|((owner, _), _)| owner == did)
            .map(|(_, a)| a.clone())
            .collect())
    }

    async fn delete_app_password(&self, did: &Did, name: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state
            .app_passwords
            .remove(&(did.clone(), name.to_owned()))
            .ok_or(StoreError::NotFound("app password"))?;
        state.end_sessions(did, Some(name));
        Ok(())
    }

    async fn put_email_token(&self, token: EmailToken) -> Result<(), StoreError> {
        self.lock()
            .email_tokens
            .insert((token.did.clone(), token.purpose), token);
        Ok(())
    }

    async fn take_email_token(
        &self,
        did: &Did,
        purpose: EmailTokenPurpose,
        token: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut state = self.lock();
        let key = (did.clone(), purpose);
        match state.email_tokens.get(&key) {
            Some(stored) if constant_time_eq(stored.token.as_bytes(), token.as_bytes()) => {
                Ok(state.email_tokens.remove(&key).map(|t| t.requested_at))
            }
            _ => Ok(None),
        }
    }

    async fn take_email_token_by_value(
        &self,
        purpose: EmailTokenPurpose,
        token: &str,
    ) -> Result<Option<(Did, DateTime<Utc>)>, StoreError> {
        let mut state = self.lock();
        // Each token of `purpose` is compared in constant time.
        let holders: Vec<Did> = state
            .email_tokens
            .values()
            .filter(|t| t.purpose == purpose)
            .filter(|t| constant_time_eq(t.token.as_bytes(), token.as_bytes()))
            .map(|t| t.did.clone())
            .collect();
        // Held by two accounts: ambiguous, so unknown.
        let Ok([did]) = <[Did; 1]>::try_from(holders) else {
            return Ok(None);
        };
        Ok(state
            .email_tokens
            .remove(&(did.clone(), purpose))
            .map(|t| (did, t.requested_at)))
    }

    async fn create_invite_codes(
        &self,
        codes: Vec<NewInviteCode>,
    ) -> Result<Vec<InviteCode>, StoreError> {
        let mut state = self.lock();
        let mut seen = HashSet::new();
        for c in &codes {
            if state.invite_codes.contains_key(&c.code) || !seen.insert(c.code.as_str()) {
                return Err(StoreError::AlreadyExists {
                    field: "invite code",
                });
            }
        }
        // Microseconds, as the SQL backends keep them.
        let now = Utc::now().trunc_subsecs(6);
        let created: Vec<InviteCode> = codes
            .into_iter()
            .map(|c| InviteCode {
                code: c.code,
                available_uses: c.available_uses,
                disabled: false,
                for_account: c.for_account,
                created_by: c.created_by,
                created_at: now,
                uses: Vec::new(),
            })
            .collect();
        for c in &created {
            state.invite_codes.insert(c.code.clone(), c.clone());
        }
        Ok(created)
    }

    async fn get_invite_code(&self, code: &str) -> Result<Option<InviteCode>, StoreError> {
        Ok(self.lock().invite_codes.get(code).cloned())
    }

    async fn list_invite_codes(
        &self,
        sort: InviteCodeSort,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<InviteCode>, Option<String>), StoreError> {
        if limit == 0 {
            return Ok((Vec::new(), None));
        }
        let after = match cursor.map(|c| decode_invite_cursor(sort, c)) {
            None => None,
            Some(Some(after)) => Some(after),
            // Not one of ours: nothing follows it.
            Some(None) => return Ok((Vec::new(), None)),
        };
        let state = self.lock();
        let mut all: Vec<&InviteCode> = state
            .invite_codes
            .values()
            .filter(|c| {
                after.is_none_or(|(n, code)| {
                    let (cn, ccode) = invite_sort_key(sort, c);
                    cn < n || (cn == n && ccode > code)
                })
            })
            .collect();
        all.sort_by_key(|&c| {
            let (n, code) = invite_sort_key(sort, c);
            (Reverse(n), code)
        });
        let more = all.len() > limit;
        let page: Vec<InviteCode> = all.into_iter().take(limit).cloned().collect();
        let next = if more {
            page.last().map(|c| {
                let (n, code) = invite_sort_key(sort, c);
                format!("{}{n}:{code}", invite_cursor_prefix(sort))
            })
        } else {
            None
        };
        Ok((page, next))
    }

    async fn account_invite_codes(&self, for_account: &str) -> Result<Vec<InviteCode>, StoreError> {
        let state = self.lock();
        let mut codes: Vec<InviteCode> = state
            .invite_codes
            .values()
            .filter(|c| c.for_account == for_account)
            .cloned()
            .collect();
        codes.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.code.cmp(&b.code))
        });
        Ok(codes)
    }

    async fn disable_invite_codes(
        &self,
        codes: &[String],
        accounts: &[String],
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        for c in state.invite_codes.values_mut() {
            if codes.contains(&c.code) || accounts.contains(&c.for_account) {
                c.disabled = true;
            }
        }
        Ok(())
    }

    async fn get_preferences(&self, did: &Did) -> Result<Vec<serde_json::Value>, StoreError> {
        let state = self.lock();
        if !state.accounts.contains_key(did) {
            return Err(StoreError::NotFound("account"));
        }
        Ok(state.preferences.get(did).cloned().unwrap_or_default())
    }

    async fn put_preferences(
        &self,
        did: &Did,
        preferences: Vec<serde_json::Value>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if !state.accounts.contains_key(did) {
            return Err(StoreError::NotFound("account"));
        }
        state.preferences.insert(did.clone(), preferences);
        Ok(())
    }
}
