//! Accounts, sessions and identity: the logic behind `com.atproto.server`,
//! `com.atproto.identity` and `com.atproto.admin`, independent of HTTP so
//! that the `aurora account` command uses exactly the same code paths.
//!
//! - [`create`]: sign-up (did:plc genesis, signing key, empty signed repo,
//!   `#identity`, `#account` and the first `#commit`).
//! - [`session`]: password and app-password sign-in, token refresh,
//!   sign-out, and authentication of access tokens.
//! - [`handle`]: which handles this service hosts and accepts.
//! - [`repo_init`]: the first, empty commit of a new repo.
//! - [`email`]: one-time tokens sent by mail.
//! - [`status`]: activation, deactivation, takedown and deletion.

pub mod admin;
pub mod app_password;
pub mod create;
pub mod email;
pub mod handle;
pub mod identity;
pub mod invite;
pub mod repo_init;
pub mod session;
pub mod status;

use std::fmt;
use std::sync::Arc;

use aurora_core::crypto::SigningKey;
use aurora_core::event::{AccountBody, EventType, IdentityBody};
use aurora_core::store::{Account, AccountLookup, AccountStatus};
use aurora_core::syntax::{Datetime, Did};
use aurora_core::{NewEvent, PdsContext, XrpcError};
use http::StatusCode;

use crate::auth::tokens::SessionTokens;
use crate::config::Secret;
use crate::identity::IdentityResolver;
use crate::identity::plc_client::PlcClient;

pub use session::{AccessPolicy, Authed, OAuthRule};

/// Sign-up and identity settings.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Domains under which users may register handles (`.example.com`).
    pub user_domains: Vec<String>,
    /// Whether sign-up needs an invite code.
    pub invite_required: bool,
    /// This PDS's public URL: the `atproto_pds` endpoint written into the
    /// DID documents of its accounts.
    pub public_url: String,
    /// The public hostname, used in invite codes.
    pub hostname: String,
}

/// What the account manager needs besides the storage traits.
pub struct AccountDeps {
    /// Issues and verifies session tokens.
    pub tokens: SessionTokens,
    /// The PLC directory.
    pub plc: PlcClient,
    /// Handle and DID resolution for identities hosted elsewhere.
    pub resolver: IdentityResolver,
    /// The server's PLC rotation key.
    pub rotation_key: SigningKey,
    /// Sign-up and identity settings.
    pub settings: AccountSettings,
    /// Password of the `admin` user for admin endpoints; none disables them.
    pub admin_password: Option<Secret>,
}

impl fmt::Debug for AccountDeps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountDeps")
            .field("tokens", &self.tokens)
            .field("plc", &self.plc)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Accounts, sessions and identities of this PDS. Cheap to clone.
#[derive(Clone)]
pub struct AccountManager {
    ctx: PdsContext,
    deps: Arc<AccountDeps>,
}

impl fmt::Debug for AccountManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountManager")
            .field("deps", &self.deps)
            .finish_non_exhaustive()
    }
}

impl AccountManager {
    /// An account manager over `ctx`'s storage.
    pub fn new(ctx: PdsContext, deps: Arc<AccountDeps>) -> Self {
        Self { ctx, deps }
    }

    /// The PDS context (storage, mailer, service facts).
    pub fn context(&self) -> &PdsContext {
        &self.ctx
    }

    /// Sign-up and identity settings.
    pub fn settings(&self) -> &AccountSettings {
        &self.deps.settings
    }

    /// The session token issuer.
    pub fn tokens(&self) -> &SessionTokens {
        &self.deps.tokens
    }

    /// The PLC directory client.
    pub fn plc(&self) -> &PlcClient {
        &self.deps.plc
    }

    /// Handle and DID resolution.
    pub fn resolver(&self) -> &IdentityResolver {
        &self.deps.resolver
    }

    /// The server's PLC rotation key.
    pub fn rotation_key(&self) -> &SigningKey {
        &self.deps.rotation_key
    }

    /// The admin password, when admin endpoints are enabled.
    pub fn admin_password(&self) -> Option<&Secret> {
        self.deps.admin_password.as_ref()
    }

    /// The account with `did`, or `AccountNotFound`.
    pub async fn account(&self, did: &Did) -> Result<Account, XrpcError> {
        self.ctx
            .accounts
            .get_account(AccountLookup::Did(did))
            .await
            .map_err(store_error)?
            .ok_or_else(|| account_not_found(did))
    }

    /// The account's repo signing key.
    pub async fn signing_key(&self, did: &Did) -> Result<SigningKey, XrpcError> {
        self.ctx
            .accounts
            .get_signing_key(did)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                tracing::error!(%did, "account has no stored signing key");
                XrpcError::internal()
            })
    }

    /// Sequences an `#identity` event for `account`.
    pub async fn sequence_identity(&self, account: &Account) -> Result<i64, XrpcError> {
        let body = IdentityBody {
            did: account.did.clone(),
            handle: Some(account.handle.clone()),
            time: Datetime::now(),
        };
        self.ctx
            .repos
            .sequence_event(NewEvent {
                did: account.did.clone(),
                event_type: EventType::Identity,
                payload: body.to_payload(),
            })
            .await
            .map_err(store_error)
    }

    /// Sequences an `#account` event saying whether `did` is active.
    pub async fn sequence_account(
        &self,
        did: &Did,
        status: AccountStatus,
    ) -> Result<i64, XrpcError> {
        self.ctx
            .repos
            .sequence_event(account_event(did, status))
            .await
            .map_err(store_error)
    }
}

/// The `#account` event for `did` in `status`.
pub(crate) fn account_event(did: &Did, status: AccountStatus) -> NewEvent {
    let active = status == AccountStatus::Active;
    let body = AccountBody {
        did: did.clone(),
        active,
        status: (!active).then(|| status.as_str().to_owned()),
        time: Datetime::now(),
    };
    NewEvent {
        did: did.clone(),
        event_type: EventType::Account,
        payload: body.to_payload(),
    }
}

/// Maps a storage failure to its client error, logging what the client
/// does not see.
pub(crate) fn store_error(e: aurora_core::StoreError) -> XrpcError {
    crate::xrpc::ApiError::from(e).0
}

/// Logs `e` and answers 500 without details.
pub(crate) fn internal(what: &str, e: &dyn fmt::Display) -> XrpcError {
    tracing::error!(error = %e, "{what}");
    XrpcError::internal()
}

/// 400 with a lexicon-defined error name.
pub(crate) fn bad_request(error: &'static str, message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, error, message)
}

/// 401 with a lexicon-defined error name.
pub(crate) fn unauthorized(error: &'static str, message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::UNAUTHORIZED, error, message)
}

fn account_not_found(did: &Did) -> XrpcError {
    bad_request("AccountNotFound", format!("no account for {did}"))
}
