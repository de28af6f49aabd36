//! Handle resolution: a handle to the DID it claims, as the ATProto handle
//! spec (<https://atproto.com/specs/handle>) describes.
//!
//! Two methods, tried in this order:
//!
//! 1. **DNS TXT**: the TXT records of `_atproto.<handle>`. Values that do
//!    not start with `did=` are ignored, as are `did=` values that are not
//!    valid DIDs; one DID (possibly in several records) is the answer, and
//!    *different* DIDs make resolution fail ([`HandleResolveError::Conflicting`])
//!    without trying HTTPS, as the spec says.
//! 2. **HTTPS well-known**: `GET https://<handle>/.well-known/atproto-did`;
//!    a 2xx answer whose body, stripped of surrounding whitespace, is a
//!    DID. The body is read up to [`MAX_WELL_KNOWN_BYTES`], at most
//!    [`MAX_REDIRECTS`] redirects are followed (never from `https` to
//!    `http`), and the request has a deadline.
//!
//! DNS is asked first because the spec prefers its answer when both
//! methods answer differently; HTTPS is asked only when DNS gave no DID.
//!
//! Handles under the top-level domains the spec reserves (`.local`,
//! `.onion`, `.invalid`, ...) fail at once, and so do `.test` handles
//! unless the resolver allows test hosts.
//!
//! Answers are cached ([`CacheConfig`]): [`HandleResolver::resolve`] uses
//! the cache, [`HandleResolver::resolve_fresh`] bypasses it (and refreshes
//! it), [`HandleResolver::invalidate`] and [`HandleResolver::purge`] forget.
//! Note that a *bidirectionally* valid handle also needs the DID document
//! to claim it: see [`IdentityResolver`](super::IdentityResolver).
//!
//! DNS lookups go through [`TxtLookup`]: [`SystemTxtLookup`] (hickory, with
//! the system's resolver configuration) in production, anything in tests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aurora_core::syntax::{Did, Handle};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{CLOUDFLARE, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use http::header::{ACCEPT, HOST};
use url::Url;

use super::cache::{CacheConfig, TtlCache};
use super::{ReadError, SetupError, error_chain, read_limited, refused_host};

/// The default deadline of the HTTPS method (connecting and reading).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The default deadline of one DNS query (each of up to two attempts).
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest `/.well-known/atproto-did` body read: a DID (at most 2048
/// characters) with room for some surrounding whitespace.
pub const MAX_WELL_KNOWN_BYTES: usize = 4096;

/// The most redirects followed by the HTTPS method.
pub const MAX_REDIRECTS: usize = 3;

/// The most characters of a DNS name.
const MAX_DNS_NAME_LEN: usize = 253;

/// The longest reason kept from an unexpected answer.
const MAX_REASON_CHARS: usize = 200;

/// How a [`HandleResolver`] works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleResolverConfig {
    /// Deadline of the HTTPS method, connecting and reading included.
    pub http_timeout: Duration,
    /// Deadline of each DNS query ([`SystemTxtLookup`] only).
    pub dns_timeout: Duration,
    /// How long answers are kept.
    pub cache: CacheConfig,
    /// Whether `.test` handles may be resolved (tests and development
    /// only: the spec says they must fail in real-world use).
    pub allow_test_hosts: bool,
    /// For tests: send the HTTPS method's request to this base URL
    /// (`{base}/.well-known/atproto-did`, e.g. a loopback server on plain
    /// HTTP) with the handle in the `Host` header, instead of to
    /// `https://<handle>`.
    pub well_known_override: Option<Url>,
}

impl Default for HandleResolverConfig {
    fn default() -> Self {
        Self {
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            cache: CacheConfig::default(),
            allow_test_hosts: false,
            well_known_override: None,
        }
    }
}

/// Why a handle did not resolve to a DID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleResolveError {
    /// The handle is under a reserved top-level domain (or `.test`, when
    /// not allowed): it is not looked up.
    #[error("handle {handle} cannot be resolved: {reason}")]
    Refused {
        /// The handle.
        handle: Handle,
        /// Why.
        reason: String,
    },
    /// Both methods answered, and neither gave a DID.
    #[error("handle {handle} does not resolve to a DID (DNS: {dns}; HTTPS: {https})")]
    NotFound {
        /// The handle.
        handle: Handle,
        /// What the DNS method found.
        dns: String,
        /// What the HTTPS method found.
        https: String,
    },
    /// The DNS TXT records name different DIDs: resolution fails.
    #[error(
        "handle {handle} has DNS TXT records naming different DIDs: {}",
        join(dids)
    )]
    Conflicting {
        /// The handle.
        handle: Handle,
        /// The DIDs named, in record order.
        dids: Vec<Did>,
    },
    /// The DNS lookup itself failed (no answer from the resolver, a server
    /// failure) and HTTPS gave no DID: whether the handle resolves is not
    /// known.
    #[error("cannot resolve handle {handle}: DNS lookup failed ({dns}); HTTPS: {https}")]
    Unavailable {
        /// The handle.
        handle: Handle,
        /// Why the DNS lookup failed.
        dns: String,
        /// What the HTTPS method found.
        https: String,
    },
}

impl HandleResolveError {
    /// The handle that did not resolve.
    pub fn handle(&self) -> &Handle {
        match self {
            Self::Refused { handle, .. }
            | Self::NotFound { handle, .. }
            | Self::Conflicting { handle, .. }
            | Self::Unavailable { handle, .. } => handle,
        }
    }

    /// Whether the failure says nothing about the handle (the DNS lookup
    /// failed): a later attempt may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

fn join(dids: &[Did]) -> String {
    dids.iter().map(Did::as_str).collect::<Vec<_>>().join(", ")
}

/// A DNS lookup that failed: no answer, or a server failure. A name that
/// does not exist or has no TXT records is not a failure but an empty
/// answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DnsLookupError(pub String);

/// The future of [`TxtLookup::txt`].
pub type TxtFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<String>, DnsLookupError>> + Send + 'a>>;

/// DNS TXT lookups, injectable for tests.
pub trait TxtLookup: fmt::Debug + Send + Sync {
    /// The TXT records of `name` (a fully qualified name ending in `.`),
    /// each as one string (a record's character-strings concatenated).
    /// A name that does not exist, or has no TXT records, gives `Ok` of an
    /// empty list.
    fn txt<'a>(&'a self, name: &'a str) -> TxtFuture<'a>;
}

/// [`TxtLookup`] through hickory's resolver, configured from the system
/// (`/etc/resolv.conf`), or from Cloudflare's public resolvers when the
/// system configuration is missing, unreadable or names no server.
#[derive(Clone)]
pub struct SystemTxtLookup {
    resolver: TokioResolver,
    source: &'static str,
}

impl fmt::Debug for SystemTxtLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemTxtLookup")
            .field("config", &self.source)
            .finish_non_exhaustive()
    }
}

impl SystemTxtLookup {
    /// A resolver whose queries each time out after `timeout` (two attempts
    /// per server).
    pub fn new(timeout: Duration) -> Result<Self, SetupError> {
        let (config, options, source) = match hickory_resolver::system_conf::read_system_conf() {
            Ok((config, options)) if !config.name_servers().is_empty() => {
                (config, options, "system")
            }
            Ok(_) => {
                tracing::warn!(
                    "the system DNS configuration names no server; using public resolvers"
                );
                (public_config(), ResolverOpts::default(), "public")
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the system DNS configuration; using public resolvers");
                (public_config(), ResolverOpts::default(), "public")
            }
        };
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(options);
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        // Answers are cached by the handle resolver itself; hickory's own
        // cache would keep a stale (or negative) answer past
        // `resolve_fresh`.
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        let resolver = builder
            .build()
            .map_err(|e| SetupError::Dns(error_chain(&e)))?;
        Ok(Self { resolver, source })
    }

    /// Where the configuration came from: `"system"` or `"public"`.
    pub fn config_source(&self) -> &'static str {
        self.source
    }
}

fn public_config() -> ResolverConfig {
    ResolverConfig::udp_and_tcp(&CLOUDFLARE)
}

impl TxtLookup for SystemTxtLookup {
    fn txt<'a>(&'a self, name: &'a str) -> TxtFuture<'a> {
        Box::pin(async move {
            match self.resolver.txt_lookup(name).await {
                Ok(lookup) => Ok(lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::TXT(txt) => Some(
                            txt.txt_data
                                .iter()
                                .map(|part| String::from_utf8_lossy(part))
                                .collect::<String>(),
                        ),
                        _ => None,
                    })
                    .collect()),
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(e) => Err(DnsLookupError(error_chain(&e))),
            }
        })
    }
}

/// What DNS TXT records say about a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtAnswer {
    /// No valid `did=` record.
    NoDid,
    /// One DID (possibly in several records).
    Did(Did),
    /// Different DIDs.
    Conflicting(Vec<Did>),
}

/// Reads the `did=` records among TXT values (see the module docs).
pub fn parse_txt_records(values: &[String]) -> TxtAnswer {
    let mut dids: Vec<Did> = Vec::new();
    for value in values {
        let Some(did) = value.strip_prefix("did=") else {
            continue;
        };
        let Ok(did) = Did::parse(did.trim()) else {
            continue;
        };
        if !dids.contains(&did) {
            dids.push(did);
        }
    }
    match dids.len() {
        0 => TxtAnswer::NoDid,
        1 => TxtAnswer::Did(dids.remove(0)),
        _ => TxtAnswer::Conflicting(dids),
    }
}

/// Resolves handles to DIDs (see the module docs).
///
/// Cheap to clone: clones share the cache, the DNS resolver and the HTTP
/// connection pool.
#[derive(Debug, Clone)]
pub struct HandleResolver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HandleResolverConfig,
    dns: Arc<dyn TxtLookup>,
    http: reqwest::Client,
    cache: TtlCache<Handle, Did, HandleResolveError>,
}

/// The outcome of one method that gave no DID.
enum Miss {
    /// The method answered: no DID there.
    Absent(String),
    /// The method could not answer.
    Failed(String),
}

impl HandleResolver {
    /// A resolver using the system's DNS configuration ([`SystemTxtLookup`]).
    pub fn new(config: HandleResolverConfig) -> Result<Self, SetupError> {
        let dns = SystemTxtLookup::new(config.dns_timeout)?;
        Self::with_txt_lookup(config, Arc::new(dns))
    }

    /// A resolver doing its DNS lookups through `dns`.
    pub fn with_txt_lookup(
        config: HandleResolverConfig,
        dns: Arc<dyn TxtLookup>,
    ) -> Result<Self, SetupError> {
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
                dns,
                http,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HandleResolverConfig {
        &self.inner.config
    }

    /// The DID `handle` resolves to, from the cache when it holds an
    /// unexpired answer (a failure included).
    pub async fn resolve(&self, handle: &Handle) -> Result<Did, HandleResolveError> {
        if let Some(answer) = self.inner.cache.get(handle) {
            return answer;
        }
        self.resolve_fresh(handle).await
    }

    /// The DID `handle` resolves to now, looked up without the cache (for
    /// example to confirm a handle an account is about to take); the
    /// answer replaces the cached one.
    pub async fn resolve_fresh(&self, handle: &Handle) -> Result<Did, HandleResolveError> {
        let answer = self.lookup(handle).await;
        self.inner.cache.insert(handle.clone(), answer.clone());
        answer
    }

    /// Forgets the cached answer for `handle`.
    pub fn invalidate(&self, handle: &Handle) {
        self.inner.cache.remove(handle);
    }

    /// Forgets every cached answer.
    pub fn purge(&self) {
        self.inner.cache.clear();
    }

    /// Resolves `handle` by DNS, then HTTPS.
    async fn lookup(&self, handle: &Handle) -> Result<Did, HandleResolveError> {
        if let Some(reason) = refused_host(handle.as_str(), self.inner.config.allow_test_hosts) {
            return Err(HandleResolveError::Refused {
                handle: handle.clone(),
                reason,
            });
        }
        let dns = match self.dns_method(handle).await {
            Ok(TxtAnswer::Did(did)) => return Ok(did),
            Ok(TxtAnswer::Conflicting(dids)) => {
                return Err(HandleResolveError::Conflicting {
                    handle: handle.clone(),
                    dids,
                });
            }
            Ok(TxtAnswer::NoDid) => Miss::Absent("no did= TXT record".to_owned()),
            Err(e) => Miss::Failed(e.0),
        };
        let https = match self.https_method(handle).await {
            Ok(did) => return Ok(did),
            Err(Miss::Absent(reason) | Miss::Failed(reason)) => reason,
        };
        Err(match dns {
            Miss::Absent(dns) => HandleResolveError::NotFound {
                handle: handle.clone(),
                dns,
                https,
            },
            Miss::Failed(dns) => HandleResolveError::Unavailable {
                handle: handle.clone(),
                dns,
                https,
            },
        })
    }

    /// The DNS TXT method.
    async fn dns_method(&self, handle: &Handle) -> Result<TxtAnswer, DnsLookupError> {
        let name = format!("_atproto.{handle}.");
        // The trailing dot is not counted in a name's length.
        if name.len() - 1 > MAX_DNS_NAME_LEN {
            return Ok(TxtAnswer::NoDid);
        }
        Ok(parse_txt_records(&self.inner.dns.txt(&name).await?))
    }

    /// The HTTPS well-known method.
    async fn https_method(&self, handle: &Handle) -> Result<Did, Miss> {
        const PATH: &str = "/.well-known/atproto-did";
        let (url, host) = match &self.inner.config.well_known_override {
            Some(base) => (base.join(PATH), Some(handle.as_str())),
            None => (Url::parse(&format!("https://{handle}{PATH}")), None),
        };
        let url = url.map_err(|e| Miss::Absent(format!("no well-known URL: {e}")))?;
        let mut request = self
            .inner
            .http
            .get(url)
            .header(ACCEPT, "text/plain, */*;q=0.5");
        if let Some(host) = host {
            request = request.header(HOST, host);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| Miss::Failed(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Miss::Absent(format!("answered {status}")));
        }
        let body = match read_limited(&mut response, MAX_WELL_KNOWN_BYTES).await {
            Ok(body) => body,
            Err(ReadError::TooLong) => {
                return Err(Miss::Absent(format!(
                    "answer longer than {MAX_WELL_KNOWN_BYTES} bytes"
                )));
            }
            Err(ReadError::Failed(e)) => return Err(Miss::Failed(error_chain(&e))),
        };
        let text = std::str::from_utf8(&body)
            .map_err(|_| Miss::Absent("answer is not UTF-8".to_owned()))?
            .trim();
        Did::parse(text).map_err(|e| {
            let shown: String = text.chars().take(MAX_REASON_CHARS).collect();
            Miss::Absent(format!("answer {shown:?} is not a DID: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|&v| v.to_owned()).collect()
    }

    #[test]
    fn txt_records() {
        let alice = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
        let bob = Did::parse("did:web:bob.example.com").unwrap();
        assert_eq!(parse_txt_records(&[]), TxtAnswer::NoDid);
        assert_eq!(
            parse_txt_records(&strings(&["v=spf1 -all", "did:plc:x", "DID=did:plc:x"])),
            TxtAnswer::NoDid,
            "values not starting with did= are ignored"
        );
        assert_eq!(
            parse_txt_records(&strings(&[
                "google-site-verification=abc",
                "did=did:plc:ewvi7nxzyoun6zhxrhs64oiz"
            ])),
            TxtAnswer::Did(alice.clone())
        );
        assert_eq!(
            parse_txt_records(&strings(&[
                "did=did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                "did=did:plc:ewvi7nxzyoun6zhxrhs64oiz"
            ])),
            TxtAnswer::Did(alice.clone()),
            "the same DID twice is one DID"
        );
        assert_eq!(
            parse_txt_records(&strings(&["did=not a did", "did=did:web:bob.example.com "])),
            TxtAnswer::Did(bob.clone()),
            "invalid did= values are ignored, whitespace trimmed"
        );
        assert_eq!(
            parse_txt_records(&strings(&[
                "did=did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                "did=did:web:bob.example.com"
            ])),
            TxtAnswer::Conflicting(vec![alice, bob])
        );
    }

    #[test]
    fn system_lookup_builds() {
        // Reads the system configuration (or falls back); sends nothing.
        let lookup = SystemTxtLookup::new(Duration::from_secs(1)).unwrap();
        assert!(["system", "public"].contains(&lookup.config_source()));
        assert!(HandleResolver::new(HandleResolverConfig::default()).is_ok());
    }
}
