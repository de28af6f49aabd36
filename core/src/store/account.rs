use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
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
    async fn create_account(&self, account: NewAccount) -> Result<Account, StoreError>;

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

    /// Removes an account row. (Repo data is removed through [`RepoStore`](super::RepoStore).)
    async fn delete_account(&self, did: &Did) -> Result<(), StoreError>;
}

/// Lower-cases an email for storage and lookup.
pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
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
