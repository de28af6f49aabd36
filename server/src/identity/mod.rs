//! Identity services the PDS talks to over the network.
//!
//! The rules of `did:plc` (operations, DID derivation, the directory's
//! acceptance rules) live in `aurora_core::identity`, free of HTTP. This
//! module is the PDS's side of the wire: it sends signed operations to the
//! PLC directory (`AURORA_PLC_URL`), reads identities back from it, and
//! resolves handles and DIDs as the ATProto handle and DID specs say.
//!
//! - [`plc_client`] — [`PlcClient`], the HTTP client of the PLC directory;
//! - [`handle_resolver`] — [`HandleResolver`]: a handle to its DID, by DNS
//!   TXT (`_atproto.<handle>`) and HTTPS (`/.well-known/atproto-did`);
//! - [`did_resolver`] — [`DidResolver`]: a `did:plc` or `did:web` to its
//!   [`DidDocument`] ([`did_document`]);
//! - [`resolver`] — [`IdentityResolver`]: both together, with the
//!   bidirectional handle check of `com.atproto.identity.resolveIdentity`;
//! - [`cache`] — [`CacheConfig`], how long the resolvers keep answers.
//!
//! Every HTTP client here comes from [`http_client`]: rustls on the *ring*
//! crypto provider (passed explicitly, never installed process-wide), with
//! the platform's root certificates (`rustls-platform-verifier`, which on
//! Linux reads the system's CA bundle).

pub mod cache;
pub mod did_document;
pub mod did_resolver;
pub mod handle_resolver;
pub mod plc_client;
mod public_net;
pub mod resolver;

pub use cache::CacheConfig;
pub use did_document::{DidDocument, DidDocumentError, Service, VerificationMethod};
pub use did_resolver::{DidResolveError, DidResolver, DidResolverConfig};
pub use handle_resolver::{
    DnsLookupError, HandleResolveError, HandleResolver, HandleResolverConfig, SystemTxtLookup,
    TxtAnswer, TxtFuture, TxtLookup, parse_txt_records,
};
pub use plc_client::{PlcClient, PlcClientError, PlcDocument};
pub(crate) use public_net::{PublicAddressesOnly, is_public};
pub use resolver::{IdentityError, IdentityResolver, ResolvedIdentity, UnavailableCause};

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::redirect::Policy;

/// The `User-Agent` of every identity request.
pub const USER_AGENT: &str = concat!("aurora/", env!("CARGO_PKG_VERSION"));

/// Top-level domains that the handle spec reserves: handles (and `did:web`
/// hosts) under them must fail resolution at once, without a lookup.
pub const DISALLOWED_TLDS: [&str; 8] = [
    "alt",
    "arpa",
    "example",
    "internal",
    "invalid",
    "local",
    "localhost",
    "onion",
];

/// The top-level domain for testing and development: allowed only when a
/// resolver is configured for tests (`allow_test_hosts`).
pub const TEST_TLD: &str = "test";

/// Why an identity client could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The HTTP client (or its TLS configuration) could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
    /// The DNS resolver could not be configured.
    #[error("cannot set up the DNS resolver: {0}")]
    Dns(String),
}

/// An HTTP client for identity services: HTTPS through rustls on the ring
/// provider with the platform's root certificates, plain HTTP too, each
/// request (connecting included) limited to `timeout`, redirects not
/// followed, [`USER_AGENT`].
///
/// Clients share one TLS configuration, built on first use. When the system
/// has no usable root certificates, that configuration trusts no
/// certificate (every HTTPS request then fails, plain HTTP still works) and
/// a warning is logged once: install the system's CA certificates.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, SetupError> {
    build_client(timeout, Policy::none())
}

/// [`http_client`] with another redirect policy.
pub(crate) fn build_client(
    timeout: Duration,
    redirects: Policy,
) -> Result<reqwest::Client, SetupError> {
    client_builder()?
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(redirects)
        .build()
        .map_err(|e| SetupError::Http(error_chain(&e)))
}

/// [`build_client`] for URLs that strangers choose: names resolve to
/// public addresses only, unless `allow_private` (tests, local
/// development).
pub(crate) fn build_outbound_client(
    timeout: Duration,
    redirects: Policy,
    allow_private: bool,
) -> Result<reqwest::Client, SetupError> {
    let mut builder = client_builder()?
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(redirects);
    if !allow_private {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicAddressesOnly));
    }
    builder
        .build()
        .map_err(|e| SetupError::Http(error_chain(&e)))
}

/// A client builder with the shared TLS configuration (see
/// [`http_client`]), [`USER_AGENT`] and no redirects, for clients that need
/// other timeouts (or a DNS resolver) than [`http_client`]'s.
pub(crate) fn client_builder() -> Result<reqwest::ClientBuilder, SetupError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .redirect(Policy::none())
        .user_agent(USER_AGENT))
}

/// The shared TLS client configuration (see [`http_client`]).
fn tls_config() -> Result<rustls::ClientConfig, SetupError> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, SetupError>> = OnceLock::new();
    CONFIG.get_or_init(build_tls_config).clone()
}

fn build_tls_config() -> Result<rustls::ClientConfig, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Http(format!("TLS: {e}")))?;
    let builder = match rustls_platform_verifier::Verifier::new(provider) {
        Ok(verifier) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier)),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no usable system root certificates: HTTPS requests to identity services \
                 (PLC directory, handle and did:web resolution) will fail; install the \
                 system's CA certificates"
            );
            builder.with_root_certificates(rustls::RootCertStore::empty())
        }
    };
    let mut config = builder.with_no_client_auth();
    // reqwest is built without HTTP/2 here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Why a response body could not be read.
pub(crate) enum ReadError {
    /// Longer than allowed.
    TooLong,
    /// The connection failed or timed out while reading.
    Failed(reqwest::Error),
}

/// Reads a response body of at most `max` bytes.
pub(crate) async fn read_limited(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Bytes, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(ReadError::TooLong);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Failed)? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A redirect policy for resolution requests: at most `max` redirects,
/// never from `https` to another scheme, and (unless `allow_private`)
/// never to an address that is not public: a literal IP in a redirect
/// does not pass through the public-only resolver.
pub(crate) fn redirect_policy(max: usize, allow_private: bool) -> Policy {
    Policy::custom(move |attempt| {
        let started_secure = attempt
            .previous()
            .first()
            .is_some_and(|u| u.scheme() == "https");
        let private_target = !allow_private
            && match attempt.url().host() {
                Some(url::Host::Ipv4(ip)) => !is_public(ip.into()),
                Some(url::Host::Ipv6(ip)) => !is_public(ip.into()),
                _ => false,
            };
        // `previous` holds the first URL too, so it has one more entry than
        // the redirects followed so far.
        if attempt.previous().len() > max {
            attempt.error(format!("more than {max} redirects"))
        } else if started_secure && attempt.url().scheme() != "https" {
            attempt.error("redirect from https to another scheme")
        } else if private_target {
            attempt.error("redirect to an address that is not public")
        } else {
            attempt.follow()
        }
    })
}

/// Why a hostname (of a handle, or of a `did:web`) must not be resolved,
/// or `None` when it may be: a reserved top-level domain, or `.test` when
/// test hosts are not allowed.
pub(crate) fn refused_host(host: &str, allow_test_hosts: bool) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let tld = host.rsplit('.').next().unwrap_or_default();
    if DISALLOWED_TLDS.contains(&tld) {
        Some(format!("the top-level domain .{tld} is reserved"))
    } else if tld == TEST_TLD && !allow_test_hosts {
        Some(format!(
            "the top-level domain .{TEST_TLD} is for testing only"
        ))
    } else {
        None
    }
}

/// An error and its causes, `: `-separated (reqwest's own message names
/// only the step that failed; the cause says why).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_client_builds_with_tls() {
        let client = http_client(Duration::from_secs(5));
        assert!(client.is_ok(), "{client:?}");
        // Twice: the shared TLS configuration is reused.
        assert!(http_client(Duration::from_millis(1)).is_ok());
        assert!(build_client(Duration::from_secs(1), redirect_policy(3, false)).is_ok());
        let config = tls_config().unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[tokio::test]
    async fn https_is_attempted_not_refused_for_lack_of_tls() {
        // Nothing listens on this port: the request must fail connecting,
        // not because the client cannot speak TLS.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = http_client(Duration::from_secs(5)).unwrap();
        let err = client
            .get(format!("https://{addr}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{}", error_chain(&err));
    }

    #[test]
    fn reserved_hosts() {
        assert_eq!(refused_host("alice.example.com", false), None);
        assert!(refused_host("alice.test", false).is_some());
        assert_eq!(refused_host("alice.test", true), None);
        for host in [
            "a.alt",
            "x.arpa",
            "a.example",
            "a.internal",
            "handle.invalid",
            "laptop.local",
            "a.localhost",
            "a.onion",
            "A.ONION",
        ] {
            assert!(refused_host(host, true).is_some(), "{host}");
        }
    }
}
