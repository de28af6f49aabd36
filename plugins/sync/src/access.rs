//! Which repos are served, and the errors the sync lexicons define for
//! those that are not.

use aurora_core::store::{Account, AccountLookup, AccountStatus};
use aurora_core::syntax::Did;
use aurora_core::{PdsContext, StoreError, XrpcError};
use http::StatusCode;

/// A 400 error with a lexicon-defined name.
pub(crate) fn bad_request(error: &'static str, message: impl Into<String>) -> XrpcError {
    XrpcError::new(StatusCode::BAD_REQUEST, error, message)
}

/// A storage failure as the client sees it, logged first (the client only
/// gets a generic message for internal failures).
pub(crate) fn store_error(e: StoreError) -> XrpcError {
    match &e {
        StoreError::Unavailable(_) => tracing::warn!(error = %e, "storage unavailable"),
        StoreError::Full(_) => tracing::error!(error = %e, "storage full: writes fail"),
        StoreError::Backend(_) | StoreError::Corrupt(_) => {
            tracing::error!(error = %e, "storage failure");
        }
        _ => {}
    }
    e.into()
}

/// A repo whose stored data is unreadable: logged, a generic 500 sent.
pub(crate) fn corrupt(did: &Did, what: impl std::fmt::Display) -> XrpcError {
    tracing::error!(%did, "repo data is corrupt: {what}");
    XrpcError::internal()
}

/// Why an account is not active, as `listRepos` and `getRepoStatus` report
/// it (`None`: active). A takedown reference counts as taken down whatever
/// the status says.
pub(crate) fn inactive_status(account: &Account) -> Option<&'static str> {
    if account.takedown_ref.is_some() {
        return Some(AccountStatus::Takendown.as_str());
    }
    match account.status {
        AccountStatus::Active => None,
        other => Some(other.as_str()),
    }
}

pub(crate) fn repo_not_found(did: &Did) -> XrpcError {
    bad_request(
        "RepoNotFound",
        format!("Could not find repo for DID: {did}"),
    )
}

/// The account `did`, if its repo is served: unknown and deleted accounts
/// are `RepoNotFound`; taken-down, suspended and deactivated ones get the
/// lexicons' `RepoTakendown`, `RepoSuspended` and `RepoDeactivated`.
pub(crate) async fn served_account(ctx: &PdsContext, did: &Did) -> Result<Account, XrpcError> {
    let account = ctx
        .accounts
        .get_account(AccountLookup::Did(did))
        .await
        .map_err(store_error)?
        .ok_or_else(|| repo_not_found(did))?;
    match inactive_status(&account) {
        None => Ok(account),
        Some("takendown") => Err(bad_request(
            "RepoTakendown",
            format!("Repo has been takendown: {did}"),
        )),
        Some("suspended") => Err(bad_request(
            "RepoSuspended",
            format!("Repo has been suspended: {did}"),
        )),
        Some("deactivated") => Err(bad_request(
            "RepoDeactivated",
            format!("Repo has been deactivated: {did}"),
        )),
        Some(_) => Err(repo_not_found(did)),
    }
}
