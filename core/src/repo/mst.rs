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

/// A pointer to a subtree: a node in memory, or a node still in storage
/// (loaded on first use from the tree's block source).
#[derive(Debug, Clone)]
enum Child {
    Loaded(NodeRef),
    Lazy(Arc<LazyNode>),
}

#[derive(Debug)]
struct LazyNode {
    cid: Cid,
    layer: u32,
    node: OnceLock<NodeRef>,
}

impl Child {
    fn cid(&self) -> Cid {
        match self {
            Self::Loaded(n) => n.cid(),
            Self::Lazy(l) => l.cid,
        }
    }

    fn layer(&self) -> u32 {
        match self {
            Self::Loaded(n) => n.layer,
            Self::Lazy(l) => l.layer,
        }
    }

    /// The node, reading it from `src` if it is not in memory yet.
    fn node(&self, src: &dyn BlockSource) -> Result<NodeRef, MstError> {
        match self {
            Self::Loaded(n) => Ok(n.clone()),
            Self::Lazy(lazy) => {
                if let Some(n) = lazy.node.get() {
                    return Ok(n.clone());
                }
                let node = read_node(&lazy.cid, Some(lazy.layer), src)?
                    .ok_or_else(|| invalid(&lazy.cid, "empty node inside the tree"))?;
                Ok(lazy.node.get_or_init(|| node).clone())
            }
        }
    }

    fn lazy(cid: Cid, layer: u32) -> Self {
        Self::Lazy(Arc::new(LazyNode {
            cid,
            layer,
            node: OnceLock::new(),
        }))
    }
}

#[derive(Debug)]
struct Node {
    layer: u32,
    left: Option<Child>,
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
    right: Option<Child>,
}

impl Node {
    fn make(layer: u32, left: Option<Child>, entries: Vec<Entry>) -> Option<Child> {
        if entries.is_empty() && left.is_none() {
            return None;
        }
        Some(Child::Loaded(Arc::new(Self {
            layer,
            left,
            entries,
            block: OnceLock::new(),
            stored: AtomicBool::new(false),
        })))
    }

    /// The subtree in the gap before entry `idx` (`left` for 0).
    fn gap(&self, idx: usize) -> Option<&Child> {
        if idx == 0 {
            self.left.as_ref()
        } else {
            self.entries[idx - 1].right.as_ref()
        }
    }

    /// The gap after the last entry (or `left` when there are none).
    fn last_gap(&self) -> Option<&Child> {
        self.gap(self.entries.len())
    }

    /// `entries` with the gap before entry `idx` set to `sub`; returns the
    /// node's new `left` and entries.
    fn with_gap(
        &self,
        idx: usize,
        sub: Option<Child>,
        mut entries: Vec<Entry>,
    ) -> (Option<Child>, Vec<Entry>) {
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
                self.left.as_ref().map(Child::cid),
                &self.entries,
            ));
            (cid_for(DAG_CBOR, &bytes), bytes)
        })
    }

    fn cid(&self) -> Cid {
        self.block().0
    }

    fn children(&self) -> impl Iterator<Item = &Child> {
        self.left
            .iter()
            .chain(self.entries.iter().filter_map(|e| e.right.as_ref()))
    }
}

fn encode_node(left: Option<Cid>, entries: &[Entry]) -> Vec<u8> {
    let mut prev: &str = "";
    let e = entries
        .iter()
        .map(|e| {
            let p = common_prefix_len(prev.as_bytes(), e.key.as_bytes());
            prev = &e.key;
            EntryData {
                k: KeySuffix(&e.key.as_bytes()[p..]),
                p,
                t: e.right.as_ref().map(Child::cid),
                v: e.value,
            }
        })
        .collect();
    // Encoding these fields cannot fail.
    data::encode(&NodeData { e, l: left }).unwrap_or_default()
}

/// A node as encoded. Written straight from these fields, without an
/// intermediate data-model map (which allocated a string per key and
/// showed as 4% of the server's CPU under write load). DAG-CBOR orders map
/// keys by length, then bytewise; struct fields are written in the order
/// declared, so they are declared in that order.
#[derive(serde::Serialize)]
struct NodeData<'a> {
    e: Vec<EntryData<'a>>,
    l: Option<Cid>,
}

#[derive(serde::Serialize)]
struct EntryData<'a> {
    k: KeySuffix<'a>,
    p: usize,
    t: Option<Cid>,
    v: Cid,
}

/// The part of an entry's key after the shared prefix, as a CBOR byte
/// string.
struct KeySuffix<'a>(&'a [u8]);

impl serde::Serialize for KeySuffix<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Builds the canonical subtree at `layer` for `items` (sorted, each with
/// height <= `layer`).
fn build(items: &[(Arc<str>, Cid, u32)], layer: u32) -> Option<Child> {
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
    Node::make(layer, left, entries)
}

/// Wraps `child` (at `from`) in entry-less nodes up to layer `to`.
fn lift(child: Option<Child>, from: u32, to: u32) -> Option<Child> {
    let mut child = child?;
    for layer in from + 1..=to {
        child = Node::make(layer, Some(child), Vec::new())?;
    }
    Some(child)
}

type Split = (Option<Child>, Option<Child>);

/// Splits a subtree around `key` (which it does not contain) into the parts
/// below and above it, both at the subtree's layer.
fn split(child: Option<&Child>, key: &str, src: &dyn BlockSource) -> Result<Split, MstError> {
    let Some(child) = child else {
        return Ok((None, None));
    };
    let node = child.node(src)?;
    let (idx, _) = node.position(key);
    let (below, above) = split(node.gap(idx), key, src)?;
    let mut left_entries = node.entries[..idx].to_vec();
    let left = if let Some(last) = left_entries.last_mut() {
        last.right = below;
        Node::make(node.layer, node.left.clone(), left_entries)
    } else {
        Node::make(node.layer, below, Vec::new())
    };
    let right = Node::make(node.layer, above, node.entries[idx..].to_vec());
    Ok((left, right))
}

/// Joins two adjacent subtrees of the same layer (all keys of `a` below
/// all keys of `b`).
fn merge(
    a: Option<&Child>,
    b: Option<&Child>,
    src: &dyn BlockSource,
) -> Result<Option<Child>, MstError> {
    let (a, b) = match (a, b) {
        (None, None) => return Ok(None),
        (Some(x), None) | (None, Some(x)) => return Ok(Some(x.clone())),
        (Some(a), Some(b)) => (a.node(src)?, b.node(src)?),
    };
    let middle = merge(a.last_gap(), b.left.as_ref(), src)?;
    let mut entries = a.entries.clone();
    let left = match entries.last_mut() {
        Some(last) => {
            last.right = middle;
            a.left.clone()
        }
        None => middle,
    };
    entries.extend(b.entries.iter().cloned());
    Ok(Node::make(a.layer, left, entries))
}

fn insert_at(
    node: &Node,
    key: &Arc<str>,
    value: Cid,
    height: u32,
    src: &dyn BlockSource,
) -> Result<Child, MstError> {
    let (idx, found) = node.position(key);
    let mut entries = node.entries.clone();
    let (left, entries) = if found {
        entries[idx].value = value;
        (node.left.clone(), entries)
    } else if height == node.layer {
        let (below, above) = split(node.gap(idx), key, src)?;
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
            Some(gap) => insert_at(&*gap.node(src)?, key, value, height, src)?,
            None => build(&[(key.clone(), value, height)], node.layer - 1)
                .unwrap_or_else(|| unreachable!("a one-key subtree is never empty")),
        };
        node.with_gap(idx, Some(sub), entries)
    };
    Ok(Node::make(node.layer, left, entries)
        .unwrap_or_else(|| unreachable!("a node with an entry is not empty")))
}

/// The outcome of deleting below a node.
enum Deleted {
    /// The key is not in the subtree.
    Absent,
    /// The subtree without the key (`None`: now empty).
    Now(Option<Child>),
}

fn delete_at(node: &Node, key: &str, src: &dyn BlockSource) -> Result<Deleted, MstError> {
    let (idx, found) = node.position(key);
    let mut entries = node.entries.clone();
    let sub = if found {
        let removed = entries.remove(idx);
        merge(node.gap(idx), removed.right.as_ref(), src)?
    } else {
        let Some(gap) = node.gap(idx) else {
            return Ok(Deleted::Absent);
        };
        match delete_at(&*gap.node(src)?, key, src)? {
            Deleted::Absent => return Ok(Deleted::Absent),
            Deleted::Now(sub) => sub,
        }
    };
    let (left, entries) = node.with_gap(idx, sub, entries);
    Ok(Deleted::Now(Node::make(node.layer, left, entries)))
}

/// No blocks: the source of trees built in memory.
struct NoBlocks;

impl BlockSource for NoBlocks {
    fn get_block(&self, _cid: &Cid) -> Option<Bytes> {
        None
    }
}

/// A shared block source for lazily loaded trees.
pub type SharedBlockSource = Arc<dyn BlockSource + Send + Sync>;

/// A Merkle Search Tree. Cheap to clone; clones share nodes.
///
/// A tree is either fully in memory (built, or [`load`](Self::load)ed) or
/// [`open`](Self::open)ed over a block source, in which case nodes are read
/// as operations reach them; an operation that needs a node the source
/// lacks fails with [`MstError::MissingBlock`]. That is how a partial tree
/// (say, the proof blocks of a commit) can be read and changed.
#[derive(Clone)]
pub struct Mst {
    root: Option<Child>,
    source: SharedBlockSource,
}

impl std::fmt::Debug for Mst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mst")
            .field("root", &self.root_cid())
            .finish_non_exhaustive()
    }
}

impl Default for Mst {
    fn default() -> Self {
        Self::new()
    }
}

/// CID and bytes of the empty tree's node, `{e: [], l: null}`.
pub fn empty_root() -> (Cid, Bytes) {
    let bytes = Bytes::from(encode_node(None, &[]));
    (cid_for(DAG_CBOR, &bytes), bytes)
}

/// What changed between two trees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MstDiff {
    /// Keys only in the new tree, with their values.
    pub created: Vec<(String, Cid)>,
    /// Keys in both with different values: (key, old value, new value).
    pub updated: Vec<(String, Cid, Cid)>,
    /// Keys only in the old tree, with their old values.
    pub deleted: Vec<(String, Cid)>,
    /// Node blocks of the new tree that the old tree does not have.
    pub new_blocks: Vec<(Cid, Bytes)>,
    /// CIDs of old-tree nodes the new tree no longer has.
    pub removed_nodes: Vec<Cid>,
}

impl Mst {
    /// The empty tree.
    pub fn new() -> Self {
        Self {
            root: None,
            source: Arc::new(NoBlocks),
        }
    }

    fn with_root(&self, root: Option<Child>) -> Self {
        Self {
            root,
            source: self.source.clone(),
        }
    }

    fn src(&self) -> &dyn BlockSource {
        &*self.source
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
        Ok(Self::new().with_root(build(&items, top)))
    }

    /// Opens the tree rooted at `root` over `source`, reading nodes only as
    /// they are needed. The root node is read (and checked) now.
    pub fn open(root: &Cid, source: SharedBlockSource) -> Result<Self, MstError> {
        let node = read_node(root, None, &*source)?;
        if let Some(n) = &node {
            n.stored.store(true, Ordering::Release);
        }
        Ok(Self {
            root: node.map(Child::Loaded),
            source,
        })
    }

    /// Loads the whole tree rooted at `root` from `blocks`, checking that
    /// every node follows the MST rules and keys ascend across the tree, so
    /// that the tree is canonical. Loaded nodes are marked stored.
    pub fn load(root: &Cid, blocks: &impl BlockSource) -> Result<Self, MstError> {
        let node = read_node(root, None, blocks)?;
        let mut last_key: Option<Arc<str>> = None;
        let root = match node {
            Some(n) => Some(Child::Loaded(load_subtree(&n, blocks, &mut last_key)?)),
            None => None,
        };
        Ok(Self::new().with_root(root))
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Result<Option<Cid>, MstError> {
        let Some(mut child) = self.root.clone() else {
            return Ok(None);
        };
        loop {
            let node = child.node(self.src())?;
            let (idx, found) = node.position(key);
            if found {
                return Ok(Some(node.entries[idx].value));
            }
            match node.gap(idx) {
                Some(next) => child = next.clone(),
                None => return Ok(None),
            }
        }
    }

    /// A tree with `key` set to `value` (inserted or updated).
    pub fn insert(&self, key: &str, value: Cid) -> Result<Self, MstError> {
        validate_key(key)?;
        let height = key_height(key.as_bytes());
        let key: Arc<str> = Arc::from(key);
        let root = match &self.root {
            None => build(&[(key, value, height)], height),
            Some(root) if height > root.layer() => {
                let (below, above) = split(Some(root), &key, self.src())?;
                let entry = Entry {
                    key,
                    value,
                    right: lift(above, root.layer(), height - 1),
                };
                Node::make(height, lift(below, root.layer(), height - 1), vec![entry])
            }
            Some(root) => Some(insert_at(
                &*root.node(self.src())?,
                &key,
                value,
                height,
                self.src(),
            )?),
        };
        Ok(self.with_root(root))
    }

    /// A tree without `key`, or `None` when the key is absent.
    pub fn delete(&self, key: &str) -> Result<Option<Self>, MstError> {
        let Some(root) = &self.root else {
            return Ok(None);
        };
        let Deleted::Now(mut root) = delete_at(&*root.node(self.src())?, key, self.src())? else {
            return Ok(None);
        };
        // The root holds the top layer's keys: drop entry-less levels.
        while let Some(child) = &root {
            let node = child.node(self.src())?;
            if !node.entries.is_empty() {
                break;
            }
            root.clone_from(&node.left);
        }
        Ok(Some(self.with_root(root)))
    }

    /// Entries with keys in the range, in key order.
    pub fn list(&self, from: Bound<&str>, to: Bound<&str>) -> Result<Vec<(String, Cid)>, MstError> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            walk(&*root.node(self.src())?, from, to, self.src(), &mut out)?;
        }
        Ok(out)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Result<Vec<(String, Cid)>, MstError> {
        self.list(Bound::Unbounded, Bound::Unbounded)
    }

    /// Number of entries (walks the tree).
    pub fn len(&self) -> Result<usize, MstError> {
        Ok(self.entries()?.len())
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// The layer of the root node (`None` for the empty tree).
    pub fn layer(&self) -> Option<u32> {
        self.root.as_ref().map(Child::layer)
    }

    /// The root CID (of the empty node for the empty tree).
    pub fn root_cid(&self) -> Cid {
        self.root
            .as_ref()
            .map_or_else(|| empty_root().0, Child::cid)
    }

    /// Every node block of the tree.
    pub fn blocks(&self) -> Result<Vec<(Cid, Bytes)>, MstError> {
        let Some(root) = &self.root else {
            return Ok(vec![empty_root()]);
        };
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(child) = stack.pop() {
            let node = child.node(self.src())?;
            out.push(node.block().clone());
            stack.extend(node.children().cloned());
        }
        Ok(out)
    }

    /// The node blocks not yet marked stored: after writes to a stored
    /// tree, exactly the new nodes on the changed paths. (For the empty
    /// tree, its one empty node.)
    pub fn unstored_blocks(&self) -> Vec<(Cid, Bytes)> {
        let Some(root) = &self.root else {
            return vec![empty_root()];
        };
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(child) = stack.pop() {
            // Nodes still in storage are stored by definition.
            let Child::Loaded(node) = child else { continue };
            if node.stored.load(Ordering::Acquire) {
                continue;
            }
            out.push(node.block().clone());
            stack.extend(node.children());
        }
        out
    }

    /// This tree with only its unstored nodes in memory (after writes to a
    /// stored tree: the changed paths) and every other subtree referenced
    /// by CID, all marked stored. Call it once the blocks are committed,
    /// before [`mark_stored`](Self::mark_stored).
    ///
    /// A writer keeps it for the repo's next write. Record keys are mostly
    /// TIDs, so new records go to the right edge of the tree, the path the
    /// last write changed: the next write then decodes none of the nodes
    /// it shares, and only a path per repo stays in memory, not the nodes
    /// every write read.
    #[must_use]
    pub fn changed_paths(&self) -> Self {
        fn keep(child: &Child) -> Child {
            match child {
                Child::Loaded(node) if !node.stored.load(Ordering::Acquire) => {
                    let block = OnceLock::new();
                    let _ = block.set(node.block().clone());
                    Child::Loaded(Arc::new(Node {
                        layer: node.layer,
                        left: node.left.as_ref().map(keep),
                        entries: node
                            .entries
                            .iter()
                            .map(|e| Entry {
                                key: e.key.clone(),
                                value: e.value,
                                right: e.right.as_ref().map(keep),
                            })
                            .collect(),
                        block,
                        stored: AtomicBool::new(true),
                    }))
                }
                other => Child::lazy(other.cid(), other.layer()),
            }
        }
        self.with_root(self.root.as_ref().map(keep))
    }

    /// How many nodes this tree holds in memory (read or made), without
    /// reading any.
    pub fn nodes_in_memory(&self) -> usize {
        fn count(child: &Child) -> usize {
            let node = match child {
                Child::Loaded(node) => node,
                Child::Lazy(lazy) => match lazy.node.get() {
                    Some(node) => node,
                    None => return 0,
                },
            };
            1 + node.children().map(count).sum::<usize>()
        }
        self.root.as_ref().map_or(0, count)
    }

    /// This tree, reading the nodes it does not hold from `source`.
    #[must_use]
    pub fn with_source(&self, source: SharedBlockSource) -> Self {
        Self {
            root: self.root.clone(),
            source,
        }
    }

    /// Marks every node as stored (call once the blocks are committed).
    pub fn mark_stored(&self) {
        fn mark(child: &Child) {
            let Child::Loaded(node) = child else { return };
            if node.stored.swap(true, Ordering::AcqRel) {
                return;
            }
            node.children().for_each(mark);
        }
        if let Some(root) = &self.root {
            mark(root);
        }
    }

    /// The node blocks a reader needs to check `key`'s presence or absence
    /// in this tree, and to undo a write of it: the path from the root to
    /// where the key is (or would be), plus, where the key is present, the
    /// edges of its two neighbouring subtrees (a delete merges them).
    pub fn covering_proof(&self, key: &str) -> Result<Vec<(Cid, Bytes)>, MstError> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            proof_into(root, key, self.src(), &mut out)?;
        } else {
            out.push(empty_root());
        }
        Ok(out)
    }

    /// What changed from `old` to `self`: records created, updated and
    /// deleted, and the node blocks added and removed. Subtrees with equal
    /// CIDs are skipped, so the work is proportional to the change.
    pub fn diff(&self, old: &Self) -> Result<MstDiff, MstError> {
        diff(old, self)
    }
}

fn proof_into(
    child: &Child,
    key: &str,
    src: &dyn BlockSource,
    out: &mut Vec<(Cid, Bytes)>,
) -> Result<(), MstError> {
    let node = child.node(src)?;
    out.push(node.block().clone());
    let (idx, found) = node.position(key);
    if let Some(gap) = node.gap(idx) {
        proof_into(gap, key, src, out)?;
    }
    if found && let Some(right) = &node.entries[idx].right {
        proof_into(right, key, src, out)?;
    }
    Ok(())
}

fn walk(
    node: &Node,
    from: Bound<&str>,
    to: Bound<&str>,
    src: &dyn BlockSource,
    out: &mut Vec<(String, Cid)>,
) -> Result<(), MstError> {
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
        let gap_in_range = (i == node.entries.len() || above_from(&node.entries[i].key))
            && (i == 0 || below_to(&node.entries[i - 1].key));
        if gap_in_range && let Some(sub) = node.gap(i) {
            walk(&*sub.node(src)?, from, to, src, out)?;
        }
        if let Some(e) = node.entries.get(i) {
            if !below_to(&e.key) {
                return Ok(());
            }
            if above_from(&e.key) {
                out.push((e.key.to_string(), e.value));
            }
        }
    }
    Ok(())
}

/// One step of an in-order walk: a record, or a subtree not yet opened.
enum Item {
    Leaf(Arc<str>, Cid),
    Tree(Child),
}

/// Pushes a node's items onto a walk stack (reversed, so the first pops first).
fn expand(node: &Node, stack: &mut Vec<Item>) {
    for e in node.entries.iter().rev() {
        if let Some(r) = &e.right {
            stack.push(Item::Tree(r.clone()));
        }
        stack.push(Item::Leaf(e.key.clone(), e.value));
    }
    if let Some(l) = &node.left {
        stack.push(Item::Tree(l.clone()));
    }
}

fn diff(old: &Mst, new: &Mst) -> Result<MstDiff, MstError> {
    let mut out = MstDiff::default();
    let mut a: Vec<Item> = old.root.iter().cloned().map(Item::Tree).collect();
    let mut b: Vec<Item> = new.root.iter().cloned().map(Item::Tree).collect();
    let mut old_nodes = std::collections::HashSet::new();
    let mut new_nodes: Vec<(Cid, Bytes)> = Vec::new();
    loop {
        match (a.last(), b.last()) {
            (None, None) => break,
            (Some(Item::Tree(x)), Some(Item::Tree(y))) if x.cid() == y.cid() => {
                a.pop();
                b.pop();
            }
            // Open the higher (or only) subtree first; equal layers open both.
            (Some(Item::Tree(x)), other) => {
                let open_new = matches!(other, Some(Item::Tree(y)) if y.layer() >= x.layer());
                let Some(Item::Tree(x)) = a.pop() else {
                    unreachable!()
                };
                let node = x.node(old.src())?;
                old_nodes.insert(node.cid());
                expand(&node, &mut a);
                if open_new {
                    let Some(Item::Tree(y)) = b.pop() else {
                        unreachable!()
                    };
                    let node = y.node(new.src())?;
                    new_nodes.push(node.block().clone());
                    expand(&node, &mut b);
                }
            }
            (_, Some(Item::Tree(_))) => {
                let Some(Item::Tree(y)) = b.pop() else {
                    unreachable!()
                };
                let node = y.node(new.src())?;
                new_nodes.push(node.block().clone());
                expand(&node, &mut b);
            }
            (Some(Item::Leaf(ka, va)), Some(Item::Leaf(kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    out.deleted.push((ka.to_string(), *va));
                    a.pop();
                }
                std::cmp::Ordering::Greater => {
                    out.created.push((kb.to_string(), *vb));
                    b.pop();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        out.updated.push((ka.to_string(), *va, *vb));
                    }
                    a.pop();
                    b.pop();
                }
            },
            (Some(Item::Leaf(ka, va)), None) => {
                out.deleted.push((ka.to_string(), *va));
                a.pop();
            }
            (None, Some(Item::Leaf(kb, vb))) => {
                out.created.push((kb.to_string(), *vb));
                b.pop();
            }
        }
    }
    let new_cids: std::collections::HashSet<Cid> = new_nodes.iter().map(|(c, _)| *c).collect();
    out.removed_nodes = old_nodes
        .iter()
        .filter(|c| !new_cids.contains(c))
        .copied()
        .collect();
    out.new_blocks = new_nodes
        .into_iter()
        .filter(|(c, _)| !old_nodes.contains(c))
        .collect();
    if new.root.is_none() {
        out.new_blocks.push(empty_root());
    }
    Ok(out)
}

fn invalid(cid: &Cid, reason: impl Into<String>) -> MstError {
    MstError::Invalid {
        cid: *cid,
        reason: reason.into(),
    }
}

/// What one stored MST node links to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLinks {
    /// The node's subtrees (left, then each entry's right), in key order.
    pub subtrees: Vec<Cid>,
    /// The node's entries: full key and value (the record's CID).
    pub entries: Vec<(String, Cid)>,
}

/// Decodes one MST node block (checking its hash and fields) into what it
/// links to, without loading the tree: for walking a stored tree block by
/// block, e.g. to stream a whole repo out of storage.
pub fn node_links(cid: &Cid, bytes: &[u8]) -> Result<NodeLinks, MstError> {
    if cid_for(DAG_CBOR, bytes) != *cid {
        return Err(invalid(cid, "block does not hash to its CID"));
    }
    let value = data::decode_strict(bytes).map_err(|source| MstError::Decode {
        cid: *cid,
        source: Box::new(source),
    })?;
    let Ipld::Map(map) = &value else {
        return Err(invalid(cid, "not a map"));
    };
    let mut links = NodeLinks::default();
    match map.get("l") {
        Some(Ipld::Link(c)) => links.subtrees.push(*c),
        Some(Ipld::Null) => {}
        _ => return Err(invalid(cid, "l must be a link or null")),
    }
    let Some(Ipld::List(raw_entries)) = map.get("e") else {
        return Err(invalid(cid, "e must be a list"));
    };
    for (key, value, right) in decode_entries(cid, raw_entries)? {
        links.entries.push((key, value));
        links.subtrees.extend(right);
    }
    Ok(links)
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

/// Reads one node expected at `layer` (`None` at the root), checking its
/// own rules; subtrees stay lazy. `Ok(None)` is the empty tree's root.
fn read_node(
    cid: &Cid,
    layer: Option<u32>,
    blocks: &dyn BlockSource,
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
    // The node's layer comes from its keys.
    let decoded = decode_entries(cid, raw_entries)?;
    let node_layer = match (decoded.first(), layer) {
        (Some((k, _, _)), _) => key_height(k.as_bytes()),
        (None, Some(l)) => l,
        (None, None) if left_cid.is_none() => return Ok(None),
        (None, None) => return Err(invalid(cid, "the root of a non-empty tree has no entries")),
    };
    if layer.is_some_and(|l| l != node_layer) {
        return Err(invalid(cid, "node is not one layer below its parent"));
    }
    if decoded.is_empty() && left_cid.is_none() {
        return Err(invalid(cid, "empty node inside the tree"));
    }
    let child = |c: &Cid| -> Result<Child, MstError> {
        let layer = node_layer
            .checked_sub(1)
            .ok_or_else(|| invalid(cid, "a layer-0 node has no subtrees"))?;
        Ok(Child::lazy(*c, layer))
    };
    let left = left_cid.as_ref().map(child).transpose()?;
    let mut entries = Vec::with_capacity(decoded.len());
    let mut prev: Option<&str> = None;
    for (key, value, right_cid) in &decoded {
        if key_height(key.as_bytes()) != node_layer {
            return Err(invalid(
                cid,
                format!("key {key} is not of layer {node_layer}"),
            ));
        }
        if prev.is_some_and(|p| p >= key.as_str()) {
            return Err(invalid(cid, "keys are not in ascending order"));
        }
        prev = Some(key);
        entries.push(Entry {
            key: Arc::from(key.as_str()),
            value: *value,
            right: right_cid.as_ref().map(child).transpose()?,
        });
    }
    let node = Arc::new(Node {
        layer: node_layer,
        left,
        entries,
        block: OnceLock::from((*cid, bytes)),
        stored: AtomicBool::new(true),
    });
    Ok(Some(node))
}

/// Reads every node below `node`, replacing lazy children with loaded
/// ones and checking that keys ascend across the whole tree.
fn load_subtree(
    node: &Node,
    blocks: &dyn BlockSource,
    last_key: &mut Option<Arc<str>>,
) -> Result<NodeRef, MstError> {
    let load_child = |c: &Child, last_key: &mut Option<Arc<str>>| -> Result<Child, MstError> {
        let loaded = read_node(&c.cid(), Some(c.layer()), blocks)?
            .ok_or_else(|| invalid(&c.cid(), "empty node inside the tree"))?;
        Ok(Child::Loaded(load_subtree(&loaded, blocks, last_key)?))
    };
    let left = node
        .left
        .as_ref()
        .map(|c| load_child(c, last_key))
        .transpose()?;
    let mut entries = Vec::with_capacity(node.entries.len());
    for e in &node.entries {
        if last_key.as_ref().is_some_and(|last| **last >= *e.key) {
            return Err(invalid(
                &node.cid(),
                "keys are not in ascending order across the tree",
            ));
        }
        *last_key = Some(e.key.clone());
        entries.push(Entry {
            key: e.key.clone(),
            value: e.value,
            right: e
                .right
                .as_ref()
                .map(|c| load_child(c, last_key))
                .transpose()?,
        });
    }
    Ok(Arc::new(Node {
        layer: node.layer,
        left,
        entries,
        block: OnceLock::from(node.block().clone()),
        stored: AtomicBool::new(true),
    }))
}

#[cfg(test)]
mod tests;
