#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::crypto::Curve;
use crate::event::decode_payload;
use crate::repo::car::read_car_bytes;
use crate::repo::commit::SignedCommit;

fn did() -> Did {
    Did::parse("did:plc:abcdefghijklmnopqrstuvwx").unwrap()
}

fn post(text: &str) -> Ipld {
    Ipld::Map(BTreeMap::from([
        (
            "$type".to_owned(),
            Ipld::String("app.bsky.feed.post".into()),
        ),
        ("text".to_owned(), Ipld::String(text.into())),
    ]))
}

fn change(action: WriteAction, rkey: &str, text: Option<&str>) -> RecordChange {
    RecordChange {
        action,
        collection: Nsid::parse("app.bsky.feed.post").unwrap(),
        rkey: RecordKey::parse(rkey).unwrap(),
        record: text.map(post),
    }
}

/// A repo kept in memory: all blocks ever stored, and its head.
struct Repo {
    key: SigningKey,
    blocks: BTreeMap<Cid, Bytes>,
    head: Option<RepoHead>,
    clock: TidClock,
}

impl Repo {
    fn new() -> Self {
        Self {
            key: SigningKey::generate(Curve::K256),
            blocks: BTreeMap::new(),
            head: None,
            clock: TidClock::new(),
        }
    }

    fn tree(&self) -> Mst {
        match &self.head {
            Some(h) => Mst::open(&h.data, Arc::new(self.blocks.clone())).unwrap(),
            None => Mst::new(),
        }
    }

    async fn commit(&mut self, changes: &[RecordChange]) -> Result<PreparedCommit, WriteError> {
        let prepared = prepare_commit(
            &did(),
            &self.key,
            self.head.as_ref(),
            &self.tree(),
            changes,
            &self.clock,
        )
        .await?;
        assert_eq!(
            prepared.write.expected_root,
            self.head.as_ref().map(|h| h.commit)
        );
        self.blocks.extend(prepared.write.blocks.iter().cloned());
        self.head = Some(RepoHead {
            commit: prepared.commit,
            rev: prepared.rev.clone(),
            data: prepared.tree.root_cid(),
        });
        Ok(prepared)
    }
}

/// What a relay does with a sync 1.1 `#commit`: check the signature, then
/// from the event's blocks alone invert every op and land on `prevData`.
fn check_event_inverts(prepared: &PreparedCommit, key: &SigningKey) {
    let body = decode_payload(&prepared.write.event_payload).unwrap();
    let Ipld::Bytes(car) = &body["blocks"] else {
        panic!("blocks")
    };
    let (root, blocks) = read_car_bytes(car).unwrap();
    assert_eq!(root, prepared.commit);
    let commit = SignedCommit::from_block(&blocks[&root]).unwrap();
    commit.verify(&key.public_key()).unwrap();
    let mut tree = Mst::open(&commit.data, Arc::new(blocks.clone())).unwrap();
    let Ipld::List(ops) = &body["ops"] else {
        panic!("ops")
    };
    for op in ops.iter().rev() {
        let Ipld::Map(op) = op else { panic!("op") };
        let Ipld::String(path) = &op["path"] else {
            panic!("path")
        };
        match &op["action"] {
            Ipld::String(a) if a == "create" => {
                tree = tree.delete(path).unwrap().unwrap();
            }
            Ipld::String(a) if a == "update" || a == "delete" => {
                let Ipld::Link(prev) = &op["prev"] else {
                    panic!("prev")
                };
                tree = tree.insert(path, *prev).unwrap();
            }
            other => panic!("action {other:?}"),
        }
        if let Ipld::Link(cid) = &op["cid"] {
            assert!(
                blocks.contains_key(cid),
                "the new record travels with the event"
            );
        }
    }
    match body.get("prevData") {
        Some(Ipld::Link(prev_data)) => assert_eq!(tree.root_cid(), *prev_data),
        _ => assert!(tree.is_empty(), "a first commit inverts to the empty tree"),
    }
}

#[tokio::test]
async fn writes_become_signed_commits_whose_events_invert() {
    let mut repo = Repo::new();
    let first = repo
        .commit(&[change(WriteAction::Create, "3jzfcijpj2z2a", Some("one"))])
        .await
        .unwrap();
    check_event_inverts(&first, &repo.key);
    // Enough records for a tree of several layers, in a few commits.
    for batch in 0..5 {
        let changes: Vec<_> = (0..40)
            .map(|i| {
                let rkey = format!("3k{batch:02}{i:09}");
                change(WriteAction::Create, &rkey, Some(&rkey))
            })
            .collect();
        let prepared = repo.commit(&changes).await.unwrap();
        check_event_inverts(&prepared, &repo.key);
    }
    let mixed = [
        change(WriteAction::Update, "3jzfcijpj2z2a", Some("one, edited")),
        change(WriteAction::Delete, "3k00000000007", None),
        change(WriteAction::Create, "3kzz000000000", Some("new")),
    ];
    let prepared = repo.commit(&mixed).await.unwrap();
    check_event_inverts(&prepared, &repo.key);
    let o = &prepared.outcomes;
    assert_eq!(
        (o[0].action, o[0].prev.is_some(), o[0].cid.is_some()),
        (WriteAction::Update, true, true)
    );
    assert_eq!(
        (o[1].action, o[1].prev.is_some(), o[1].cid),
        (WriteAction::Delete, true, None)
    );
    assert_eq!((o[2].action, o[2].prev), (WriteAction::Create, None));
    // The index changes mirror the writes.
    assert_eq!(prepared.write.records.len(), 3);
    assert!(matches!(
        prepared.write.records[1],
        RecordWrite::Delete { .. }
    ));
    // The tree is what a fresh build of the same entries gives.
    let entries = repo.tree().entries().unwrap();
    assert_eq!(entries.len(), 1 + 200 - 1 + 1);
    assert_eq!(
        Mst::from_entries(entries).unwrap().root_cid(),
        repo.tree().root_cid()
    );
}

#[tokio::test]
async fn conflicting_writes_are_refused_and_nothing_is_signed() {
    let mut repo = Repo::new();
    repo.commit(&[change(WriteAction::Create, "self", Some("x"))])
        .await
        .unwrap();
    let head = repo.head.clone();
    for (changes, expected) in [
        (
            vec![change(WriteAction::Create, "self", Some("y"))],
            "already exists",
        ),
        (
            vec![change(WriteAction::Update, "other", Some("y"))],
            "no record",
        ),
        (
            vec![change(WriteAction::Delete, "other", None)],
            "no record",
        ),
        (
            vec![change(WriteAction::Create, "other", None)],
            "no record given",
        ),
        (
            vec![
                change(WriteAction::Create, "other", Some("a")),
                change(WriteAction::Delete, "other", None),
            ],
            "more than one write",
        ),
    ] {
        let err = repo.commit(&changes).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(repo.head, head);
    }
}

#[tokio::test]
async fn a_missing_node_is_named_so_the_caller_can_fetch_it() {
    let mut repo = Repo::new();
    let changes: Vec<_> = (0..100)
        .map(|i| change(WriteAction::Create, &format!("3k{i:011}"), Some("x")))
        .collect();
    repo.commit(&changes).await.unwrap();
    let head = repo.head.clone().unwrap();
    // A source with only the root node: the write must ask for more.
    let mut partial = BTreeMap::new();
    partial.insert(head.data, repo.blocks[&head.data].clone());
    let mut fetched = 0;
    loop {
        let tree = Mst::open(&head.data, Arc::new(partial.clone())).unwrap();
        match prepare_commit(
            &did(),
            &repo.key,
            Some(&head),
            &tree,
            &[change(WriteAction::Update, "3k00000000050", Some("y"))],
            &repo.clock,
        )
        .await
        {
            Ok(prepared) => {
                assert!(fetched > 0);
                assert_eq!(prepared.outcomes[0].action, WriteAction::Update);
                break;
            }
            Err(e) => {
                let cid = e.missing_block().expect("only missing blocks");
                partial.insert(cid, repo.blocks[&cid].clone());
                fetched += 1;
                assert!(fetched < 20);
            }
        }
    }
}

#[tokio::test]
async fn blob_references_are_collected() {
    let mut repo = Repo::new();
    let blob = cid_for(crate::data::RAW, b"image bytes");
    let mut record = post("with image");
    if let Ipld::Map(m) = &mut record {
        m.insert(
            "embed".into(),
            Ipld::Map(BTreeMap::from([(
                "image".to_owned(),
                Ipld::Map(BTreeMap::from([
                    ("$type".to_owned(), Ipld::String("blob".into())),
                    ("ref".to_owned(), Ipld::Link(blob)),
                    ("mimeType".to_owned(), Ipld::String("image/png".into())),
                    ("size".to_owned(), Ipld::Integer(11)),
                ])),
            )])),
        );
    }
    let prepared = repo
        .commit(&[RecordChange {
            record: Some(record),
            ..change(WriteAction::Create, "3kaaaaaaaaaaa", None)
        }])
        .await
        .unwrap();
    assert_eq!(prepared.outcomes[0].blobs, [blob]);
    let body = decode_payload(&prepared.write.event_payload).unwrap();
    assert_eq!(body["blobs"], Ipld::List(vec![Ipld::Link(blob)]));
}

#[tokio::test]
async fn an_imported_repo_is_re_signed_and_replaces_the_index() {
    // The old host's repo: two posts, signed with its key.
    let mut old = Repo::new();
    old.commit(&[
        change(WriteAction::Create, "3kaaaaaaaaaa2", Some("one")),
        change(WriteAction::Create, "3kbbbbbbbbbb2", Some("two")),
    ])
    .await
    .unwrap();
    let head = old.head.clone().unwrap();
    let loaded = crate::repo::LoadedRepo::from_blocks(
        head.commit,
        old.blocks.clone(),
        Some(&old.key.public_key()),
    )
    .unwrap();

    // The new host had one record the import does not hold.
    let mut new = Repo::new();
    let stale = new
        .commit(&[change(WriteAction::Create, "3kzzzzzzzzzz2", Some("stale"))])
        .await
        .unwrap();
    let existing = vec![(
        Nsid::parse("app.bsky.feed.post").unwrap(),
        RecordKey::parse("3kzzzzzzzzzz2").unwrap(),
        stale.outcomes[0].cid.unwrap(),
    )];
    let imported = prepare_import(
        &did(),
        &new.key,
        new.head.as_ref(),
        &loaded,
        &existing,
        &new.clock,
    )
    .await
    .unwrap();

    // Same tree, new commit signed by the new host, built on its head.
    let commit_block = imported
        .write
        .blocks
        .iter()
        .find(|(c, _)| *c == imported.commit)
        .unwrap();
    let commit = SignedCommit::from_block(&commit_block.1).unwrap();
    commit.verify(&new.key.public_key()).unwrap();
    assert!(commit.verify(&old.key.public_key()).is_err());
    assert_eq!(commit.data, head.data);
    assert!(imported.rev > new.head.as_ref().unwrap().rev);
    assert_eq!(
        imported.write.expected_root,
        new.head.as_ref().map(|h| h.commit)
    );
    assert_eq!(imported.write.event_type, EventType::Sync);

    // The index: both imported posts put, the stale one deleted.
    let puts = imported
        .write
        .records
        .iter()
        .filter(|r| matches!(r, RecordWrite::Put { .. }))
        .count();
    let deletes: Vec<_> = imported
        .write
        .records
        .iter()
        .filter_map(|r| match r {
            RecordWrite::Delete { rkey, .. } => Some(rkey.as_str().to_owned()),
            RecordWrite::Put { .. } => None,
        })
        .collect();
    assert_eq!((puts, deletes), (2, vec!["3kzzzzzzzzzz2".to_owned()]));

    // The #sync event carries the new commit.
    let body = decode_payload(&imported.write.event_payload).unwrap();
    let Ipld::Bytes(car) = &body["blocks"] else {
        panic!("blocks")
    };
    let (root, blocks) = read_car_bytes(car).unwrap();
    assert_eq!(root, imported.commit);
    assert!(blocks.contains_key(&imported.commit));
}
