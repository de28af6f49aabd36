//! Checks a relay would make of repos and their commits, with the core
//! engine alone: self-contained `#commit` events, linear commit chains,
//! signatures by the DID's key.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aurora_core::cid::Cid;
use aurora_core::crypto::PublicKey;
use aurora_core::data::Ipld;
use aurora_core::repo::{Mst, SignedCommit, read_car_bytes};
use aurora_core::syntax::Did;
use aurora_storage_testkit::plc::TestPlcDirectory;

pub(crate) fn seq_of(body: &BTreeMap<String, Ipld>) -> i64 {
    match body.get("seq") {
        Some(Ipld::Integer(seq)) => i64::try_from(*seq).unwrap(),
        other => panic!("seq {other:?}"),
    }
}

pub(crate) fn text<'a>(body: &'a BTreeMap<String, Ipld>, key: &str) -> &'a str {
    match body.get(key) {
        Some(Ipld::String(s)) => s,
        other => panic!("{key}: {other:?}"),
    }
}

pub(crate) fn link(value: &Ipld) -> aurora_core::cid::Cid {
    match value {
        Ipld::Link(cid) => *cid,
        other => panic!("not a link: {other:?}"),
    }
}

pub(crate) fn repo_key(plc: &TestPlcDirectory, did: &str) -> PublicKey {
    plc.log(&Did::parse(did).unwrap())
        .unwrap()
        .document()
        .unwrap()
        .atproto_signing_key()
        .unwrap()
}

/// Checks a `#commit` body as sync 1.1 requires, with the core engine
/// alone: every block in its CAR matches its CID (the CAR reader checks),
/// the commit is signed by the DID's key, the CAR holds the new records and
/// enough of the tree to undo every op and arrive at `prevData`. Returns
/// the commit.
pub(crate) fn assert_self_contained_commit(
    body: &BTreeMap<String, Ipld>,
    key: &PublicKey,
) -> SignedCommit {
    for field in [
        "seq", "rebase", "tooBig", "repo", "commit", "rev", "since", "blocks", "ops", "blobs",
        "time",
    ] {
        assert!(body.contains_key(field), "#commit without {field}");
    }
    assert_eq!(body["tooBig"], Ipld::Bool(false));
    assert_eq!(body["rebase"], Ipld::Bool(false));
    let Ipld::Bytes(car) = &body["blocks"] else {
        panic!("blocks")
    };
    let (root, blocks) = read_car_bytes(car).unwrap();
    let commit_cid = link(&body["commit"]);
    assert_eq!(root, commit_cid, "the CAR's root is the commit");
    let commit = SignedCommit::from_block(&blocks[&commit_cid]).unwrap();
    commit
        .verify(key)
        .expect("the commit is signed by the DID's repo key");
    assert_eq!(commit.rev.as_str(), text(body, "rev"));
    assert_eq!(commit.did.as_str(), text(body, "repo"));
    let Ipld::List(ops) = &body["ops"] else {
        panic!("ops")
    };
    let mut tree = Mst::open(&commit.data, Arc::new(blocks.clone())).unwrap();
    for op in ops {
        let Ipld::Map(op) = op else { panic!("op") };
        let path = text(op, "path");
        match text(op, "action") {
            "create" => {
                let cid = link(&op["cid"]);
                assert!(blocks.contains_key(&cid), "the new record is in the CAR");
                assert!(!op.contains_key("prev"));
                tree = tree.delete(path).unwrap().unwrap();
            }
            "update" => {
                assert!(blocks.contains_key(&link(&op["cid"])));
                tree = tree.insert(path, link(&op["prev"])).unwrap();
            }
            "delete" => {
                assert_eq!(op["cid"], Ipld::Null);
                tree = tree.insert(path, link(&op["prev"])).unwrap();
            }
            other => panic!("action {other}"),
        }
    }
    match body.get("prevData") {
        Some(prev_data) => assert_eq!(
            tree.root_cid(),
            link(prev_data),
            "the ops undone from the CAR's blocks give prevData"
        ),
        None => assert_eq!(
            body["since"],
            Ipld::Null,
            "only the first commit lacks prevData"
        ),
    }
    commit
}

/// Follows repos through the firehose as a relay does: verifies each
/// `#commit` on its own ([`assert_self_contained_commit`]) and against the
/// repo's previous commit (`since` is its `rev`, `prevData` its data root,
/// revs increase); a `#sync` (verified the same way) restarts the chain.
pub(crate) struct RepoFollower {
    plc: Arc<TestPlcDirectory>,
    /// Per DID: the last commit's rev and data root.
    repos: HashMap<String, (String, Cid)>,
    keys: HashMap<String, PublicKey>,
    pub(crate) commits: usize,
}

impl RepoFollower {
    pub(crate) fn new(plc: Arc<TestPlcDirectory>) -> Self {
        Self {
            plc,
            repos: HashMap::new(),
            keys: HashMap::new(),
            commits: 0,
        }
    }

    fn key(&mut self, did: &str) -> PublicKey {
        let plc = &self.plc;
        *self
            .keys
            .entry(did.to_owned())
            .or_insert_with(|| repo_key(plc, did))
    }

    pub(crate) fn follow(&mut self, kind: &str, body: &BTreeMap<String, Ipld>) {
        match kind {
            "#commit" => {
                let did = text(body, "repo").to_owned();
                let key = self.key(&did);
                let commit = assert_self_contained_commit(body, &key);
                if let Some((rev, data)) = self.repos.get(&did) {
                    assert_eq!(text(body, "since"), rev, "since is the previous rev");
                    assert_eq!(
                        link(&body["prevData"]),
                        *data,
                        "prevData is the previous root"
                    );
                    assert!(commit.rev.as_str() > rev.as_str(), "revs increase");
                }
                self.repos
                    .insert(did, (commit.rev.as_str().to_owned(), commit.data));
                self.commits += 1;
            }
            "#sync" => {
                let did = text(body, "did").to_owned();
                let key = self.key(&did);
                let Ipld::Bytes(car) = &body["blocks"] else {
                    panic!("#sync blocks")
                };
                let (root, blocks) = read_car_bytes(car).unwrap();
                let commit = SignedCommit::from_block(&blocks[&root]).unwrap();
                commit
                    .verify(&key)
                    .expect("#sync commit signed by the DID's key");
                assert_eq!(commit.rev.as_str(), text(body, "rev"));
                self.repos
                    .insert(did, (commit.rev.as_str().to_owned(), commit.data));
            }
            _ => {}
        }
    }
}
