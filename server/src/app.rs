//! Assembles the HTTP application from a [`Pds`]: the XRPC routes of every
//! plugin, the service proxy for methods no plugin serves (or the fallback
//! that gives them their XRPC errors), the plugins' layers, and the
//! tower-http layers every request passes through.
//!
//! Outermost first: request id -> trace span -> request id echoed back ->
//! request metrics -> panic catcher -> CORS -> compression -> XRPC error
//! bodies -> rate limits
//! -> timeout -> body size limit -> plugin layers -> routes.
//!
//! Rate limits act before routing, so a limited method is refused with 429
//! whichever plugin serves it (or none), and the refusal still gets CORS
//! headers and the request id.

use std::sync::Arc;
use std::time::Duration;

use aurora_core::plugin::XrpcMethodKind;
use aurora_core::syntax::Nsid;
use aurora_core::{Pds, PdsContext, XrpcError};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, get_service, post_service};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::metrics::{MetricsSettings, RequestMetrics};
use crate::proxy::Proxy;
use crate::rate_limit::{RateLimitLayer, RateLimitSettings};
use crate::xrpc::{ApiError, from_http_service, into_http_service};

/// HTTP limits.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Time a request may take before it gets 504.
    pub request_timeout: Duration,
    /// Per-client limits on XRPC methods; `None` disables them.
    pub rate_limits: Option<RateLimitSettings>,
    /// The service proxy, which takes the XRPC methods no plugin serves;
    /// `None`: they are `501 MethodNotImplemented`.
    pub proxy: Option<Proxy>,
    /// The OAuth authorization server, and DPoP-bound tokens on XRPC
    /// calls; `None`: OAuth is not offered.
    pub oauth: Option<crate::oauth::OAuthProvider>,
    /// `/metrics`; `None`: not served (no recorder).
    pub metrics: Option<MetricsSettings>,
}

/// The version reported by `/xrpc/_health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds the application router.
pub fn router(pds: &Pds, settings: &HttpSettings) -> Router {
    let mut routes = Router::new()
        .route("/", get(root))
        .route("/robots.txt", get(robots))
        .route(
            "/xrpc/_health",
            get(health).with_state(pds.context().clone()),
        )
        .route(
            "/.well-known/atproto-did",
            get(crate::api::well_known::atproto_did).with_state(pds.context().clone()),
        );
    if let Some(metrics) = &settings.metrics {
        routes = routes.route(
            "/metrics",
            get(crate::metrics::render).with_state(Arc::new(metrics.clone())),
        );
    }
    for route in pds.routes() {
        let service = from_http_service(route.service.clone());
        let method = match route.kind {
            XrpcMethodKind::Query | XrpcMethodKind::Subscription => get_service(service),
            XrpcMethodKind::Procedure => post_service(service),
        };
        routes = routes.route(&format!("/xrpc/{}", route.nsid), method);
    }
    let unserved = match &settings.proxy {
        Some(proxy) => proxy.route(pds.context()),
        None => any(unknown_method),
    };
    let mut routes = routes.route("/xrpc/{*method}", unserved);
    if let Some(oauth) = &settings.oauth {
        // DPoP proofs are checked before any XRPC handler runs; the OAuth
        // endpoints (outside /xrpc) check their own.
        routes = routes
            .layer(axum::middleware::from_fn_with_state(
                oauth.clone(),
                crate::oauth::resource::check_dpop,
            ))
            .merge(oauth.routes(pds.context().clone()));
    }
    let routes = routes.fallback(not_found);

    let layered = pds.apply_layers(into_http_service(routes));

    // `Router::layer` wraps everything added so far; calls go innermost first.
    let limited = Router::new()
        .fallback_service(from_http_service(layered))
        .layer(RequestBodyLimitLayer::new(settings.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            settings.request_timeout,
        ));
    let limited = match &settings.rate_limits {
        Some(rate_limits) => limited.layer(RateLimitLayer::new(rate_limits)),
        None => limited,
    };
    let request_metrics = RequestMetrics::new(
        pds.routes().iter().map(|r| r.nsid.as_str()),
        settings.proxy.is_some(),
    );
    limited
        .layer(axum::middleware::map_response(ensure_xrpc_error_body))
        .layer(CompressionLayer::new())
        .layer(cors())
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            ApiError(XrpcError::internal()).into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(
            request_metrics,
            crate::metrics::track,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                // Handlers log their own failures; a 5xx here is worth a warning, not more.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN))
                .make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
                }),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// CORS as the reference PDS sends it: any origin, the usual methods, the
/// requested headers allowed, preflights cached for a day.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::PATCH,
            Method::POST,
            Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            http::HeaderName::from_static("dpop-nonce"),
            http::header::WWW_AUTHENTICATE,
        ])
        .max_age(Duration::from_secs(24 * 60 * 60))
}

/// Gives every error response the XRPC error body. Handlers already return
/// one; this covers responses made by generic layers and routing (413, 504,
/// 405, 404, ...), which come with an empty or plain-text body.
async fn ensure_xrpc_error_body(res: Response) -> Response {
    let status = res.status();
    // JSON is already an error body; HTML is the OAuth sign-in page's own
    // error page, for people.
    let has_body = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || has_body {
        return res;
    }
    let (mut parts, _) = res.into_parts();
    let fresh = ApiError(XrpcError::from_status(status)).into_response();
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(ct) = fresh_parts.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    Response::from_parts(parts, body)
}

/// `/xrpc/<anything not served>`: 400 for a malformed NSID, 501 otherwise.
async fn unknown_method(Path(method): Path<String>) -> ApiError {
    match Nsid::parse(method.as_str()) {
        Ok(nsid) => ApiError(XrpcError::method_not_implemented(nsid.as_str())),
        Err(e) => ApiError(XrpcError::invalid_request(format!(
            "{method:?} is not a valid XRPC method: {e}"
        ))),
    }
}

async fn not_found() -> ApiError {
    ApiError(XrpcError::not_found("no such endpoint"))
}

/// `GET /xrpc/_health`: the version, and 503 when storage does not answer.
async fn health(State(ctx): State<PdsContext>) -> Response {
    match ctx.sequencer.current_seq().await {
        Ok(_) => axum::Json(json!({ "version": VERSION })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: storage unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "version": VERSION, "error": "Service Unavailable" })),
            )
                .into_response()
        }
    }
}

async fn root() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "This is an AT Protocol Personal Data Server (Aurora Locus).\n\n\
         Most API routes are under /xrpc/\n",
    )
}

async fn robots() -> &'static str {
    "# Hello!\n\n# Crawling the public API is allowed\nUser-agent: *\nAllow: /\n"
}
