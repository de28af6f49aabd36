//! `car`: CAR v1 reading.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use aurora_core::cid::Cid;
use aurora_core::repo::{CarError, CarReader, read_car_bytes, verify_block};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use tokio::io::{AsyncRead, ReadBuf};

use crate::Outcome;

/// What the streaming reader read: the roots and the blocks in file order.
type StreamedCar = (Vec<Cid>, Vec<(Cid, Bytes)>);

/// Feeds `data` to the CAR readers and checks what they promise:
///
/// - every block read matches its CID (CIDv1, dag-cbor or raw, sha2-256);
/// - the streaming reader, fed a few bytes at a time, reads the same as
///   the in-memory reader, which accepts exactly the files with one root;
/// - an accepted file is canonical: writing its roots and blocks again
///   gives the same bytes (minimal length prefixes, canonical header);
/// - loading it as a whole repository never panics.
pub fn car(data: &[u8]) -> Outcome {
    let sliced = read_car_bytes(data);
    // Chunk sizes from 1 byte up, chosen by the input so that short reads
    // land everywhere.
    let chunk = 1 + data.first().map_or(0, |b| usize::from(b % 7));
    let streamed = read_streaming(Trickle { data, chunk });

    match (&sliced, &streamed) {
        (Ok((root, map)), Ok((roots, blocks))) => {
            assert_eq!(roots.as_slice(), [*root], "the readers disagree on roots");
            let from_stream: std::collections::BTreeMap<Cid, Bytes> =
                blocks.iter().cloned().collect();
            assert_eq!(&from_stream, map, "the readers disagree on blocks");
        }
        (Ok(_), Err(e)) => panic!("only the streaming reader failed: {e}"),
        (Err(e), Ok((roots, _))) => assert!(
            roots.len() != 1,
            "only the in-memory reader failed, on a one-root file: {e}"
        ),
        // The in-memory reader checks the number of roots before reading
        // blocks; otherwise both fail in the same place.
        (Err(CarError::RootCount(_)), Err(_)) => {}
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "the readers fail differently");
        }
    }

    let Ok((roots, blocks)) = streamed else {
        let _ = aurora_core::repo::load_repo_bytes(data, None);
        return Outcome::Rejected;
    };
    for (cid, bytes) in &blocks {
        if let Err(e) = verify_block(cid, bytes) {
            panic!("a block read does not match its CID: {e}");
        }
    }
    let rewritten = rewrite(roots, blocks);
    assert_eq!(rewritten, data, "an accepted CAR is not canonical");
    if let Ok(repo) = aurora_core::repo::load_repo_bytes(data, None) {
        crate::mst::check_loaded_repo(&repo);
    }
    Outcome::Accepted
}

/// Reads a whole CAR with the streaming reader over `reader`.
fn read_streaming<R: AsyncRead + Unpin + Send>(reader: R) -> Result<StreamedCar, CarError> {
    let read = async move {
        let mut car = CarReader::new(reader).await?;
        let roots = car.roots().to_vec();
        let mut blocks = Vec::new();
        while let Some(block) = car.next_block().await? {
            blocks.push(block);
        }
        // Fused: nothing after the end.
        assert!(
            matches!(car.next_block().await, Ok(None)),
            "the reader yields a block after its end"
        );
        Ok((roots, blocks))
    };
    read.now_or_never()
        .expect("reading a CAR from memory never waits")
}

/// The CAR file of `roots` and `blocks`, written by the streaming writer.
fn rewrite(roots: Vec<Cid>, blocks: Vec<(Cid, Bytes)>) -> Vec<u8> {
    let stream = aurora_core::repo::car::car_byte_stream(
        roots,
        futures::stream::iter(blocks.into_iter().map(Ok::<_, io::Error>)),
    );
    let chunks: Vec<Result<Bytes, io::Error>> = stream
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("writing a CAR to memory never waits");
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&chunk.expect("blocks that were read can be written"));
    }
    out
}

/// An in-memory reader that hands out at most `chunk` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(buf.remaining()).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}
