//! Event sinks: the kinds this build knows ([`registry`]), built from the
//! `[[sinks]]` entries of the configuration, and the [`runner`] that
//! delivers the event log to each from its own durable cursor.
//!
//! Each shipped sink kind is a plugin crate behind a cargo feature of this
//! crate (`sink-jsonl`, `sink-webhook`, ...). Adding a kind takes its crate,
//! a feature in `Cargo.toml`, and one line in [`registry`]'s list.

pub mod registry;
pub mod runner;

pub use registry::{SinkKind, build_sinks, kinds};
pub use runner::{
    Lag, RunnerSettings, SinkRunners, SinkStatus, SinkStatusBoard, measure_lag, node_id,
    release_leases,
};
