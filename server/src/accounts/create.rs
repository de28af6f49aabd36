//! Sign-up: `com.atproto.server.createAccount`.
//!
//! In order: check the input (handle, email, password, invite code) and
//! that the handle and email are free; make the repo signing key and the
//! did:plc genesis operation (rotation keys: the user's recovery key if
//! given, then the server's; the signing key; `at://<handle>`; this PDS as
//! `atproto_pds`); build the repo's first, empty commit; submit the
//! operation to the PLC directory; then store the account with its key
//! (consuming the invite code in the same transaction) and sequence
//! `#identity`, `#account` and the first `#commit`.
//!
//! Nothing is stored before the directory accepted the DID. If storing
//! fails halfway (a handle taken by a concurrent sign-up, the database
//! going away), what was stored is removed again, so a failed request
//! leaves no account behind. The DID itself stays registered at the
//! directory, pointing here, unused: the directory has no delete, and the
//! reference PDS behaves the same.

use aurora_core::XrpcError;
use aurora_core::crypto::{Curve, PublicKey, SigningKey};
use aurora_core::identity::plc::{Operation, PlcOperation};
use aurora_core::store::{Account, AccountLookup, AccountStatus, NewAccount};
use aurora_core::syntax::{Did, Handle};

use super::email::check_email;
use super::session::check_new_password;
use super::{AccountManager, account_event, bad_request, handle, internal, store_error};
use crate::auth::password::hash_password_blocking;
use crate::auth::tokens::{AccessScope, IssuedSession};

/// The input of a sign-up.
#[derive(Clone, Default)]
pub struct SignUp {
    /// The requested handle.
    pub handle: String,
    /// Contact email.
    pub email: Option<String>,
    /// Account password.
    pub password: Option<String>,
    /// Invite code, when sign-up needs one.
    pub invite_code: Option<String>,
    /// A did:key the user keeps as their own highest-priority rotation key.
    pub recovery_key: Option<String>,
}

impl std::fmt::Debug for SignUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignUp")
            .field("handle", &self.handle)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// A new account and its first session.
#[derive(Debug, Clone)]
pub struct CreatedAccount {
    /// The account.
    pub account: Account,
    /// Its first session.
    pub session: IssuedSession,
}

impl AccountManager {
    /// Creates an account (see the module docs).
    pub async fn create_account(&self, input: SignUp) -> Result<CreatedAccount, XrpcError> {
        let settings = self.settings();
        let Checked {
            handle,
            email,
            password,
            invite_code,
            recovery_key,
        } = check_sign_up(&input, &settings.user_domains, settings.invite_required)?;
        self.check_available(&handle, &email).await?;

        let signing_key = SigningKey::generate(Curve::K256);
        let mut rotation_keys = Vec::new();
        rotation_keys.extend(recovery_key);
        rotation_keys.push(self.rotation_key().public_key());
        let genesis = Operation::Plc(PlcOperation::atproto(
            &rotation_keys,
            &signing_key.public_key(),
            &handle,
            &settings.public_url,
            None,
        ))
        .sign(self.rotation_key());
        let did = genesis
            .did()
            .map_err(|e| internal("a genesis operation names no DID", &e))?;
        let first_commit = super::repo_init::initial_commit(&did, &signing_key)
            .await
            .map_err(|e| internal("cannot build the first commit", &e))?;
        let password_hash = hash_password_blocking(password)
            .await
            .map_err(|e| internal("cannot hash a password", &e))?;

        self.plc().submit(&genesis).await.map_err(|e| {
            tracing::warn!(error = %e, %did, "the PLC directory did not take a genesis operation");
            XrpcError::new(
                http::StatusCode::BAD_GATEWAY,
                "UpstreamFailure",
                "the PLC directory did not register the new DID; try again later",
            )
        })?;

        let account = self
            .context()
            .accounts
            .create_account(NewAccount {
                did: did.clone(),
                handle,
                email: Some(email),
                password_hash: Some(password_hash),
                signing_key: Some(signing_key),
                invite_code,
            })
            .await
            .map_err(|e| match e {
                aurora_core::StoreError::AlreadyExists { field: "handle" } => {
                    bad_request("HandleNotAvailable", "handle already taken")
                }
                aurora_core::StoreError::AlreadyExists { field: "email" } => email_taken(),
                other => store_error(other),
            })?;

        match self.announce_new_account(&account, first_commit).await {
            Ok(session) => {
                tracing::info!(%did, handle = %account.handle, "account created");
                Ok(CreatedAccount { account, session })
            }
            Err(e) => {
                self.undo_sign_up(&did).await;
                Err(e)
            }
        }
    }

    /// Sequences a new account's `#identity`, `#account` and first
    /// `#commit`, and opens its first session.
    async fn announce_new_account(
        &self,
        account: &Account,
        first_commit: aurora_core::store::CommitWrite,
    ) -> Result<IssuedSession, XrpcError> {
        self.sequence_identity(account).await?;
        self.sequence_account(&account.did, AccountStatus::Active)
            .await?;
        self.context()
            .repos
            .apply_commit(first_commit)
            .await
            .map_err(store_error)?;
        self.open_session(&account.did, AccessScope::Access, None)
            .await
    }

    /// Fails when the handle or email is taken.
    async fn check_available(&self, handle: &Handle, email: &str) -> Result<(), XrpcError> {
        let accounts = &self.context().accounts;
        if accounts
            .get_account(AccountLookup::Handle(handle))
            .await
            .map_err(store_error)?
            .is_some()
        {
            return Err(bad_request("HandleNotAvailable", "handle already taken"));
        }
        if accounts
            .get_account(AccountLookup::Email(email))
            .await
            .map_err(store_error)?
            .is_some()
        {
            return Err(email_taken());
        }
        Ok(())
    }

    /// Removes what a failed sign-up stored: its repo and events (the
    /// events are invalidated, never served) and the account.
    async fn undo_sign_up(&self, did: &Did) {
        let ctx = self.context();
        if let Err(e) = ctx
            .repos
            .delete_repo(did, account_event(did, AccountStatus::Deleted))
            .await
        {
            tracing::error!(error = %e, %did, "cannot remove the repo of a failed sign-up");
        }
        if let Err(e) = ctx.accounts.delete_account(did).await {
            tracing::error!(error = %e, %did, "cannot remove the account of a failed sign-up");
        }
    }
}

impl AccountManager {
    /// Creates an account for an identity that already exists elsewhere
    /// (account migration): `service_jwt` must be a service token from
    /// `did` for this service and `createAccount`, signed with the DID
    /// document's current `#atproto` key. The account starts deactivated,
    /// with a fresh signing key and no repo: the user imports the repo,
    /// points the DID document here (`getRecommendedDidCredentials`) and
    /// then activates it. Nothing is sequenced until activation.
    pub async fn create_migrated_account(
        &self,
        input: SignUp,
        did: &Did,
        service_jwt: &str,
    ) -> Result<Account, XrpcError> {
        let settings = self.settings();
        let handle = handle::parse(&input.handle)?;
        handle::check(&handle, &settings.user_domains, true)?;
        let email = input.email.as_deref().map(check_email).transpose()?;
        let (password, invite_code) = check_password_and_invite(&input, settings.invite_required)?;
        // The DID's owner must ask for this, with the key in its document.
        let doc = self
            .resolve_did_document(did)
            .await?
            .ok_or_else(|| bad_request("UnresolvableDid", format!("{did} does not resolve")))?;
        let key = doc.signing_key().ok_or_else(|| {
            bad_request(
                "IncompatibleDidDoc",
                "the DID document has no #atproto signing key",
            )
        })?;
        let lxm = aurora_core::syntax::Nsid::parse("com.atproto.server.createAccount")
            .map_err(|e| internal("a literal NSID does not parse", &e))?;
        let claims = crate::auth::service_auth::verify_service_jwt(
            service_jwt,
            &key,
            self.tokens().service_did().as_str(),
            Some(&lxm),
            chrono::Utc::now(),
        )
        .map_err(|e| super::unauthorized("InvalidToken", format!("service token rejected: {e}")))?;
        if &claims.iss != did {
            return Err(super::unauthorized(
                "InvalidToken",
                "the service token was issued by another DID",
            ));
        }
        if handle::hosted_domain(&handle, &settings.user_domains).is_none() {
            self.check_external_handle(&handle, did).await?;
        }
        if let Some(email) = &email {
            self.check_available(&handle, email).await?;
        }
        let password_hash = hash_password_blocking(password)
            .await
            .map_err(|e| internal("cannot hash a password", &e))?;
        let account = self
            .context()
            .accounts
            .create_account(NewAccount {
                did: did.clone(),
                handle,
                email,
                password_hash: Some(password_hash),
                signing_key: Some(SigningKey::generate(Curve::K256)),
                invite_code,
            })
            .await
            .map_err(|e| match e {
                aurora_core::StoreError::AlreadyExists { field: "did" } => {
                    XrpcError::invalid_request("this DID already has an account here")
                }
                aurora_core::StoreError::AlreadyExists { field: "handle" } => {
                    bad_request("HandleNotAvailable", "handle already taken")
                }
                aurora_core::StoreError::AlreadyExists { field: "email" } => email_taken(),
                other => store_error(other),
            })?;
        if let Err(e) = self
            .context()
            .accounts
            .update_status(did, AccountStatus::Deactivated)
            .await
        {
            self.undo_sign_up(did).await;
            return Err(store_error(e));
        }
        tracing::info!(%did, handle = %account.handle, "migrating account created (deactivated)");
        Ok(Account {
            status: AccountStatus::Deactivated,
            ..account
        })
    }
}

/// A sign-up's input, checked.
struct Checked {
    handle: Handle,
    email: String,
    password: String,
    invite_code: Option<String>,
    recovery_key: Option<PublicKey>,
}

fn check_sign_up(
    input: &SignUp,
    user_domains: &[String],
    invite_required: bool,
) -> Result<Checked, XrpcError> {
    let handle = handle::parse(&input.handle)?;
    handle::check(&handle, user_domains, false)?;
    let email = match input.email.as_deref() {
        Some(email) => check_email(email)?,
        None => return Err(XrpcError::invalid_request("email is required")),
    };
    let (password, invite_code) = check_password_and_invite(input, invite_required)?;
    let recovery_key = match input.recovery_key.as_deref() {
        Some(k) => Some(PublicKey::from_did_key(k).map_err(|e| {
            XrpcError::invalid_request(format!("recoveryKey is not a did:key: {e}"))
        })?),
        None => None,
    };
    Ok(Checked {
        handle,
        email,
        password,
        invite_code,
        recovery_key,
    })
}

/// The password (required, within limits) and invite code (required when
/// sign-up needs one) of a sign-up.
fn check_password_and_invite(
    input: &SignUp,
    invite_required: bool,
) -> Result<(String, Option<String>), XrpcError> {
    let Some(password) = input.password.clone() else {
        return Err(XrpcError::invalid_request("password is required"));
    };
    check_new_password(&password)?;
    let invite_code = input
        .invite_code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    if invite_required && invite_code.is_none() {
        return Err(bad_request(
            "InvalidInviteCode",
            "an invite code is required to sign up here",
        ));
    }
    Ok((password, invite_code))
}

/// A taken email. The address is necessarily known to be registered when
/// it cannot be used again; the message at least names no account.
fn email_taken() -> XrpcError {
    XrpcError::invalid_request("this email address cannot be used for a new account")
}
