//! Full identity resolution: a DID or handle to the DID, its document and
//! its *verified* handle, as `com.atproto.identity.resolveIdentity` answers.
//!
//! A handle is verified only bidirectionally (handle spec): the DID
//! document claims it (its first `at://` handle in `alsoKnownAs`) *and* it
//! resolves back to the same DID. Anyone can claim any handle in their
//! document, and anyone can point their handle at any DID; only both
//! together make the handle the account's. An identity whose claimed handle
//! does not resolve back has no handle (`handle.invalid` on the wire).
//!
//! Errors are the lexicon's (see [`IdentityError::lexicon_error`]).

use std::sync::Arc;

use aurora_core::syntax::{AtIdentifier, Did, Handle};

use super::did_document::DidDocument;
use super::did_resolver::{DidResolveError, DidResolver};
use super::handle_resolver::{HandleResolveError, HandleResolver};

/// A resolved identity.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedIdentity {
    /// The DID.
    pub did: Did,
    /// The handle, only when verified both ways; `None` is
    /// `handle.invalid` on the wire.
    pub handle: Option<Handle>,
    /// The DID document.
    pub did_doc: Arc<DidDocument>,
}

/// What failed when the resolver could not tell (see
/// [`IdentityError::Unavailable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnavailableCause {
    /// Handle resolution.
    #[error(transparent)]
    Handle(HandleResolveError),
    /// DID resolution.
    #[error(transparent)]
    Did(DidResolveError),
}

/// Why an identity did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The handle does not resolve to a DID (lexicon error `HandleNotFound`).
    #[error("handle not found: {0}")]
    HandleNotFound(#[source] HandleResolveError),
    /// There is no DID document: the DID does not exist, uses an
    /// unsupported method, or its document is malformed (lexicon error
    /// `DidNotFound`).
    #[error("DID not found: {0}")]
    DidNotFound(#[source] DidResolveError),
    /// The DID was deactivated, e.g. a tombstoned `did:plc` (lexicon error
    /// `DidDeactivated`).
    #[error("DID deactivated: {0}")]
    DidDeactivated(#[source] DidResolveError),
    /// A lookup failed without an answer (DNS, the PLC directory or a
    /// `did:web` host unreachable or failing): not a lexicon error; a
    /// later attempt may succeed.
    #[error("identity resolution unavailable: {0}")]
    Unavailable(#[source] UnavailableCause),
}

impl IdentityError {
    /// The lexicon error name: `HandleNotFound`, `DidNotFound` or
    /// `DidDeactivated`; `None` for [`Unavailable`](Self::Unavailable).
    pub fn lexicon_error(&self) -> Option<&'static str> {
        match self {
            Self::HandleNotFound(_) => Some("HandleNotFound"),
            Self::DidNotFound(_) => Some("DidNotFound"),
            Self::DidDeactivated(_) => Some("DidDeactivated"),
            Self::Unavailable(_) => None,
        }
    }
}

impl From<HandleResolveError> for IdentityError {
    fn from(e: HandleResolveError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable(UnavailableCause::Handle(e))
        } else {
            Self::HandleNotFound(e)
        }
    }
}

impl From<DidResolveError> for IdentityError {
    fn from(e: DidResolveError) -> Self {
        match e {
            DidResolveError::Deactivated { .. } => Self::DidDeactivated(e),
            DidResolveError::Unavailable { .. } => Self::Unavailable(UnavailableCause::Did(e)),
            DidResolveError::NotFound { .. }
            | DidResolveError::Unsupported { .. }
            | DidResolveError::Malformed { .. } => Self::DidNotFound(e),
        }
    }
}

/// Handle and DID resolution together (see the module docs).
///
/// Cheap to clone: clones share both resolvers' caches.
#[derive(Debug, Clone)]
pub struct IdentityResolver {
    handles: HandleResolver,
    dids: DidResolver,
}

impl IdentityResolver {
    /// An identity resolver from its two halves.
    pub fn new(handles: HandleResolver, dids: DidResolver) -> Self {
        Self { handles, dids }
    }

    /// The handle resolver.
    pub fn handles(&self) -> &HandleResolver {
        &self.handles
    }

    /// The DID resolver.
    pub fn dids(&self) -> &DidResolver {
        &self.dids
    }

    /// The DID `handle` resolves to (`com.atproto.identity.resolveHandle`:
    /// one way only, not checked against the DID document).
    pub async fn resolve_handle(&self, handle: &Handle) -> Result<Did, IdentityError> {
        Ok(self.handles.resolve(handle).await?)
    }

    /// The document of `did` (`com.atproto.identity.resolveDid`; its
    /// [`raw`](DidDocument::raw) JSON is the answer).
    pub async fn resolve_did(&self, did: &Did) -> Result<Arc<DidDocument>, IdentityError> {
        Ok(self.dids.resolve(did).await?)
    }

    /// The identity `identifier` names
    /// (`com.atproto.identity.resolveIdentity`): a handle is resolved to its
    /// DID first; then the DID's document, and the handle it claims,
    /// checked both ways.
    pub async fn resolve_identity(
        &self,
        identifier: &AtIdentifier,
    ) -> Result<ResolvedIdentity, IdentityError> {
        let (did, known) = match identifier {
            AtIdentifier::Did(did) => (did.clone(), None),
            AtIdentifier::Handle(handle) => {
                (self.handles.resolve(handle).await?, Some(handle.clone()))
            }
        };
        let did_doc = self.dids.resolve(&did).await?;
        let handle = match did_doc.handle() {
            // Already resolved to this DID above.
            Some(claimed) if known.as_ref() == Some(&claimed) => Some(claimed),
            Some(claimed) => self
                .handle_points_to(&claimed, &did)
                .await
                .then_some(claimed),
            None => None,
        };
        Ok(ResolvedIdentity {
            did,
            handle,
            did_doc,
        })
    }

    /// The handle `doc` claims, if it resolves back to the document's DID.
    pub async fn verified_handle(&self, doc: &DidDocument) -> Option<Handle> {
        let claimed = doc.handle()?;
        self.handle_points_to(&claimed, &doc.id)
            .await
            .then_some(claimed)
    }

    /// Whether `handle` resolves to `did`; a failed resolution is a no.
    async fn handle_points_to(&self, handle: &Handle, did: &Did) -> bool {
        self.handles
            .resolve(handle)
            .await
            .is_ok_and(|resolved| resolved == *did)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolvers_are_shareable() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<IdentityResolver>();
        shareable::<HandleResolver>();
        shareable::<DidResolver>();
    }

    #[test]
    fn lexicon_errors() {
        let handle = Handle::parse("alice.example.com").unwrap();
        let did = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
        let not_found = IdentityError::from(HandleResolveError::NotFound {
            handle: handle.clone(),
            dns: String::new(),
            https: String::new(),
        });
        assert_eq!(not_found.lexicon_error(), Some("HandleNotFound"));
        let conflicting = IdentityError::from(HandleResolveError::Conflicting {
            handle: handle.clone(),
            dids: vec![],
        });
        assert_eq!(conflicting.lexicon_error(), Some("HandleNotFound"));
        let dns_down = IdentityError::from(HandleResolveError::Unavailable {
            handle,
            dns: "timed out".to_owned(),
            https: String::new(),
        });
        assert_eq!(dns_down.lexicon_error(), None);
        assert!(matches!(
            dns_down,
            IdentityError::Unavailable(UnavailableCause::Handle(_))
        ));

        let cases = [
            (
                DidResolveError::NotFound { did: did.clone() },
                Some("DidNotFound"),
            ),
            (
                DidResolveError::Unsupported {
                    did: did.clone(),
                    reason: String::new(),
                },
                Some("DidNotFound"),
            ),
            (
                DidResolveError::Malformed {
                    did: did.clone(),
                    reason: String::new(),
                },
                Some("DidNotFound"),
            ),
            (
                DidResolveError::Deactivated { did: did.clone() },
                Some("DidDeactivated"),
            ),
            (
                DidResolveError::Unavailable {
                    did,
                    reason: String::new(),
                },
                None,
            ),
        ];
        for (e, name) in cases {
            assert_eq!(
                IdentityError::from(e.clone()).lexicon_error(),
                name,
                "{e:?}"
            );
        }
    }
}
