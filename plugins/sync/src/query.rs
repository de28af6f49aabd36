//! Query-string parameters. Parsed with `form_urlencoded` rather than a
//! serde extractor, because `getBlocks` repeats its `cids` key.

use aurora_core::XrpcError;
use aurora_core::cid::Cid;
use aurora_core::syntax::{Did, Tid};

/// Default and largest page of `listRepos` and `listBlobs`.
pub(crate) const DEFAULT_LIMIT: usize = 500;
pub(crate) const MAX_LIMIT: usize = 1000;

/// The parameters of one request, in order.
#[derive(Debug, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string (`None`: no parameters).
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    /// Every value of `name`, in order; empty values are skipped.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a single-valued parameter; absent or empty is `None`,
    /// given twice is an error.
    pub(crate) fn optional(&self, name: &str) -> Result<Option<&str>, XrpcError> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(XrpcError::invalid_request(format!(
                "parameter {name} must be given once"
            ))),
        }
    }

    /// The value of a required single-valued parameter.
    pub(crate) fn required(&self, name: &str) -> Result<&str, XrpcError> {
        self.optional(name)?
            .ok_or_else(|| XrpcError::invalid_request(format!("missing required parameter {name}")))
    }

    /// The required `did` parameter.
    pub(crate) fn did(&self) -> Result<Did, XrpcError> {
        parse_did(self.required("did")?, "did")
    }

    /// An optional TID parameter (`since`).
    pub(crate) fn tid(&self, name: &str) -> Result<Option<Tid>, XrpcError> {
        self.optional(name)?
            .map(|s| {
                Tid::parse(s)
                    .map_err(|e| XrpcError::invalid_request(format!("invalid {name}: {e}")))
            })
            .transpose()
    }

    /// An optional CID parameter.
    pub(crate) fn cid(&self, name: &str) -> Result<Option<Cid>, XrpcError> {
        self.optional(name)?.map(|s| parse_cid(s, name)).transpose()
    }

    /// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
    pub(crate) fn limit(&self) -> Result<usize, XrpcError> {
        let Some(raw) = self.optional("limit")? else {
            return Ok(DEFAULT_LIMIT);
        };
        match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(XrpcError::invalid_request(format!(
                "limit must be an integer from 1 to {MAX_LIMIT}"
            ))),
        }
    }
}

pub(crate) fn parse_did(s: &str, name: &str) -> Result<Did, XrpcError> {
    Did::parse(s).map_err(|e| XrpcError::invalid_request(format!("invalid {name}: {e}")))
}

pub(crate) fn parse_cid(s: &str, name: &str) -> Result<Cid, XrpcError> {
    Cid::try_from(s).map_err(|e| XrpcError::invalid_request(format!("invalid {name} {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn repeated_keys_and_limits() {
        let q = Query::parse(Some("did=did%3Aplc%3Aabc&cids=a&cids=b&cids=&limit=7"));
        assert_eq!(q.all("cids"), ["a", "b"]);
        assert_eq!(q.did().unwrap().as_str(), "did:plc:abc");
        assert_eq!(q.limit().unwrap(), 7);
        assert!(q.optional("cids").is_err());
        assert_eq!(Query::parse(None).limit().unwrap(), DEFAULT_LIMIT);
        for bad in ["limit=0", "limit=1001", "limit=x", "limit=-1"] {
            assert!(Query::parse(Some(bad)).limit().is_err(), "{bad}");
        }
        assert!(Query::parse(Some("did=nope")).did().is_err());
        assert!(Query::parse(None).did().is_err());
        assert!(Query::parse(Some("since=")).tid("since").unwrap().is_none());
        assert!(Query::parse(Some("since=abc")).tid("since").is_err());
    }
}
