//! The HTTP types plugins and the server share, without tying `aurora-core`
//! to a web framework: plain `http` requests and responses with a boxed body,
//! and a boxed, cloneable tower service over them.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use tower::util::BoxCloneSyncService;

/// Any error a body can produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request and response body type used across plugin boundaries.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// An HTTP request as plugins see it.
pub type Request = http::Request<Body>;

/// An HTTP response as plugins produce it.
pub type Response = http::Response<Body>;

/// A type-erased HTTP service: what a plugin route is, and what a plugin
/// layer wraps. Errors are responses, so the error type is `Infallible`.
pub type HttpService = BoxCloneSyncService<Request, Response, Infallible>;

/// A body holding `bytes`.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty_body() -> Body {
    full_body(Bytes::new())
}

/// Converts any compatible body into [`Body`].
pub fn boxed_body<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Boxes a tower service over `http` types (an axum `Router` or
/// `MethodRouter`, a hyper service, ...) as an [`HttpService`], so a plugin
/// can write its routes with any tower-compatible framework.
pub fn into_http_service<S, B>(service: S) -> HttpService
where
    S: tower::Service<Request, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use tower::ServiceExt as _;
    BoxCloneSyncService::new(service.map_response(|res: http::Response<B>| res.map(boxed_body)))
}
