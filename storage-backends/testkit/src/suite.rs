//! The storage conformance suites. Every backend runs the same tests through
//! [`store_conformance_suite!`](crate::store_conformance_suite) and
//! [`blob_conformance_suite!`](crate::blob_conformance_suite).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use aurora_core::data::{BlobHasher, DAG_CBOR, cid_for};
use aurora_core::event::EventType;
use aurora_core::store::{
    AccountLookup, AccountStatus, AccountStore, AppPassword, BlobError, BlobRecord, BlobStore,
    ByteStream, CommitStage, EmailToken, EmailTokenPurpose, InviteCode, InviteCodeSort,
    MissingBlob, NewAccount, NewInviteCode, OAuthDeviceAccount, OAuthRequest, OAuthRotation,
    OAuthSession, OAuthStore, RecordPage, RefreshToken, RefreshTokenState, RepoStats, RepoStore,
    Sequencer, SinkCursorStore, StoreError,
};
use bytes::Bytes;
use chrono::SubsecRound as _;
use futures::StreamExt;

use crate::fixtures::{
    blob_cid, block, commit, delete, did, handle, identity_event, nsid, put, put_with_blobs, rkey,
    temp_blob, tid,
};

/// Repo store + sequencer + account store + OAuth store + sink cursors in
/// one object, as database backends provide them.
pub trait FullStore: RepoStore + Sequencer + AccountStore + OAuthStore + SinkCursorStore {}
impl<T: RepoStore + Sequencer + AccountStore + OAuthStore + SinkCursorStore> FullStore for T {}

type FaultyFactory = Box<dyn Fn(CommitStage) -> Arc<dyn FullStore> + Send + Sync>;

/// What a backend hands the store suite: a fresh, empty store, and a way to
/// get a view of the same data whose `apply_commit` fails after a stage.
pub struct StoreHarness {
    store: Arc<dyn FullStore>,
    faulty: FaultyFactory,
    guard: Option<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for StoreHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHarness").finish_non_exhaustive()
    }
}

impl StoreHarness {
    /// A harness over `store`; `fault` makes the failing views.
    pub fn new<S, F>(store: S, fault: F) -> Self
    where
        S: FullStore + Clone,
        F: Fn(&S, CommitStage) -> S + Send + Sync + 'static,
    {
        let base = store.clone();
        Self {
            store: Arc::new(store),
            faulty: Box::new(move |stage| Arc::new(fault(&base, stage))),
            guard: None,
        }
    }

    /// Keeps `guard` (a temporary folder, say) alive as long as the harness.
    #[must_use]
    pub fn with_guard(mut self, guard: impl Any + Send) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }
}

/// What a backend hands the blob suite.
pub struct BlobHarness {
    store: Arc<dyn BlobStore>,
    guard: Option<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for BlobHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobHarness").finish_non_exhaustive()
    }
}

impl BlobHarness {
    /// A harness over a fresh, empty blob store.
    pub fn new(store: impl BlobStore) -> Self {
        Self {
            store: Arc::new(store),
            guard: None,
        }
    }

    /// Keeps `guard` alive as long as the harness.
    #[must_use]
    pub fn with_guard(mut self, guard: impl Any + Send) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }
}

/// Runs the whole store suite, one `#[tokio::test]` per case, against the
/// harness made by `$make`: an `async fn(&'static str) -> Option<StoreHarness>`
/// (returning `None` skips, after [`crate::skip`]).
#[macro_export]
macro_rules! store_conformance_suite {
    ($make:path) => {
        $crate::__conformance_cases!($make, store:
            empty_store_reads_nothing,
            first_commit_creates_repo_and_event,
            later_commits_update_and_delete_records,
            list_records_pages_in_both_directions,
            blocks_are_kept_per_repo,
            stale_root_is_rejected_and_writes_nothing,
            concurrent_commits_on_one_repo_exactly_one_wins,
            apply_commit_is_atomic_at_every_stage,
            events_are_sequenced_in_commit_order,
            concurrent_commits_on_many_repos_get_ordered_seqs,
            a_reader_following_the_head_misses_no_event,
            concurrent_failing_commits_write_nothing_and_spare_the_others,
            stale_commits_among_other_repos_fail_alone,
            subscribers_wake_on_new_events,
            pruning_deletes_old_events_but_keeps_the_newest,
            sink_cursors_are_stored_listed_and_deleted,
            sink_leases_have_one_holder_until_they_lapse,
            concurrent_sink_lease_takes_exactly_one_wins,
            pruning_keeps_the_events_a_sink_has_not_acknowledged,
            accounts_create_and_look_up,
            accounts_reject_duplicates,
            accounts_update_list_and_delete,
            sessions_rotate_once_and_end_with_the_password,
            app_passwords_are_named_per_account_and_end_their_sessions,
            email_changes_and_single_use_email_tokens,
            email_tokens_are_taken_by_value,
            concurrent_takes_of_one_email_token_exactly_one_wins,
            deleting_an_account_removes_its_credentials,
            signing_keys_are_stored_with_their_account,
            sessions_keep_their_id_across_rotations,
            sessions_end_with_their_credentials,
            takedown_refs_round_trip,
            invite_codes_are_created_listed_and_disabled,
            invite_codes_page_in_both_orders,
            sign_up_with_an_invite_code_consumes_a_use,
            sign_up_with_an_unusable_invite_code_writes_nothing,
            concurrent_sign_ups_race_for_the_last_invite_use,
            delete_repo_removes_the_repo_and_invalidates_its_events,
            delete_repo_without_a_repo_still_sequences_its_event,
            repo_stats_count_blocks_and_live_records,
            blob_references_follow_record_writes,
            put_blob_is_idempotent_and_restarts_a_temporary_grace_period,
            concurrent_uploads_of_one_blob_agree_on_its_row,
            mark_blob_permanent_clears_the_temporary_key,
            missing_blobs_are_listed_by_cid,
            list_blobs_pages_permanent_blobs_by_cid,
            stale_temp_blobs_are_old_unreferenced_uploads,
            unpromoted_blobs_are_referenced_temporary_blobs,
            orphaned_blobs_lost_their_last_reference,
            delete_blob_if_unused_deletes_only_the_row_the_sweep_saw,
            delete_repo_removes_the_accounts_blobs,
            preferences_round_trip_and_go_with_the_account,
            blocks_since_pages_a_repos_blocks_by_rev,
            record_blobs_are_listed_by_cid_since_a_rev,
            oauth_requests_are_bound_approved_and_exchanged_once,
            concurrent_oauth_code_exchanges_exactly_one_wins,
            oauth_refresh_tokens_rotate_once_and_remember_used_ones,
            oauth_devices_remember_accounts_and_granted_scopes,
            oauth_sessions_end_with_the_password_and_the_account,
        );
    };
}

/// Runs the whole blob suite against the harness made by `$make`: an
/// `async fn(&'static str) -> Option<BlobHarness>`.
#[macro_export]
macro_rules! blob_conformance_suite {
    ($make:path) => {
        $crate::__conformance_cases!($make, blob:
            blob_upload_becomes_permanent,
            blob_make_permanent_is_idempotent,
            blob_delete_and_temp_cleanup,
            blob_failed_upload_leaves_nothing,
            blob_large_upload_streams,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($make:path, $kind:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(harness) = $make(stringify!($case)).await else {
                    return;
                };
                $crate::suite::$case(harness).await;
            }
        )*
    };
}

fn page(limit: usize, cursor: Option<&str>, reverse: bool) -> RecordPage {
    RecordPage {
        limit,
        cursor: cursor.map(rkey),
        reverse,
    }
}

fn rkeys(entries: &[aurora_core::store::RecordEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.rkey.as_str()).collect()
}

// ---------------------------------------------------------------------------
// RepoStore + Sequencer

#[doc(hidden)]
pub async fn empty_store_reads_nothing(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let (cid, _) = block("nothing");
    assert_eq!(s.get_root(&alice).await.unwrap(), None);
    assert_eq!(s.get_block(&alice, &cid).await.unwrap(), None);
    assert!(s.get_blocks(&alice, &[cid]).await.unwrap().is_empty());
    let coll = nsid("app.bsky.feed.post");
    assert_eq!(s.get_record(&alice, &coll, &rkey("a")).await.unwrap(), None);
    assert!(
        s.list_records(&alice, &coll, &page(10, None, false))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.list_collections(&alice).await.unwrap().is_empty());
    assert_eq!(s.current_seq().await.unwrap(), None);
    assert_eq!(s.oldest_seq().await.unwrap(), None);
    assert!(s.events_after(0, 100).await.unwrap().is_empty());
}

#[doc(hidden)]
pub async fn first_commit_creates_repo_and_event(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let (rec_cid, rec_bytes) = block("record-1");
    let (mst_cid, mst_bytes) = block("mst-1");
    let c = commit(
        &alice,
        None,
        "c1",
        1,
        vec![(rec_cid, rec_bytes.clone()), (mst_cid, mst_bytes.clone())],
        vec![put("app.bsky.feed.post", "3k2a", rec_cid)],
    );
    let root = c.root;
    let seq = s.apply_commit(c).await.unwrap();
    assert!(seq > 0);

    let got = s.get_root(&alice).await.unwrap().unwrap();
    assert_eq!(got.cid, root);
    assert_eq!(got.rev, tid(1));
    assert_eq!(
        s.get_block(&alice, &rec_cid).await.unwrap(),
        Some(rec_bytes.clone())
    );
    let (missing, _) = block("never-written");
    let mut found = s
        .get_blocks(&alice, &[rec_cid, mst_cid, missing, root])
        .await
        .unwrap();
    found.sort_by_key(|(c, _)| c.to_bytes());
    let mut expected = vec![(rec_cid, rec_bytes), (mst_cid, mst_bytes)];
    expected.push((root, s.get_block(&alice, &root).await.unwrap().unwrap()));
    expected.sort_by_key(|(c, _)| c.to_bytes());
    assert_eq!(found, expected);

    let entry = s
        .get_record(&alice, &nsid("app.bsky.feed.post"), &rkey("3k2a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.cid, rec_cid);
    assert_eq!(entry.rev, tid(1));
    assert_eq!(
        s.list_collections(&alice).await.unwrap(),
        vec![nsid("app.bsky.feed.post")]
    );

    assert_eq!(s.current_seq().await.unwrap(), Some(seq));
    let events = s.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, seq);
    assert_eq!(events[0].did, alice);
    assert_eq!(events[0].event_type, EventType::Commit);
    assert_eq!(events[0].payload, Bytes::from("event:c1"));
    assert!((chrono::Utc::now() - events[0].time).num_seconds().abs() < 60);
}

#[doc(hidden)]
pub async fn later_commits_update_and_delete_records(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let (a1, a1b) = block("a-v1");
    let (b1, b1b) = block("b-v1");
    let c1 = commit(
        &alice,
        None,
        "c1",
        1,
        vec![(a1, a1b), (b1, b1b)],
        vec![
            put("com.example.thing", "a", a1),
            put("com.example.thing", "b", b1),
        ],
    );
    let r1 = c1.root;
    s.apply_commit(c1).await.unwrap();

    let (a2, a2b) = block("a-v2");
    let (p1, p1b) = block("post-1");
    let c2 = commit(
        &alice,
        Some(r1),
        "c2",
        2,
        vec![(a2, a2b), (p1, p1b)],
        vec![
            put("com.example.thing", "a", a2),
            delete("com.example.thing", "b"),
            put("app.bsky.feed.post", "p1", p1),
        ],
    );
    let r2 = c2.root;
    s.apply_commit(c2).await.unwrap();

    let root = s.get_root(&alice).await.unwrap().unwrap();
    assert_eq!((root.cid, root.rev), (r2, tid(2)));
    let thing = nsid("com.example.thing");
    let a = s
        .get_record(&alice, &thing, &rkey("a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.cid, a.rev), (a2, tid(2)));
    assert_eq!(
        s.get_record(&alice, &thing, &rkey("b")).await.unwrap(),
        None
    );
    assert_eq!(
        s.list_collections(&alice).await.unwrap(),
        vec![nsid("app.bsky.feed.post"), nsid("com.example.thing")]
    );
    // Deleting a collection's last record removes the collection.
    let c3 = commit(
        &alice,
        Some(r2),
        "c3",
        3,
        vec![],
        vec![delete("com.example.thing", "a")],
    );
    s.apply_commit(c3).await.unwrap();
    assert_eq!(
        s.list_collections(&alice).await.unwrap(),
        vec![nsid("app.bsky.feed.post")]
    );
    // Old blocks stay readable: the record index moved, the history did not.
    assert!(s.get_block(&alice, &a1).await.unwrap().is_some());
    assert_eq!(s.events_after(0, 10).await.unwrap().len(), 3);
}

#[doc(hidden)]
pub async fn list_records_pages_in_both_directions(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let keys = ["3a", "3b", "3c", "3d", "3e"];
    let mut blocks = Vec::new();
    let mut writes = Vec::new();
    for k in keys {
        let (cid, bytes) = block(&format!("rec-{k}"));
        blocks.push((cid, bytes));
        writes.push(put("com.example.note", k, cid));
    }
    // A record in another collection and another repo must not leak in.
    let (other, other_b) = block("other");
    blocks.push((other, other_b.clone()));
    writes.push(put("com.example.zzz", "3c", other));
    s.apply_commit(commit(&alice, None, "c1", 1, blocks, writes))
        .await
        .unwrap();
    let bob = did("bob");
    s.apply_commit(commit(
        &bob,
        None,
        "b1",
        1,
        vec![(other, other_b)],
        vec![put("com.example.note", "3z", other)],
    ))
    .await
    .unwrap();

    let note = nsid("com.example.note");
    // Default order: descending (newest TIDs first).
    let first = s
        .list_records(&alice, &note, &page(2, None, false))
        .await
        .unwrap();
    assert_eq!(rkeys(&first), ["3e", "3d"]);
    let second = s
        .list_records(&alice, &note, &page(2, Some("3d"), false))
        .await
        .unwrap();
    assert_eq!(rkeys(&second), ["3c", "3b"]);
    let last = s
        .list_records(&alice, &note, &page(2, Some("3b"), false))
        .await
        .unwrap();
    assert_eq!(rkeys(&last), ["3a"]);
    // reverse = true: ascending.
    let asc = s
        .list_records(&alice, &note, &page(3, None, true))
        .await
        .unwrap();
    assert_eq!(rkeys(&asc), ["3a", "3b", "3c"]);
    let asc2 = s
        .list_records(&alice, &note, &page(3, Some("3c"), true))
        .await
        .unwrap();
    assert_eq!(rkeys(&asc2), ["3d", "3e"]);
    assert!(
        s.list_records(&alice, &note, &page(0, None, true))
            .await
            .unwrap()
            .is_empty()
    );
}

#[doc(hidden)]
pub async fn blocks_are_kept_per_repo(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let (shared, shared_b) = block("shared");
    let (only_a, only_a_b) = block("only-alice");
    s.apply_commit(commit(
        &alice,
        None,
        "a1",
        1,
        vec![(shared, shared_b.clone()), (only_a, only_a_b)],
        vec![],
    ))
    .await
    .unwrap();
    assert_eq!(s.get_block(&bob, &only_a).await.unwrap(), None);
    assert!(
        s.get_blocks(&bob, &[only_a, shared])
            .await
            .unwrap()
            .is_empty()
    );
    // The same block in another repo, and again in the same repo, is fine.
    s.apply_commit(commit(
        &bob,
        None,
        "b1",
        1,
        vec![(shared, shared_b.clone())],
        vec![],
    ))
    .await
    .unwrap();
    let root = s.get_root(&alice).await.unwrap().unwrap().cid;
    s.apply_commit(commit(
        &alice,
        Some(root),
        "a2",
        2,
        vec![(shared, shared_b.clone())],
        vec![],
    ))
    .await
    .unwrap();
    assert_eq!(s.get_block(&bob, &shared).await.unwrap(), Some(shared_b));
}

#[doc(hidden)]
pub async fn stale_root_is_rejected_and_writes_nothing(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let c1 = commit(&alice, None, "c1", 1, vec![], vec![]);
    let r1 = c1.root;
    s.apply_commit(c1).await.unwrap();
    let events_before = s.events_after(0, 100).await.unwrap();

    // Creating a repo that exists.
    let again = commit(&alice, None, "again", 2, vec![], vec![]);
    let err = s.apply_commit(again).await.unwrap_err();
    assert!(
        matches!(err, StoreError::RootConflict { expected: None, .. }),
        "{err:?}"
    );

    // Building on a root that is not the current one.
    let (stale_root, _) = block("not-the-root");
    let (rec, rec_b) = block("stale-record");
    let stale = commit(
        &alice,
        Some(stale_root),
        "stale",
        3,
        vec![(rec, rec_b)],
        vec![put("com.example.thing", "x", rec)],
    );
    let stale_commit_cid = stale.root;
    let err = s.apply_commit(stale).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::RootConflict { did, expected } if did == &alice && *expected == Some(stale_root)),
        "{err:?}"
    );
    assert!(err.to_string().contains("changed concurrently"), "{err}");

    let root = s.get_root(&alice).await.unwrap().unwrap();
    assert_eq!((root.cid, root.rev), (r1, tid(1)));
    assert_eq!(s.get_block(&alice, &rec).await.unwrap(), None);
    assert_eq!(s.get_block(&alice, &stale_commit_cid).await.unwrap(), None);
    assert_eq!(
        s.get_record(&alice, &nsid("com.example.thing"), &rkey("x"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.events_after(0, 100).await.unwrap(), events_before);
}

#[doc(hidden)]
pub async fn concurrent_commits_on_one_repo_exactly_one_wins(h: StoreHarness) {
    let s = h.store.clone();
    let alice = did("alice");
    let c0 = commit(&alice, None, "base", 1, vec![], vec![]);
    let mut root = c0.root;
    s.apply_commit(c0).await.unwrap();
    for round in 0..10u64 {
        let left = commit(
            &alice,
            Some(root),
            &format!("left-{round}"),
            round * 2 + 2,
            vec![],
            vec![],
        );
        let right = commit(
            &alice,
            Some(root),
            &format!("right-{round}"),
            round * 2 + 3,
            vec![],
            vec![],
        );
        let (left_root, right_root) = (left.root, right.root);
        let (s1, s2) = (s.clone(), s.clone());
        let t1 = tokio::spawn(async move { s1.apply_commit(left).await });
        let t2 = tokio::spawn(async move { s2.apply_commit(right).await });
        let (r1, r2) = (t1.await.unwrap(), t2.await.unwrap());
        let winner = match (&r1, &r2) {
            (Ok(_), Err(StoreError::RootConflict { .. })) => left_root,
            (Err(StoreError::RootConflict { .. }), Ok(_)) => right_root,
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert_eq!(s.get_root(&alice).await.unwrap().unwrap().cid, winner);
        root = winner;
    }
    // One event per successful commit.
    assert_eq!(s.events_after(0, 100).await.unwrap().len(), 11);
}

#[doc(hidden)]
pub async fn apply_commit_is_atomic_at_every_stage(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    for (round, stage) in CommitStage::ALL.into_iter().enumerate() {
        let round = round as u64;
        let before_root = s.get_root(&alice).await.unwrap();
        let before_events = s.events_after(0, 100).await.unwrap();
        let (rec, rec_b) = block(&format!("atomic-{round}"));
        let image = blob_cid(&format!("atomic-blob-{round}"));
        let c = commit(
            &alice,
            before_root.as_ref().map(|r| r.cid),
            &format!("fail-{round}"),
            round * 2 + 1,
            vec![(rec, rec_b)],
            vec![put_with_blobs(
                "com.example.thing",
                &format!("k{round}"),
                rec,
                &[image],
            )],
        );
        let failing_root = c.root;
        let faulty = (h.faulty)(stage);
        assert!(
            faulty.apply_commit(c).await.is_err(),
            "fault after {stage:?} was not reported"
        );

        assert_eq!(
            s.get_root(&alice).await.unwrap(),
            before_root,
            "root moved after {stage:?}"
        );
        assert_eq!(
            s.get_block(&alice, &rec).await.unwrap(),
            None,
            "block left after {stage:?}"
        );
        assert_eq!(s.get_block(&alice, &failing_root).await.unwrap(), None);
        assert_eq!(
            s.get_record(
                &alice,
                &nsid("com.example.thing"),
                &rkey(&format!("k{round}"))
            )
            .await
            .unwrap(),
            None,
            "record left after {stage:?}"
        );
        assert!(
            !s.is_blob_referenced(&alice, &image).await.unwrap(),
            "blob reference left after {stage:?}"
        );
        assert_eq!(s.repo_stats(&alice).await.unwrap().expected_blobs, 0);
        assert_eq!(
            s.events_after(0, 100).await.unwrap(),
            before_events,
            "event left after {stage:?}"
        );

        // The store still works, and the next commit succeeds normally.
        let ok = commit(
            &alice,
            before_root.as_ref().map(|r| r.cid),
            &format!("ok-{round}"),
            round * 2 + 2,
            vec![],
            vec![],
        );
        s.apply_commit(ok).await.unwrap();
    }
}

#[doc(hidden)]
pub async fn events_are_sequenced_in_commit_order(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let mut seqs = Vec::new();
    seqs.push(
        s.sequence_event(identity_event(&alice, "i1"))
            .await
            .unwrap(),
    );
    let c = commit(&alice, None, "c1", 1, vec![], vec![]);
    seqs.push(s.apply_commit(c).await.unwrap());
    let mut account = identity_event(&alice, "a1");
    account.event_type = EventType::Account;
    seqs.push(s.sequence_event(account).await.unwrap());
    for i in 0..7 {
        seqs.push(
            s.sequence_event(identity_event(&alice, &format!("more-{i}")))
                .await
                .unwrap(),
        );
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(s.current_seq().await.unwrap(), seqs.last().copied());
    assert_eq!(s.oldest_seq().await.unwrap(), seqs.first().copied());

    let all = s.events_after(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(
        all.iter().take(3).map(|e| e.event_type).collect::<Vec<_>>(),
        [EventType::Identity, EventType::Commit, EventType::Account]
    );
    // A cursor and a limit.
    let page = s.events_after(seqs[2], 3).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[3..6]);
    // A closed range.
    let range = s.events_in_range(seqs[1], seqs[4], 100).await.unwrap();
    assert_eq!(range.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[2..=4]);
    assert!(
        s.events_in_range(seqs[4], seqs[4], 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Past the head: nothing.
    assert!(
        s.events_after(*seqs.last().unwrap(), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Starts `writers` tasks, each making `per_writer` commits in a row to a
/// repo of its own (`{prefix}{n}`); each returns the `seq`s it got.
fn spawn_writers(
    h: &StoreHarness,
    prefix: &str,
    writers: usize,
    per_writer: u64,
) -> Vec<tokio::task::JoinHandle<Vec<i64>>> {
    (0..writers)
        .map(|w| {
            let s = h.store.clone();
            let me = did(&format!("{prefix}{w}"));
            tokio::spawn(async move {
                let mut root = None;
                let mut seqs = Vec::new();
                for i in 0..per_writer {
                    let c = commit(&me, root, &format!("{w}-{i}"), i + 1, vec![], vec![]);
                    let next = c.root;
                    seqs.push(s.apply_commit(c).await.unwrap());
                    root = Some(next);
                }
                seqs
            })
        })
        .collect()
}

/// Awaits writer tasks, each returning the `seq`s its commits got, and
/// checks that each writer's increase and that the log holds exactly the
/// acknowledged ones (one event per successful commit), in order; returns
/// the log's `seq`s.
async fn log_holds_exactly_the_acknowledged(
    h: &StoreHarness,
    tasks: Vec<tokio::task::JoinHandle<Vec<i64>>>,
) -> Vec<i64> {
    let mut acknowledged = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        acknowledged.extend(seqs);
    }
    acknowledged.sort_unstable();
    let logged = served_seqs(&h.store, 0, i64::MAX).await;
    assert_eq!(
        logged, acknowledged,
        "the log holds exactly the acknowledged commits, in order"
    );
    logged
}

#[doc(hidden)]
pub async fn concurrent_commits_on_many_repos_get_ordered_seqs(h: StoreHarness) {
    let (writers, per_writer) = (8, 15);
    let tasks = spawn_writers(&h, "writer", writers, per_writer);
    let logged = log_holds_exactly_the_acknowledged(&h, tasks).await;
    assert_eq!(logged.len(), writers * usize::try_from(per_writer).unwrap());
}

/// A reader that follows the head (as the firehose does: wait for the
/// head to move, read the events up to it, remember where it stopped)
/// while many repos commit at once gets every event: no event becomes
/// readable with a `seq` at or below a head already announced. Batches
/// written while an earlier one is still being committed must not break
/// this.
#[doc(hidden)]
pub async fn a_reader_following_the_head_misses_no_event(h: StoreHarness) {
    let (writers, per_writer) = (12, 20);
    let mut head = h.store.subscribe();
    let start = *head.borrow_and_update();
    let tasks = spawn_writers(&h, "follow", writers, per_writer);
    let s = h.store.clone();
    let expected = writers * usize::try_from(per_writer).unwrap();
    let reader = tokio::spawn(async move {
        let (mut cursor, mut read) = (start, Vec::new());
        while read.len() < expected {
            let announced = *head.borrow_and_update();
            read.extend(served_seqs(&s, cursor, announced).await);
            cursor = announced;
            if read.len() < expected {
                tokio::time::timeout(std::time::Duration::from_secs(30), head.changed())
                    .await
                    .expect("the head moves while commits are acknowledged")
                    .unwrap();
            }
        }
        read
    });
    let logged = log_holds_exactly_the_acknowledged(&h, tasks).await;
    let read = reader.await.unwrap();
    assert_eq!(
        read, logged,
        "the reader got every event once, in order, as the log holds them"
    );
}

/// Commits made at the same time may share a transaction (group commit):
/// the ones that fail must leave nothing behind, and cost the others
/// nothing.
#[doc(hidden)]
pub async fn concurrent_failing_commits_write_nothing_and_spare_the_others(h: StoreHarness) {
    let rounds = 6;
    let repos = 12;
    let mut tasks = Vec::new();
    for r in 0..repos {
        let s = h.store.clone();
        tasks.push(tokio::spawn(async move {
            let me = did(&format!("mixed{r}"));
            let mut root = None;
            let mut ok = Vec::new();
            for i in 0..rounds {
                // Every other repo also sends, alongside, a commit on a
                // stale root carrying a record and blocks of its own.
                let stale = (r % 2 == 0).then(|| {
                    let (stale_root, _) = block(&format!("stale-root-{r}-{i}"));
                    let (rec, rec_b) = block(&format!("stale-rec-{r}-{i}"));
                    let c = commit(
                        &me,
                        Some(stale_root),
                        &format!("stale-{r}-{i}"),
                        100 + i,
                        vec![(rec, rec_b)],
                        vec![put("com.example.stale", &format!("s{i}"), rec)],
                    );
                    (c, rec)
                });
                let (rec, rec_b) = block(&format!("rec-{r}-{i}"));
                let good = commit(
                    &me,
                    root,
                    &format!("{r}-{i}"),
                    i + 1,
                    vec![(rec, rec_b)],
                    vec![put("com.example.good", &format!("g{i}"), rec)],
                );
                let next = good.root;
                let (good, stale) = match stale {
                    Some((c, stale_rec)) => {
                        let (good, bad) = tokio::join!(s.apply_commit(good), s.apply_commit(c));
                        assert!(
                            matches!(bad, Err(StoreError::RootConflict { .. })),
                            "{bad:?}"
                        );
                        (good, Some(stale_rec))
                    }
                    None => (s.apply_commit(good).await, None),
                };
                ok.push(good.unwrap());
                if let Some(stale_rec) = stale {
                    assert_eq!(s.get_block(&me, &stale_rec).await.unwrap(), None);
                }
                root = Some(next);
            }
            let stale_records = s
                .get_record(&me, &nsid("com.example.stale"), &rkey("s0"))
                .await
                .unwrap();
            assert_eq!(stale_records, None, "nothing of a failed commit stays");
            let good = s
                .get_record(&me, &nsid("com.example.good"), &rkey("g0"))
                .await
                .unwrap();
            assert!(good.is_some());
            ok
        }));
    }
    let logged = log_holds_exactly_the_acknowledged(&h, tasks).await;
    assert_eq!(logged.len(), repos * usize::try_from(rounds).unwrap());
}

/// Commits to many repos at once, some of them on stale roots: a backend
/// that writes concurrent commits of different repos together must turn
/// away exactly the stale ones, keep nothing of them, and give each good
/// one its own event.
#[doc(hidden)]
pub async fn stale_commits_among_other_repos_fail_alone(h: StoreHarness) {
    let rounds = 6;
    let repos = 10;
    let mut tasks = Vec::new();
    for r in 0..repos {
        let s = h.store.clone();
        tasks.push(tokio::spawn(async move {
            let me = did(&format!("among{r}"));
            let first = commit(&me, None, &format!("{r}-genesis"), 1, vec![], vec![]);
            let mut root = first.root;
            let mut ok = vec![s.apply_commit(first).await.unwrap()];
            for i in 0..rounds {
                let (rec, rec_b) = block(&format!("among-rec-{r}-{i}"));
                if (r + i) % 3 == 0 {
                    let (stale_root, _) = block(&format!("among-stale-{r}-{i}"));
                    let stale = commit(
                        &me,
                        Some(stale_root),
                        &format!("stale-{r}-{i}"),
                        100 + i,
                        vec![(rec, rec_b.clone())],
                        vec![put("com.example.stale", &format!("s{i}"), rec)],
                    );
                    let bad = s.apply_commit(stale).await;
                    assert!(
                        matches!(&bad, Err(StoreError::RootConflict { did, .. }) if *did == me),
                        "{bad:?}"
                    );
                    assert_eq!(s.get_block(&me, &rec).await.unwrap(), None);
                    let stale_record = s
                        .get_record(&me, &nsid("com.example.stale"), &rkey(&format!("s{i}")))
                        .await
                        .unwrap();
                    assert_eq!(stale_record, None, "nothing of a stale commit stays");
                }
                let good = commit(
                    &me,
                    Some(root),
                    &format!("{r}-{i}"),
                    i + 2,
                    vec![(rec, rec_b)],
                    vec![put("com.example.good", &format!("g{i}"), rec)],
                );
                root = good.root;
                ok.push(s.apply_commit(good).await.unwrap());
            }
            assert_eq!(s.get_root(&me).await.unwrap().map(|h| h.cid), Some(root));
            ok
        }));
    }
    let logged = log_holds_exactly_the_acknowledged(&h, tasks).await;
    assert_eq!(u64::try_from(logged.len()).unwrap(), repos * (1 + rounds));
}

#[doc(hidden)]
pub async fn subscribers_wake_on_new_events(h: StoreHarness) {
    let s = h.store.clone();
    let mut rx = s.subscribe();
    let alice = did("alice");
    let writer = tokio::spawn({
        let s = s.clone();
        let alice = alice.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.apply_commit(commit(&alice, None, "c1", 1, vec![], vec![]))
                .await
                .unwrap()
        }
    });
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("no wake-up within 5 s")
        .unwrap();
    let seq = writer.await.unwrap();
    assert!(*rx.borrow() >= seq);
    let seq2 = s.sequence_event(identity_event(&alice, "i")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("no wake-up within 5 s")
        .unwrap();
    assert_eq!(*rx.borrow(), seq2);
}

#[doc(hidden)]
pub async fn pruning_deletes_old_events_but_keeps_the_newest(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    assert_eq!(
        s.prune(chrono::Utc::now()).await.unwrap(),
        0,
        "an empty log"
    );
    let mut old = Vec::new();
    for i in 0..3 {
        old.push(
            s.sequence_event(identity_event(&alice, &format!("old-{i}")))
                .await
                .unwrap(),
        );
    }
    // An invalidated event is pruned like any other.
    old.push(s.sequence_event(identity_event(&bob, "old")).await.unwrap());
    old.push(
        s.delete_repo(&bob, identity_event(&bob, "gone"))
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut new = Vec::new();
    for i in 0..2 {
        new.push(
            s.sequence_event(identity_event(&alice, &format!("new-{i}")))
                .await
                .unwrap(),
        );
    }
    assert_eq!(s.prune(cut).await.unwrap(), old.len() as u64);
    assert_eq!(s.oldest_seq().await.unwrap(), Some(new[0]));
    assert_eq!(served_seqs(s, 0, i64::MAX).await, new);
    assert_eq!(s.prune(cut).await.unwrap(), 0, "nothing left to prune");

    // Everything is old now, but the newest event stays: the log head and
    // the numbering never go back.
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(s.prune(later).await.unwrap(), 1);
    assert_eq!(s.current_seq().await.unwrap(), Some(new[1]));
    assert_eq!(s.oldest_seq().await.unwrap(), Some(new[1]));
    assert_eq!(served_seqs(s, 0, i64::MAX).await, [new[1]]);
    let next = s
        .sequence_event(identity_event(&alice, "next"))
        .await
        .unwrap();
    assert!(next > new[1]);
}

#[doc(hidden)]
pub async fn sink_cursors_are_stored_listed_and_deleted(h: StoreHarness) {
    let s = &h.store;
    assert_eq!(s.sink_cursor("audit").await.unwrap(), None);
    assert!(s.list_sink_cursors().await.unwrap().is_empty());
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    s.set_sink_cursor("audit", 7).await.unwrap();
    s.set_sink_cursor("kafka.main", 0).await.unwrap();
    let audit = s.sink_cursor("audit").await.unwrap().unwrap();
    assert_eq!((audit.name.as_str(), audit.seq), ("audit", 7));
    assert!(audit.updated_at >= before);
    // Setting again moves the cursor (any way: the runner owns it) and
    // keeps one row per sink; seqs use the full 64 bits.
    s.set_sink_cursor("audit", i64::MAX - 1).await.unwrap();
    s.set_sink_cursor("audit", 12).await.unwrap();
    let all = s.list_sink_cursors().await.unwrap();
    let listed: Vec<(&str, i64)> = all.iter().map(|c| (c.name.as_str(), c.seq)).collect();
    assert_eq!(listed, [("audit", 12), ("kafka.main", 0)]);
    s.set_sink_cursor("big", i64::MAX - 1).await.unwrap();
    assert_eq!(
        s.sink_cursor("big").await.unwrap().map(|c| c.seq),
        Some(i64::MAX - 1)
    );
    assert!(s.delete_sink_cursor("audit").await.unwrap());
    assert!(!s.delete_sink_cursor("audit").await.unwrap());
    assert_eq!(s.sink_cursor("audit").await.unwrap(), None);
    assert_eq!(s.list_sink_cursors().await.unwrap().len(), 2);
}

#[doc(hidden)]
pub async fn sink_leases_have_one_holder_until_they_lapse(h: StoreHarness) {
    use std::time::Duration;
    let s = &h.store;
    let long = Duration::from_secs(60);
    assert!(s.list_sink_leases().await.unwrap().is_empty());
    let before = chrono::Utc::now();
    assert!(s.acquire_sink_lease("audit", "node-a", long).await.unwrap());
    // Held: others are refused and change nothing; the holder renews.
    assert!(!s.acquire_sink_lease("audit", "node-b", long).await.unwrap());
    assert!(s.acquire_sink_lease("audit", "node-a", long).await.unwrap());
    // Leases are per sink.
    assert!(s.acquire_sink_lease("kafka", "node-b", long).await.unwrap());
    let leases = s.list_sink_leases().await.unwrap();
    let listed: Vec<(&str, &str)> = leases
        .iter()
        .map(|l| (l.name.as_str(), l.holder.as_str()))
        .collect();
    assert_eq!(listed, [("audit", "node-a"), ("kafka", "node-b")]);
    assert!(leases[0].expires_at >= before + chrono::Duration::seconds(59));
    // Releasing is for the holder only.
    s.release_sink_lease("audit", "node-b").await.unwrap();
    assert!(!s.acquire_sink_lease("audit", "node-b", long).await.unwrap());
    s.release_sink_lease("audit", "node-a").await.unwrap();
    assert!(s.acquire_sink_lease("audit", "node-b", long).await.unwrap());
    // A lapsed lease goes to the next taker.
    assert!(
        s.acquire_sink_lease("kafka", "node-b", Duration::from_millis(20))
            .await
            .unwrap()
    );
    assert!(!s.acquire_sink_lease("kafka", "node-a", long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(s.acquire_sink_lease("kafka", "node-a", long).await.unwrap());
    assert!(!s.acquire_sink_lease("kafka", "node-b", long).await.unwrap());
    // Removing a sink's cursor removes its lease.
    s.set_sink_cursor("kafka", 3).await.unwrap();
    assert!(s.delete_sink_cursor("kafka").await.unwrap());
    let names: Vec<String> = s
        .list_sink_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["audit"]);
}

#[doc(hidden)]
pub async fn concurrent_sink_lease_takes_exactly_one_wins(h: StoreHarness) {
    use std::time::Duration;
    let store = h.store.clone();
    let takes = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .acquire_sink_lease("audit", &format!("node-{i}"), Duration::from_secs(60))
                .await
                .unwrap()
        })
    });
    let won = futures::future::join_all(takes)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
}

#[doc(hidden)]
pub async fn pruning_keeps_the_events_a_sink_has_not_acknowledged(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let mut seqs = Vec::new();
    for i in 0..6 {
        seqs.push(
            s.sequence_event(identity_event(&alice, &format!("e-{i}")))
                .await
                .unwrap(),
        );
    }
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    // Two sinks: the slower one has acknowledged up to seqs[1].
    s.set_sink_cursor("fast", seqs[4]).await.unwrap();
    s.set_sink_cursor("slow", seqs[1]).await.unwrap();
    assert_eq!(s.prune(later).await.unwrap(), 2);
    assert_eq!(served_seqs(s, 0, i64::MAX).await, seqs[2..]);
    // The slow sink catches up; its acknowledged events go.
    s.set_sink_cursor("slow", seqs[3]).await.unwrap();
    assert_eq!(s.prune(later).await.unwrap(), 2);
    assert_eq!(served_seqs(s, 0, i64::MAX).await, seqs[4..]);
    // Once every sink is at the head, the newest event still stays.
    s.set_sink_cursor("slow", seqs[5]).await.unwrap();
    s.set_sink_cursor("fast", seqs[5]).await.unwrap();
    assert_eq!(s.prune(later).await.unwrap(), 1);
    assert_eq!(served_seqs(s, 0, i64::MAX).await, [seqs[5]]);
    // A removed sink holds nothing back.
    let next = s
        .sequence_event(identity_event(&alice, "next"))
        .await
        .unwrap();
    s.set_sink_cursor("slow", seqs[5] - 100).await.unwrap();
    assert_eq!(s.prune(later).await.unwrap(), 0);
    assert!(s.delete_sink_cursor("slow").await.unwrap());
    assert_eq!(s.prune(later).await.unwrap(), 1);
    assert_eq!(served_seqs(s, 0, i64::MAX).await, [next]);
}

// ---------------------------------------------------------------------------
// AccountStore

fn new_account(name: &str, email: Option<&str>) -> NewAccount {
    NewAccount {
        did: did(name),
        handle: handle(name),
        email: email.map(str::to_owned),
        password_hash: Some(format!("$argon2id$fake${name}")),
        signing_key: None,
        invite_code: None,
    }
}

#[doc(hidden)]
pub async fn accounts_create_and_look_up(h: StoreHarness) {
    let s = &h.store;
    let created = s
        .create_account(new_account("alice", Some("Alice@Example.COM ")))
        .await
        .unwrap();
    assert_eq!(created.status, AccountStatus::Active);
    assert_eq!(created.email.as_deref(), Some("alice@example.com"));

    let by_did = s
        .get_account(AccountLookup::Did(&did("alice")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_did.handle, handle("alice"));
    assert_eq!(
        by_did.password_hash.as_deref(),
        Some("$argon2id$fake$alice")
    );
    assert_eq!(by_did.email_confirmed_at, None);
    assert!((by_did.created_at - created.created_at).num_seconds().abs() <= 1);
    let by_handle = s
        .get_account(AccountLookup::Handle(&handle("alice")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_handle.did, did("alice"));
    let by_email = s
        .get_account(AccountLookup::Email("ALICE@example.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_email.did, did("alice"));

    assert!(
        s.get_account(AccountLookup::Did(&did("nobody")))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.get_account(AccountLookup::Email("nobody@example.com"))
            .await
            .unwrap()
            .is_none()
    );
    // Accounts without an email do not clash with each other.
    s.create_account(new_account("bob", None)).await.unwrap();
    s.create_account(new_account("carol", None)).await.unwrap();
}

#[doc(hidden)]
pub async fn accounts_reject_duplicates(h: StoreHarness) {
    let s = &h.store;
    s.create_account(new_account("alice", Some("alice@example.com")))
        .await
        .unwrap();

    let mut same_did = new_account("alice", Some("other@example.com"));
    same_did.handle = handle("other");
    let err = s.create_account(same_did).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { field: "did" }),
        "{err:?}"
    );

    let mut same_handle = new_account("bob", Some("bob@example.com"));
    same_handle.handle = handle("alice");
    let err = s.create_account(same_handle).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { field: "handle" }),
        "{err:?}"
    );

    let same_email = new_account("carol", Some("ALICE@example.com"));
    let err = s.create_account(same_email).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { field: "email" }),
        "{err:?}"
    );

    // Nothing of the failed attempts was stored.
    assert_eq!(s.list_accounts(None, 10).await.unwrap().len(), 1);
}

#[doc(hidden)]
pub async fn accounts_update_list_and_delete(h: StoreHarness) {
    let s = &h.store;
    for name in ["dave", "alice", "carol", "bob"] {
        s.create_account(new_account(name, None)).await.unwrap();
    }
    let alice = did("alice");
    s.update_handle(&alice, &handle("alice2")).await.unwrap();
    let a = s
        .get_account(AccountLookup::Did(&alice))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.handle, handle("alice2"));
    assert!(
        s.get_account(AccountLookup::Handle(&handle("alice")))
            .await
            .unwrap()
            .is_none()
    );
    let err = s.update_handle(&alice, &handle("bob")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { field: "handle" }),
        "{err:?}"
    );

    s.update_status(&alice, AccountStatus::Deactivated)
        .await
        .unwrap();
    let a = s
        .get_account(AccountLookup::Did(&alice))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, AccountStatus::Deactivated);
    s.update_status(&alice, AccountStatus::Takendown)
        .await
        .unwrap();
    assert_eq!(
        s.get_account(AccountLookup::Did(&alice))
            .await
            .unwrap()
            .unwrap()
            .status,
        AccountStatus::Takendown
    );

    let nobody = did("nobody");
    assert!(matches!(
        s.update_handle(&nobody, &handle("nobody")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.update_status(&nobody, AccountStatus::Active).await,
        Err(StoreError::NotFound(_))
    ));

    let page1 = s.list_accounts(None, 2).await.unwrap();
    let names: Vec<_> = page1.iter().map(|a| a.did.as_str().to_owned()).collect();
    assert_eq!(names, ["did:plc:alice", "did:plc:bob"]);
    let page2 = s.list_accounts(Some(&page1[1].did), 10).await.unwrap();
    let names: Vec<_> = page2.iter().map(|a| a.did.as_str().to_owned()).collect();
    assert_eq!(names, ["did:plc:carol", "did:plc:dave"]);

    s.delete_account(&did("bob")).await.unwrap();
    assert!(
        s.get_account(AccountLookup::Did(&did("bob")))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.delete_account(&did("bob")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.list_accounts(None, 10).await.unwrap().len(), 3);
}

fn session(id: &str, did: &aurora_core::syntax::Did, app_password: Option<&str>) -> RefreshToken {
    RefreshToken {
        id: id.to_owned(),
        session_id: id.to_owned(),
        did: did.clone(),
        app_password: app_password.map(str::to_owned),
        // Whole seconds: every backend stores them exactly.
        expires_at: chrono::DateTime::from_timestamp(2_000_000_000, 0).unwrap(),
    }
}

#[doc(hidden)]
pub async fn sessions_rotate_once_and_end_with_the_password(h: StoreHarness) {
    let s = &h.store;
    s.create_account(new_account("alice", None)).await.unwrap();
    s.create_account(new_account("bob", None)).await.unwrap();
    let (alice, bob) = (did("alice"), did("bob"));
    s.create_refresh_token(session("a1", &alice, None))
        .await
        .unwrap();
    s.create_refresh_token(session("a2", &alice, Some("phone")))
        .await
        .unwrap();
    s.create_refresh_token(session("b1", &bob, None))
        .await
        .unwrap();
    assert_eq!(
        s.get_refresh_token("a2").await.unwrap(),
        Some(session("a2", &alice, Some("phone")))
    );
    assert_eq!(s.get_refresh_token("nope").await.unwrap(), None);
    // The session with its account, as authentication reads them.
    let (token, account) = s.get_session_account("b1").await.unwrap().unwrap();
    assert_eq!(token, session("b1", &bob, None));
    assert_eq!(account.did, bob);
    assert_eq!(s.get_session_account("nope").await.unwrap(), None);

    // Rotation replaces the token once; the old one cannot be used again.
    let old = s
        .rotate_refresh_token("a1", session("a3", &alice, None))
        .await
        .unwrap();
    assert_eq!(old, Some(session("a1", &alice, None)));
    assert_eq!(s.get_refresh_token("a1").await.unwrap(), None);
    assert!(s.get_refresh_token("a3").await.unwrap().is_some());
    assert_eq!(
        s.rotate_refresh_token("a1", session("a4", &alice, None))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.get_refresh_token("a4").await.unwrap(),
        None,
        "a failed rotation stores nothing"
    );

    // Two concurrent rotations of one token: exactly one wins.
    let (s1, s2) = (h.store.clone(), h.store.clone());
    let (alice1, alice2) = (alice.clone(), alice.clone());
    let t1 = tokio::spawn(async move {
        s1.rotate_refresh_token("a3", session("x1", &alice1, None))
            .await
    });
    let t2 = tokio::spawn(async move {
        s2.rotate_refresh_token("a3", session("x2", &alice2, None))
            .await
    });
    let wins = [t1.await.unwrap().unwrap(), t2.await.unwrap().unwrap()]
        .iter()
        .filter(|r| r.is_some())
        .count();
    assert_eq!(wins, 1);

    // Ending the sessions of one app password leaves the others.
    assert_eq!(
        s.delete_refresh_tokens(&alice, Some("phone"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.get_refresh_token("a2").await.unwrap(), None);
    // A password change ends every session of that account only.
    s.create_refresh_token(session("a5", &alice, Some("phone")))
        .await
        .unwrap();
    s.update_password(&alice, "$argon2id$new").await.unwrap();
    for id in ["x1", "x2", "a5"] {
        assert_eq!(s.get_refresh_token(id).await.unwrap(), None, "{id}");
        assert_eq!(s.get_session_account(id).await.unwrap(), None, "{id}");
    }
    assert_eq!(
        s.get_account(AccountLookup::Did(&alice))
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$new")
    );
    assert!(s.get_refresh_token("b1").await.unwrap().is_some());
    assert!(s.delete_refresh_token("b1").await.unwrap());
    assert!(!s.delete_refresh_token("b1").await.unwrap());
    assert!(matches!(
        s.update_password(&did("nobody"), "x").await,
        Err(StoreError::NotFound(_))
    ));
}

fn app_password(did: &aurora_core::syntax::Did, name: &str) -> AppPassword {
    AppPassword {
        did: did.clone(),
        name: name.to_owned(),
        password_hash: format!("$argon2id$app${name}"),
        privileged: name == "dm",
        created_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    }
}

#[doc(hidden)]
pub async fn app_passwords_are_named_per_account_and_end_their_sessions(h: StoreHarness) {
    let s = &h.store;
    s.create_account(new_account("alice", None)).await.unwrap();
    s.create_account(new_account("bob", None)).await.unwrap();
    let (alice, bob) = (did("alice"), did("bob"));
    s.create_app_password(app_password(&alice, "phone"))
        .await
        .unwrap();
    s.create_app_password(app_password(&alice, "dm"))
        .await
        .unwrap();
    s.create_app_password(app_password(&bob, "phone"))
        .await
        .unwrap();
    let err = s
        .create_app_password(app_password(&alice, "phone"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    let listed = s.list_app_passwords(&alice).await.unwrap();
    assert_eq!(
        listed,
        vec![app_password(&alice, "dm"), app_password(&alice, "phone")]
    );

    s.create_refresh_token(session("p1", &alice, Some("phone")))
        .await
        .unwrap();
    s.create_refresh_token(session("m1", &alice, None))
        .await
        .unwrap();
    s.delete_app_password(&alice, "phone").await.unwrap();
    assert_eq!(
        s.get_refresh_token("p1").await.unwrap(),
        None,
        "its sessions end"
    );
    assert!(s.get_refresh_token("m1").await.unwrap().is_some());
    assert_eq!(s.list_app_passwords(&alice).await.unwrap().len(), 1);
    assert_eq!(s.list_app_passwords(&bob).await.unwrap().len(), 1);
    assert!(matches!(
        s.delete_app_password(&alice, "phone").await,
        Err(StoreError::NotFound(_))
    ));
}

#[doc(hidden)]
pub async fn email_changes_and_single_use_email_tokens(h: StoreHarness) {
    let s = &h.store;
    s.create_account(new_account("alice", Some("alice@example.com")))
        .await
        .unwrap();
    s.create_account(new_account("bob", Some("bob@example.com")))
        .await
        .unwrap();
    let alice = did("alice");
    let at = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    s.confirm_email(&alice, at).await.unwrap();
    let a = s
        .get_account(AccountLookup::Did(&alice))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.email_confirmed_at, Some(at));
    // A new email is unconfirmed; one in use elsewhere is refused.
    let err = s
        .update_email(&alice, Some("BOB@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { field: "email" }),
        "{err:?}"
    );
    s.update_email(&alice, Some("Alice@New.Example"))
        .await
        .unwrap();
    let a = s
        .get_account(AccountLookup::Did(&alice))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.email.as_deref(), a.email_confirmed_at),
        (Some("alice@new.example"), None)
    );
    assert!(
        s.get_account(AccountLookup::Email("alice@new.example"))
            .await
            .unwrap()
            .is_some()
    );

    let token = |t: &str, purpose| EmailToken {
        did: alice.clone(),
        purpose,
        token: t.to_owned(),
        requested_at: at,
    };
    s.put_email_token(token("AAAA-1111", EmailTokenPurpose::ResetPassword))
        .await
        .unwrap();
    s.put_email_token(token("BBBB-2222", EmailTokenPurpose::ResetPassword))
        .await
        .unwrap();
    s.put_email_token(token("CCCC-3333", EmailTokenPurpose::ConfirmEmail))
        .await
        .unwrap();
    let take = |t: &'static str, p| s.take_email_token(&alice, p, t);
    assert_eq!(
        take("AAAA-1111", EmailTokenPurpose::ResetPassword)
            .await
            .unwrap(),
        None,
        "replaced"
    );
    assert_eq!(
        take("CCCC-3333", EmailTokenPurpose::ResetPassword)
            .await
            .unwrap(),
        None,
        "other purpose"
    );
    assert_eq!(
        take("BBBB-2222", EmailTokenPurpose::ResetPassword)
            .await
            .unwrap(),
        Some(at)
    );
    assert_eq!(
        take("BBBB-2222", EmailTokenPurpose::ResetPassword)
            .await
            .unwrap(),
        None,
        "single use"
    );
    assert_eq!(
        take("CCCC-3333", EmailTokenPurpose::ConfirmEmail)
            .await
            .unwrap(),
        Some(at)
    );
}

#[doc(hidden)]
pub async fn email_tokens_are_taken_by_value(h: StoreHarness) {
    let s = &h.store;
    for name in ["alice", "bob", "carol", "dave"] {
        s.create_account(new_account(name, None)).await.unwrap();
    }
    let (alice, bob) = (did("alice"), did("bob"));
    let at = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    let bob_at = chrono::DateTime::from_timestamp(1_900_000_100, 0).unwrap();
    let token = |owner: &str, t: &str, purpose, requested_at| EmailToken {
        did: did(owner),
        purpose,
        token: t.to_owned(),
        requested_at,
    };
    let reset = EmailTokenPurpose::ResetPassword;
    let confirm = EmailTokenPurpose::ConfirmEmail;
    for t in [
        token("alice", "AAAA-1111", reset, at),
        // The same value for another purpose is another token.
        token("alice", "AAAA-1111", confirm, at),
        token("bob", "BBBB-2222", reset, bob_at),
    ] {
        s.put_email_token(t).await.unwrap();
    }
    let take = |t: &'static str, p| s.take_email_token_by_value(p, t);

    // Wrong tokens and the wrong purpose find nothing and change nothing.
    for wrong in ["ZZZZ-9999", "bbbb-2222", "BBBB-222", "BBBB-22222", ""] {
        assert_eq!(take(wrong, reset).await.unwrap(), None, "{wrong:?}");
    }
    assert_eq!(take("BBBB-2222", confirm).await.unwrap(), None);
    assert_eq!(
        take("BBBB-2222", reset).await.unwrap(),
        Some((bob.clone(), bob_at))
    );
    assert_eq!(take("BBBB-2222", reset).await.unwrap(), None, "single use");

    assert_eq!(
        take("AAAA-1111", reset).await.unwrap(),
        Some((alice.clone(), at))
    );
    assert_eq!(take("AAAA-1111", reset).await.unwrap(), None, "single use");
    // Consumed for the by-DID take too.
    assert_eq!(
        s.take_email_token(&alice, reset, "AAAA-1111")
            .await
            .unwrap(),
        None
    );
    // The other purpose is unaffected.
    assert_eq!(
        take("AAAA-1111", confirm).await.unwrap(),
        Some((alice.clone(), at))
    );

    // A token two accounts hold is ambiguous: unknown, and neither copy goes.
    let plc = EmailTokenPurpose::PlcOperation;
    for owner in ["carol", "dave"] {
        s.put_email_token(token(owner, "SAME-0000", plc, at))
            .await
            .unwrap();
    }
    assert_eq!(take("SAME-0000", plc).await.unwrap(), None);
    for owner in ["carol", "dave"] {
        assert_eq!(
            s.take_email_token(&did(owner), plc, "SAME-0000")
                .await
                .unwrap(),
            Some(at),
            "{owner}"
        );
    }
}

#[doc(hidden)]
/// Of two concurrent takes of one email token (by value or by DID), exactly one wins.
pub async fn concurrent_takes_of_one_email_token_exactly_one_wins(h: StoreHarness) {
    h.store
        .create_account(new_account("alice", None))
        .await
        .unwrap();
    let alice = did("alice");
    let at = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    for round in 0..10 {
        let value = format!("RACE-{round:04}");
        h.store
            .put_email_token(EmailToken {
                did: alice.clone(),
                purpose: EmailTokenPurpose::ResetPassword,
                token: value.clone(),
                requested_at: at,
            })
            .await
            .unwrap();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let (s, value, alice) = (h.store.clone(), value.clone(), alice.clone());
                // Even rounds race takes by value, odd rounds takes by DID.
                tokio::spawn(async move {
                    if round % 2 == 0 {
                        s.take_email_token_by_value(EmailTokenPurpose::ResetPassword, &value)
                            .await
                    } else {
                        s.take_email_token(&alice, EmailTokenPurpose::ResetPassword, &value)
                            .await
                            .map(|t| t.map(|at| (alice, at)))
                    }
                })
            })
            .collect();
        let mut won = Vec::new();
        for t in tasks {
            if let Some(taken) = t.await.unwrap().unwrap() {
                won.push(taken);
            }
        }
        assert_eq!(
            won,
            [(alice.clone(), at)],
            "round {round}: exactly one take wins"
        );
        assert_eq!(
            h.store
                .take_email_token_by_value(EmailTokenPurpose::ResetPassword, &value)
                .await
                .unwrap(),
            None
        );
    }
}

#[doc(hidden)]
pub async fn signing_keys_are_stored_with_their_account(h: StoreHarness) {
    use aurora_core::crypto::{Curve, SigningKey};
    let s = &h.store;
    for (name, curve) in [("alice", Curve::K256), ("bob", Curve::P256)] {
        let key = SigningKey::generate(curve);
        let mut account = new_account(name, None);
        account.signing_key = Some(key.clone());
        s.create_account(account).await.unwrap();
        let stored = s.get_signing_key(&did(name)).await.unwrap().unwrap();
        assert_eq!((stored.curve(), stored.to_bytes()), (curve, key.to_bytes()));
    }
    s.create_account(new_account("carol", None)).await.unwrap();
    assert!(s.get_signing_key(&did("carol")).await.unwrap().is_none());
    // A failed creation stores no key.
    let mut clash = new_account("alice", None);
    clash.did = did("dave");
    clash.signing_key = Some(SigningKey::generate(Curve::K256));
    assert!(s.create_account(clash).await.is_err());
    assert!(s.get_signing_key(&did("dave")).await.unwrap().is_none());
    s.delete_account(&did("alice")).await.unwrap();
    assert!(s.get_signing_key(&did("alice")).await.unwrap().is_none());
}

#[doc(hidden)]
pub async fn deleting_an_account_removes_its_credentials(h: StoreHarness) {
    let s = &h.store;
    s.create_account(new_account("alice", Some("alice@example.com")))
        .await
        .unwrap();
    let alice = did("alice");
    s.create_refresh_token(session("s1", &alice, None))
        .await
        .unwrap();
    s.create_app_password(app_password(&alice, "phone"))
        .await
        .unwrap();
    s.put_email_token(EmailToken {
        did: alice.clone(),
        purpose: EmailTokenPurpose::DeleteAccount,
        token: "DDDD-4444".into(),
        requested_at: chrono::Utc::now(),
    })
    .await
    .unwrap();
    s.delete_account(&alice).await.unwrap();
    assert_eq!(s.get_refresh_token("s1").await.unwrap(), None);
    assert!(s.list_app_passwords(&alice).await.unwrap().is_empty());
    assert_eq!(
        s.take_email_token(&alice, EmailTokenPurpose::DeleteAccount, "DDDD-4444")
            .await
            .unwrap(),
        None
    );
    // The handle and email are free again.
    s.create_account(new_account("alice", Some("alice@example.com")))
        .await
        .unwrap();
}

fn token_of_session(
    id: &str,
    session_id: &str,
    did: &aurora_core::syntax::Did,
    app_password: Option<&str>,
) -> RefreshToken {
    RefreshToken {
        session_id: session_id.to_owned(),
        ..session(id, did, app_password)
    }
}

#[doc(hidden)]
pub async fn sessions_keep_their_id_across_rotations(h: StoreHarness) {
    let s = &h.store;
    s.create_account(new_account("alice", None)).await.unwrap();
    let alice = did("alice");
    assert_eq!(s.get_session("s-alice").await.unwrap(), None);
    s.create_refresh_token(token_of_session("t1", "s-alice", &alice, None))
        .await
        .unwrap();
    s.create_refresh_token(token_of_session("u1", "s-other", &alice, None))
        .await
        .unwrap();
    assert_eq!(
        s.get_session("s-alice").await.unwrap(),
        Some(token_of_session("t1", "s-alice", &alice, None))
    );
    // The session id is not a token id.
    assert_eq!(s.get_session("t1").await.unwrap(), None);

    let mut next = token_of_session("t2", "s-alice", &alice, None);
    next.expires_at += chrono::Duration::days(1);
    let old = s
        .rotate_refresh_token("t1", next.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.session_id, "s-alice");
    assert_eq!(s.get_session("s-alice").await.unwrap(), Some(next.clone()));
    assert_eq!(s.get_refresh_token("t2").await.unwrap(), Some(next));
    // Expired or not, the session's current token is returned.
    let mut expired = token_of_session("t3", "s-alice", &alice, None);
    expired.expires_at = chrono::DateTime::from_timestamp(1_000_000_000, 0).unwrap();
    s.rotate_refresh_token("t2", expired.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.get_session("s-alice").await.unwrap(), Some(expired));
    // Other sessions are untouched.
    assert_eq!(
        s.get_session("s-other").await.unwrap().map(|t| t.id),
        Some("u1".to_owned())
    );
    // deleteSession: the session's token goes, and the session with it.
    assert!(s.delete_refresh_token("t3").await.unwrap());
    assert_eq!(s.get_session("s-alice").await.unwrap(), None);
    assert!(s.get_session("s-other").await.unwrap().is_some());
}

#[doc(hidden)]
pub async fn sessions_end_with_their_credentials(h: StoreHarness) {
    let s = &h.store;
    for name in ["alice", "bob"] {
        s.create_account(new_account(name, None)).await.unwrap();
    }
    let (alice, bob) = (did("alice"), did("bob"));
    s.create_app_password(app_password(&alice, "phone"))
        .await
        .unwrap();
    s.create_refresh_token(token_of_session("p1", "s-phone", &alice, Some("phone")))
        .await
        .unwrap();
    s.create_refresh_token(token_of_session("m1", "s-main", &alice, None))
        .await
        .unwrap();
    s.create_refresh_token(token_of_session("b1", "s-bob", &bob, None))
        .await
        .unwrap();
    // A revoked app password ends its sessions only.
    s.delete_app_password(&alice, "phone").await.unwrap();
    assert_eq!(s.get_session("s-phone").await.unwrap(), None);
    assert!(s.get_session("s-main").await.unwrap().is_some());
    // A password change ends all of the account's sessions.
    s.rotate_refresh_token("m1", token_of_session("m2", "s-main", &alice, None))
        .await
        .unwrap()
        .unwrap();
    s.update_password(&alice, "$argon2id$new").await.unwrap();
    assert_eq!(s.get_session("s-main").await.unwrap(), None);
    assert!(s.get_session("s-bob").await.unwrap().is_some());
    // So does deleting the account.
    s.delete_account(&bob).await.unwrap();
    assert_eq!(s.get_session("s-bob").await.unwrap(), None);
}

#[doc(hidden)]
pub async fn takedown_refs_round_trip(h: StoreHarness) {
    let s = &h.store;
    s.create_account(new_account("alice", None)).await.unwrap();
    let alice = did("alice");
    let get = || async {
        s.get_account(AccountLookup::Did(&alice))
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(get().await.takedown_ref, None);
    s.set_takedown_ref(&alice, Some("report-42")).await.unwrap();
    let a = get().await;
    assert_eq!(a.takedown_ref.as_deref(), Some("report-42"));
    assert_eq!(a.status, AccountStatus::Active, "the status is separate");
    s.update_status(&alice, AccountStatus::Takendown)
        .await
        .unwrap();
    assert_eq!(get().await.takedown_ref.as_deref(), Some("report-42"));
    s.set_takedown_ref(&alice, None).await.unwrap();
    let a = get().await;
    assert_eq!((a.takedown_ref, a.status), (None, AccountStatus::Takendown));
    assert!(matches!(
        s.set_takedown_ref(&did("nobody"), Some("x")).await,
        Err(StoreError::NotFound("account"))
    ));
}

fn new_code(code: &str, uses: i32, for_account: &str) -> NewInviteCode {
    NewInviteCode {
        code: code.to_owned(),
        available_uses: uses,
        for_account: for_account.to_owned(),
        created_by: "admin".to_owned(),
    }
}

fn with_code(name: &str, code: &str) -> NewAccount {
    NewAccount {
        invite_code: Some(code.to_owned()),
        ..new_account(name, None)
    }
}

fn codes_of(codes: &[InviteCode]) -> Vec<&str> {
    codes.iter().map(|c| c.code.as_str()).collect()
}

#[doc(hidden)]
pub async fn invite_codes_are_created_listed_and_disabled(h: StoreHarness) {
    let s = &h.store;
    let alice = "did:plc:alice";
    let created = s
        .create_invite_codes(vec![
            new_code("aaaa-1", 1, alice),
            new_code("aaaa-2", 5, alice),
            new_code("admin-1", 10, "admin"),
        ])
        .await
        .unwrap();
    assert_eq!(codes_of(&created), ["aaaa-1", "aaaa-2", "admin-1"]);
    let first = &created[0];
    assert_eq!(
        (
            first.available_uses,
            first.disabled,
            first.for_account.as_str(),
            first.created_by.as_str()
        ),
        (1, false, alice, "admin")
    );
    assert!(first.uses.is_empty());
    assert!((chrono::Utc::now() - first.created_at).num_seconds().abs() < 60);
    // Read back exactly as returned.
    for c in &created {
        assert_eq!(s.get_invite_code(&c.code).await.unwrap().as_ref(), Some(c));
    }
    assert_eq!(s.get_invite_code("nope").await.unwrap(), None);
    assert!(s.create_invite_codes(vec![]).await.unwrap().is_empty());

    // A clash fails the whole batch.
    let err = s
        .create_invite_codes(vec![
            new_code("fresh", 1, alice),
            new_code("aaaa-2", 1, alice),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                field: "invite code"
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.get_invite_code("fresh").await.unwrap(), None);
    assert_eq!(
        s.get_invite_code("aaaa-2")
            .await
            .unwrap()
            .unwrap()
            .available_uses,
        5
    );

    // An account's codes.
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.create_invite_codes(vec![new_code("aaaa-0", 1, alice)])
        .await
        .unwrap();
    let mine = s.account_invite_codes(alice).await.unwrap();
    assert_eq!(
        codes_of(&mine),
        ["aaaa-0", "aaaa-1", "aaaa-2"],
        "newest first"
    );
    assert_eq!(
        codes_of(&s.account_invite_codes("admin").await.unwrap()),
        ["admin-1"]
    );
    assert!(
        s.account_invite_codes("did:plc:nobody")
            .await
            .unwrap()
            .is_empty()
    );

    // Disabling by code and by account.
    s.disable_invite_codes(&["admin-1".to_owned(), "unknown".to_owned()], &[])
        .await
        .unwrap();
    assert!(
        s.get_invite_code("admin-1")
            .await
            .unwrap()
            .unwrap()
            .disabled
    );
    assert!(!s.get_invite_code("aaaa-1").await.unwrap().unwrap().disabled);
    s.disable_invite_codes(&[], &[alice.to_owned()])
        .await
        .unwrap();
    assert!(
        s.account_invite_codes(alice)
            .await
            .unwrap()
            .iter()
            .all(|c| c.disabled)
    );
    s.disable_invite_codes(&[], &[]).await.unwrap();
}

#[doc(hidden)]
pub async fn invite_codes_page_in_both_orders(h: StoreHarness) {
    let s = &h.store;
    // Three batches at different times; codes within a batch share a time.
    for batch in [&["c-3", "c-1"][..], &["c-2"], &["c-5", "c-4", "c-0"]] {
        let codes = batch.iter().map(|c| new_code(c, 10, "admin")).collect();
        s.create_invite_codes(codes).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recent = ["c-0", "c-4", "c-5", "c-2", "c-1", "c-3"];
    // Uses: c-1 three, c-4 and c-5 two, c-2 one.
    let mut n = 0;
    for (code, uses) in [("c-1", 3), ("c-4", 2), ("c-5", 2), ("c-2", 1)] {
        for _ in 0..uses {
            n += 1;
            s.create_account(with_code(&format!("user{n}"), code))
                .await
                .unwrap();
        }
    }
    let usage = ["c-1", "c-4", "c-5", "c-2", "c-0", "c-3"];

    for (sort, expected) in [
        (InviteCodeSort::Recent, recent),
        (InviteCodeSort::Usage, usage),
    ] {
        let (all, next) = s.list_invite_codes(sort, None, 100).await.unwrap();
        assert_eq!(codes_of(&all), expected, "{sort:?}");
        assert_eq!(next, None, "{sort:?}: one page holds everything");
        let (exact, next) = s.list_invite_codes(sort, None, 6).await.unwrap();
        assert_eq!(exact.len(), 6);
        assert_eq!(next, None, "{sort:?}: a full last page has no cursor");
        for limit in [1, 2, 4] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let (page, next) = s
                    .list_invite_codes(sort, cursor.as_deref(), limit)
                    .await
                    .unwrap();
                assert!(page.len() <= limit);
                seen.extend(page);
                pages += 1;
                assert!(pages <= 6, "{sort:?}/{limit}: paging does not end");
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(codes_of(&seen), expected, "{sort:?}, pages of {limit}");
            assert_eq!(seen, all, "{sort:?}: pages hold the same codes");
        }
    }
    let c1 = &s
        .list_invite_codes(InviteCodeSort::Usage, None, 1)
        .await
        .unwrap()
        .0[0];
    assert_eq!((c1.available_uses, c1.uses.len()), (7, 3));
}

#[doc(hidden)]
pub async fn sign_up_with_an_invite_code_consumes_a_use(h: StoreHarness) {
    let s = &h.store;
    s.create_invite_codes(vec![new_code("two-uses", 2, "admin")])
        .await
        .unwrap();
    let before = chrono::Utc::now();
    let alice = s
        .create_account(with_code("alice", "two-uses"))
        .await
        .unwrap();
    assert_eq!(alice.did, did("alice"));
    let code = s.get_invite_code("two-uses").await.unwrap().unwrap();
    assert_eq!(code.available_uses, 1);
    assert_eq!(code.uses.len(), 1);
    assert_eq!(code.uses[0].used_by, did("alice"));
    assert!((code.uses[0].used_at - before).num_seconds().abs() < 60);

    // A sign-up that fails for another reason consumes nothing.
    let mut clash = with_code("bob", "two-uses");
    clash.handle = handle("alice");
    assert!(matches!(
        s.create_account(clash).await,
        Err(StoreError::AlreadyExists { field: "handle" })
    ));
    let code = s.get_invite_code("two-uses").await.unwrap().unwrap();
    assert_eq!((code.available_uses, code.uses.len()), (1, 1));

    s.create_account(with_code("bob", "two-uses"))
        .await
        .unwrap();
    let code = s.get_invite_code("two-uses").await.unwrap().unwrap();
    assert_eq!(code.available_uses, 0);
    let users: Vec<_> = code.uses.iter().map(|u| u.used_by.clone()).collect();
    assert_eq!(users.len(), 2);
    assert!(users.contains(&did("alice")) && users.contains(&did("bob")));

    // Deleting an account keeps the codes it used and was given.
    s.create_invite_codes(vec![new_code("for-alice", 1, "did:plc:alice")])
        .await
        .unwrap();
    s.delete_account(&did("alice")).await.unwrap();
    assert_eq!(
        s.get_invite_code("two-uses")
            .await
            .unwrap()
            .unwrap()
            .uses
            .len(),
        2
    );
    assert_eq!(
        s.account_invite_codes("did:plc:alice").await.unwrap().len(),
        1
    );
}

#[doc(hidden)]
pub async fn sign_up_with_an_unusable_invite_code_writes_nothing(h: StoreHarness) {
    let s = &h.store;
    s.create_invite_codes(vec![
        new_code("zz-used-up", 1, "admin"),
        new_code("zz-disabled", 5, "admin"),
        new_code("zz-none", 0, "admin"),
    ])
    .await
    .unwrap();
    s.create_account(with_code("alice", "zz-used-up"))
        .await
        .unwrap();
    s.disable_invite_codes(&["zz-disabled".to_owned()], &[])
        .await
        .unwrap();
    for code in ["zz-used-up", "zz-disabled", "zz-none", "zz-unknown"] {
        let mut account = with_code("bob", code);
        account.signing_key = Some(aurora_core::crypto::SigningKey::generate(
            aurora_core::crypto::Curve::K256,
        ));
        let err = s.create_account(account).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidInviteCode),
            "{code}: {err:?}"
        );
        assert!(!err.to_string().contains(code), "the code is not echoed");
        assert!(
            s.get_account(AccountLookup::Did(&did("bob")))
                .await
                .unwrap()
                .is_none(),
            "{code}: no account"
        );
        assert!(s.get_signing_key(&did("bob")).await.unwrap().is_none());
    }
    let used_up = s.get_invite_code("zz-used-up").await.unwrap().unwrap();
    assert_eq!((used_up.available_uses, used_up.uses.len()), (0, 1));
    let disabled = s.get_invite_code("zz-disabled").await.unwrap().unwrap();
    assert_eq!((disabled.available_uses, disabled.uses.len()), (5, 0));
    assert_eq!(s.list_accounts(None, 10).await.unwrap().len(), 1);
}

#[doc(hidden)]
pub async fn concurrent_sign_ups_race_for_the_last_invite_use(h: StoreHarness) {
    let rounds = 8;
    for round in 0..rounds {
        let code = format!("last-{round}");
        h.store
            .create_invite_codes(vec![new_code(&code, 1, "admin")])
            .await
            .unwrap();
        let tasks: Vec<_> = ["left", "right"]
            .into_iter()
            .map(|side| {
                let s = h.store.clone();
                let account = with_code(&format!("{side}{round}"), &code);
                tokio::spawn(async move { s.create_account(account).await })
            })
            .collect();
        let mut won = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(a) => won.push(a.did),
                Err(StoreError::InvalidInviteCode) => {}
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one sign-up wins");
        let stored = h.store.get_invite_code(&code).await.unwrap().unwrap();
        assert_eq!(stored.available_uses, 0);
        assert_eq!(
            stored.uses.iter().map(|u| &u.used_by).collect::<Vec<_>>(),
            [&won[0]]
        );
    }
    assert_eq!(
        h.store.list_accounts(None, 100).await.unwrap().len(),
        rounds
    );
}

/// The `seq`s of the served events in `after < seq <= up_to`.
async fn served_seqs(s: &Arc<dyn FullStore>, after: i64, up_to: i64) -> Vec<i64> {
    s.events_in_range(after, up_to, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

/// Nothing of `did`'s repo is left: no root, none of `cids`, no records.
async fn assert_repo_gone(
    s: &Arc<dyn FullStore>,
    did: &aurora_core::syntax::Did,
    cids: &[aurora_core::cid::Cid],
) {
    assert_eq!(s.get_root(did).await.unwrap(), None);
    for cid in cids {
        assert_eq!(s.get_block(did, cid).await.unwrap(), None);
    }
    assert!(s.get_blocks(did, cids).await.unwrap().is_empty());
    assert!(s.list_collections(did).await.unwrap().is_empty());
    for (collection, key) in [("app.bsky.feed.post", "p1"), ("com.example.thing", "t1")] {
        assert_eq!(
            s.get_record(did, &nsid(collection), &rkey(key))
                .await
                .unwrap(),
            None
        );
        assert!(
            s.list_records(did, &nsid(collection), &page(10, None, false))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[doc(hidden)]
pub async fn delete_repo_removes_the_repo_and_invalidates_its_events(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let (rec, rec_b) = block("alice-record");
    let c1 = commit(
        &alice,
        None,
        "a1",
        1,
        vec![(rec, rec_b)],
        vec![put("app.bsky.feed.post", "p1", rec)],
    );
    let a1_root = c1.root;
    let a1 = s.apply_commit(c1).await.unwrap();
    let b1 = s
        .apply_commit(commit(&bob, None, "b1", 1, vec![], vec![]))
        .await
        .unwrap();
    let a2 = s
        .apply_commit(commit(
            &alice,
            Some(a1_root),
            "a2",
            2,
            vec![],
            vec![put("com.example.thing", "t1", rec)],
        ))
        .await
        .unwrap();
    let a3 = s
        .sequence_event(identity_event(&alice, "alice-id"))
        .await
        .unwrap();
    let b2 = s
        .sequence_event(identity_event(&bob, "bob-id"))
        .await
        .unwrap();

    let mut rx = s.subscribe();
    rx.borrow_and_update();
    let mut deleted = identity_event(&alice, "deleted");
    deleted.event_type = EventType::Account;
    let seq = s.delete_repo(&alice, deleted.clone()).await.unwrap();
    assert!(seq > b2);

    assert_repo_gone(s, &alice, &[rec, a1_root]).await;
    // Bob's repo is untouched.
    assert!(s.get_root(&bob).await.unwrap().is_some());

    // Alice's earlier events are no longer served; Bob's and the deletion are.
    assert_eq!(served_seqs(s, 0, i64::MAX).await, [b1, b2, seq]);
    assert_eq!(served_seqs(s, 0, seq).await, [b1, b2, seq]);
    assert!(
        s.events_in_range(0, a2, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.did == bob)
    );
    assert!(s.events_in_range(b1, a3, 100).await.unwrap().is_empty());
    assert_eq!(
        s.events_after(a1, 1).await.unwrap()[0].seq,
        b1,
        "limits skip them too"
    );
    let last = s.events_after(b2, 10).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(
        (&last[0].did, last[0].event_type, &last[0].payload),
        (&alice, EventType::Account, &deleted.payload)
    );
    assert_eq!(s.current_seq().await.unwrap(), Some(seq));
    // Subscribers are woken.
    assert!(rx.has_changed().unwrap());
    assert!(*rx.borrow_and_update() >= seq);

    // The DID can start a new repo; its new events are served.
    let again = s
        .apply_commit(commit(&alice, None, "a-new", 3, vec![], vec![]))
        .await
        .unwrap();
    assert_eq!(s.events_after(seq, 10).await.unwrap()[0].seq, again);
    assert!(s.get_root(&alice).await.unwrap().is_some());
}

#[doc(hidden)]
pub async fn delete_repo_without_a_repo_still_sequences_its_event(h: StoreHarness) {
    let s = &h.store;
    let (alice, carol) = (did("alice"), did("carol"));
    let kept = s
        .apply_commit(commit(&alice, None, "a1", 1, vec![], vec![]))
        .await
        .unwrap();
    let earlier = s
        .sequence_event(identity_event(&carol, "carol-id"))
        .await
        .unwrap();
    let mut rx = s.subscribe();
    rx.borrow_and_update();
    let mut gone = identity_event(&carol, "carol-deleted");
    gone.event_type = EventType::Account;
    let seq = s.delete_repo(&carol, gone.clone()).await.unwrap();
    assert!(seq > earlier);
    assert!(*rx.borrow_and_update() >= seq);
    let served = s.events_after(0, 10).await.unwrap();
    assert_eq!(
        served
            .iter()
            .map(|e| (e.seq, &e.did, e.event_type))
            .collect::<Vec<_>>(),
        [
            (kept, &alice, EventType::Commit),
            (seq, &carol, EventType::Account)
        ]
    );
    assert_eq!(served[1].payload, gone.payload);
    assert_eq!(s.get_root(&carol).await.unwrap(), None);
    assert!(s.get_root(&alice).await.unwrap().is_some());
}

#[doc(hidden)]
pub async fn repo_stats_count_blocks_and_live_records(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    assert_eq!(s.repo_stats(&alice).await.unwrap(), RepoStats::default());

    let (a1, a1b) = block("stats-a-v1");
    let (b1, b1b) = block("stats-b-v1");
    let c1 = commit(
        &alice,
        None,
        "c1",
        1,
        vec![(a1, a1b.clone()), (b1, b1b)],
        vec![
            put("com.example.thing", "a", a1),
            put("com.example.thing", "b", b1),
        ],
    );
    let r1 = c1.root;
    s.apply_commit(c1).await.unwrap();
    // The commit block and the two record blocks; two records.
    let stats = |blocks, records| RepoStats {
        blocks,
        records,
        expected_blobs: 0,
        imported_blobs: 0,
    };
    assert_eq!(s.repo_stats(&alice).await.unwrap(), stats(3, 2));

    // A replaced record, a deleted one, a new one that reuses a stored block
    // (counted once), and a block written again.
    let (a2, a2b) = block("stats-a-v2");
    s.apply_commit(commit(
        &alice,
        Some(r1),
        "c2",
        2,
        vec![(a2, a2b), (a1, a1b.clone())],
        vec![
            put("com.example.thing", "a", a2),
            delete("com.example.thing", "b"),
            put("app.bsky.feed.post", "p1", a1),
        ],
    ))
    .await
    .unwrap();
    // Blocks: c1, a1, b1, c2, a2. Records: thing/a and post/p1.
    assert_eq!(s.repo_stats(&alice).await.unwrap(), stats(5, 2));

    // Another repo holding one of the same blocks counts its own.
    s.apply_commit(commit(
        &bob,
        None,
        "b1",
        1,
        vec![(a1, a1b)],
        vec![put("app.bsky.feed.post", "p1", a1)],
    ))
    .await
    .unwrap();
    assert_eq!(s.repo_stats(&bob).await.unwrap(), stats(2, 1));
    assert_eq!(s.repo_stats(&alice).await.unwrap(), stats(5, 2));

    let mut gone = identity_event(&alice, "deleted");
    gone.event_type = EventType::Account;
    s.delete_repo(&alice, gone).await.unwrap();
    assert_eq!(s.repo_stats(&alice).await.unwrap(), RepoStats::default());
    assert_eq!(s.repo_stats(&bob).await.unwrap(), stats(2, 1));
    assert_eq!(
        s.repo_stats(&did("nobody")).await.unwrap(),
        RepoStats::default()
    );
}

// ---------------------------------------------------------------------------
// Blob metadata and record blob references

fn hours_ago(h: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() - chrono::TimeDelta::hours(h)
}

/// Stores `blob` and marks it permanent, as after a committed upload.
async fn permanent_blob(s: &Arc<dyn FullStore>, blob: BlobRecord) -> BlobRecord {
    s.put_blob(blob.clone()).await.unwrap();
    s.mark_blob_permanent(&blob.did, &blob.cid).await.unwrap();
    s.get_blob(&blob.did, &blob.cid).await.unwrap().unwrap()
}

/// Applies a commit of `did` on its current root with the given record writes.
async fn write_records(
    s: &Arc<dyn FullStore>,
    did: &aurora_core::syntax::Did,
    label: &str,
    records: Vec<aurora_core::store::RecordWrite>,
) {
    let root = s.get_root(did).await.unwrap();
    // The revision after the current one (revisions here are `tid(n)`).
    let rev = root
        .as_ref()
        .map_or(1, |r| (1..10_000).find(|n| tid(*n) > r.rev).unwrap());
    // One block per distinct record CID.
    let blocks: std::collections::BTreeMap<_, _> = records
        .iter()
        .filter_map(|w| match w {
            aurora_core::store::RecordWrite::Put { cid, .. } => {
                Some((*cid, Bytes::from(format!("record:{cid}"))))
            }
            aurora_core::store::RecordWrite::Delete { .. } => None,
        })
        .collect();
    s.apply_commit(commit(
        did,
        root.map(|r| r.cid),
        label,
        rev,
        blocks.into_iter().collect(),
        records,
    ))
    .await
    .unwrap();
}

fn blob_stats(expected_blobs: u64, imported_blobs: u64) -> (u64, u64) {
    (expected_blobs, imported_blobs)
}

async fn stats_of(s: &Arc<dyn FullStore>, did: &aurora_core::syntax::Did) -> (u64, u64) {
    let stats = s.repo_stats(did).await.unwrap();
    (stats.expected_blobs, stats.imported_blobs)
}

fn sorted_cids(mut cids: Vec<aurora_core::cid::Cid>) -> Vec<aurora_core::cid::Cid> {
    cids.sort_by_key(ToString::to_string);
    cids
}

fn cids_of(blobs: &[BlobRecord]) -> Vec<aurora_core::cid::Cid> {
    blobs.iter().map(|b| b.cid).collect()
}

#[doc(hidden)]
pub async fn blob_references_follow_record_writes(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let (cat, dog, fox) = (
        blob_cid("ref-cat"),
        blob_cid("ref-dog"),
        blob_cid("ref-fox"),
    );
    let (p1, p2) = (block("ref-p1").0, block("ref-p2").0);
    write_records(
        s,
        &alice,
        "r1",
        vec![
            put_with_blobs("app.bsky.feed.post", "p1", p1, &[cat, dog]),
            put_with_blobs("app.bsky.feed.post", "p2", p2, &[cat]),
            put("app.bsky.feed.post", "p3", p2),
        ],
    )
    .await;
    for cid in [cat, dog] {
        assert!(s.is_blob_referenced(&alice, &cid).await.unwrap());
    }
    assert!(!s.is_blob_referenced(&alice, &fox).await.unwrap());
    assert!(
        !s.is_blob_referenced(&bob, &cat).await.unwrap(),
        "per account"
    );
    // Two distinct blobs referenced (cat by two records), none stored yet.
    assert_eq!(stats_of(s, &alice).await, blob_stats(2, 0));
    // A stored blob counts as imported, temporary or not.
    s.put_blob(temp_blob(&alice, "ref-dog", hours_ago(0)))
        .await
        .unwrap();
    assert_eq!(stats_of(s, &alice).await, blob_stats(2, 1));
    permanent_blob(s, temp_blob(&alice, "ref-cat", hours_ago(0))).await;
    assert_eq!(stats_of(s, &alice).await, blob_stats(2, 2));
    // Another account's copy of a blob does not count for Alice.
    s.put_blob(temp_blob(&bob, "ref-fox", hours_ago(0)))
        .await
        .unwrap();

    // An update replaces the record's references: p1 now references fox
    // only; cat is still referenced by p2, dog by nothing.
    write_records(
        s,
        &alice,
        "r2",
        vec![put_with_blobs("app.bsky.feed.post", "p1", p1, &[fox])],
    )
    .await;
    assert!(s.is_blob_referenced(&alice, &cat).await.unwrap());
    assert!(!s.is_blob_referenced(&alice, &dog).await.unwrap());
    assert!(s.is_blob_referenced(&alice, &fox).await.unwrap());
    assert_eq!(stats_of(s, &alice).await, blob_stats(2, 1));

    // Updating p2 to reference nothing drops cat; deleting p1 drops fox.
    write_records(
        s,
        &alice,
        "r3",
        vec![
            put("app.bsky.feed.post", "p2", p2),
            delete("app.bsky.feed.post", "p1"),
        ],
    )
    .await;
    for cid in [cat, dog, fox] {
        assert!(!s.is_blob_referenced(&alice, &cid).await.unwrap());
    }
    assert_eq!(stats_of(s, &alice).await, blob_stats(0, 0));
    // The blobs themselves stay stored until swept.
    assert!(s.get_blob(&alice, &cat).await.unwrap().is_some());

    // Bob's references are his own.
    write_records(
        s,
        &bob,
        "b1",
        vec![put_with_blobs("app.bsky.feed.post", "p1", p1, &[cat, fox])],
    )
    .await;
    assert_eq!(stats_of(s, &bob).await, blob_stats(2, 1));
    assert_eq!(stats_of(s, &alice).await, blob_stats(0, 0));
}

#[doc(hidden)]
pub async fn put_blob_is_idempotent_and_restarts_a_temporary_grace_period(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    assert_eq!(s.get_blob(&alice, &blob_cid("cat")).await.unwrap(), None);
    let first = temp_blob(&alice, "cat", hours_ago(3));
    assert_eq!(s.put_blob(first.clone()).await.unwrap(), first);
    assert_eq!(
        s.get_blob(&alice, &first.cid).await.unwrap(),
        Some(first.clone())
    );

    // The same blob again: the stored row wins, with the new upload time.
    let again = BlobRecord {
        mime_type: "application/octet-stream".to_owned(),
        temp_key: Some("temp-cat-again".to_owned()),
        ..temp_blob(&alice, "cat", hours_ago(1))
    };
    let stored = s.put_blob(again.clone()).await.unwrap();
    let refreshed = BlobRecord {
        created_at: again.created_at,
        ..first.clone()
    };
    assert_eq!(stored, refreshed);
    assert_ne!(
        stored.temp_key, again.temp_key,
        "the caller drops its own temporary object"
    );
    assert_eq!(
        s.get_blob(&alice, &first.cid).await.unwrap(),
        Some(refreshed.clone())
    );

    // A permanent blob is returned unchanged: no new upload time.
    s.mark_blob_permanent(&alice, &first.cid).await.unwrap();
    let permanent = BlobRecord {
        temp_key: None,
        ..refreshed
    };
    let late = temp_blob(&alice, "cat", hours_ago(0));
    assert_eq!(s.put_blob(late).await.unwrap(), permanent);
    assert_eq!(
        s.get_blob(&alice, &first.cid).await.unwrap(),
        Some(permanent)
    );

    // Bob's upload of the same bytes is his own blob.
    let bobs = temp_blob(&bob, "cat", hours_ago(2));
    assert_eq!(s.put_blob(bobs.clone()).await.unwrap(), bobs);
    assert_eq!(s.get_blob(&bob, &bobs.cid).await.unwrap(), Some(bobs));
}

#[doc(hidden)]
pub async fn concurrent_uploads_of_one_blob_agree_on_its_row(h: StoreHarness) {
    let alice = did("alice");
    let at = hours_ago(0);
    let uploads: Vec<_> = (0..8)
        .map(|i| {
            let s = h.store.clone();
            let blob = BlobRecord {
                temp_key: Some(format!("temp-race-{i}")),
                ..temp_blob(&alice, "race", at)
            };
            tokio::spawn(async move { s.put_blob(blob).await })
        })
        .collect();
    let mut keys = Vec::new();
    for upload in uploads {
        keys.push(upload.await.unwrap().unwrap().temp_key.unwrap());
    }
    let stored = h
        .store
        .get_blob(&alice, &blob_cid("race"))
        .await
        .unwrap()
        .unwrap();
    let winner = stored.temp_key.unwrap();
    assert!(
        keys.iter().all(|k| *k == winner),
        "every upload returns the stored temporary key {winner}: {keys:?}"
    );
}

#[doc(hidden)]
pub async fn mark_blob_permanent_clears_the_temporary_key(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let upload = temp_blob(&alice, "to-keep", hours_ago(1));
    assert!(matches!(
        s.mark_blob_permanent(&alice, &upload.cid).await,
        Err(StoreError::NotFound(_))
    ));
    s.put_blob(upload.clone()).await.unwrap();
    assert!(s.list_blobs(&alice, None, 10).await.unwrap().is_empty());
    s.mark_blob_permanent(&alice, &upload.cid).await.unwrap();
    let stored = s.get_blob(&alice, &upload.cid).await.unwrap().unwrap();
    assert_eq!(
        stored,
        BlobRecord {
            temp_key: None,
            ..upload.clone()
        }
    );
    assert_eq!(
        s.list_blobs(&alice, None, 10).await.unwrap(),
        vec![upload.cid]
    );
    // Already permanent: nothing to do.
    s.mark_blob_permanent(&alice, &upload.cid).await.unwrap();
    assert_eq!(s.get_blob(&alice, &upload.cid).await.unwrap(), Some(stored));
    // Another account has no such upload.
    assert!(matches!(
        s.mark_blob_permanent(&bob, &upload.cid).await,
        Err(StoreError::NotFound(_))
    ));
}

#[doc(hidden)]
pub async fn missing_blobs_are_listed_by_cid(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    assert!(
        s.list_missing_blobs(&alice, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let [first_cid, second_cid, third_cid, stored] =
        ["miss-a", "miss-b", "miss-c", "miss-stored"].map(blob_cid);
    let rec = block("miss-rec").0;
    write_records(
        s,
        &alice,
        "m1",
        vec![
            put_with_blobs("app.bsky.feed.post", "p1", rec, &[first_cid, stored]),
            put_with_blobs("app.bsky.feed.post", "p2", rec, &[first_cid, second_cid]),
            put_with_blobs("app.bsky.feed.like", "l1", rec, &[third_cid]),
        ],
    )
    .await;
    permanent_blob(s, temp_blob(&alice, "miss-stored", hours_ago(0))).await;
    // Bob storing one of them does not make it Alice's.
    permanent_blob(s, temp_blob(&bob, "miss-c", hours_ago(0))).await;

    let uri = |path: &str| format!("at://{alice}/{path}");
    let missing = s.list_missing_blobs(&alice, None, 10).await.unwrap();
    assert_eq!(
        missing.iter().map(|m| m.cid).collect::<Vec<_>>(),
        sorted_cids(vec![first_cid, second_cid, third_cid]),
        "each missing blob once, by CID"
    );
    for m in &missing {
        let expected: &[String] = if m.cid == first_cid {
            &[uri("app.bsky.feed.post/p1"), uri("app.bsky.feed.post/p2")]
        } else if m.cid == second_cid {
            &[uri("app.bsky.feed.post/p2")]
        } else {
            &[uri("app.bsky.feed.like/l1")]
        };
        assert!(expected.contains(&m.record_uri), "{m:?}");
    }
    assert_eq!(
        stats_of(s, &alice).await,
        blob_stats(4, 1),
        "the stats agree"
    );

    // Pages of two, by cursor.
    let first = s.list_missing_blobs(&alice, None, 2).await.unwrap();
    assert_eq!(first, missing[..2]);
    let rest = s
        .list_missing_blobs(&alice, Some(&first[1].cid), 2)
        .await
        .unwrap();
    assert_eq!(rest, missing[2..]);
    assert!(
        s.list_missing_blobs(&alice, Some(&missing[2].cid), 2)
            .await
            .unwrap()
            .is_empty()
    );

    // Uploading one (still temporary) makes it no longer missing.
    s.put_blob(temp_blob(&alice, "miss-b", hours_ago(0)))
        .await
        .unwrap();
    let now_missing: Vec<MissingBlob> = s.list_missing_blobs(&alice, None, 10).await.unwrap();
    assert_eq!(
        now_missing.iter().map(|m| m.cid).collect::<Vec<_>>(),
        sorted_cids(vec![first_cid, third_cid])
    );
    assert!(
        s.list_missing_blobs(&bob, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[doc(hidden)]
pub async fn list_blobs_pages_permanent_blobs_by_cid(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let mut cids = Vec::new();
    for i in 0..5 {
        let upload = permanent_blob(s, temp_blob(&alice, &format!("list-{i}"), hours_ago(1))).await;
        cids.push(upload.cid);
    }
    let cids = sorted_cids(cids);
    // Temporary blobs and other accounts' blobs are not listed.
    s.put_blob(temp_blob(&alice, "list-temp", hours_ago(1)))
        .await
        .unwrap();
    permanent_blob(s, temp_blob(&bob, "list-bob", hours_ago(1))).await;

    assert_eq!(s.list_blobs(&alice, None, 10).await.unwrap(), cids);
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_blobs(&alice, cursor.as_ref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last().copied() else {
            break;
        };
        paged.extend(page);
        cursor = Some(last);
    }
    assert_eq!(paged, cids);
    assert_eq!(
        s.list_blobs(&bob, None, 10).await.unwrap(),
        vec![blob_cid("list-bob")]
    );
    assert!(
        s.list_blobs(&did("nobody"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[doc(hidden)]
pub async fn stale_temp_blobs_are_old_unreferenced_uploads(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let oldest = temp_blob(&bob, "stale-bob", hours_ago(5));
    let old = temp_blob(&alice, "stale-old", hours_ago(4));
    let used = temp_blob(&alice, "stale-used", hours_ago(4));
    let recent = temp_blob(&alice, "stale-recent", hours_ago(0));
    for blob in [&oldest, &old, &used, &recent] {
        s.put_blob(blob.clone()).await.unwrap();
    }
    permanent_blob(s, temp_blob(&alice, "stale-permanent", hours_ago(6))).await;
    write_records(
        s,
        &alice,
        "s1",
        vec![put_with_blobs(
            "app.bsky.feed.post",
            "p1",
            block("stale-rec").0,
            &[used.cid],
        )],
    )
    .await;

    let cutoff = hours_ago(1);
    // Oldest first; the referenced, recent and permanent ones are not stale.
    assert_eq!(
        s.stale_temp_blobs(cutoff, 10).await.unwrap(),
        vec![oldest.clone(), old.clone()]
    );
    assert_eq!(s.stale_temp_blobs(cutoff, 1).await.unwrap(), vec![oldest]);
    assert!(
        s.stale_temp_blobs(hours_ago(10), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Uploading it again restarts its grace period.
    s.put_blob(temp_blob(&alice, "stale-old", hours_ago(0)))
        .await
        .unwrap();
    assert_eq!(
        cids_of(&s.stale_temp_blobs(cutoff, 10).await.unwrap()),
        vec![blob_cid("stale-bob")]
    );
}

#[doc(hidden)]
pub async fn unpromoted_blobs_are_referenced_temporary_blobs(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let used = temp_blob(&alice, "unpromoted-used", hours_ago(2));
    let unused = temp_blob(&alice, "unpromoted-unused", hours_ago(2));
    s.put_blob(used.clone()).await.unwrap();
    s.put_blob(unused.clone()).await.unwrap();
    let done = permanent_blob(s, temp_blob(&alice, "unpromoted-done", hours_ago(2))).await;
    assert!(s.unpromoted_blobs(10).await.unwrap().is_empty());

    write_records(
        s,
        &alice,
        "u1",
        vec![put_with_blobs(
            "app.bsky.feed.post",
            "p1",
            block("unpromoted-rec").0,
            &[used.cid, done.cid],
        )],
    )
    .await;
    // The commit landed but the bytes were not moved yet.
    assert_eq!(s.unpromoted_blobs(10).await.unwrap(), vec![used.clone()]);
    assert!(s.unpromoted_blobs(0).await.unwrap().is_empty());
    s.mark_blob_permanent(&alice, &used.cid).await.unwrap();
    assert!(s.unpromoted_blobs(10).await.unwrap().is_empty());
}

#[doc(hidden)]
pub async fn orphaned_blobs_lost_their_last_reference(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let x = permanent_blob(s, temp_blob(&alice, "orphan-x", hours_ago(2))).await;
    let z = permanent_blob(s, temp_blob(&bob, "orphan-z", hours_ago(2))).await;
    // A temporary unreferenced blob is stale, not orphaned.
    s.put_blob(temp_blob(&alice, "orphan-temp", hours_ago(2)))
        .await
        .unwrap();
    let rec = block("orphan-rec").0;
    write_records(
        s,
        &alice,
        "o1",
        vec![
            put_with_blobs("app.bsky.feed.post", "p1", rec, &[x.cid]),
            put_with_blobs("app.bsky.feed.post", "p2", rec, &[x.cid]),
        ],
    )
    .await;
    write_records(
        s,
        &bob,
        "o1",
        vec![put_with_blobs("app.bsky.feed.post", "p1", rec, &[z.cid])],
    )
    .await;
    assert!(s.orphaned_blobs(None, 10).await.unwrap().is_empty());

    // One of two references gone: still in use.
    write_records(s, &alice, "o2", vec![delete("app.bsky.feed.post", "p1")]).await;
    assert!(s.orphaned_blobs(Some(&alice), 10).await.unwrap().is_empty());
    // The last one gone.
    write_records(s, &alice, "o3", vec![delete("app.bsky.feed.post", "p2")]).await;
    assert_eq!(
        s.orphaned_blobs(Some(&alice), 10).await.unwrap(),
        vec![x.clone()]
    );
    assert!(s.orphaned_blobs(Some(&bob), 10).await.unwrap().is_empty());
    // Bob's record updated to reference nothing.
    write_records(s, &bob, "o2", vec![put("app.bsky.feed.post", "p1", rec)]).await;
    assert_eq!(
        s.orphaned_blobs(Some(&bob), 10).await.unwrap(),
        vec![z.clone()]
    );
    let mut all = s.orphaned_blobs(None, 10).await.unwrap();
    all.sort_by_key(|b| b.did.clone());
    assert_eq!(all, vec![x.clone(), z]);
    assert_eq!(s.orphaned_blobs(None, 1).await.unwrap().len(), 1);

    // Referenced again: no longer orphaned.
    write_records(
        s,
        &alice,
        "o4",
        vec![put_with_blobs("app.bsky.feed.post", "p3", rec, &[x.cid])],
    )
    .await;
    assert!(s.orphaned_blobs(Some(&alice), 10).await.unwrap().is_empty());
}

#[doc(hidden)]
pub async fn delete_blob_if_unused_deletes_only_the_row_the_sweep_saw(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let cutoff = hours_ago(1);
    let gone = |cid: aurora_core::cid::Cid| {
        let s = s.clone();
        let alice = alice.clone();
        async move { s.get_blob(&alice, &cid).await.unwrap().is_none() }
    };

    // A stale temporary blob, as the sweep saw it.
    let stale = temp_blob(&alice, "sweep-stale", hours_ago(3));
    s.put_blob(stale.clone()).await.unwrap();
    let key = stale.temp_key.as_deref();
    // Not with another temporary key, nor as a permanent blob.
    assert!(
        !s.delete_blob_if_unused(&alice, &stale.cid, Some("temp-other"), cutoff)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_blob_if_unused(&alice, &stale.cid, None, cutoff)
            .await
            .unwrap()
    );
    // Not when uploaded after the cutoff.
    assert!(
        !s.delete_blob_if_unused(&alice, &stale.cid, key, hours_ago(4))
            .await
            .unwrap()
    );
    assert!(!gone(stale.cid).await);
    // Exactly as seen: deleted, once.
    assert!(
        s.delete_blob_if_unused(&alice, &stale.cid, key, cutoff)
            .await
            .unwrap()
    );
    assert!(gone(stale.cid).await);
    assert!(
        !s.delete_blob_if_unused(&alice, &stale.cid, key, cutoff)
            .await
            .unwrap()
    );

    // Uploaded again after the sweep listed it: the grace period restarted.
    let again = temp_blob(&alice, "sweep-again", hours_ago(3));
    s.put_blob(again.clone()).await.unwrap();
    assert_eq!(
        cids_of(&s.stale_temp_blobs(cutoff, 10).await.unwrap()),
        vec![again.cid]
    );
    s.put_blob(temp_blob(&alice, "sweep-again", hours_ago(0)))
        .await
        .unwrap();
    assert!(
        !s.delete_blob_if_unused(&alice, &again.cid, again.temp_key.as_deref(), cutoff)
            .await
            .unwrap()
    );
    assert!(!gone(again.cid).await);

    // Referenced by a commit that landed after the sweep listed it.
    let used = temp_blob(&alice, "sweep-used", hours_ago(3));
    s.put_blob(used.clone()).await.unwrap();
    let rec = block("sweep-rec").0;
    write_records(
        s,
        &alice,
        "d1",
        vec![put_with_blobs("app.bsky.feed.post", "p1", rec, &[used.cid])],
    )
    .await;
    assert!(
        !s.delete_blob_if_unused(&alice, &used.cid, used.temp_key.as_deref(), cutoff)
            .await
            .unwrap()
    );
    assert!(!gone(used.cid).await);

    // A permanent blob: only when no record references it.
    s.mark_blob_permanent(&alice, &used.cid).await.unwrap();
    assert!(
        !s.delete_blob_if_unused(&alice, &used.cid, None, cutoff)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_blob_if_unused(&alice, &used.cid, used.temp_key.as_deref(), cutoff)
            .await
            .unwrap(),
        "it is no longer temporary"
    );
    write_records(s, &alice, "d2", vec![delete("app.bsky.feed.post", "p1")]).await;
    assert_eq!(
        cids_of(&s.orphaned_blobs(Some(&alice), 10).await.unwrap()),
        vec![used.cid]
    );
    // The upload time does not matter for a permanent blob.
    assert!(
        s.delete_blob_if_unused(&alice, &used.cid, None, hours_ago(10))
            .await
            .unwrap()
    );
    assert!(gone(used.cid).await);
    assert!(s.orphaned_blobs(None, 10).await.unwrap().is_empty());
}

#[doc(hidden)]
pub async fn delete_repo_removes_the_accounts_blobs(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let kept = permanent_blob(s, temp_blob(&alice, "del-kept", hours_ago(2))).await;
    let temp = temp_blob(&alice, "del-temp", hours_ago(2));
    s.put_blob(temp.clone()).await.unwrap();
    let bobs = permanent_blob(s, temp_blob(&bob, "del-kept", hours_ago(2))).await;
    let missing = blob_cid("del-missing");
    let rec = block("del-rec").0;
    for who in [&alice, &bob] {
        write_records(
            s,
            who,
            "x1",
            vec![put_with_blobs(
                "app.bsky.feed.post",
                "p1",
                rec,
                &[kept.cid, missing],
            )],
        )
        .await;
    }
    assert_eq!(stats_of(s, &alice).await, blob_stats(2, 1));

    let mut gone = identity_event(&alice, "deleted");
    gone.event_type = EventType::Account;
    s.delete_repo(&alice, gone).await.unwrap();
    for cid in [kept.cid, temp.cid] {
        assert_eq!(s.get_blob(&alice, &cid).await.unwrap(), None);
        assert!(!s.is_blob_referenced(&alice, &cid).await.unwrap());
    }
    assert!(s.list_blobs(&alice, None, 10).await.unwrap().is_empty());
    assert!(
        s.list_missing_blobs(&alice, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.repo_stats(&alice).await.unwrap(), RepoStats::default());
    assert!(
        s.stale_temp_blobs(hours_ago(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.orphaned_blobs(None, 10).await.unwrap().is_empty());
    // Bob's copy and references are untouched.
    assert_eq!(s.get_blob(&bob, &kept.cid).await.unwrap(), Some(bobs));
    assert!(s.is_blob_referenced(&bob, &kept.cid).await.unwrap());
    assert_eq!(stats_of(s, &bob).await, blob_stats(2, 1));
}

/// Every page of `blocks_since`, `limit` at a time: (rev, CID, bytes).
async fn all_blocks_since(
    s: &Arc<dyn FullStore>,
    did: &aurora_core::syntax::Did,
    since: &aurora_core::syntax::Tid,
    limit: usize,
) -> Vec<(aurora_core::syntax::Tid, aurora_core::cid::Cid, Bytes)> {
    let mut out: Vec<aurora_core::store::RevBlock> = Vec::new();
    loop {
        let after = out.last().map(|b| (&b.rev, &b.cid));
        let page = s.blocks_since(did, since, after, limit).await.unwrap();
        assert!(page.len() <= limit);
        let done = page.len() < limit;
        out.extend(page);
        if done {
            break;
        }
    }
    out.into_iter().map(|b| (b.rev, b.cid, b.bytes)).collect()
}

#[doc(hidden)]
pub async fn blocks_since_pages_a_repos_blocks_by_rev(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    assert!(
        s.blocks_since(&alice, &tid(0), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let [again, shared, later, last, bobs] =
        ["since-a", "since-b", "since-d", "since-e", "since-f"].map(block);
    let first = commit(
        &alice,
        None,
        "s1",
        1,
        vec![again.clone(), shared.clone()],
        vec![],
    );
    let c1 = (first.root, first.blocks[0].1.clone());
    s.apply_commit(first).await.unwrap();
    // `again` is stored again by rev 2 (it left the tree and came back): it
    // counts as written by rev 2.
    let second = commit(
        &alice,
        Some(c1.0),
        "s2",
        2,
        vec![later.clone(), again.clone()],
        vec![],
    );
    let c2 = (second.root, second.blocks[0].1.clone());
    s.apply_commit(second).await.unwrap();
    let third = commit(&alice, Some(c2.0), "s3", 3, vec![last.clone()], vec![]);
    let c3 = (third.root, third.blocks[0].1.clone());
    s.apply_commit(third).await.unwrap();
    // Bob's repo shares a block; it is his, at his rev.
    s.apply_commit(commit(
        &bob,
        None,
        "s-bob",
        5,
        vec![shared.clone(), bobs.clone()],
        vec![],
    ))
    .await
    .unwrap();

    // By rev, then CID in string order.
    let expected = |blocks: Vec<(u64, (aurora_core::cid::Cid, Bytes))>| {
        let mut sorted: Vec<_> = blocks
            .into_iter()
            .map(|(rev, (cid, bytes))| (tid(rev), cid, bytes))
            .collect();
        sorted.sort_by_key(|(rev, cid, _)| (rev.clone(), cid.to_string()));
        sorted
    };
    let everything = expected(vec![
        (1, c1.clone()),
        (1, shared.clone()),
        (2, c2.clone()),
        (2, later.clone()),
        (2, again.clone()),
        (3, c3.clone()),
        (3, last.clone()),
    ]);
    for limit in [1, 2, 3, 100] {
        assert_eq!(
            all_blocks_since(s, &alice, &tid(0), limit).await,
            everything,
            "pages of {limit}"
        );
    }
    assert_eq!(
        all_blocks_since(s, &alice, &tid(1), 2).await,
        everything[2..],
        "after rev 1"
    );
    assert_eq!(
        all_blocks_since(s, &alice, &tid(2), 2).await,
        expected(vec![(3, c3), (3, last)]),
        "after rev 2"
    );
    assert!(all_blocks_since(s, &alice, &tid(3), 2).await.is_empty());
    let bob_root = s.get_root(&bob).await.unwrap().unwrap().cid;
    let listed: Vec<_> = all_blocks_since(s, &bob, &tid(0), 10)
        .await
        .into_iter()
        .map(|(rev, cid, _)| (rev, cid))
        .collect();
    let mut bob_expected = vec![(tid(5), bob_root), (tid(5), shared.0), (tid(5), bobs.0)];
    bob_expected.sort_by_key(|(rev, cid)| (rev.clone(), cid.to_string()));
    assert_eq!(listed, bob_expected);
    assert!(
        s.blocks_since(&did("nobody"), &tid(0), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[doc(hidden)]
#[allow(clippy::too_many_lines)]
pub async fn record_blobs_are_listed_by_cid_since_a_rev(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    assert!(
        s.list_record_blobs(&alice, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let [cat, dog, fox, owl, eel] =
        ["rb-cat", "rb-dog", "rb-fox", "rb-owl", "rb-eel"].map(blob_cid);
    let rec = |label: &str| block(label).0;
    // rev 1: p1 and p2 share `cat`.
    write_records(
        s,
        &alice,
        "rb1",
        vec![
            put_with_blobs("app.bsky.feed.post", "p1", rec("rb-p1"), &[cat, dog]),
            put_with_blobs("app.bsky.feed.post", "p2", rec("rb-p2"), &[cat]),
        ],
    )
    .await;
    // rev 2: p3 with `fox`, l1 with none.
    write_records(
        s,
        &alice,
        "rb2",
        vec![
            put_with_blobs("app.bsky.feed.post", "p3", rec("rb-p3"), &[fox]),
            put("app.bsky.feed.like", "l1", rec("rb-l1")),
        ],
    )
    .await;
    // rev 3: p1 now references `owl` instead (`dog` is referenced no more).
    write_records(
        s,
        &alice,
        "rb3",
        vec![put_with_blobs(
            "app.bsky.feed.post",
            "p1",
            rec("rb-p1b"),
            &[owl],
        )],
    )
    .await;
    // Bob's records are his.
    write_records(
        s,
        &bob,
        "rb-bob",
        vec![put_with_blobs(
            "app.bsky.feed.post",
            "p1",
            rec("rb-bob"),
            &[eel, cat],
        )],
    )
    .await;

    let all = sorted_cids(vec![cat, fox, owl]);
    assert_eq!(
        s.list_record_blobs(&alice, None, None, 10).await.unwrap(),
        all,
        "each referenced blob once, by CID, stored or not"
    );
    // Pages of one, by cursor.
    let mut paged = Vec::new();
    loop {
        let page = s
            .list_record_blobs(&alice, None, paged.last(), 1)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert_eq!(page.len(), 1);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    // Since a rev: blobs of records written later.
    assert_eq!(
        s.list_record_blobs(&alice, Some(&tid(1)), None, 10)
            .await
            .unwrap(),
        sorted_cids(vec![fox, owl])
    );
    assert_eq!(
        s.list_record_blobs(&alice, Some(&tid(2)), None, 10)
            .await
            .unwrap(),
        vec![owl]
    );
    assert!(
        s.list_record_blobs(&alice, Some(&tid(3)), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let since_cursor = sorted_cids(vec![fox, owl]);
    assert_eq!(
        s.list_record_blobs(&alice, Some(&tid(1)), Some(&since_cursor[0]), 10)
            .await
            .unwrap(),
        since_cursor[1..]
    );
    assert_eq!(
        s.list_record_blobs(&bob, None, None, 10).await.unwrap(),
        sorted_cids(vec![eel, cat])
    );
    // A deleted record's blobs go.
    write_records(s, &alice, "rb4", vec![delete("app.bsky.feed.post", "p3")]).await;
    assert_eq!(
        s.list_record_blobs(&alice, None, None, 10).await.unwrap(),
        sorted_cids(vec![cat, owl])
    );
}

#[doc(hidden)]
pub async fn preferences_round_trip_and_go_with_the_account(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    assert!(matches!(
        s.get_preferences(&alice).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.put_preferences(&alice, vec![]).await,
        Err(StoreError::NotFound(_))
    ));
    s.create_account(new_account("alice", None)).await.unwrap();
    s.create_account(new_account("bob", None)).await.unwrap();
    assert!(s.get_preferences(&alice).await.unwrap().is_empty());

    let prefs = vec![
        serde_json::json!({
            "$type": "app.bsky.actor.defs#adultContentPref",
            "enabled": false,
        }),
        serde_json::json!({
            "$type": "app.bsky.actor.defs#savedFeedsPrefV2",
            "items": [{"id": "3l6", "type": "timeline", "value": "following", "pinned": true}],
            "note": "unicode ✓ and \"quotes\"",
        }),
    ];
    s.put_preferences(&alice, prefs.clone()).await.unwrap();
    assert_eq!(s.get_preferences(&alice).await.unwrap(), prefs);
    assert!(s.get_preferences(&bob).await.unwrap().is_empty());

    // A put replaces them all.
    let replaced = vec![serde_json::json!({
        "$type": "app.bsky.actor.defs#personalDetailsPref",
        "birthDate": "1990-01-01T00:00:00.000Z",
    })];
    s.put_preferences(&alice, replaced.clone()).await.unwrap();
    assert_eq!(s.get_preferences(&alice).await.unwrap(), replaced);
    s.put_preferences(&alice, vec![]).await.unwrap();
    assert!(s.get_preferences(&alice).await.unwrap().is_empty());

    // Deleted with the account; a new account with the DID starts afresh.
    s.put_preferences(&alice, prefs.clone()).await.unwrap();
    s.put_preferences(&bob, replaced.clone()).await.unwrap();
    s.delete_account(&alice).await.unwrap();
    assert!(matches!(
        s.get_preferences(&alice).await,
        Err(StoreError::NotFound(_))
    ));
    s.create_account(new_account("alice", None)).await.unwrap();
    assert!(s.get_preferences(&alice).await.unwrap().is_empty());
    assert_eq!(s.get_preferences(&bob).await.unwrap(), replaced);
}

// ---------------------------------------------------------------------------
// BlobStore

fn chunks(parts: &[&'static [u8]]) -> ByteStream {
    let parts: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    futures::stream::iter(parts).boxed()
}

async fn read_all(blob: aurora_core::store::StoredBlob) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = blob.stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[doc(hidden)]
pub async fn blob_upload_becomes_permanent(h: BlobHarness) {
    let b = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let temp = b
        .put_temp(chunks(&[b"hello ", b"blob ", b"world"]))
        .await
        .unwrap();
    assert_eq!(temp.size, 16);
    assert_eq!(
        temp.cid,
        cid_for(aurora_core::data::RAW, b"hello blob world")
    );
    assert!(
        b.get(&alice, &temp.cid).await.unwrap().is_none(),
        "temporary blobs are not served"
    );
    assert!(!b.contains(&alice, &temp.cid).await.unwrap());

    b.make_permanent(&alice, &temp.key, &temp.cid)
        .await
        .unwrap();
    let stored = b.get(&alice, &temp.cid).await.unwrap().unwrap();
    assert_eq!(stored.size, 16);
    assert_eq!(read_all(stored).await, b"hello blob world");
    assert!(b.contains(&alice, &temp.cid).await.unwrap());
    // Blobs are per account.
    assert!(!b.contains(&bob, &temp.cid).await.unwrap());
    assert!(b.get(&bob, &temp.cid).await.unwrap().is_none());
    // The temporary object is gone.
    assert!(matches!(
        b.make_permanent(&bob, &temp.key, &temp.cid).await,
        Err(BlobError::TempNotFound(_))
    ));
}

#[doc(hidden)]
pub async fn blob_make_permanent_is_idempotent(h: BlobHarness) {
    let b = &h.store;
    let alice = did("alice");
    let first = b.put_temp(chunks(&[b"same bytes"])).await.unwrap();
    let second = b.put_temp(chunks(&[b"same ", b"bytes"])).await.unwrap();
    assert_eq!(first.cid, second.cid);
    assert_ne!(first.key, second.key);
    b.make_permanent(&alice, &first.key, &first.cid)
        .await
        .unwrap();
    b.make_permanent(&alice, &second.key, &second.cid)
        .await
        .unwrap();
    let blob = b.get(&alice, &first.cid).await.unwrap().unwrap();
    assert_eq!(read_all(blob).await, b"same bytes");
    assert_eq!(
        b.delete_temp_older_than(Duration::ZERO).await.unwrap(),
        0,
        "no temporary left over"
    );
}

#[doc(hidden)]
pub async fn blob_delete_and_temp_cleanup(h: BlobHarness) {
    let b = &h.store;
    let alice = did("alice");
    let kept = b.put_temp(chunks(&[b"kept"])).await.unwrap();
    b.make_permanent(&alice, &kept.key, &kept.cid)
        .await
        .unwrap();
    b.delete(&alice, &kept.cid).await.unwrap();
    assert!(b.get(&alice, &kept.cid).await.unwrap().is_none());
    b.delete(&alice, &kept.cid).await.unwrap();

    let dropped = b.put_temp(chunks(&[b"dropped"])).await.unwrap();
    b.delete_temp(&dropped.key).await.unwrap();
    b.delete_temp(&dropped.key).await.unwrap();
    assert!(matches!(
        b.make_permanent(&alice, &dropped.key, &dropped.cid).await,
        Err(BlobError::TempNotFound(_))
    ));
    // Keys that are not ours are simply not found.
    assert!(matches!(
        b.make_permanent(&alice, "../../etc/passwd", &dropped.cid)
            .await,
        Err(BlobError::TempNotFound(_))
    ));

    let _young = b.put_temp(chunks(&[b"young"])).await.unwrap();
    let _young2 = b.put_temp(chunks(&[b"young too"])).await.unwrap();
    assert_eq!(
        b.delete_temp_older_than(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        b.delete_temp_older_than(Duration::from_millis(1))
            .await
            .unwrap(),
        2
    );
}

#[doc(hidden)]
pub async fn blob_failed_upload_leaves_nothing(h: BlobHarness) {
    let b = &h.store;
    let broken: ByteStream = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ])
    .boxed();
    assert!(matches!(b.put_temp(broken).await, Err(BlobError::Input(_))));
    assert_eq!(b.delete_temp_older_than(Duration::ZERO).await.unwrap(), 0);
}

#[doc(hidden)]
pub async fn blob_large_upload_streams(h: BlobHarness) {
    let b = &h.store;
    let alice = did("alice");
    let chunk = Bytes::from(vec![0xabu8; 64 * 1024]);
    let n = 80; // 5 MiB
    let mut hasher = BlobHasher::new();
    for _ in 0..n {
        hasher.update(&chunk);
    }
    let (cid, size) = hasher.finish();
    let stream = futures::stream::iter((0..n).map(move |_| Ok(chunk.clone()))).boxed();
    let temp = b.put_temp(stream).await.unwrap();
    assert_eq!((temp.cid, temp.size), (cid, size));
    b.make_permanent(&alice, &temp.key, &temp.cid)
        .await
        .unwrap();
    let blob = b.get(&alice, &cid).await.unwrap().unwrap();
    assert_eq!(blob.size, size);
    let mut stream = blob.stream;
    let mut check = BlobHasher::new();
    while let Some(part) = stream.next().await {
        check.update(&part.unwrap());
    }
    assert_eq!(check.finish(), (cid, size));
    // dag-cbor and raw CIDs of the same bytes differ: blobs use raw.
    assert_ne!(cid, cid_for(DAG_CBOR, b""));
}

// ---------------------------------------------------------------------------
// OAuthStore

fn oauth_request(id: &str) -> OAuthRequest {
    OAuthRequest {
        id: id.to_owned(),
        client_id: "https://app.example/client-metadata.json".to_owned(),
        client_auth: r#"{"method":"none"}"#.to_owned(),
        dpop_jkt: "jkt-1".to_owned(),
        parameters: r#"{"scope":"atproto transition:generic"}"#.to_owned(),
        device_id: None,
        did: None,
        code: None,
        expires_at: chrono::Utc::now().trunc_subsecs(3) + chrono::TimeDelta::minutes(5),
    }
}

fn oauth_session(id: &str, did: &aurora_core::syntax::Did) -> OAuthSession {
    let now = chrono::Utc::now().trunc_subsecs(3);
    OAuthSession {
        id: id.to_owned(),
        did: did.clone(),
        client_id: "https://app.example/client-metadata.json".to_owned(),
        client_auth: r#"{"method":"none"}"#.to_owned(),
        dpop_jkt: "jkt-1".to_owned(),
        scope: "atproto transition:generic".to_owned(),
        device_id: Some("dev-1".to_owned()),
        code: format!("cod-{id}"),
        token_id: format!("tok-{id}-1"),
        refresh_hash: format!("ref-{id}-1"),
        created_at: now,
        updated_at: now,
        expires_at: now + chrono::TimeDelta::minutes(15),
    }
}

fn rotation(token_id: &str, refresh_hash: &str) -> OAuthRotation {
    let now = chrono::Utc::now().trunc_subsecs(3);
    OAuthRotation {
        token_id: token_id.to_owned(),
        refresh_hash: refresh_hash.to_owned(),
        scope: "atproto".to_owned(),
        updated_at: now,
        expires_at: now + chrono::TimeDelta::minutes(15),
    }
}

#[doc(hidden)]
pub async fn oauth_requests_are_bound_approved_and_exchanged_once(h: StoreHarness) {
    let s = &h.store;
    let request = oauth_request("req-1");
    s.create_oauth_request(&request).await.unwrap();
    assert!(matches!(
        s.create_oauth_request(&request).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        s.oauth_request("req-1").await.unwrap(),
        Some(request.clone())
    );
    assert_eq!(s.oauth_request("req-404").await.unwrap(), None);

    // The sign-in page binds it to the browser that opened it first.
    let later = request.expires_at + chrono::TimeDelta::minutes(1);
    assert!(s.bind_oauth_request("req-1", "dev-a", later).await.unwrap());
    assert!(s.bind_oauth_request("req-1", "dev-a", later).await.unwrap());
    assert!(!s.bind_oauth_request("req-1", "dev-b", later).await.unwrap());
    assert!(
        !s.bind_oauth_request("req-404", "dev-a", later)
            .await
            .unwrap()
    );
    let bound = s.oauth_request("req-1").await.unwrap().unwrap();
    assert_eq!(
        (bound.device_id.as_deref(), bound.expires_at),
        (Some("dev-a"), later)
    );

    // Approval stores the code once.
    let alice = did("alice");
    let narrowed = r#"{"scope":"atproto"}"#;
    assert!(
        s.approve_oauth_request("req-1", &alice, "cod-1", narrowed, later)
            .await
            .unwrap()
    );
    assert!(
        !s.approve_oauth_request("req-1", &alice, "cod-2", narrowed, later)
            .await
            .unwrap()
    );
    assert!(
        !s.bind_oauth_request("req-1", "dev-a", later).await.unwrap(),
        "approved"
    );
    let approved = s.oauth_request("req-1").await.unwrap().unwrap();
    assert_eq!(approved.did.as_ref(), Some(&alice));
    assert_eq!(approved.code.as_deref(), Some("cod-1"));
    assert_eq!(approved.parameters, narrowed);

    // The code is exchanged once.
    assert_eq!(s.take_oauth_request_by_code("cod-2").await.unwrap(), None);
    assert_eq!(
        s.take_oauth_request_by_code("cod-1").await.unwrap(),
        Some(approved)
    );
    assert_eq!(s.take_oauth_request_by_code("cod-1").await.unwrap(), None);
    assert_eq!(s.oauth_request("req-1").await.unwrap(), None);

    // Denied and expired requests go.
    s.create_oauth_request(&oauth_request("req-2"))
        .await
        .unwrap();
    assert!(s.delete_oauth_request("req-2").await.unwrap());
    assert!(!s.delete_oauth_request("req-2").await.unwrap());
    let mut stale = oauth_request("req-3");
    stale.expires_at = chrono::Utc::now().trunc_subsecs(3) - chrono::TimeDelta::seconds(1);
    s.create_oauth_request(&stale).await.unwrap();
    s.create_oauth_request(&oauth_request("req-4"))
        .await
        .unwrap();
    assert_eq!(
        s.delete_expired_oauth_requests(chrono::Utc::now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.oauth_request("req-3").await.unwrap(), None);
    assert!(s.oauth_request("req-4").await.unwrap().is_some());
}

#[doc(hidden)]
pub async fn concurrent_oauth_code_exchanges_exactly_one_wins(h: StoreHarness) {
    let s = &h.store;
    s.create_oauth_request(&oauth_request("req-1"))
        .await
        .unwrap();
    let later = chrono::Utc::now() + chrono::TimeDelta::minutes(5);
    assert!(
        s.approve_oauth_request("req-1", &did("alice"), "cod-1", "{}", later)
            .await
            .unwrap()
    );
    let takes = (0..8).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { s.take_oauth_request_by_code("cod-1").await.unwrap() })
    });
    let won = futures::future::join_all(takes)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_some())
        .count();
    assert_eq!(won, 1);
}

#[doc(hidden)]
pub async fn oauth_refresh_tokens_rotate_once_and_remember_used_ones(h: StoreHarness) {
    let s = &h.store;
    let alice = did("alice");
    let session = oauth_session("s1", &alice);
    s.create_oauth_session(&session).await.unwrap();
    let mut clash = oauth_session("s2", &alice);
    clash.code = session.code.clone();
    assert!(matches!(
        s.create_oauth_session(&clash).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        s.oauth_session_by_token("tok-s1-1").await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        s.oauth_session_by_code("cod-s1").await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        s.oauth_session_by_refresh("ref-s1-1").await.unwrap(),
        Some((session.clone(), RefreshTokenState::Current))
    );

    let next = rotation("tok-s1-2", "ref-s1-2");
    let rotated = s
        .rotate_oauth_session("s1", "ref-s1-1", &next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            rotated.id.as_str(),
            rotated.token_id.as_str(),
            rotated.refresh_hash.as_str()
        ),
        ("s1", "tok-s1-2", "ref-s1-2")
    );
    assert_eq!(
        (rotated.scope.as_str(), rotated.updated_at),
        ("atproto", next.updated_at)
    );
    assert_eq!(rotated.created_at, session.created_at);
    // The old token rotates no more, and is known as used.
    assert_eq!(
        s.rotate_oauth_session("s1", "ref-s1-1", &rotation("tok-x", "ref-x"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.oauth_session_by_refresh("ref-s1-1").await.unwrap(),
        Some((rotated.clone(), RefreshTokenState::Used))
    );
    assert_eq!(s.oauth_session_by_token("tok-s1-1").await.unwrap(), None);
    assert_eq!(
        s.oauth_session_by_token("tok-s1-2").await.unwrap(),
        Some(rotated)
    );

    // Of concurrent rotations of one token, one wins.
    let tries = (0..6).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.rotate_oauth_session(
                "s1",
                "ref-s1-2",
                &rotation(&format!("tok-r{i}"), &format!("ref-r{i}")),
            )
            .await
            .unwrap()
        })
    });
    let won = futures::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| r.as_ref().unwrap().is_some())
        .count();
    assert_eq!(won, 1);

    // Ending the session forgets its tokens, used ones included.
    s.create_oauth_session(&oauth_session("s3", &alice))
        .await
        .unwrap();
    let listed: Vec<String> = s
        .list_oauth_sessions(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(listed, ["s1", "s3"]);
    assert!(s.delete_oauth_session("s1").await.unwrap());
    assert!(!s.delete_oauth_session("s1").await.unwrap());
    assert_eq!(s.oauth_session_by_refresh("ref-s1-1").await.unwrap(), None);
    assert_eq!(s.list_oauth_sessions(&alice).await.unwrap().len(), 1);
}

#[doc(hidden)]
pub async fn oauth_devices_remember_accounts_and_granted_scopes(h: StoreHarness) {
    let s = &h.store;
    let (alice, bob) = (did("alice"), did("bob"));
    let t0 = chrono::Utc::now().trunc_subsecs(3);
    let seen = |device: &str, who: &aurora_core::syntax::Did, minutes: i64| OAuthDeviceAccount {
        device_id: device.to_owned(),
        did: who.clone(),
        authenticated_at: t0,
        user_agent: Some("Firefox".to_owned()),
        last_seen_at: t0 + chrono::TimeDelta::minutes(minutes),
    };
    s.upsert_oauth_device_account(&seen("dev-1", &alice, 1))
        .await
        .unwrap();
    s.upsert_oauth_device_account(&seen("dev-1", &bob, 2))
        .await
        .unwrap();
    s.upsert_oauth_device_account(&seen("dev-2", &alice, 3))
        .await
        .unwrap();
    let on_device: Vec<_> = s
        .oauth_device_accounts("dev-1")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.did)
        .collect();
    assert_eq!(on_device, [bob.clone(), alice.clone()], "most recent first");
    // Seen again: updated in place.
    s.upsert_oauth_device_account(&seen("dev-1", &alice, 5))
        .await
        .unwrap();
    let devices = s.oauth_devices_of(&alice).await.unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0], seen("dev-1", &alice, 5));
    assert!(
        s.delete_oauth_device_account("dev-2", &alice)
            .await
            .unwrap()
    );
    assert!(
        !s.delete_oauth_device_account("dev-2", &alice)
            .await
            .unwrap()
    );
    assert_eq!(s.oauth_devices_of(&alice).await.unwrap().len(), 1);

    let client = "https://app.example/client-metadata.json";
    assert_eq!(
        s.oauth_authorized_scope(&alice, client).await.unwrap(),
        None
    );
    s.set_oauth_authorized_scope(&alice, client, "atproto")
        .await
        .unwrap();
    s.set_oauth_authorized_scope(&alice, client, "atproto transition:generic")
        .await
        .unwrap();
    assert_eq!(
        s.oauth_authorized_scope(&alice, client)
            .await
            .unwrap()
            .as_deref(),
        Some("atproto transition:generic")
    );
    assert_eq!(s.oauth_authorized_scope(&bob, client).await.unwrap(), None);
}

#[doc(hidden)]
pub async fn oauth_sessions_end_with_the_password_and_the_account(h: StoreHarness) {
    let s = &h.store;
    for name in ["alice", "bob"] {
        s.create_account(new_account(name, None)).await.unwrap();
    }
    let (alice, bob) = (did("alice"), did("bob"));
    let now = chrono::Utc::now().trunc_subsecs(3);
    for (id, who) in [("a1", &alice), ("a2", &alice), ("b1", &bob)] {
        s.create_oauth_session(&oauth_session(id, who))
            .await
            .unwrap();
        s.upsert_oauth_device_account(&OAuthDeviceAccount {
            device_id: format!("dev-{id}"),
            did: who.clone(),
            authenticated_at: now,
            user_agent: None,
            last_seen_at: now,
        })
        .await
        .unwrap();
    }
    s.set_oauth_authorized_scope(&bob, "https://app.example/c.json", "atproto")
        .await
        .unwrap();
    s.rotate_oauth_session("a1", "ref-a1-1", &rotation("tok-a1-2", "ref-a1-2"))
        .await
        .unwrap()
        .unwrap();

    // A takedown ends them through end_oauth_sessions.
    assert_eq!(s.end_oauth_sessions(&alice).await.unwrap(), 2);
    assert!(s.list_oauth_sessions(&alice).await.unwrap().is_empty());
    assert_eq!(s.oauth_session_by_refresh("ref-a1-1").await.unwrap(), None);
    assert!(s.oauth_devices_of(&alice).await.unwrap().is_empty());
    assert_eq!(s.list_oauth_sessions(&bob).await.unwrap().len(), 1);

    // A password change ends them in the same step.
    s.create_oauth_session(&oauth_session("a3", &alice))
        .await
        .unwrap();
    s.update_password(&alice, "$argon2id$new").await.unwrap();
    assert_eq!(s.oauth_session_by_token("tok-a3-1").await.unwrap(), None);
    assert_eq!(s.list_oauth_sessions(&bob).await.unwrap().len(), 1);

    // Deleting the account forgets all of it.
    s.delete_account(&bob).await.unwrap();
    assert!(s.list_oauth_sessions(&bob).await.unwrap().is_empty());
    assert!(s.oauth_devices_of(&bob).await.unwrap().is_empty());
    assert_eq!(
        s.oauth_authorized_scope(&bob, "https://app.example/c.json")
            .await
            .unwrap(),
        None
    );
}
