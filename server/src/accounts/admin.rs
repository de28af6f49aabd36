//! Operator authentication: HTTP basic auth as `admin` with the configured
//! admin password. Without a configured password, admin calls are refused.

use aurora_core::XrpcError;
use aurora_core::store::constant_time_eq;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

use super::{AccountManager, unauthorized};
use crate::config::Secret;

/// The user name of admin basic auth.
pub const ADMIN_USER: &str = "admin";

impl AccountManager {
    /// Checks `Authorization: Basic base64(admin:<password>)`.
    pub fn authenticate_admin(&self, headers: &HeaderMap) -> Result<(), XrpcError> {
        check_admin_auth(headers, self.admin_password())
    }
}

/// Checks `Authorization: Basic base64(admin:<password>)` against
/// `expected`; with no password configured, nothing passes.
pub fn check_admin_auth(headers: &HeaderMap, expected: Option<&Secret>) -> Result<(), XrpcError> {
    let denied = || unauthorized("AuthenticationRequired", "admin authentication required");
    let expected = expected.ok_or_else(denied)?;
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(denied)?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(denied)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(denied());
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| denied())?;
    let mut given = format!("{ADMIN_USER}:").into_bytes();
    given.extend_from_slice(expected.expose().as_bytes());
    if constant_time_eq(&decoded, &given) {
        Ok(())
    } else {
        Err(denied())
    }
}
