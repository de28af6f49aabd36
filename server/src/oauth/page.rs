//! `/oauth/authorize`: the sign-in and consent page, rendered on the
//! server as plain HTML (one form, no script), readable on a phone and
//! usable with a keyboard and a screen reader.
//!
//! The browser is recognised by a random cookie (`aurora-device`); the
//! store keeps only its hash. Accounts signed in with "remember this
//! device" may approve again without their password for
//! [`DEVICE_LOGIN_LIFETIME`]. The form carries a token derived from the
//! device cookie and the request, so another site cannot post it.

use std::collections::HashMap;
use std::fmt::Write as _;

use aurora_core::store::{Account, AccountLookup, AccountStatus, OAuthDeviceAccount, OAuthRequest};
use aurora_core::syntax::Did;
use aurora_oauth::client::ClientMetadata;
use aurora_oauth::scope::{Permission, Scopes, Transition};
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use hmac::Mac as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::endpoints::Params;
use super::{
    CODE_LIFETIME, DEVICE_LOGIN_LIFETIME, OAuthError, OAuthState, REQUEST_LIFETIME,
    REQUEST_URI_PREFIX, random_id,
};
use crate::accounts::AccountManager;

const DEVICE_COOKIE: &str = "aurora-device";

/// A pushed request found from its `request_uri`, with its parameters.
struct Pending {
    request: OAuthRequest,
    parameters: Value,
}

impl Pending {
    fn param(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).and_then(Value::as_str)
    }

    /// The redirect back to the client with `params` (and `iss`, `state`).
    fn redirect(&self, issuer: &str, params: &[(&str, &str)]) -> Response {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("iss", issuer);
        if let Some(state) = self.param("state") {
            query.append_pair("state", state);
        }
        for (k, v) in params {
            query.append_pair(k, v);
        }
        let query = query.finish();
        let base = self.param("redirect_uri").unwrap_or_default();
        let target = if self.param("response_mode") == Some("fragment") {
            format!("{base}#{query}")
        } else if base.contains('?') {
            format!("{base}&{query}")
        } else {
            format!("{base}?{query}")
        };
        let mut res = StatusCode::SEE_OTHER.into_response();
        if let Ok(location) = HeaderValue::from_str(&target) {
            res.headers_mut().insert(header::LOCATION, location);
        }
        res
    }

    fn error_redirect(&self, issuer: &str, code: &str, description: &str) -> Response {
        self.redirect(
            issuer,
            &[("error", code), ("error_description", description)],
        )
    }
}

/// The device cookie's value, if the browser sent one.
pub(super) fn device_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| {
            *name == DEVICE_COOKIE && value.starts_with("dev-") && value.len() == 68
        })
        .map(|(_, value)| value.to_owned())
}

/// The browser's `User-Agent`, shortened, for session lists.
pub(super) fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(300).collect())
}

/// What the store knows a device by: the hash of its cookie.
pub(super) fn device_id(cookie: &str) -> String {
    hex::encode(Sha256::digest(cookie.as_bytes()))
}

pub(super) fn csrf_token(state: &OAuthState, cookie: &str, request_id: &str) -> String {
    let mut mac = crate::auth::tokens::hmac_sha256(&state.provider.inner.page_secret);
    mac.update(cookie.as_bytes());
    mac.update(b"\n");
    mac.update(request_id.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A form posted to one of the pages, refused (with the page to show)
/// unless it comes from this site (`Origin`) with the device cookie:
/// the cookie and the form.
pub(super) fn posted_form(
    state: &OAuthState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Params), Box<Response>> {
    let issuer = state.provider.issuer().as_str();
    if headers
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() != issuer.as_bytes())
    {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "This form was sent from another site.",
        )));
    }
    let cookie = device_cookie(headers).ok_or_else(|| {
        Box::new(error_page(
            StatusCode::FORBIDDEN,
            "Your browser did not send this page's cookie. Allow cookies for this site and start again.",
        ))
    })?;
    let params = Params::parse(body).map_err(|e| Box::new(error_page_for(&e)))?;
    Ok((cookie, params))
}

/// Whether the form carries the CSRF token of `cookie` for `purpose`.
pub(super) fn csrf_ok(state: &OAuthState, params: &Params, cookie: &str, purpose: &str) -> bool {
    params.get("csrf").is_some_and(|t| {
        aurora_core::store::constant_time_eq(
            t.as_bytes(),
            csrf_token(state, cookie, purpose).as_bytes(),
        )
    })
}

pub(super) fn set_device_cookie(state: &OAuthState, res: &mut Response, cookie: &str) {
    let secure = if state.provider.inner.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{DEVICE_COOKIE}={cookie}; Path=/oauth; Max-Age=31536000; HttpOnly; SameSite=Lax{secure}"
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        res.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Loads the pushed request `request_uri` names for `client_id`.
async fn pending(
    state: &OAuthState,
    request_uri: Option<&str>,
    client_id: Option<&str>,
) -> Result<Pending, Response> {
    let id = request_uri
        .and_then(|uri| uri.strip_prefix(REQUEST_URI_PREFIX))
        .map(|id| {
            url::form_urlencoded::parse(format!("id={id}").as_bytes())
                .next()
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        })
        .ok_or_else(|| error_page(StatusCode::BAD_REQUEST, "This sign-in link is incomplete: it has no request_uri from a pushed authorization request."))?;
    let request = state
        .ctx
        .oauth
        .oauth_request(&id)
        .await
        .map_err(|e| error_page_for(&OAuthError::from(e)))?
        .ok_or_else(|| {
            error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in link is unknown or has expired. Go back to the app and start again.",
            )
        })?;
    if client_id.is_some_and(|c| c != request.client_id) {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link does not belong to the app that opened it.",
        ));
    }
    let parameters = serde_json::from_str(&request.parameters).map_err(|e| {
        error_page_for(&OAuthError::server_error("a stored request is corrupt", &e))
    })?;
    Ok(Pending {
        request,
        parameters,
    })
}

/// `GET /oauth/authorize?client_id=...&request_uri=...`.
pub(super) async fn authorize(
    State(state): State<OAuthState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let pending = match pending(
        &state,
        query.get("request_uri").map(String::as_str),
        Some(query.get("client_id").map_or("", String::as_str)),
    )
    .await
    {
        Ok(p) => p,
        Err(res) => return res,
    };
    let issuer = state.provider.issuer().as_str().to_owned();
    let store = &state.ctx.oauth;
    let now = Utc::now();
    if pending.request.expires_at < now || pending.request.code.is_some() {
        let _ = store.delete_oauth_request(&pending.request.id).await;
        return pending.error_redirect(&issuer, "access_denied", "This request has expired");
    }
    if pending.param("prompt") == Some("none") {
        let _ = store.delete_oauth_request(&pending.request.id).await;
        return pending.error_redirect(
            &issuer,
            "login_required",
            "Signing in without showing the sign-in page is not supported",
        );
    }
    let (cookie, new_cookie) = match device_cookie(&headers) {
        Some(c) => (c, false),
        None => (random_id("dev-", 32), true),
    };
    let device = device_id(&cookie);
    match store
        .bind_oauth_request(&pending.request.id, &device, now + REQUEST_LIFETIME)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            let _ = store.delete_oauth_request(&pending.request.id).await;
            return pending.error_redirect(
                &issuer,
                "access_denied",
                "This request was opened in another browser",
            );
        }
        Err(e) => return error_page_for(&OAuthError::from(e)),
    }
    let mut res = match render(&state, &pending, &cookie, &device, None).await {
        Ok(page) => (StatusCode::OK, page).into_response(),
        Err(e) => error_page_for(&e),
    };
    if new_cookie {
        set_device_cookie(&state, &mut res, &cookie);
    }
    res
}

/// `POST /oauth/authorize`: the form's answer.
pub(super) async fn decide(
    State(state): State<OAuthState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let issuer = state.provider.issuer().as_str().to_owned();
    let (cookie, params) = match posted_form(&state, &headers, &body) {
        Ok(posted) => posted,
        Err(res) => return *res,
    };
    let pending = match pending(&state, params.get("request_uri"), None).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let device = device_id(&cookie);
    if !csrf_ok(&state, &params, &cookie, &pending.request.id)
        || pending.request.device_id.as_deref() != Some(device.as_str())
    {
        return error_page(
            StatusCode::FORBIDDEN,
            "This form does not belong to this browser. Go back to the app and start again.",
        );
    }
    let store = &state.ctx.oauth;
    if pending.request.expires_at < Utc::now() || pending.request.code.is_some() {
        let _ = store.delete_oauth_request(&pending.request.id).await;
        return pending.error_redirect(&issuer, "access_denied", "This request has expired");
    }
    if params.get("decision") != Some("approve") {
        let _ = store.delete_oauth_request(&pending.request.id).await;
        return pending.error_redirect(&issuer, "access_denied", "The user rejected the request");
    }
    match approve(&state, &pending, &params, &device, &headers).await {
        Ok(code) => pending.redirect(&issuer, &[("code", &code)]),
        Err(Retry::Page(message)) => {
            match render(&state, &pending, &cookie, &device, Some(&message)).await {
                Ok(page) => (StatusCode::UNAUTHORIZED, page).into_response(),
                Err(e) => error_page_for(&e),
            }
        }
        Err(Retry::Failed(e)) => {
            let _ = store.delete_oauth_request(&pending.request.id).await;
            pending.error_redirect(&issuer, e.code(), e.description())
        }
    }
}

/// Why approval did not go through: show the page again with a message,
/// or give up on the request.
enum Retry {
    Page(String),
    Failed(OAuthError),
}

impl From<OAuthError> for Retry {
    fn from(e: OAuthError) -> Self {
        Self::Failed(e)
    }
}

impl From<aurora_core::store::StoreError> for Retry {
    fn from(e: aurora_core::store::StoreError) -> Self {
        Self::Failed(e.into())
    }
}

/// Signs in (or picks a remembered account), checks the account may
/// approve this request, and approves it; returns the code.
async fn approve(
    state: &OAuthState,
    pending: &Pending,
    params: &Params,
    device: &str,
    headers: &HeaderMap,
) -> Result<String, Retry> {
    let store = &state.ctx.oauth;
    let now = Utc::now();
    let user_agent = user_agent(headers);
    let account = if let Some(password) = params.get("password") {
        let identifier = params.get("identifier").unwrap_or_default();
        let manager = AccountManager::new(state.ctx.clone(), state.provider.inner.deps.clone());
        let account = manager
            .verify_sign_in(identifier, password)
            .await
            .map_err(|e| Retry::Page(e.message))?;
        if params.get("remember").is_some() {
            store
                .upsert_oauth_device_account(&OAuthDeviceAccount {
                    device_id: device.to_owned(),
                    did: account.did.clone(),
                    authenticated_at: now,
                    user_agent,
                    last_seen_at: now,
                })
                .await?;
        }
        account
    } else {
        let chosen = params
            .get("account")
            .and_then(|d| Did::parse(d).ok())
            .ok_or_else(|| {
                Retry::Page("Choose an account, or sign in with a password.".to_owned())
            })?;
        let remembered = store
            .oauth_device_accounts(device)
            .await?
            .into_iter()
            .find(|a| a.did == chosen && now - a.authenticated_at < DEVICE_LOGIN_LIFETIME)
            .ok_or_else(|| Retry::Page("Enter your password to continue.".to_owned()))?;
        store
            .upsert_oauth_device_account(&OAuthDeviceAccount {
                user_agent,
                last_seen_at: now,
                ..remembered
            })
            .await?;
        state
            .ctx
            .accounts
            .get_account(AccountLookup::Did(&chosen))
            .await?
            .ok_or_else(|| Retry::Page("That account no longer exists.".to_owned()))?
    };
    match account.status {
        AccountStatus::Active => {}
        AccountStatus::Deactivated => {
            return Err(Retry::Page(
                "This account is deactivated: reactivate it before signing in to apps.".to_owned(),
            ));
        }
        _ => return Err(Retry::Page("This account cannot sign in.".to_owned())),
    }
    if let Some(hint) = pending.param("login_hint")
        && hint != account.did.as_str()
        && !hint.eq_ignore_ascii_case(account.handle.as_str())
    {
        return Err(Retry::Page(format!(
            "The app asked for {hint}: sign in with that account."
        )));
    }
    let code = random_id("cod-", 32);
    let approved = store
        .approve_oauth_request(
            &pending.request.id,
            &account.did,
            &code,
            &pending.request.parameters,
            now + CODE_LIFETIME,
        )
        .await?;
    if !approved {
        return Err(Retry::Failed(OAuthError::bad(
            "access_denied",
            "This request was already answered",
        )));
    }
    let scope = pending.param("scope").unwrap_or("atproto");
    let granted = store
        .oauth_authorized_scope(&account.did, &pending.request.client_id)
        .await?;
    let mut union: Vec<&str> = granted.as_deref().unwrap_or_default().split(' ').collect();
    union.extend(scope.split(' '));
    union.retain(|s| !s.is_empty());
    union.sort_unstable();
    union.dedup();
    store
        .set_oauth_authorized_scope(&account.did, &pending.request.client_id, &union.join(" "))
        .await?;
    Ok(code)
}

/// The remembered accounts of a device that may still approve requests.
pub(super) async fn remembered_accounts(
    state: &OAuthState,
    device: &str,
) -> Result<Vec<Account>, OAuthError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for entry in state.ctx.oauth.oauth_device_accounts(device).await? {
        if now - entry.authenticated_at >= DEVICE_LOGIN_LIFETIME {
            continue;
        }
        if let Some(account) = state
            .ctx
            .accounts
            .get_account(AccountLookup::Did(&entry.did))
            .await?
            && account.status == AccountStatus::Active
        {
            out.push(account);
        }
    }
    Ok(out)
}

/// The page for `pending`, with an optional error `message`.
async fn render(
    state: &OAuthState,
    pending: &Pending,
    cookie: &str,
    device: &str,
    message: Option<&str>,
) -> Result<Html<String>, OAuthError> {
    let client = state
        .provider
        .inner
        .clients
        .metadata(&pending.request.client_id)
        .await?;
    let accounts = remembered_accounts(state, device).await?;
    let csrf = csrf_token(state, cookie, &pending.request.id);
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", pending.request.id);
    let scope = pending.param("scope").unwrap_or("atproto");
    let hint = pending.param("login_hint");
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Sign in to {host}</h1>\n{client}",
        host = escape(&state.ctx.service.hostname),
        client = client_block(&client),
    );
    if let Some(message) = message {
        let _ = writeln!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>",
            escape(message)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/oauth/authorize\">\n\
         <input type=\"hidden\" name=\"request_uri\" value=\"{}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n",
        escape(&request_uri),
        escape(&csrf)
    );
    body.push_str(&account_fields(&accounts, hint));
    body.push_str(&scope_list(scope));
    // Allow comes first: pressing Enter in a field submits with the first
    // button, and that should be what the user came to do.
    body.push_str(
        "<div class=\"buttons\">\n\
         <button type=\"submit\" id=\"allow\" name=\"decision\" value=\"approve\">Allow</button>\n\
         <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button>\n\
         </div>\n</form>\n",
    );
    Ok(Html(page("Sign in", &body)))
}

fn client_block(client: &ClientMetadata) -> String {
    let mut out =
        String::from("<section aria-labelledby=\"app\">\n<h2 id=\"app\">The app asking</h2>\n");
    let _ = writeln!(
        out,
        "<p class=\"client-id\"><code>{}</code></p>",
        escape(&client.client_id)
    );
    if let Some(name) = &client.client_name {
        let _ = writeln!(
            out,
            "<p>It calls itself <strong>{}</strong>. Only continue if you trust the address above.</p>",
            escape(name)
        );
    }
    out.push_str("</section>\n");
    out
}

fn account_fields(accounts: &[Account], hint: Option<&str>) -> String {
    let mut out = String::from("<fieldset>\n<legend>Account</legend>\n");
    for (i, account) in accounts.iter().enumerate() {
        let checked = if i == 0 { " checked" } else { "" };
        let _ = writeln!(
            out,
            "<div class=\"choice\"><input type=\"radio\" name=\"account\" id=\"account-{i}\" value=\"{did}\"{checked}>\
             <label for=\"account-{i}\">{handle} <small>(signed in on this device)</small></label></div>",
            did = escape(account.did.as_str()),
            handle = escape(account.handle.as_str()),
        );
    }
    if !accounts.is_empty() {
        out.push_str("<p class=\"hint\">Or sign in with another account:</p>\n");
    }
    let _ = write!(
        out,
        "<label for=\"identifier\">Handle or email</label>\n\
         <input id=\"identifier\" name=\"identifier\" type=\"text\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\" value=\"{}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\">\n\
         <div class=\"choice\"><input type=\"checkbox\" id=\"remember\" name=\"remember\" value=\"on\">\
         <label for=\"remember\">Remember this device</label></div>\n</fieldset>\n",
        escape(hint.unwrap_or_default())
    );
    out
}

/// The requested scope, in plain words.
fn scope_list(scope: &str) -> String {
    let scopes = Scopes::parse(scope);
    let mut items: Vec<String> =
        vec!["Know which account you are (your handle and DID).".to_owned()];
    if scopes.has(Transition::Generic) {
        items.push(
            "Create, change and delete your posts, likes, follows and other records, upload \
             images and videos, and use other services on your behalf. It cannot change your \
             password, email or handle, or delete your account."
                .to_owned(),
        );
    }
    if scopes.has(Transition::ChatBsky) {
        items.push("Read and send your direct messages.".to_owned());
    }
    if scopes.has(Transition::Email) {
        items.push("See your email address.".to_owned());
    }
    for permission in &scopes.permissions {
        items.push(describe(permission));
    }
    let mut out = String::from(
        "<section aria-labelledby=\"asks\">\n<h2 id=\"asks\">If you allow it, the app can</h2>\n<ul>\n",
    );
    for item in items {
        let _ = writeln!(out, "<li>{}</li>", escape(&item));
    }
    let _ = write!(
        out,
        "</ul>\n<details><summary>Exact permissions</summary><p><code>{}</code></p></details>\n</section>\n",
        escape(scope)
    );
    out
}

fn describe(permission: &Permission) -> String {
    match permission {
        Permission::Repo {
            collections,
            actions,
        } => {
            let what = if collections.contains("*") {
                "any kind of record".to_owned()
            } else {
                collections.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            let how: Vec<String> = actions
                .iter()
                .map(|a| format!("{a:?}").to_lowercase())
                .collect();
            format!("{} records: {what}.", capitalise(&how.join(", ")))
        }
        Permission::Blob { accept } => format!("Upload files of type {accept}."),
        Permission::Rpc { lxm, aud } => format!("Call {lxm} on {aud} on your behalf."),
        Permission::Account { attr, manage } => format!(
            "{} your account's {}.",
            if *manage { "Change" } else { "See" },
            format!("{attr:?}").to_lowercase()
        ),
        Permission::Identity { attr } if attr == "*" => {
            "Change your identity: your handle and your DID document.".to_owned()
        }
        Permission::Identity { attr } => format!("Change your {attr}."),
        other @ Permission::Include { .. } => format!("Permissions of {other:?}."),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

pub(super) fn error_page_for(e: &OAuthError) -> Response {
    error_page(StatusCode::BAD_REQUEST, e.description())
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Sign-in cannot continue</h1>\n<p role=\"alert\">{}</p>\n",
        escape(message)
    );
    (status, Html(page("Sign-in error", &body))).into_response()
}

/// A whole page around `body`.
pub(super) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"same-origin\">\n<title>{}</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

const STYLE: &str = "\
body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#f4f5f7}\
main{max-width:28rem;margin:0 auto;padding:1.25rem;background:#fff;min-height:100vh;box-sizing:border-box}\
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.15rem;margin:1.2rem 0 .4rem}\
h3{font-size:1rem;margin:1rem 0 .3rem}code{word-break:break-all;font-size:.95rem}\
li{margin:.5rem 0}li form{margin:.3rem 0}li button{flex:none;padding:.4rem .9rem}\
fieldset{border:1px solid #c5c9d0;border-radius:.5rem;padding:.75rem;margin:1rem 0}\
legend{font-weight:600;padding:0 .25rem}\
label{display:block;margin:.6rem 0 .2rem}.choice{display:flex;gap:.5rem;align-items:center;margin:.4rem 0}\
.choice label{margin:0}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;font:inherit;padding:.6rem;\
border:1px solid #8a8f98;border-radius:.4rem}\
input:focus,button:focus{outline:3px solid #1d5fd1;outline-offset:2px}\
.buttons{display:flex;gap:.75rem;margin-top:1.25rem}\
button{flex:1;font:inherit;font-weight:600;padding:.75rem;border-radius:.5rem;border:1px solid #1d5fd1;\
background:#1d5fd1;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1d5fd1}\
.error{background:#fdecea;color:#8a1c12;padding:.6rem;border-radius:.4rem}\
.hint,small{color:#555}ul{padding-left:1.2rem}";

/// HTML-escapes text for element content and attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
