use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::syntax::Did;

/// A pushed authorization request (PAR), kept from the moment the client
/// pushes it until its authorization code is exchanged or it expires.
///
/// The store treats `client_auth` and `parameters` as opaque text: the
/// authorization server writes and reads them (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthRequest {
    /// The request id, the tail of the `request_uri` handed to the client.
    pub id: String,
    /// The client that pushed it.
    pub client_id: String,
    /// How the client authenticated when pushing it (which key, or none).
    pub client_auth: String,
    /// The thumbprint of the DPoP key the request is bound to.
    pub dpop_jkt: String,
    /// The authorization request parameters.
    pub parameters: String,
    /// The browser (device) the sign-in page was opened in, once it was.
    pub device_id: Option<String>,
    /// The account that approved the request, once one did.
    pub did: Option<Did>,
    /// The authorization code issued on approval (single use).
    pub code: Option<String>,
    /// When the request (or, once approved, its code) expires.
    pub expires_at: DateTime<Utc>,
}

/// An OAuth session: the grant a client holds for one account, from the
/// code exchange until it is revoked or expires. Each refresh replaces the
/// access token id and the refresh token; the session id stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSession {
    /// The session's stable id.
    pub id: String,
    /// The account.
    pub did: Did,
    /// The client.
    pub client_id: String,
    /// How the client authenticated (opaque to the store), which every
    /// refresh must match.
    pub client_auth: String,
    /// The thumbprint of the DPoP key every token of the session is bound to.
    pub dpop_jkt: String,
    /// The granted scope.
    pub scope: String,
    /// The browser the grant was approved in.
    pub device_id: Option<String>,
    /// The authorization code the session came from: a second exchange of
    /// that code ends the session.
    pub code: String,
    /// The `jti` of the current access token.
    pub token_id: String,
    /// A hash of the current refresh token (never the token itself).
    pub refresh_hash: String,
    /// When the session was created.
    pub created_at: DateTime<Utc>,
    /// When it was last refreshed (or created).
    pub updated_at: DateTime<Utc>,
    /// When the current access token expires.
    pub expires_at: DateTime<Utc>,
}

/// What a refresh writes into a session: see
/// [`OAuthStore::rotate_oauth_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthRotation {
    /// The new access token's `jti`.
    pub token_id: String,
    /// The hash of the new refresh token.
    pub refresh_hash: String,
    /// The scope, as recomputed for the new tokens.
    pub scope: String,
    /// When the rotation happened.
    pub updated_at: DateTime<Utc>,
    /// When the new access token expires.
    pub expires_at: DateTime<Utc>,
}

/// Whether a presented refresh token is a session's current one or one it
/// already used (a replay, which ends the session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTokenState {
    /// The session's current refresh token.
    Current,
    /// A refresh token the session had before its latest rotation.
    Used,
}

/// An account signed in to the authorization server in one browser
/// ("remember this device").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthDeviceAccount {
    /// The browser's device id (a hash of its cookie).
    pub device_id: String,
    /// The account.
    pub did: Did,
    /// When the account last proved its password on this device.
    pub authenticated_at: DateTime<Utc>,
    /// The browser's `User-Agent` when last seen, for session lists.
    pub user_agent: Option<String>,
    /// When the device was last used with this account.
    pub last_seen_at: DateTime<Utc>,
}

/// Storage for the OAuth authorization server: pushed requests and their
/// codes, sessions with rotating refresh tokens, accounts remembered by
/// browsers, and the scopes each account has granted each client.
///
/// Every step that must happen at most once is one atomic operation here:
/// approving a request, exchanging a code, rotating a refresh token. Of two
/// concurrent attempts exactly one succeeds, on every backend.
#[async_trait]
pub trait OAuthStore: Send + Sync + 'static {
    /// Stores a new pushed request.
    async fn create_oauth_request(&self, request: &OAuthRequest) -> Result<(), StoreError>;

    /// A pushed request by id, expired or not.
    async fn oauth_request(&self, id: &str) -> Result<Option<OAuthRequest>, StoreError>;

    /// Binds a request that has no code yet to the browser `device_id` and
    /// moves its expiry; `false` (and nothing changed) when it is unknown,
    /// already approved, or bound to another device.
    async fn bind_oauth_request(
        &self,
        id: &str,
        device_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Approves a request for `did`: stores its single-use `code` and the
    /// code's expiry, and the parameters as approved (scopes the user
    /// narrowed). Only a request without a code can be approved: `false`
    /// when it is unknown or already approved.
    async fn approve_oauth_request(
        &self,
        id: &str,
        did: &Did,
        code: &str,
        parameters: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes and returns the request holding `code`: a code is exchanged
    /// once, so of two concurrent calls at most one gets the request.
    async fn take_oauth_request_by_code(
        &self,
        code: &str,
    ) -> Result<Option<OAuthRequest>, StoreError>;

    /// Deletes a request (denied, failed or abandoned); whether it existed.
    async fn delete_oauth_request(&self, id: &str) -> Result<bool, StoreError>;

    /// Deletes every request that expired before `now`; how many.
    async fn delete_expired_oauth_requests(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Stores a new session.
    async fn create_oauth_session(&self, session: &OAuthSession) -> Result<(), StoreError>;

    /// The session whose current access token has `jti` `token_id`.
    async fn oauth_session_by_token(
        &self,
        token_id: &str,
    ) -> Result<Option<OAuthSession>, StoreError>;

    /// The session made from authorization code `code`.
    async fn oauth_session_by_code(&self, code: &str) -> Result<Option<OAuthSession>, StoreError>;

    /// The session a refresh token (by hash) belongs to, and whether it is
    /// the session's current token or one it already used.
    async fn oauth_session_by_refresh(
        &self,
        refresh_hash: &str,
    ) -> Result<Option<(OAuthSession, RefreshTokenState)>, StoreError>;

    /// Rotates session `id`'s tokens, if its current refresh token is still
    /// `old_refresh_hash`: writes `next`, remembers the old refresh token as
    /// used, and returns the updated session. `None` (nothing written) when
    /// the session is gone or another rotation came first.
    async fn rotate_oauth_session(
        &self,
        id: &str,
        old_refresh_hash: &str,
        next: &OAuthRotation,
    ) -> Result<Option<OAuthSession>, StoreError>;

    /// Every session of `did`, oldest first.
    async fn list_oauth_sessions(&self, did: &Did) -> Result<Vec<OAuthSession>, StoreError>;

    /// Ends one session (and forgets its used refresh tokens); whether it
    /// existed.
    async fn delete_oauth_session(&self, id: &str) -> Result<bool, StoreError>;

    /// Ends every session of `did` and signs it out of every browser (a
    /// takedown, a password change, a deleted account); how many sessions
    /// ended.
    async fn end_oauth_sessions(&self, did: &Did) -> Result<u64, StoreError>;

    /// Remembers `account` on its device, or refreshes it (authentication
    /// time, user agent, last seen).
    async fn upsert_oauth_device_account(
        &self,
        account: &OAuthDeviceAccount,
    ) -> Result<(), StoreError>;

    /// The accounts remembered on `device_id`, most recently seen first.
    async fn oauth_device_accounts(
        &self,
        device_id: &str,
    ) -> Result<Vec<OAuthDeviceAccount>, StoreError>;

    /// The browsers `did` is remembered on, most recently seen first.
    async fn oauth_devices_of(&self, did: &Did) -> Result<Vec<OAuthDeviceAccount>, StoreError>;

    /// Forgets `did` on `device_id` (signing out there); whether it was
    /// remembered.
    async fn delete_oauth_device_account(
        &self,
        device_id: &str,
        did: &Did,
    ) -> Result<bool, StoreError>;

    /// The scope `did` has granted `client_id` so far, if any.
    async fn oauth_authorized_scope(
        &self,
        did: &Did,
        client_id: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Records `scope` as what `did` has granted `client_id` (the caller
    /// passes the union with what was granted before).
    async fn set_oauth_authorized_scope(
        &self,
        did: &Did,
        client_id: &str,
        scope: &str,
    ) -> Result<(), StoreError>;
}
