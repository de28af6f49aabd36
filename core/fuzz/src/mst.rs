//! `mst_load`: loading and walking a Merkle Search Tree from blocks.
//!
//! The input is read one of two ways:
//!
//! - **as a CAR** (anything that is not a DAG-CBOR list): its blocks, with
//!   the root as a commit (checked as a whole repository, signature
//!   included, with the fixtures' k256 key) or else as an MST root;
//! - **as an indexed tree**: a DAG-CBOR list of MST nodes in which a link
//!   (`l`, or an entry's `t`) may be an integer *index* into the list
//!   instead of a CID. The nodes are encoded from the last to the first,
//!   each index replaced by the CID of that node, and node 0 is the root.
//!   An index that does not point further down the list (content
//!   addressing allows no cycles) becomes the CID of a block that is not
//!   there. Byte mutations of such a list change the tree's structure
//!   (keys, prefixes, layers, order, shared subtrees) while every block
//!   still matches its CID, which a mutated CAR almost never does.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use aurora_core::cid::Cid;
use aurora_core::data::{self, DAG_CBOR, Ipld, cid_for};
use aurora_core::repo::mst::{empty_root, validate_key};
use aurora_core::repo::{LoadedRepo, Mst, SignedCommit, node_links, read_car_bytes};
use bytes::Bytes;

use crate::Outcome;
use crate::fixtures::fixtures;

/// Most nodes an indexed tree may have.
const MAX_NODES: usize = 512;
/// Most keys whose lookups and proofs are checked per tree.
const CHECKED_KEYS: usize = 16;

/// Loads the tree `data` describes (see the [module docs](self)) and
/// checks what the loader promises:
///
/// - it returns an error (never panics, never loops) for any blocks;
/// - a tree it accepts is canonical: building a tree from its entries
///   gives the same root CID;
/// - an accepted tree's entries are valid keys in ascending order; every
///   node block it yields is one of the given blocks; walking the stored
///   nodes one by one (`node_links`) finds the same entries; the lazily
///   opened tree finds every key; a covering proof of a key is enough to
///   find it again (and to show an absent key absent); inserting and then
///   deleting a new key gives the same root;
/// - a repository it accepts has its commit signed by the key given, and
///   every record it names present.
pub fn mst_load(data: &[u8]) -> Outcome {
    if let Ok(Ipld::List(nodes)) = data::decode::<Ipld>(data) {
        let (root, blocks) = indexed_blocks(&nodes);
        return check_tree(root, &blocks);
    }
    let Ok((root, blocks)) = read_car_bytes(data) else {
        return Outcome::Rejected;
    };
    let Some(root_block) = blocks.get(&root) else {
        return Outcome::Rejected;
    };
    if SignedCommit::from_block(root_block).is_ok() {
        let key = fixtures().k256.public_key();
        let with_key = LoadedRepo::from_blocks(root, blocks.clone(), Some(&key));
        let without_key = LoadedRepo::from_blocks(root, blocks, None);
        if let Ok(repo) = &with_key {
            repo.commit
                .verify(&key)
                .expect("a repository loaded with a key is signed by it");
            assert!(without_key.is_ok(), "a key check made a repository load");
        }
        match without_key {
            Ok(repo) => {
                check_loaded_repo(&repo);
                if with_key.is_ok() {
                    Outcome::Accepted
                } else {
                    Outcome::Rejected
                }
            }
            Err(_) => Outcome::Rejected,
        }
    } else {
        check_tree(root, &blocks)
    }
}

/// Checks a repository that `LoadedRepo` accepted.
pub(crate) fn check_loaded_repo(repo: &LoadedRepo) {
    assert_eq!(
        repo.mst.root_cid(),
        repo.commit.data,
        "the tree is not the commit's"
    );
    let commit_block = repo
        .blocks
        .get(&repo.commit_cid)
        .expect("the commit block is there");
    assert_eq!(
        repo.commit.to_bytes(),
        commit_block.as_ref(),
        "the commit does not re-encode to its block"
    );
    let entries = repo.mst.entries().expect("a loaded tree can be walked");
    for (key, cid) in entries.iter().take(CHECKED_KEYS) {
        assert_eq!(
            repo.record(key),
            repo.blocks.get(cid),
            "record {key} is not its block"
        );
        assert!(repo.record(key).is_some(), "record {key} is missing");
    }
    check_accepted_tree(&repo.mst, repo.commit.data, &repo.blocks);
}

/// Loads the tree at `root` from `blocks` and checks it if it loads.
fn check_tree(root: Cid, blocks: &BTreeMap<Cid, Bytes>) -> Outcome {
    if let Ok(mst) = Mst::load(&root, blocks) {
        check_accepted_tree(&mst, root, blocks);
        return Outcome::Accepted;
    }
    // The lazy reader must fail (or not) without panicking too; one lookup
    // walks one path, so it cannot blow up on a shared DAG.
    if let Ok(lazy) = Mst::open(&root, Arc::new(blocks.clone())) {
        let _ = lazy.get("app.bsky.feed.post/3jzfcijpj2z2a");
        let _ = lazy.layer();
    }
    Outcome::Rejected
}

/// The checks of a tree the loader accepted.
fn check_accepted_tree(mst: &Mst, root: Cid, blocks: &BTreeMap<Cid, Bytes>) {
    assert_eq!(mst.root_cid(), root, "the loaded tree has another root");
    let entries = mst.entries().expect("a loaded tree can be walked");
    for pair in entries.windows(2) {
        assert!(pair[0].0 < pair[1].0, "entries are not in ascending order");
    }
    for (key, _) in &entries {
        validate_key(key).expect("a loaded key is valid");
    }
    let rebuilt =
        Mst::from_entries(entries.iter().map(|(k, c)| (k, *c))).expect("loaded keys build a tree");
    assert_eq!(
        rebuilt.root_cid(),
        root,
        "the loader accepted a non-canonical tree"
    );

    // Every node block the tree has is one of those given.
    let node_blocks = mst.blocks().expect("a loaded tree has its blocks");
    for (cid, bytes) in &node_blocks {
        assert_eq!(
            cid_for(DAG_CBOR, bytes),
            *cid,
            "a node block is not its CID"
        );
        assert_eq!(blocks.get(cid), Some(bytes), "a node block was not given");
    }
    if mst.is_empty() {
        assert_eq!(
            root,
            empty_root().0,
            "an empty tree has the empty node as root"
        );
    }

    // Block by block, as the sync API streams a stored tree.
    let mut found = walk_node_links(root, blocks);
    found.sort();
    assert_eq!(found, entries, "node_links finds other entries");

    // Lazily, and through covering proofs.
    let lazy = Mst::open(&root, Arc::new(blocks.clone())).expect("a loaded tree opens");
    for (key, value) in entries.iter().take(CHECKED_KEYS) {
        assert_eq!(
            lazy.get(key).expect("a lookup in a loaded tree"),
            Some(*value),
            "the lazy tree misses {key}"
        );
        let proof: BTreeMap<Cid, Bytes> = mst
            .covering_proof(key)
            .expect("a proof of a present key")
            .into_iter()
            .collect();
        let partial = Mst::open(&root, Arc::new(proof)).expect("a proof holds the root");
        assert_eq!(
            partial.get(key).expect("the proof covers the key"),
            Some(*value),
            "the proof of {key} does not find it"
        );
    }
    let absent = "zzzz.fuzz.absent/zzzz";
    if entries.iter().all(|(k, _)| k != absent) {
        let proof: BTreeMap<Cid, Bytes> = mst
            .covering_proof(absent)
            .expect("a proof of an absent key")
            .into_iter()
            .collect();
        let partial = Mst::open(&root, Arc::new(proof)).expect("a proof holds the root");
        assert_eq!(
            partial
                .get(absent)
                .expect("the proof covers the absent key"),
            None,
            "the proof finds an absent key"
        );
        let value = cid_for(DAG_CBOR, b"fuzz");
        let grown = mst
            .insert(absent, value)
            .expect("insert into a loaded tree");
        let shrunk = grown
            .delete(absent)
            .expect("delete from a loaded tree")
            .expect("the key was just inserted");
        assert_eq!(
            shrunk.root_cid(),
            root,
            "insert then delete changed the root"
        );
        let diff = grown.diff(mst).expect("diff of two loaded trees");
        assert_eq!(
            diff.created,
            [(absent.to_owned(), value)],
            "the diff of one insert"
        );
    }
    let listed = mst
        .list(Bound::Excluded(""), Bound::Unbounded)
        .expect("listing a loaded tree");
    assert_eq!(listed, entries, "a full range lists everything");
}

/// The entries found by walking the stored nodes with `node_links`, as the
/// sync API does (each node once).
fn walk_node_links(root: Cid, blocks: &BTreeMap<Cid, Bytes>) -> Vec<(String, Cid)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let bytes = blocks.get(&cid).expect("a loaded tree's node is present");
        let links = node_links(&cid, bytes).expect("a loaded tree's node decodes");
        out.extend(links.entries);
        stack.extend(links.subtrees);
    }
    out
}

/// The blocks of an indexed tree (see the [module docs](self)) and its root.
fn indexed_blocks(nodes: &[Ipld]) -> (Cid, BTreeMap<Cid, Bytes>) {
    let nodes = &nodes[..nodes.len().min(MAX_NODES)];
    let missing = cid_for(DAG_CBOR, b"aurora-fuzz: a block that is not there");
    let mut cids = vec![missing; nodes.len()];
    let mut blocks = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate().rev() {
        let resolve = |v: &Ipld| match v {
            Ipld::Integer(j) => Ipld::Link(
                usize::try_from(*j)
                    .ok()
                    .filter(|&j| j > i && j < cids.len())
                    .map_or(missing, |j| cids[j]),
            ),
            other => other.clone(),
        };
        let node = match node {
            Ipld::Map(map) => Ipld::Map(
                map.iter()
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v) {
                            ("l", v) => resolve(v),
                            ("e", Ipld::List(entries)) => Ipld::List(
                                entries
                                    .iter()
                                    .map(|e| match e {
                                        Ipld::Map(e) => Ipld::Map(
                                            e.iter()
                                                .map(|(k, v)| {
                                                    let v = if k == "t" {
                                                        resolve(v)
                                                    } else {
                                                        v.clone()
                                                    };
                                                    (k.clone(), v)
                                                })
                                                .collect(),
                                        ),
                                        other => other.clone(),
                                    })
                                    .collect(),
                            ),
                            (_, v) => v.clone(),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        if let Ok(bytes) = data::encode(&node) {
            let cid = cid_for(DAG_CBOR, &bytes);
            cids[i] = cid;
            blocks.insert(cid, Bytes::from(bytes));
        }
    }
    let root = cids.first().copied().unwrap_or(missing);
    (root, blocks)
}
