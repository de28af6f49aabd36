//! Record validation: a record's `$type` against its collection, its record
//! key against the lexicon's key type, and its body against the lexicon's
//! schema, as the reference PDS does on `createRecord`, `putRecord` and
//! `applyWrites`.
//!
//! The known lexicons are the record types of `com.atproto`, `app.bsky` and
//! `chat.bsky` (listed in `known.rs`). The `validate` flag of a write decides:
//!
//! | `validate` | known lexicon | unknown lexicon |
//! |---|---|---|
//! | unset | checked, `valid` | `unknown` |
//! | `true` | checked, `valid` | refused |
//! | `false` | `unknown` | `unknown` |
//!
//! A `$type` that is not the collection is refused whatever the flag.

mod check;
mod known;
mod schema;

#[cfg(test)]
mod tests;

use aurora_core::syntax::{Nsid, RecordKey, Tid};
use serde_json::Value;

use self::schema::KeyType;

/// The lexicon's `validationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationStatus {
    /// Checked against its lexicon.
    Valid,
    /// Not checked: no lexicon known for it, or validation skipped.
    Unknown,
}

impl ValidationStatus {
    /// The lexicon string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Unknown => "unknown",
        }
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RecordError {
    /// What is wrong.
    pub message: String,
}

impl RecordError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Validates `record` for `collection`/`rkey`.
///
/// A record without `$type` is taken to be of type `collection` (the caller
/// stores it with that `$type` added, as the reference PDS does).
pub fn validate_record(
    collection: &Nsid,
    rkey: &RecordKey,
    record: &Value,
    validate: Option<bool>,
) -> Result<ValidationStatus, RecordError> {
    let Some(obj) = record.as_object() else {
        return Err(RecordError::new("Record must be an object"));
    };
    match obj.get("$type") {
        None => {}
        Some(Value::String(t)) if t == collection.as_str() => {}
        Some(other) => {
            let got = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_owned);
            return Err(RecordError::new(format!(
                "Invalid $type: expected {collection}, got {got}"
            )));
        }
    }
    if validate == Some(false) {
        return Ok(ValidationStatus::Unknown);
    }
    let Some((key, schema)) = known::KNOWN.record(collection.as_str()) else {
        if validate == Some(true) {
            return Err(RecordError::new(format!(
                "Unknown lexicon type: {collection}"
            )));
        }
        return Ok(ValidationStatus::Unknown);
    };
    check_key(collection, key, rkey)?;
    check::Checker::new(&known::KNOWN)
        .object("Record", schema, record)
        .map_err(|e| RecordError::new(format!("Invalid {collection} record: {e}")))?;
    Ok(ValidationStatus::Valid)
}

/// Checks a record key against the lexicon's key type.
fn check_key(collection: &Nsid, key: &KeyType, rkey: &RecordKey) -> Result<(), RecordError> {
    let problem = match key {
        KeyType::Any => None,
        KeyType::Tid => Tid::parse(rkey.as_str())
            .is_err()
            .then(|| "must be a valid TID".to_owned()),
        KeyType::Nsid => Nsid::parse(rkey.as_str())
            .is_err()
            .then(|| "must be a valid NSID".to_owned()),
        KeyType::Literal(lit) => (rkey.as_str() != lit).then(|| format!("must be \"{lit}\"")),
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(RecordError::new(format!(
            "Invalid record key for {collection}: {p} (got \"{rkey}\")"
        ))),
    }
}
