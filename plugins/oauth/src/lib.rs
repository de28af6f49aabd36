//! ATProto OAuth for Aurora Locus.
//!
//! So far the layers the authorization server stands on:
//! - [`dpop`] verifies DPoP proofs (RFC 9449) as the ATProto OAuth profile
//!   requires them, with server nonces and replay detection;
//! - [`client`] identifies clients by their `client_id` (a metadata URL, or
//!   a loopback development client) and validates their metadata;
//! - [`client_auth`] verifies confidential clients' `private_key_jwt`
//!   assertions;
//! - [`metadata`] writes the authorization server's and the protected
//!   resource's discovery documents;
//! - [`pkce`] checks `S256` code challenges and verifiers;
//! - [`scope`] parses scope strings (`atproto`, the transitional scopes,
//!   granular permissions) and answers what a token may do.
//!
//! The authorization server itself (metadata, PAR, the sign-in page, the
//! token endpoint) builds on them and is not served yet.

pub mod client;
pub mod client_auth;
pub mod dpop;
pub mod metadata;
pub mod pkce;
pub mod scope;
