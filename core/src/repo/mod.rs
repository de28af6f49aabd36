//! The repository engine: the Merkle Search Tree that maps record paths to
//! record CIDs, the signed commit over its root, and CAR files, in which
//! repositories travel. (Diffs and proofs build on them.)

pub mod car;
pub mod commit;
pub mod mst;
pub mod writer;

pub use car::{
    CarError, CarReader, CarWriter, LoadedRepo, RepoLoadError, car_bytes, load_repo,
    load_repo_bytes, read_car, read_car_blocks, read_car_bytes, verify_block, write_car,
    write_car_stream,
};
pub use commit::{CommitError, SignedCommit, UnsignedCommit};
pub use mst::{BlockSource, Mst, MstError, NodeLinks, node_links};
pub use writer::{
    PreparedCommit, RecordChange, RepoHead, WriteAction, WriteError, WriteOutcome, prepare_commit,
    prepare_import,
};
