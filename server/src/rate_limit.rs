//! Per-client rate limits on chosen XRPC methods, as a tower layer.
//!
//! A rule names an XRPC method (`/xrpc/<nsid>`) and one or more windows,
//! e.g. "30 per 5 minutes and 300 per day". Requests are counted per
//! (method, client), where the client is the peer address, or the first
//! `X-Forwarded-For` address when the server sits behind a trusted proxy.
//! A request is admitted only when every window of its rule has room; then
//! it counts in every window. Over the limit, the answer is
//! `429 {"error":"RateLimitExceeded",...}`. Either way the response carries
//! the `ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset` (Unix
//! time, seconds) and `ratelimit-policy` (`<limit>;w=<seconds>`) headers of
//! the window closest to refusing, as the reference PDS sends them.
//!
//! Windows are fixed and start with a client's first request: a client that
//! sends 30 sign-ins within 5 minutes of its first is refused until those 5
//! minutes are over, then counting starts afresh.
//!
//! The counters are a `Mutex<HashMap>` per rule rather than the `governor`
//! crate: governor implements GCRA (a smoothly refilling bucket), has one
//! quota per limiter, and cannot undo a cell taken from one quota when a
//! second quota refuses, so "30 per 5 minutes AND 300 per day" with exact
//! remaining/reset figures does not map onto it; it would also add half a
//! dozen crates. A lock per rule is cheap here: only requests to limited
//! methods (sign-in, sign-up, password reset) take it, for a few hash-map
//! operations. Memory stays bounded: clients whose windows have all expired
//! are dropped at most every [`PURGE_INTERVAL`] while requests arrive, and
//! IPv6 clients are counted per /64 network, so rotating addresses inside
//! one allocation does not create new counters.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::{Future, Ready, ready};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aurora_core::XrpcError;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::config::ConfigDuration;

/// `ratelimit-limit`: the number of requests the reported window allows.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `ratelimit-remaining`: requests left in the reported window.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `ratelimit-reset`: when the reported window starts afresh, in Unix seconds.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// `ratelimit-policy`: the reported window as `<limit>;w=<seconds>`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// How often, at most, expired clients are dropped (on the next request
/// after the interval, so no background task is needed).
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// The longest window a configuration may ask for.
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// One limit: at most `limit` requests per `window`.
///
/// Written `LIMIT/DURATION` in the configuration, the duration a number and
/// a unit `s`, `m`, `h` or `d`: `30/5m`, `300/1d`, `10/30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateWindow {
    /// Requests allowed per window; at least 1.
    pub limit: u32,
    /// Length of the window.
    pub window: Duration,
}

impl RateWindow {
    /// `limit` requests per `window`.
    pub const fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window }
    }

    /// The `ratelimit-policy` form: `<limit>;w=<seconds>`.
    pub fn policy(&self) -> String {
        format!("{};w={}", self.limit, ceil_secs(self.window))
    }
}

/// A window written wrongly in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{spec:?} is not a rate limit: {reason} (write LIMIT/DURATION, e.g. \"30/5m\" or \"300/1d\")"
)]
pub struct RateWindowError {
    spec: String,
    reason: &'static str,
}

impl FromStr for RateWindow {
    type Err = RateWindowError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |reason| RateWindowError {
            spec: spec.to_owned(),
            reason,
        };
        let (limit, duration) = spec.split_once('/').ok_or_else(|| fail("no `/`"))?;
        let limit: u32 = limit
            .trim()
            .parse()
            .map_err(|_| fail("the limit is not a whole number"))?;
        if limit == 0 {
            return Err(fail("the limit must be at least 1"));
        }
        let window = ConfigDuration::parse(duration.trim()).map_err(fail)?;
        if window > MAX_WINDOW {
            return Err(fail("the duration must be at most 366d"));
        }
        Ok(Self::new(limit, window))
    }
}

impl fmt::Display for RateWindow {
    /// `LIMIT/DURATION` in the largest unit that divides the window.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = Duration::from_secs(ceil_secs(self.window));
        write!(f, "{}/{}", self.limit, ConfigDuration(window))
    }
}

impl serde::Serialize for RateWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RateWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(d)?;
        spec.parse().map_err(serde::de::Error::custom)
    }
}

/// What the rate-limit layer enforces: the windows of each limited method,
/// and where the client address comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Take the client address from the first `X-Forwarded-For` entry
    /// instead of the peer address. Only safe behind a proxy that sets it.
    pub trust_proxy: bool,
    /// NSID -> windows. A method with no windows is not limited.
    pub methods: BTreeMap<String, Vec<RateWindow>>,
}

/// Whom a request is counted against: an IPv4 address, an IPv6 /64
/// network, or, when the address is unknown, one shared "unknown" client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(Option<IpAddr>);

impl ClientKey {
    /// The shared key of requests whose address is unknown (no connection
    /// info, e.g. a service called in-process).
    pub const UNKNOWN: Self = Self(None);

    /// The key of an address: IPv4 as is (IPv4-mapped IPv6 as IPv4), IPv6
    /// cut to its /64 network.
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
            },
        };
        Self(Some(ip))
    }

    /// The client of a request: the first `X-Forwarded-For` address when
    /// `trust_proxy` is set and the header holds one, otherwise the peer
    /// address from axum's `ConnectInfo<SocketAddr>`.
    pub fn of_request<B>(req: &Request<B>, trust_proxy: bool) -> Self {
        let forwarded = trust_proxy.then(|| forwarded_for(req.headers())).flatten();
        let peer = || {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip())
        };
        forwarded.or_else(peer).map_or(Self::UNKNOWN, Self::from_ip)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(IpAddr::V6(v6)) => write!(f, "{v6}/64"),
            Some(IpAddr::V4(v4)) => write!(f, "{v4}"),
            None => f.write_str("unknown"),
        }
    }
}

/// The first address of the first `X-Forwarded-For` header, with or
/// without a port.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let first = headers
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim();
    first
        .parse::<IpAddr>()
        .ok()
        .or_else(|| first.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The outcome of counting one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed (and was counted).
    pub allowed: bool,
    /// The window reported to the client: when allowed, the one with the
    /// fewest requests left; when refused, the exhausted one that resets
    /// last.
    pub window: RateWindow,
    /// Requests left in that window.
    pub remaining: u32,
    /// Time until that window starts afresh.
    pub reset_after: Duration,
}

impl Decision {
    /// The four `ratelimit-*` headers, with the reset time as Unix seconds
    /// counted from `now`.
    pub fn headers(&self, now: SystemTime) -> HeaderMap {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.window.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(
            RATELIMIT_RESET,
            HeaderValue::from(ceil_secs(since_epoch + self.reset_after)),
        );
        if let Ok(policy) = HeaderValue::try_from(self.window.policy()) {
            headers.insert(RATELIMIT_POLICY, policy);
        }
        headers
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One window of one client: when it started and how many requests it has
/// counted.
#[derive(Debug, Clone, Copy)]
struct WindowState {
    started: Instant,
    count: u32,
}

impl WindowState {
    fn expired(&self, window: &RateWindow, now: Instant) -> bool {
        now.saturating_duration_since(self.started) >= window.window
    }
}

/// The counters of one rule.
#[derive(Debug)]
struct Counters {
    /// One state per window of the rule, in the rule's order.
    clients: HashMap<ClientKey, Box<[WindowState]>>,
    last_purge: Option<Instant>,
}

#[derive(Debug)]
struct Rule {
    windows: Vec<RateWindow>,
    counters: Mutex<Counters>,
}

impl Rule {
    fn check(&self, client: ClientKey, now: Instant) -> Decision {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        counters.purge_if_due(&self.windows, now);
        let states = counters.clients.entry(client).or_insert_with(|| {
            self.windows
                .iter()
                .map(|_| WindowState {
                    started: now,
                    count: 0,
                })
                .collect()
        });
        for (window, state) in self.windows.iter().zip(states.iter_mut()) {
            if state.expired(window, now) {
                *state = WindowState {
                    started: now,
                    count: 0,
                };
            }
        }
        let allowed = self
            .windows
            .iter()
            .zip(states.iter())
            .all(|(w, s)| s.count < w.limit);
        if allowed {
            for state in states.iter_mut() {
                // `count < limit <= u32::MAX`, so this does not overflow.
                state.count += 1;
            }
        }
        let report = self
            .windows
            .iter()
            .zip(states.iter())
            .map(|(w, s)| Decision {
                allowed,
                window: *w,
                remaining: w.limit.saturating_sub(s.count),
                reset_after: w
                    .window
                    .saturating_sub(now.saturating_duration_since(s.started)),
            })
            .filter(|d| allowed || d.remaining == 0)
            // Fewest left first; among equals, the one resetting last.
            .min_by(|a, b| {
                a.remaining
                    .cmp(&b.remaining)
                    .then(b.reset_after.cmp(&a.reset_after))
            });
        // A rule always has a window, and a refusal an exhausted one.
        report.unwrap_or(Decision {
            allowed,
            window: RateWindow::new(1, Duration::ZERO),
            remaining: 0,
            reset_after: Duration::ZERO,
        })
    }
}

impl Counters {
    /// Drops clients whose windows have all expired, at most once per
    /// [`PURGE_INTERVAL`]. Dropping them loses nothing: their next request
    /// would start every window afresh anyway.
    fn purge_if_due(&mut self, windows: &[RateWindow], now: Instant) {
        let last = *self.last_purge.get_or_insert(now);
        if now.saturating_duration_since(last) < PURGE_INTERVAL {
            return;
        }
        self.last_purge = Some(now);
        self.clients.retain(|_, states| {
            windows
                .iter()
                .zip(states.iter())
                .any(|(w, s)| !s.expired(w, now))
        });
    }
}

/// The counters of every limited method.
#[derive(Debug)]
pub struct RateLimiter {
    rules: HashMap<String, Rule>,
}

impl RateLimiter {
    /// A limiter for `methods` (NSID -> windows); methods without windows
    /// are not limited.
    pub fn new(methods: &BTreeMap<String, Vec<RateWindow>>) -> Self {
        let rules = methods
            .iter()
            .filter(|(_, windows)| !windows.is_empty())
            .map(|(nsid, windows)| {
                let rule = Rule {
                    windows: windows.clone(),
                    counters: Mutex::new(Counters {
                        clients: HashMap::new(),
                        last_purge: None,
                    }),
                };
                (nsid.clone(), rule)
            })
            .collect();
        Self { rules }
    }

    /// Whether `method` has a rule.
    pub fn limits(&self, method: &str) -> bool {
        self.rules.contains_key(method)
    }

    /// Counts one call of `method` by `client` at `now`; `None` when the
    /// method is not limited. `now` comes from the caller so that tests can
    /// drive the clock; the layer passes `Instant::now()`.
    pub fn check(&self, method: &str, client: ClientKey, now: Instant) -> Option<Decision> {
        Some(self.rules.get(method)?.check(client, now))
    }

    /// How many (method, client) counters are held.
    pub fn tracked_clients(&self) -> usize {
        self.rules
            .values()
            .map(|r| {
                r.counters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clients
                    .len()
            })
            .sum()
    }
}

/// A tower layer enforcing [`RateLimitSettings`] on `/xrpc/<nsid>` requests.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Arc<RateLimiter>,
    trust_proxy: bool,
}

impl RateLimitLayer {
    /// A layer with fresh counters. Services made by one layer share them.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            limiter: Arc::new(RateLimiter::new(&settings.methods)),
            trust_proxy: settings.trust_proxy,
        }
    }

    /// The counters, e.g. to report how many clients are tracked.
    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            trust_proxy: self.trust_proxy,
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<RateLimiter>,
    trust_proxy: bool,
}

impl<S, B, ResBody> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Only calls of limited methods look up the client and take a lock.
        let counted = req
            .uri()
            .path()
            .strip_prefix("/xrpc/")
            .filter(|method| self.limiter.limits(method))
            .and_then(|method| {
                let client = ClientKey::of_request(&req, self.trust_proxy);
                let decision = self.limiter.check(method, client, Instant::now())?;
                Some((method, client, decision))
            });
        match counted {
            None => ResponseFuture::Inner {
                inner: self.inner.call(req),
                headers: None,
            },
            Some((_, _, decision)) if decision.allowed => ResponseFuture::Inner {
                inner: self.inner.call(req),
                headers: Some(decision.headers(SystemTime::now())),
            },
            Some((method, client, decision)) => {
                tracing::debug!(method, %client, "rate limit exceeded");
                let headers = decision.headers(SystemTime::now());
                ResponseFuture::Limited {
                    response: ready(Ok(too_many_requests(method, &decision, headers))),
                }
            }
        }
    }
}

/// `429 RateLimitExceeded` with the XRPC error body, the `ratelimit-*`
/// headers and `retry-after`.
fn too_many_requests<B: From<Bytes>>(
    method: &str,
    decision: &Decision,
    headers: HeaderMap,
) -> Response<B> {
    let retry_after = ceil_secs(decision.reset_after).max(1);
    let error = XrpcError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RateLimitExceeded",
        format!(
            "rate limit exceeded for {method}: at most {} requests per {}s; try again in {retry_after}s",
            decision.window.limit,
            ceil_secs(decision.window.window),
        ),
    );
    let mut res = Response::new(B::from(Bytes::from(error.to_json().to_string())));
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = res.headers_mut();
    h.extend(headers);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    res
}

pin_project! {
    /// The response future of [`RateLimit`]: either the refusal, or the
    /// inner service's response with the `ratelimit-*` headers added.
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, B, E> {
        /// Refused; the 429 is ready.
        Limited {
            response: Ready<Result<Response<B>, E>>,
        },
        /// Passed on; `headers` are added to the response unless it
        /// already carries `ratelimit-limit` (a handler's own limit wins).
        Inner {
            #[pin]
            inner: F,
            headers: Option<HeaderMap>,
        },
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self {
            Self::Limited { .. } => "Limited",
            Self::Inner { .. } => "Inner",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Limited { response } => Pin::new(response).poll(cx),
            ResponseFutureProj::Inner { inner, headers } => {
                let mut res = std::task::ready!(inner.poll(cx))?;
                if let Some(headers) = headers.take()
                    && !res.headers().contains_key(RATELIMIT_LIMIT)
                {
                    res.headers_mut().extend(headers);
                }
                Poll::Ready(Ok(res))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE_SESSION: &str = "com.atproto.server.createSession";
    const CREATE_ACCOUNT: &str = "com.atproto.server.createAccount";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn limiter(rules: &[(&str, &[RateWindow])]) -> RateLimiter {
        RateLimiter::new(
            &rules
                .iter()
                .map(|(nsid, windows)| ((*nsid).to_owned(), windows.to_vec()))
                .collect(),
        )
    }

    fn client(last: u8) -> ClientKey {
        ClientKey::from_ip(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn windows_parse_and_print() {
        for (spec, limit, window, shown) in [
            ("30/5m", 30, 300, "30/5m"),
            ("300/1d", 300, 86_400, "300/1d"),
            (" 50 / 1h ", 50, 3_600, "50/1h"),
            ("10/90s", 10, 90, "10/90s"),
            ("1/120m", 1, 7_200, "1/2h"),
        ] {
            let w: RateWindow = spec.parse().unwrap();
            assert_eq!(w, RateWindow::new(limit, secs(window)), "{spec}");
            assert_eq!(w.to_string(), shown);
            assert_eq!(shown.parse::<RateWindow>().unwrap(), w);
        }
        assert_eq!(RateWindow::new(30, secs(300)).policy(), "30;w=300");
        for bad in [
            "", "30", "30/", "x/5m", "0/5m", "-1/5m", "30/5", "30/m", "30/5w", "30/0s", "30/367d",
            "30/5m/1h",
        ] {
            let e = bad.parse::<RateWindow>().unwrap_err();
            assert!(e.to_string().contains("LIMIT/DURATION"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_window_refuses_over_the_limit_and_rolls_over() {
        let l = limiter(&[(CREATE_SESSION, &[RateWindow::new(3, secs(60))])]);
        let t0 = Instant::now();
        for (at, remaining) in [(0, 2), (1, 1), (2, 0)] {
            let d = l.check(CREATE_SESSION, client(1), t0 + secs(at)).unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, remaining);
            assert_eq!(d.window.limit, 3);
            assert_eq!(d.reset_after, secs(60 - at), "anchored at the first call");
        }
        let refused = l.check(CREATE_SESSION, client(1), t0 + secs(30)).unwrap();
        assert!(!refused.allowed);
        assert_eq!((refused.remaining, refused.reset_after), (0, secs(30)));
        // Still refused just before the window ends (refusals do not count).
        assert!(
            !l.check(CREATE_SESSION, client(1), t0 + secs(59))
                .unwrap()
                .allowed
        );
        // A fresh window.
        let d = l.check(CREATE_SESSION, client(1), t0 + secs(60)).unwrap();
        assert!(d.allowed);
        assert_eq!((d.remaining, d.reset_after), (2, secs(60)));
        // Unlimited methods are not counted.
        assert_eq!(
            l.check("com.atproto.server.describeServer", client(1), t0),
            None
        );
        assert!(!l.limits("com.atproto.server.describeServer"));
    }

    #[test]
    fn every_window_must_have_room() {
        let short = RateWindow::new(2, secs(10));
        let long = RateWindow::new(3, secs(100));
        let l = limiter(&[(CREATE_SESSION, &[short, long])]);
        let t0 = Instant::now();
        let check = |at| l.check(CREATE_SESSION, client(1), t0 + secs(at)).unwrap();

        let d = check(0);
        assert!(d.allowed);
        // Short: 1 left, long: 2 left; the short one is reported.
        assert_eq!((d.window, d.remaining), (short, 1));
        let d = check(1);
        assert_eq!((d.allowed, d.window, d.remaining), (true, short, 0));
        // The short window is full.
        let d = check(2);
        assert_eq!(
            (d.allowed, d.window, d.reset_after),
            (false, short, secs(8))
        );
        // The short window rolls over; the long one has one left.
        let d = check(10);
        assert_eq!((d.allowed, d.window, d.remaining), (true, long, 0));
        // The long window is full although the short one has room; the
        // refusal did not count in the short window.
        let d = check(11);
        assert_eq!(
            (d.allowed, d.window, d.reset_after),
            (false, long, secs(89))
        );
        let d = check(20);
        assert_eq!((d.allowed, d.window), (false, long));
        // Both full at once: the one that resets last is reported.
        let l2 = limiter(&[(CREATE_SESSION, &[RateWindow::new(1, secs(10)), long])]);
        let _ = l2.check(CREATE_SESSION, client(1), t0);
        let _ = l2.check(CREATE_SESSION, client(1), t0 + secs(10));
        let _ = l2.check(CREATE_SESSION, client(1), t0 + secs(20));
        let d = l2.check(CREATE_SESSION, client(1), t0 + secs(21)).unwrap();
        assert_eq!(
            (d.allowed, d.window, d.reset_after),
            (false, long, secs(79))
        );
        // After the long window, all is fresh.
        let d = check(100);
        assert_eq!((d.allowed, d.window, d.remaining), (true, short, 1));
    }

    #[test]
    fn clients_and_methods_are_counted_apart() {
        let one = RateWindow::new(1, secs(60));
        let l = limiter(&[(CREATE_SESSION, &[one]), (CREATE_ACCOUNT, &[one])]);
        let t0 = Instant::now();
        assert!(l.check(CREATE_SESSION, client(1), t0).unwrap().allowed);
        assert!(!l.check(CREATE_SESSION, client(1), t0).unwrap().allowed);
        assert!(l.check(CREATE_SESSION, client(2), t0).unwrap().allowed);
        assert!(l.check(CREATE_ACCOUNT, client(1), t0).unwrap().allowed);
        assert!(
            l.check(CREATE_SESSION, ClientKey::UNKNOWN, t0)
                .unwrap()
                .allowed
        );
        assert!(
            !l.check(CREATE_SESSION, ClientKey::UNKNOWN, t0)
                .unwrap()
                .allowed
        );
        // One IPv6 /64 is one client; another /64 is another.
        let v6 = |s: &str| ClientKey::from_ip(s.parse().unwrap());
        assert_eq!(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff::9"));
        assert!(
            l.check(CREATE_SESSION, v6("2001:db8:1:2::1"), t0)
                .unwrap()
                .allowed
        );
        assert!(
            !l.check(CREATE_SESSION, v6("2001:db8:1:2::2"), t0)
                .unwrap()
                .allowed
        );
        assert!(
            l.check(CREATE_SESSION, v6("2001:db8:1:3::1"), t0)
                .unwrap()
                .allowed
        );
        assert_eq!(v6("::ffff:192.0.2.1"), client(1));
        assert_eq!(v6("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn expired_clients_are_purged_so_memory_stays_bounded() {
        let l = limiter(&[(
            CREATE_SESSION,
            &[RateWindow::new(5, secs(30)), RateWindow::new(50, secs(300))],
        )]);
        let t0 = Instant::now();
        let addr = |i: u32| ClientKey::from_ip(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        // Every 10 s, 200 new clients, for two hours.
        let mut peak = 0;
        for step in 0..720u32 {
            let now = t0 + secs(u64::from(step) * 10);
            for i in 0..200 {
                let _ = l.check(CREATE_SESSION, addr(step * 200 + i), now);
            }
            peak = peak.max(l.tracked_clients());
        }
        // At most the clients of the longest window plus a purge interval
        // and the current step, not the 144 000 seen.
        let steps = (300 + PURGE_INTERVAL.as_secs()) / 10 + 1;
        let bound = usize::try_from(steps * 200).unwrap();
        assert!(peak <= bound, "peak {peak} > {bound}");
        // Long after, one request purges everything else.
        let _ = l.check(CREATE_SESSION, client(1), t0 + secs(720 * 10 + 600));
        assert_eq!(l.tracked_clients(), 1);
    }

    #[test]
    fn a_client_with_a_live_window_is_not_purged() {
        let l = limiter(&[(
            CREATE_SESSION,
            &[RateWindow::new(1, secs(10)), RateWindow::new(2, secs(1000))],
        )]);
        let t0 = Instant::now();
        assert!(l.check(CREATE_SESSION, client(1), t0).unwrap().allowed);
        assert!(
            l.check(CREATE_SESSION, client(1), t0 + secs(20))
                .unwrap()
                .allowed
        );
        // A purge runs (other client) while client 1's long window lives.
        let _ = l.check(CREATE_SESSION, client(2), t0 + secs(500));
        assert_eq!(l.tracked_clients(), 2);
        assert!(
            !l.check(CREATE_SESSION, client(1), t0 + secs(600))
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn the_client_comes_from_the_peer_or_a_trusted_proxy() {
        let req = |xff: Option<&str>, peer: Option<&str>| {
            let mut b = Request::builder();
            if let Some(xff) = xff {
                b = b.header("x-forwarded-for", xff);
            }
            let mut r = b.body(()).unwrap();
            if let Some(peer) = peer {
                r.extensions_mut()
                    .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
            }
            r
        };
        let ip = |s: &str| ClientKey::from_ip(s.parse().unwrap());
        let peer = Some("192.0.2.7:5555");
        let r = req(Some("203.0.113.9, 10.0.0.1"), peer);
        assert_eq!(ClientKey::of_request(&r, false), ip("192.0.2.7"));
        assert_eq!(ClientKey::of_request(&r, true), ip("203.0.113.9"));
        let r = req(Some("[2001:db8::1]:443"), peer);
        assert_eq!(ClientKey::of_request(&r, true), ip("2001:db8::1"));
        let r = req(Some("203.0.113.9:8080"), peer);
        assert_eq!(ClientKey::of_request(&r, true), ip("203.0.113.9"));
        // Garbage or absent: the peer.
        let r = req(Some("unknown"), peer);
        assert_eq!(ClientKey::of_request(&r, true), ip("192.0.2.7"));
        assert_eq!(
            ClientKey::of_request(&req(None, peer), true),
            ip("192.0.2.7")
        );
        assert_eq!(
            ClientKey::of_request(&req(None, None), true),
            ClientKey::UNKNOWN
        );
    }

    #[test]
    fn headers_report_the_window() {
        let d = Decision {
            allowed: true,
            window: RateWindow::new(30, secs(300)),
            remaining: 12,
            reset_after: Duration::from_millis(100_500),
        };
        let h = d.headers(UNIX_EPOCH + secs(1_700_000_000));
        assert_eq!(h[RATELIMIT_LIMIT], "30");
        assert_eq!(h[RATELIMIT_REMAINING], "12");
        assert_eq!(h[RATELIMIT_RESET], "1700000101");
        assert_eq!(h[RATELIMIT_POLICY], "30;w=300");
    }

    #[tokio::test]
    async fn the_layer_refuses_with_429_and_passes_the_rest() {
        use tower::ServiceExt;

        let settings = RateLimitSettings {
            trust_proxy: false,
            methods: [(
                CREATE_SESSION.to_owned(),
                vec![RateWindow::new(1, secs(60))],
            )]
            .into_iter()
            .collect(),
        };
        let inner = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Bytes::from_static(b"ok")))
        });
        let svc = RateLimitLayer::new(&settings).layer(inner);
        let call = |path: &str| {
            let mut req = Request::builder().uri(path).body(()).unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1234))));
            svc.clone().oneshot(req)
        };
        let res = call("/xrpc/com.atproto.server.createSession")
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[RATELIMIT_REMAINING], "0");
        let res = call("/xrpc/com.atproto.server.createSession")
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RATELIMIT_POLICY], "1;w=60");
        assert_eq!(res.headers()[header::RETRY_AFTER], "60");
        let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(body["error"], "RateLimitExceeded");
        // Other paths pass untouched.
        for path in ["/xrpc/com.atproto.server.describeServer", "/", "/xrpc/"] {
            let res = call(path).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert!(!res.headers().contains_key(RATELIMIT_LIMIT), "{path}");
        }
    }
}
