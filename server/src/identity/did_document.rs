//! A resolved DID document and the ATProto facts in it.
//!
//! The DID spec (<https://atproto.com/specs/did>) says where an account's
//! facts are, whatever the DID method:
//!
//! - the **handle**: the first `alsoKnownAs` entry that is `at://` followed
//!   by a syntactically valid handle and nothing else ([`DidDocument::handle`]);
//!   it is only *claimed* until it resolves back to the DID;
//! - the **signing key**: the first valid key among the verification
//!   methods whose id is `#atproto` (relative, or after the document's own
//!   DID) and whose controller is the DID: type `Multikey` with a multikey
//!   `publicKeyMultibase`, or the legacy `EcdsaSecp256k1VerificationKey2019`
//!   / `EcdsaSecp256r1VerificationKey2019` with the bare point
//!   ([`DidDocument::signing_key`]);
//! - the **PDS**: the first service whose id is `#atproto_pds` and type
//!   `AtprotoPersonalDataServer`; its `serviceEndpoint` must be an `http`
//!   or `https` URL of a host (and port), no user, path, query or fragment
//!   ([`DidDocument::pds_endpoint`]).
//!
//! Parsing is lenient where documents vary (unknown fields, verification
//! methods or services of other shapes are kept in the raw JSON and
//! skipped), strict where ATProto relies on it: the document is a JSON
//! object whose `id` is a valid DID, and `alsoKnownAs`, `verificationMethod`
//! and `service`, when present, are arrays.

use aurora_core::crypto::{Curve, PublicKey};
use aurora_core::identity::plc::{ATPROTO_VERIFICATION_METHOD, PDS_SERVICE_ID, PDS_SERVICE_TYPE};
use aurora_core::syntax::{Did, Handle};
use serde_json::Value;
use url::Url;

/// The verification method type of a current atproto signing key.
pub const MULTIKEY_TYPE: &str = "Multikey";
/// The legacy verification method type of a k256 signing key.
pub const LEGACY_K256_TYPE: &str = "EcdsaSecp256k1VerificationKey2019";
/// The legacy verification method type of a p256 signing key.
pub const LEGACY_P256_TYPE: &str = "EcdsaSecp256r1VerificationKey2019";

/// Why JSON is not a DID document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidDocumentError {
    /// Not a JSON object.
    #[error("a DID document must be a JSON object")]
    NotAnObject,
    /// No `id`, or one that is not a valid DID.
    #[error("the document's id is missing or not a valid DID")]
    BadId,
    /// A field that must be an array is not one.
    #[error("the document's {0} is not an array")]
    NotAnArray(&'static str),
}

/// One entry of `verificationMethod` (entries without a string `id` and
/// `type` are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationMethod {
    /// `id`: `#fragment` or `<did>#fragment`.
    pub id: String,
    /// `type`, e.g. `Multikey`.
    pub method_type: String,
    /// `controller`, when it is a string.
    pub controller: Option<String>,
    /// `publicKeyMultibase`, when it is a string.
    pub public_key_multibase: Option<String>,
}

/// One entry of `service` (entries without a string `id` and `type` are
/// skipped).
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// `id`: `#fragment` or `<did>#fragment`.
    pub id: String,
    /// `type`, e.g. `AtprotoPersonalDataServer`.
    pub service_type: String,
    /// `serviceEndpoint` as given: usually a URL string, but DID documents
    /// allow maps and arrays.
    pub endpoint: Value,
}

/// A DID document: the fields ATProto reads, typed, and the whole JSON as
/// resolved (what `com.atproto.identity.resolveDid` returns).
#[derive(Debug, Clone, PartialEq)]
pub struct DidDocument {
    /// `id`: the DID the document describes.
    pub id: Did,
    /// `alsoKnownAs`: URIs of the subject (string entries only).
    pub also_known_as: Vec<String>,
    /// `verificationMethod`.
    pub verification_methods: Vec<VerificationMethod>,
    /// `service`.
    pub services: Vec<Service>,
    raw: Value,
}

impl DidDocument {
    /// Reads a DID document (see the module docs for what is checked).
    pub fn from_json(raw: Value) -> Result<Self, DidDocumentError> {
        let object = raw.as_object().ok_or(DidDocumentError::NotAnObject)?;
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| Did::parse(id).ok())
            .ok_or(DidDocumentError::BadId)?;
        let array = |field: &'static str| -> Result<&[Value], DidDocumentError> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(&[]),
                Some(Value::Array(items)) => Ok(items),
                Some(_) => Err(DidDocumentError::NotAnArray(field)),
            }
        };
        let also_known_as = array("alsoKnownAs")?
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let string =
            |item: &Value, key: &str| item.get(key).and_then(Value::as_str).map(str::to_owned);
        let verification_methods = array("verificationMethod")?
            .iter()
            .filter_map(|item| {
                Some(VerificationMethod {
                    id: string(item, "id")?,
                    method_type: string(item, "type")?,
                    controller: string(item, "controller"),
                    public_key_multibase: string(item, "publicKeyMultibase"),
                })
            })
            .collect();
        let services = array("service")?
            .iter()
            .filter_map(|item| {
                Some(Service {
                    id: string(item, "id")?,
                    service_type: string(item, "type")?,
                    endpoint: item.get("serviceEndpoint").cloned().unwrap_or(Value::Null),
                })
            })
            .collect();
        Ok(Self {
            id,
            also_known_as,
            verification_methods,
            services,
            raw,
        })
    }

    /// The document as resolved.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// The document as resolved, taken.
    pub fn into_raw(self) -> Value {
        self.raw
    }

    /// The handle the document claims: the first `alsoKnownAs` entry that
    /// is `at://` and a valid handle. Claimed, not verified.
    pub fn handle(&self) -> Option<Handle> {
        self.also_known_as.iter().find_map(|aka| {
            let rest = aka.strip_prefix("at://")?;
            Handle::parse(rest).ok()
        })
    }

    /// The verification methods whose id has `fragment` (relative, or after
    /// this document's DID), in document order.
    pub fn verification_methods_with_id<'a>(
        &'a self,
        fragment: &'a str,
    ) -> impl Iterator<Item = &'a VerificationMethod> + 'a {
        self.verification_methods
            .iter()
            .filter(move |vm| self.is_own_fragment(&vm.id, fragment))
    }

    /// The services whose id has `fragment` (relative, or after this
    /// document's DID), in document order.
    pub fn services_with_id<'a>(
        &'a self,
        fragment: &'a str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .iter()
            .filter(move |s| self.is_own_fragment(&s.id, fragment))
    }

    /// The atproto signing key: the first valid `#atproto` key (see the
    /// module docs).
    pub fn signing_key(&self) -> Option<PublicKey> {
        self.verification_methods_with_id(ATPROTO_VERIFICATION_METHOD)
            .filter(|vm| vm.controller.as_deref() == Some(self.id.as_str()))
            .find_map(|vm| {
                let multibase = vm.public_key_multibase.as_deref()?;
                match vm.method_type.as_str() {
                    MULTIKEY_TYPE => PublicKey::from_multikey(multibase).ok(),
                    LEGACY_K256_TYPE => {
                        PublicKey::from_legacy_multibase(Curve::K256, multibase).ok()
                    }
                    LEGACY_P256_TYPE => {
                        PublicKey::from_legacy_multibase(Curve::P256, multibase).ok()
                    }
                    _ => None,
                }
            })
    }

    /// The account's PDS: the endpoint of the first `#atproto_pds` service
    /// of type `AtprotoPersonalDataServer`, when it is a valid server URL
    /// (see the module docs).
    pub fn pds_endpoint(&self) -> Option<Url> {
        let service = self
            .services_with_id(PDS_SERVICE_ID)
            .find(|s| s.service_type == PDS_SERVICE_TYPE)?;
        server_url(service.endpoint.as_str()?)
    }

    /// Whether `id` is `#fragment` or `<this DID>#fragment`.
    fn is_own_fragment(&self, id: &str, fragment: &str) -> bool {
        let Some((prefix, frag)) = id.split_once('#') else {
            return false;
        };
        frag == fragment && (prefix.is_empty() || prefix == self.id.as_str())
    }
}

/// `endpoint` as a server URL: `http` or `https`, a host, an optional port,
/// nothing else (a lone `/` path is allowed).
pub(crate) fn server_url(endpoint: &str) -> Option<Url> {
    let url = Url::parse(endpoint).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    plain.then_some(url)
}

#[cfg(test)]
mod tests {
    use aurora_core::crypto::SigningKey;
    use serde_json::json;

    use super::*;

    const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

    fn doc(value: Value) -> DidDocument {
        DidDocument::from_json(value).unwrap()
    }

    #[test]
    fn reads_the_atproto_facts() {
        let key = SigningKey::generate(Curve::P256).public_key();
        let raw = json!({
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": DID,
            "alsoKnownAs": ["https://example.com", "at://not a handle", "at://Alice.Example.com", "at://bob.example.com"],
            "verificationMethod": [
                { "id": "did:plc:other#atproto", "type": "Multikey", "controller": DID, "publicKeyMultibase": "zQ3shnope" },
                { "id": format!("{DID}#atproto"), "type": "Multikey", "controller": DID, "publicKeyMultibase": "zbroken" },
                { "id": format!("{DID}#atproto"), "type": "Multikey", "controller": DID, "publicKeyMultibase": key.to_multikey() },
                { "no": "id" },
            ],
            "service": [
                { "id": "#atproto_pds", "type": "SomethingElse", "serviceEndpoint": "https://wrong.example.com" },
                { "id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example.com" },
            ],
            "extra": true,
        });
        let d = doc(raw.clone());
        assert_eq!(d.id.as_str(), DID);
        assert_eq!(d.handle().unwrap().as_str(), "alice.example.com");
        assert_eq!(
            d.signing_key(),
            Some(key),
            "the first valid own #atproto key"
        );
        assert_eq!(
            d.pds_endpoint().unwrap().as_str(),
            "https://pds.example.com/"
        );
        assert_eq!(
            d.verification_methods.len(),
            3,
            "entries without an id are skipped"
        );
        assert_eq!(d.raw(), &raw);
        assert_eq!(d.into_raw(), raw);
    }

    #[test]
    fn legacy_keys_and_relative_ids() {
        let key = SigningKey::generate(Curve::K256).public_key();
        let legacy = multibase::encode(multibase::Base::Base58Btc, key.to_uncompressed_bytes());
        let d = doc(json!({
            "id": "did:web:example.com",
            "verificationMethod": [
                { "id": "#atproto", "type": LEGACY_K256_TYPE, "controller": "did:web:example.com", "publicKeyMultibase": legacy },
            ],
        }));
        assert_eq!(d.signing_key(), Some(key));
        assert_eq!(d.handle(), None);
        assert_eq!(d.pds_endpoint(), None);

        // A key controlled by another DID is not the account's.
        let d = doc(json!({
            "id": "did:web:example.com",
            "verificationMethod": [
                { "id": "#atproto", "type": "Multikey", "controller": "did:web:other.com", "publicKeyMultibase": key.to_multikey() },
            ],
        }));
        assert_eq!(d.signing_key(), None);
    }

    #[test]
    fn pds_endpoints_must_be_plain_server_urls() {
        for (endpoint, ok) in [
            ("https://pds.example.com", true),
            ("http://localhost:2583", true),
            ("https://pds.example.com/", true),
            ("https://pds.example.com/xrpc", false),
            ("https://user@pds.example.com", false),
            ("https://pds.example.com?x=1", false),
            ("ftp://pds.example.com", false),
            ("pds.example.com", false),
        ] {
            let d = doc(json!({
                "id": DID,
                "service": [{ "id": format!("{DID}#atproto_pds"), "type": PDS_SERVICE_TYPE, "serviceEndpoint": endpoint }],
            }));
            assert_eq!(d.pds_endpoint().is_some(), ok, "{endpoint}");
        }
        // The first matching service counts, even when its endpoint is bad.
        let d = doc(json!({
            "id": DID,
            "service": [
                { "id": "#atproto_pds", "type": PDS_SERVICE_TYPE, "serviceEndpoint": { "uri": "https://a.example.com" } },
                { "id": "#atproto_pds", "type": PDS_SERVICE_TYPE, "serviceEndpoint": "https://b.example.com" },
            ],
        }));
        assert_eq!(d.pds_endpoint(), None);
    }

    #[test]
    fn rejects_what_is_not_a_did_document() {
        assert_eq!(
            DidDocument::from_json(json!([])),
            Err(DidDocumentError::NotAnObject)
        );
        assert_eq!(
            DidDocument::from_json(json!({ "id": "nope" })),
            Err(DidDocumentError::BadId)
        );
        assert_eq!(
            DidDocument::from_json(json!({ "alsoKnownAs": [] })),
            Err(DidDocumentError::BadId)
        );
        assert_eq!(
            DidDocument::from_json(json!({ "id": DID, "service": {} })),
            Err(DidDocumentError::NotAnArray("service"))
        );
        let d = doc(json!({ "id": DID }));
        assert!(d.also_known_as.is_empty() && d.services.is_empty());
    }
}
