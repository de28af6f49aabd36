//! # aurora-storage-testkit
//!
//! Test support shared by every storage backend and the server:
//!
//! - [`suite`]: ONE conformance suite for [`RepoStore`] + [`Sequencer`] +
//!   [`AccountStore`] and one for [`BlobStore`]; a backend runs them with
//!   [`store_conformance_suite!`] and [`blob_conformance_suite!`].
//! - [`postgres`]: finds or starts a throwaway Postgres server for tests.
//! - [`process`]: runs a server binary for a test and finds its address.
//! - [`plc`]: an in-process PLC directory ([`plc::TestPlcDirectory`]) for
//!   tests that create and update `did:plc` identities over HTTP.
//! - [`events`]: a realistic event log (real signed commits of several
//!   repos and the other event types) for the event-sink tests.
//! - [`brokers`]: a throwaway NATS JetStream server or Kafka-protocol broker
//!   on loopback, for the event-sink tests.
//! - [`skip`]: the one way a test skips for a missing service; with
//!   `AURORA_REQUIRE_SERVICES=1` (as in CI) a skip is a failure.
//!
//! [`RepoStore`]: aurora_core::RepoStore
//! [`Sequencer`]: aurora_core::Sequencer
//! [`AccountStore`]: aurora_core::AccountStore
//! [`BlobStore`]: aurora_core::BlobStore

// Test support: failing loudly on a broken fixture is the point.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod brokers;
pub mod events;
pub mod fixtures;
pub mod plc;
pub mod postgres;
pub mod process;
pub mod suite;

pub use suite::{BlobHarness, FullStore, StoreHarness};

/// Whether tests must fail instead of skipping when a service is missing
/// (`AURORA_REQUIRE_SERVICES=1`, set by CI).
pub fn services_required() -> bool {
    std::env::var("AURORA_REQUIRE_SERVICES")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Skips `test` because `reason`: prints why, or panics when services are
/// required.
pub fn skip(test: &str, reason: &str) {
    assert!(
        !services_required(),
        "{test}: required service unavailable (AURORA_REQUIRE_SERVICES=1): {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
}
