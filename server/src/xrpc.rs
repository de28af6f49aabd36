//! The bridge between axum and the framework-free plugin surface of
//! `aurora-core`: handlers become [`HttpService`]s, and [`ApiError`] turns an
//! [`XrpcError`] into an axum response.

use std::convert::Infallible;

use aurora_core::http::{Body, HttpService};
use aurora_core::plugin::{XrpcMethodKind, XrpcRoute};
use aurora_core::syntax::Nsid;
use aurora_core::{StoreError, XrpcError};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// An axum body as a plugin-surface body. The `axum::Error` wrapper is
/// removed so that, when the body goes back into axum, errors such as the
/// body-size limit keep their type (and their 413) instead of being nested.
fn from_axum_body(body: axum::body::Body) -> Body {
    body.map_err(axum::Error::into_inner).boxed_unsync()
}

/// Boxes an axum service (a `Router` or `MethodRouter`) as a plugin-surface
/// [`HttpService`].
pub fn into_http_service<S>(service: S) -> HttpService
where
    S: Service<axum::extract::Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    BoxCloneSyncService::new(
        service
            .map_request(|req: aurora_core::http::Request| req.map(axum::body::Body::new))
            .map_response(|res: Response| res.map(from_axum_body)),
    )
}

/// Adapts a plugin-surface [`HttpService`] back into an axum-compatible service.
pub fn from_http_service(
    service: HttpService,
) -> impl Service<axum::extract::Request, Response = Response, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    service
        .map_request(|req: axum::extract::Request| req.map(from_axum_body))
        .map_response(|res: aurora_core::http::Response| res.map(axum::body::Body::new))
}

/// An XRPC route served by an axum `MethodRouter` (or any axum service).
pub fn route<S>(nsid: &'static str, kind: XrpcMethodKind, service: S) -> XrpcRoute
where
    S: Service<axum::extract::Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    // NSIDs given here are literals in our own code.
    let nsid = Nsid::parse(nsid).unwrap_or_else(|e| panic!("route {nsid}: {e}"));
    XrpcRoute::new(nsid, kind, into_http_service(service))
}

/// The error type of axum handlers: an [`XrpcError`] that renders as the
/// XRPC error body.
#[derive(Debug)]
pub struct ApiError(pub XrpcError);

impl From<XrpcError> for ApiError {
    fn from(e: XrpcError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Unavailable(_) => tracing::warn!(error = %e, "storage unavailable"),
            StoreError::Full(_) => tracing::error!(error = %e, "storage full: writes fail"),
            StoreError::Backend(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "storage failure");
            }
            _ => {}
        }
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response().map(axum::body::Body::new)
    }
}

/// A procedure's JSON input. A missing or malformed body is a 400
/// `InvalidRequest` with the parser's explanation (axum's own rejections
/// would be plain text with other statuses).
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Input<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(XrpcError::invalid_request(format!(
                "invalid input: {}",
                rejection.body_text()
            )))),
        }
    }
}

/// A query's parameters, with a 400 `InvalidRequest` when they do not fit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(XrpcError::invalid_request(format!(
                "invalid parameters: {}",
                rejection.body_text()
            )))),
        }
    }
}
