//! # aurora-server
//!
//! The Aurora Locus server: configuration ([`config`]), secrets
//! ([`secrets`]), storage selection ([`storage`]), the HTTP application and
//! its layers ([`app`], [`rate_limit`]), the PDS's own XRPC methods
//! ([`api`]) and the accounts behind them ([`accounts`]), the clients of identity services such as the PLC directory
//! ([`identity`]), service proxying to AppViews and other services
//! ([`proxy`]), and serving with graceful shutdown ([`serve`]). The
//! `aurora` binary drives these from the command line; a custom PDS variant
//! uses them directly (see `examples/`).

pub mod accounts;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod identity;
pub mod mail;
pub mod metrics;
pub mod oauth;
pub mod proxy;
pub mod rate_limit;
pub mod repo;
pub mod secrets;
pub mod serve;
pub mod sinks;
pub mod storage;
pub mod xrpc;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aurora_core::crypto::{Curve, SigningKey};
use aurora_core::syntax::Did;
use aurora_core::{PdsBuilder, ServiceInfo};
use aurora_firehose::{FirehosePlugin, FirehoseSettings};

use crate::accounts::{AccountDeps, AccountSettings};
use crate::auth::tokens::SessionTokens;
use crate::config::{Config, ConfigError};
use crate::identity::plc_client::PlcClient;
use crate::mail::OutboxMailer;
use crate::secrets::Secrets;
use crate::storage::Storage;

/// An opened Aurora Locus: configuration, storage and secrets, ready to be
/// assembled into a PDS.
#[derive(Debug)]
pub struct Aurora {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The opened storage.
    pub storage: Storage,
    /// The server's secrets.
    pub secrets: Secrets,
    /// The account dependencies, built once and shared by the API and the
    /// proxy (one token issuer, one set of resolver caches).
    deps: OnceLock<Arc<AccountDeps>>,
    /// The statuses of the running event sinks.
    sink_status: sinks::SinkStatusBoard,
    /// The id this process takes event sink leases with.
    node_id: String,
}

impl Aurora {
    /// Opens storage (migrating the database) and loads or generates secrets.
    pub async fn open(config: Config) -> Result<Self, ConfigError> {
        let storage = Storage::open(&config).await?;
        let secrets = Secrets::load_or_generate(&config).map_err(|e| ConfigError {
            key: "secrets".to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            // After the secrets, so the data directory exists and the id
            // names it canonically.
            node_id: sinks::node_id(&config.data_dir),
            config: Arc::new(config),
            storage,
            secrets,
            deps: OnceLock::new(),
            sink_status: sinks::SinkStatusBoard::new(),
        })
    }

    /// What `describeServer` reports.
    pub fn service_info(&self) -> Result<ServiceInfo, ConfigError> {
        let c = &self.config;
        let did = Did::parse(c.effective_service_did()).map_err(|e| ConfigError {
            key: "AURORA_SERVICE_DID".to_owned(),
            message: e.to_string(),
        })?;
        Ok(ServiceInfo {
            hostname: c.hostname.clone(),
            did,
            user_domains: c.user_domains.clone(),
            invite_code_required: c.invite_required,
            privacy_policy_url: c.privacy_policy_url.clone(),
            terms_of_service_url: c.terms_of_service_url.clone(),
            contact_email: c.contact_email.clone(),
        })
    }

    /// The built-in PDS API, configured.
    pub fn api(&self) -> Result<api::PdsApi, ConfigError> {
        let blobs = api::BlobSettings {
            max_bytes: self.config.blob_max_bytes,
            temp_grace: Duration::from_secs(self.config.blob_temp_grace_secs),
        };
        Ok(api::PdsApi::new(self.shared_account_deps()?)
            .with_blob_settings(blobs)
            .with_block_cache_bytes(self.config.block_cache_mib.saturating_mul(1024 * 1024)))
    }

    /// [`account_deps`](Self::account_deps), built on first use and shared.
    fn shared_account_deps(&self) -> Result<Arc<AccountDeps>, ConfigError> {
        if let Some(deps) = self.deps.get() {
            return Ok(deps.clone());
        }
        let deps = Arc::new(self.account_deps()?);
        Ok(self.deps.get_or_init(|| deps).clone())
    }

    /// The service proxy (see [`proxy`]), configured.
    pub fn proxy(&self) -> Result<proxy::Proxy, ConfigError> {
        let c = &self.config;
        let settings = proxy::ProxySettings {
            appview: c.appview()?,
            chat: c.chat()?,
            timeout: Duration::from_secs(c.proxy.timeout_secs),
            max_request_bytes: c.proxy.max_request_bytes,
            max_response_bytes: c.proxy.max_response_bytes,
            allow_test_hosts: c.allows_test_hosts(),
        };
        proxy::Proxy::new(self.shared_account_deps()?, settings).map_err(|e| ConfigError {
            key: "proxy".to_owned(),
            message: e.to_string(),
        })
    }

    /// What the account manager needs: token issuer, PLC client, rotation
    /// key and sign-up settings.
    pub fn account_deps(&self) -> Result<AccountDeps, ConfigError> {
        let c = &self.config;
        let service_did = self.service_info()?.did;
        let rotation_key =
            SigningKey::from_hex(Curve::K256, self.secrets.plc_rotation_key.expose().trim())
                .map_err(|e| ConfigError {
                    key: "AURORA_PLC_ROTATION_KEY".to_owned(),
                    message: e.to_string(),
                })?;
        let plc = PlcClient::new(&c.plc_url).map_err(|e| ConfigError {
            key: "AURORA_PLC_URL".to_owned(),
            message: e.to_string(),
        })?;
        let allow_test_hosts = c.allows_test_hosts();
        let setup_error = |e: identity::SetupError| ConfigError {
            key: "identity".to_owned(),
            message: e.to_string(),
        };
        let handles = identity::HandleResolver::new(identity::HandleResolverConfig {
            allow_test_hosts,
            ..identity::HandleResolverConfig::default()
        })
        .map_err(setup_error)?;
        let dids = identity::DidResolver::new(
            plc.clone(),
            identity::DidResolverConfig {
                allow_test_hosts,
                ..identity::DidResolverConfig::default()
            },
        )
        .map_err(setup_error)?;
        Ok(AccountDeps {
            tokens: SessionTokens::new(self.secrets.jwt_secret.expose().as_bytes(), service_did),
            resolver: identity::IdentityResolver::new(handles, dids),
            plc,
            rotation_key,
            settings: AccountSettings {
                user_domains: c.user_domains.clone(),
                invite_required: c.invite_required,
                public_url: c.effective_public_url(),
                hostname: c.hostname.clone(),
            },
            admin_password: c.admin_password.clone(),
        })
    }

    /// The `subscribeRepos` firehose, configured.
    pub fn firehose(&self) -> FirehosePlugin {
        let c = &self.config;
        FirehosePlugin::new(FirehoseSettings {
            retention: c.firehose_retention.0,
            outbox_frames: c.firehose_outbox_frames,
            ping_interval: Duration::from_secs(c.firehose_ping_secs),
        })
    }

    /// The sync API (`com.atproto.sync.*`), asking the configured
    /// `crawlers` to crawl this server.
    pub fn sync_plugin(&self) -> Result<aurora_sync::SyncPlugin, ConfigError> {
        let plugin = aurora_sync::SyncPlugin::new();
        if self.config.crawlers.is_empty() {
            return Ok(plugin);
        }
        let http = identity::http_client(Duration::from_secs(30)).map_err(|e| ConfigError {
            key: "AURORA_CRAWLERS".to_owned(),
            message: e.to_string(),
        })?;
        Ok(plugin.with_crawlers(http, self.config.crawlers.clone()))
    }

    /// A builder with this server's storage, the outbox mailer, the
    /// built-in PDS API, the sync API, the firehose, the configured
    /// `[[sinks]]` and the runner of every sink (also those added to the
    /// builder later); add plugins and sinks, then `build()`, and spawn the
    /// PDS's background tasks (`Pds::take_tasks`) to run them.
    pub fn builder(&self) -> Result<PdsBuilder, ConfigError> {
        let mut builder = PdsBuilder::new(self.service_info()?)
            .mailer(Arc::new(OutboxMailer::in_data_dir(&self.config.data_dir)))
            .plugin(self.api()?)
            .plugin(self.sync_plugin()?)
            .plugin(self.firehose())
            .plugin(metrics::DbPoolMetrics(self.storage.clone()));
        for sink in sinks::build_sinks(&self.config)? {
            builder = builder.event_sink(sink);
        }
        let runners = self.config.sinks.iter().fold(
            sinks::SinkRunners::new(self.storage.sink_cursors(), self.sink_status.clone())
                .with_holder(self.node_id()),
            |runners, entry| {
                runners.with_settings(&entry.name, sinks::RunnerSettings::from_entry(entry))
            },
        );
        Ok(self.storage.install(builder.plugin(runners)))
    }

    /// The statuses of the event sinks this process runs (see
    /// [`sinks::runner`]): cursor, lag, failures.
    pub fn sink_status(&self) -> &sinks::SinkStatusBoard {
        &self.sink_status
    }

    /// The id this process takes event sink leases with: the host and the
    /// data directory ([`sinks::node_id`]).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Gives up the leases of the sinks this process ran, once their tasks
    /// stopped (a clean shutdown), so another node takes over at once.
    pub async fn release_sink_leases(&self) {
        sinks::release_leases(
            self.storage.sink_cursors().as_ref(),
            &self.sink_status,
            &self.node_id,
        )
        .await;
    }

    /// The OAuth authorization server for this PDS's public URL.
    pub fn oauth(&self) -> Result<oauth::OAuthProvider, ConfigError> {
        let mut registered = Vec::new();
        for path in &self.config.oauth.client_metadata_files {
            registered.push(std::fs::read(path).map_err(|e| ConfigError {
                key: "oauth.client_metadata_files".to_owned(),
                message: format!("{}: {e}", path.display()),
            })?);
        }
        let fetch = oauth::ClientFetchSettings {
            allow_private_addresses: self.config.allows_test_hosts(),
            registered,
            ..oauth::ClientFetchSettings::default()
        };
        oauth::OAuthProvider::new(
            &self.config.effective_public_url(),
            self.secrets.jwt_secret.expose().as_bytes(),
            self.shared_account_deps()?,
            &fetch,
        )
        .map_err(|e| ConfigError {
            key: match e {
                oauth::OAuthSetupError::Client(_) => "oauth.client_metadata_files",
                _ => "AURORA_PUBLIC_URL",
            }
            .to_owned(),
            message: e.to_string(),
        })
    }

    /// HTTP limits and the service proxy from the configuration.
    pub fn http_settings(&self) -> Result<app::HttpSettings, ConfigError> {
        Ok(app::HttpSettings {
            body_limit: usize::try_from(self.config.blob_max_bytes).unwrap_or(usize::MAX),
            request_timeout: Duration::from_secs(self.config.request_timeout_secs),
            rate_limits: self.config.rate_limits.settings(),
            proxy: Some(self.proxy()?),
            oauth: Some(self.oauth()?),
            metrics: metrics::handle().map(|handle| metrics::MetricsSettings {
                handle,
                public: self.config.metrics_public,
                admin_password: self.config.admin_password.clone(),
            }),
        })
    }
}
