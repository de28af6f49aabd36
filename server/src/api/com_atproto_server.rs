//! `com.atproto.server.*`: server description (accounts and sessions come
//! with the accounts issue).

use aurora_core::plugin::XrpcMethodKind;
use aurora_core::{PdsContext, XrpcRoute};
use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::xrpc::route;

pub(crate) fn routes(ctx: &PdsContext) -> Vec<XrpcRoute> {
    vec![route(
        "com.atproto.server.describeServer",
        XrpcMethodKind::Query,
        get(describe_server).with_state(ctx.clone()),
    )]
}

/// `com.atproto.server.describeServer`: the service DID, handle domains and
/// sign-up requirements.
async fn describe_server(State(ctx): State<PdsContext>) -> Json<Value> {
    let s = &ctx.service;
    let mut body = json!({
        "did": s.did,
        "availableUserDomains": s.user_domains,
        "inviteCodeRequired": s.invite_code_required,
        "phoneVerificationRequired": false,
    });
    let mut links = serde_json::Map::new();
    if let Some(url) = &s.privacy_policy_url {
        links.insert("privacyPolicy".into(), json!(url));
    }
    if let Some(url) = &s.terms_of_service_url {
        links.insert("termsOfService".into(), json!(url));
    }
    if !links.is_empty() {
        body["links"] = Value::Object(links);
    }
    if let Some(email) = &s.contact_email {
        body["contact"] = json!({ "email": email });
    }
    Json(body)
}
