//! Which handles this service accepts.
//!
//! A handle under one of the service's user domains (`alice.example.com`
//! for `.example.com`) is hosted here: its first part is one label of 3 to
//! 18 characters, and a few names are reserved for the operator. Any other
//! handle is the user's own domain and must resolve to the account's DID;
//! it may not use a top-level domain that the handle spec disallows.

use aurora_core::XrpcError;
use aurora_core::syntax::Handle;

use super::bad_request;
use crate::identity::DISALLOWED_TLDS;

/// Shortest first label of a hosted handle.
pub const MIN_HOSTED_LABEL: usize = 3;
/// Longest first label of a hosted handle.
pub const MAX_HOSTED_LABEL: usize = 18;

/// First labels kept for the operator.
const RESERVED: &[&str] = &[
    "about",
    "abuse",
    "account",
    "admin",
    "administrator",
    "api",
    "app",
    "atproto",
    "auth",
    "blog",
    "help",
    "host",
    "localhost",
    "mail",
    "moderation",
    "moderator",
    "official",
    "pds",
    "postmaster",
    "root",
    "security",
    "service",
    "staff",
    "support",
    "sysadmin",
    "system",
    "webmaster",
    "www",
    "xrpc",
];

/// Parses a handle given by a client, with the lexicon's `InvalidHandle`
/// for malformed input.
pub fn parse(input: &str) -> Result<Handle, XrpcError> {
    Handle::parse(input.trim())
        .map_err(|e| bad_request("InvalidHandle", format!("invalid handle: {e}")))
}

/// The user domain `handle` falls under, if any.
pub fn hosted_domain<'a>(handle: &Handle, user_domains: &'a [String]) -> Option<&'a str> {
    user_domains
        .iter()
        .map(String::as_str)
        .find(|domain| handle.is_under(domain))
}

/// Checks a handle for registration here: hosted handles follow the
/// service's rules; other domains must not use a disallowed TLD.
/// `allow_external` is false for sign-up, where only hosted handles are
/// offered (`UnsupportedDomain` otherwise).
pub fn check(
    handle: &Handle,
    user_domains: &[String],
    allow_external: bool,
) -> Result<(), XrpcError> {
    let tld = handle.as_str().rsplit('.').next().unwrap_or_default();
    if DISALLOWED_TLDS.contains(&tld) {
        return Err(bad_request(
            "InvalidHandle",
            format!("handles under .{tld} are not allowed"),
        ));
    }
    let Some(domain) = hosted_domain(handle, user_domains) else {
        if allow_external {
            return Ok(());
        }
        return Err(bad_request(
            "UnsupportedDomain",
            format!(
                "this service hosts handles under {}",
                user_domains.join(", ")
            ),
        ));
    };
    let suffix_len = domain.trim_start_matches('.').len() + 1;
    let front = &handle.as_str()[..handle.as_str().len() - suffix_len];
    if front.contains('.') {
        return Err(bad_request(
            "InvalidHandle",
            format!("a handle under {domain} is a single name before the domain"),
        ));
    }
    if front.len() < MIN_HOSTED_LABEL {
        return Err(bad_request(
            "InvalidHandle",
            format!("handle is too short: at least {MIN_HOSTED_LABEL} characters before {domain}"),
        ));
    }
    if front.len() > MAX_HOSTED_LABEL {
        return Err(bad_request(
            "InvalidHandle",
            format!("handle is too long: at most {MAX_HOSTED_LABEL} characters before {domain}"),
        ));
    }
    if RESERVED.contains(&front) {
        return Err(bad_request("HandleNotAvailable", "this handle is reserved"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn domains() -> Vec<String> {
        vec![".test".to_owned(), ".pds.example.com".to_owned()]
    }

    fn error(handle: &str, external: bool) -> String {
        check(&Handle::parse(handle).unwrap(), &domains(), external)
            .unwrap_err()
            .error
            .into_owned()
    }

    #[test]
    fn hosted_handles() {
        for ok in [
            "alice.test",
            "bob-1.pds.example.com",
            "abc.test",
            "a23456789012345678.test",
        ] {
            check(&Handle::parse(ok).unwrap(), &domains(), false).unwrap();
        }
        assert_eq!(error("ab.test", false), "InvalidHandle");
        assert_eq!(error("a234567890123456789.test", false), "InvalidHandle");
        assert_eq!(error("a.b.test", false), "InvalidHandle");
        assert_eq!(error("admin.test", false), "HandleNotAvailable");
        assert_eq!(error("alice.example.org", false), "UnsupportedDomain");
        assert_eq!(error("alice.local", true), "InvalidHandle");
        check(
            &Handle::parse("alice.example.org").unwrap(),
            &domains(),
            true,
        )
        .unwrap();
    }

    #[test]
    fn parse_normalises_and_names_the_error() {
        assert_eq!(parse(" Alice.Test ").unwrap().as_str(), "alice.test");
        assert_eq!(parse("no spaces.test").unwrap_err().error, "InvalidHandle");
    }
}
