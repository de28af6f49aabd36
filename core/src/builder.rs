//! [`PdsBuilder`]: assembles a PDS from `Arc<dyn ...>` parts and plugins.
//!
//! The builder validates the assembly (every required part present, no two
//! plugins serving one NSID) and produces a [`Pds`]: the context every
//! plugin sees, the XRPC routes, and the plugins' layers. Serving a `Pds` over
//! HTTP is the server crate's job, so that this crate stays free of any web
//! framework.

use std::collections::HashMap;
use std::sync::Arc;

use crate::http::HttpService;
use crate::mail::Mailer;
use crate::plugin::{BackgroundTask, Plugin, XrpcRoute};
use crate::sink::EventSink;
use crate::store::{AccountStore, BlobStore, OAuthStore, RepoStore, Sequencer};
use crate::syntax::Did;

/// Public facts about this service, as `describeServer` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The public hostname (`example.com`).
    pub hostname: String,
    /// The service's DID (`did:web:<hostname>` by default).
    pub did: Did,
    /// Domains under which users may register handles, each starting with `.`.
    pub user_domains: Vec<String>,
    /// Whether `createAccount` needs an invite code.
    pub invite_code_required: bool,
    /// Link to the privacy policy.
    pub privacy_policy_url: Option<String>,
    /// Link to the terms of service.
    pub terms_of_service_url: Option<String>,
    /// Contact email of the operator.
    pub contact_email: Option<String>,
}

/// What every plugin sees of the PDS: service facts and the storage traits.
#[derive(Clone)]
pub struct PdsContext {
    /// Public facts about this service.
    pub service: Arc<ServiceInfo>,
    /// Blocks, roots, record index, event writes.
    pub repos: Arc<dyn RepoStore>,
    /// The read side of the event log.
    pub sequencer: Arc<dyn Sequencer>,
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// The OAuth authorization server's requests, sessions and devices.
    pub oauth: Arc<dyn OAuthStore>,
    /// Blobs.
    pub blobs: Arc<dyn BlobStore>,
    /// Configured event sinks.
    pub sinks: Vec<Arc<dyn EventSink>>,
    /// Sends email.
    pub mailer: Arc<dyn Mailer>,
}

impl std::fmt::Debug for PdsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdsContext")
            .field("service", &self.service)
            .field(
                "sinks",
                &self
                    .sinks
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Why a PDS could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A required part was not given.
    #[error("no {0} configured")]
    Missing(&'static str),
    /// Two plugins serve the same XRPC method.
    #[error("XRPC method {nsid} is served by both plugin {first} and plugin {second}")]
    DuplicateRoute {
        /// The method.
        nsid: String,
        /// The plugin registered first.
        first: String,
        /// The plugin registered later.
        second: String,
    },
    /// Two event sinks share a name (their cursors would collide).
    #[error("two event sinks are named {0}")]
    DuplicateSink(String),
}

/// Assembles a [`Pds`].
///
/// ```ignore
/// let pds = PdsBuilder::new(service_info)
///     .storage(Arc::new(sql_store)) // RepoStore + Sequencer + AccountStore + OAuthStore
///     .blob_store(Arc::new(fs_blobs))
///     .plugin(MyPlugin)
///     .build()?;
/// ```
///
/// `examples/custom-pds` in the repository is a complete, compiled example.
#[derive(Default)]
pub struct PdsBuilder {
    service: Option<ServiceInfo>,
    repos: Option<Arc<dyn RepoStore>>,
    sequencer: Option<Arc<dyn Sequencer>>,
    accounts: Option<Arc<dyn AccountStore>>,
    oauth: Option<Arc<dyn OAuthStore>>,
    blobs: Option<Arc<dyn BlobStore>>,
    sinks: Vec<Arc<dyn EventSink>>,
    mailer: Option<Arc<dyn Mailer>>,
    plugins: Vec<Arc<dyn Plugin>>,
}

impl std::fmt::Debug for PdsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdsBuilder")
            .field("service", &self.service)
            .field(
                "plugins",
                &self
                    .plugins
                    .iter()
                    .map(|p| p.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl PdsBuilder {
    /// A builder for a service described by `service`.
    pub fn new(service: ServiceInfo) -> Self {
        Self {
            service: Some(service),
            ..Self::default()
        }
    }

    /// Uses `store` as repo store, sequencer, account store and OAuth store
    /// at once, the usual case for a database backend.
    #[must_use]
    pub fn storage<S>(self, store: Arc<S>) -> Self
    where
        S: RepoStore + Sequencer + AccountStore + OAuthStore,
    {
        self.repo_store(store.clone())
            .sequencer(store.clone())
            .account_store(store.clone())
            .oauth_store(store)
    }

    /// Sets the repo store.
    #[must_use]
    pub fn repo_store(mut self, store: Arc<dyn RepoStore>) -> Self {
        self.repos = Some(store);
        self
    }

    /// Sets the sequencer.
    #[must_use]
    pub fn sequencer(mut self, sequencer: Arc<dyn Sequencer>) -> Self {
        self.sequencer = Some(sequencer);
        self
    }

    /// Sets the account store.
    #[must_use]
    pub fn account_store(mut self, store: Arc<dyn AccountStore>) -> Self {
        self.accounts = Some(store);
        self
    }

    /// Sets the OAuth store.
    #[must_use]
    pub fn oauth_store(mut self, store: Arc<dyn OAuthStore>) -> Self {
        self.oauth = Some(store);
        self
    }

    /// Sets the blob store.
    #[must_use]
    pub fn blob_store(mut self, store: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(store);
        self
    }

    /// Sets the mailer.
    #[must_use]
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Adds an event sink.
    #[must_use]
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Adds a plugin. Plugins' layers wrap in registration order (the last
    /// registered is outermost).
    #[must_use]
    pub fn plugin(mut self, plugin: impl Plugin) -> Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Adds an already shared plugin.
    #[must_use]
    pub fn shared_plugin(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Validates the parts and assembles the PDS.
    pub fn build(self) -> Result<Pds, BuildError> {
        let mut sink_names = std::collections::HashSet::new();
        for sink in &self.sinks {
            if !sink_names.insert(sink.name().to_owned()) {
                return Err(BuildError::DuplicateSink(sink.name().to_owned()));
            }
        }
        let context = PdsContext {
            service: Arc::new(self.service.ok_or(BuildError::Missing("service info"))?),
            repos: self.repos.ok_or(BuildError::Missing("repo store"))?,
            sequencer: self.sequencer.ok_or(BuildError::Missing("sequencer"))?,
            accounts: self.accounts.ok_or(BuildError::Missing("account store"))?,
            oauth: self.oauth.ok_or(BuildError::Missing("OAuth store"))?,
            blobs: self.blobs.ok_or(BuildError::Missing("blob store"))?,
            sinks: self.sinks,
            mailer: self.mailer.ok_or(BuildError::Missing("mailer"))?,
        };
        let mut owners: HashMap<String, String> = HashMap::new();
        let mut routes = Vec::new();
        for plugin in &self.plugins {
            for route in plugin.routes(&context) {
                let nsid = route.nsid.as_str().to_owned();
                if let Some(first) = owners.insert(nsid.clone(), plugin.name().to_owned()) {
                    return Err(BuildError::DuplicateRoute {
                        nsid,
                        first,
                        second: plugin.name().to_owned(),
                    });
                }
                routes.push(route);
            }
        }
        let tasks = self
            .plugins
            .iter()
            .flat_map(|plugin| plugin.tasks(&context))
            .collect();
        Ok(Pds {
            context,
            routes,
            plugins: self.plugins,
            tasks,
        })
    }
}

/// An assembled PDS, ready for a server to serve.
pub struct Pds {
    context: PdsContext,
    routes: Vec<XrpcRoute>,
    plugins: Vec<Arc<dyn Plugin>>,
    tasks: Vec<BackgroundTask>,
}

impl std::fmt::Debug for Pds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pds")
            .field("context", &self.context)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl Pds {
    /// The context plugins see.
    pub fn context(&self) -> &PdsContext {
        &self.context
    }

    /// Every plugin's XRPC methods.
    pub fn routes(&self) -> &[XrpcRoute] {
        &self.routes
    }

    /// Takes every plugin's background tasks, for the server to spawn when
    /// it starts serving (a second call returns none).
    pub fn take_tasks(&mut self) -> Vec<BackgroundTask> {
        std::mem::take(&mut self.tasks)
    }

    /// Wraps `service` in every plugin's layer, in registration order.
    pub fn apply_layers(&self, service: HttpService) -> HttpService {
        self.plugins
            .iter()
            .fold(service, |svc, plugin| plugin.layer(&self.context, svc))
    }
}
