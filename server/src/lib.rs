//! # aurora-server
//!
//! The Aurora Locus server: configuration ([`config`]), secrets
//! ([`secrets`]), storage selection ([`storage`]), the HTTP application and
//! its layers ([`app`], [`rate_limit`]), the PDS's own XRPC methods
//! ([`api`]), the clients of identity services such as the PLC directory
//! ([`identity`]), and serving with graceful shutdown ([`serve`]). The
//! `aurora` binary drives these from the command line; a custom PDS variant
//! uses them directly (see `examples/`).

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod identity;
pub mod rate_limit;
pub mod secrets;
pub mod serve;
pub mod storage;
pub mod xrpc;

use std::sync::Arc;
use std::time::Duration;

use aurora_core::syntax::Did;
use aurora_core::{PdsBuilder, ServiceInfo};

use crate::config::{Config, ConfigError};
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
            config: Arc::new(config),
            storage,
            secrets,
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

    /// A builder with this server's storage and the built-in PDS API;
    /// add plugins and sinks, then `build()`.
    pub fn builder(&self) -> Result<PdsBuilder, ConfigError> {
        let builder = PdsBuilder::new(self.service_info()?).plugin(api::PdsApi);
        Ok(self.storage.install(builder))
    }

    /// HTTP limits from the configuration.
    pub fn http_settings(&self) -> app::HttpSettings {
        app::HttpSettings {
            body_limit: usize::try_from(self.config.blob_max_bytes).unwrap_or(usize::MAX),
            request_timeout: Duration::from_secs(self.config.request_timeout_secs),
            rate_limits: self.config.rate_limits.settings(),
        }
    }
}
