//! `/oauth/account`: where a user sees and ends the OAuth sessions of the
//! accounts signed in on this browser, and the browsers those accounts are
//! remembered on. Plain HTML forms, like the sign-in page; a password
//! sign-in here remembers the browser.

use std::fmt::Write as _;

use aurora_core::store::{Account, OAuthDeviceAccount};
use aurora_core::syntax::Did;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};

use super::endpoints::Params;
use super::page::{
    csrf_ok, csrf_token, device_cookie, device_id, error_page, error_page_for, escape, page,
    posted_form, remembered_accounts, set_device_cookie, user_agent,
};
use super::{OAuthError, OAuthState, random_id};
use crate::accounts::AccountManager;

/// What the page's CSRF token is bound to, besides the device cookie.
const CSRF_PURPOSE: &str = "account page";

/// `GET /oauth/account`.
pub(super) async fn show(State(state): State<OAuthState>, headers: HeaderMap) -> Response {
    let (cookie, new_cookie) = match device_cookie(&headers) {
        Some(c) => (c, false),
        None => (random_id("dev-", 32), true),
    };
    let mut res = match render(&state, &cookie, None).await {
        Ok(page) => page.into_response(),
        Err(e) => error_page_for(&e),
    };
    if new_cookie {
        set_device_cookie(&state, &mut res, &cookie);
    }
    res
}

/// `POST /oauth/account`: sign in, revoke a session, or sign an account
/// out of a browser.
pub(super) async fn act(
    State(state): State<OAuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (cookie, params) = match posted_form(&state, &headers, &body) {
        Ok(posted) => posted,
        Err(res) => return *res,
    };
    if !csrf_ok(&state, &params, &cookie, CSRF_PURPOSE) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form does not belong to this browser. Reload the page.",
        );
    }
    let outcome = match params.get("action") {
        Some("sign-in") => sign_in(&state, &params, &cookie, &headers).await,
        Some("revoke") => revoke(&state, &params, &cookie).await,
        Some("sign-out") => sign_out(&state, &params, &cookie).await,
        _ => Err("Unknown action.".to_owned()),
    };
    match outcome {
        // Back to the page with a GET, so a reload does not post again.
        Ok(()) => Redirect::to("/oauth/account").into_response(),
        Err(message) => match render(&state, &cookie, Some(&message)).await {
            Ok(page) => (StatusCode::BAD_REQUEST, page).into_response(),
            Err(e) => error_page_for(&e),
        },
    }
}

type Outcome = Result<(), String>;

fn storage_failed(e: impl Into<OAuthError>) -> String {
    let e: OAuthError = e.into();
    e.description().to_owned()
}

async fn sign_in(
    state: &OAuthState,
    params: &Params,
    cookie: &str,
    headers: &HeaderMap,
) -> Outcome {
    let manager = AccountManager::new(state.ctx.clone(), state.provider.inner.deps.clone());
    let account = manager
        .verify_sign_in(
            params.get("identifier").unwrap_or_default(),
            params.get("password").unwrap_or_default(),
        )
        .await
        .map_err(|e| e.message)?;
    let now = Utc::now();
    state
        .ctx
        .oauth
        .upsert_oauth_device_account(&OAuthDeviceAccount {
            device_id: device_id(cookie),
            did: account.did,
            authenticated_at: now,
            user_agent: user_agent(headers),
            last_seen_at: now,
        })
        .await
        .map_err(storage_failed)
}

/// The account named by the form's `did`, which must be signed in here.
async fn signed_in_account(
    state: &OAuthState,
    params: &Params,
    cookie: &str,
) -> Result<Did, String> {
    let did = params
        .get("did")
        .and_then(|d| Did::parse(d).ok())
        .ok_or_else(|| "No account given.".to_owned())?;
    let accounts = remembered_accounts(state, &device_id(cookie))
        .await
        .map_err(|e| e.description().to_owned())?;
    if accounts.iter().any(|a| a.did == did) {
        Ok(did)
    } else {
        Err("Sign in to that account on this browser first.".to_owned())
    }
}

async fn revoke(state: &OAuthState, params: &Params, cookie: &str) -> Outcome {
    let did = signed_in_account(state, params, cookie).await?;
    let id = params
        .get("session")
        .ok_or_else(|| "No session given.".to_owned())?;
    let store = &state.ctx.oauth;
    let owned = store
        .list_oauth_sessions(&did)
        .await
        .map_err(storage_failed)?
        .iter()
        .any(|s| s.id == id);
    if !owned {
        return Err("That session is not this account's.".to_owned());
    }
    store
        .delete_oauth_session(id)
        .await
        .map_err(storage_failed)?;
    Ok(())
}

async fn sign_out(state: &OAuthState, params: &Params, cookie: &str) -> Outcome {
    let did = signed_in_account(state, params, cookie).await?;
    let device = params
        .get("device")
        .map_or_else(|| device_id(cookie), str::to_owned);
    state
        .ctx
        .oauth
        .delete_oauth_device_account(&device, &did)
        .await
        .map_err(storage_failed)?;
    Ok(())
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

async fn render(
    state: &OAuthState,
    cookie: &str,
    message: Option<&str>,
) -> Result<Html<String>, OAuthError> {
    let device = device_id(cookie);
    let csrf = csrf_token(state, cookie, CSRF_PURPOSE);
    let hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&csrf)
    );
    let mut body = String::from("<h1>Apps and devices</h1>\n");
    if let Some(message) = message {
        let _ = writeln!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(message)
        );
    }
    let accounts = remembered_accounts(state, &device).await?;
    for account in &accounts {
        body.push_str(&account_section(state, account, &device, &hidden).await?);
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/oauth/account\">{hidden}\
         <input type=\"hidden\" name=\"action\" value=\"sign-in\">\n\
         <fieldset><legend>{}</legend>\n\
         <label for=\"identifier\">Handle or email</label>\n\
         <input id=\"identifier\" name=\"identifier\" type=\"text\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\">\n\
         <div class=\"buttons\"><button type=\"submit\" id=\"sign-in\">Sign in</button></div>\n\
         </fieldset></form>\n",
        if accounts.is_empty() {
            "Sign in to see the apps you allowed"
        } else {
            "Sign in to another account"
        }
    );
    Ok(Html(page("Apps and devices", &body)))
}

async fn account_section(
    state: &OAuthState,
    account: &Account,
    this_device: &str,
    hidden: &str,
) -> Result<String, OAuthError> {
    let store = &state.ctx.oauth;
    let did = escape(account.did.as_str());
    let mut out = format!(
        "<section aria-labelledby=\"h-{did}\">\n<h2 id=\"h-{did}\">{}</h2>\n<h3>Apps with access</h3>\n",
        escape(account.handle.as_str())
    );
    let sessions = store.list_oauth_sessions(&account.did).await?;
    if sessions.is_empty() {
        out.push_str("<p>No app has access.</p>\n");
    }
    out.push_str("<ul class=\"sessions\">\n");
    for session in &sessions {
        let _ = writeln!(
            out,
            "<li><code>{client}</code><br><small>allowed {created}, last refreshed {updated}; \
             scope <code>{scope}</code></small>\
             <form method=\"post\" action=\"/oauth/account\">{hidden}\
             <input type=\"hidden\" name=\"action\" value=\"revoke\">\
             <input type=\"hidden\" name=\"did\" value=\"{did}\">\
             <input type=\"hidden\" name=\"session\" value=\"{id}\">\
             <button type=\"submit\" class=\"secondary\" aria-label=\"Revoke access of {client}\">Revoke</button></form></li>",
            client = escape(&session.client_id),
            created = when(session.created_at),
            updated = when(session.updated_at),
            scope = escape(&session.scope),
            id = escape(&session.id),
        );
    }
    out.push_str("</ul>\n<h3>Browsers signed in</h3>\n<ul class=\"devices\">\n");
    for device in store.oauth_devices_of(&account.did).await? {
        let this = if device.device_id == this_device {
            " (this browser)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<li>{agent}{this}<br><small>last used {seen}</small>\
             <form method=\"post\" action=\"/oauth/account\">{hidden}\
             <input type=\"hidden\" name=\"action\" value=\"sign-out\">\
             <input type=\"hidden\" name=\"did\" value=\"{did}\">\
             <input type=\"hidden\" name=\"device\" value=\"{device_id}\">\
             <button type=\"submit\" class=\"secondary\">Sign out</button></form></li>",
            agent = escape(device.user_agent.as_deref().unwrap_or("A browser")),
            seen = when(device.last_seen_at),
            device_id = escape(&device.device_id),
        );
    }
    out.push_str("</ul>\n</section>\n");
    Ok(out)
}
