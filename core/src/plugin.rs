//! The [`Plugin`] trait: how endpoints and middleware are added to a PDS.

use crate::builder::PdsContext;
use crate::http::HttpService;
use crate::syntax::Nsid;

/// The HTTP shape of an XRPC method, as its lexicon declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrpcMethodKind {
    /// A `query`: `GET`, parameters in the query string.
    Query,
    /// A `procedure`: `POST`, input in the body.
    Procedure,
    /// A `subscription`: `GET` upgraded to a WebSocket.
    Subscription,
}

/// One XRPC method served at `/xrpc/<nsid>`.
#[derive(Clone)]
pub struct XrpcRoute {
    /// The method's NSID.
    pub nsid: Nsid,
    /// Query, procedure or subscription.
    pub kind: XrpcMethodKind,
    /// The handler, as a type-erased tower service.
    pub service: HttpService,
}

impl std::fmt::Debug for XrpcRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XrpcRoute")
            .field("nsid", &self.nsid)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl XrpcRoute {
    /// A route for `nsid` served by `service`.
    pub fn new(nsid: Nsid, kind: XrpcMethodKind, service: HttpService) -> Self {
        Self {
            nsid,
            kind,
            service,
        }
    }
}

/// An extension of the PDS: XRPC methods and tower middleware.
///
/// Plugins see the server only through [`PdsContext`] (the storage traits and
/// service settings) and contribute through this trait; they never import the
/// server or a concrete backend. Routes are plain `http` services, so a
/// plugin may build them with any tower-compatible framework.
pub trait Plugin: Send + Sync + 'static {
    /// A short, unique name, used in logs and errors.
    fn name(&self) -> &str;

    /// The XRPC methods this plugin serves. Two plugins serving one NSID is a
    /// build error.
    fn routes(&self, ctx: &PdsContext) -> Vec<XrpcRoute> {
        let _ = ctx;
        Vec::new()
    }

    /// Wraps the whole XRPC service (all plugins' routes) in middleware.
    /// Layers of plugins registered later wrap those registered earlier.
    fn layer(&self, ctx: &PdsContext, inner: HttpService) -> HttpService {
        let _ = ctx;
        inner
    }
}
