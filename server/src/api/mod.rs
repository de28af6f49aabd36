//! The PDS's own XRPC methods, as a [`Plugin`](aurora_core::Plugin): one
//! module per lexicon namespace (`com.atproto.server`, ...).

mod com_atproto_server;

use aurora_core::{PdsContext, Plugin, XrpcRoute};

/// The built-in PDS API.
#[derive(Debug, Default)]
pub struct PdsApi;

impl Plugin for PdsApi {
    fn name(&self) -> &'static str {
        "pds-api"
    }

    fn routes(&self, ctx: &PdsContext) -> Vec<XrpcRoute> {
        com_atproto_server::routes(ctx)
    }
}
