//! `com.atproto.server.describeServer`.

use aurora_core::PdsContext;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// `com.atproto.server.describeServer`: the service DID, handle domains and
/// sign-up requirements.
pub(super) async fn describe_server(State(ctx): State<PdsContext>) -> Json<Value> {
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
