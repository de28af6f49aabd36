//! The operation log of one DID, the directory's rules for accepting an
//! operation into it, and the state ([`DocumentData`]) it resolves to.
//!
//! A [`PlcLog`] is what the PLC directory keeps per DID: every operation it
//! accepted, in order, with its CID, the time it was accepted and whether a
//! later recovery nullified it (the audit log). [`PlcLog::apply`] is the
//! directory's decision on a submitted operation. It is pure: the caller
//! supplies the time, so a test directory can run in-process and a test
//! can step past the recovery window without waiting.
//!
//! The recovery rule in full: an operation whose `prev` is not the latest
//! active operation forks history at `prev`. It nullifies the active
//! operation that followed `prev` and everything after it, and is accepted
//! only if it is signed by a key of `prev`'s `rotationKeys` with a lower
//! index than the key that signed that first nullified operation, at most
//! [`RECOVERY_WINDOW`] after it. Only the first nullified operation is
//! compared, because only it was signed with a key from the same list;
//! later ones were signed under their own predecessors' keys. Since the
//! signer of the active child bounds every later fork, authority can only
//! rise at a fork point.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use cid::Cid;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::operation::{StrictIpld, did_for_genesis_bytes, parse_cid, parse_did_key};
use super::{
    ATPROTO_VERIFICATION_METHOD, MAX_ALSO_KNOWN_AS_LEN, MAX_ENTRIES, MAX_ID_LEN,
    MAX_OPERATION_BYTES, MAX_ROTATION_KEYS, MAX_SERVICE_ENDPOINT_LEN, MAX_SERVICE_TYPE_LEN,
    MIN_ROTATION_KEYS, Operation, PDS_SERVICE_ID, PDS_SERVICE_TYPE, PlcError, PlcOperation,
    RECOVERY_WINDOW, Service, SignedOperation, truncate, verify_signature,
};
use crate::crypto::{Curve, PublicKey};
use crate::data::{DAG_CBOR, cid_for};
use crate::syntax::{Did, Handle, Uri};

/// One operation of a DID's audit log, in the form of the directory's
/// `GET /<did>/log/audit` (`did`, `operation`, `cid`, `nullified`,
/// `createdAt`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawAuditEntry")]
pub struct AuditEntry {
    /// The DID the operation belongs to.
    pub did: Did,
    /// The signed operation.
    pub operation: SignedOperation,
    /// The operation's CID.
    pub cid: Cid,
    /// Whether a recovery nullified the operation.
    pub nullified: bool,
    /// When the directory accepted the operation.
    pub created_at: DateTime<Utc>,
}

/// The JSON shape of an audit entry, before its fields are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAuditEntry {
    did: String,
    operation: StrictIpld,
    cid: String,
    nullified: bool,
    created_at: String,
}

impl TryFrom<RawAuditEntry> for AuditEntry {
    type Error = PlcError;

    fn try_from(raw: RawAuditEntry) -> Result<Self, PlcError> {
        Ok(Self {
            did: Did::parse(raw.did).map_err(PlcError::Did)?,
            operation: SignedOperation::from_ipld(raw.operation.0)?,
            cid: parse_cid(&raw.cid).ok_or_else(|| PlcError::BadCid(truncate(&raw.cid)))?,
            nullified: raw.nullified,
            created_at: DateTime::parse_from_rfc3339(&raw.created_at)
                .map_err(|_| PlcError::BadCreatedAt(truncate(&raw.created_at)))?
                .with_timezone(&Utc),
        })
    }
}

impl Serialize for AuditEntry {
    /// The directory's JSON form; `createdAt` with milliseconds and `Z`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("did", &self.did)?;
        map.serialize_entry("operation", &self.operation)?;
        map.serialize_entry("cid", &self.cid.to_string())?;
        map.serialize_entry("nullified", &self.nullified)?;
        map.serialize_entry(
            "createdAt",
            &self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        )?;
        map.end()
    }
}

/// What [`PlcLog::apply`] did with an accepted operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The accepted operation's CID.
    pub cid: Cid,
    /// The operations it nullified (a recovery), oldest first.
    pub nullified: Vec<Cid>,
}

/// The state of a DID after an operation: everything needed to render its
/// DID document, plus the rotation keys, which the document leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentData {
    /// The DID.
    pub did: Did,
    /// The rotation keys, highest authority first.
    pub rotation_keys: Vec<PublicKey>,
    /// Verification methods by name, as `did:key` strings.
    pub verification_methods: BTreeMap<String, String>,
    /// Other names of the DID (`at://<handle>`), highest priority first.
    pub also_known_as: Vec<String>,
    /// Services by id.
    pub services: BTreeMap<String, Service>,
}

impl DocumentData {
    /// The state `op` leaves `did` in: `None` for a tombstone. A legacy
    /// `create` is read as the `plc_operation` it stands for.
    pub fn from_operation(did: Did, op: &Operation) -> Result<Option<Self>, PlcError> {
        let keys = op.rotation_keys()?;
        Ok(Self::with_keys(did, op, keys))
    }

    /// [`from_operation`](Self::from_operation) with the rotation keys
    /// already parsed.
    fn with_keys(did: Did, op: &Operation, rotation_keys: Vec<PublicKey>) -> Option<Self> {
        match op {
            Operation::Tombstone(_) => None,
            Operation::Plc(op) => Some(Self {
                did,
                rotation_keys,
                verification_methods: op.verification_methods.clone(),
                also_known_as: op.also_known_as.clone(),
                services: op.services.clone(),
            }),
            Operation::LegacyCreate(op) => {
                // As the reference implementation normalises it.
                let handle = op
                    .handle
                    .strip_prefix("http://")
                    .or_else(|| op.handle.strip_prefix("https://"))
                    .unwrap_or(&op.handle);
                let aka = if handle.starts_with("at://") {
                    handle.to_owned()
                } else {
                    format!("at://{handle}")
                };
                let endpoint =
                    if op.service.starts_with("http://") || op.service.starts_with("https://") {
                        op.service.clone()
                    } else {
                        format!("https://{}", op.service)
                    };
                Some(Self {
                    did,
                    rotation_keys,
                    verification_methods: BTreeMap::from([(
                        ATPROTO_VERIFICATION_METHOD.to_owned(),
                        op.signing_key.clone(),
                    )]),
                    also_known_as: vec![aka],
                    services: BTreeMap::from([(
                        PDS_SERVICE_ID.to_owned(),
                        Service::atproto_pds(endpoint),
                    )]),
                })
            }
        }
    }

    /// The account's handle: the first `at://` entry of `alsoKnownAs`, if
    /// it is a valid handle (a later entry does not stand in for an
    /// invalid first one). Handles must still be verified both ways.
    pub fn handle(&self) -> Option<Handle> {
        let first = self
            .also_known_as
            .iter()
            .find_map(|aka| aka.strip_prefix("at://"))?;
        Handle::parse(first).ok()
    }

    /// Every `at://` entry of `alsoKnownAs` that is a valid handle, in order.
    pub fn handles(&self) -> Vec<Handle> {
        self.also_known_as
            .iter()
            .filter_map(|aka| Handle::parse(aka.strip_prefix("at://")?).ok())
            .collect()
    }

    /// The endpoint of the `atproto_pds` service, if it has the type
    /// `AtprotoPersonalDataServer`.
    pub fn pds_endpoint(&self) -> Option<&str> {
        self.services
            .get(PDS_SERVICE_ID)
            .filter(|s| s.service_type == PDS_SERVICE_TYPE)
            .map(|s| s.endpoint.as_str())
    }

    /// The atproto signing key (verification method `atproto`), if it is a
    /// `k256` or `p256` `did:key`.
    pub fn atproto_signing_key(&self) -> Option<PublicKey> {
        let key = self.verification_methods.get(ATPROTO_VERIFICATION_METHOD)?;
        PublicKey::from_did_key(key).ok()
    }

    /// An update that keeps this state, following `prev`: change its
    /// fields, then sign it with a rotation key of this state.
    pub fn to_update(&self, prev: Cid) -> PlcOperation {
        PlcOperation {
            rotation_keys: self
                .rotation_keys
                .iter()
                .map(PublicKey::to_did_key)
                .collect(),
            verification_methods: self.verification_methods.clone(),
            also_known_as: self.also_known_as.clone(),
            services: self.services.clone(),
            prev: Some(prev),
        }
    }

    /// The DID document, as the directory renders it: `Multikey`
    /// verification methods with ids `<did>#<name>`, services with ids
    /// `#<id>`, and the JSON-LD context of each key type used.
    pub fn to_did_document(&self) -> serde_json::Value {
        let mut context = vec![
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
        ];
        let mut methods = Vec::new();
        for (name, key) in &self.verification_methods {
            let extra = match PublicKey::from_did_key(key).map(|k| k.curve()) {
                Ok(Curve::P256) => Some("https://w3id.org/security/suites/ecdsa-2019/v1"),
                Ok(Curve::K256) => Some("https://w3id.org/security/suites/secp256k1-2019/v1"),
                Err(_) => None,
            };
            if let Some(extra) = extra.filter(|c| !context.contains(c)) {
                context.push(extra);
            }
            methods.push(serde_json::json!({
                "id": format!("{}#{name}", self.did),
                "type": "Multikey",
                "controller": self.did.as_str(),
                "publicKeyMultibase": key.strip_prefix("did:key:").unwrap_or(key),
            }));
        }
        let services: Vec<_> = self
            .services
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": format!("#{id}"),
                    "type": s.service_type,
                    "serviceEndpoint": s.endpoint,
                })
            })
            .collect();
        serde_json::json!({
            "@context": context,
            "id": self.did.as_str(),
            "alsoKnownAs": self.also_known_as,
            "verificationMethod": methods,
            "service": services,
        })
    }
}

/// Which content rules an operation must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// A newly submitted operation: every limit of the spec and directory.
    Submission,
    /// An operation of an existing audit log: chain, signature, authority,
    /// time and window rules only.
    History,
}

/// What the log knows about each operation besides its audit entry.
#[derive(Debug, Clone)]
struct Meta {
    /// The rotation keys the operation put in force (none for a tombstone).
    keys: Vec<PublicKey>,
    /// Index, in its `prev`'s keys, of the key that signed it; `None` for
    /// the genesis.
    signer: Option<usize>,
    /// The active operation whose `prev` is this one, if any.
    child: Option<usize>,
}

/// The audit log of one DID: every accepted operation in order, nullified
/// ones included, and the directory's rules for the next one.
#[derive(Debug, Clone)]
pub struct PlcLog {
    did: Did,
    entries: Vec<AuditEntry>,
    meta: Vec<Meta>,
}

impl PlcLog {
    /// An empty log for `did`, waiting for its genesis operation.
    pub fn new(did: Did) -> Self {
        Self {
            did,
            entries: Vec::new(),
            meta: Vec::new(),
        }
    }

    /// A log started by `genesis`, accepted at `now`, for the DID it
    /// derives.
    pub fn create(genesis: SignedOperation, now: DateTime<Utc>) -> Result<Self, PlcError> {
        let mut log = Self::new(genesis.did()?);
        log.apply(genesis, now)?;
        Ok(log)
    }

    /// Replays an audit log (as served by `GET /<did>/log/audit`, oldest
    /// first), checking every operation with the directory's chain rules,
    /// and that each entry's DID, CID and `nullified` flag are what the
    /// replay gives. The content limits of new operations are not applied
    /// (see the module docs); a legacy `create` genesis is accepted.
    pub fn from_audit_log(entries: &[AuditEntry]) -> Result<Self, PlcError> {
        let first = entries.first().ok_or(PlcError::EmptyAuditLog)?;
        let mut log = Self::new(first.did.clone());
        for (index, entry) in entries.iter().enumerate() {
            if entry.did != log.did {
                return Err(PlcError::AuditDidMismatch {
                    index,
                    expected: log.did.to_string(),
                    found: entry.did.to_string(),
                });
            }
            let applied =
                log.apply_with(entry.operation.clone(), entry.created_at, Rules::History)?;
            if applied.cid != entry.cid {
                return Err(PlcError::AuditCidMismatch {
                    index,
                    stated: entry.cid.to_string(),
                    computed: applied.cid.to_string(),
                });
            }
        }
        for (index, (stated, replayed)) in entries.iter().zip(&log.entries).enumerate() {
            if stated.nullified != replayed.nullified {
                return Err(PlcError::AuditNullifiedMismatch {
                    index,
                    stated: stated.nullified,
                    computed: replayed.nullified,
                });
            }
        }
        Ok(log)
    }

    /// [`from_audit_log`](Self::from_audit_log) of the audit log's JSON.
    pub fn from_audit_log_json(json: &str) -> Result<Self, PlcError> {
        let raw: Vec<RawAuditEntry> =
            serde_json::from_str(json).map_err(|e| PlcError::Json(e.to_string()))?;
        let entries: Vec<AuditEntry> = raw
            .into_iter()
            .map(AuditEntry::try_from)
            .collect::<Result<_, _>>()?;
        Self::from_audit_log(&entries)
    }

    /// The DID.
    pub fn did(&self) -> &Did {
        &self.did
    }

    /// The audit log: every accepted operation in order, nullified included.
    pub fn entries(&self) -> &[AuditEntry] {
        &self.entries
    }

    /// The operations in force, in order (the directory's `/log`).
    pub fn active(&self) -> impl Iterator<Item = &AuditEntry> {
        self.entries.iter().filter(|e| !e.nullified)
    }

    /// The latest operation, which is always active; its CID is the `prev`
    /// of the next update. `None` for an empty log.
    pub fn head(&self) -> Option<&AuditEntry> {
        self.entries.last()
    }

    /// Whether the latest operation is a tombstone.
    pub fn is_tombstoned(&self) -> bool {
        self.head()
            .is_some_and(|e| matches!(e.operation.operation, Operation::Tombstone(_)))
    }

    /// The current state of the DID: `None` for an empty or tombstoned log.
    pub fn document(&self) -> Option<DocumentData> {
        let head = self.head()?;
        let keys = self.meta.last()?.keys.clone();
        DocumentData::with_keys(self.did.clone(), &head.operation.operation, keys)
    }

    /// Accepts `op` into the log at time `now` if the directory would, and
    /// records it; on error the log is unchanged.
    ///
    /// The rules: the content limits of a new operation (see the module
    /// docs; no legacy `create`); a genesis only for an empty log, deriving
    /// this log's DID and signed by one of its own rotation keys; any other
    /// operation names an active, non-tombstone operation of this log as
    /// `prev`, is later than every operation in the log, and is signed by
    /// a rotation key of `prev`. When `prev` is not the latest operation,
    /// the operation is a recovery: its key must have higher authority than
    /// the signer of the first operation it nullifies, and that operation
    /// must be at most [`RECOVERY_WINDOW`] old.
    ///
    /// `now` is kept to the millisecond, as the directory keeps it, so that
    /// the audit log's JSON replays to the same decisions; two operations
    /// within one millisecond are therefore not in order.
    pub fn apply(&mut self, op: SignedOperation, now: DateTime<Utc>) -> Result<Applied, PlcError> {
        self.apply_with(op, now, Rules::Submission)
    }

    fn apply_with(
        &mut self,
        op: SignedOperation,
        now: DateTime<Utc>,
        rules: Rules,
    ) -> Result<Applied, PlcError> {
        // Truncation to a millisecond cannot fail for times chrono can hold.
        let now = now
            .duration_trunc(TimeDelta::milliseconds(1))
            .unwrap_or(now);
        let bytes = op.to_cbor();
        if rules == Rules::Submission {
            check_new_operation(&op.operation, bytes.len())?;
        }
        let cid = cid_for(DAG_CBOR, &bytes);
        let keys = op.operation.rotation_keys()?;

        let Some(prev) = op.operation.prev() else {
            if !self.entries.is_empty() {
                return Err(PlcError::AlreadyExists);
            }
            let derived = did_for_genesis_bytes(&bytes)?;
            if derived != self.did {
                return Err(PlcError::GenesisDidMismatch {
                    expected: self.did.to_string(),
                    derived: derived.to_string(),
                });
            }
            verify_signature(&op, &keys)?;
            self.push(op, cid, now, keys, None);
            return Ok(Applied {
                cid,
                nullified: Vec::new(),
            });
        };

        let Some(latest) = self.entries.last() else {
            return Err(PlcError::FirstNotGenesis);
        };
        let latest_at = latest.created_at;
        let p = self
            .entries
            .iter()
            .position(|e| e.cid == prev)
            .ok_or_else(|| PlcError::UnknownPrev(prev.to_string()))?;
        if self.entries[p].nullified {
            return Err(PlcError::PrevNullified(prev.to_string()));
        }
        if matches!(self.entries[p].operation.operation, Operation::Tombstone(_)) {
            return Err(PlcError::PrevTombstone(prev.to_string()));
        }
        if now <= latest_at {
            return Err(PlcError::NotAfterLatest {
                at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
                latest: latest_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            });
        }
        let signer = verify_signature(&op, &self.meta[p].keys)?;

        let mut nullified = Vec::new();
        if let Some(first) = self.meta[p].child {
            // A child always has a signer; 0 would refuse every fork.
            let disputed = self.meta[first].signer.unwrap_or(0);
            if signer >= disputed {
                return Err(PlcError::InsufficientAuthority { signer, disputed });
            }
            let elapsed = now - self.entries[first].created_at;
            if elapsed > RECOVERY_WINDOW {
                return Err(PlcError::RecoveryWindowClosed {
                    elapsed_secs: elapsed.num_seconds(),
                });
            }
            let mut next = Some(first);
            while let Some(i) = next {
                nullified.push(i);
                next = self.meta[i].child;
            }
        }

        for &i in &nullified {
            self.entries[i].nullified = true;
        }
        self.meta[p].child = Some(self.entries.len());
        self.push(op, cid, now, keys, Some(signer));
        Ok(Applied {
            cid,
            nullified: nullified.iter().map(|&i| self.entries[i].cid).collect(),
        })
    }

    fn push(
        &mut self,
        operation: SignedOperation,
        cid: Cid,
        created_at: DateTime<Utc>,
        keys: Vec<PublicKey>,
        signer: Option<usize>,
    ) {
        self.entries.push(AuditEntry {
            did: self.did.clone(),
            operation,
            cid,
            nullified: false,
            created_at,
        });
        self.meta.push(Meta {
            keys,
            signer,
            child: None,
        });
    }
}

/// The content limits of a newly submitted operation of `size` bytes of
/// DAG-CBOR (see the module docs).
fn check_new_operation(op: &Operation, size: usize) -> Result<(), PlcError> {
    if size > MAX_OPERATION_BYTES {
        return Err(PlcError::TooLarge(size));
    }
    match op {
        Operation::LegacyCreate(_) => Err(PlcError::LegacyCreate),
        Operation::Tombstone(_) => Ok(()),
        Operation::Plc(op) => check_plc_operation(op),
    }
}

fn check_plc_operation(op: &PlcOperation) -> Result<(), PlcError> {
    let count = op.rotation_keys.len();
    if !(MIN_ROTATION_KEYS..=MAX_ROTATION_KEYS).contains(&count) {
        return Err(PlcError::RotationKeyCount(count));
    }
    let mut seen = HashSet::new();
    for (i, key) in op.rotation_keys.iter().enumerate() {
        let parsed = parse_did_key(|| format!("rotationKeys[{i}]"), key)?;
        if !seen.insert(parsed) {
            return Err(PlcError::DuplicateRotationKey(truncate(key)));
        }
    }

    check_count("verificationMethods", op.verification_methods.len())?;
    for (id, key) in &op.verification_methods {
        check_id("verificationMethods", id)?;
        parse_did_key(|| format!("verificationMethods.{}", truncate(id)), key)?;
    }

    check_count("alsoKnownAs", op.also_known_as.len())?;
    let mut seen = HashSet::new();
    for (i, aka) in op.also_known_as.iter().enumerate() {
        let field = || format!("alsoKnownAs[{i}]");
        check_len(field, aka, MAX_ALSO_KNOWN_AS_LEN)?;
        check_uri(field, aka)?;
        if !seen.insert(aka) {
            return Err(PlcError::DuplicateAlsoKnownAs(truncate(aka)));
        }
    }

    check_count("services", op.services.len())?;
    for (id, service) in &op.services {
        check_id("services", id)?;
        let field = |part: &str| format!("services.{}.{part}", truncate(id));
        if service.service_type.is_empty() {
            return Err(PlcError::InvalidValue {
                field: field("type"),
                reason: "must not be empty".to_owned(),
            });
        }
        check_len(
            || field("type"),
            &service.service_type,
            MAX_SERVICE_TYPE_LEN,
        )?;
        check_len(
            || field("endpoint"),
            &service.endpoint,
            MAX_SERVICE_ENDPOINT_LEN,
        )?;
        check_uri(|| field("endpoint"), &service.endpoint)?;
    }
    Ok(())
}

fn check_count(field: &'static str, count: usize) -> Result<(), PlcError> {
    if count > MAX_ENTRIES {
        return Err(PlcError::TooManyEntries { field, count });
    }
    Ok(())
}

fn check_id(field: &'static str, id: &str) -> Result<(), PlcError> {
    if id.is_empty() || id.starts_with('#') {
        return Err(PlcError::BadId {
            field,
            id: truncate(id),
        });
    }
    check_len(|| format!("{field} id"), id, MAX_ID_LEN)
}

fn check_len(field: impl FnOnce() -> String, value: &str, max: usize) -> Result<(), PlcError> {
    if value.len() > max {
        return Err(PlcError::TooLong {
            field: field(),
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn check_uri(field: impl FnOnce() -> String, value: &str) -> Result<(), PlcError> {
    Uri::parse(value)
        .map(drop)
        .map_err(|e| PlcError::InvalidValue {
            field: field(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests;
