//! The three wire forms of a `did:plc` operation, their JSON and DAG-CBOR
//! encodings, signing, and the CID and DID of a signed operation.
//!
//! The bytes that are signed and hashed are DAG-CBOR, so an operation is
//! encoded through an [`Ipld`] map: DAG-CBOR's canonical key order follows
//! whatever order the fields were written in. `prev` is a CID *string*
//! inside the map, not a DAG-CBOR link, and `sig` is the base64url string,
//! as the spec requires.
//!
//! Decoding is strict: exactly the fields of the operation's type, each with
//! its type; `prev` the canonical base32 string of a CIDv1 dag-cbor
//! sha2-256 CID; `sig` unpadded base64url of 64 bytes with zero trailing
//! bits. Because only canonical strings are accepted, re-encoding a decoded
//! operation gives the bytes it was signed and hashed as.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cid::{Cid, Version};
use multibase::Base;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    ATPROTO_VERIFICATION_METHOD, DID_PLC_ID_LEN, DID_PLC_PREFIX, PDS_SERVICE_ID, PDS_SERVICE_TYPE,
    PlcError, TYPE_LEGACY_CREATE, TYPE_OPERATION, TYPE_TOMBSTONE, truncate,
};
use crate::crypto::{CryptoError, PublicKey, SIGNATURE_LEN, SigningKey};
use crate::data::{self, DAG_CBOR, Ipld, SHA2_256, cid_for};
use crate::syntax::{Did, Handle};

/// A service entry of a `plc_operation`: `{"type": ..., "endpoint": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Service {
    /// The service type, e.g. `AtprotoPersonalDataServer`.
    #[serde(rename = "type")]
    pub service_type: String,
    /// The service URL, e.g. `https://pds.example.com`.
    pub endpoint: String,
}

impl Service {
    /// The `atproto_pds` entry of an account hosted at `endpoint`.
    pub fn atproto_pds(endpoint: impl Into<String>) -> Self {
        Self {
            service_type: PDS_SERVICE_TYPE.to_owned(),
            endpoint: endpoint.into(),
        }
    }
}

/// The current create or update operation (`type` `plc_operation`): the
/// whole state of the DID after it.
///
/// Keys are kept as the `did:key` strings the operation carries, since
/// those strings are what is signed and hashed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlcOperation {
    /// The rotation keys (`did:key`), highest authority first.
    pub rotation_keys: Vec<String>,
    /// Verification methods by name (no `#`): `did:key` strings. A PDS
    /// account has its signing key under `atproto`.
    pub verification_methods: BTreeMap<String, String>,
    /// Other names of the DID, highest priority first: `at://<handle>`.
    pub also_known_as: Vec<String>,
    /// Services by id (no `#`). A PDS account has `atproto_pds`.
    pub services: BTreeMap<String, Service>,
    /// The operation this one follows; `None` (encoded `null`) for a genesis.
    pub prev: Option<Cid>,
}

impl PlcOperation {
    /// The operation a PDS writes for an account: `rotation_keys`, the
    /// account's atproto `signing_key`, its handle as `at://<handle>`, and
    /// its PDS at `pds_endpoint` (e.g. `https://pds.example.com`), after
    /// `prev` (`None` for a genesis).
    pub fn atproto(
        rotation_keys: &[PublicKey],
        signing_key: &PublicKey,
        handle: &Handle,
        pds_endpoint: &str,
        prev: Option<Cid>,
    ) -> Self {
        Self {
            rotation_keys: rotation_keys.iter().map(PublicKey::to_did_key).collect(),
            verification_methods: BTreeMap::from([(
                ATPROTO_VERIFICATION_METHOD.to_owned(),
                signing_key.to_did_key(),
            )]),
            also_known_as: vec![format!("at://{handle}")],
            services: BTreeMap::from([(
                PDS_SERVICE_ID.to_owned(),
                Service::atproto_pds(pds_endpoint),
            )]),
            prev,
        }
    }
}

/// A tombstone (`type` `plc_tombstone`): deactivates the DID for good,
/// unless a recovery nullifies it within the recovery window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tombstone {
    /// The operation this one follows (never null).
    pub prev: Cid,
}

/// The deprecated genesis form (`type` `create`), still found at the start
/// of old logs. Its `prev` is always null.
///
/// It means the same as a `plc_operation` with rotation keys
/// `[recoveryKey, signingKey]`, verification method `atproto` =
/// `signingKey`, `alsoKnownAs` `["at://<handle>"]` and an `atproto_pds`
/// service at `service`; but its DID is the hash of this form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LegacyCreate {
    /// The atproto signing key, also the lower-authority rotation key.
    pub signing_key: String,
    /// The higher-authority rotation key.
    pub recovery_key: String,
    /// The bare handle (no `at://`).
    pub handle: String,
    /// The PDS URL.
    pub service: String,
}

/// An operation without its signature: what the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `plc_operation`: create or update.
    Plc(PlcOperation),
    /// `plc_tombstone`: deactivate.
    Tombstone(Tombstone),
    /// `create`: the legacy genesis form.
    LegacyCreate(LegacyCreate),
}

impl Operation {
    /// The wire `type`: `plc_operation`, `plc_tombstone` or `create`.
    pub fn op_type(&self) -> &'static str {
        match self {
            Self::Plc(_) => TYPE_OPERATION,
            Self::Tombstone(_) => TYPE_TOMBSTONE,
            Self::LegacyCreate(_) => TYPE_LEGACY_CREATE,
        }
    }

    /// The operation this one follows, `None` for a genesis operation.
    pub fn prev(&self) -> Option<Cid> {
        match self {
            Self::Plc(op) => op.prev,
            Self::Tombstone(op) => Some(op.prev),
            Self::LegacyCreate(_) => None,
        }
    }

    /// Whether this is a genesis operation (`prev` null).
    pub fn is_genesis(&self) -> bool {
        self.prev().is_none()
    }

    /// The rotation keys this operation puts in force, highest authority
    /// first: `rotationKeys`, `[recoveryKey, signingKey]` for the legacy
    /// form, none for a tombstone.
    pub fn rotation_keys(&self) -> Result<Vec<PublicKey>, PlcError> {
        match self {
            Self::Plc(op) => op
                .rotation_keys
                .iter()
                .enumerate()
                .map(|(i, key)| parse_did_key(|| format!("rotationKeys[{i}]"), key))
                .collect(),
            Self::Tombstone(_) => Ok(Vec::new()),
            Self::LegacyCreate(op) => Ok(vec![
                parse_did_key(|| "recoveryKey".to_owned(), &op.recovery_key)?,
                parse_did_key(|| "signingKey".to_owned(), &op.signing_key)?,
            ]),
        }
    }

    /// The data-model map of the unsigned operation.
    pub fn to_ipld(&self) -> Ipld {
        Ipld::Map(self.fields())
    }

    /// The DAG-CBOR encoding of the unsigned operation: the bytes the
    /// signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        encode(self.fields())
    }

    /// Signs the operation with a rotation key (see [`sign_operation`]).
    pub fn sign(self, key: &SigningKey) -> SignedOperation {
        sign_operation(self, key)
    }

    /// Decodes an unsigned operation from its data-model map, strictly (a
    /// `sig` field is rejected).
    pub fn from_ipld(value: Ipld) -> Result<Self, PlcError> {
        parse(value, false).map(|(op, _)| op)
    }

    /// Decodes an unsigned operation from JSON, strictly.
    pub fn from_json(json: &str) -> Result<Self, PlcError> {
        Self::from_ipld(strict_json(json)?)
    }

    /// The fields of the unsigned operation.
    fn fields(&self) -> BTreeMap<String, Ipld> {
        let string = |s: &str| Ipld::String(s.to_owned());
        let mut map = BTreeMap::new();
        let mut put = |k: &str, v: Ipld| {
            map.insert(k.to_owned(), v);
        };
        put("type", string(self.op_type()));
        match self {
            Self::Plc(op) => {
                put(
                    "rotationKeys",
                    Ipld::List(op.rotation_keys.iter().map(|k| string(k)).collect()),
                );
                put(
                    "verificationMethods",
                    Ipld::Map(
                        op.verification_methods
                            .iter()
                            .map(|(k, v)| (k.clone(), string(v)))
                            .collect(),
                    ),
                );
                put(
                    "alsoKnownAs",
                    Ipld::List(op.also_known_as.iter().map(|a| string(a)).collect()),
                );
                put(
                    "services",
                    Ipld::Map(
                        op.services
                            .iter()
                            .map(|(id, s)| {
                                let entry = BTreeMap::from([
                                    ("type".to_owned(), string(&s.service_type)),
                                    ("endpoint".to_owned(), string(&s.endpoint)),
                                ]);
                                (id.clone(), Ipld::Map(entry))
                            })
                            .collect(),
                    ),
                );
                put(
                    "prev",
                    op.prev.map_or(Ipld::Null, |c| string(&c.to_string())),
                );
            }
            Self::Tombstone(op) => put("prev", string(&op.prev.to_string())),
            Self::LegacyCreate(op) => {
                put("signingKey", string(&op.signing_key));
                put("recoveryKey", string(&op.recovery_key));
                put("handle", string(&op.handle));
                put("service", string(&op.service));
                put("prev", Ipld::Null);
            }
        }
        map
    }
}

/// A signed operation, as submitted to and served by the directory.
///
/// Holding one says nothing about its signature: see [`verify_signature`]
/// and [`PlcLog::apply`](super::PlcLog::apply).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedOperation {
    /// The operation the signature covers.
    pub operation: Operation,
    /// The signature (`r || s`, low-S) over
    /// [`Operation::signing_bytes`]; `sig` on the wire, as base64url.
    pub sig: [u8; SIGNATURE_LEN],
}

/// Signs `unsigned` with `key`, which should be one of the rotation keys
/// in force (the operation's own for a genesis, its `prev`'s otherwise):
/// ECDSA over the SHA-256 of the DAG-CBOR encoding without `sig`, low-S.
pub fn sign_operation(unsigned: Operation, key: &SigningKey) -> SignedOperation {
    let sig = key.sign(&unsigned.signing_bytes());
    SignedOperation {
        operation: unsigned,
        sig,
    }
}

/// The index of the first of `rotation_keys` whose signature `op` carries.
///
/// The index is the signer's authority: lower is higher. Fails when no key
/// verifies (including when `rotation_keys` is empty), giving the last
/// key's reason (a high-S or malformed signature fails for every key).
pub fn verify_signature(
    op: &SignedOperation,
    rotation_keys: &[PublicKey],
) -> Result<usize, PlcError> {
    let bytes = op.operation.signing_bytes();
    let mut reason = CryptoError::InvalidSignature;
    for (index, key) in rotation_keys.iter().enumerate() {
        match key.verify(&bytes, &op.sig) {
            Ok(()) => return Ok(index),
            Err(e) => reason = e,
        }
    }
    Err(PlcError::InvalidSignature {
        keys: rotation_keys.len(),
        source: reason,
    })
}

impl SignedOperation {
    /// The `sig` string: unpadded base64url of the 64 signature bytes.
    pub fn sig_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sig)
    }

    /// The data-model map of the signed operation.
    pub fn to_ipld(&self) -> Ipld {
        Ipld::Map(self.fields())
    }

    /// The DAG-CBOR encoding of the signed operation: what its CID and, for
    /// a genesis, its DID hash.
    pub fn to_cbor(&self) -> Vec<u8> {
        encode(self.fields())
    }

    /// The operation's CID (CIDv1, dag-cbor, sha2-256), which later
    /// operations name as `prev`.
    pub fn cid(&self) -> Cid {
        cid_for(DAG_CBOR, &self.to_cbor())
    }

    /// The DID a genesis operation creates: `did:plc:` and the first 24
    /// characters of the lowercase, unpadded base32 SHA-256 of the signed
    /// operation's DAG-CBOR. Fails for an operation with a `prev`.
    pub fn did(&self) -> Result<Did, PlcError> {
        if !self.operation.is_genesis() {
            return Err(PlcError::NotGenesis);
        }
        did_for_genesis_bytes(&self.to_cbor())
    }

    /// The JSON form, fields in the spec's order.
    pub fn to_json(&self) -> String {
        // Serialising strings, lists and maps of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a signed operation from its data-model map, strictly.
    pub fn from_ipld(value: Ipld) -> Result<Self, PlcError> {
        let (operation, sig) = parse(value, true)?;
        let sig = sig.ok_or(PlcError::MissingField {
            op_type: operation.op_type(),
            field: "sig",
        })?;
        Ok(Self { operation, sig })
    }

    /// Decodes a signed operation from untrusted DAG-CBOR: canonical
    /// DAG-CBOR, then [`from_ipld`](Self::from_ipld).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, PlcError> {
        Self::from_ipld(data::decode_strict(bytes).map_err(PlcError::Cbor)?)
    }

    /// Decodes a signed operation from JSON, strictly (duplicate keys and
    /// unknown fields are rejected).
    pub fn from_json(json: &str) -> Result<Self, PlcError> {
        Self::from_ipld(strict_json(json)?)
    }

    fn fields(&self) -> BTreeMap<String, Ipld> {
        let mut map = self.operation.fields();
        map.insert("sig".to_owned(), Ipld::String(self.sig_base64url()));
        map
    }
}

/// The DID named by the DAG-CBOR bytes of a signed genesis operation.
pub(super) fn did_for_genesis_bytes(bytes: &[u8]) -> Result<Did, PlcError> {
    let base32 = Base::Base32Lower.encode(Sha256::digest(bytes));
    let id: String = base32.chars().take(DID_PLC_ID_LEN).collect();
    Did::parse(format!("{DID_PLC_PREFIX}{id}")).map_err(PlcError::Did)
}

/// Encodes an operation map. Encoding strings, lists, maps and null cannot
/// fail.
fn encode(map: BTreeMap<String, Ipld>) -> Vec<u8> {
    data::encode(&Ipld::Map(map)).unwrap_or_default()
}

/// Parses a `did:key` that must be `k256` or `p256`; `field` names it.
pub(super) fn parse_did_key(
    field: impl FnOnce() -> String,
    key: &str,
) -> Result<PublicKey, PlcError> {
    PublicKey::from_did_key(key).map_err(|source| PlcError::InvalidDidKey {
        field: field(),
        source,
    })
}

/// Parses `prev`: the canonical base32 string of a CIDv1 dag-cbor sha2-256
/// CID, nothing else.
pub(super) fn parse_cid(s: &str) -> Option<Cid> {
    let cid = Cid::try_from(s).ok()?;
    let canonical = cid.version() == Version::V1
        && cid.codec() == DAG_CBOR
        && cid.hash().code() == SHA2_256
        && cid.hash().digest().len() == 32
        && cid.to_string() == s;
    canonical.then_some(cid)
}

/// Decodes `sig`: unpadded base64url (no whitespace, zero trailing bits) of
/// exactly 64 bytes.
fn parse_sig(s: &str) -> Result<[u8; SIGNATURE_LEN], PlcError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| PlcError::SignatureEncoding(e.to_string()))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| PlcError::SignatureLength(bytes.len()))
}

/// The fields of one operation map, taken out one by one.
struct Fields {
    op_type: &'static str,
    map: BTreeMap<String, Ipld>,
}

impl Fields {
    fn take(&mut self, field: &'static str) -> Result<Ipld, PlcError> {
        self.map.remove(field).ok_or(PlcError::MissingField {
            op_type: self.op_type,
            field,
        })
    }

    fn string(&mut self, field: &'static str) -> Result<String, PlcError> {
        match self.take(field)? {
            Ipld::String(s) => Ok(s),
            _ => Err(wrong(field.to_owned(), "a string")),
        }
    }

    fn strings(&mut self, field: &'static str) -> Result<Vec<String>, PlcError> {
        let Ipld::List(items) = self.take(field)? else {
            return Err(wrong(field.to_owned(), "an array of strings"));
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Ipld::String(s) => Ok(s),
                _ => Err(wrong(format!("{field}[{i}]"), "a string")),
            })
            .collect()
    }

    fn object(&mut self, field: &'static str) -> Result<BTreeMap<String, Ipld>, PlcError> {
        match self.take(field)? {
            Ipld::Map(map) => Ok(map),
            _ => Err(wrong(field.to_owned(), "an object")),
        }
    }

    /// `prev` of a `plc_operation`: a CID string, or null.
    fn nullable_prev(&mut self) -> Result<Option<Cid>, PlcError> {
        match self.take("prev")? {
            Ipld::Null => Ok(None),
            Ipld::String(s) => prev_cid(&s).map(Some),
            _ => Err(wrong("prev".to_owned(), "a CID string or null")),
        }
    }

    /// `prev` of a tombstone: a CID string.
    fn prev(&mut self) -> Result<Cid, PlcError> {
        match self.take("prev")? {
            Ipld::String(s) => prev_cid(&s),
            _ => Err(wrong("prev".to_owned(), "a CID string")),
        }
    }

    /// Fails on any field not taken.
    fn finish(self) -> Result<(), PlcError> {
        match self.map.into_keys().next() {
            Some(field) => Err(PlcError::UnexpectedField {
                op_type: self.op_type,
                field: truncate(&field),
            }),
            None => Ok(()),
        }
    }
}

fn prev_cid(s: &str) -> Result<Cid, PlcError> {
    parse_cid(s).ok_or_else(|| PlcError::BadPrev(truncate(s)))
}

fn wrong(field: String, expected: &'static str) -> PlcError {
    PlcError::WrongType { field, expected }
}

/// Decodes an operation map; with `signed`, `sig` is required, without,
/// it is an unexpected field.
fn parse(value: Ipld, signed: bool) -> Result<(Operation, Option<[u8; SIGNATURE_LEN]>), PlcError> {
    let Ipld::Map(mut map) = value else {
        return Err(PlcError::NotAnObject);
    };
    let op_type = match map.remove("type") {
        Some(Ipld::String(t)) => match t.as_str() {
            TYPE_OPERATION => TYPE_OPERATION,
            TYPE_TOMBSTONE => TYPE_TOMBSTONE,
            TYPE_LEGACY_CREATE => TYPE_LEGACY_CREATE,
            _ => return Err(PlcError::UnknownType(truncate(&t))),
        },
        _ => return Err(PlcError::MissingType),
    };
    let mut fields = Fields { op_type, map };
    let sig = if signed {
        Some(parse_sig(&fields.string("sig")?)?)
    } else {
        None
    };
    let operation = match op_type {
        TYPE_OPERATION => Operation::Plc(PlcOperation {
            rotation_keys: fields.strings("rotationKeys")?,
            verification_methods: string_map(fields.object("verificationMethods")?)?,
            also_known_as: fields.strings("alsoKnownAs")?,
            services: services(fields.object("services")?)?,
            prev: fields.nullable_prev()?,
        }),
        TYPE_TOMBSTONE => Operation::Tombstone(Tombstone {
            prev: fields.prev()?,
        }),
        _ => {
            let op = LegacyCreate {
                signing_key: fields.string("signingKey")?,
                recovery_key: fields.string("recoveryKey")?,
                handle: fields.string("handle")?,
                service: fields.string("service")?,
            };
            if fields.take("prev")? != Ipld::Null {
                return Err(wrong("prev".to_owned(), "null in a create operation"));
            }
            Operation::LegacyCreate(op)
        }
    };
    fields.finish()?;
    Ok((operation, sig))
}

/// `verificationMethods`: a map of strings.
fn string_map(map: BTreeMap<String, Ipld>) -> Result<BTreeMap<String, String>, PlcError> {
    map.into_iter()
        .map(|(id, value)| match value {
            Ipld::String(s) => Ok((id, s)),
            _ => Err(wrong(
                format!("verificationMethods.{}", truncate(&id)),
                "a string",
            )),
        })
        .collect()
}

/// `services`: a map of `{type, endpoint}` objects with exactly those
/// string fields.
fn services(map: BTreeMap<String, Ipld>) -> Result<BTreeMap<String, Service>, PlcError> {
    map.into_iter()
        .map(|(id, value)| {
            let field = format!("services.{}", truncate(&id));
            let Ipld::Map(mut entry) = value else {
                return Err(wrong(
                    field,
                    "an object with string fields type and endpoint",
                ));
            };
            let (Some(Ipld::String(service_type)), Some(Ipld::String(endpoint))) =
                (entry.remove("type"), entry.remove("endpoint"))
            else {
                return Err(wrong(
                    field,
                    "an object with string fields type and endpoint",
                ));
            };
            if !entry.is_empty() {
                return Err(wrong(
                    field,
                    "an object with only the fields type and endpoint",
                ));
            }
            Ok((
                id,
                Service {
                    service_type,
                    endpoint,
                },
            ))
        })
        .collect()
}

/// Serialises an operation as JSON-style fields in the spec's order, with
/// `sig` last when given.
fn serialize_operation<S: Serializer>(
    op: &Operation,
    sig: Option<&str>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("type", op.op_type())?;
    match op {
        Operation::Plc(op) => {
            map.serialize_entry("rotationKeys", &op.rotation_keys)?;
            map.serialize_entry("verificationMethods", &op.verification_methods)?;
            map.serialize_entry("alsoKnownAs", &op.also_known_as)?;
            map.serialize_entry("services", &op.services)?;
            map.serialize_entry("prev", &op.prev.map(|c| c.to_string()))?;
        }
        Operation::Tombstone(op) => map.serialize_entry("prev", &op.prev.to_string())?,
        Operation::LegacyCreate(op) => {
            map.serialize_entry("signingKey", &op.signing_key)?;
            map.serialize_entry("recoveryKey", &op.recovery_key)?;
            map.serialize_entry("handle", &op.handle)?;
            map.serialize_entry("service", &op.service)?;
            map.serialize_entry("prev", &())?;
        }
    }
    if let Some(sig) = sig {
        map.serialize_entry("sig", sig)?;
    }
    map.end()
}

impl Serialize for Operation {
    /// The unsigned JSON form.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_operation(self, None, serializer)
    }
}

impl Serialize for SignedOperation {
    /// The signed JSON form, as submitted to the directory.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_operation(&self.operation, Some(&self.sig_base64url()), serializer)
    }
}

impl<'de> Deserialize<'de> for Operation {
    /// Decodes the unsigned form strictly, as [`Operation::from_ipld`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let StrictIpld(value) = StrictIpld::deserialize(deserializer)?;
        Self::from_ipld(value).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for SignedOperation {
    /// Decodes the signed form strictly, as [`SignedOperation::from_ipld`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let StrictIpld(value) = StrictIpld::deserialize(deserializer)?;
        Self::from_ipld(value).map_err(de::Error::custom)
    }
}

/// Parses JSON into a data-model value, rejecting duplicate keys.
fn strict_json(json: &str) -> Result<Ipld, PlcError> {
    serde_json::from_str::<StrictIpld>(json)
        .map(|v| v.0)
        .map_err(|e| PlcError::Json(e.to_string()))
}

/// A data-model value read from any self-describing format, rejecting maps
/// with duplicate keys (which parsers resolve differently, so a signed
/// operation could mean two things).
#[derive(Debug)]
pub(super) struct StrictIpld(pub(super) Ipld);

impl<'de> Deserialize<'de> for StrictIpld {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictIpld)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Ipld;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Ipld, E> {
        Ok(Ipld::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ipld, E> {
        Ok(Ipld::Integer(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ipld, E> {
        Ok(Ipld::Integer(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ipld, E> {
        Ok(Ipld::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Ipld, E> {
        Ok(Ipld::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Ipld, E> {
        Ok(Ipld::String(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Ipld, E> {
        Ok(Ipld::Bytes(v.to_vec()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Ipld, E> {
        Ok(Ipld::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Ipld, E> {
        Ok(Ipld::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Ipld, D::Error> {
        StrictIpld::deserialize(deserializer).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ipld, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictIpld(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Ipld::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Ipld, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            let StrictIpld(value) = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    truncate(&key)
                )));
            }
            map.insert(key, value);
        }
        Ok(Ipld::Map(map))
    }
}

#[cfg(test)]
mod tests;
