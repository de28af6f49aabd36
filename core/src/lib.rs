//! # aurora-core
//!
//! The heart of Aurora Locus, an ATProto Personal Data Server framework:
//! the data model and syntax types, and the plugin surface every backend and
//! plugin implements.
//!
//! - [`syntax`] — validated identifiers (`Did`, `Handle`, `Nsid`, ...).
//! - [`data`] — CIDs for the ATProto data model.
//! - [`event`] — repo events and their log entries.
//! - [`store`] — [`RepoStore`], [`Sequencer`], [`AccountStore`], [`BlobStore`].
//! - [`sink`] — [`EventSink`].
//! - [`plugin`] and [`builder`] — [`Plugin`] and [`PdsBuilder`].
//! - [`error`] — [`XrpcError`], the one error shape clients see.
//!
//! This crate depends on no database, web framework or backend.

pub mod builder;
pub mod data;
pub mod error;
pub mod event;
pub mod http;
pub mod plugin;
pub mod sink;
pub mod store;
pub mod syntax;

pub use builder::{BuildError, Pds, PdsBuilder, PdsContext, ServiceInfo};
pub use error::XrpcError;
pub use event::{EventType, NewEvent, SeqEvent};
pub use plugin::{Plugin, XrpcMethodKind, XrpcRoute};
pub use sink::{EventSink, SinkError};
pub use store::{AccountStore, BlobStore, RepoStore, Sequencer, StoreError};

/// Re-exported so that backends and plugins use the same `cid` version.
pub use cid;
