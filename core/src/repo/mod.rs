//! The repository engine: the Merkle Search Tree that maps record paths to
//! record CIDs. (Commits, CAR files, diffs and proofs build on it.)

pub mod mst;

pub use mst::{BlockSource, Mst, MstError};
