//! # aurora-core
//!
//! The heart of Aurora Locus, an ATProto Personal Data Server framework:
//! the data model and syntax types, and the plugin surface every backend and
//! plugin implements.
//!
//! - [`syntax`] — validated identifiers (`Did`, `Handle`, `Nsid`, ...).
//! - [`data`] — the data model: DAG-CBOR, its JSON form, blob refs, CIDs.
//! - [`crypto`] — signing keys, did:key, verification.
//! - [`identity`] — did:plc operations and audit-log rules.
//! - [`event`] — repo events and their log entries.
//! - [`store`] — [`RepoStore`], [`Sequencer`], [`AccountStore`], [`BlobStore`].
//! - [`sink`] — [`EventSink`], and [`ConfigurableSink`] for sinks built from configuration.
//! - [`mail`] — [`Mailer`](mail::Mailer).
//! - [`repo`] — the Merkle Search Tree, diffs and proofs, signed commits, CAR files.
//! - [`plugin`] and [`builder`] — [`Plugin`] and [`PdsBuilder`].
//! - [`error`] — [`XrpcError`], the one error shape clients see.
//!
//! This crate depends on no database, web framework or backend.

pub mod builder;
pub mod crypto;
pub mod data;
pub mod error;
pub mod event;
pub mod http;
pub mod identity;
#[cfg(test)]
mod interop;
pub mod mail;
pub mod plugin;
pub mod repo;
pub mod sink;
pub mod store;
pub mod syntax;

pub use builder::{BuildError, Pds, PdsBuilder, PdsContext, ServiceInfo};
pub use error::XrpcError;
pub use event::{EventType, NewEvent, SeqEvent};
pub use mail::{Mail, MailError, Mailer};
pub use plugin::{BackgroundTask, Plugin, XrpcMethodKind, XrpcRoute};
pub use sink::{ConfigurableSink, EventSink, SinkConfigError, SinkEnv, SinkError};
pub use store::{AccountStore, BlobStore, RepoStore, Sequencer, StoreError};

/// Re-exported so that backends and plugins use the same `cid` version.
pub use cid;
