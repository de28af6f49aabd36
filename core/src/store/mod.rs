//! The storage plugin traits: [`RepoStore`], [`Sequencer`], [`AccountStore`],
//! [`OAuthStore`], [`BlobStore`] and [`SinkCursorStore`], and the errors
//! they share.
//!
//! Backends live in `storage-backends/`; every one of them passes the same
//! conformance suite (`aurora-storage-testkit`).

mod account;
mod blob;
mod oauth;
mod repo;
mod sequencer;
mod sink_cursor;

pub use account::{
    Account, AccountLookup, AccountStatus, AccountStore, AppPassword, EmailToken,
    EmailTokenPurpose, InviteCode, InviteCodeSort, InviteCodeUse, NewAccount, NewInviteCode,
    RefreshToken, constant_time_eq, normalize_email,
};
pub use blob::{BlobError, BlobStore, ByteStream, StoredBlob, TempBlob};
pub use oauth::{
    OAuthDeviceAccount, OAuthRequest, OAuthRotation, OAuthSession, OAuthStore, RefreshTokenState,
};
pub use repo::{
    BlobRecord, CommitStage, CommitWrite, MissingBlob, RecordEntry, RecordPage, RecordWrite,
    RepoRoot, RepoStats, RepoStore, RevBlock,
};
pub use sequencer::{SeqWatch, Sequencer};
pub use sink_cursor::{SinkCursor, SinkCursorStore, SinkLease};

use crate::syntax::Did;
use cid::Cid;

/// A boxed error from a storage driver.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the storage traits.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `apply_commit`'s compare-and-swap failed: the repo's root is not the
    /// one the writer started from (another commit won), or the repo already
    /// exists when creating it. Nothing was written.
    #[error("repo {did} was changed concurrently: its root is no longer {}", expected.map_or_else(|| "absent".to_owned(), |c| c.to_string()))]
    RootConflict {
        /// The repo.
        did: Did,
        /// The root the writer expected (`None`: expected no repo yet).
        expected: Option<Cid>,
    },
    /// A unique value (DID, handle, email, invite code, ...) is already taken.
    #[error("{field} is already in use")]
    AlreadyExists {
        /// Which value: `"did"`, `"handle"`, `"email"`, `"invite code"`, ...
        field: &'static str,
    },
    /// The invite code given to create an account is unknown, disabled or
    /// has no uses left. Nothing was written.
    #[error("invite code is unknown, disabled or used up")]
    InvalidInviteCode,
    /// The thing to update does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The backend cannot be reached (database down, pool exhausted). Retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The backend is out of space (a full disk, a quota reached). Nothing
    /// was written; writes fail until an operator makes room, reads go on.
    #[error("storage full: {0}")]
    Full(String),
    /// Stored data could not be decoded.
    #[error("corrupt data in storage: {0}")]
    Corrupt(String),
    /// Any other backend failure.
    #[error("storage backend error: {0}")]
    Backend(BackendError),
}
