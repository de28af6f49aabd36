//! `app.bsky.actor.getPreferences` / `putPreferences`: an account's private
//! app preferences, kept by the PDS (not in the repo) and never proxied.

use aurora_core::XrpcRoute;
use aurora_core::plugin::XrpcMethodKind::{Procedure, Query};
use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{AccessPolicy, AccountManager, bad_request};
use crate::auth::tokens::AccessScope;
use crate::xrpc::{ApiError, Input, route};

/// Personal details (birth date): only full-access sessions see or set it.
const PERSONAL_DETAILS: &str = "app.bsky.actor.defs#personalDetailsPref";
/// The namespace these preferences live in.
const NAMESPACE: &str = "app.bsky.";

pub(crate) fn routes(accounts: &AccountManager) -> Vec<XrpcRoute> {
    vec![
        route(
            "app.bsky.actor.getPreferences",
            Query,
            get(get_preferences).with_state(accounts.clone()),
        ),
        route(
            "app.bsky.actor.putPreferences",
            Procedure,
            post(put_preferences).with_state(accounts.clone()),
        ),
    ]
}

fn pref_type(pref: &Value) -> Option<&str> {
    pref.get("$type").and_then(Value::as_str)
}

async fn get_preferences(
    State(m): State<AccountManager>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::STANDARD).await?;
    let full = auth.scope == AccessScope::Access;
    let prefs = m.context().accounts.get_preferences(auth.did()).await?;
    let visible: Vec<Value> = prefs
        .into_iter()
        .filter(|p| pref_type(p).is_some_and(|t| t.starts_with(NAMESPACE)))
        .filter(|p| full || pref_type(p) != Some(PERSONAL_DETAILS))
        .collect();
    Ok(Json(json!({ "preferences": visible })))
}

#[derive(Deserialize)]
struct PutPreferencesInput {
    preferences: Vec<Value>,
}

async fn put_preferences(
    State(m): State<AccountManager>,
    headers: HeaderMap,
    Input(input): Input<PutPreferencesInput>,
) -> Result<Json<Value>, ApiError> {
    let auth = m.authenticate(&headers, AccessPolicy::STANDARD).await?;
    let full = auth.scope == AccessScope::Access;
    for pref in &input.preferences {
        match pref_type(pref) {
            None => {
                return Err(bad_request("InvalidRequest", "Preference is missing a $type").into());
            }
            Some(t) if !t.starts_with(NAMESPACE) => {
                return Err(bad_request(
                    "InvalidRequest",
                    "Some preferences are not in the app.bsky namespace",
                )
                .into());
            }
            Some(PERSONAL_DETAILS) if !full => {
                return Err(bad_request(
                    "InvalidRequest",
                    "Do not have authorization to set preferences.",
                )
                .into());
            }
            Some(_) => {}
        }
    }
    let mut prefs = input.preferences;
    if !full {
        // An app password cannot see personal details, so its write
        // keeps the stored ones rather than dropping them.
        let stored = m.context().accounts.get_preferences(auth.did()).await?;
        prefs.extend(
            stored
                .into_iter()
                .filter(|p| pref_type(p) == Some(PERSONAL_DETAILS)),
        );
    }
    m.context()
        .accounts
        .put_preferences(auth.did(), prefs)
        .await?;
    Ok(Json(json!({})))
}
