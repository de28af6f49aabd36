//! The PDS's own XRPC methods, as a `Plugin`: one
//! module per lexicon namespace (`com.atproto.server`, ...), plus the
//! `/.well-known/atproto-did` answer for hosted handles.

mod com_atproto_admin;
mod com_atproto_identity;
mod com_atproto_repo;
mod com_atproto_server;
pub mod well_known;

use std::sync::Arc;

use aurora_core::{PdsContext, Plugin, XrpcRoute};

use crate::accounts::{AccountDeps, AccountManager};

/// The built-in PDS API.
#[derive(Debug, Clone)]
pub struct PdsApi {
    deps: Arc<AccountDeps>,
}

impl PdsApi {
    /// The API over accounts managed with `deps`.
    pub fn new(deps: Arc<AccountDeps>) -> Self {
        Self { deps }
    }

    /// The account manager the API's handlers use, over `ctx`.
    pub fn account_manager(&self, ctx: &PdsContext) -> AccountManager {
        AccountManager::new(ctx.clone(), self.deps.clone())
    }
}

impl Plugin for PdsApi {
    fn name(&self) -> &'static str {
        "pds-api"
    }

    fn routes(&self, ctx: &PdsContext) -> Vec<XrpcRoute> {
        let accounts = self.account_manager(ctx);
        let mut routes = com_atproto_server::routes(ctx, &accounts);
        routes.extend(com_atproto_identity::routes(&accounts));
        routes.extend(com_atproto_admin::routes(&accounts));
        let writer = crate::repo::RepoWriter::new(ctx.clone(), crate::repo::BlockCache::default());
        routes.extend(com_atproto_repo::routes(&accounts, &writer));
        routes
    }
}
