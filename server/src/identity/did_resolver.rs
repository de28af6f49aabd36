//! DID resolution: a DID to its [`DidDocument`], for the two methods
//! ATProto supports (<https://atproto.com/specs/did>).
//!
//! - `did:plc`: the document the PLC directory serves
//!   ([`PlcClient::document_state`]); `404` means the DID does not exist,
//!   `410` that it was deactivated (tombstoned).
//! - `did:web`: `https://<host>/.well-known/did.json`. Only hostname-level
//!   DIDs (`did:web:example.com`): path-based ones are not supported, the
//!   host must be a valid hostname outside the reserved top-level domains,
//!   and a port (percent-encoded, `did:web:localhost%3A8080`) is allowed
//!   only for `localhost`, which is fetched over plain HTTP and only when
//!   the resolver allows test hosts (the spec allows it for testing and
//!   development only). The body is read up to [`MAX_DID_DOCUMENT_BYTES`];
//!   `404` means not found, `410` deactivated.
//!
//! Either way the document's `id` must be the DID asked for. Answers are
//! cached like the handle resolver's ([`CacheConfig`]).

use std::sync::Arc;
use std::time::Duration;

use aurora_core::identity::plc::{DID_PLC_ID_LEN, DID_PLC_PREFIX};
use aurora_core::syntax::{Did, Handle};
use http::StatusCode;
use http::header::ACCEPT;
use url::Url;

use super::cache::{CacheConfig, TtlCache};
use super::did_document::DidDocument;
use super::plc_client::{PlcClient, PlcClientError, PlcDocument};
use super::{ReadError, SetupError, error_chain, read_limited, refused_host};

/// The default deadline of a `did:web` request (connecting and reading).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest `did:web` document read, in bytes.
pub const MAX_DID_DOCUMENT_BYTES: usize = 128 * 1024;

/// The most redirects followed for a `did:web` document.
pub const MAX_REDIRECTS: usize = 3;

/// The prefix of every `did:web` DID.
pub const DID_WEB_PREFIX: &str = "did:web:";

/// How a [`DidResolver`] works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidResolverConfig {
    /// Deadline of a `did:web` request. (`did:plc` requests use the
    /// [`PlcClient`]'s own.)
    pub http_timeout: Duration,
    /// How long answers are kept.
    pub cache: CacheConfig,
    /// Whether `did:web` hosts for testing may be resolved: `.test` hosts,
    /// and `localhost` (with an optional port, over plain HTTP). Never in
    /// production: it lets anyone make the server fetch from itself.
    pub allow_test_hosts: bool,
}

impl Default for DidResolverConfig {
    fn default() -> Self {
        Self {
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            cache: CacheConfig::default(),
            allow_test_hosts: false,
        }
    }
}

/// Why a DID did not resolve to a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidResolveError {
    /// The DID's method is not `plc` or `web`, or the DID is not a valid
    /// (or allowed) one of its method.
    #[error("DID {did} cannot be resolved: {reason}")]
    Unsupported {
        /// The DID.
        did: Did,
        /// Why.
        reason: String,
    },
    /// There is no such DID.
    #[error("DID {did} not found")]
    NotFound {
        /// The DID.
        did: Did,
    },
    /// The DID was deactivated (a `did:plc` tombstone).
    #[error("DID {did} is deactivated")]
    Deactivated {
        /// The DID.
        did: Did,
    },
    /// An answer came, but it is not a DID document of this DID.
    #[error("the DID document of {did} is malformed: {reason}")]
    Malformed {
        /// The DID.
        did: Did,
        /// What is wrong.
        reason: String,
    },
    /// No answer (unreachable, timed out, a server error): whether the DID
    /// resolves is not known.
    #[error("cannot resolve DID {did}: {reason}")]
    Unavailable {
        /// The DID.
        did: Did,
        /// What failed.
        reason: String,
    },
}

impl DidResolveError {
    /// The DID that did not resolve.
    pub fn did(&self) -> &Did {
        match self {
            Self::Unsupported { did, .. }
            | Self::NotFound { did }
            | Self::Deactivated { did }
            | Self::Malformed { did, .. }
            | Self::Unavailable { did, .. } => did,
        }
    }
}

/// Resolves DIDs to documents (see the module docs).
///
/// Cheap to clone: clones share the cache and the HTTP connection pools.
#[derive(Debug, Clone)]
pub struct DidResolver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: DidResolverConfig,
    plc: PlcClient,
    http: reqwest::Client,
    cache: TtlCache<Did, Arc<DidDocument>, DidResolveError>,
}

impl DidResolver {
    /// A resolver asking `plc` for `did:plc` documents.
    pub fn new(plc: PlcClient, config: DidResolverConfig) -> Result<Self, SetupError> {
        // Handles and did:web hosts are chosen by whoever registers them.
        let http = super::build_outbound_client(
            config.http_timeout,
            super::redirect_policy(MAX_REDIRECTS, config.allow_test_hosts),
            config.allow_test_hosts,
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                cache: TtlCache::new(config.cache),
                config,
                plc,
                http,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DidResolverConfig {
        &self.inner.config
    }

    /// The PLC directory client.
    pub fn plc_client(&self) -> &PlcClient {
        &self.inner.plc
    }

    /// The document of `did`, from the cache when it holds an unexpired
    /// answer (a failure included).
    pub async fn resolve(&self, did: &Did) -> Result<Arc<DidDocument>, DidResolveError> {
        if let Some(answer) = self.inner.cache.get(did) {
            return answer;
        }
        self.resolve_fresh(did).await
    }

    /// The document of `did` now, fetched without the cache (for example
    /// after the PDS changed it); the answer replaces the cached one.
    pub async fn resolve_fresh(&self, did: &Did) -> Result<Arc<DidDocument>, DidResolveError> {
        let answer = self.fetch(did).await.map(Arc::new);
        self.inner.cache.insert(did.clone(), answer.clone());
        answer
    }

    /// Forgets the cached answer for `did`.
    pub fn invalidate(&self, did: &Did) {
        self.inner.cache.remove(did);
    }

    /// Forgets every cached answer.
    pub fn purge(&self) {
        self.inner.cache.clear();
    }

    async fn fetch(&self, did: &Did) -> Result<DidDocument, DidResolveError> {
        let unsupported = |reason: String| DidResolveError::Unsupported {
            did: did.clone(),
            reason,
        };
        let raw = match did.method() {
            "plc" => {
                check_plc(did).map_err(unsupported)?;
                self.fetch_plc(did).await?
            }
            "web" => {
                let url =
                    did_web_url(did, self.inner.config.allow_test_hosts).map_err(unsupported)?;
                self.fetch_web(did, url).await?
            }
            other => {
                return Err(unsupported(format!(
                    "the {other} DID method is not supported"
                )));
            }
        };
        let doc = DidDocument::from_json(raw).map_err(|e| DidResolveError::Malformed {
            did: did.clone(),
            reason: e.to_string(),
        })?;
        if doc.id != *did {
            return Err(DidResolveError::Malformed {
                did: did.clone(),
                reason: format!("the document is for {}", doc.id),
            });
        }
        Ok(doc)
    }

    async fn fetch_plc(&self, did: &Did) -> Result<serde_json::Value, DidResolveError> {
        match self.inner.plc.document_state(did).await {
            Ok(PlcDocument::Active(doc)) => Ok(doc),
            Ok(PlcDocument::NotFound) => Err(DidResolveError::NotFound { did: did.clone() }),
            Ok(PlcDocument::Deactivated) => Err(DidResolveError::Deactivated { did: did.clone() }),
            Err(PlcClientError::Malformed { reason, .. }) => Err(DidResolveError::Malformed {
                did: did.clone(),
                reason,
            }),
            Err(PlcClientError::Rejected { status, .. }) if status.is_client_error() => {
                Err(DidResolveError::NotFound { did: did.clone() })
            }
            Err(e) => Err(DidResolveError::Unavailable {
                did: did.clone(),
                reason: e.to_string(),
            }),
        }
    }

    async fn fetch_web(&self, did: &Did, url: Url) -> Result<serde_json::Value, DidResolveError> {
        let unavailable = |reason: String| DidResolveError::Unavailable {
            did: did.clone(),
            reason: format!("{url}: {reason}"),
        };
        let mut response = self
            .inner
            .http
            .get(url.clone())
            .header(ACCEPT, "application/did+ld+json, application/json;q=0.9")
            .send()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::NOT_FOUND => return Err(DidResolveError::NotFound { did: did.clone() }),
            StatusCode::GONE => return Err(DidResolveError::Deactivated { did: did.clone() }),
            status => return Err(unavailable(format!("answered {status}"))),
        }
        let body = match read_limited(&mut response, MAX_DID_DOCUMENT_BYTES).await {
            Ok(body) => body,
            Err(ReadError::TooLong) => {
                return Err(DidResolveError::Malformed {
                    did: did.clone(),
                    reason: format!("{url}: longer than {MAX_DID_DOCUMENT_BYTES} bytes"),
                });
            }
            Err(ReadError::Failed(e)) => return Err(unavailable(error_chain(&e))),
        };
        serde_json::from_slice(&body).map_err(|e| DidResolveError::Malformed {
            did: did.clone(),
            reason: format!("{url}: not JSON: {e}"),
        })
    }
}

/// Checks a `did:plc`: `did:plc:` and 24 characters of lowercase base32.
fn check_plc(did: &Did) -> Result<(), String> {
    let id = did
        .as_str()
        .strip_prefix(DID_PLC_PREFIX)
        .unwrap_or_default();
    let base32 = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
    if id.len() == DID_PLC_ID_LEN && id.bytes().all(base32) {
        Ok(())
    } else {
        Err(format!(
            "a did:plc is {DID_PLC_ID_LEN} characters of lowercase base32 after \"{DID_PLC_PREFIX}\""
        ))
    }
}

/// The URL of the document of a `did:web` (see the module docs for the
/// rules); `allow_test_hosts` admits `.test` hosts and `localhost` with an
/// optional port over plain HTTP.
pub fn did_web_url(did: &Did, allow_test_hosts: bool) -> Result<Url, String> {
    let id = did
        .as_str()
        .strip_prefix(DID_WEB_PREFIX)
        .ok_or_else(|| "not a did:web".to_owned())?;
    if id.contains(':') {
        return Err("path-based did:web DIDs are not supported".to_owned());
    }
    // The only percent-encoding a hostname-level did:web has is the port's
    // colon.
    let decoded = id.replace("%3A", ":").replace("%3a", ":");
    if decoded.contains('%') {
        return Err("invalid percent-encoding (only %3A before a port is allowed)".to_owned());
    }
    let (host, port) = match decoded.split_once(':') {
        Some((host, port)) => {
            let port: u16 = port.parse().map_err(|_| format!("invalid port {port:?}"))?;
            (host.to_ascii_lowercase(), Some(port))
        }
        None => (decoded.to_ascii_lowercase(), None),
    };
    let scheme = if host == "localhost" {
        if !allow_test_hosts {
            return Err("did:web:localhost is for testing and development only".to_owned());
        }
        "http"
    } else {
        if port.is_some() {
            return Err("a port is allowed only for localhost".to_owned());
        }
        Handle::parse(host.as_str()).map_err(|e| format!("invalid hostname: {}", e.reason))?;
        if let Some(reason) = refused_host(&host, allow_test_hosts) {
            return Err(reason);
        }
        "https"
    };
    let authority = match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    Url::parse(&format!("{scheme}://{authority}/.well-known/did.json"))
        .map_err(|e| format!("invalid URL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(did: &str, test_hosts: bool) -> Result<String, String> {
        did_web_url(&Did::parse(did).unwrap(), test_hosts).map(String::from)
    }

    #[test]
    fn did_web_urls() {
        assert_eq!(
            url("did:web:example.com", false).unwrap(),
            "https://example.com/.well-known/did.json"
        );
        assert_eq!(
            url("did:web:Example.COM", false).unwrap(),
            "https://example.com/.well-known/did.json"
        );
        assert_eq!(
            url("did:web:localhost%3A8080", true).unwrap(),
            "http://localhost:8080/.well-known/did.json"
        );
        assert_eq!(
            url("did:web:localhost", true).unwrap(),
            "http://localhost/.well-known/did.json"
        );
        assert_eq!(
            url("did:web:pds.test", true).unwrap(),
            "https://pds.test/.well-known/did.json"
        );
        for (did, test_hosts) in [
            ("did:web:localhost%3A8080", false),
            ("did:web:localhost", false),
            ("did:web:pds.test", false),
            ("did:web:example.com:user:alice", true),
            ("did:web:example.com%3A8443", true),
            ("did:web:localhost%3Anope", true),
            ("did:web:localhost%3A99999", true),
            ("did:web:example.com%2Fpath", true),
            ("did:web:127.0.0.1", true),
            ("did:web:com", true),
            ("did:web:printer.local", true),
            ("did:web:example.onion", true),
        ] {
            assert!(url(did, test_hosts).is_err(), "{did}");
        }
    }

    #[test]
    fn plc_syntax() {
        let ok = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
        assert!(check_plc(&ok).is_ok());
        for bad in [
            "did:plc:ewvi7nxzyoun6zhxrhs64oi",
            "did:plc:ewvi7nxzyoun6zhxrhs64oiz2",
            "did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ",
            "did:plc:ewvi7nxzyoun6zhxrhs64oi1",
        ] {
            assert!(check_plc(&Did::parse(bad).unwrap()).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn unsupported_dids_fail_without_a_request() {
        // The PLC client points nowhere reachable; nothing is sent.
        let plc = PlcClient::new("http://127.0.0.1:9").unwrap();
        let resolver = DidResolver::new(plc, DidResolverConfig::default()).unwrap();
        for did in [
            "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N",
            "did:plc:short",
            "did:web:localhost%3A1234",
            "did:web:example.com:path",
        ] {
            let err = resolver
                .resolve(&Did::parse(did).unwrap())
                .await
                .unwrap_err();
            assert!(
                matches!(err, DidResolveError::Unsupported { .. }),
                "{did}: {err:?}"
            );
        }
    }
}
