//! Identity changes: handles and PLC operations (`com.atproto.identity`).
//!
//! For a did:plc account whose rotation keys include the server's, the PDS
//! keeps the DID document in step: a handle change is a new PLC operation
//! (the last operation with `alsoKnownAs` updated, signed with the
//! server's rotation key). Users who hold their own rotation keys sign
//! operations themselves and submit them through the PDS, which checks
//! that the result still points at this PDS and this repo key.

use std::collections::BTreeMap;

use aurora_core::XrpcError;
use aurora_core::identity::plc::{Operation, PlcOperation, Service, SignedOperation};
use aurora_core::store::{Account, EmailTokenPurpose};
use aurora_core::syntax::{Did, Handle};

use std::sync::Arc;

use super::{AccountManager, bad_request, handle, store_error};
use crate::identity::{DidDocument, IdentityError};

/// The credentials this PDS needs in an account's DID document
/// (`getRecommendedDidCredentials`), in PLC operation terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidCredentials {
    /// `did:key` rotation keys: the server's.
    pub rotation_keys: Vec<String>,
    /// `at://<handle>`.
    pub also_known_as: Vec<String>,
    /// `atproto`: the repo signing key.
    pub verification_methods: BTreeMap<String, String>,
    /// `atproto_pds`: this PDS.
    pub services: BTreeMap<String, Service>,
}

/// Changes to apply to the latest PLC operation (`signPlcOperation`);
/// `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct PlcOperationChanges {
    /// New rotation keys.
    pub rotation_keys: Option<Vec<String>>,
    /// New `alsoKnownAs`.
    pub also_known_as: Option<Vec<String>>,
    /// New verification methods.
    pub verification_methods: Option<BTreeMap<String, String>>,
    /// New services.
    pub services: Option<BTreeMap<String, Service>>,
}

fn upstream(e: &dyn std::fmt::Display) -> XrpcError {
    tracing::warn!(error = %e, "PLC directory request failed");
    XrpcError::new(
        http::StatusCode::BAD_GATEWAY,
        "UpstreamFailure",
        "the PLC directory did not answer as expected; try again later",
    )
}

impl AccountManager {
    /// `updateHandle`: moves the account to `new_handle` (a hosted handle,
    /// or the user's own domain, which must already resolve to the DID),
    /// updates the DID document when the server may, and sequences
    /// `#identity`.
    pub async fn update_handle(
        &self,
        account: &Account,
        new_handle: &str,
    ) -> Result<(), XrpcError> {
        let new_handle = handle::parse(new_handle)?;
        let hosted = handle::hosted_domain(&new_handle, &self.settings().user_domains).is_some();
        handle::check(&new_handle, &self.settings().user_domains, true)?;
        if !hosted {
            self.check_external_handle(&new_handle, &account.did)
                .await?;
        }
        if new_handle != account.handle {
            if let Some(other) = self
                .context()
                .accounts
                .get_account(aurora_core::store::AccountLookup::Handle(&new_handle))
                .await
                .map_err(store_error)?
                && other.did != account.did
            {
                return Err(bad_request("HandleNotAvailable", "handle already taken"));
            }
            self.update_plc_handle(&account.did, &new_handle).await?;
            self.context()
                .accounts
                .update_handle(&account.did, &new_handle)
                .await
                .map_err(|e| match e {
                    aurora_core::StoreError::AlreadyExists { .. } => {
                        bad_request("HandleNotAvailable", "handle already taken")
                    }
                    other => store_error(other),
                })?;
        }
        let mut updated = account.clone();
        updated.handle = new_handle;
        // Also when unchanged: the reference PDS re-announces, which lets a
        // user push a refresh of their identity to the network.
        self.sequence_identity(&updated).await?;
        Ok(())
    }

    /// Writes `handle` into a did:plc document the server may update.
    async fn update_plc_handle(&self, did: &Did, handle: &Handle) -> Result<(), XrpcError> {
        if did.method() != "plc" {
            return Ok(());
        }
        let last = self.last_plc_operation(did).await?;
        let Operation::Plc(mut op) = last.operation.clone() else {
            return Err(XrpcError::invalid_request(
                "the DID's latest operation is not a regular PLC operation",
            ));
        };
        let server_key = self.rotation_key().public_key().to_did_key();
        if !op.rotation_keys.contains(&server_key) {
            // The user controls the identity; they update it themselves.
            return Ok(());
        }
        let aka = format!("at://{handle}");
        op.also_known_as.retain(|a| !a.starts_with("at://"));
        op.also_known_as.insert(0, aka);
        op.prev = Some(last.cid());
        let signed = Operation::Plc(op).sign(self.rotation_key());
        self.plc()
            .submit_for(did, &signed)
            .await
            .map_err(|e| upstream(&e))
    }

    async fn last_plc_operation(&self, did: &Did) -> Result<SignedOperation, XrpcError> {
        self.plc()
            .last_operation(did)
            .await
            .map_err(|e| upstream(&e))?
            .ok_or_else(|| {
                XrpcError::invalid_request("the DID is not registered at the PLC directory")
            })
    }

    /// `getRecommendedDidCredentials`.
    pub async fn recommended_did_credentials(
        &self,
        account: &Account,
    ) -> Result<DidCredentials, XrpcError> {
        let signing_key = self.signing_key(&account.did).await?;
        Ok(DidCredentials {
            rotation_keys: vec![self.rotation_key().public_key().to_did_key()],
            also_known_as: vec![format!("at://{}", account.handle)],
            verification_methods: BTreeMap::from([(
                "atproto".to_owned(),
                signing_key.public_key().to_did_key(),
            )]),
            services: BTreeMap::from([(
                "atproto_pds".to_owned(),
                Service::atproto_pds(self.settings().public_url.clone()),
            )]),
        })
    }

    /// `requestPlcOperationSignature`: mails a token that authorises one
    /// `signPlcOperation`.
    pub async fn request_plc_operation_signature(
        &self,
        account: &Account,
    ) -> Result<(), XrpcError> {
        if account.did.method() != "plc" {
            return Err(XrpcError::invalid_request(
                "only did:plc identities have PLC operations",
            ));
        }
        self.send_email_token(account, EmailTokenPurpose::PlcOperation)
            .await
    }

    /// `signPlcOperation`: with a mailed token, signs the latest operation
    /// with `changes` applied, using the server's rotation key. The
    /// operation is returned, not submitted.
    pub async fn sign_plc_operation(
        &self,
        account: &Account,
        token: &str,
        changes: PlcOperationChanges,
    ) -> Result<SignedOperation, XrpcError> {
        if account.did.method() != "plc" {
            return Err(XrpcError::invalid_request(
                "only did:plc identities have PLC operations",
            ));
        }
        self.use_email_token(&account.did, EmailTokenPurpose::PlcOperation, token)
            .await?;
        let last = self.last_plc_operation(&account.did).await?;
        let Operation::Plc(current) = last.operation.clone() else {
            return Err(XrpcError::invalid_request(
                "the DID's latest operation is not a regular PLC operation",
            ));
        };
        let server_key = self.rotation_key().public_key().to_did_key();
        if !current.rotation_keys.contains(&server_key) {
            return Err(XrpcError::invalid_request(
                "this server's rotation key cannot sign for this DID",
            ));
        }
        let op = PlcOperation {
            rotation_keys: changes.rotation_keys.unwrap_or(current.rotation_keys),
            verification_methods: changes
                .verification_methods
                .unwrap_or(current.verification_methods),
            also_known_as: changes.also_known_as.unwrap_or(current.also_known_as),
            services: changes.services.unwrap_or(current.services),
            prev: Some(last.cid()),
        };
        Ok(Operation::Plc(op).sign(self.rotation_key()))
    }

    /// `submitPlcOperation`: checks that `op` keeps the account working on
    /// this PDS (the server's rotation key, this repo key, this PDS, the
    /// current handle), submits it, and sequences `#identity`.
    pub async fn submit_plc_operation(
        &self,
        account: &Account,
        op: &SignedOperation,
    ) -> Result<(), XrpcError> {
        if account.did.method() != "plc" {
            return Err(XrpcError::invalid_request(
                "only did:plc identities have PLC operations",
            ));
        }
        let Operation::Plc(plc) = &op.operation else {
            return Err(XrpcError::invalid_request(
                "only plc_operation operations can be submitted here",
            ));
        };
        let expected = self.recommended_did_credentials(account).await?;
        if !expected
            .rotation_keys
            .iter()
            .all(|k| plc.rotation_keys.contains(k))
        {
            return Err(XrpcError::invalid_request(
                "the operation must keep this server's rotation key",
            ));
        }
        if plc.verification_methods.get("atproto") != expected.verification_methods.get("atproto") {
            return Err(XrpcError::invalid_request(
                "the operation must keep this account's signing key as #atproto",
            ));
        }
        if plc.services.get("atproto_pds") != expected.services.get("atproto_pds") {
            return Err(XrpcError::invalid_request(
                "the operation must keep this PDS as #atproto_pds",
            ));
        }
        if plc.also_known_as.first() != expected.also_known_as.first() {
            return Err(XrpcError::invalid_request(
                "the operation must keep the account's handle as its first alsoKnownAs",
            ));
        }
        self.plc().submit_for(&account.did, op).await.map_err(|e| {
            if let crate::identity::plc_client::PlcClientError::Rejected { message, .. } = &e {
                return XrpcError::invalid_request(format!(
                    "the PLC directory refused the operation: {message}"
                ));
            }
            upstream(&e)
        })?;
        self.sequence_identity(account).await?;
        Ok(())
    }

    /// An external handle must already resolve to `did`.
    pub(crate) async fn check_external_handle(
        &self,
        handle: &Handle,
        did: &Did,
    ) -> Result<(), XrpcError> {
        let resolved = self.resolve_handle_remote(handle).await?;
        if resolved.as_ref() != Some(did) {
            return Err(XrpcError::invalid_request(format!(
                "{handle} does not point at {did}: add a DNS TXT record _atproto.{handle} \
                 with did={did}, or serve it at https://{handle}/.well-known/atproto-did"
            )));
        }
        Ok(())
    }

    /// The DID document of `did`, fetched fresh (not from the cache);
    /// `None` when the DID does not resolve.
    pub async fn resolve_did_document(
        &self,
        did: &Did,
    ) -> Result<Option<Arc<DidDocument>>, XrpcError> {
        match self.resolver().dids().resolve_fresh(did).await {
            Ok(doc) => Ok(Some(doc)),
            Err(e) => match IdentityError::from(e) {
                IdentityError::Unavailable(cause) => Err(resolution_unavailable(&cause)),
                _ => Ok(None),
            },
        }
    }

    /// Resolves a handle through DNS and HTTPS (not the local accounts),
    /// bypassing the cache; `None` when it does not resolve.
    pub async fn resolve_handle_remote(&self, handle: &Handle) -> Result<Option<Did>, XrpcError> {
        match self.resolver().handles().resolve_fresh(handle).await {
            Ok(did) => Ok(Some(did)),
            Err(e) if e.is_unavailable() => Err(resolution_unavailable(&e)),
            Err(_) => Ok(None),
        }
    }
}

/// 502 for a lookup that got no answer (DNS, a did:web host or the PLC
/// directory down): the caller may retry.
pub(crate) fn resolution_unavailable(e: &dyn std::fmt::Display) -> XrpcError {
    tracing::info!(error = %e, "identity resolution unavailable");
    XrpcError::new(
        http::StatusCode::BAD_GATEWAY,
        "UpstreamFailure",
        format!("identity resolution failed, try again later: {e}"),
    )
}
