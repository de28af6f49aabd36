//! Identity services the PDS talks to over the network.
//!
//! The rules of `did:plc` (operations, DID derivation, the directory's
//! acceptance rules) live in `aurora_core::identity`, free of HTTP. This
//! module is the PDS's side of the wire: it sends signed operations to the
//! PLC directory (`AURORA_PLC_URL`) and reads identities back from it.
//!
//! - [`plc_client`] — [`PlcClient`], the HTTP client of the PLC directory.

pub mod plc_client;

pub use plc_client::{PlcClient, PlcClientError};
