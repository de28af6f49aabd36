//! Sessions: sign-in with the account password or an app password, token
//! refresh with one-time refresh tokens, sign-out, and the authentication
//! of every call that carries an access token.
//!
//! A session is stored as its current refresh token, under a session id
//! that stays the same across refreshes and is the `sid` of every access
//! token of the session. Authenticating an access token looks the session
//! up, so ending a session (sign-out, password change, revoking the app
//! password, account deletion) ends its access tokens at once.

use aurora_core::XrpcError;
use aurora_core::store::{Account, AccountLookup, AccountStatus, RefreshToken};
use aurora_core::syntax::Did;
use chrono::Utc;
use http::HeaderMap;

use super::{AccountManager, bad_request, internal, store_error, unauthorized};
use crate::auth::password::{hash_password_blocking, verify_password_blocking};
use crate::auth::tokens::{AccessScope, IssuedSession, TokenError, new_session_id};
use aurora_oauth::scope::{AccountAttr, RepoAction, Scopes, Transition};

/// What a call requires of its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Only sessions opened with the account password (not app passwords):
    /// for calls that manage the account's credentials.
    pub full: bool,
    /// Whether a deactivated account may make the call (reading its own
    /// session, reactivating, deleting).
    pub allow_deactivated: bool,
    /// What an OAuth session needs to make the call.
    pub oauth: OAuthRule,
}

/// What a call requires of an OAuth session's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthRule {
    /// `transition:generic` (about what an app password may do).
    Generic,
    /// Any OAuth session: the handler checks the granular permission it
    /// needs itself ([`Authed::require_repo`], [`Authed::require_blob`]),
    /// or the call needs none (reading one's own session).
    Scoped,
    /// Not with OAuth (managing credentials: the account manager's job).
    Refused,
}

impl AccessPolicy {
    /// Any session of an active account.
    pub const STANDARD: Self = Self {
        full: false,
        allow_deactivated: false,
        oauth: OAuthRule::Generic,
    };
    /// Any session of an active account; an OAuth session's permissions
    /// are checked by the handler.
    pub const SCOPED: Self = Self {
        full: false,
        allow_deactivated: false,
        oauth: OAuthRule::Scoped,
    };
    /// [`SCOPED`](Self::SCOPED), also for a deactivated account.
    pub const SCOPED_DEACTIVATED_OK: Self = Self {
        full: false,
        allow_deactivated: true,
        oauth: OAuthRule::Scoped,
    };
    /// A password session of an active account.
    pub const FULL: Self = Self {
        full: true,
        allow_deactivated: false,
        oauth: OAuthRule::Refused,
    };
    /// Any session, also of a deactivated account.
    pub const DEACTIVATED_OK: Self = Self {
        full: false,
        allow_deactivated: true,
        oauth: OAuthRule::Generic,
    };
    /// A password session, also of a deactivated account.
    pub const FULL_DEACTIVATED_OK: Self = Self {
        full: true,
        allow_deactivated: true,
        oauth: OAuthRule::Refused,
    };
    /// A password session of an active account, or an OAuth session whose
    /// granular permission the handler checks.
    pub const FULL_OR_SCOPED: Self = Self {
        full: true,
        allow_deactivated: false,
        oauth: OAuthRule::Scoped,
    };
    /// [`FULL_OR_SCOPED`](Self::FULL_OR_SCOPED), also for a deactivated
    /// account.
    pub const FULL_OR_SCOPED_DEACTIVATED_OK: Self = Self {
        full: true,
        allow_deactivated: true,
        oauth: OAuthRule::Scoped,
    };
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authed {
    /// The account.
    pub account: Account,
    /// What the session may do.
    pub scope: AccessScope,
    /// The session id.
    pub session_id: String,
    /// An OAuth session's granted scope; `None` for password and app
    /// password sessions.
    pub oauth: Option<Scopes>,
}

impl Authed {
    /// Fails with 403 unless the session may write records of
    /// `collection` with `action` (always, outside OAuth).
    pub fn require_repo(&self, collection: &str, action: RepoAction) -> Result<(), XrpcError> {
        match &self.oauth {
            Some(scopes) if !scopes.allows_repo(collection, action) => {
                Err(missing_scope(&format!(
                    "repo:{collection}?action={}",
                    format!("{action:?}").to_lowercase()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Fails with 403 unless the session may upload blobs of `mime`.
    pub fn require_blob(&self, mime: &str) -> Result<(), XrpcError> {
        match &self.oauth {
            Some(scopes) if !scopes.allows_blob(mime) => {
                Err(missing_scope(&format!("blob:{mime}")))
            }
            _ => Ok(()),
        }
    }

    /// Fails with 403 unless the session may call `lxm` at the service
    /// `aud` (`did#service_id`) through this PDS.
    pub fn require_rpc(&self, lxm: &str, aud: &str) -> Result<(), XrpcError> {
        match &self.oauth {
            Some(scopes) if !scopes.allows_rpc(lxm, aud) => {
                Err(missing_scope(&format!("rpc:{lxm}?aud={aud}")))
            }
            _ => Ok(()),
        }
    }

    /// Fails with 403 unless the session may change the handle (`full`
    /// false) or the whole identity (PLC operations).
    pub fn require_identity(&self, full: bool) -> Result<(), XrpcError> {
        match &self.oauth {
            Some(scopes) if !scopes.allows_identity(full) => Err(missing_scope(if full {
                "identity:*"
            } else {
                "identity:handle"
            })),
            _ => Ok(()),
        }
    }

    /// Fails with 403 unless the session may read (or, with `manage`,
    /// change) the account attribute `attr`.
    pub fn require_account(&self, attr: AccountAttr, manage: bool) -> Result<(), XrpcError> {
        match &self.oauth {
            Some(scopes) if !scopes.allows_account(attr, manage) => Err(missing_scope(&format!(
                "account:{}?action={}",
                format!("{attr:?}").to_lowercase(),
                if manage { "manage" } else { "read" }
            ))),
            _ => Ok(()),
        }
    }

    /// The caller's DID.
    pub fn did(&self) -> &Did {
        &self.account.did
    }
}

/// A session just opened or refreshed, with the account it belongs to.
#[derive(Debug, Clone)]
pub struct Session {
    /// The tokens.
    pub tokens: IssuedSession,
    /// The account.
    pub account: Account,
    /// What the session may do.
    pub scope: AccessScope,
}

/// The message for every failed sign-in: it never says whether the
/// identifier exists.
const INVALID_CREDENTIALS: &str = "Invalid identifier or password";

/// A syntactically valid argon2id hash of a random password, verified
/// against when the account does not exist, so that a failed sign-in takes
/// as long for an unknown identifier as for a wrong password.
static DUMMY_HASH: std::sync::LazyLock<Option<String>> =
    std::sync::LazyLock::new(|| crate::auth::password::hash_password(&new_session_id()).ok());

impl AccountManager {
    /// Opens a session for `identifier` (handle, DID or email) with the
    /// account password or one of its app passwords.
    ///
    /// Fails with 401 `AuthenticationRequired` for an unknown identifier or
    /// a wrong password alike, and with 401 `AccountTakedown` for a
    /// taken-down account (unless `allow_takendown`).
    pub async fn create_session(
        &self,
        identifier: &str,
        password: &str,
        allow_takendown: bool,
    ) -> Result<Session, XrpcError> {
        let account = self.find_for_sign_in(identifier).await?;
        let Some(account) = account else {
            if let Some(hash) = DUMMY_HASH.clone() {
                verify_password_blocking(hash, password.to_owned()).await;
            }
            return Err(unauthorized("AuthenticationRequired", INVALID_CREDENTIALS));
        };
        let (scope, app_password) = self.check_password(&account, password).await?;
        match account.status {
            AccountStatus::Takendown | AccountStatus::Suspended if !allow_takendown => {
                return Err(unauthorized(
                    "AccountTakedown",
                    "Account has been taken down",
                ));
            }
            AccountStatus::Deleted => {
                return Err(unauthorized("AuthenticationRequired", INVALID_CREDENTIALS));
            }
            _ => {}
        }
        let tokens = self.open_session(&account.did, scope, app_password).await?;
        Ok(Session {
            tokens,
            account,
            scope,
        })
    }

    /// Checks an account password (app passwords are not accepted) for the
    /// OAuth sign-in page, and returns the account. Unknown identifiers and
    /// wrong passwords fail alike, taken-down and deleted accounts too.
    pub async fn verify_sign_in(
        &self,
        identifier: &str,
        password: &str,
    ) -> Result<Account, XrpcError> {
        let Some(account) = self.find_for_sign_in(identifier).await? else {
            if let Some(hash) = DUMMY_HASH.clone() {
                verify_password_blocking(hash, password.to_owned()).await;
            }
            return Err(unauthorized("AuthenticationRequired", INVALID_CREDENTIALS));
        };
        self.verify_account_password(&account, password).await?;
        match account.status {
            AccountStatus::Takendown | AccountStatus::Suspended => Err(unauthorized(
                "AccountTakedown",
                "Account has been taken down",
            )),
            AccountStatus::Deleted => {
                Err(unauthorized("AuthenticationRequired", INVALID_CREDENTIALS))
            }
            _ => Ok(account),
        }
    }

    /// The account an identifier names, if any. Malformed identifiers are
    /// simply unknown: the error must not differ.
    async fn find_for_sign_in(&self, identifier: &str) -> Result<Option<Account>, XrpcError> {
        let identifier = identifier.trim();
        let accounts = &self.context().accounts;
        let found = if identifier.contains('@') {
            accounts.get_account(AccountLookup::Email(identifier)).await
        } else if identifier.starts_with("did:") {
            match Did::parse(identifier) {
                Ok(did) => accounts.get_account(AccountLookup::Did(&did)).await,
                Err(_) => Ok(None),
            }
        } else {
            match aurora_core::syntax::Handle::parse(identifier) {
                Ok(handle) => accounts.get_account(AccountLookup::Handle(&handle)).await,
                Err(_) => Ok(None),
            }
        };
        found.map_err(store_error)
    }

    /// Checks `password` against the account password, then its app
    /// passwords; returns the session scope and the app password's name.
    async fn check_password(
        &self,
        account: &Account,
        password: &str,
    ) -> Result<(AccessScope, Option<String>), XrpcError> {
        if let Some(hash) = account.password_hash.clone()
            && verify_password_blocking(hash, password.to_owned()).await
        {
            return Ok((AccessScope::Access, None));
        }
        // App passwords have a fixed shape; skip hashing for anything else.
        if super::app_password::looks_like_app_password(password) {
            let app_passwords = self
                .context()
                .accounts
                .list_app_passwords(&account.did)
                .await
                .map_err(store_error)?;
            for app in app_passwords {
                if verify_password_blocking(app.password_hash.clone(), password.to_owned()).await {
                    let scope = if app.privileged {
                        AccessScope::AppPassPrivileged
                    } else {
                        AccessScope::AppPass
                    };
                    return Ok((scope, Some(app.name)));
                }
            }
        }
        Err(unauthorized("AuthenticationRequired", INVALID_CREDENTIALS))
    }

    /// Issues tokens for a new session and stores its refresh token.
    pub async fn open_session(
        &self,
        did: &Did,
        scope: AccessScope,
        app_password: Option<String>,
    ) -> Result<IssuedSession, XrpcError> {
        let session_id = new_session_id();
        let issued = self.tokens().issue(did, scope, &session_id, Utc::now());
        self.context()
            .accounts
            .create_refresh_token(RefreshToken {
                id: issued.refresh_id.clone(),
                session_id,
                did: did.clone(),
                app_password,
                expires_at: issued.refresh_expires_at,
            })
            .await
            .map_err(store_error)?;
        Ok(issued)
    }

    /// Exchanges a refresh token for a new pair. The old refresh token is
    /// used up: presenting it again fails with 400 `ExpiredToken`.
    pub async fn refresh_session(&self, refresh_jwt: &str) -> Result<Session, XrpcError> {
        let now = Utc::now();
        let claims = self
            .tokens()
            .verify_refresh(refresh_jwt, now)
            .map_err(token_error)?;
        let accounts = &self.context().accounts;
        let stored = accounts
            .get_refresh_token(&claims.jti)
            .await
            .map_err(store_error)?
            .filter(|t| t.did == claims.sub && t.expires_at > now)
            .ok_or_else(revoked)?;
        let account = self.account(&claims.sub).await?;
        if matches!(
            account.status,
            AccountStatus::Takendown | AccountStatus::Suspended
        ) {
            return Err(unauthorized(
                "AccountTakedown",
                "Account has been taken down",
            ));
        }
        let scope = self.session_scope(&stored).await?;
        let issued = self
            .tokens()
            .issue(&account.did, scope, &stored.session_id, now);
        let next = RefreshToken {
            id: issued.refresh_id.clone(),
            session_id: stored.session_id.clone(),
            did: account.did.clone(),
            app_password: stored.app_password.clone(),
            expires_at: issued.refresh_expires_at,
        };
        accounts
            .rotate_refresh_token(&claims.jti, next)
            .await
            .map_err(store_error)?
            // Another refresh with the same token won the race.
            .ok_or_else(revoked)?;
        Ok(Session {
            tokens: issued,
            account,
            scope,
        })
    }

    /// The scope of a stored session: from its app password, if any (and
    /// that app password must still exist).
    async fn session_scope(&self, token: &RefreshToken) -> Result<AccessScope, XrpcError> {
        let Some(name) = &token.app_password else {
            return Ok(AccessScope::Access);
        };
        let app = self
            .context()
            .accounts
            .list_app_passwords(&token.did)
            .await
            .map_err(store_error)?
            .into_iter()
            .find(|a| &a.name == name)
            .ok_or_else(revoked)?;
        Ok(if app.privileged {
            AccessScope::AppPassPrivileged
        } else {
            AccessScope::AppPass
        })
    }

    /// Ends the session of a refresh token. An unknown or already ended
    /// session is not an error (signing out twice is harmless), but the
    /// token itself must be genuine.
    pub async fn delete_session(&self, refresh_jwt: &str) -> Result<(), XrpcError> {
        let claims = self
            .tokens()
            .verify_refresh(refresh_jwt, Utc::now())
            .map_err(token_error)?;
        self.context()
            .accounts
            .delete_refresh_token(&claims.jti)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Authenticates the `Authorization: Bearer <access token>` of a call.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        policy: AccessPolicy,
    ) -> Result<Authed, XrpcError> {
        if let Some(token) = crate::oauth::resource::dpop_token(headers) {
            let jkt = headers
                .get(crate::oauth::resource::VERIFIED_JKT_HEADER)
                .and_then(|v| v.to_str().ok());
            return self.authenticate_oauth(token, jkt, policy).await;
        }
        let token = bearer_token(headers)?;
        self.authenticate_token(token, policy).await
    }

    /// Authenticates an OAuth access token whose DPoP proof (by the key
    /// `jkt`) the resource layer verified: the token, its key binding, its
    /// session (so revocation is immediate), the account, and what the
    /// session's scope allows for `policy`.
    async fn authenticate_oauth(
        &self,
        token: &str,
        jkt: Option<&str>,
        policy: AccessPolicy,
    ) -> Result<Authed, XrpcError> {
        let invalid = |why: &str| unauthorized("invalid_token", why.to_owned());
        let jkt = jkt.ok_or_else(|| invalid("a DPoP proof is required with a DPoP token"))?;
        let now = Utc::now();
        let claims = self
            .tokens()
            .verify_oauth_access(token, now)
            .map_err(|e| match e {
                TokenError::Expired => invalid("Token expired"),
                other => invalid(&format!("Token could not be verified: {other}")),
            })?;
        if claims.jkt != jkt {
            return Err(invalid("Invalid DPoP key binding"));
        }
        let session = self
            .context()
            .oauth
            .oauth_session_by_token(&claims.jti)
            .await
            .map_err(store_error)?
            .filter(|s| s.did == claims.sub && s.dpop_jkt == claims.jkt && s.expires_at > now)
            .ok_or_else(|| invalid("Token has been revoked"))?;
        let account = self
            .context()
            .accounts
            .get_account(AccountLookup::Did(&session.did))
            .await
            .map_err(store_error)?
            .ok_or_else(|| invalid("Token has been revoked"))?;
        check_status(&account, policy.allow_deactivated)?;
        let scopes = Scopes::parse(&session.scope);
        if !scopes.atproto {
            return Err(invalid("the session lacks the atproto scope"));
        }
        let allowed = match policy.oauth {
            OAuthRule::Scoped => true,
            OAuthRule::Generic => scopes.has(Transition::Generic),
            OAuthRule::Refused => {
                return Err(XrpcError::new(
                    http::StatusCode::FORBIDDEN,
                    "InvalidToken",
                    "OAuth credentials are not supported for this endpoint",
                ));
            }
        };
        if !allowed {
            return Err(missing_scope("transition:generic"));
        }
        let scope = if scopes.has(Transition::ChatBsky) && scopes.has(Transition::Generic) {
            AccessScope::AppPassPrivileged
        } else {
            AccessScope::AppPass
        };
        Ok(Authed {
            account,
            scope,
            session_id: session.id,
            oauth: Some(scopes),
        })
    }

    /// Authenticates an access token (see [`authenticate`](Self::authenticate)).
    pub async fn authenticate_token(
        &self,
        access_jwt: &str,
        policy: AccessPolicy,
    ) -> Result<Authed, XrpcError> {
        let now = Utc::now();
        let claims = self
            .tokens()
            .verify_access(access_jwt, now)
            .map_err(token_error)?;
        let (_, account) = self
            .context()
            .accounts
            .get_session_account(&claims.sid)
            .await
            .map_err(store_error)?
            .filter(|(s, _)| s.did == claims.sub && s.expires_at > now)
            .ok_or_else(revoked)?;
        check_status(&account, policy.allow_deactivated)?;
        if policy.full && claims.scope != AccessScope::Access {
            return Err(unauthorized(
                "InvalidToken",
                "Bad token scope: app passwords cannot do this",
            ));
        }
        Ok(Authed {
            account,
            scope: claims.scope,
            session_id: claims.sid,
            oauth: None,
        })
    }

    /// Sets a new account password; every session of the account ends.
    pub async fn set_password(&self, did: &Did, password: &str) -> Result<(), XrpcError> {
        check_new_password(password)?;
        let hash = hash_password_blocking(password.to_owned())
            .await
            .map_err(|e| internal("cannot hash a password", &e))?;
        self.context()
            .accounts
            .update_password(did, &hash)
            .await
            .map_err(store_error)
    }

    /// Checks the account password (not app passwords), for calls that
    /// take it as proof (account deletion).
    pub async fn verify_account_password(
        &self,
        account: &Account,
        password: &str,
    ) -> Result<(), XrpcError> {
        let valid = match account.password_hash.clone() {
            Some(hash) => verify_password_blocking(hash, password.to_owned()).await,
            None => false,
        };
        if valid {
            Ok(())
        } else {
            Err(unauthorized("AuthenticationRequired", INVALID_CREDENTIALS))
        }
    }
}

/// Shortest accepted password.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest accepted password (hashing cost is bounded).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Checks a password a user chooses.
pub fn check_new_password(password: &str) -> Result<(), XrpcError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(bad_request(
            "InvalidPassword",
            format!("password must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if len > MAX_PASSWORD_LEN {
        return Err(bad_request(
            "InvalidPassword",
            format!("password must be at most {MAX_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// Rejects calls from accounts that may not make them.
fn check_status(account: &Account, allow_deactivated: bool) -> Result<(), XrpcError> {
    match account.status {
        AccountStatus::Active => Ok(()),
        AccountStatus::Deactivated if allow_deactivated => Ok(()),
        AccountStatus::Deactivated => {
            Err(unauthorized("AccountDeactivated", "Account is deactivated"))
        }
        AccountStatus::Takendown | AccountStatus::Suspended => Err(unauthorized(
            "AccountTakedown",
            "Account has been taken down",
        )),
        AccountStatus::Deleted => Err(revoked()),
    }
}

/// The bearer token of `Authorization`, or 401 `AuthenticationRequired`.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, XrpcError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("AuthenticationRequired", "Authorization required"))?;
    let value = value
        .to_str()
        .map_err(|_| unauthorized("InvalidToken", "Malformed authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthorized("InvalidToken", "Malformed authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthorized(
            "InvalidToken",
            "Expected a bearer token in the authorization header",
        ));
    }
    Ok(token.trim())
}

/// 403 for an OAuth session whose scope lacks `needed`.
fn missing_scope(needed: &str) -> XrpcError {
    XrpcError::new(
        http::StatusCode::FORBIDDEN,
        "InsufficientScope",
        format!("Missing required scope \"{needed}\""),
    )
}

/// 400 `ExpiredToken`: what clients see for a session that ended, so that
/// they sign in again.
fn revoked() -> XrpcError {
    bad_request("ExpiredToken", "Token has been revoked")
}

/// Maps a token verification failure: an expired token is 400
/// `ExpiredToken` (clients refresh on it), anything else 401 `InvalidToken`.
pub(crate) fn token_error(e: TokenError) -> XrpcError {
    match e {
        TokenError::Expired => bad_request("ExpiredToken", "Token has expired"),
        other => unauthorized(
            "InvalidToken",
            format!("Token could not be verified: {other}"),
        ),
    }
}
