//! The [`Plugin`] trait: how endpoints and middleware are added to a PDS.

use futures::future::BoxFuture;

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

/// A long-running job that runs beside the server for as long as it
/// serves: sweeps, pruning, delivery to event sinks. The server spawns each
/// on its runtime and aborts it on shutdown, so a task must keep its state
/// in storage, not only in memory.
pub struct BackgroundTask {
    /// A short name for logs.
    pub name: String,
    /// The job; it normally never completes.
    pub run: BoxFuture<'static, ()>,
}

impl BackgroundTask {
    /// A task named `name` running `run`.
    pub fn new(
        name: impl Into<String>,
        run: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            run: Box::pin(run),
        }
    }
}

impl std::fmt::Debug for BackgroundTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundTask")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
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

    /// Jobs to run beside the server while it serves (see
    /// [`BackgroundTask`]).
    fn tasks(&self, ctx: &PdsContext) -> Vec<BackgroundTask> {
        let _ = ctx;
        Vec::new()
    }
}
