//! The HTTP side of `subscribeRepos`: the `cursor` parameter, the
//! WebSocket upgrade, and the bridge from axum to the framework-free route
//! type of `aurora-core`.

use std::sync::Arc;

use aurora_core::XrpcError;
use aurora_core::http::{HttpService, into_http_service};
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::response::{IntoResponse, Response};
use http::Uri;

use crate::stream::{self, Firehose};

/// The largest message a client may send us (we expect only control
/// frames).
const MAX_INCOMING: usize = 64 * 1024;
/// Bytes read from a subscriber's socket at a time.
const READ_BUFFER: usize = 4 * 1024;

/// The route's service: `GET /xrpc/com.atproto.sync.subscribeRepos`.
pub(crate) fn service(firehose: Arc<Firehose>) -> HttpService {
    into_http_service(axum::routing::get(subscribe_repos).with_state(firehose))
}

fn xrpc_error(e: XrpcError) -> Response {
    e.into_response().map(axum::body::Body::new)
}

/// `cursor`: the last `seq` the client has seen (a non-negative integer).
fn cursor(uri: &Uri) -> Result<Option<i64>, XrpcError> {
    let mut cursor = None;
    for pair in uri.query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "cursor" {
            let value: i64 = value.parse().map_err(|_| {
                XrpcError::invalid_request(format!("cursor must be an integer, not {value:?}"))
            })?;
            if value < 0 {
                return Err(XrpcError::invalid_request("cursor must not be negative"));
            }
            cursor = Some(value);
        }
    }
    Ok(cursor)
}

async fn subscribe_repos(
    State(firehose): State<Arc<Firehose>>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let cursor = match cursor(&uri) {
        Ok(cursor) => cursor,
        Err(e) => return xrpc_error(e),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let status = rejection.status();
            return xrpc_error(XrpcError::new(
                status,
                "InvalidRequest",
                format!(
                    "{} is a WebSocket subscription: {}",
                    crate::SUBSCRIBE_REPOS,
                    rejection.body_text()
                ),
            ));
        }
    };
    upgrade
        // Subscribers only send pongs and a close: a small read buffer
        // instead of the default 128 KiB keeps an idle subscriber cheap.
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| stream::serve(socket, firehose, cursor))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Option<i64>, XrpcError> {
        cursor(&format!("/xrpc/x?{query}").parse::<Uri>().unwrap())
    }

    #[test]
    fn cursors() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("cursor=0").unwrap(), Some(0));
        assert_eq!(parse("other=1&cursor=42").unwrap(), Some(42));
        assert!(parse("cursor=").is_err());
        assert!(parse("cursor=abc").is_err());
        assert!(parse("cursor=-1").is_err());
    }
}
