//! End-to-end HTTP tests: the real application on 127.0.0.1, spoken to over
//! HTTP, on memory, SQLite and Postgres storage.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::time::Duration;

use aurora_core::http::HttpService;
use aurora_core::plugin::XrpcMethodKind;
use aurora_core::{BuildError, PdsBuilder, PdsContext, Plugin, XrpcRoute};
use aurora_server::xrpc::{into_http_service, route};
use axum::extract::Query;
use axum::routing::{get, post};
use common::{Db, assert_xrpc_error, start};
use serde_json::{Value, json};

/// A plugin with test routes and a layer that marks responses.
struct TestPlugin;

#[derive(serde::Deserialize)]
struct SlowParams {
    ms: u64,
}

impl Plugin for TestPlugin {
    fn name(&self) -> &'static str {
        "test"
    }

    fn routes(&self, _ctx: &PdsContext) -> Vec<XrpcRoute> {
        vec![
            route(
                "com.example.test.slow",
                XrpcMethodKind::Query,
                get(|Query(p): Query<SlowParams>| async move {
                    tokio::time::sleep(Duration::from_millis(p.ms)).await;
                    axum::Json(json!({ "slept": p.ms }))
                }),
            ),
            route(
                "com.example.test.big",
                XrpcMethodKind::Query,
                get(|| async { axum::Json(json!({ "text": "aurora ".repeat(4000) })) }),
            ),
            route(
                "com.example.test.echo",
                XrpcMethodKind::Procedure,
                post(|body: bytes::Bytes| async move { axum::Json(json!({ "len": body.len() })) }),
            ),
            route(
                "com.example.test.panic",
                XrpcMethodKind::Query,
                get(|Query(p): Query<SlowParams>| async move {
                    assert!(p.ms > 1_000_000, "handler bug");
                    ""
                }),
            ),
        ]
    }

    fn layer(&self, _ctx: &PdsContext, inner: HttpService) -> HttpService {
        into_http_service(
            axum::Router::new()
                .fallback_service(aurora_server::xrpc::from_http_service(inner))
                .layer(axum::middleware::map_response(
                    |mut res: axum::response::Response| async move {
                        res.headers_mut()
                            .insert("x-test-layer", "applied".parse().unwrap());
                        res
                    },
                )),
        )
    }
}

fn with_test_plugin(b: PdsBuilder) -> PdsBuilder {
    b.plugin(TestPlugin)
}

async fn health_and_describe_server(db: Db, test: &str) {
    let Some(server) = start(
        test,
        db,
        |c| {
            c.hostname = "pds.example.com".into();
            c.user_domains = vec![".example.com".into(), ".test".into()];
            c.contact_email = Some("ops@example.com".into());
            c.privacy_policy_url = Some("https://example.com/privacy".into());
        },
        |b| b,
    )
    .await
    else {
        return;
    };
    let res = server.get("/xrpc/_health").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "version": env!("CARGO_PKG_VERSION") }));

    let res = server.get("/xrpc/com.atproto.server.describeServer").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "did": "did:web:pds.example.com",
            "availableUserDomains": [".example.com", ".test"],
            "inviteCodeRequired": false,
            "phoneVerificationRequired": false,
            "links": { "privacyPolicy": "https://example.com/privacy" },
            "contact": { "email": "ops@example.com" },
        })
    );
}

#[tokio::test]
async fn health_and_describe_server_on_memory() {
    health_and_describe_server(Db::Memory, "health_and_describe_server_on_memory").await;
}

#[tokio::test]
async fn health_and_describe_server_on_sqlite() {
    health_and_describe_server(Db::Sqlite, "health_and_describe_server_on_sqlite").await;
}

#[tokio::test]
async fn health_and_describe_server_on_postgres() {
    health_and_describe_server(Db::Postgres, "health_and_describe_server_on_postgres").await;
}

#[tokio::test]
async fn unknown_invalid_and_misused_methods_get_xrpc_errors() {
    let server = start("unknown", Db::Memory, |_| {}, |b| b).await.unwrap();
    let body = assert_xrpc_error(
        server.get("/xrpc/com.example.unknown.method").await,
        501,
        "MethodNotImplemented",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("com.example.unknown.method")
    );
    for bad in [
        "/xrpc/not..valid",
        "/xrpc/com.example",
        "/xrpc/com.example.bad-name",
        "/xrpc/1com.example.x",
    ] {
        assert_xrpc_error(server.get(bad).await, 400, "InvalidRequest").await;
    }
    // A query called with POST.
    let res = server
        .http
        .post(server.url("/xrpc/com.atproto.server.describeServer"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET,HEAD");
    assert_xrpc_error(res, 405, "InvalidRequest").await;
    assert_xrpc_error(server.get("/no/such/path").await, 404, "NotFound").await;
    // The root says what this is.
    let res = server.get("/").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("AT Protocol"));
}

#[tokio::test]
async fn request_ids_cors_and_compression() {
    let server = start("layers", Db::Memory, |_| {}, with_test_plugin)
        .await
        .unwrap();
    let res = server.get("/xrpc/_health").await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let res = server
        .http
        .get(server.url("/xrpc/_health"))
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-chosen-id");

    let preflight = server
        .http
        .request(
            reqwest::Method::OPTIONS,
            server.url("/xrpc/com.atproto.repo.createRecord"),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-max-age"], "86400");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization,content-type"
    );
    let res = server
        .http
        .get(server.url("/xrpc/_health"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");

    // Large responses are gzipped when the client accepts it.
    let res = server
        .http
        .get(server.url("/xrpc/com.example.test.big"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(
        res.headers()["x-test-layer"],
        "applied",
        "plugin layer wraps plugin routes"
    );
    let compressed = res.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["text"].as_str().unwrap().len(), 28_000);
    assert!(compressed.len() < 1000);
}

#[tokio::test]
async fn body_limit_and_timeout_answer_with_xrpc_errors() {
    let server = start(
        "limits",
        Db::Memory,
        |c| {
            c.blob_max_bytes = 1024;
            c.request_timeout_secs = 1;
        },
        with_test_plugin,
    )
    .await
    .unwrap();
    let echo = server.url("/xrpc/com.example.test.echo");
    let ok = server
        .http
        .post(&echo)
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.json::<Value>().await.unwrap()["len"], 1000);
    // Declared too large.
    let res = server
        .http
        .post(&echo)
        .body(vec![7u8; 2048])
        .send()
        .await
        .unwrap();
    assert_xrpc_error(res, 413, "PayloadTooLarge").await;
    // Streamed without a length, too large.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..4)
        .map(|_| Ok(bytes::Bytes::from(vec![1u8; 512])))
        .collect();
    let res = server
        .http
        .post(&echo)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_xrpc_error(res, 413, "PayloadTooLarge").await;
    // Too slow.
    let res = server.get("/xrpc/com.example.test.slow?ms=3000").await;
    assert_xrpc_error(res, 504, "RequestTimeout").await;
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_server_lives_on() {
    let server = start("panic", Db::Memory, |_| {}, with_test_plugin)
        .await
        .unwrap();
    let res = server.get("/xrpc/com.example.test.panic?ms=1").await;
    let body = assert_xrpc_error(res, 500, "InternalServerError").await;
    assert!(!body["message"].as_str().unwrap().contains("handler bug"));
    assert_eq!(server.get("/xrpc/_health").await.status(), 200);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let mut server = start("shutdown", Db::Sqlite, |_| {}, with_test_plugin)
        .await
        .unwrap();
    let slow = tokio::spawn({
        let http = server.http.clone();
        let url = server.url("/xrpc/com.example.test.slow?ms=800");
        async move { http.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let task = server.shutdown();
    let res = slow.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["slept"], 800);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server stops once in-flight requests are done")
        .unwrap()
        .unwrap();
    // New connections are refused.
    let fresh = aurora_server::identity::http_client(Duration::from_secs(5)).unwrap();
    assert!(fresh.get(server.url("/xrpc/_health")).send().await.is_err());
}

/// Limits `method` to `limit` calls per minute (on top of the defaults).
fn limit_per_minute(c: &mut aurora_server::config::Config, method: &str, limit: u32) {
    c.rate_limits.methods.insert(
        method.to_owned(),
        vec![format!("{limit}/1m").parse().unwrap()],
    );
}

const CREATE_SESSION: &str = "/xrpc/com.atproto.server.createSession";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn rate_limited_methods_answer_429_with_ratelimit_headers() {
    let server = start(
        "rate_limits",
        Db::Memory,
        |c| limit_per_minute(c, "com.atproto.server.createSession", 2),
        |b| b,
    )
    .await
    .unwrap();
    let sign_in = |forwarded_for: &str| {
        server
            .http
            .post(server.url(CREATE_SESSION))
            .header("origin", "https://app.example")
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({ "identifier": "alice.test", "password": "hunter22" }))
            .send()
    };
    for remaining in ["1", "0"] {
        let res = sign_in("203.0.113.1").await.unwrap();
        // Not implemented yet (501); either way not refused.
        assert_ne!(res.status(), 429);
        let h = res.headers();
        assert_eq!(h["ratelimit-limit"], "2");
        assert_eq!(h["ratelimit-remaining"], remaining);
        assert_eq!(h["ratelimit-policy"], "2;w=60");
    }
    // The third call is refused, before routing, with the XRPC error body,
    // the headers, CORS and the request id. `X-Forwarded-For` is ignored:
    // the proxy is not trusted.
    let before = unix_now();
    let res = sign_in("203.0.113.2").await.unwrap();
    let h = res.headers().clone();
    let body = assert_xrpc_error(res, 429, "RateLimitExceeded").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("com.atproto.server.createSession"),
        "{body}"
    );
    assert_eq!(h["ratelimit-limit"], "2");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert_eq!(h["ratelimit-policy"], "2;w=60");
    let reset: u64 = h["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(
        (before..=unix_now() + 61).contains(&reset),
        "reset {reset} is not within the minute after {before}"
    );
    let retry_after: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(h.contains_key("x-request-id"));

    // Other methods are unaffected: unlimited ones get no headers, and a
    // limited one (createAccount, 100 per 5 minutes by default) is counted
    // on its own.
    let res = server.get("/xrpc/com.atproto.server.describeServer").await;
    assert_eq!(res.status(), 200);
    assert!(!res.headers().contains_key("ratelimit-limit"));
    let res = server
        .http
        .post(server.url("/xrpc/com.atproto.server.createAccount"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_ne!(res.status(), 429);
    assert_eq!(res.headers()["ratelimit-remaining"], "99");
    assert_eq!(res.headers()["ratelimit-policy"], "100;w=300");
    assert_eq!(server.get("/xrpc/_health").await.status(), 200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for() {
    let server = start(
        "rate_limits_proxy",
        Db::Memory,
        |c| {
            c.rate_limits.trust_proxy = true;
            limit_per_minute(c, "com.atproto.server.createSession", 1);
        },
        |b| b,
    )
    .await
    .unwrap();
    let sign_in = |forwarded_for: &'static str| {
        server
            .http
            .post(server.url(CREATE_SESSION))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({}))
            .send()
    };
    assert_ne!(sign_in("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(
        sign_in("203.0.113.1, 10.0.0.1").await.unwrap().status(),
        429
    );
    assert_ne!(sign_in("203.0.113.2").await.unwrap().status(), 429);
}

#[tokio::test]
async fn a_disabled_limiter_lets_everything_through() {
    let server = start(
        "rate_limits_disabled",
        Db::Memory,
        |c| {
            c.rate_limits.enabled = false;
            limit_per_minute(c, "com.atproto.server.createSession", 1);
        },
        |b| b,
    )
    .await
    .unwrap();
    for _ in 0..5 {
        let res = server
            .http
            .post(server.url(CREATE_SESSION))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), 429);
        assert!(!res.headers().contains_key("ratelimit-limit"));
    }
}

#[tokio::test]
async fn two_plugins_serving_one_method_is_a_build_error() {
    struct Dup;
    impl Plugin for Dup {
        fn name(&self) -> &'static str {
            "dup"
        }
        fn routes(&self, _ctx: &PdsContext) -> Vec<XrpcRoute> {
            vec![route(
                "com.atproto.server.describeServer",
                XrpcMethodKind::Query,
                get(|| async { "" }),
            )]
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = aurora_server::config::Config {
        data_dir: dir.path().to_owned(),
        database_url: Some("memory:".into()),
        ..Default::default()
    };
    let aurora = aurora_server::Aurora::open(config).await.unwrap();
    let err = aurora.builder().unwrap().plugin(Dup).build().unwrap_err();
    assert_eq!(
        err,
        BuildError::DuplicateRoute {
            nsid: "com.atproto.server.describeServer".into(),
            first: "pds-api".into(),
            second: "dup".into(),
        }
    );
}
