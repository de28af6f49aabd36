//! Identity: the DID methods an ATProto PDS creates and updates itself.
//!
//! A PDS does more than resolve identities: it creates `did:plc`
//! identities for new accounts, signs updates to them (handle changes,
//! signing-key rotation, migration to another PDS), and in tests runs a
//! PLC directory of its own. The rules for that live here, independent of
//! HTTP and storage, so that the PDS, the test directory and any verifier
//! of audit logs share one implementation.
//!
//! - [`plc`] — `did:plc` operations (signed, DAG-CBOR hashed), DID
//!   derivation, and the directory's rules for an operation log.

pub mod plc;
