//! Hosting status: activation, deactivation, takedown and deletion, each
//! announced with an `#account` event.

use aurora_core::XrpcError;
use aurora_core::store::{Account, AccountStatus, EmailTokenPurpose};
use aurora_core::syntax::Did;

use super::{AccountManager, account_event, bad_request, store_error};

impl AccountManager {
    /// `activateAccount`: a deactivated account serves again; announced
    /// with `#identity` (so followers refresh the DID document) and
    /// `#account`. Activating an active account changes nothing.
    pub async fn activate(&self, account: &Account) -> Result<(), XrpcError> {
        match account.status {
            AccountStatus::Active => Ok(()),
            AccountStatus::Deactivated => {
                self.set_status(&account.did, AccountStatus::Active).await?;
                self.sequence_identity(account).await?;
                self.sequence_account(&account.did, AccountStatus::Active)
                    .await?;
                Ok(())
            }
            AccountStatus::Takendown | AccountStatus::Suspended => Err(bad_request(
                "AccountTakedown",
                "a taken-down account cannot be activated by its owner",
            )),
            AccountStatus::Deleted => Err(bad_request("AccountNotFound", "account is deleted")),
        }
    }

    /// `deactivateAccount`: the account stops serving its repo until it is
    /// activated again.
    pub async fn deactivate(&self, account: &Account) -> Result<(), XrpcError> {
        match account.status {
            AccountStatus::Deactivated => Ok(()),
            AccountStatus::Active => {
                self.set_status(&account.did, AccountStatus::Deactivated)
                    .await?;
                self.sequence_account(&account.did, AccountStatus::Deactivated)
                    .await?;
                Ok(())
            }
            _ => Err(bad_request(
                "AccountTakedown",
                "a taken-down account cannot be deactivated by its owner",
            )),
        }
    }

    /// Takes an account down (`takedown_ref` set: it cannot sign in, write
    /// or be served, and its sessions end, OAuth sessions too) or restores
    /// it (`None`).
    pub async fn set_takedown(
        &self,
        did: &Did,
        takedown_ref: Option<&str>,
    ) -> Result<(), XrpcError> {
        let account = self.account(did).await?;
        let accounts = &self.context().accounts;
        accounts
            .set_takedown_ref(did, takedown_ref)
            .await
            .map_err(store_error)?;
        let status = if takedown_ref.is_some() {
            AccountStatus::Takendown
        } else if account.status == AccountStatus::Takendown {
            AccountStatus::Active
        } else {
            account.status
        };
        if status != account.status {
            self.set_status(did, status).await?;
            self.sequence_account(did, status).await?;
        }
        if takedown_ref.is_some() {
            accounts
                .delete_refresh_tokens(did, None)
                .await
                .map_err(store_error)?;
            self.context()
                .oauth
                .end_oauth_sessions(did)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// `deleteAccount`: with the account password and a mailed deletion
    /// token, deletes the account.
    pub async fn delete_with_token(
        &self,
        did: &Did,
        password: &str,
        token: &str,
    ) -> Result<(), XrpcError> {
        let account = self.account(did).await?;
        self.verify_account_password(&account, password).await?;
        self.use_email_token(did, EmailTokenPurpose::DeleteAccount, token)
            .await?;
        self.remove_account(did).await
    }

    /// Deletes an account: its repo (blocks, records, root) and earlier
    /// events go, an `#account` event with status `deleted` is sequenced,
    /// and the account row with its keys, sessions and tokens is removed.
    pub async fn remove_account(&self, did: &Did) -> Result<(), XrpcError> {
        let ctx = self.context();
        // The blobs' bytes go after their rows (which `delete_repo` removes
        // with the repo), so list them first. Temporary uploads lose their
        // rows too; the blob sweep removes their files.
        let mut blobs = Vec::new();
        loop {
            let page = ctx
                .repos
                .list_blobs(did, blobs.last(), 1000)
                .await
                .map_err(store_error)?;
            let done = page.len() < 1000;
            blobs.extend(page);
            if done {
                break;
            }
        }
        ctx.repos
            .delete_repo(did, account_event(did, AccountStatus::Deleted))
            .await
            .map_err(store_error)?;
        for cid in &blobs {
            if let Err(e) = ctx.blobs.delete(did, cid).await {
                tracing::warn!(%did, %cid, error = %e, "deleting a deleted account's blob failed");
            }
        }
        ctx.accounts
            .delete_account(did)
            .await
            .map_err(store_error)?;
        tracing::info!(%did, "account deleted");
        Ok(())
    }

    async fn set_status(&self, did: &Did, status: AccountStatus) -> Result<(), XrpcError> {
        self.context()
            .accounts
            .update_status(did, status)
            .await
            .map_err(store_error)
    }
}

/// What `checkAccountStatus` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatusReport {
    /// Whether the DID document points at this PDS with this repo key.
    pub valid_did: bool,
    /// The repo's current commit.
    pub repo_commit: Option<aurora_core::cid::Cid>,
    /// The repo's current rev.
    pub repo_rev: Option<aurora_core::syntax::Tid>,
    /// Blocks stored for the repo.
    pub repo_blocks: u64,
    /// Records in the record index.
    pub indexed_records: u64,
    /// Private per-account values (preferences).
    pub private_state_values: u64,
    /// Blobs the repo's records reference.
    pub expected_blobs: u64,
    /// Of those, blobs stored here.
    pub imported_blobs: u64,
}

impl AccountManager {
    /// `checkAccountStatus`: the repo's state, and whether the DID document
    /// agrees with this PDS.
    pub async fn account_status_report(
        &self,
        account: &Account,
    ) -> Result<AccountStatusReport, XrpcError> {
        let repos = &self.context().repos;
        let root = repos.get_root(&account.did).await.map_err(store_error)?;
        let stats = repos.repo_stats(&account.did).await.map_err(store_error)?;
        // Private state kept outside the repo: the app preferences.
        let prefs = self
            .context()
            .accounts
            .get_preferences(&account.did)
            .await
            .map_err(store_error)?;
        Ok(AccountStatusReport {
            valid_did: self.did_document_points_here(account).await,
            repo_commit: root.as_ref().map(|r| r.cid),
            repo_rev: root.map(|r| r.rev),
            repo_blocks: stats.blocks,
            indexed_records: stats.records,
            private_state_values: prefs.len() as u64,
            expected_blobs: stats.expected_blobs,
            imported_blobs: stats.imported_blobs,
        })
    }

    /// Whether the account's DID document names this PDS and its repo key.
    /// An unreachable directory counts as "not shown to be valid".
    async fn did_document_points_here(&self, account: &Account) -> bool {
        let Ok(expected) = self.recommended_did_credentials(account).await else {
            return false;
        };
        let doc = match self.resolve_did_document(&account.did).await {
            Ok(Some(doc)) => doc,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, did = %account.did, "cannot resolve a DID for checkAccountStatus");
                return false;
            }
        };
        let key = expected
            .verification_methods
            .get("atproto")
            .and_then(|k| aurora_core::crypto::PublicKey::from_did_key(k).ok());
        let endpoint = doc
            .pds_endpoint()
            .map(|u| u.as_str().trim_end_matches('/').to_owned());
        endpoint.as_deref() == Some(self.settings().public_url.as_str())
            && key.is_some()
            && doc.signing_key() == key
    }
}
