//! The discovery documents: the authorization server's metadata (RFC 8414,
//! at `/.well-known/oauth-authorization-server`) and the protected
//! resource's (RFC 9728, at `/.well-known/oauth-protected-resource`), with
//! the values the ATProto profile requires. A PDS that is its own
//! authorization server serves both under one origin, the issuer.

use serde_json::{Value, json};
use url::Url;

use crate::dpop::SIGNING_ALGS;

/// Why an issuer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid OAuth issuer {0:?}: an https origin (or http for a local test) with no path, query or credentials"
)]
pub struct IssuerError(pub String);

/// The issuer: an origin, written without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    /// The issuer for the public URL `url`: its origin, which must be all
    /// of it (no path, query, fragment or credentials). `http` is allowed
    /// for loopback hosts only, for tests and local development.
    pub fn from_public_url(url: &str) -> Result<Self, IssuerError> {
        let bad = || IssuerError(url.to_owned());
        let parsed = Url::parse(url).map_err(|_| bad())?;
        let local = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        let scheme_ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && local);
        if !scheme_ok
            || parsed.path() != "/"
            || parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(bad());
        }
        Ok(Self(parsed.origin().ascii_serialization()))
    }

    /// The issuer as written in tokens and metadata.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `path` (starting with `/`) under the issuer.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// The scopes offered; granular permissions are not enumerable and are
/// not listed.
pub const SCOPES_SUPPORTED: &[&str] = &[
    "atproto",
    "transition:generic",
    "transition:chat.bsky",
    "transition:email",
];

/// The authorization server's metadata document.
pub fn authorization_server(issuer: &Issuer) -> Value {
    json!({
        "issuer": issuer.as_str(),
        "authorization_endpoint": issuer.endpoint("/oauth/authorize"),
        "token_endpoint": issuer.endpoint("/oauth/token"),
        "pushed_authorization_request_endpoint": issuer.endpoint("/oauth/par"),
        "revocation_endpoint": issuer.endpoint("/oauth/revoke"),
        "require_pushed_authorization_requests": true,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "dpop_signing_alg_values_supported": SIGNING_ALGS,
        "scopes_supported": SCOPES_SUPPORTED,
        "subject_types_supported": ["public"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
        "require_request_uri_registration": true,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "protected_resources": [issuer.as_str()],
    })
}

/// The protected resource's metadata document: this PDS, authorized by
/// itself.
pub fn protected_resource(issuer: &Issuer) -> Value {
    json!({
        "resource": issuer.as_str(),
        "authorization_servers": [issuer.as_str()],
        "scopes_supported": [],
        "bearer_methods_supported": ["header"],
        "resource_documentation": "https://atproto.com",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_bare_origins() {
        let issuer = Issuer::from_public_url("https://pds.example.com/").unwrap();
        assert_eq!(issuer.as_str(), "https://pds.example.com");
        assert_eq!(
            Issuer::from_public_url("https://pds.example.com:8443")
                .unwrap()
                .as_str(),
            "https://pds.example.com:8443"
        );
        assert_eq!(
            Issuer::from_public_url("http://localhost:2583")
                .unwrap()
                .as_str(),
            "http://localhost:2583"
        );
        for bad in [
            "http://pds.example.com",
            "https://pds.example.com/pds",
            "https://pds.example.com/?x=1",
            "https://user@pds.example.com",
            "pds.example.com",
        ] {
            assert!(Issuer::from_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_metadata_has_what_the_profile_requires() {
        let issuer = Issuer::from_public_url("https://pds.example.com").unwrap();
        let m = authorization_server(&issuer);
        assert_eq!(m["issuer"], "https://pds.example.com");
        assert_eq!(
            m["pushed_authorization_request_endpoint"],
            "https://pds.example.com/oauth/par"
        );
        for (key, value) in [
            ("require_pushed_authorization_requests", json!(true)),
            (
                "authorization_response_iss_parameter_supported",
                json!(true),
            ),
            ("client_id_metadata_document_supported", json!(true)),
            ("code_challenge_methods_supported", json!(["S256"])),
            (
                "token_endpoint_auth_methods_supported",
                json!(["none", "private_key_jwt"]),
            ),
            ("dpop_signing_alg_values_supported", json!(["ES256"])),
            (
                "grant_types_supported",
                json!(["authorization_code", "refresh_token"]),
            ),
        ] {
            assert_eq!(m[key], value, "{key}");
        }
        assert!(
            m["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("atproto"))
        );
        let r = protected_resource(&issuer);
        assert_eq!(
            r["authorization_servers"],
            json!(["https://pds.example.com"])
        );
        assert_eq!(r["resource"], "https://pds.example.com");
    }
}
