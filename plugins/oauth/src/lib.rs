//! ATProto OAuth for Aurora Locus.
//!
//! So far the proof-of-possession layer every OAuth endpoint and every
//! OAuth-authenticated XRPC call stands on: [`dpop`] verifies DPoP proofs
//! (RFC 9449) as the ATProto OAuth profile requires them, with server
//! nonces and replay detection. The authorization server (metadata, PAR,
//! the sign-in page, the token endpoint) builds on it and is not served yet.

pub mod dpop;
