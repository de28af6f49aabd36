//! Service proxying: XRPC calls this PDS does not serve itself are
//! forwarded, on the caller's behalf, to the service that does — the
//! AppView, the chat service, a labeler, any service with a DID — as the
//! reference PDS does (`packages/pds/src/pipethrough.ts`).
//!
//! **Which calls.** Only methods no plugin serves: [`Proxy::route`] is the
//! fallback of `/xrpc/{*method}`, so a method served locally is always
//! served locally, `atproto-proxy` header or not (as in the reference, where
//! the proxy is the XRPC server's catch-all). Of those:
//!
//! - with an `atproto-proxy: <did>#<service id>` header, any method goes to
//!   that service;
//! - without one, `app.bsky.*` goes to the configured AppView
//!   (`#bsky_appview`) and `chat.bsky.*` to the configured chat service
//!   (`#bsky_chat`); anything else is `501 MethodNotImplemented`.
//!
//! `app.bsky.actor.getPreferences` and `putPreferences` are never proxied:
//! preferences live on the PDS. The account-management methods the
//! reference lists as protected are refused (`400 InvalidToken`, "Bad token
//! method"), and app-password sessions that are not privileged may not call
//! `chat.bsky.*` (nor `com.atproto.server.createAccount`) through the proxy.
//!
//! **Authentication.** An access token is required (deactivated accounts
//! may proxy, taken-down ones may not, as in the reference). The upstream
//! request carries a service token signed with the account's repo key:
//! `iss` the account, `aud` the service's DID *without* the `#fragment`
//! (the reference's "phase 1" of service-auth audiences), `lxm` the method,
//! `exp` a minute ahead.
//!
//! **Where.** The service's endpoint is the `#<service id>` entry of its
//! DID document, except for the configured AppView and chat service when
//! their URL is configured (named in the header or not). Endpoints from DID
//! documents must be `https` on public addresses (checked again on every
//! DNS answer), unless the server allows test hosts (development).
//!
//! **What goes and comes back.** Forwarded: the path and query, the body of
//! `POST`s (streamed, at most `proxy.max_request_bytes`), and the headers
//! `accept-encoding` (default `identity`), `accept-language`,
//! `atproto-accept-labelers`, `x-bsky-topics`, and for bodies
//! `content-type`, `content-encoding`, `content-length`. Relayed back: the
//! status, `content-type`, `content-length`, `content-encoding`,
//! `content-language`, `atproto-repo-rev`, `atproto-content-labelers`,
//! `retry-after`, and the body, streamed (at most
//! `proxy.max_response_bytes`). An upstream error (status 400 or more) is
//! answered with its status (500 becomes `502 UpstreamFailure`) and the
//! `error` and `message` of its JSON body, or the status's defaults; an
//! unreachable or silent service is `502 UpstreamFailure`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aurora_core::syntax::{Did, Nsid};
use aurora_core::{PdsContext, XrpcError};
use axum::BoxError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use futures::StreamExt as _;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use url::{Host, Url};

use crate::accounts::{AccessPolicy, AccountDeps, AccountManager};
use crate::auth::service_auth::create_service_jwt;
use crate::auth::tokens::AccessScope;
use crate::config::DefaultService;
use crate::identity::{
    DidResolveError, PublicAddressesOnly, SetupError, error_chain, is_public, read_limited,
};
use crate::xrpc::ApiError;

/// The header naming the service a call is for: `<did>#<service id>`.
pub const PROXY_HEADER: &str = "atproto-proxy";

/// The service id of an AppView in its DID document.
pub const APPVIEW_SERVICE_ID: &str = "bsky_appview";

/// The service id of a chat service in its DID document.
pub const CHAT_SERVICE_ID: &str = "bsky_chat";

/// How long the service tokens sent upstream live (the reference's
/// `createServiceJwt` default).
pub const SERVICE_TOKEN_LIFETIME: TimeDelta = TimeDelta::seconds(60);

/// Client headers forwarded upstream when present.
const REQUEST_HEADERS: [&str; 3] = [
    "accept-language",
    "atproto-accept-labelers",
    "x-bsky-topics",
];

/// Client headers forwarded with a request body.
const BODY_HEADERS: [&str; 3] = ["content-type", "content-encoding", "content-length"];

/// Upstream headers relayed with a successful response's body.
const CONTENT_HEADERS: [&str; 4] = [
    "content-length",
    "content-encoding",
    "content-type",
    "content-language",
];

/// Upstream headers relayed with every response, errors included.
const RESPONSE_HEADERS: [&str; 3] = [
    "atproto-repo-rev",
    "atproto-content-labelers",
    "retry-after",
];

/// Account management: used directly, never proxied (the reference's
/// `PROTECTED_METHODS` of `pipethrough.ts`, which its `getServiceAuth`
/// refuses to app passwords too).
pub(crate) const PROTECTED_METHODS: [&str; 16] = [
    "com.atproto.admin.sendEmail",
    "com.atproto.identity.requestPlcOperationSignature",
    "com.atproto.identity.signPlcOperation",
    "com.atproto.identity.updateHandle",
    "com.atproto.server.activateAccount",
    "com.atproto.server.confirmEmail",
    "com.atproto.server.createAppPassword",
    "com.atproto.server.deactivateAccount",
    "com.atproto.server.getAccountInviteCodes",
    "com.atproto.server.getSession",
    "com.atproto.server.listAppPasswords",
    "com.atproto.server.requestAccountDelete",
    "com.atproto.server.requestEmailConfirmation",
    "com.atproto.server.requestEmailUpdate",
    "com.atproto.server.revokeAppPassword",
    "com.atproto.server.updateEmail",
];

/// Methods the PDS serves itself and never forwards, even while no plugin
/// serves them.
const LOCAL_ONLY_METHODS: [&str; 2] = [
    "app.bsky.actor.getPreferences",
    "app.bsky.actor.putPreferences",
];

/// The largest upstream error body read for its `error` and `message`.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// How proxying works (see the module docs).
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Where `app.bsky.*` calls without a header go; `None`: nowhere.
    pub appview: Option<DefaultService>,
    /// Where `chat.bsky.*` calls without a header go; `None`: nowhere.
    pub chat: Option<DefaultService>,
    /// Deadline to connect and to get the response headers, and the
    /// longest pause in the response body.
    pub timeout: Duration,
    /// Largest request body forwarded.
    pub max_request_bytes: u64,
    /// Largest response body relayed.
    pub max_response_bytes: u64,
    /// Whether endpoints from DID documents may be plain `http` or on
    /// loopback and private addresses. Development only.
    pub allow_test_hosts: bool,
}

/// The service proxy. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ProxySettings,
    deps: Arc<AccountDeps>,
    /// For the configured URLs, which the operator vouches for.
    configured: reqwest::Client,
    /// For endpoints found in DID documents: public addresses only, unless
    /// test hosts are allowed.
    resolved: reqwest::Client,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy authenticating callers and signing for them with `deps`.
    pub fn new(deps: Arc<AccountDeps>, settings: ProxySettings) -> Result<Self, SetupError> {
        let builder = || {
            crate::identity::client_builder().map(|b| {
                b.connect_timeout(settings.timeout)
                    .read_timeout(settings.timeout)
            })
        };
        let build =
            |b: reqwest::ClientBuilder| b.build().map_err(|e| SetupError::Http(error_chain(&e)));
        let configured = build(builder()?)?;
        let resolved = if settings.allow_test_hosts {
            build(builder()?)?
        } else {
            build(builder()?.dns_resolver(Arc::new(PublicAddressesOnly)))?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                deps,
                configured,
                resolved,
            }),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ProxySettings {
        &self.inner.settings
    }

    /// The handler of `/xrpc/{*method}` (methods no plugin serves) of the
    /// PDS over `ctx`.
    pub fn route(&self, ctx: &PdsContext) -> MethodRouter {
        let bound = Bound {
            proxy: self.clone(),
            accounts: AccountManager::new(ctx.clone(), self.inner.deps.clone()),
        };
        any(handle).with_state(bound)
    }

    /// The default service of a method called without a header.
    fn default_target(&self, nsid: &Nsid) -> Option<Target> {
        let lower = nsid.as_str().to_ascii_lowercase();
        let settings = &self.inner.settings;
        let (service, id) = if lower.starts_with("app.bsky.") {
            (settings.appview.as_ref(), APPVIEW_SERVICE_ID)
        } else if lower.starts_with("chat.bsky.") {
            (settings.chat.as_ref(), CHAT_SERVICE_ID)
        } else {
            return None;
        };
        service.map(|s| Target {
            did: s.did.clone(),
            service_id: id.to_owned(),
        })
    }

    /// The configured URL of `target`, when it is the configured AppView or
    /// chat service and its URL is set.
    fn configured_url(&self, target: &Target) -> Option<&Url> {
        let settings = &self.inner.settings;
        [
            (settings.appview.as_ref(), APPVIEW_SERVICE_ID),
            (settings.chat.as_ref(), CHAT_SERVICE_ID),
        ]
        .into_iter()
        .find_map(|(service, id)| {
            let service = service?;
            (service.did == target.did && target.service_id == id)
                .then_some(service.url.as_ref())
                .flatten()
        })
    }
}

/// A service to forward to: a DID and the id of a service in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The service's DID.
    pub did: Did,
    /// The service id, without `#`.
    pub service_id: String,
}

/// Reads an `atproto-proxy` header, `<did>#<service id>`, with the
/// reference's checks and messages (all `400 InvalidRequest`).
pub fn parse_proxy_header(value: &str) -> Result<Target, XrpcError> {
    let (did, service_id) = match value.split_once('#') {
        Some(("", _)) => {
            return Err(XrpcError::invalid_request(
                "no did specified in proxy header",
            ));
        }
        None | Some((_, "")) => {
            return Err(XrpcError::invalid_request(
                "no service id specified in proxy header",
            ));
        }
        Some(parts) => parts,
    };
    if service_id.contains('#') {
        return Err(XrpcError::invalid_request("invalid proxy header format"));
    }
    if value.contains(' ') {
        return Err(XrpcError::invalid_request(
            "proxy header cannot contain spaces",
        ));
    }
    let did = Did::parse(did)
        .map_err(|e| XrpcError::invalid_request(format!("invalid did in proxy header: {e}")))?;
    Ok(Target {
        did,
        service_id: service_id.to_owned(),
    })
}

/// The proxy bound to one PDS.
#[derive(Clone)]
struct Bound {
    proxy: Proxy,
    accounts: AccountManager,
}

async fn handle(State(bound): State<Bound>, req: Request) -> Response {
    match bound.forward(req).await {
        Ok(res) => res,
        Err(e) => ApiError(e).into_response(),
    }
}

/// Whether `nsid` is one of `list`; method names compare case-insensitively,
/// as in the reference's `LxmSet`.
fn is_one_of(nsid: &Nsid, list: &[&str]) -> bool {
    list.iter().any(|m| m.eq_ignore_ascii_case(nsid.as_str()))
}

/// Methods only full sessions and privileged app passwords may call.
fn is_privileged(nsid: &Nsid) -> bool {
    let lower = nsid.as_str().to_ascii_lowercase();
    lower.starts_with("chat.bsky.") || lower == "com.atproto.server.createaccount"
}

fn bad_token_method() -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, "InvalidToken", "Bad token method")
}

fn upstream_failure(message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::BAD_GATEWAY, "UpstreamFailure", message)
}

fn payload_too_large(max: u64) -> XrpcError {
    XrpcError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PayloadTooLarge",
        format!("request body is larger than {max} bytes"),
    )
}

fn no_service_url() -> XrpcError {
    XrpcError::invalid_request("could not resolve proxy did service url")
}

impl Bound {
    async fn forward(&self, req: Request) -> Result<Response, XrpcError> {
        let (parts, body) = req.into_parts();
        let settings = self.proxy.settings();
        let (nsid, target) = self.target(&parts)?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::POST) {
            return Err(XrpcError::invalid_request(
                "XRPC requests only supports GET and POST",
            ));
        }
        if is_one_of(&nsid, &PROTECTED_METHODS) {
            return Err(bad_token_method());
        }
        let auth = self
            .accounts
            .authenticate(&parts.headers, AccessPolicy::SCOPED_DEACTIVATED_OK)
            .await?;
        // OAuth sessions are governed by their rpc permissions alone;
        // app passwords need the privileged flag for privileged methods.
        auth.require_rpc(
            nsid.as_str(),
            &format!("{}#{}", target.did, target.service_id),
        )?;
        if auth.oauth.is_none() && auth.scope == AccessScope::AppPass && is_privileged(&nsid) {
            return Err(bad_token_method());
        }
        let (origin, client) = self.endpoint(&target).await?;

        let key = self.accounts.signing_key(auth.did()).await?;
        let now = Utc::now();
        let token = create_service_jwt(
            &key,
            auth.did(),
            target.did.as_str(),
            Some(&nsid),
            now + SERVICE_TOKEN_LIFETIME,
            now,
        );
        let path = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), http::uri::PathAndQuery::as_str);
        let mut request = client
            .request(parts.method.clone(), format!("{origin}{path}"))
            .headers(upstream_headers(&parts.headers, &token)?);

        let too_large = Arc::new(AtomicBool::new(false));
        if parts.method == Method::POST {
            let max = settings.max_request_bytes;
            let declared = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|len| len > max) {
                return Err(payload_too_large(max));
            }
            let mut body_headers = HeaderMap::new();
            copy_headers(&parts.headers, &mut body_headers, &BODY_HEADERS);
            request = request
                .headers(body_headers)
                .body(reqwest::Body::wrap_stream(limited_request_body(
                    body,
                    max,
                    too_large.clone(),
                )));
        }

        let upstream = match request.send().await {
            Ok(upstream) => upstream,
            Err(_) if too_large.load(Ordering::Relaxed) => {
                return Err(payload_too_large(settings.max_request_bytes));
            }
            Err(e) => {
                tracing::warn!(
                    method = %nsid,
                    service = %target.did,
                    error = %error_chain(&e),
                    "proxied call failed"
                );
                return Err(upstream_failure(if e.is_timeout() {
                    "Upstream service timed out"
                } else {
                    "Upstream service unreachable"
                }));
            }
        };
        if upstream.status().as_u16() >= 400 {
            return Ok(upstream_error(upstream).await);
        }
        relay(upstream, settings.max_response_bytes)
    }

    /// The method called and the service it goes to: the one the
    /// `atproto-proxy` header names, or the method's default service.
    fn target(&self, parts: &http::request::Parts) -> Result<(Nsid, Target), XrpcError> {
        let raw = parts.uri.path().strip_prefix("/xrpc/").unwrap_or_default();
        let nsid = Nsid::parse(raw).map_err(|e| {
            XrpcError::invalid_request(format!("{raw:?} is not a valid XRPC method: {e}"))
        })?;
        if is_one_of(&nsid, &LOCAL_ONLY_METHODS) {
            return Err(XrpcError::method_not_implemented(nsid.as_str()));
        }
        let target = match parts.headers.get(PROXY_HEADER) {
            Some(value) => {
                let value = value.to_str().map_err(|_| {
                    XrpcError::invalid_request("the atproto-proxy header is not visible ASCII")
                })?;
                parse_proxy_header(value)?
            }
            None => self
                .proxy
                .default_target(&nsid)
                .ok_or_else(|| XrpcError::method_not_implemented(nsid.as_str()))?,
        };
        Ok((nsid, target))
    }

    /// The origin (`scheme://host[:port]`) to send `target`'s calls to, and
    /// the client to send them with.
    async fn endpoint(&self, target: &Target) -> Result<(String, &reqwest::Client), XrpcError> {
        let inner = &self.proxy.inner;
        if let Some(url) = self.proxy.configured_url(target) {
            return Ok((url.origin().ascii_serialization(), &inner.configured));
        }
        let doc = self
            .accounts
            .resolver()
            .dids()
            .resolve(&target.did)
            .await
            .map_err(|e| match e {
                DidResolveError::Unavailable { .. } => {
                    tracing::warn!(error = %e, "proxy: cannot resolve the service's DID");
                    upstream_failure("could not resolve proxy did")
                }
                _ => XrpcError::invalid_request(format!("could not resolve proxy did: {e}")),
            })?;
        let url = doc
            .services_with_id(&target.service_id)
            .next()
            .and_then(|s| s.endpoint.as_str())
            .and_then(|s| Url::parse(s).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(no_service_url)?;
        if !inner.settings.allow_test_hosts {
            check_public_endpoint(&url).map_err(|reason| {
                upstream_failure(format!("the service endpoint is not allowed: {reason}"))
            })?;
        }
        Ok((url.origin().ascii_serialization(), &inner.resolved))
    }
}

/// The headers of the upstream request (body headers aside): the client's
/// `accept-encoding` (default `identity`) and [`REQUEST_HEADERS`], and the
/// service token.
fn upstream_headers(client: &HeaderMap, token: &str) -> Result<HeaderMap, XrpcError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT_ENCODING,
        client
            .get(header::ACCEPT_ENCODING)
            .cloned()
            .unwrap_or(HeaderValue::from_static("identity")),
    );
    copy_headers(client, &mut headers, &REQUEST_HEADERS);
    let bearer = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|e| crate::accounts::internal("service token is not a header value", &e))?;
    headers.insert(header::AUTHORIZATION, bearer);
    Ok(headers)
}

/// Copies the headers named in `names` (every value) from `from` to `to`.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, names: &[&str]) {
    for name in names {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for value in from.get_all(&header) {
            to.append(header.clone(), value.clone());
        }
    }
}

/// The client's body as a stream that fails (and sets `too_large`) once it
/// passes `max` bytes.
fn limited_request_body(
    body: Body,
    max: u64,
    too_large: Arc<AtomicBool>,
) -> impl futures::Stream<Item = Result<Bytes, BoxError>> + Send + 'static {
    let mut seen: u64 = 0;
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(BoxError::from)?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > max {
            too_large.store(true, Ordering::Relaxed);
            return Err(BoxError::from(format!(
                "request body is larger than {max} bytes"
            )));
        }
        Ok(chunk)
    })
}

/// A successful upstream response, relayed: status, the forwarded headers,
/// and the body streamed through, cut off past `max` bytes.
fn relay(upstream: reqwest::Response, max: u64) -> Result<Response, XrpcError> {
    if upstream.content_length().is_some_and(|len| len > max) {
        return Err(upstream_failure(format!(
            "upstream response is larger than {max} bytes"
        )));
    }
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    copy_headers(upstream.headers(), &mut headers, &CONTENT_HEADERS);
    copy_headers(upstream.headers(), &mut headers, &RESPONSE_HEADERS);
    let mut seen: u64 = 0;
    let body = upstream.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| {
            tracing::warn!(error = %error_chain(&e), "proxy: upstream response body failed");
            BoxError::from(e)
        })?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > max {
            tracing::warn!(max, "proxy: upstream response too large, cut off");
            return Err(BoxError::from(format!(
                "upstream response is larger than {max} bytes"
            )));
        }
        Ok(chunk)
    });
    let mut res = Response::new(Body::from_stream(body));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    Ok(res)
}

/// An upstream error, answered as the reference does: its status (500 is
/// `502 UpstreamFailure`), the `error` and `message` of its JSON body when
/// it has them, and the non-content headers.
async fn upstream_error(mut upstream: reqwest::Response) -> Response {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<serde_json::Value>,
        message: Option<serde_json::Value>,
    }
    let status = match upstream.status() {
        StatusCode::INTERNAL_SERVER_ERROR => StatusCode::BAD_GATEWAY,
        s if s.is_client_error() || s.is_server_error() => s,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut forwarded = HeaderMap::new();
    copy_headers(upstream.headers(), &mut forwarded, &RESPONSE_HEADERS);
    let json = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_content_type);
    let plain = upstream
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
    let parsed = if json && plain {
        read_limited(&mut upstream, MAX_ERROR_BODY_BYTES)
            .await
            .ok()
            .and_then(|body| serde_json::from_slice::<ErrorBody>(&body).ok())
    } else {
        None
    };
    let text = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    };
    let (error, message) = parsed.map_or((None, None), |b| (text(b.error), text(b.message)));
    let fallback = status_error(status);
    let error = XrpcError::new(
        status,
        error.unwrap_or_else(|| fallback.error.into_owned()),
        message.unwrap_or(fallback.message),
    );
    let mut res = ApiError(error).into_response();
    res.headers_mut().extend(forwarded);
    res
}

/// The XRPC error of a bare upstream status.
fn status_error(status: StatusCode) -> XrpcError {
    match status {
        StatusCode::NOT_IMPLEMENTED => {
            XrpcError::new(status, "MethodNotImplemented", "Method Not Implemented")
        }
        StatusCode::BAD_GATEWAY => XrpcError::new(status, "UpstreamFailure", "Upstream Failure"),
        StatusCode::GATEWAY_TIMEOUT => {
            XrpcError::new(status, "UpstreamTimeout", "Upstream Timeout")
        }
        _ => XrpcError::from_status(status),
    }
}

/// `application/json` or `application/<something>+json`.
fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some(subtype) = essence
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .map(|_| &essence[12..])
    else {
        return false;
    };
    subtype.eq_ignore_ascii_case("json")
        || subtype
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

/// Why an endpoint from a DID document may not be called, if it may not:
/// it must be `https`, and an IP address in it must be public.
fn check_public_endpoint(url: &Url) -> Result<(), String> {
    if url.scheme() != "https" {
        return Err(format!("{} is not https", url.scheme()));
    }
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        Some(Host::Domain(_)) => return Ok(()),
        None => return Err("no host".to_owned()),
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(format!("{ip} is not a public address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(did: &str, id: &str) -> Target {
        Target {
            did: Did::parse(did).unwrap(),
            service_id: id.to_owned(),
        }
    }

    #[test]
    fn proxy_headers_as_the_reference_reads_them() {
        assert_eq!(
            parse_proxy_header("did:web:api.bsky.app#bsky_appview").unwrap(),
            target("did:web:api.bsky.app", "bsky_appview")
        );
        assert_eq!(
            parse_proxy_header("did:plc:ewvi7nxzyoun6zhxrhs64oiz#atproto_labeler").unwrap(),
            target("did:plc:ewvi7nxzyoun6zhxrhs64oiz", "atproto_labeler")
        );
        for (header, message) in [
            ("#bsky_appview", "no did specified"),
            ("did:web:api.bsky.app", "no service id"),
            ("did:web:api.bsky.app#", "no service id"),
            ("did:web:api.bsky.app#a#b", "invalid proxy header format"),
            ("did:web:api.bsky.app#bsky appview", "cannot contain spaces"),
            ("not-a-did#bsky_appview", "invalid did"),
        ] {
            let e = parse_proxy_header(header).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{header}");
            assert_eq!(e.error, "InvalidRequest", "{header}");
            assert!(e.message.contains(message), "{header}: {}", e.message);
        }
    }

    #[test]
    fn method_lists_ignore_case() {
        let nsid = |s: &str| Nsid::parse(s).unwrap();
        assert!(is_one_of(
            &nsid("com.atproto.server.getsession"),
            &PROTECTED_METHODS
        ));
        assert!(is_one_of(
            &nsid("app.bsky.actor.getPreferences"),
            &LOCAL_ONLY_METHODS
        ));
        assert!(!is_one_of(
            &nsid("app.bsky.actor.getProfile"),
            &LOCAL_ONLY_METHODS
        ));
        assert!(is_privileged(&nsid("chat.bsky.convo.sendMessage")));
        assert!(is_privileged(&nsid("Chat.Bsky.convo.listConvos")));
        assert!(is_privileged(&nsid("com.atproto.server.createAccount")));
        assert!(!is_privileged(&nsid("app.bsky.feed.getTimeline")));
    }

    #[test]
    fn json_content_types() {
        for (ct, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/problem+json", true),
            ("text/plain", false),
            ("application/jsonx", false),
            ("application/octet-stream", false),
            ("", false),
        ] {
            assert_eq!(is_json_content_type(ct), json, "{ct}");
        }
    }

    #[test]
    fn endpoints_from_did_documents_must_be_public_https() {
        let check = |u: &str| check_public_endpoint(&Url::parse(u).unwrap());
        assert!(check("https://api.example.com").is_ok());
        assert!(check("https://8.8.8.8").is_ok());
        assert!(check("https://[2606:4700::1111]").is_ok());
        for bad in [
            "http://api.example.com",
            "https://127.0.0.1",
            "https://10.1.2.3",
            "https://192.168.0.1:8443",
            "https://169.254.169.254",
            "https://100.64.0.1",
            "https://0.0.0.0",
            "https://[::1]",
            "https://[fd00::1]",
            "https://[fe80::1]",
            "https://[::ffff:127.0.0.1]",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_statuses_get_the_reference_names() {
        assert_eq!(
            status_error(StatusCode::BAD_GATEWAY).error,
            "UpstreamFailure"
        );
        assert_eq!(
            status_error(StatusCode::GATEWAY_TIMEOUT).error,
            "UpstreamTimeout"
        );
        assert_eq!(
            status_error(StatusCode::NOT_IMPLEMENTED).error,
            "MethodNotImplemented"
        );
        assert_eq!(status_error(StatusCode::NOT_FOUND).error, "NotFound");
    }
}
