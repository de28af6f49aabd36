//! The HTTP client of the PLC directory.
//!
//! A PDS creates an account's `did:plc` identity by submitting a signed
//! genesis operation to the directory, and changes it (handle, signing key,
//! PDS endpoint) by submitting updates; it reads the DID document, the
//! latest operation (the `prev` of its next update) and the audit log back.
//! [`PlcClient`] does exactly that against the directory at
//! `AURORA_PLC_URL` (<https://plc.directory> in production, an in-process
//! test directory in tests):
//!
//! | method | request |
//! |---|---|
//! | [`submit`](PlcClient::submit), [`submit_for`](PlcClient::submit_for) | `POST {base}/{did}` with the operation's JSON |
//! | [`document`](PlcClient::document), [`document_state`](PlcClient::document_state) | `GET {base}/{did}` |
//! | [`last_operation`](PlcClient::last_operation) | `GET {base}/{did}/log/last` |
//! | [`audit_log`](PlcClient::audit_log), [`verified_log`](PlcClient::verified_log) | `GET {base}/{did}/log/audit` |
//!
//! Every request has a deadline ([`DEFAULT_TIMEOUT`] unless configured),
//! answers are read up to [`MAX_RESPONSE_BYTES`], and redirects are not
//! followed: a redirected `POST` would be replayed as a `GET`, and its `200`
//! would look like an accepted operation. Failures are typed
//! ([`PlcClientError`]): the directory could not be reached, refused the
//! request (with its own message), or answered with something that is not
//! what it should be.
//!
//! The HTTP client comes from [`http_client`](super::http_client): HTTPS
//! through rustls on the ring provider, with the platform's root
//! certificates; `http://` directories (such as the in-process test
//! directory) work as well.

use std::time::Duration;

use aurora_core::identity::plc::{AuditEntry, PlcError, PlcLog, SignedOperation};
use aurora_core::syntax::Did;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{ACCEPT, CONTENT_TYPE};
use url::Url;

use super::error_chain;

/// How long one request to the directory may take, connecting and reading
/// the answer included, unless [`PlcClient::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read from the directory, in bytes. An audit log of a
/// thousand operations of the largest size fits.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Longest error message taken from an answer that is not the directory's
/// `{"message": ...}` JSON.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why a request to the PLC directory failed.
#[derive(Debug, thiserror::Error)]
pub enum PlcClientError {
    /// The configured base URL is not an `http` or `https` URL that paths
    /// can be added to.
    #[error("invalid PLC directory URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (for example, no TLS roots).
    #[error("cannot set up the PLC directory client: {0}")]
    Setup(String),
    /// [`PlcClient::submit`] was given an operation that names no DID (not
    /// a genesis operation); updates go through [`PlcClient::submit_for`].
    #[error("the operation names no DID (only a genesis does; use submit_for for updates): {0}")]
    NoDid(#[source] PlcError),
    /// No answer: the connection failed or broke off.
    #[error("PLC directory unreachable ({url}): {reason}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// What failed, with its causes.
        reason: String,
    },
    /// No complete answer within the deadline.
    #[error("PLC directory did not answer {url} within {timeout:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The directory answered with an error status; `message` is its own
    /// explanation (the `message` of its JSON answer), e.g. why it refused
    /// an operation.
    #[error("PLC directory refused the request ({status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: StatusCode,
        /// The directory's message.
        message: String,
    },
    /// The directory answered successfully, but not with what it should
    /// have (not JSON, not an operation, a document of another DID, an
    /// audit log that does not replay, or too large).
    #[error("PLC directory sent a malformed answer to {url}: {reason}")]
    Malformed {
        /// The URL requested.
        url: String,
        /// What is wrong with the answer.
        reason: String,
    },
}

/// The HTTP client of one PLC directory (see the module docs).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct PlcClient {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
}

/// What the directory says about a DID's document
/// ([`PlcClient::document_state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlcDocument {
    /// The DID is active: its DID document (whose `id` is the DID).
    Active(serde_json::Value),
    /// The directory never registered the DID (`404`).
    NotFound,
    /// The DID was deactivated by a tombstone (`410`).
    Deactivated,
}

/// A successful answer, or an absent DID (with the status that said so).
enum Answer {
    Found(Bytes),
    Absent(StatusCode),
}

impl PlcClient {
    /// A client of the directory at `base_url` (e.g.
    /// `https://plc.directory`), with [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: &str) -> Result<Self, PlcClientError> {
        Self::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// A client of the directory at `base_url` whose requests each take at
    /// most `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, PlcClientError> {
        let base = parse_base(base_url)?;
        let http = super::http_client(timeout).map_err(|e| PlcClientError::Setup(e.to_string()))?;
        Ok(Self {
            base,
            http,
            timeout,
        })
    }

    /// The directory's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Submits a genesis operation, for the DID it derives. The directory
    /// checks it and, if it accepts it, creates the DID.
    pub async fn submit(&self, op: &SignedOperation) -> Result<(), PlcClientError> {
        let did = op.did().map_err(PlcClientError::NoDid)?;
        self.submit_for(&did, op).await
    }

    /// Submits an operation of `did`: an update, a tombstone, or its
    /// genesis. `Ok` means the directory accepted it into the DID's log.
    pub async fn submit_for(&self, did: &Did, op: &SignedOperation) -> Result<(), PlcClientError> {
        let url = self.endpoint(did, &[])?;
        let request = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(op.to_json());
        self.send(request, &url, &[]).await.map(drop)
    }

    /// The DID document of `did`, as the directory renders it; `None` when
    /// the DID is not registered or is deactivated (tombstoned). See
    /// [`document_state`](Self::document_state) to tell those two apart.
    pub async fn document(&self, did: &Did) -> Result<Option<serde_json::Value>, PlcClientError> {
        Ok(match self.document_state(did).await? {
            PlcDocument::Active(doc) => Some(doc),
            PlcDocument::NotFound | PlcDocument::Deactivated => None,
        })
    }

    /// The DID document of `did`, or why there is none: the directory
    /// answers `404` for a DID it never registered and `410` for a
    /// deactivated (tombstoned) one.
    pub async fn document_state(&self, did: &Did) -> Result<PlcDocument, PlcClientError> {
        let url = self.endpoint(did, &[])?;
        let request = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/did+ld+json, application/json;q=0.9");
        let absent = [StatusCode::NOT_FOUND, StatusCode::GONE];
        let body = match self.send(request, &url, &absent).await? {
            Answer::Found(body) => body,
            Answer::Absent(StatusCode::GONE) => return Ok(PlcDocument::Deactivated),
            Answer::Absent(_) => return Ok(PlcDocument::NotFound),
        };
        let doc: serde_json::Value = parse_json(&url, &body)?;
        if doc.get("id").and_then(serde_json::Value::as_str) != Some(did.as_str()) {
            return Err(malformed(&url, format!("not a DID document of {did}")));
        }
        Ok(PlcDocument::Active(doc))
    }

    /// The latest operation of `did` (a tombstone for a deactivated DID),
    /// whose CID is the `prev` of its next update; `None` when the DID is
    /// not registered.
    pub async fn last_operation(
        &self,
        did: &Did,
    ) -> Result<Option<SignedOperation>, PlcClientError> {
        let url = self.endpoint(did, &["log", "last"])?;
        let Answer::Found(body) = self.get(&url).await? else {
            return Ok(None);
        };
        let json = std::str::from_utf8(&body).map_err(|e| malformed(&url, e.to_string()))?;
        SignedOperation::from_json(json)
            .map(Some)
            .map_err(|e| malformed(&url, e.to_string()))
    }

    /// The audit log of `did`: every operation the directory accepted,
    /// oldest first, nullified ones included; `None` when the DID is not
    /// registered. The entries are checked for shape and DID only; see
    /// [`verified_log`](Self::verified_log).
    pub async fn audit_log(&self, did: &Did) -> Result<Option<Vec<AuditEntry>>, PlcClientError> {
        Ok(self.fetch_audit_log(did).await?.map(|(_, entries)| entries))
    }

    /// The audit log of `did`, replayed under the directory's rules
    /// ([`PlcLog::from_audit_log`]): every signature, `prev` link, CID,
    /// timestamp and nullification checked, so that the state it resolves
    /// to does not rest on trusting the directory. `None` when the DID is
    /// not registered.
    pub async fn verified_log(&self, did: &Did) -> Result<Option<PlcLog>, PlcClientError> {
        let Some((url, entries)) = self.fetch_audit_log(did).await? else {
            return Ok(None);
        };
        PlcLog::from_audit_log(&entries)
            .map(Some)
            .map_err(|e| malformed(&url, format!("the audit log does not replay: {e}")))
    }

    /// The audit log of `did` and the URL it was read from.
    async fn fetch_audit_log(
        &self,
        did: &Did,
    ) -> Result<Option<(Url, Vec<AuditEntry>)>, PlcClientError> {
        let url = self.endpoint(did, &["log", "audit"])?;
        let Answer::Found(body) = self.get(&url).await? else {
            return Ok(None);
        };
        let entries: Vec<AuditEntry> = parse_json(&url, &body)?;
        if entries.is_empty() {
            return Err(malformed(&url, "empty audit log".to_owned()));
        }
        if let Some(other) = entries.iter().find(|e| e.did != *did) {
            return Err(malformed(
                &url,
                format!("audit entry of {}, asked for {did}", other.did),
            ));
        }
        Ok(Some((url, entries)))
    }

    /// `{base}/{did}/{tail...}`, each part a path segment.
    fn endpoint(&self, did: &Did, tail: &[&str]) -> Result<Url, PlcClientError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| PlcClientError::InvalidUrl {
                url: self.base.to_string(),
                reason: "cannot have a path".to_owned(),
            })?
            .pop_if_empty()
            .push(did.as_str())
            .extend(tail);
        Ok(url)
    }

    /// A `GET` of JSON, for which 404 means the DID is not registered.
    async fn get(&self, url: &Url) -> Result<Answer, PlcClientError> {
        let request = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json");
        self.send(request, url, &[StatusCode::NOT_FOUND]).await
    }

    /// Sends `request` and reads the answer: its body on success,
    /// [`Answer::Absent`] for a status in `absent`, an error otherwise.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
        absent: &[StatusCode],
    ) -> Result<Answer, PlcClientError> {
        let mut response = request.send().await.map_err(|e| self.failed(url, &e))?;
        let status = response.status();
        let body = self.read_body(&mut response, url).await?;
        if status.is_success() {
            Ok(Answer::Found(body))
        } else if absent.contains(&status) {
            Ok(Answer::Absent(status))
        } else {
            Err(PlcClientError::Rejected {
                status,
                message: error_message(status, &body),
            })
        }
    }

    /// Reads a body of at most [`MAX_RESPONSE_BYTES`].
    async fn read_body(
        &self,
        response: &mut reqwest::Response,
        url: &Url,
    ) -> Result<Bytes, PlcClientError> {
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failed(url, &e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(malformed(
                    url,
                    format!("answer longer than {MAX_RESPONSE_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// The error for a request that got no (complete) answer.
    fn failed(&self, url: &Url, e: &reqwest::Error) -> PlcClientError {
        if e.is_timeout() {
            PlcClientError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            }
        } else {
            PlcClientError::Unreachable {
                url: url.to_string(),
                reason: error_chain(e),
            }
        }
    }
}

/// Checks a base URL: `http` or `https`, with a host, no query or fragment.
fn parse_base(base_url: &str) -> Result<Url, PlcClientError> {
    let invalid = |reason: &str| PlcClientError::InvalidUrl {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must be an http or https URL"));
    }
    if url.host().is_none() {
        return Err(invalid("has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    Ok(url)
}

/// The message of an error answer: the directory's `{"message": ...}`, or
/// the start of the body, or the status's reason.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if let Some(message) = json.as_ref().and_then(|v| v["message"].as_str()) {
        return message.to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        text.chars().take(MAX_MESSAGE_CHARS).collect()
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, PlcClientError> {
    serde_json::from_slice(body).map_err(|e| malformed(url, e.to_string()))
}

fn malformed(url: &Url, reason: String) -> PlcClientError {
    PlcClientError::Malformed {
        url: url.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert!(PlcClient::new("https://plc.directory").is_ok());
        assert!(PlcClient::new("http://127.0.0.1:2582/").is_ok());
        for bad in [
            "plc.directory",
            "ftp://plc.directory",
            "https://plc.directory?x=1",
            "",
        ] {
            assert!(
                matches!(PlcClient::new(bad), Err(PlcClientError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoints_are_path_segments() {
        let did = Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
        let client = PlcClient::new("https://plc.directory").unwrap();
        assert_eq!(
            client.endpoint(&did, &[]).unwrap().as_str(),
            "https://plc.directory/did:plc:ewvi7nxzyoun6zhxrhs64oiz"
        );
        let client = PlcClient::new("https://example.com/plc/").unwrap();
        assert_eq!(
            client.endpoint(&did, &["log", "audit"]).unwrap().as_str(),
            "https://example.com/plc/did:plc:ewvi7nxzyoun6zhxrhs64oiz/log/audit"
        );
    }

    #[test]
    fn error_messages() {
        let bad = StatusCode::BAD_REQUEST;
        assert_eq!(error_message(bad, br#"{"message":"nope"}"#), "nope");
        assert_eq!(error_message(bad, b"  plain text\n"), "plain text");
        assert_eq!(error_message(bad, b""), "Bad Request");
        assert_eq!(
            error_message(bad, "x".repeat(1000).as_bytes()).len(),
            MAX_MESSAGE_CHARS
        );
    }
}
