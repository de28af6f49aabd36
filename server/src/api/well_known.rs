//! `GET /.well-known/atproto-did`: the DID of the hosted handle named by
//! the request's `Host`, as plain text, which is how other services
//! resolve handles under this PDS's user domains over HTTPS.

use aurora_core::PdsContext;
use aurora_core::store::AccountLookup;
use aurora_core::syntax::Handle;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

/// Answers `/.well-known/atproto-did`.
pub async fn atproto_did(State(ctx): State<PdsContext>, headers: HeaderMap) -> Response {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no user by that name\n",
        )
            .into_response()
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return not_found();
    };
    // Strip a port; handles never have one.
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let Ok(handle) = Handle::parse(host) else {
        return not_found();
    };
    match ctx
        .accounts
        .get_account(AccountLookup::Handle(&handle))
        .await
    {
        Ok(Some(account)) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            account.did.to_string(),
        )
            .into_response(),
        Ok(None) => not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up a handle for /.well-known/atproto-did");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
