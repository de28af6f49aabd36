//! CAR v1 files (<https://ipld.io/specs/transport/car/carv1/>): how
//! repositories travel between servers (`com.atproto.sync.getRepo`,
//! firehose diffs, account import).
//!
//! A CAR file is a length-prefixed DAG-CBOR header `{roots, version: 1}`
//! followed by length-prefixed sections, each a block's CID followed by its
//! bytes. Lengths are unsigned varints.
//!
//! Writing goes through `iroh-car`'s writer, wrapped so that a header is
//! written even when there are no blocks and a block we could not read back
//! is refused. Reading is done here rather than with `iroh-car`'s reader,
//! because a CAR from another server is hostile input and that reader is
//! too trusting for it (it treats a file that ends inside a length prefix
//! as complete, lets the header be up to 4 MiB and accepts any header
//! shape). This reader:
//!
//! - bounds the header at [`MAX_HEADER_LEN`] and each block section at
//!   [`MAX_BLOCK_LEN`], and allocates only as bytes arrive, so a short file
//!   claiming a huge section costs nothing;
//! - requires the header to be exactly the canonical DAG-CBOR map
//!   `{roots, version}` with version 1 and at least one root;
//! - verifies every block against its CID ([`verify_block`]): CIDv1,
//!   codec dag-cbor or raw, multihash sha2-256 of the bytes, as ATProto
//!   requires;
//! - reports a file cut anywhere except between sections as
//!   [`CarError::Truncated`], and never panics on any input.
//!
//! A CAR can only be bounded per section: for the whole file, bound the
//! reader (e.g. with [`AsyncReadExt::take`]). The reader reads varints a
//! byte at a time, so give it a buffered reader (a byte slice already is).
//!
//! [`load_repo`] goes further and checks a whole repository export: the
//! root is a commit, signed by the expected key, whose MST is canonical and
//! complete, with every record present.

use std::collections::BTreeMap;
use std::io;

use bytes::Bytes;
use cid::{Cid, Version};
use futures::{FutureExt, Stream, StreamExt};
use iroh_car::CarHeader;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::commit::{CommitError, SignedCommit};
use super::mst::{Mst, MstError};
use crate::crypto::{CryptoError, PublicKey};
use crate::data::{self, DAG_CBOR, Ipld, RAW, SHA2_256};

/// Largest accepted block section (CID and block bytes together): 2 MiB.
///
/// ATProto records are at most about 1 MiB, MST nodes and commits far
/// smaller; a larger block in a repository is hostile. Blobs do not travel
/// in repository CARs.
pub const MAX_BLOCK_LEN: usize = 2 * 1024 * 1024;

/// Largest accepted CAR header: 8 KiB, room for more than a hundred roots
/// (a repository CAR has one, about 40 bytes).
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// Longest unsigned varint the multiformats spec allows (63 bits).
const MAX_VARINT_LEN: usize = 9;

/// Why a CAR file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    /// The underlying reader or writer failed.
    #[error("CAR I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The writer failed for a reason other than I/O.
    #[error("writing the CAR failed: {0}")]
    Write(String),
    /// The input ended in the middle of the header or of a section.
    #[error("CAR is truncated: it ends {0}")]
    Truncated(&'static str),
    /// A length prefix or a block's CID is malformed.
    #[error("malformed CAR: {0}")]
    Malformed(String),
    /// The header is not the DAG-CBOR map `{roots, version}` with at least
    /// one root.
    #[error("invalid CAR header: {0}")]
    InvalidHeader(String),
    /// A header version other than 1 (e.g. a CARv2 file).
    #[error("unsupported CAR version {0}: only CARv1 is supported")]
    UnsupportedVersion(i128),
    /// The header or a block section is longer than the limit.
    #[error("CAR {what} of {len} bytes is longer than the limit of {limit} bytes")]
    TooLarge {
        /// `"header"` or `"block"`.
        what: &'static str,
        /// The length found (or, when writing, asked for).
        len: u64,
        /// The limit ([`MAX_HEADER_LEN`] or [`MAX_BLOCK_LEN`]).
        limit: usize,
    },
    /// A block's CID is not what ATProto allows (CIDv1, dag-cbor or raw,
    /// sha2-256).
    #[error("block {cid} has an unsupported CID: {reason}")]
    UnsupportedCid {
        /// The block's CID.
        cid: Cid,
        /// What is not allowed.
        reason: &'static str,
    },
    /// A block's bytes do not hash to its CID.
    #[error("block {cid}: its bytes do not hash to its CID")]
    CidMismatch {
        /// The CID the block claims.
        cid: Cid,
    },
    /// The file has a number of roots other than the one expected.
    #[error("expected exactly one CAR root, found {0}")]
    RootCount(usize),
}

impl From<iroh_car::Error> for CarError {
    fn from(e: iroh_car::Error) -> Self {
        match e {
            iroh_car::Error::Io(e) => Self::Io(e),
            other => Self::Write(other.to_string()),
        }
    }
}

/// Checks that `bytes` are the block `cid` names: a CIDv1 with codec
/// dag-cbor or raw and a sha2-256 multihash that is the hash of `bytes`.
pub fn verify_block(cid: &Cid, bytes: &[u8]) -> Result<(), CarError> {
    let unsupported = |reason| Err(CarError::UnsupportedCid { cid: *cid, reason });
    if cid.version() != Version::V1 {
        return unsupported("CIDv0 is not allowed, only CIDv1");
    }
    if cid.codec() != DAG_CBOR && cid.codec() != RAW {
        return unsupported("codec is neither dag-cbor (0x71) nor raw (0x55)");
    }
    let hash = cid.hash();
    if hash.code() != SHA2_256 {
        return unsupported("multihash is not sha2-256 (0x12)");
    }
    if hash.digest().len() != 32 {
        return unsupported("sha2-256 digest is not 32 bytes");
    }
    if Sha256::digest(bytes).as_slice() != hash.digest() {
        return Err(CarError::CidMismatch { cid: *cid });
    }
    Ok(())
}

// ----------------------------------------------------------------- writing

/// Streams a CAR file with one root to an [`AsyncWrite`]: the header is
/// written by [`new`](Self::new), then each block as it is given.
///
/// Blocks are written as given: the writer does not check that a CID
/// matches its bytes, only that the section fits [`MAX_BLOCK_LEN`], so that
/// what is written can be read back.
#[derive(Debug)]
pub struct CarWriter<W> {
    inner: iroh_car::CarWriter<W>,
}

impl<W: AsyncWrite + Unpin + Send> CarWriter<W> {
    /// Writes the header, naming `root` as the only root.
    pub async fn new(writer: W, root: Cid) -> Result<Self, CarError> {
        let mut inner = iroh_car::CarWriter::new(CarHeader::new_v1(vec![root]), writer);
        inner.write_header().await?;
        Ok(Self { inner })
    }

    /// Writes one block section.
    pub async fn write_block(&mut self, cid: Cid, bytes: &[u8]) -> Result<(), CarError> {
        let len = cid.encoded_len() + bytes.len();
        if len > MAX_BLOCK_LEN {
            return Err(CarError::TooLarge {
                what: "block",
                len: len as u64,
                limit: MAX_BLOCK_LEN,
            });
        }
        self.inner.write(cid, bytes).await?;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub async fn finish(self) -> Result<W, CarError> {
        Ok(self.inner.finish().await?)
    }
}

/// Writes a CAR file with the single root `root` and `blocks`, in the order
/// given, to `writer`; returns the writer, flushed.
pub async fn write_car<W, I, B>(writer: W, root: Cid, blocks: I) -> Result<W, CarError>
where
    W: AsyncWrite + Unpin + Send,
    I: IntoIterator<Item = (Cid, B)>,
    B: AsRef<[u8]>,
{
    let mut car = CarWriter::new(writer, root).await?;
    for (cid, bytes) in blocks {
        car.write_block(cid, bytes.as_ref()).await?;
    }
    car.finish().await
}

/// Like [`write_car`], with the blocks coming from a [`Stream`] (e.g. read
/// from storage as the file is sent).
pub async fn write_car_stream<W, S, B>(writer: W, root: Cid, blocks: S) -> Result<W, CarError>
where
    W: AsyncWrite + Unpin + Send,
    S: Stream<Item = (Cid, B)>,
    B: AsRef<[u8]>,
{
    let mut car = CarWriter::new(writer, root).await?;
    let mut blocks = std::pin::pin!(blocks);
    while let Some((cid, bytes)) = blocks.next().await {
        car.write_block(cid, bytes.as_ref()).await?;
    }
    car.finish().await
}

/// The CAR file with the single root `root` and `blocks`, in memory: an
/// async function like the other writers, though it never waits.
pub async fn car_bytes<I, B>(root: Cid, blocks: I) -> Result<Vec<u8>, CarError>
where
    I: IntoIterator<Item = (Cid, B)>,
    B: AsRef<[u8]>,
{
    write_car(Vec::new(), root, blocks).await
}

/// A CAR file as a stream of byte chunks, for an HTTP body: the header
/// naming `roots` (none is allowed, as `getBlocks` sends), then one chunk
/// per block as `blocks` yields it. Nothing but the block at hand is held,
/// so a whole repo streams in flat memory. An error from `blocks` ends the
/// stream with that error (an HTTP server then aborts the response rather
/// than send a truncated file that looks complete).
pub fn car_byte_stream<S, E>(
    roots: Vec<Cid>,
    blocks: S,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send
where
    S: Stream<Item = Result<(Cid, Bytes), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Sink the CAR writer writes to; drained after each block.
    #[derive(Default)]
    struct Chunk(Vec<u8>);
    impl AsyncWrite for Chunk {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.0.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
    let header = {
        let mut w = iroh_car::CarWriter::new(CarHeader::new_v1(roots), Chunk::default());
        async move {
            w.write_header().await.map_err(io::Error::other)?;
            Ok::<_, io::Error>(Bytes::from(std::mem::take(
                &mut w.finish().await.map_err(io::Error::other)?.0,
            )))
        }
    };
    let body = blocks.map(|block| {
        let (cid, bytes) = block.map_err(io::Error::other)?;
        let len = cid.encoded_len() + bytes.len();
        if len > MAX_BLOCK_LEN {
            return Err(io::Error::other(CarError::TooLarge {
                what: "block",
                len: len as u64,
                limit: MAX_BLOCK_LEN,
            }));
        }
        // A section: varint length, then CID and data.
        let cid_bytes = cid.to_bytes();
        let mut out = Vec::with_capacity(10 + len);
        let mut n = len as u64;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(&cid_bytes);
        out.extend_from_slice(&bytes);
        Ok(Bytes::from(out))
    });
    futures::stream::once(header).chain(body)
}

// ----------------------------------------------------------------- reading

/// Reads a CAR file from an [`AsyncRead`], one verified block at a time.
///
/// Every block is checked with [`verify_block`] before it is returned. After
/// an error, or at the end of the file, the reader returns `Ok(None)`.
#[derive(Debug)]
pub struct CarReader<R> {
    reader: R,
    roots: Vec<Cid>,
    done: bool,
}

impl<R: AsyncRead + Unpin + Send> CarReader<R> {
    /// Reads and checks the header.
    pub async fn new(mut reader: R) -> Result<Self, CarError> {
        let header = read_section(&mut reader, Section::Header)
            .await?
            .ok_or(CarError::Truncated("before the header"))?;
        let roots = decode_header(&header)?;
        Ok(Self {
            reader,
            roots,
            done: false,
        })
    }

    /// The roots named in the header (at least one).
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block, verified against its CID; `None` at the end.
    pub async fn next_block(&mut self) -> Result<Option<(Cid, Bytes)>, CarError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read_block().await;
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    /// The remaining blocks as a stream, which ends after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<(Cid, Bytes), CarError>> + Send {
        futures::stream::try_unfold(self, |mut this| async move {
            Ok(this.next_block().await?.map(|block| (block, this)))
        })
    }

    async fn read_block(&mut self) -> Result<Option<(Cid, Bytes)>, CarError> {
        let Some(section) = read_section(&mut self.reader, Section::Block).await? else {
            return Ok(None);
        };
        let mut cursor = io::Cursor::new(section.as_slice());
        let cid = Cid::read_bytes(&mut cursor)
            .map_err(|e| CarError::Malformed(format!("block section has no valid CID: {e}")))?;
        // The cursor is within `section`, whose length is a usize.
        let offset = usize::try_from(cursor.position()).unwrap_or(section.len());
        verify_block(&cid, &section[offset..])?;
        Ok(Some((cid, Bytes::from(section).slice(offset..))))
    }
}

/// Reads the header of a CAR file: its roots, and its blocks as a stream
/// (each verified against its CID; the stream ends after the first error).
pub async fn read_car<R>(
    reader: R,
) -> Result<
    (
        Vec<Cid>,
        impl Stream<Item = Result<(Cid, Bytes), CarError>> + Send,
    ),
    CarError,
>
where
    R: AsyncRead + Unpin + Send,
{
    let car = CarReader::new(reader).await?;
    Ok((car.roots().to_vec(), car.into_stream()))
}

/// Reads a whole CAR file with exactly one root: the root and every block
/// (verified against its CID). The root block itself need not be present.
pub async fn read_car_blocks<R>(reader: R) -> Result<(Cid, BTreeMap<Cid, Bytes>), CarError>
where
    R: AsyncRead + Unpin + Send,
{
    let mut car = CarReader::new(reader).await?;
    let root = match car.roots() {
        [root] => *root,
        roots => return Err(CarError::RootCount(roots.len())),
    };
    let mut blocks = BTreeMap::new();
    while let Some((cid, bytes)) = car.next_block().await? {
        blocks.insert(cid, bytes);
    }
    Ok((root, blocks))
}

/// [`read_car_blocks`] over a CAR file in memory; synchronous, since
/// reading a slice never waits.
pub fn read_car_bytes(car: &[u8]) -> Result<(Cid, BTreeMap<Cid, Bytes>), CarError> {
    // Reading a slice never waits, so the future completes on first poll.
    read_car_blocks(car)
        .now_or_never()
        .unwrap_or_else(|| Err(io::Error::other("in-memory CAR read did not complete").into()))
}

/// Reads an unsigned varint, `None` on a clean end of input before it.
async fn read_varint<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<u64>, CarError> {
    let mut value = 0u64;
    for i in 0..MAX_VARINT_LEN {
        let byte = match reader.read_u8().await {
            Ok(byte) => byte,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(CarError::Truncated("inside a length prefix"))
                };
            }
            Err(e) => return Err(e.into()),
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(CarError::Malformed(
                    "length prefix is not minimally encoded".into(),
                ));
            }
            return Ok(Some(value));
        }
    }
    Err(CarError::Malformed(
        "length prefix is longer than 9 bytes".into(),
    ))
}

/// The two kinds of length-prefixed section in a CAR file.
#[derive(Debug, Clone, Copy)]
enum Section {
    Header,
    Block,
}

impl Section {
    const fn name(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Block => "block",
        }
    }

    const fn limit(self) -> usize {
        match self {
            Self::Header => MAX_HEADER_LEN,
            Self::Block => MAX_BLOCK_LEN,
        }
    }

    const fn truncated(self) -> CarError {
        CarError::Truncated(match self {
            Self::Header => "inside the header",
            Self::Block => "inside a block section",
        })
    }
}

/// Reads one length-prefixed section, within its kind's limit; `None` on a
/// clean end of input before it.
async fn read_section<R: AsyncRead + Unpin>(
    reader: &mut R,
    kind: Section,
) -> Result<Option<Vec<u8>>, CarError> {
    let Some(len) = read_varint(reader).await? else {
        return Ok(None);
    };
    let limit = kind.limit();
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= limit)
        .ok_or(CarError::TooLarge {
            what: kind.name(),
            len,
            limit,
        })?;
    // Grow the buffer as bytes arrive rather than trusting the prefix.
    let mut section = Vec::with_capacity(len.min(64 * 1024));
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut section)
        .await?;
    if section.len() != len {
        return Err(kind.truncated());
    }
    Ok(Some(section))
}

/// The roots of a CAR header, which must be exactly the canonical DAG-CBOR
/// map `{roots: [CID, ...], version: 1}` with at least one root.
fn decode_header(bytes: &[u8]) -> Result<Vec<Cid>, CarError> {
    let invalid = |reason: &str| Err(CarError::InvalidHeader(reason.to_owned()));
    let value = data::decode_strict(bytes).map_err(|e| CarError::InvalidHeader(e.to_string()))?;
    let Ipld::Map(map) = value else {
        return invalid("not a map");
    };
    match map.get("version") {
        Some(Ipld::Integer(1)) => {}
        Some(Ipld::Integer(v)) => return Err(CarError::UnsupportedVersion(*v)),
        Some(_) => return invalid("version is not an integer"),
        None => return invalid("no version"),
    }
    if let Some(key) = map.keys().find(|k| *k != "roots" && *k != "version") {
        let key: String = key.chars().take(64).collect();
        return invalid(&format!("unexpected field {key:?}"));
    }
    let Some(Ipld::List(roots)) = map.get("roots") else {
        return invalid("roots is missing or not a list");
    };
    let roots = roots
        .iter()
        .map(|r| match r {
            Ipld::Link(cid) => Ok(*cid),
            _ => Err(CarError::InvalidHeader("a root is not a CID".into())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if roots.is_empty() {
        return invalid("no roots");
    }
    Ok(roots)
}

// ------------------------------------------------------- whole repositories

/// Why a repository CAR was rejected by [`load_repo`]: which check failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoLoadError {
    /// The CAR file itself is unreadable or has a bad block.
    #[error(transparent)]
    Car(#[from] CarError),
    /// The root block (the commit) is not in the file.
    #[error("the commit block {0} (the CAR root) is missing")]
    MissingCommit(Cid),
    /// The root block is not a valid version 3 commit.
    #[error("the CAR root is not a valid commit: {0}")]
    Commit(#[source] CommitError),
    /// The commit is not signed by the expected key.
    #[error("the commit signature does not verify with the expected key: {0}")]
    Signature(#[source] CryptoError),
    /// The MST is incomplete or not canonical.
    #[error("the repository's MST is invalid: {0}")]
    Mst(#[source] MstError),
    /// A record the MST points to is not in the file.
    #[error("record {key} ({cid}) is missing")]
    MissingRecord {
        /// The record's path, `<collection>/<rkey>`.
        key: String,
        /// The record's CID.
        cid: Cid,
    },
}

/// A complete, checked repository: its commit, its MST and every block.
#[derive(Debug, Clone)]
pub struct LoadedRepo {
    /// The commit (signature checked when a key was given).
    pub commit: SignedCommit,
    /// The commit's CID, the CAR's root.
    pub commit_cid: Cid,
    /// The MST rooted at `commit.data`, canonical and complete.
    pub mst: Mst,
    /// Every block of the file, including any the repository does not use.
    pub blocks: BTreeMap<Cid, Bytes>,
}

impl LoadedRepo {
    /// Checks a repository given as its commit CID and blocks: the commit
    /// block is present and a valid commit, signed by `key` when one is
    /// given; its MST loads (canonical, every node present); and every
    /// record the MST names is present.
    ///
    /// The blocks are trusted to match their CIDs (as [`read_car_blocks`]
    /// ensures).
    pub fn from_blocks(
        commit_cid: Cid,
        blocks: BTreeMap<Cid, Bytes>,
        key: Option<&PublicKey>,
    ) -> Result<Self, RepoLoadError> {
        let commit_block = blocks
            .get(&commit_cid)
            .ok_or(RepoLoadError::MissingCommit(commit_cid))?;
        let commit = SignedCommit::from_block(commit_block).map_err(RepoLoadError::Commit)?;
        if let Some(key) = key {
            commit.verify(key).map_err(|e| match e {
                CommitError::Signature(e) => RepoLoadError::Signature(e),
                other => RepoLoadError::Commit(other),
            })?;
        }
        let mst = Mst::load(&commit.data, &blocks).map_err(RepoLoadError::Mst)?;
        if let Some((key, cid)) = mst
            .entries()
            .map_err(RepoLoadError::Mst)?
            .into_iter()
            .find(|(_, cid)| !blocks.contains_key(cid))
        {
            return Err(RepoLoadError::MissingRecord { key, cid });
        }
        Ok(Self {
            commit,
            commit_cid,
            mst,
            blocks,
        })
    }

    /// The bytes of the record at `key` (`<collection>/<rkey>`).
    pub fn record(&self, key: &str) -> Option<&Bytes> {
        // The tree is fully loaded, so reading it cannot fail.
        self.blocks.get(&self.mst.get(key).ok()??)
    }
}

/// Reads a repository CAR (e.g. from `com.atproto.sync.getRepo`) and checks
/// it whole: exactly one root, every block matching its CID, the root a
/// valid commit signed by `key` (when given), its MST canonical and
/// complete, and every record present. See [`LoadedRepo::from_blocks`].
pub async fn load_repo<R>(reader: R, key: Option<&PublicKey>) -> Result<LoadedRepo, RepoLoadError>
where
    R: AsyncRead + Unpin + Send,
{
    let (root, blocks) = read_car_blocks(reader).await?;
    LoadedRepo::from_blocks(root, blocks, key)
}

/// [`load_repo`] over a CAR file in memory; synchronous, since reading a
/// slice never waits.
pub fn load_repo_bytes(car: &[u8], key: Option<&PublicKey>) -> Result<LoadedRepo, RepoLoadError> {
    let (root, blocks) = read_car_bytes(car)?;
    LoadedRepo::from_blocks(root, blocks, key)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use cid::multihash::Multihash;
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::crypto::{Curve, SigningKey};
    use crate::data::{BASE64_LENIENT, cid_for};
    use crate::repo::commit::UnsignedCommit;
    use crate::syntax::{Did, TidClock};

    fn b64(s: &serde_json::Value) -> Vec<u8> {
        BASE64_LENIENT.decode(s.as_str().unwrap()).unwrap()
    }

    fn cbor_block(value: &Ipld) -> (Cid, Bytes) {
        let bytes = data::encode(value).unwrap();
        (cid_for(DAG_CBOR, &bytes), Bytes::from(bytes))
    }

    /// A few small dag-cbor blocks, the first being the root.
    fn sample_blocks(n: usize) -> Vec<(Cid, Bytes)> {
        (0..n)
            .map(|i| {
                let map = [("n".to_owned(), Ipld::Integer(i as i128))].into();
                cbor_block(&Ipld::Map(map))
            })
            .collect()
    }

    /// Reads with the streaming API, collecting blocks in file order.
    async fn read_all(car: &[u8]) -> Result<(Vec<Cid>, Vec<(Cid, Bytes)>), CarError> {
        let (roots, stream) = read_car(car).await?;
        let mut stream = std::pin::pin!(stream);
        let mut blocks = Vec::new();
        while let Some(block) = stream.next().await {
            blocks.push(block?);
        }
        Ok((roots, blocks))
    }

    /// [`car_bytes`], which never waits, run to completion.
    fn make_car<I, B>(root: Cid, blocks: I) -> Result<Vec<u8>, CarError>
    where
        I: IntoIterator<Item = (Cid, B)>,
        B: AsRef<[u8]>,
    {
        car_bytes(root, blocks).now_or_never().unwrap()
    }

    /// Length-prefixes `bytes` with a minimal varint.
    fn section(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = bytes.len();
        loop {
            let byte = u8::try_from(n & 0x7f).unwrap();
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(bytes);
        out
    }

    fn header(value: &Ipld) -> Vec<u8> {
        section(&data::encode(value).unwrap())
    }

    #[tokio::test]
    async fn interop_car_file_fixtures() {
        let Some(cases) = crate::interop::cases("atproto-repo-fixtures/car-file-fixtures.json")
        else {
            return;
        };
        for case in &cases {
            let root = Cid::try_from(case["root"].as_str().unwrap()).unwrap();
            let blocks: Vec<(Cid, Bytes)> = case["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    let cid = Cid::try_from(b["cid"].as_str().unwrap()).unwrap();
                    (cid, Bytes::from(b64(&b["bytes"])))
                })
                .collect();
            let car = b64(&case["car"]);

            assert_eq!(car_bytes(root, blocks.clone()).await.unwrap(), car);
            let written = write_car(Vec::new(), root, blocks.clone()).await.unwrap();
            assert_eq!(written, car);

            let (roots, read) = read_all(&car).await.unwrap();
            assert_eq!(roots, vec![root]);
            assert_eq!(read, blocks);
            let (r, map) = read_car_bytes(&car).unwrap();
            assert_eq!(r, root);
            assert_eq!(map, blocks.iter().cloned().collect());
        }
        eprintln!("car-file-fixtures.json: {} cases passed", cases.len());
    }

    #[tokio::test]
    async fn round_trip_and_streaming() {
        let blocks = sample_blocks(50);
        let root = blocks[0].0;
        let car = write_car_stream(Vec::new(), root, futures::stream::iter(blocks.clone()))
            .await
            .unwrap();
        assert_eq!(car, make_car(root, blocks.clone()).unwrap());
        let (roots, read) = read_all(&car).await.unwrap();
        assert_eq!((roots, read), (vec![root], blocks.clone()));

        // Through a small pipe, writer and reader running together.
        let (w, r) = tokio::io::duplex(64);
        let write = async {
            let mut w = write_car(w, root, blocks.clone()).await?;
            w.shutdown().await?;
            Ok::<_, CarError>(())
        };
        let (written, read) = tokio::join!(write, read_car_blocks(r));
        written.unwrap();
        let (r, map) = read.unwrap();
        assert_eq!(r, root);
        assert_eq!(map, blocks.into_iter().collect());
    }

    #[test]
    fn empty_car_has_a_header() {
        let root = sample_blocks(1)[0].0;
        let car = make_car(root, Vec::<(Cid, Bytes)>::new()).unwrap();
        assert!(!car.is_empty());
        let (r, map) = read_car_bytes(&car).unwrap();
        assert_eq!(r, root);
        assert!(map.is_empty());
    }

    #[test]
    fn altered_block_is_rejected() {
        let blocks = sample_blocks(3);
        let car = make_car(blocks[0].0, blocks.clone()).unwrap();
        // Change the last byte of the last block (its integer).
        let mut bad = car.clone();
        *bad.last_mut().unwrap() ^= 1;
        match read_car_bytes(&bad) {
            Err(CarError::CidMismatch { cid }) => assert_eq!(cid, blocks[2].0),
            other => panic!("expected CidMismatch, got {other:?}"),
        }
        // Swapping two blocks' bytes under their CIDs is caught too.
        let swapped = vec![
            (blocks[0].0, blocks[1].1.clone()),
            (blocks[1].0, blocks[0].1.clone()),
        ];
        let car = make_car(blocks[0].0, swapped).unwrap();
        assert!(matches!(
            read_car_bytes(&car),
            Err(CarError::CidMismatch { .. })
        ));
    }

    #[test]
    fn unsupported_cids_are_rejected() {
        let bytes = Bytes::from_static(b"\xa0");
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let sha256 = Multihash::<64>::wrap(SHA2_256, &digest).unwrap();
        let cases = [
            (Cid::new_v0(sha256).unwrap(), "CIDv0"),
            (Cid::new_v1(0x70, sha256), "codec"),
            (Cid::new_v1(0x0129, sha256), "codec"),
            (
                Cid::new_v1(DAG_CBOR, Multihash::<64>::wrap(0x13, &[0; 64]).unwrap()),
                "sha2-256",
            ),
            (
                Cid::new_v1(
                    DAG_CBOR,
                    Multihash::<64>::wrap(SHA2_256, &digest[..20]).unwrap(),
                ),
                "32 bytes",
            ),
            (
                Cid::new_v1(DAG_CBOR, Multihash::<64>::wrap(0x00, &bytes).unwrap()),
                "sha2-256",
            ),
        ];
        let root = cid_for(DAG_CBOR, &bytes);
        for (cid, expected) in cases {
            let car = make_car(root, [(cid, bytes.clone())]).unwrap();
            match read_car_bytes(&car) {
                Err(CarError::UnsupportedCid { cid: c, reason }) => {
                    assert_eq!(c, cid);
                    assert!(reason.contains(expected), "{reason}");
                }
                other => panic!("{cid}: expected UnsupportedCid, got {other:?}"),
            }
        }
        // Raw blocks are fine.
        let raw = cid_for(RAW, b"blob");
        let car = make_car(raw, [(raw, b"blob")]).unwrap();
        assert_eq!(read_car_bytes(&car).unwrap().1[&raw].as_ref(), b"blob");
    }

    #[test]
    fn truncation_is_an_error_except_between_sections() {
        // Sections of 1-, 2- and 3-byte length prefixes, so that some cuts
        // fall inside a prefix.
        let mut blocks = sample_blocks(2);
        for len in [200, 20_000] {
            let (cid, bytes) = cbor_block(&Ipld::Bytes(vec![9; len]));
            blocks.push((cid, bytes));
        }
        blocks.extend(sample_blocks(3).into_iter().skip(2));
        let root = blocks[0].0;
        let full = make_car(root, blocks.clone()).unwrap();
        // The lengths at which a prefix is itself a complete CAR.
        let boundaries: Vec<usize> = (0..=blocks.len())
            .map(|k| make_car(root, blocks[..k].to_vec()).unwrap().len())
            .collect();
        for cut in 0..full.len() {
            let result = read_car_bytes(&full[..cut]);
            if let Some(k) = boundaries.iter().position(|&b| b == cut) {
                let (_, map) = result.unwrap();
                assert_eq!(map, blocks[..k].iter().cloned().collect());
            } else {
                assert!(
                    matches!(result, Err(CarError::Truncated(_))),
                    "cut at {cut}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn bad_headers() {
        let root = Ipld::Link(sample_blocks(1)[0].0);
        let map = |entries: Vec<(&str, Ipld)>| {
            Ipld::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            )
        };
        // The CARv2 pragma.
        let v2 = header(&map(vec![("version", Ipld::Integer(2))]));
        assert!(matches!(
            read_car_bytes(&v2),
            Err(CarError::UnsupportedVersion(2))
        ));
        let invalid = [
            map(vec![
                ("roots", Ipld::List(vec![])),
                ("version", Ipld::Integer(1)),
            ]),
            map(vec![("roots", Ipld::List(vec![root.clone()]))]),
            map(vec![("roots", root.clone()), ("version", Ipld::Integer(1))]),
            map(vec![
                ("roots", Ipld::List(vec![Ipld::String("x".into())])),
                ("version", Ipld::Integer(1)),
            ]),
            map(vec![
                ("roots", Ipld::List(vec![root.clone()])),
                ("version", Ipld::String("1".into())),
            ]),
            map(vec![
                ("roots", Ipld::List(vec![root.clone()])),
                ("version", Ipld::Integer(1)),
                ("extra", Ipld::Null),
            ]),
            Ipld::List(vec![root.clone()]),
        ];
        for h in invalid {
            let result = read_car_bytes(&header(&h));
            assert!(
                matches!(result, Err(CarError::InvalidHeader(_))),
                "{h:?}: {result:?}"
            );
        }
        // Not DAG-CBOR, and trailing bytes inside the header section.
        assert!(matches!(
            read_car_bytes(&section(b"\xff")),
            Err(CarError::InvalidHeader(_))
        ));
        let good = data::encode(&map(vec![
            ("roots", Ipld::List(vec![root.clone()])),
            ("version", Ipld::Integer(1)),
        ]))
        .unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            read_car_bytes(&section(&trailing)),
            Err(CarError::InvalidHeader(_))
        ));
        // Two roots: fine for the reader, not for a repository.
        let two = header(&map(vec![
            ("roots", Ipld::List(vec![root.clone(), root])),
            ("version", Ipld::Integer(1)),
        ]));
        assert!(matches!(read_car_bytes(&two), Err(CarError::RootCount(2))));
        let (roots, _) = read_all(&two).now_or_never().unwrap().unwrap();
        assert_eq!(roots.len(), 2);
        // Empty input.
        assert!(matches!(
            read_car_bytes(b""),
            Err(CarError::Truncated("before the header"))
        ));
    }

    #[test]
    fn length_limits_and_varints() {
        // A header claiming more than the limit, with no bytes behind it.
        let mut car = Vec::new();
        let n = MAX_HEADER_LEN + 1;
        car.extend([
            0x80 | u8::try_from(n & 0x7f).unwrap(),
            u8::try_from(n >> 7).unwrap(),
        ]);
        assert!(matches!(
            read_car_bytes(&car),
            Err(CarError::TooLarge { what: "header", .. })
        ));
        // A block claiming 2^62 bytes.
        let blocks = sample_blocks(1);
        let mut car = make_car(blocks[0].0, Vec::<(Cid, Bytes)>::new()).unwrap();
        car.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            read_car_bytes(&car),
            Err(CarError::TooLarge { what: "block", .. })
        ));
        // A block just over the limit is refused on write and on read.
        let big = vec![0u8; MAX_BLOCK_LEN];
        let cid = cid_for(RAW, &big);
        assert!(matches!(
            make_car(cid, [(cid, &big)]),
            Err(CarError::TooLarge { what: "block", .. })
        ));
        let mut car = make_car(cid, Vec::<(Cid, Bytes)>::new()).unwrap();
        let mut block = cid.to_bytes();
        block.extend_from_slice(&big);
        car.extend(section(&block));
        assert!(matches!(
            read_car_bytes(&car),
            Err(CarError::TooLarge { what: "block", .. })
        ));
        // The largest block that fits is fine.
        let fits = vec![7u8; MAX_BLOCK_LEN - cid.encoded_len()];
        let cid = cid_for(RAW, &fits);
        let car = make_car(cid, [(cid, &fits)]).unwrap();
        assert_eq!(read_car_bytes(&car).unwrap().1[&cid].len(), fits.len());
        // Non-minimal and over-long varints.
        let mut header_ok = make_car(cid, Vec::<(Cid, Bytes)>::new()).unwrap();
        header_ok.extend([0x81, 0x00]);
        assert!(matches!(
            read_car_bytes(&header_ok),
            Err(CarError::Malformed(_))
        ));
        let long = [0x80u8; 10];
        assert!(matches!(read_car_bytes(&long), Err(CarError::Malformed(_))));
        // An empty block section has no CID.
        let mut empty = make_car(cid, Vec::<(Cid, Bytes)>::new()).unwrap();
        empty.push(0);
        assert!(matches!(
            read_car_bytes(&empty),
            Err(CarError::Malformed(_))
        ));
    }

    #[test]
    fn reader_is_fused_after_an_error() {
        let blocks = sample_blocks(3);
        let mut car = make_car(blocks[0].0, blocks).unwrap();
        car.push(0xff);
        let mut reader = CarReader::new(&car[..]).now_or_never().unwrap().unwrap();
        let mut results = Vec::new();
        for _ in 0..6 {
            results.push(reader.next_block().now_or_never().unwrap());
        }
        assert!(results[..3].iter().all(|r| matches!(r, Ok(Some(_)))));
        assert!(matches!(results[3], Err(CarError::Truncated(_))));
        assert!(results[4..].iter().all(|r| matches!(r, Ok(None))));
    }

    // ---------------------------------------------------------- repositories

    struct TestRepo {
        key: SigningKey,
        commit: SignedCommit,
        commit_block: (Cid, Bytes),
        mst: Mst,
        mst_blocks: Vec<(Cid, Bytes)>,
        records: Vec<(String, Cid, Bytes)>,
    }

    impl TestRepo {
        fn new(curve: Curve, n: usize) -> Self {
            let clock = TidClock::new();
            let records: Vec<(String, Cid, Bytes)> = (0..n)
                .map(|i| {
                    let map = [
                        ("$type", Ipld::String("app.bsky.feed.post".into())),
                        ("text", Ipld::String(format!("post number {i}"))),
                        ("createdAt", Ipld::String("2024-11-25T09:31:00.000Z".into())),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                    let (cid, bytes) = cbor_block(&Ipld::Map(map));
                    (format!("app.bsky.feed.post/{}", clock.next()), cid, bytes)
                })
                .collect();
            let mst = Mst::from_entries(records.iter().map(|(k, c, _)| (k, *c))).unwrap();
            let key = SigningKey::generate(curve);
            let did = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
            let commit = UnsignedCommit::new(did, mst.root_cid(), clock.next()).sign(&key);
            Self {
                commit_block: commit.to_block(),
                commit,
                mst_blocks: mst.blocks().unwrap(),
                mst,
                key,
                records,
            }
        }

        /// The repository's blocks: commit, MST nodes, records.
        fn blocks(&self) -> Vec<(Cid, Bytes)> {
            let mut out = vec![self.commit_block.clone()];
            out.extend(self.mst_blocks.iter().cloned());
            out.extend(self.records.iter().map(|(_, c, b)| (*c, b.clone())));
            out
        }

        fn car_without(&self, missing: &Cid) -> Vec<u8> {
            let blocks = self.blocks().into_iter().filter(|(c, _)| c != missing);
            make_car(self.commit_block.0, blocks).unwrap()
        }

        fn car(&self) -> Vec<u8> {
            make_car(self.commit_block.0, self.blocks()).unwrap()
        }
    }

    #[tokio::test]
    async fn full_repo_round_trip() {
        for curve in Curve::ALL {
            let repo = TestRepo::new(curve, 300);
            assert!(repo.mst_blocks.len() > 1, "want a multi-node tree");
            let car = repo.car();

            let loaded = load_repo(&car[..], Some(&repo.key.public_key()))
                .await
                .unwrap();
            assert_eq!(loaded.commit, repo.commit);
            assert_eq!(loaded.commit_cid, repo.commit_block.0);
            assert_eq!(loaded.mst.root_cid(), repo.mst.root_cid());
            assert_eq!(loaded.mst.len().unwrap(), 300);
            assert_eq!(loaded.blocks.len(), 1 + repo.mst_blocks.len() + 300);
            for (key, _, bytes) in &repo.records {
                assert_eq!(loaded.record(key), Some(bytes));
            }
            loaded.commit.verify(&repo.key.public_key()).unwrap();

            // Without a key, the signature is not checked.
            let other = SigningKey::generate(curve).public_key();
            assert!(load_repo_bytes(&car, None).is_ok());
            assert!(matches!(
                load_repo_bytes(&car, Some(&other)),
                Err(RepoLoadError::Signature(_))
            ));
        }
    }

    #[test]
    fn empty_repo_loads() {
        let repo = TestRepo::new(Curve::K256, 0);
        let loaded = load_repo_bytes(&repo.car(), Some(&repo.key.public_key())).unwrap();
        assert!(loaded.mst.is_empty());
        assert_eq!(loaded.commit.data, crate::repo::mst::empty_root().0);
    }

    #[test]
    fn missing_blocks_are_named() {
        let repo = TestRepo::new(Curve::K256, 200);
        let key = repo.key.public_key();

        let (record_key, record_cid, _) = &repo.records[17];
        match load_repo_bytes(&repo.car_without(record_cid), Some(&key)) {
            Err(RepoLoadError::MissingRecord { key, cid }) => {
                assert_eq!((&key, &cid), (record_key, record_cid));
            }
            other => panic!("expected MissingRecord, got {other:?}"),
        }

        // Every MST node, the root and the inner ones.
        for (node, _) in &repo.mst_blocks {
            match load_repo_bytes(&repo.car_without(node), Some(&key)) {
                Err(RepoLoadError::Mst(MstError::MissingBlock(cid))) => assert_eq!(cid, *node),
                other => panic!("expected a missing MST node, got {other:?}"),
            }
        }

        let commit = repo.commit_block.0;
        assert!(matches!(
            load_repo_bytes(&repo.car_without(&commit), Some(&key)),
            Err(RepoLoadError::MissingCommit(c)) if c == commit
        ));
    }

    #[test]
    fn bad_commits_are_rejected() {
        let repo = TestRepo::new(Curve::P256, 20);
        let key = repo.key.public_key();

        // A commit whose `data` was changed after signing.
        let mut tampered = repo.commit.clone();
        tampered.data = repo.records[0].1;
        let (cid, bytes) = tampered.to_block();
        let mut blocks = repo.blocks();
        blocks[0] = (cid, bytes);
        let car = make_car(cid, blocks.clone()).unwrap();
        assert!(matches!(
            load_repo_bytes(&car, Some(&key)),
            Err(RepoLoadError::Signature(_))
        ));
        // Without a key check, the MST check catches it: a record is no node.
        assert!(matches!(
            load_repo_bytes(&car, None),
            Err(RepoLoadError::Mst(_))
        ));

        // A root that is not a commit at all (an MST node).
        let car = make_car(repo.mst.root_cid(), repo.blocks()).unwrap();
        assert!(matches!(
            load_repo_bytes(&car, None),
            Err(RepoLoadError::Commit(_))
        ));

        // A CAR error surfaces as such.
        let mut car = repo.car();
        let last = car.len() - 1;
        car[last] ^= 0x55;
        assert!(matches!(
            load_repo_bytes(&car, Some(&key)),
            Err(RepoLoadError::Car(CarError::CidMismatch { .. }))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_car_bytes(&bytes);
            let _ = load_repo_bytes(&bytes, None);
        }

        #[test]
        fn corrupted_cars_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..4),
        ) {
            let blocks = sample_blocks(4);
            let mut car = make_car(blocks[0].0, blocks.clone()).unwrap();
            for (index, xor) in flips {
                let i = index.index(car.len());
                car[i] ^= xor;
            }
            // A changed byte either breaks the file or still yields blocks
            // that match their CIDs.
            if let Ok((_, map)) = read_car_bytes(&car) {
                for (cid, bytes) in &map {
                    prop_assert!(verify_block(cid, bytes).is_ok());
                }
            }
        }

        #[test]
        fn random_block_sections_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let root = sample_blocks(1)[0].0;
            let mut car = make_car(root, Vec::<(Cid, Bytes)>::new()).unwrap();
            car.extend(section(&body));
            let _ = read_car_bytes(&car);
        }
    }

    #[tokio::test]
    async fn a_streamed_car_reads_back_block_for_block() {
        let blocks: Vec<(Cid, Bytes)> = (0..300u32)
            .map(|i| {
                let bytes = Bytes::from(vec![
                    u8::try_from(i % 251).unwrap();
                    (i as usize) * 7 % 1000 + 1
                ]);
                (data::cid_for(RAW, &bytes), bytes)
            })
            .collect();
        let root = blocks[0].0;
        let stream = car_byte_stream(
            vec![root],
            futures::stream::iter(blocks.clone().into_iter().map(Ok::<_, io::Error>)),
        );
        let chunks: Vec<Bytes> = stream.map(Result::unwrap).collect().await;
        assert_eq!(
            chunks.len(),
            1 + blocks.len(),
            "header, then one chunk per block"
        );
        let car: Vec<u8> = chunks.concat();
        let (read_root, read) = read_car_bytes(&car).unwrap();
        assert_eq!(read_root, root);
        assert_eq!(read.len(), blocks.len());
        for (cid, bytes) in &blocks {
            assert_eq!(&read[cid], bytes);
        }
        // The same bytes as the buffered writer.
        assert_eq!(car, car_bytes(root, blocks.clone()).await.unwrap());

        // A failing source ends the stream with its error.
        let failing = futures::stream::iter(vec![
            Ok(blocks[0].clone()),
            Err(io::Error::other("store down")),
        ]);
        let items: Vec<_> = car_byte_stream(vec![root], failing).collect().await;
        assert!(items[..2].iter().all(Result::is_ok));
        assert!(items[2].is_err());
    }
}
