//! `XrpcError`: the one error shape that reaches clients.
//!
//! Every failure a handler can produce is mapped to an `XrpcError` at the
//! edge; its JSON form is `{"error": "...", "message": "..."}` as the XRPC
//! spec requires, with the HTTP status carried alongside.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::http::{Body, full_body};
use crate::store::StoreError;
use crate::syntax::SyntaxError;

/// An XRPC error: an HTTP status, a machine-readable error name and a
/// human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} ({status}): {message}")]
pub struct XrpcError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// Error name, e.g. `InvalidRequest`; lexicons define method-specific names.
    pub error: Cow<'static, str>,
    /// Human-readable detail. Never contains secrets.
    pub message: String,
}

impl XrpcError {
    /// An error with any status and name.
    pub fn new(
        status: StatusCode,
        error: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error: error.into(),
            message: message.into(),
        }
    }

    /// 400 `InvalidRequest`: the request does not follow the method's schema.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    /// 401 `AuthenticationRequired`.
    pub fn authentication_required(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthenticationRequired", message)
    }

    /// 403 `Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 501 `MethodNotImplemented`: no plugin serves this NSID.
    pub fn method_not_implemented(nsid: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            format!("method {nsid} is not implemented by this server"),
        )
    }

    /// 507 `InsufficientStorage`: the server is out of space for writes.
    pub fn insufficient_storage() -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            "the server is out of storage space; nothing was written, try again later",
        )
    }

    /// 503 `ServiceUnavailable`: a dependency (usually the database) is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    /// 500 `InternalServerError`. The message sent is generic; log the cause
    /// before converting.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "internal server error",
        )
    }

    /// The error name that goes with a bare HTTP status, for responses
    /// produced by generic middleware (body limits, timeouts, routing).
    pub fn from_status(status: StatusCode) -> Self {
        let (error, message) = match status {
            StatusCode::BAD_REQUEST => ("InvalidRequest", "invalid request"),
            StatusCode::UNAUTHORIZED => ("AuthenticationRequired", "authentication required"),
            StatusCode::FORBIDDEN => ("Forbidden", "forbidden"),
            StatusCode::NOT_FOUND => ("NotFound", "not found"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "InvalidRequest",
                "HTTP method not allowed for this endpoint",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
                ("RequestTimeout", "request took too long")
            }
            StatusCode::PAYLOAD_TOO_LARGE => ("PayloadTooLarge", "request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("InvalidRequest", "unsupported content type"),
            StatusCode::TOO_MANY_REQUESTS => ("RateLimitExceeded", "rate limit exceeded"),
            StatusCode::SERVICE_UNAVAILABLE => ("ServiceUnavailable", "service unavailable"),
            s if s.is_server_error() => ("InternalServerError", "internal server error"),
            _ => ("InvalidRequest", "request failed"),
        };
        Self::new(status, error, message)
    }

    /// The JSON body: `{"error": ..., "message": ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.error, "message": self.message })
    }

    /// The complete HTTP response.
    pub fn into_response(self) -> http::Response<Body> {
        let body = Bytes::from(self.to_json().to_string());
        let mut res = http::Response::new(full_body(body));
        *res.status_mut() = self.status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        res
    }
}

impl From<SyntaxError> for XrpcError {
    fn from(e: SyntaxError) -> Self {
        Self::invalid_request(e.to_string())
    }
}

impl From<StoreError> for XrpcError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RootConflict { .. } => {
                Self::new(StatusCode::CONFLICT, "InvalidSwap", e.to_string())
            }
            StoreError::AlreadyExists { .. } => Self::invalid_request(e.to_string()),
            StoreError::InvalidInviteCode => Self::new(
                StatusCode::BAD_REQUEST,
                "InvalidInviteCode",
                "invite code not available",
            ),
            StoreError::NotFound(what) => Self::not_found(format!("{what} not found")),
            StoreError::Unavailable(_) => Self::unavailable("storage is temporarily unavailable"),
            StoreError::Full(_) => Self::insufficient_storage(),
            StoreError::Backend(_) | StoreError::Corrupt(_) => Self::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = XrpcError::method_not_implemented("com.example.foo");
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(e.to_json()["error"], "MethodNotImplemented");
        assert!(
            e.to_json()["message"]
                .as_str()
                .unwrap()
                .contains("com.example.foo")
        );
    }

    #[test]
    fn store_errors_hide_internals() {
        let e: XrpcError = StoreError::Backend("disk on fire at /var/secret".into()).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("secret"));
    }

    #[test]
    fn invalid_invite_code_is_a_bad_request() {
        let e: XrpcError = StoreError::InvalidInviteCode.into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.error, "InvalidInviteCode");
    }
}
