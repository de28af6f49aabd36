//! OAuth clients as the ATProto profile identifies them: by a `client_id`
//! that is either the `https` URL of the client's metadata document, or
//! `http://localhost` (with `redirect_uri` and `scope` in its query) for a
//! development client running on the user's machine.
//!
//! [`ClientId::parse`] sorts a `client_id` into one of the two and refuses
//! anything else; [`ClientMetadata::from_document`] validates a fetched
//! metadata document against the `client_id` it was fetched from;
//! [`ClientMetadata::loopback`] makes up the metadata of a development
//! client; [`ClientMetadata::redirect_uri_allowed`] checks the
//! `redirect_uri` of an authorization request. Fetching the document (with
//! its size, time and address limits) is the caller's.

use serde::Deserialize;
use url::{Host, Url};

/// Why a client was refused. [`oauth_error`](Self::oauth_error) is the code
/// to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The `client_id` is neither a metadata URL nor a loopback client.
    #[error("invalid client_id: {0}")]
    InvalidClientId(String),
    /// The metadata document breaks a rule of the profile.
    #[error("invalid client metadata: {0}")]
    InvalidMetadata(String),
    /// A registered redirect URI is not allowed for this client.
    #[error("invalid redirect_uri: {0}")]
    InvalidRedirectUri(String),
}

impl ClientError {
    /// The OAuth error code of the answer.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidClientId(_) | Self::InvalidMetadata(_) => "invalid_client_metadata",
        }
    }
}

/// A `client_id`, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientId {
    /// The `https` URL of the client's metadata document.
    Discoverable(Url),
    /// A development client on the user's machine (`http://localhost`).
    Loopback {
        /// The `client_id` exactly as given.
        id: String,
        /// Its `redirect_uri` query parameters (loopback IP URLs), or the
        /// defaults `http://127.0.0.1/` and `http://[::1]/`.
        redirect_uris: Vec<String>,
        /// Its `scope` query parameter, or `atproto`.
        scope: String,
    },
}

impl ClientId {
    /// Sorts `client_id`, refusing what is neither kind.
    pub fn parse(client_id: &str) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::InvalidClientId(why.to_owned());
        let url = Url::parse(client_id).map_err(|e| bad(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(bad("no credentials or fragment allowed"));
        }
        match url.scheme() {
            "http" => Self::loopback(client_id, &url),
            "https" => {
                if url.port().is_some() {
                    return Err(bad("a metadata URL has no port"));
                }
                match url.host() {
                    Some(Host::Domain(domain)) if !is_local_hostname(domain) => {}
                    _ => return Err(bad("a metadata URL needs a public domain name")),
                }
                if url.path() == "/" || url.path().ends_with('/') {
                    return Err(bad("a metadata URL needs a path to a document"));
                }
                // The URL is the client's identity: it must be written the
                // one way `url` writes it, or two spellings would be two
                // clients.
                if url.as_str() != client_id {
                    return Err(bad("the URL is not in canonical form"));
                }
                Ok(Self::Discoverable(url))
            }
            _ => Err(bad("must be an https URL or http://localhost")),
        }
    }

    fn loopback(client_id: &str, url: &Url) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::InvalidClientId(why.to_owned());
        if url.host() != Some(Host::Domain("localhost")) || url.port().is_some() {
            return Err(bad(
                "an http client_id must be http://localhost, without a port",
            ));
        }
        if url.path() != "/" {
            return Err(bad("a loopback client_id has no path"));
        }
        let (mut redirect_uris, mut scope) = (Vec::new(), None);
        for (name, value) in url.query_pairs() {
            match &*name {
                "redirect_uri" => {
                    let uri = value.into_owned();
                    if !is_loopback_ip_url(&uri) {
                        return Err(bad(
                            "a loopback client's redirect_uri must be http://127.0.0.1 or http://[::1]",
                        ));
                    }
                    redirect_uris.push(uri);
                }
                "scope" if scope.is_none() => scope = Some(value.into_owned()),
                "scope" => return Err(bad("scope given twice")),
                other => return Err(bad(&format!("unknown parameter {other:?}"))),
            }
        }
        if redirect_uris.is_empty() {
            redirect_uris = vec!["http://127.0.0.1/".to_owned(), "http://[::1]/".to_owned()];
        }
        let scope = scope.unwrap_or_else(|| "atproto".to_owned());
        check_scope(&scope).map_err(|e| bad(&e))?;
        Ok(Self::Loopback {
            id: client_id.to_owned(),
            redirect_uris,
            scope,
        })
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    /// A public client (a browser or native app): no credentials.
    None,
    /// A confidential client: a JWT signed with one of its keys.
    PrivateKeyJwt,
}

/// Where a confidential client's keys are.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientKeys {
    /// In the document (`jwks`).
    Inline(serde_json::Value),
    /// At a URL (`jwks_uri`).
    Uri(Url),
}

/// A client's validated metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientMetadata {
    /// The `client_id`, exactly.
    pub client_id: String,
    /// The registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The scopes it may ask for (space separated, `atproto` among them).
    pub scope: String,
    /// Whether it may use refresh tokens.
    pub refresh_tokens: bool,
    /// `native` (true) or `web`.
    pub native: bool,
    /// How it authenticates at the token endpoint.
    pub auth: TokenEndpointAuth,
    /// Its keys, for [`TokenEndpointAuth::PrivateKeyJwt`].
    pub keys: Option<ClientKeys>,
    /// Its name, logo and home page, as it claims them (unverified).
    pub client_name: Option<String>,
    /// See `client_name`.
    pub client_uri: Option<String>,
    /// See `client_name`.
    pub logo_uri: Option<String>,
    /// Its terms of service.
    pub tos_uri: Option<String>,
    /// Its privacy policy.
    pub policy_uri: Option<String>,
}

/// A metadata document as sent; checked into a [`ClientMetadata`].
#[derive(Debug, Deserialize)]
struct Document {
    client_id: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    response_types: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    scope: Option<String>,
    dpop_bound_access_tokens: Option<bool>,
    application_type: Option<String>,
    token_endpoint_auth_method: Option<String>,
    token_endpoint_auth_signing_alg: Option<String>,
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
    client_name: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
    tos_uri: Option<String>,
    policy_uri: Option<String>,
}

impl ClientMetadata {
    /// Validates `document`, fetched from the discoverable `client_id`.
    pub fn from_document(client_id: &Url, document: &[u8]) -> Result<Self, ClientError> {
        let bad = |why: String| ClientError::InvalidMetadata(why);
        let mut doc: Document = serde_json::from_slice(document).map_err(|e| bad(e.to_string()))?;
        if doc.client_id.as_deref() != Some(client_id.as_str()) {
            return Err(bad(
                "client_id must be the URL the document was fetched from".to_owned(),
            ));
        }
        if doc.redirect_uris.is_empty() {
            return Err(bad("redirect_uris must list at least one URI".to_owned()));
        }
        let response_types = doc
            .response_types
            .take()
            .unwrap_or_else(|| vec!["code".to_owned()]);
        if !response_types.iter().any(|t| t == "code") {
            return Err(bad("response_types must include code".to_owned()));
        }
        let refresh_tokens = check_grant_types(doc.grant_types.take())?;
        let scope = doc
            .scope
            .take()
            .ok_or_else(|| bad("scope is required".to_owned()))?;
        check_scope(&scope).map_err(bad)?;
        if doc.dpop_bound_access_tokens != Some(true) {
            return Err(bad("dpop_bound_access_tokens must be true".to_owned()));
        }
        let native = match doc.application_type.as_deref() {
            None | Some("web") => false,
            Some("native") => true,
            Some(other) => {
                return Err(bad(format!(
                    "application_type {other:?} is not web or native"
                )));
            }
        };
        let (auth, keys) = token_endpoint_auth(&mut doc, native)?;
        for uri in &doc.redirect_uris {
            check_redirect_uri(uri, client_id, native)?;
        }
        if let Some(uri) = &doc.client_uri {
            let same_host = Url::parse(uri).is_ok_and(|u| u.host() == client_id.host());
            if !same_host {
                return Err(bad("client_uri must be on the client_id's host".to_owned()));
            }
        }
        for (name, uri) in [
            ("logo_uri", &doc.logo_uri),
            ("tos_uri", &doc.tos_uri),
            ("policy_uri", &doc.policy_uri),
        ] {
            if uri.as_deref().is_some_and(|u| !u.starts_with("https://")) {
                return Err(bad(format!("{name} must be https")));
            }
        }
        Ok(Self {
            client_id: client_id.as_str().to_owned(),
            redirect_uris: doc.redirect_uris,
            scope,
            refresh_tokens,
            native,
            auth,
            keys,
            client_name: doc.client_name,
            client_uri: doc.client_uri,
            logo_uri: doc.logo_uri,
            tos_uri: doc.tos_uri,
            policy_uri: doc.policy_uri,
        })
    }

    /// The metadata of a loopback development client, from its `client_id`
    /// (see [`ClientId::Loopback`]): a public native client that may
    /// refresh.
    pub fn loopback(id: &str, redirect_uris: &[String], scope: &str) -> Self {
        Self {
            client_id: id.to_owned(),
            redirect_uris: redirect_uris.to_vec(),
            scope: scope.to_owned(),
            refresh_tokens: true,
            native: true,
            auth: TokenEndpointAuth::None,
            keys: None,
            client_name: None,
            client_uri: None,
            logo_uri: None,
            tos_uri: None,
            policy_uri: None,
        }
    }

    /// Whether an authorization request may redirect to `requested`: one
    /// of the registered URIs exactly, except that a registered loopback
    /// IP URI without a port matches any port (a native app listens where
    /// the system lets it).
    pub fn redirect_uri_allowed(&self, requested: &str) -> bool {
        self.redirect_uris.iter().any(|registered| {
            registered == requested
                || (is_loopback_ip_url(registered)
                    && match (Url::parse(registered), Url::parse(requested)) {
                        (Ok(r), Ok(q)) => {
                            r.port().is_none()
                                && r.scheme() == q.scheme()
                                && r.host() == q.host()
                                && r.path() == q.path()
                                && r.query() == q.query()
                                && q.fragment().is_none()
                        }
                        _ => false,
                    })
        })
    }
}

/// `grant_types` (default: `authorization_code` alone): only
/// `authorization_code` and `refresh_token`, each once, the first
/// required. Returns whether `refresh_token` is there.
fn check_grant_types(grant_types: Option<Vec<String>>) -> Result<bool, ClientError> {
    let bad = |why: String| ClientError::InvalidMetadata(why);
    let grant_types = grant_types.unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    let mut seen = std::collections::HashSet::new();
    for grant in &grant_types {
        if !matches!(grant.as_str(), "authorization_code" | "refresh_token")
            || !seen.insert(grant.as_str())
        {
            return Err(bad(format!(
                "grant_types: {grant:?} is not allowed (or repeated)"
            )));
        }
    }
    if !seen.contains("authorization_code") {
        return Err(bad("grant_types must include authorization_code".to_owned()));
    }
    Ok(seen.contains("refresh_token"))
}

/// The token endpoint authentication of `doc` (its keys taken out of it).
fn token_endpoint_auth(
    doc: &mut Document,
    native: bool,
) -> Result<(TokenEndpointAuth, Option<ClientKeys>), ClientError> {
    let bad = |why: &str| ClientError::InvalidMetadata(why.to_owned());
    match doc.token_endpoint_auth_method.as_deref() {
        Some("none") => {
            if doc.token_endpoint_auth_signing_alg.is_some() {
                return Err(bad(
                    "a public client has no token_endpoint_auth_signing_alg",
                ));
            }
            Ok((TokenEndpointAuth::None, None))
        }
        Some("private_key_jwt") => {
            if native {
                return Err(bad(
                    "native clients are public (token_endpoint_auth_method none)",
                ));
            }
            if matches!(
                doc.token_endpoint_auth_signing_alg.as_deref(),
                None | Some("none")
            ) {
                return Err(bad(
                    "private_key_jwt needs token_endpoint_auth_signing_alg (e.g. ES256)",
                ));
            }
            let keys = match (doc.jwks.take(), doc.jwks_uri.take()) {
                (Some(jwks), None) => {
                    let count = jwks
                        .get("keys")
                        .and_then(|k| k.as_array())
                        .map_or(0, Vec::len);
                    if count == 0 {
                        return Err(bad("jwks must hold at least one key"));
                    }
                    ClientKeys::Inline(jwks)
                }
                (None, Some(uri)) => {
                    let url = Url::parse(&uri).map_err(|e| bad(&format!("jwks_uri: {e}")))?;
                    if url.scheme() != "https" {
                        return Err(bad("jwks_uri must be https"));
                    }
                    ClientKeys::Uri(url)
                }
                _ => return Err(bad("private_key_jwt needs jwks or jwks_uri (one of them)")),
            };
            Ok((TokenEndpointAuth::PrivateKeyJwt, Some(keys)))
        }
        _ => Err(bad(
            "token_endpoint_auth_method must be none or private_key_jwt",
        )),
    }
}

/// The profile's rules for one registered redirect URI.
fn check_redirect_uri(uri: &str, client_id: &Url, native: bool) -> Result<(), ClientError> {
    let bad = |why: &str| ClientError::InvalidRedirectUri(format!("{uri}: {why}"));
    let url = Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("no credentials allowed"));
    }
    match url.scheme() {
        "https" => match url.host() {
            Some(Host::Domain(d)) if !is_local_hostname(d) => Ok(()),
            _ => Err(bad("an https redirect needs a public domain name")),
        },
        "http" if native && is_loopback_ip_url(uri) => Ok(()),
        "http" => Err(bad("http is only for native apps, on 127.0.0.1 or [::1]")),
        scheme if scheme.contains('.') => {
            if !native {
                return Err(bad("a private-use scheme is only for native apps"));
            }
            let reversed = client_id
                .host_str()
                .map(|h| h.split('.').rev().collect::<Vec<_>>().join("."));
            if reversed.as_deref() != Some(scheme) {
                return Err(bad(
                    "a private-use scheme must be the client_id's host reversed",
                ));
            }
            Ok(())
        }
        _ => Err(bad("not an https, loopback or private-use scheme URI")),
    }
}

/// Space-separated scopes, `atproto` among them, none twice.
fn check_scope(scope: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for s in scope.split(' ') {
        if s.is_empty() || !seen.insert(s) {
            return Err(format!("scope {scope:?}: empty or repeated entries"));
        }
    }
    if seen.contains("atproto") {
        Ok(())
    } else {
        Err("scope must include atproto".to_owned())
    }
}

fn is_loopback_ip_url(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| {
        u.scheme() == "http"
            && match u.host() {
                Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
                Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
                _ => false,
            }
    })
}

/// `localhost`, `*.local`, `*.localhost` and single-label names: not names
/// a client elsewhere can own.
fn is_local_hostname(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let top = host.rsplit('.').next().unwrap_or_default();
    !host.contains('.') || matches!(top, "localhost" | "local" | "internal")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::{Value, json};

    const ID: &str = "https://app.example.com/client-metadata.json";

    fn id() -> Url {
        Url::parse(ID).unwrap()
    }

    fn public_web_client() -> Value {
        json!({
            "client_id": ID,
            "client_name": "Example",
            "redirect_uris": ["https://app.example.com/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "atproto transition:generic",
            "dpop_bound_access_tokens": true,
            "token_endpoint_auth_method": "none",
        })
    }

    fn check(doc: &Value) -> Result<ClientMetadata, ClientError> {
        ClientMetadata::from_document(&id(), &serde_json::to_vec(doc).unwrap())
    }

    #[test]
    fn client_ids_are_metadata_urls_or_loopback() {
        assert_eq!(ClientId::parse(ID).unwrap(), ClientId::Discoverable(id()));
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com:8443/meta.json",
            "https://localhost/meta.json",
            "https://10.0.0.1/meta.json",
            "https://user@app.example.com/meta.json",
            "https://app.example.com/meta.json#x",
            "https://APP.example.com/meta.json",
            "ftp://app.example.com/meta.json",
            "http://app.example.com/meta.json",
            "http://localhost:8080",
            "http://127.0.0.1",
            "http://localhost/path",
            "http://localhost?redirect_uri=http%3A%2F%2Flocalhost%2Fcb",
            "http://localhost?scope=transition%3Ageneric",
            "http://localhost?other=1",
        ] {
            let err = ClientId::parse(bad).unwrap_err();
            assert_eq!(err.oauth_error(), "invalid_client_metadata", "{bad}");
        }
    }

    #[test]
    fn a_loopback_client_gets_its_query_or_the_defaults() {
        let ClientId::Loopback {
            id,
            redirect_uris,
            scope,
        } = ClientId::parse("http://localhost").unwrap()
        else {
            panic!("not loopback");
        };
        assert_eq!(id, "http://localhost");
        assert_eq!(redirect_uris, ["http://127.0.0.1/", "http://[::1]/"]);
        assert_eq!(scope, "atproto");
        let given = "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&scope=atproto%20transition%3Ageneric";
        let ClientId::Loopback {
            redirect_uris,
            scope,
            ..
        } = ClientId::parse(given).unwrap()
        else {
            panic!("not loopback");
        };
        assert_eq!(redirect_uris, ["http://127.0.0.1/callback"]);
        assert_eq!(scope, "atproto transition:generic");
        let meta = ClientMetadata::loopback(given, &redirect_uris, &scope);
        assert_eq!(
            (meta.auth, meta.native, meta.refresh_tokens),
            (TokenEndpointAuth::None, true, true)
        );
        // Any port on a registered loopback URI without one; nothing else.
        assert!(meta.redirect_uri_allowed("http://127.0.0.1:51234/callback"));
        assert!(meta.redirect_uri_allowed("http://127.0.0.1/callback"));
        assert!(!meta.redirect_uri_allowed("http://127.0.0.1:51234/other"));
        assert!(!meta.redirect_uri_allowed("http://localhost:51234/callback"));
    }

    #[test]
    fn a_valid_public_web_client() {
        let meta = check(&public_web_client()).unwrap();
        assert_eq!(meta.client_id, ID);
        assert_eq!(
            (meta.auth, meta.native, meta.refresh_tokens),
            (TokenEndpointAuth::None, false, true)
        );
        assert!(meta.redirect_uri_allowed("https://app.example.com/callback"));
        assert!(!meta.redirect_uri_allowed("https://app.example.com/callback?x=1"));
        assert!(!meta.redirect_uri_allowed("https://evil.example.com/callback"));
    }

    #[test]
    fn a_confidential_client_names_its_keys() {
        let mut doc = public_web_client();
        doc["token_endpoint_auth_method"] = json!("private_key_jwt");
        doc["token_endpoint_auth_signing_alg"] = json!("ES256");
        doc["jwks_uri"] = json!("https://app.example.com/jwks.json");
        let meta = check(&doc).unwrap();
        assert_eq!(meta.auth, TokenEndpointAuth::PrivateKeyJwt);
        assert_eq!(
            meta.keys,
            Some(ClientKeys::Uri(
                Url::parse("https://app.example.com/jwks.json").unwrap()
            ))
        );
        // Both key sources, neither, an empty set, no alg: refused.
        let mut both = doc.clone();
        both["jwks"] = json!({"keys": [{"kty": "EC"}]});
        let mut neither = doc.clone();
        neither.as_object_mut().unwrap().remove("jwks_uri");
        let mut empty = neither.clone();
        empty["jwks"] = json!({"keys": []});
        let mut no_alg = doc.clone();
        no_alg
            .as_object_mut()
            .unwrap()
            .remove("token_endpoint_auth_signing_alg");
        for bad in [both, neither, empty, no_alg] {
            assert!(
                matches!(check(&bad), Err(ClientError::InvalidMetadata(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn documents_breaking_the_profile_are_refused() {
        let cases: Vec<(&str, Value)> = vec![
            (
                "client_id",
                json!("https://other.example.com/client-metadata.json"),
            ),
            ("redirect_uris", json!([])),
            ("response_types", json!(["token"])),
            ("grant_types", json!(["implicit"])),
            ("grant_types", json!(["refresh_token"])),
            (
                "grant_types",
                json!(["authorization_code", "authorization_code"]),
            ),
            ("scope", json!("transition:generic")),
            ("scope", json!("atproto  atproto")),
            ("dpop_bound_access_tokens", json!(false)),
            ("application_type", json!("desktop")),
            ("token_endpoint_auth_method", json!("client_secret_basic")),
            ("token_endpoint_auth_signing_alg", json!("ES256")),
            ("client_uri", json!("https://evil.example.com/")),
            ("logo_uri", json!("http://app.example.com/logo.png")),
        ];
        for (field, value) in cases {
            let mut doc = public_web_client();
            doc[field] = value.clone();
            let err = check(&doc).unwrap_err();
            assert_eq!(
                err.oauth_error(),
                "invalid_client_metadata",
                "{field} = {value}: {err}"
            );
        }
        for field in [
            "scope",
            "dpop_bound_access_tokens",
            "token_endpoint_auth_method",
        ] {
            let mut doc = public_web_client();
            doc.as_object_mut().unwrap().remove(field);
            assert!(check(&doc).is_err(), "without {field}");
        }
        assert!(ClientMetadata::from_document(&id(), b"not json").is_err());
    }

    #[test]
    fn redirect_uris_follow_the_application_type() {
        let with = |native: bool, uri: &str| {
            let mut doc = public_web_client();
            doc["application_type"] = json!(if native { "native" } else { "web" });
            doc["redirect_uris"] = json!([uri]);
            check(&doc)
        };
        assert!(with(false, "https://app.example.com/cb").is_ok());
        assert!(with(true, "com.example.app:/callback").is_ok());
        assert!(with(true, "http://127.0.0.1/callback").is_ok());
        assert!(with(true, "http://[::1]/callback").is_ok());
        for (native, uri) in [
            (false, "com.example.app:/callback"),
            (true, "org.evil.app:/callback"),
            (false, "http://127.0.0.1/callback"),
            (true, "http://localhost/callback"),
            (false, "https://localhost/cb"),
            (false, "https://user:pw@app.example.com/cb"),
            (false, "javascript:alert(1)"),
        ] {
            let err = with(native, uri).unwrap_err();
            assert_eq!(err.oauth_error(), "invalid_redirect_uri", "{uri}: {err}");
        }
    }
}
