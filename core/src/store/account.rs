use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::crypto::SigningKey;
use crate::syntax::{Did, Handle};

/// The hosting status of an account, as `#account` events report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    /// Hosted and serving.
    Active,
    /// Deactivated by its owner; can be reactivated.
    Deactivated,
    /// Taken down by the operator.
    Takendown,
    /// Temporarily suspended by the operator.
    Suspended,
    /// Deleted; only a tombstone remains.
    Deleted,
}

impl AccountStatus {
    /// The stored (and lexicon) name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
            Self::Takendown => "takendown",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "active" => Self::Active,
            "deactivated" => Self::Deactivated,
            "takendown" => Self::Takendown,
            "suspended" => Self::Suspended,
            "deleted" => Self::Deleted,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown account status {other:?}"
                )));
            }
        })
    }
}

/// A hosted account.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The account's DID: its permanent identifier.
    pub did: Did,
    /// The current handle.
    pub handle: Handle,
    /// Contact email, stored lower-cased.
    pub email: Option<String>,
    /// Password hash (PHC string); `None` for accounts without a password.
    pub password_hash: Option<String>,
    /// Hosting status.
    pub status: AccountStatus,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the email was confirmed.
    pub email_confirmed_at: Option<DateTime<Utc>>,
    /// The operator's reference for a takedown (a moderation report id,
    /// say); `None` when the account is not taken down. Set with
    /// [`AccountStore::set_takedown_ref`], independently of
    /// [`status`](Self::status).
    pub takedown_ref: Option<String>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password hash is never printed.
        f.debug_struct("Account")
            .field("did", &self.did)
            .field("handle", &self.handle)
            .field("email", &self.email)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .field("email_confirmed_at", &self.email_confirmed_at)
            .field("takedown_ref", &self.takedown_ref)
            .finish_non_exhaustive()
    }
}

/// A new account to create.
#[derive(Clone)]
pub struct NewAccount {
    /// The account's DID.
    pub did: Did,
    /// Its handle.
    pub handle: Handle,
    /// Contact email (lower-cased by the store).
    pub email: Option<String>,
    /// Password hash (PHC string).
    pub password_hash: Option<String>,
    /// The repo signing key, stored with the account in one transaction.
    pub signing_key: Option<SigningKey>,
    /// The invite code the account signs up with. When set,
    /// [`AccountStore::create_account`] consumes one of its uses in the same
    /// transaction as it creates the account.
    pub invite_code: Option<String>,
}

impl fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewAccount")
            .field("did", &self.did)
            .field("handle", &self.handle)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// How to find an account.
#[derive(Debug, Clone, Copy)]
pub enum AccountLookup<'a> {
    /// By DID.
    Did(&'a Did),
    /// By handle.
    Handle(&'a Handle),
    /// By email (case-insensitive).
    Email(&'a str),
}

/// Accounts hosted on this PDS.
///
/// DIDs, handles and emails are unique; the store enforces it and reports a
/// clash as [`StoreError::AlreadyExists`].
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Creates an active account.
    ///
    /// When [`NewAccount::invite_code`] is set, one use of that code is
    /// consumed and recorded (an [`InviteCodeUse`] by the new DID) in the
    /// same transaction. An unknown, disabled or used-up code fails with
    /// [`StoreError::InvalidInviteCode`] and nothing is written; of two
    /// concurrent sign-ups for a code's last use, exactly one succeeds.
    async fn create_account(&self, account: NewAccount) -> Result<Account, StoreError>;

    /// The account's repo signing key, if one was stored with it.
    async fn get_signing_key(&self, did: &Did) -> Result<Option<SigningKey>, StoreError>;

    /// Finds one account.
    async fn get_account(&self, lookup: AccountLookup<'_>) -> Result<Option<Account>, StoreError>;

    /// Up to `limit` accounts with DIDs after `cursor`, in DID order.
    async fn list_accounts(
        &self,
        cursor: Option<&Did>,
        limit: usize,
    ) -> Result<Vec<Account>, StoreError>;

    /// Changes an account's handle.
    async fn update_handle(&self, did: &Did, handle: &Handle) -> Result<(), StoreError>;

    /// Changes an account's hosting status.
    async fn update_status(&self, did: &Did, status: AccountStatus) -> Result<(), StoreError>;

    /// Sets (or, with `None`, clears) the account's takedown reference.
    /// Fails with [`StoreError::NotFound`] for an unknown DID. The status is
    /// not touched (see [`update_status`](Self::update_status)).
    async fn set_takedown_ref(
        &self,
        did: &Did,
        takedown_ref: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Removes an account with its signing key, sessions (OAuth sessions,
    /// remembered devices and granted scopes too), app passwords and email
    /// tokens, in one transaction. (Repo data is removed through
    /// [`RepoStore`](super::RepoStore).) Invite codes created for or used by
    /// the account are kept, for audit.
    async fn delete_account(&self, did: &Did) -> Result<(), StoreError>;

    /// Sets a new password hash and, in the same transaction, ends every
    /// session of the account: all its refresh tokens, its OAuth sessions
    /// (see [`OAuthStore::end_oauth_sessions`](super::OAuthStore::end_oauth_sessions)).
    async fn update_password(&self, did: &Did, password_hash: &str) -> Result<(), StoreError>;

    /// Sets (or clears) the email; it becomes unconfirmed.
    async fn update_email(&self, did: &Did, email: Option<&str>) -> Result<(), StoreError>;

    /// Marks the email as confirmed at `at`.
    async fn confirm_email(&self, did: &Did, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Stores a new refresh token (a session).
    async fn create_refresh_token(&self, token: RefreshToken) -> Result<(), StoreError>;

    /// A refresh token by its id, expired or not.
    async fn get_refresh_token(&self, id: &str) -> Result<Option<RefreshToken>, StoreError>;

    /// The current (latest) refresh token of session `session_id`, expired
    /// or not; `None` once the session has ended (its token deleted, the
    /// password changed, its app password revoked, the account deleted).
    async fn get_session(&self, session_id: &str) -> Result<Option<RefreshToken>, StoreError>;

    /// [`get_session`](Self::get_session) with the session's account, as
    /// every authenticated call needs both: `None` when the session has
    /// ended or its account is gone. Backends that can read both at once
    /// (a join) should; this default reads one after the other.
    async fn get_session_account(
        &self,
        session_id: &str,
    ) -> Result<Option<(RefreshToken, Account)>, StoreError> {
        let Some(session) = self.get_session(session_id).await? else {
            return Ok(None);
        };
        let account = self.get_account(AccountLookup::Did(&session.did)).await?;
        Ok(account.map(|account| (session, account)))
    }

    /// Replaces refresh token `old_id` by `new` atomically and returns the
    /// old token; `None` when `old_id` is unknown (already used, revoked or
    /// never issued), and then nothing is stored. Of two concurrent
    /// rotations of one token, at most one succeeds. `new` is stored as
    /// given: to keep the session, the caller passes the old token's
    /// [`session_id`](RefreshToken::session_id).
    async fn rotate_refresh_token(
        &self,
        old_id: &str,
        new: RefreshToken,
    ) -> Result<Option<RefreshToken>, StoreError>;

    /// Deletes one refresh token; whether it existed.
    async fn delete_refresh_token(&self, id: &str) -> Result<bool, StoreError>;

    /// Deletes an account's refresh tokens: all of them, or only those
    /// created with app password `app_password`. Returns how many.
    async fn delete_refresh_tokens(
        &self,
        did: &Did,
        app_password: Option<&str>,
    ) -> Result<u64, StoreError>;

    /// Stores an app password; a name is unique per account.
    async fn create_app_password(&self, app_password: AppPassword) -> Result<(), StoreError>;

    /// An account's app passwords, by name.
    async fn list_app_passwords(&self, did: &Did) -> Result<Vec<AppPassword>, StoreError>;

    /// Revokes an app password and, in the same transaction, the sessions
    /// created with it.
    async fn delete_app_password(&self, did: &Did, name: &str) -> Result<(), StoreError>;

    /// Stores (replacing any previous one) the token sent by email for
    /// `purpose`.
    async fn put_email_token(&self, token: EmailToken) -> Result<(), StoreError>;

    /// Consumes the email token for `purpose` if `token` matches, returning
    /// when it was requested (the caller checks its age). A wrong token
    /// leaves the stored one in place.
    async fn take_email_token(
        &self,
        did: &Did,
        purpose: EmailTokenPurpose,
        token: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Consumes the email token `token` for `purpose`, whichever account it
    /// belongs to (password reset knows only the token). Returns the account
    /// and when the token was requested (the caller checks its age); `None`
    /// when no such token exists, and then nothing changes.
    ///
    /// Atomic: of two concurrent takes of one token, at most one gets
    /// `Some`. A token that two accounts hold for the same purpose (a
    /// collision that random tokens make vanishingly rare) is ambiguous: it
    /// is treated as unknown, and neither copy is consumed.
    async fn take_email_token_by_value(
        &self,
        purpose: EmailTokenPurpose,
        token: &str,
    ) -> Result<Option<(Did, DateTime<Utc>)>, StoreError>;

    /// Stores new invite codes, all in one transaction, and returns them as
    /// stored (created now, enabled, unused). A code that already exists
    /// fails the whole call with [`StoreError::AlreadyExists`]
    /// (`field: "invite code"`).
    async fn create_invite_codes(
        &self,
        codes: Vec<NewInviteCode>,
    ) -> Result<Vec<InviteCode>, StoreError>;

    /// One invite code with its uses.
    async fn get_invite_code(&self, code: &str) -> Result<Option<InviteCode>, StoreError>;

    /// A page of up to `limit` invite codes in `sort` order, starting after
    /// `cursor`, and the cursor of the next page (`None` when this page is
    /// the last). Cursors are opaque; one this store did not produce for
    /// the same `sort` yields an empty last page.
    async fn list_invite_codes(
        &self,
        sort: InviteCodeSort,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<InviteCode>, Option<String>), StoreError>;

    /// The invite codes created for `for_account` (a DID, or `"admin"`),
    /// newest first.
    async fn account_invite_codes(&self, for_account: &str) -> Result<Vec<InviteCode>, StoreError>;

    /// Disables the codes listed in `codes` and every code whose
    /// [`for_account`](InviteCode::for_account) is in `accounts`. Unknown
    /// codes and accounts are ignored.
    async fn disable_invite_codes(
        &self,
        codes: &[String],
        accounts: &[String],
    ) -> Result<(), StoreError>;

    /// The account's private preferences (`app.bsky.actor.getPreferences`):
    /// a JSON array of preference objects, each with a `$type`; empty when
    /// none were stored. [`StoreError::NotFound`] for an unknown DID.
    async fn get_preferences(&self, did: &Did) -> Result<Vec<serde_json::Value>, StoreError>;

    /// Replaces the account's preferences. [`StoreError::NotFound`] for an
    /// unknown DID. Deleting the account deletes them.
    async fn put_preferences(
        &self,
        did: &Did,
        preferences: Vec<serde_json::Value>,
    ) -> Result<(), StoreError>;
}

/// A session's refresh token, as stored (the JWT itself is not stored,
/// only its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// The token id (JWT `jti`).
    pub id: String,
    /// The session the token belongs to: set when the session is created
    /// (usually to the first token's id) and carried over by every rotation.
    pub session_id: String,
    /// The account.
    pub did: Did,
    /// The app password the session was created with, if any.
    pub app_password: Option<String>,
    /// When the token stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Invite codes to create with [`AccountStore::create_invite_codes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInviteCode {
    /// The code itself, unique.
    pub code: String,
    /// How many accounts may sign up with it.
    pub available_uses: i32,
    /// Whom the code was made for: a DID, or `"admin"`.
    pub for_account: String,
    /// Who created it: a DID, or `"admin"`.
    pub created_by: String,
}

/// One sign-up with an invite code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCodeUse {
    /// The account created with the code.
    pub used_by: Did,
    /// When.
    pub used_at: DateTime<Utc>,
}

/// A stored invite code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteCode {
    /// The code itself.
    pub code: String,
    /// How many uses remain.
    pub available_uses: i32,
    /// Whether the operator disabled it.
    pub disabled: bool,
    /// Whom the code was made for: a DID, or `"admin"`.
    pub for_account: String,
    /// Who created it: a DID, or `"admin"`.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its uses, oldest first.
    pub uses: Vec<InviteCodeUse>,
}

/// The order of [`AccountStore::list_invite_codes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteCodeSort {
    /// Newest first (`created_at` descending), then by code.
    Recent,
    /// Most used first (number of uses descending), then by code.
    Usage,
}

/// An app password: a separate password for third-party clients that
/// cannot manage the account's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct AppPassword {
    /// The account.
    pub did: Did,
    /// Its name, unique per account.
    pub name: String,
    /// Password hash (PHC string).
    pub password_hash: String,
    /// Whether it may also read and send direct messages.
    pub privileged: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for AppPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppPassword")
            .field("did", &self.did)
            .field("name", &self.name)
            .field("privileged", &self.privileged)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What an emailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailTokenPurpose {
    /// Confirming the account's email.
    ConfirmEmail,
    /// Changing the email.
    UpdateEmail,
    /// Resetting the password.
    ResetPassword,
    /// Deleting the account.
    DeleteAccount,
    /// Signing a PLC operation.
    PlcOperation,
}

impl EmailTokenPurpose {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConfirmEmail => "confirm_email",
            Self::UpdateEmail => "update_email",
            Self::ResetPassword => "reset_password",
            Self::DeleteAccount => "delete_account",
            Self::PlcOperation => "plc_operation",
        }
    }
}

/// A token sent by email.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailToken {
    /// The account.
    pub did: Did,
    /// What the token is for.
    pub purpose: EmailTokenPurpose,
    /// The token the user types back.
    pub token: String,
    /// When it was sent.
    pub requested_at: DateTime<Utc>,
}

impl fmt::Debug for EmailToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailToken")
            .field("did", &self.did)
            .field("purpose", &self.purpose)
            .field("requested_at", &self.requested_at)
            .finish_non_exhaustive()
    }
}

/// Lower-cases an email for storage and lookup.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Compares two secrets in time that depends only on their lengths, so a
/// mismatch does not tell an attacker how many leading bytes were right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl NewAccount {
    /// The email as stores keep it (trimmed, lower-cased).
    pub fn normalized_email(&self) -> Option<String> {
        self.email.as_deref().map(normalize_email)
    }

    /// The account as a store creates it: active, email normalised, created now.
    pub fn into_account(self) -> Account {
        Account {
            email: self.normalized_email(),
            did: self.did,
            handle: self.handle,
            password_hash: self.password_hash,
            status: AccountStatus::Active,
            created_at: chrono::Utc::now(),
            email_confirmed_at: None,
            takedown_ref: None,
        }
    }
}

impl AccountLookup<'_> {
    /// For [`AccountLookup::Email`], the email as stores keep it.
    pub fn normalized_email(&self) -> Option<String> {
        match self {
            Self::Email(e) => Some(normalize_email(e)),
            _ => None,
        }
    }
}
