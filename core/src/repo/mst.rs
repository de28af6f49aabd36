//! The Merkle Search Tree (MST) of the ATProto repository spec.
//!
//! Keys are record paths (`<collection>/<rkey>`); values are record CIDs.
//! Each key has a layer: the number of leading zero bits of its SHA-256,
//! counted in 2-bit chunks (fanout 4). A node holds the keys of one layer in
//! order; the gaps between them (and before the first) point to subtrees
//! one layer down. The shape depends only on the set of keys, so the same
//! keys give the same root CID whatever the order of writes.
//!
//! Node encoding (DAG-CBOR): `{e: [{p, k, v, t}], l}` where `l` is the
//! left-most subtree (or null), `p` the length of the prefix an entry's key
//! shares with the previous key in the node, `k` the rest of the key
//! (bytes), `v` the value CID and `t` the subtree to the entry's right.
//!
//! [`Mst`] is persistent: `insert` and `delete` return a new tree that
//! shares every unchanged node with the old one, so each write touches only
//! the path to the changed key.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cid::Cid;
use ipld_core::ipld::Ipld;
use sha2::{Digest, Sha256};

use crate::data::{self, DAG_CBOR, DataError, cid_for};

/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Errors of MST operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MstError {
    /// The key is not a valid `<collection>/<rkey>` path.
    #[error("invalid MST key {key:?}: {reason}")]
    InvalidKey {
        /// The key (truncated when very long).
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A node block needed to read the tree is missing.
    #[error("MST node {0} is missing")]
    MissingBlock(Cid),
    /// A node block is not valid DAG-CBOR.
    #[error("MST node {cid} is malformed: {source}")]
    Decode {
        /// The node.
        cid: Cid,
        /// The decoding error.
        source: Box<DataError>,
    },
    /// A node does not follow the MST rules (structure, order, layers).
    #[error("MST node {cid} is not a valid MST node: {reason}")]
    Invalid {
        /// The node.
        cid: Cid,
        /// What is wrong.
        reason: String,
    },
}

/// Read access to stored blocks, for loading a tree.
pub trait BlockSource {
    /// The block `cid`, if present.
    fn get_block(&self, cid: &Cid) -> Option<Bytes>;
}

impl<S: std::hash::BuildHasher> BlockSource for std::collections::HashMap<Cid, Bytes, S> {
    fn get_block(&self, cid: &Cid) -> Option<Bytes> {
        self.get(cid).cloned()
    }
}

impl BlockSource for BTreeMap<Cid, Bytes> {
    fn get_block(&self, cid: &Cid) -> Option<Bytes> {
        self.get(cid).cloned()
    }
}

/// The MST layer of `key`: leading zero bits of SHA-256(key), in 2-bit chunks.
pub fn key_height(key: &[u8]) -> u32 {
    let hash = Sha256::digest(key);
    let mut zeros = 0;
    for byte in hash {
        if byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros();
            break;
        }
    }
    zeros / 2
}

/// Length of the common prefix of `a` and `b`, in bytes.
pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Checks that `key` is a valid MST key: `<collection>/<rkey>`, at most
/// 1024 bytes of `[a-zA-Z0-9_~.:-]` around exactly one `/`, both parts
/// non-empty.
pub fn validate_key(key: &str) -> Result<(), MstError> {
    let err = |reason| {
        Err(MstError::InvalidKey {
            key: key.chars().take(80).collect(),
            reason,
        })
    };
    if key.len() > MAX_KEY_LEN {
        return err("longer than 1024 bytes");
    }
    let Some((collection, rkey)) = key.split_once('/') else {
        return err("must be <collection>/<rkey>");
    };
    if collection.is_empty() || rkey.is_empty() || rkey.contains('/') {
        return err("must be <collection>/<rkey> with both parts non-empty");
    }
    let allowed =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'.' | b':' | b'-');
    if !collection.bytes().all(allowed) || !rkey.bytes().all(allowed) {
        return err("has a character outside [a-zA-Z0-9_~.:-]");
    }
    Ok(())
}

type NodeRef = Arc<Node>;

#[derive(Debug)]
struct Node {
    layer: u32,
    left: Option<NodeRef>,
    entries: Vec<Entry>,
    /// The encoded node and its CID, computed once.
    block: OnceLock<(Cid, Bytes)>,
    /// Whether this node (and so its whole subtree) is known to be stored.
    stored: AtomicBool,
}

#[derive(Debug, Clone)]
struct Entry {
    key: Arc<str>,
    value: Cid,
    right: Option<NodeRef>,
}

impl Node {
    fn new(layer: u32, left: Option<NodeRef>, entries: Vec<Entry>) -> Option<NodeRef> {
        if entries.is_empty() && left.is_none() {
            return None;
        }
        Some(Arc::new(Self {
            layer,
            left,
            entries,
            block: OnceLock::new(),
            stored: AtomicBool::new(false),
        }))
    }

    /// The subtree in the gap before entry `idx` (`left` for 0).
    fn gap(&self, idx: usize) -> Option<&NodeRef> {
        if idx == 0 {
            self.left.as_ref()
        } else {
            self.entries[idx - 1].right.as_ref()
        }
    }

    /// A copy with the gap before entry `idx` replaced.
    fn with_gap(
        &self,
        idx: usize,
        sub: Option<NodeRef>,
        mut entries: Vec<Entry>,
    ) -> (Option<NodeRef>, Vec<Entry>) {
        if idx == 0 {
            (sub, entries)
        } else {
            entries[idx - 1].right = sub;
            (self.left.clone(), entries)
        }
    }

    fn position(&self, key: &str) -> (usize, bool) {
        let idx = self.entries.partition_point(|e| &*e.key < key);
        let found = self.entries.get(idx).is_some_and(|e| &*e.key == key);
        (idx, found)
    }

    fn block(&self) -> &(Cid, Bytes) {
        self.block.get_or_init(|| {
            let bytes = Bytes::from(encode_node(
                self.left.as_ref().map(|n| n.cid()),
                &self.entries,
            ));
            (cid_for(DAG_CBOR, &bytes), bytes)
        })
    }

    fn cid(&self) -> Cid {
        self.block().0
    }
}

fn encode_node(left: Option<Cid>, entries: &[Entry]) -> Vec<u8> {
    let mut prev: &str = "";
    let mut list = Vec::with_capacity(entries.len());
    for e in entries {
        let p = common_prefix_len(prev.as_bytes(), e.key.as_bytes());
        let map: BTreeMap<String, Ipld> = [
            ("k".to_owned(), Ipld::Bytes(e.key.as_bytes()[p..].to_vec())),
            ("p".to_owned(), Ipld::Integer(p as i128)),
            (
                "t".to_owned(),
                e.right.as_ref().map_or(Ipld::Null, |n| Ipld::Link(n.cid())),
            ),
            ("v".to_owned(), Ipld::Link(e.value)),
        ]
        .into_iter()
        .collect();
        list.push(Ipld::Map(map));
        prev = &e.key;
    }
    let node: BTreeMap<String, Ipld> = [
        ("e".to_owned(), Ipld::List(list)),
        ("l".to_owned(), left.map_or(Ipld::Null, Ipld::Link)),
    ]
    .into_iter()
    .collect();
    // Encoding an in-memory map of strings, bytes, ints and links cannot fail.
    data::encode(&Ipld::Map(node)).unwrap_or_default()
}

/// Builds the canonical subtree at `layer` for `items` (sorted, each with
/// height <= `layer`).
fn build(items: &[(Arc<str>, Cid, u32)], layer: u32) -> Option<NodeRef> {
    if items.is_empty() {
        return None;
    }
    let sub = |range: &[(Arc<str>, Cid, u32)]| {
        if layer == 0 {
            None
        } else {
            build(range, layer - 1)
        }
    };
    let mut left = None;
    let mut entries: Vec<Entry> = Vec::new();
    let mut start = 0;
    for (i, (key, value, height)) in items.iter().enumerate() {
        if *height == layer {
            let gap = sub(&items[start..i]);
            match entries.last_mut() {
                Some(last) => last.right = gap,
                None => left = gap,
            }
            entries.push(Entry {
                key: key.clone(),
                value: *value,
                right: None,
            });
            start = i + 1;
        }
    }
    let gap = sub(&items[start..]);
    match entries.last_mut() {
        Some(last) => last.right = gap,
        None => left = gap,
    }
    Node::new(layer, left, entries)
}

/// Wraps `node` (at `from`) in entry-less nodes up to layer `to`.
fn lift(node: Option<NodeRef>, from: u32, to: u32) -> Option<NodeRef> {
    let mut node = node?;
    for layer in from + 1..=to {
        node = Node::new(layer, Some(node), Vec::new())?;
    }
    Some(node)
}

/// Splits a subtree around `key` (which it does not contain) into the parts
/// below and above it, both at the subtree's layer.
fn split(node: Option<&NodeRef>, key: &str) -> (Option<NodeRef>, Option<NodeRef>) {
    let Some(node) = node else {
        return (None, None);
    };
    let (idx, _) = node.position(key);
    let (below, above) = split(node.gap(idx), key);
    let mut left_entries = node.entries[..idx].to_vec();
    let left = if let Some(last) = left_entries.last_mut() {
        last.right = below;
        Node::new(node.layer, node.left.clone(), left_entries)
    } else {
        Node::new(node.layer, below, Vec::new())
    };
    let right = Node::new(node.layer, above, node.entries[idx..].to_vec());
    (left, right)
}

/// Joins two adjacent subtrees of the same layer (all keys of `a` below
/// all keys of `b`).
fn merge(a: Option<&NodeRef>, b: Option<&NodeRef>) -> Option<NodeRef> {
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (Some(a), Some(b)) => {
            let a_last_gap = a
                .entries
                .last()
                .map_or(a.left.as_ref(), |e| e.right.as_ref());
            let middle = merge(a_last_gap, b.left.as_ref());
            let mut entries = a.entries.clone();
            let left = match entries.last_mut() {
                Some(last) => {
                    last.right = middle;
                    a.left.clone()
                }
                None => middle,
            };
            entries.extend(b.entries.iter().cloned());
            Node::new(a.layer, left, entries)
        }
    }
}

fn insert_at(node: &NodeRef, key: &Arc<str>, value: Cid, height: u32) -> NodeRef {
    let (idx, found) = node.position(key);
    let mut entries = node.entries.clone();
    if found {
        entries[idx].value = value;
        return Node::new(node.layer, node.left.clone(), entries).unwrap_or_else(|| node.clone());
    }
    let (left, mut entries) = if height == node.layer {
        let (below, above) = split(node.gap(idx), key);
        let (left, mut entries) = node.with_gap(idx, below, entries);
        entries.insert(
            idx,
            Entry {
                key: key.clone(),
                value,
                right: above,
            },
        );
        (left, entries)
    } else {
        let sub = match node.gap(idx) {
            Some(gap) => insert_at(gap, key, value, height),
            None => build(&[(key.clone(), value, height)], node.layer - 1)
                .unwrap_or_else(|| unreachable!("a one-key subtree is never empty")),
        };
        node.with_gap(idx, Some(sub), entries)
    };
    entries.shrink_to_fit();
    Node::new(node.layer, left, entries)
        .unwrap_or_else(|| unreachable!("a node with a new entry is not empty"))
}

/// The key to delete is not in the tree.
struct Absent;

/// Deletes `key` below `node`, returning the new (possibly empty) subtree.
fn delete_at(node: &NodeRef, key: &str) -> Result<Option<NodeRef>, Absent> {
    let (idx, found) = node.position(key);
    let mut entries = node.entries.clone();
    if found {
        let removed = entries.remove(idx);
        let joined = merge(node.gap(idx), removed.right.as_ref());
        let (left, entries) = node.with_gap(idx, joined, entries);
        return Ok(Node::new(node.layer, left, entries));
    }
    let sub = delete_at(node.gap(idx).ok_or(Absent)?, key)?;
    let (left, entries) = node.with_gap(idx, sub, entries);
    Ok(Node::new(node.layer, left, entries))
}

/// A Merkle Search Tree. Cheap to clone; clones share nodes.
#[derive(Debug, Clone, Default)]
pub struct Mst {
    root: Option<NodeRef>,
}

/// CID of the empty tree's node, `{e: [], l: null}`.
pub fn empty_root() -> (Cid, Bytes) {
    let bytes = Bytes::from(encode_node(None, &[]));
    (cid_for(DAG_CBOR, &bytes), bytes)
}

impl Mst {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree holding `entries` (in any order; a later duplicate key wins).
    pub fn from_entries<I, K>(entries: I) -> Result<Self, MstError>
    where
        I: IntoIterator<Item = (K, Cid)>,
        K: AsRef<str>,
    {
        let mut map = BTreeMap::new();
        for (key, value) in entries {
            let key = key.as_ref();
            validate_key(key)?;
            map.insert(Arc::<str>::from(key), value);
        }
        let items: Vec<(Arc<str>, Cid, u32)> = map
            .into_iter()
            .map(|(k, v)| {
                let h = key_height(k.as_bytes());
                (k, v, h)
            })
            .collect();
        let top = items.iter().map(|i| i.2).max().unwrap_or(0);
        Ok(Self {
            root: build(&items, top),
        })
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<Cid> {
        let mut node = self.root.as_ref()?;
        loop {
            let (idx, found) = node.position(key);
            if found {
                return Some(node.entries[idx].value);
            }
            node = node.gap(idx)?;
        }
    }

    /// A tree with `key` set to `value` (inserted or updated).
    pub fn insert(&self, key: &str, value: Cid) -> Result<Self, MstError> {
        validate_key(key)?;
        let height = key_height(key.as_bytes());
        let key: Arc<str> = Arc::from(key);
        let root = match &self.root {
            None => build(&[(key, value, height)], height),
            Some(root) if height > root.layer => {
                let (below, above) = split(Some(root), &key);
                let entry = Entry {
                    key,
                    value,
                    right: lift(above, root.layer, height - 1),
                };
                Node::new(height, lift(below, root.layer, height - 1), vec![entry])
            }
            Some(root) => Some(insert_at(root, &key, value, height)),
        };
        Ok(Self { root })
    }

    /// A tree without `key`, or `None` when the key is absent.
    pub fn delete(&self, key: &str) -> Option<Self> {
        let mut root = delete_at(self.root.as_ref()?, key).ok()?;
        // The root holds the top layer's keys: drop entry-less levels.
        while let Some(node) = &root {
            if !node.entries.is_empty() {
                break;
            }
            root = node.left.clone();
        }
        Some(Self { root })
    }

    /// Entries with keys in `range`, in key order.
    pub fn list(&self, from: Bound<&str>, to: Bound<&str>) -> Vec<(String, Cid)> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            walk(root, from, to, &mut out);
        }
        out
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Vec<(String, Cid)> {
        self.list(Bound::Unbounded, Bound::Unbounded)
    }

    /// Number of entries (walks the tree).
    pub fn len(&self) -> usize {
        fn count(node: &Node) -> usize {
            node.entries.len()
                + node.left.as_deref().map_or(0, count)
                + node
                    .entries
                    .iter()
                    .filter_map(|e| e.right.as_deref())
                    .map(count)
                    .sum::<usize>()
        }
        self.root.as_deref().map_or(0, count)
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// The layer of the root node (`None` for the empty tree).
    pub fn layer(&self) -> Option<u32> {
        self.root.as_ref().map(|n| n.layer)
    }

    /// The root CID (of the empty node for the empty tree).
    pub fn root_cid(&self) -> Cid {
        self.root
            .as_ref()
            .map_or_else(|| empty_root().0, |n| n.cid())
    }

    /// Every node block of the tree.
    pub fn blocks(&self) -> Vec<(Cid, Bytes)> {
        self.collect_blocks(false)
    }

    /// The node blocks not yet marked stored: after a write, exactly the
    /// new nodes on the changed paths.
    pub fn unstored_blocks(&self) -> Vec<(Cid, Bytes)> {
        self.collect_blocks(true)
    }

    /// Marks every node as stored (call once the blocks are committed).
    pub fn mark_stored(&self) {
        fn mark(node: &Node) {
            if node.stored.swap(true, Ordering::AcqRel) {
                return;
            }
            if let Some(l) = &node.left {
                mark(l);
            }
            for e in &node.entries {
                if let Some(r) = &e.right {
                    mark(r);
                }
            }
        }
        if let Some(root) = &self.root {
            mark(root);
        }
    }

    fn collect_blocks(&self, only_unstored: bool) -> Vec<(Cid, Bytes)> {
        let Some(root) = &self.root else {
            return if only_unstored {
                Vec::new()
            } else {
                vec![empty_root()]
            };
        };
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            if only_unstored && node.stored.load(Ordering::Acquire) {
                continue;
            }
            out.push(node.block().clone());
            stack.extend(node.left.iter());
            stack.extend(node.entries.iter().filter_map(|e| e.right.as_ref()));
        }
        out
    }

    /// Loads the tree rooted at `root` from `blocks`, checking that every
    /// node follows the MST rules (so that the tree is canonical). Loaded
    /// nodes are marked stored.
    pub fn load(root: &Cid, blocks: &impl BlockSource) -> Result<Self, MstError> {
        let mut last_key: Option<Arc<str>> = None;
        let node = load_node(root, None, blocks, &mut last_key)?;
        if let Some(n) = &node {
            if n.entries.is_empty() {
                return Err(MstError::Invalid {
                    cid: *root,
                    reason: "the root of a non-empty tree has no entries".into(),
                });
            }
            n.stored.store(true, Ordering::Release);
        }
        Ok(Self { root: node })
    }
}

fn walk(node: &Node, from: Bound<&str>, to: Bound<&str>, out: &mut Vec<(String, Cid)>) {
    let above_from = |k: &str| match from {
        Bound::Included(f) => k >= f,
        Bound::Excluded(f) => k > f,
        Bound::Unbounded => true,
    };
    let below_to = |k: &str| match to {
        Bound::Included(t) => k <= t,
        Bound::Excluded(t) => k < t,
        Bound::Unbounded => true,
    };
    // The gap before entry i holds keys between entry i-1 and entry i.
    for i in 0..=node.entries.len() {
        let gap_has_range = (i == node.entries.len() || above_from(&node.entries[i].key))
            && (i == 0 || below_to(&node.entries[i - 1].key));
        if gap_has_range && let Some(sub) = node.gap(i) {
            walk(sub, from, to, out);
        }
        if let Some(e) = node.entries.get(i) {
            if !below_to(&e.key) {
                return;
            }
            if above_from(&e.key) {
                out.push((e.key.to_string(), e.value));
            }
        }
    }
}

fn invalid(cid: &Cid, reason: impl Into<String>) -> MstError {
    MstError::Invalid {
        cid: *cid,
        reason: reason.into(),
    }
}

/// An entry as stored: full key (prefix expanded), value, right subtree.
type RawEntry = (String, Cid, Option<Cid>);

/// Expands a node's stored entries, checking their fields, prefixes and keys.
fn decode_entries(cid: &Cid, raw_entries: &[Ipld]) -> Result<Vec<RawEntry>, MstError> {
    let mut decoded = Vec::with_capacity(raw_entries.len());
    let mut prev = String::new();
    for raw in raw_entries {
        let Ipld::Map(e) = raw else {
            return Err(invalid(cid, "an entry must be a map"));
        };
        if e.len() != 4 {
            return Err(invalid(
                cid,
                "an entry has exactly the fields k, p, t and v",
            ));
        }
        let (Some(Ipld::Integer(p)), Some(Ipld::Bytes(suffix)), Some(Ipld::Link(v))) =
            (e.get("p"), e.get("k"), e.get("v"))
        else {
            return Err(invalid(cid, "entry fields have the wrong types"));
        };
        let right = match e.get("t") {
            Some(Ipld::Link(c)) => Some(*c),
            Some(Ipld::Null) => None,
            _ => return Err(invalid(cid, "t must be a link or null")),
        };
        let p = usize::try_from(*p).map_err(|_| invalid(cid, "negative prefix length"))?;
        if p > prev.len() {
            return Err(invalid(cid, "prefix longer than the previous key"));
        }
        let suffix = std::str::from_utf8(suffix).map_err(|_| invalid(cid, "key is not UTF-8"))?;
        let key = format!("{}{suffix}", &prev[..p]);
        if !decoded.is_empty() && common_prefix_len(prev.as_bytes(), key.as_bytes()) != p {
            return Err(invalid(
                cid,
                "prefix length is not the longest common prefix",
            ));
        }
        validate_key(&key).map_err(|e| invalid(cid, e.to_string()))?;
        prev.clone_from(&key);
        decoded.push((key, *v, right));
    }
    Ok(decoded)
}

/// Loads a node expected at `layer` (`None` at the root), checking keys
/// ascend across the whole tree (`last_key` carries the previous key).
fn load_node(
    cid: &Cid,
    layer: Option<u32>,
    blocks: &impl BlockSource,
    last_key: &mut Option<Arc<str>>,
) -> Result<Option<NodeRef>, MstError> {
    let bytes = blocks.get_block(cid).ok_or(MstError::MissingBlock(*cid))?;
    if cid_for(DAG_CBOR, &bytes) != *cid {
        return Err(invalid(cid, "block does not hash to its CID"));
    }
    let value = data::decode_strict(&bytes).map_err(|source| MstError::Decode {
        cid: *cid,
        source: Box::new(source),
    })?;
    let Ipld::Map(map) = &value else {
        return Err(invalid(cid, "not a map"));
    };
    if map.len() != 2 {
        return Err(invalid(cid, "a node has exactly the fields e and l"));
    }
    let left_cid = match map.get("l") {
        Some(Ipld::Link(c)) => Some(*c),
        Some(Ipld::Null) => None,
        _ => return Err(invalid(cid, "l must be a link or null")),
    };
    let Some(Ipld::List(raw_entries)) = map.get("e") else {
        return Err(invalid(cid, "e must be a list"));
    };
    // Decode keys first: the node's layer comes from its keys.
    let decoded = decode_entries(cid, raw_entries)?;
    let node_layer = match (decoded.first(), layer) {
        (Some((k, _, _)), _) => key_height(k.as_bytes()),
        (None, Some(l)) => l,
        (None, None) if left_cid.is_none() => return Ok(None), // the empty tree
        (None, None) => return Err(invalid(cid, "the root of a non-empty tree has no entries")),
    };
    if layer.is_some_and(|l| l != node_layer) {
        return Err(invalid(cid, "node is not one layer below its parent"));
    }
    if decoded.is_empty() && left_cid.is_none() {
        return Err(invalid(cid, "empty node inside the tree"));
    }
    let child_layer = |c: &Cid| {
        node_layer
            .checked_sub(1)
            .ok_or_else(|| invalid(c, "a layer-0 node has no subtrees"))
    };
    let left = match &left_cid {
        Some(c) => load_node(c, Some(child_layer(c)?), blocks, last_key)?,
        None => None,
    };
    let mut entries = Vec::with_capacity(decoded.len());
    for (key, value, right_cid) in decoded {
        if key_height(key.as_bytes()) != node_layer {
            return Err(invalid(
                cid,
                format!("key {key} is not of layer {node_layer}"),
            ));
        }
        let key: Arc<str> = Arc::from(key);
        if last_key.as_ref().is_some_and(|last| **last >= *key) {
            return Err(invalid(cid, "keys are not in ascending order"));
        }
        *last_key = Some(key.clone());
        let right = match &right_cid {
            Some(c) => load_node(c, Some(child_layer(c)?), blocks, last_key)?,
            None => None,
        };
        entries.push(Entry { key, value, right });
    }
    let node = Node::new(node_layer, left, entries).ok_or_else(|| invalid(cid, "empty node"))?;
    let _ = node.block.set((*cid, bytes));
    node.stored.store(true, Ordering::Release);
    Ok(Some(node))
}

#[cfg(test)]
mod tests;
