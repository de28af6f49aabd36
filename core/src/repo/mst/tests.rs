use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;

use super::*;

fn interop(path: &str) -> Option<Value> {
    crate::interop::json(path)
}

fn leaf() -> Cid {
    Cid::try_from("bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454").unwrap()
}

#[test]
fn interop_key_heights() {
    let Some(Value::Array(cases)) = interop("mst/key_heights.json") else {
        return;
    };
    for c in &cases {
        let key = c["key"].as_str().unwrap();
        assert_eq!(
            u64::from(key_height(key.as_bytes())),
            c["height"].as_u64().unwrap(),
            "{key}"
        );
    }
    eprintln!("mst/key_heights.json: {} cases passed", cases.len());
}

#[test]
fn interop_common_prefix() {
    let Some(Value::Array(cases)) = interop("mst/common_prefix.json") else {
        return;
    };
    for c in &cases {
        let (l, r) = (c["left"].as_str().unwrap(), c["right"].as_str().unwrap());
        assert_eq!(
            common_prefix_len(l.as_bytes(), r.as_bytes()) as u64,
            c["len"].as_u64().unwrap()
        );
    }
    eprintln!("mst/common_prefix.json: {} cases passed", cases.len());
}

#[test]
fn interop_key_validity() {
    let Some(doc) = interop("atproto-repo-fixtures/mst-key-validity.json") else {
        return;
    };
    let (valid, invalid) = (
        doc["valid"].as_array().unwrap(),
        doc["invalid"].as_array().unwrap(),
    );
    for k in valid {
        let k = k.as_str().unwrap();
        assert!(Mst::new().insert(k, leaf()).is_ok(), "rejected valid {k}");
    }
    for k in invalid {
        let k = k.as_str().unwrap();
        assert!(
            Mst::new().insert(k, leaf()).is_err(),
            "accepted invalid {k}"
        );
    }
    eprintln!(
        "mst-key-validity.json: {} cases passed",
        valid.len() + invalid.len()
    );
}

#[test]
fn interop_known_roots() {
    let Some(doc) = interop("atproto-repo-fixtures/mst-known-roots.json") else {
        return;
    };
    let leaf = Cid::try_from(doc["leafValue"].as_str().unwrap()).unwrap();
    for h in doc["keyHeights"].as_array().unwrap() {
        let key = h["key"].as_str().unwrap();
        assert_eq!(
            u64::from(key_height(key.as_bytes())),
            h["height"].as_u64().unwrap(),
            "{key}"
        );
    }
    let mut steps = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut mst = Mst::new();
        for step in case["steps"].as_array().unwrap() {
            for k in step["add"].as_array().unwrap() {
                mst = mst.insert(k.as_str().unwrap(), leaf).unwrap();
            }
            for k in step["delete"].as_array().unwrap() {
                mst = mst.delete(k.as_str().unwrap()).unwrap().unwrap();
            }
            assert_eq!(
                mst.root_cid().to_string(),
                step["root"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                mst.len().unwrap() as u64,
                step["leafCount"].as_u64().unwrap(),
                "{name}"
            );
            if let Some(layer) = step["layer"].as_u64() {
                assert_eq!(u64::from(mst.layer().unwrap_or(0)), layer, "{name}");
            }
            // The same keys built in one go give the same tree.
            assert_eq!(
                Mst::from_entries(mst.entries().unwrap())
                    .unwrap()
                    .root_cid(),
                mst.root_cid(),
                "{name}"
            );
            // And the stored form loads back, canonical.
            let blocks: HashMap<Cid, Bytes> = mst.blocks().unwrap().into_iter().collect();
            let loaded = Mst::load(&mst.root_cid(), &blocks).unwrap();
            assert_eq!(loaded.entries().unwrap(), mst.entries().unwrap(), "{name}");
            steps += 1;
        }
    }
    eprintln!("mst-known-roots.json: {steps} steps passed");
}

#[test]
fn interop_example_keys_build_like_inserts() {
    let Some(text) = crate::interop::text("mst/example_keys.txt") else {
        return;
    };
    let keys: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let mut mst = Mst::new();
    for k in &keys {
        mst = mst.insert(k, leaf()).unwrap();
    }
    assert_eq!(mst.len().unwrap(), keys.len());
    assert_eq!(
        Mst::from_entries(keys.iter().map(|k| (*k, leaf())))
            .unwrap()
            .root_cid(),
        mst.root_cid()
    );
    for k in keys.iter().rev() {
        mst = mst.delete(k).unwrap().unwrap();
    }
    assert!(mst.is_empty());
    assert_eq!(mst.root_cid(), empty_root().0);
    eprintln!("mst/example_keys.txt: {} keys passed", keys.len());
}

#[test]
fn get_list_update_and_unstored_blocks() {
    let value = |n: u8| crate::data::cid_for(DAG_CBOR, &[n]);
    let mut mst = Mst::new();
    for i in 0..200u8 {
        mst = mst
            .insert(&format!("com.example.thing/k{i:03}"), value(i))
            .unwrap();
    }
    assert_eq!(mst.get("com.example.thing/k042").unwrap(), Some(value(42)));
    assert_eq!(mst.get("com.example.thing/k999").unwrap(), None);
    let updated = mst.insert("com.example.thing/k042", value(1)).unwrap();
    assert_eq!(
        updated.get("com.example.thing/k042").unwrap(),
        Some(value(1))
    );
    assert_eq!(
        mst.get("com.example.thing/k042").unwrap(),
        Some(value(42)),
        "the old tree is unchanged"
    );
    assert_eq!(updated.len().unwrap(), 200);

    let page = mst
        .list(
            Bound::Excluded("com.example.thing/k010"),
            Bound::Included("com.example.thing/k013"),
        )
        .unwrap();
    let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "com.example.thing/k011",
            "com.example.thing/k012",
            "com.example.thing/k013"
        ]
    );
    assert_eq!(
        mst.list(Bound::Included("com.example.thing/k195"), Bound::Unbounded)
            .unwrap()
            .len(),
        5
    );

    // After storing, one write leaves only the nodes on its path unstored.
    mst.mark_stored();
    assert!(mst.unstored_blocks().is_empty());
    let next = mst.insert("com.example.thing/new", value(7)).unwrap();
    let fresh = next.unstored_blocks();
    assert!(
        !fresh.is_empty() && fresh.len() <= 6,
        "{} nodes",
        fresh.len()
    );
    assert!(fresh.iter().any(|(c, _)| *c == next.root_cid()));
    assert!(mst.delete("com.example.thing/none").unwrap().is_none());
}

#[test]
fn load_rejects_bad_trees() {
    let mst = Mst::from_entries((0..50).map(|i| (format!("coll/k{i}"), leaf()))).unwrap();
    let blocks: HashMap<Cid, Bytes> = mst.blocks().unwrap().into_iter().collect();
    // A missing node.
    let mut partial = blocks.clone();
    let victim = *partial.keys().find(|c| **c != mst.root_cid()).unwrap();
    partial.remove(&victim);
    assert!(
        matches!(Mst::load(&mst.root_cid(), &partial), Err(MstError::MissingBlock(c)) if c == victim)
    );
    // A block that does not hash to its CID.
    let mut tampered = blocks.clone();
    tampered.insert(mst.root_cid(), Bytes::from_static(b"\xa0"));
    assert!(Mst::load(&mst.root_cid(), &tampered).is_err());
    // A well-formed node with keys out of order.
    let bad = encode_node(
        None,
        &[
            Entry {
                key: "coll/b".into(),
                value: leaf(),
                right: None,
            },
            Entry {
                key: "coll/a".into(),
                value: leaf(),
                right: None,
            },
        ],
    );
    let bad_cid = cid_for(DAG_CBOR, &bad);
    let map: HashMap<Cid, Bytes> = [(bad_cid, Bytes::from(bad))].into_iter().collect();
    assert!(Mst::load(&bad_cid, &map).is_err());
    // The empty tree loads.
    let (empty, bytes) = empty_root();
    let map: HashMap<Cid, Bytes> = [(empty, bytes)].into_iter().collect();
    assert!(Mst::load(&empty, &map).unwrap().is_empty());
}

/// The node encoder writes what the data model's canonical encoding of
/// `{e: [{k, p, t, v}], l}` is, byte for byte, for nodes with and without
/// subtrees and shared prefixes.
#[test]
fn nodes_encode_as_their_data_model() {
    let mst =
        Mst::from_entries((0..300).map(|i| (format!("app.test.coll/k{i:04}"), leaf()))).unwrap();
    let blocks = mst.blocks().unwrap();
    assert!(blocks.len() > 10, "a tree of several layers");
    for (cid, bytes) in &blocks {
        let value = data::decode_strict(bytes).unwrap();
        let Ipld::Map(node) = &value else {
            panic!("a node is a map")
        };
        let Some(Ipld::List(entries)) = node.get("e") else {
            panic!("e is a list")
        };
        let fields: Vec<&str> = node.keys().map(String::as_str).collect();
        assert_eq!(fields, ["e", "l"]);
        for entry in entries {
            let Ipld::Map(entry) = entry else {
                panic!("an entry is a map")
            };
            let fields: Vec<&str> = entry.keys().map(String::as_str).collect();
            assert_eq!(fields, ["k", "p", "t", "v"]);
            assert!(matches!(entry["k"], Ipld::Bytes(_)));
        }
        assert_eq!(&data::encode(&value).unwrap()[..], &bytes[..], "{cid}");
    }
}

fn arb_keys() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-c]{1,3}\\.[a-z]{1,4}/[a-z0-9]{1,6}", 0..80)
        .prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn same_keys_same_root_whatever_the_order(keys in arb_keys(), seed in any::<u64>()) {
        let built = Mst::from_entries(keys.iter().map(|k| (k.as_str(), leaf()))).unwrap();
        let mut shuffled = keys.clone();
        // A deterministic shuffle from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, usize::try_from(state % (i as u64 + 1)).unwrap());
        }
        let mut inserted = Mst::new();
        for k in &shuffled {
            inserted = inserted.insert(k, leaf()).unwrap();
        }
        prop_assert_eq!(inserted.root_cid(), built.root_cid());
        // Deleting half (in another order) equals building the rest.
        let (gone, kept): (Vec<_>, Vec<_>) = shuffled.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let mut pruned = inserted.clone();
        for (_, k) in gone.iter().rev() {
            pruned = pruned.delete(k).unwrap().unwrap();
        }
        let rest = Mst::from_entries(kept.iter().map(|(_, k)| (k.as_str(), leaf()))).unwrap();
        prop_assert_eq!(pruned.root_cid(), rest.root_cid());
        prop_assert_eq!(pruned.len().unwrap(), kept.len());
    }
}

#[test]
fn interop_commit_proofs_invert_to_the_previous_root() {
    let Some(Value::Array(cases)) = interop("firehose/commit-proof-fixtures.json") else {
        return;
    };
    for case in &cases {
        let name = case["comment"].as_str().unwrap();
        let leaf = Cid::try_from(case["leafValue"].as_str().unwrap()).unwrap();
        let strs = |f: &str| -> Vec<String> {
            case[f]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let (keys, adds, dels) = (strs("keys"), strs("adds"), strs("dels"));
        let before = Mst::from_entries(keys.iter().map(|k| (k.as_str(), leaf))).unwrap();
        assert_eq!(
            before.root_cid().to_string(),
            case["rootBeforeCommit"].as_str().unwrap(),
            "{name}"
        );
        let mut after = before.clone();
        for k in &adds {
            after = after.insert(k, leaf).unwrap();
        }
        for k in &dels {
            after = after.delete(k).unwrap().unwrap();
        }
        assert_eq!(
            after.root_cid().to_string(),
            case["rootAfterCommit"].as_str().unwrap(),
            "{name}"
        );

        // The covering proofs of the changed keys are the expected blocks.
        let mut proof: HashMap<Cid, Bytes> = HashMap::new();
        for k in adds.iter().chain(&dels) {
            proof.extend(after.covering_proof(k).unwrap());
        }
        let mut got: Vec<String> = proof.keys().map(ToString::to_string).collect();
        let mut want = strs("blocksInProof");
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}: proof blocks");

        // From the proof blocks alone, undoing the ops gives the old root.
        let partial = Mst::open(&after.root_cid(), Arc::new(proof)).unwrap();
        let mut inverted = partial;
        for k in &adds {
            inverted = inverted.delete(k).unwrap().unwrap();
        }
        for k in &dels {
            inverted = inverted.insert(k, leaf).unwrap();
        }
        assert_eq!(inverted.root_cid(), before.root_cid(), "{name}: inversion");
    }
    eprintln!(
        "firehose/commit-proof-fixtures.json: {} cases passed",
        cases.len()
    );
}

#[test]
fn partial_trees_fail_cleanly_where_blocks_are_missing() {
    let mst = Mst::from_entries((0..300).map(|i| (format!("coll/k{i:04}"), leaf()))).unwrap();
    let proof: HashMap<Cid, Bytes> = mst
        .covering_proof("coll/k0100")
        .unwrap()
        .into_iter()
        .collect();
    let partial = Mst::open(&mst.root_cid(), Arc::new(proof)).unwrap();
    assert_eq!(partial.get("coll/k0100").unwrap(), Some(leaf()));
    assert!(matches!(partial.entries(), Err(MstError::MissingBlock(_))));
    // A lazily opened full tree reads only what it needs and agrees with the original.
    let all: HashMap<Cid, Bytes> = mst.blocks().unwrap().into_iter().collect();
    let lazy = Mst::open(&mst.root_cid(), Arc::new(all)).unwrap();
    let changed = lazy.insert("coll/new", leaf()).unwrap();
    assert_eq!(
        changed.root_cid(),
        mst.insert("coll/new", leaf()).unwrap().root_cid()
    );
    assert!(changed.unstored_blocks().len() <= 8);
}

#[test]
fn diff_reports_records_and_blocks() {
    let value = |n: u8| crate::data::cid_for(DAG_CBOR, &[n]);
    let old = Mst::from_entries((0..500u16).map(|i| (format!("coll/k{i:04}"), value(1)))).unwrap();
    let new = old
        .insert("coll/k0007", value(2))
        .unwrap()
        .delete("coll/k0300")
        .unwrap()
        .unwrap()
        .insert("coll/zzz", value(3))
        .unwrap();
    let d = new.diff(&old).unwrap();
    assert_eq!(d.created, vec![("coll/zzz".to_owned(), value(3))]);
    assert_eq!(
        d.updated,
        vec![("coll/k0007".to_owned(), value(1), value(2))]
    );
    assert_eq!(d.deleted, vec![("coll/k0300".to_owned(), value(1))]);
    // Exactly the nodes the new tree has and the old one lacks.
    let old_nodes: std::collections::HashSet<Cid> =
        old.blocks().unwrap().into_iter().map(|(c, _)| c).collect();
    let mut expected: Vec<Cid> = new
        .blocks()
        .unwrap()
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| !old_nodes.contains(c))
        .collect();
    let mut got: Vec<Cid> = d.new_blocks.iter().map(|(c, _)| *c).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert!(d.new_blocks.len() < 20);
    // No change, no diff.
    assert_eq!(old.diff(&old).unwrap(), MstDiff::default());
    // From empty: everything created.
    assert_eq!(old.diff(&Mst::new()).unwrap().created.len(), 500);
}

proptest! {
    /// A node block of random bytes (or a mangled real node) never panics the loader.
    #[test]
    fn loading_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), flip in any::<usize>()) {
        let cid = crate::data::cid_for(DAG_CBOR, &bytes);
        let map: HashMap<Cid, Bytes> = [(cid, Bytes::from(bytes))].into_iter().collect();
        let _ = Mst::load(&cid, &map);
        let real = Mst::from_entries((0..20).map(|i| (format!("coll/k{i}"), leaf()))).unwrap();
        let (root, block) = real.blocks().unwrap().into_iter().next().unwrap();
        let mut mangled = block.to_vec();
        let at = flip % mangled.len();
        mangled[at] ^= 0x5a;
        let cid = crate::data::cid_for(DAG_CBOR, &mangled);
        let map: HashMap<Cid, Bytes> = [(cid, Bytes::from(mangled))].into_iter().collect();
        prop_assert!(Mst::load(&cid, &map).is_err() || cid != root);
    }
}

/// A block source counting its reads.
struct CountingSource {
    blocks: HashMap<Cid, Bytes>,
    reads: std::sync::atomic::AtomicUsize,
}

impl BlockSource for CountingSource {
    fn get_block(&self, cid: &Cid) -> Option<Bytes> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.blocks.get(cid).cloned()
    }
}

/// The writer's pattern: each write to the tree of the previous one (its
/// changed paths kept), blocks committed in between. Appends at the right
/// edge read no node, and every tree is the canonical one.
#[test]
fn a_tree_of_changed_paths_serves_the_next_writes() {
    let key = |i: u32| format!("coll/k{i:05}");
    let base = Mst::from_entries((0..300).map(|i| (key(i), leaf()))).unwrap();
    let mut stored: HashMap<Cid, Bytes> = base.blocks().unwrap().into_iter().collect();
    let source = |stored: &HashMap<Cid, Bytes>| {
        Arc::new(CountingSource {
            blocks: stored.clone(),
            reads: std::sync::atomic::AtomicUsize::new(0),
        })
    };
    let first = source(&stored);
    let mut tree = Mst::open(&base.root_cid(), first.clone()).unwrap();
    let mut reads_after_first = 0;
    for i in 300..400 {
        let src = source(&stored);
        let next = tree
            .with_source(src.clone())
            .insert(&key(i), leaf())
            .unwrap();
        stored.extend(next.unstored_blocks());
        if i > 300 {
            reads_after_first += src.reads.load(Ordering::Relaxed);
        }
        tree = next.changed_paths();
        assert!(tree.nodes_in_memory() <= 8, "{}", tree.nodes_in_memory());
        next.mark_stored();
        assert!(tree.unstored_blocks().is_empty());
        assert_eq!(tree.root_cid(), next.root_cid());
    }
    assert_eq!(reads_after_first, 0, "appends read stored nodes");
    // An update away from the right edge reads what it needs, and the
    // kept tree still reads the rest from storage.
    let src = source(&stored);
    let updated = tree
        .with_source(src.clone())
        .insert(&key(7), crate::data::cid_for(DAG_CBOR, b"x"))
        .unwrap();
    assert!(src.reads.load(Ordering::Relaxed) > 0);
    stored.extend(updated.unstored_blocks());
    let kept = updated.changed_paths().with_source(source(&stored));
    let expected = Mst::from_entries((0..400).map(|i| {
        (
            key(i),
            if i == 7 {
                crate::data::cid_for(DAG_CBOR, b"x")
            } else {
                leaf()
            },
        )
    }))
    .unwrap();
    assert_eq!(kept.root_cid(), expected.root_cid());
    assert_eq!(kept.entries().unwrap(), expected.entries().unwrap());
}
