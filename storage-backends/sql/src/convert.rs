//! Row -> core type conversions. Stored values were validated on the way in;
//! a value that no longer parses is reported as corrupt, never unwrapped.

use aurora_core::cid::Cid;
use aurora_core::store::StoreError;
use aurora_core::syntax::SyntaxError;

pub(crate) fn parse<T>(
    value: String,
    parse: impl FnOnce(String) -> Result<T, SyntaxError>,
) -> Result<T, StoreError> {
    parse(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn cid(value: &str) -> Result<Cid, StoreError> {
    Cid::try_from(value).map_err(|e| StoreError::Corrupt(format!("bad CID {value:?}: {e}")))
}
