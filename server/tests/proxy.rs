//! Service proxying against stand-in services on loopback. Each stand-in
//! is a `did:web:localhost%3A<port>` serving its DID document, and checks
//! every call as a real AppView would: it resolves the caller's DID (in
//! the in-process PLC directory), verifies the service token's signature
//! with the key found there, and checks `iss`, `aud`, `lxm` and `exp`.
//! Then it echoes what it received, or answers as a test asks.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use aurora_core::syntax::Nsid;
use aurora_server::auth::service_auth::{unverified_issuer, verify_service_jwt};
use aurora_server::identity::{DidResolver, DidResolverConfig, PlcClient};
use aurora_storage_testkit::plc::TestPlcDirectory;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use chrono::{TimeDelta, Utc};
use common::pds::{Client, sign_up};
use common::{Db, TestServer, assert_xrpc_error, start};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A stand-in service.
struct StandIn {
    did: String,
    url: String,
    /// Releases the second half of a `.stream` response.
    gate: Arc<Notify>,
}

#[derive(Clone)]
struct StandInState {
    name: &'static str,
    did: String,
    doc: Value,
    resolver: DidResolver,
    gate: Arc<Notify>,
}

/// Starts a stand-in named `name` whose DID document lists `services`
/// (id, endpoint; `None` for its own URL).
async fn stand_in(
    name: &'static str,
    plc: &TestPlcDirectory,
    services: &[(&str, Option<String>)],
) -> StandIn {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let did = format!("did:web:localhost%3A{port}");
    let url = format!("http://127.0.0.1:{port}");
    let service: Vec<Value> = services
        .iter()
        .map(|(id, endpoint)| {
            json!({
                "id": format!("#{id}"),
                "type": "TestService",
                "serviceEndpoint": endpoint.clone().unwrap_or_else(|| url.clone()),
            })
        })
        .collect();
    let doc = json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "service": service,
    });
    let resolver = DidResolver::new(
        PlcClient::new(&plc.url()).unwrap(),
        DidResolverConfig {
            allow_test_hosts: true,
            ..DidResolverConfig::default()
        },
    )
    .unwrap();
    let gate = Arc::new(Notify::new());
    let state = StandInState {
        name,
        did: did.clone(),
        doc,
        resolver,
        gate: gate.clone(),
    };
    let app = axum::Router::new()
        .route(
            "/.well-known/did.json",
            get(|State(s): State<StandInState>| async move { Json(s.doc) }),
        )
        .route("/xrpc/{nsid}", any(xrpc))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    StandIn { did, url, gate }
}

fn bad_jwt(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "BadJwt", "message": message.to_string()})),
    )
        .into_response()
}

/// Verifies the service token as an AppView does; returns its claims as JSON.
async fn verify(s: &StandInState, headers: &HeaderMap, nsid: &Nsid) -> Result<Value, Response> {
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| bad_jwt("no bearer token"))?;
    let iss = unverified_issuer(jwt).map_err(bad_jwt)?;
    let doc = s.resolver.resolve(&iss).await.map_err(bad_jwt)?;
    let key = doc
        .signing_key()
        .ok_or_else(|| bad_jwt("no key in the DID document"))?;
    let claims = verify_service_jwt(jwt, &key, &s.did, Some(nsid), Utc::now()).map_err(bad_jwt)?;
    let lifetime = claims.exp - claims.iat.ok_or_else(|| bad_jwt("no iat"))?;
    if lifetime != TimeDelta::seconds(60) {
        return Err(bad_jwt(format!("lifetime {lifetime}")));
    }
    Ok(json!({
        "iss": claims.iss.as_str(),
        "aud": claims.aud,
        "lxm": claims.lxm.map(|l| l.to_string()),
    }))
}

async fn xrpc(
    State(s): State<StandInState>,
    Path(nsid): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let nsid = Nsid::parse(nsid.as_str()).unwrap();
    let claims = match verify(&s, &headers, &nsid).await {
        Ok(claims) => claims,
        Err(res) => return res,
    };
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let name = nsid.name().to_owned();
    match name.as_str() {
        "fail400" => (
            StatusCode::BAD_REQUEST,
            [("atproto-repo-rev", "rev-err"), ("x-internal", "secret")],
            Json(json!({"error": "NoSuchThing", "message": "there is no such thing", "extra": 1})),
        )
            .into_response(),
        "fail500" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "Boom", "message": "it broke"})),
        )
            .into_response(),
        "failText" => (StatusCode::NOT_FOUND, "nothing here").into_response(),
        "stream" => {
            let gate = s.gate.clone();
            let first = futures::stream::once(async { Ok::<_, std::io::Error>("first\n") });
            let second = futures::stream::once(async move {
                gate.notified().await;
                Ok("second\n")
            });
            (
                [("content-type", "text/plain")],
                Body::from_stream(first.chain(second)),
            )
                .into_response()
        }
        _ => (
            [
                ("content-language", "ja"),
                ("atproto-repo-rev", "3rev"),
                ("atproto-content-labelers", "did:plc:labeler"),
                ("x-internal", "secret"),
            ],
            Json(json!({
                "service": s.name,
                "claims": claims,
                "method": method.as_str(),
                "path": uri.path(),
                "query": uri.query(),
                "headers": {
                    "accept-language": header("accept-language"),
                    "accept-encoding": header("accept-encoding"),
                    "atproto-accept-labelers": header("atproto-accept-labelers"),
                    "x-bsky-topics": header("x-bsky-topics"),
                    "content-type": header("content-type"),
                    "atproto-proxy": header("atproto-proxy"),
                    "cookie": header("cookie"),
                },
                "body": String::from_utf8_lossy(&body),
            })),
        )
            .into_response(),
    }
}

/// A PDS whose AppView (with its URL) and chat service (resolved) are
/// stand-ins; request bodies up to 64 KiB.
struct World {
    plc: TestPlcDirectory,
    appview: StandIn,
    chat: StandIn,
    other: StandIn,
    server: TestServer,
}

async fn world(test: &str) -> World {
    let plc = TestPlcDirectory::start().await;
    let appview = stand_in("appview", &plc, &[("bsky_appview", None)]).await;
    let chat = stand_in("chat", &plc, &[("bsky_chat", None)]).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let other = stand_in(
        "other",
        &plc,
        &[
            ("atproto_labeler", None),
            ("dead", Some(dead)),
            ("weird", Some("ftp://example.com".to_owned())),
        ],
    )
    .await;
    let plc_url = plc.url();
    let (appview_did, appview_url, chat_did) =
        (appview.did.clone(), appview.url.clone(), chat.did.clone());
    let server = start(
        test,
        Db::Memory,
        |c| {
            c.plc_url = plc_url;
            c.public_url = Some(common::pds::PUBLIC_URL.to_owned());
            c.user_domains = vec![".test".to_owned()];
            c.appview_did = Some(appview_did);
            c.appview_url = Some(appview_url);
            c.chat_did = Some(chat_did);
            c.proxy.max_request_bytes = 64 * 1024;
        },
        |b| b,
    )
    .await
    .unwrap();
    World {
        plc,
        appview,
        chat,
        other,
        server,
    }
}

/// Calls through the PDS, with a token or without.
struct Caller<'a> {
    server: &'a TestServer,
    token: Option<String>,
}

impl Caller<'_> {
    fn request(
        &self,
        method: reqwest::Method,
        nsid: &str,
        proxy: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .server
            .http
            .request(method, self.server.url(&format!("/xrpc/{nsid}")));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(p) = proxy {
            req = req.header("atproto-proxy", p);
        }
        req
    }

    async fn get(&self, nsid: &str, proxy: Option<&str>) -> reqwest::Response {
        let req = self.request(reqwest::Method::GET, nsid, proxy);
        req.send().await.unwrap()
    }

    async fn post(
        &self,
        nsid: &str,
        proxy: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let req = self.request(reqwest::Method::POST, nsid, proxy);
        req.body(body).send().await.unwrap()
    }

    /// A successful call's JSON: the stand-in's echo.
    async fn echo(&self, nsid: &str, proxy: Option<&str>) -> Value {
        Client::ok(self.get(nsid, proxy).await).await
    }

    /// Asserts that a `GET` fails with `status` and `error`.
    async fn fails(&self, nsid: &str, proxy: Option<&str>, status: u16, error: &str) -> Value {
        assert_xrpc_error(self.get(nsid, proxy).await, status, error).await
    }
}

/// A session of a new app password of `dave.test`.
async fn app_session(c: &Client<'_>, access: &str, privileged: bool) -> String {
    let name = if privileged { "privileged" } else { "plain" };
    let app = c
        .ok_post(
            "com.atproto.server.createAppPassword",
            Some(access),
            json!({"name": name, "privileged": privileged}),
        )
        .await;
    let session = c
        .ok_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "dave.test", "password": app["password"]}),
        )
        .await;
    session["accessJwt"].as_str().unwrap().to_owned()
}

/// Signs up `handle`: its DID and a caller with its access token.
async fn account<'a>(server: &'a TestServer, handle: &str) -> (String, Caller<'a>) {
    let (did, access) = sign_up(&Client { server }, handle).await;
    let caller = Caller {
        server,
        token: Some(access),
    };
    (did, caller)
}

fn json_body(value: &Value) -> Value {
    serde_json::from_str(value.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn app_bsky_and_chat_bsky_go_to_the_default_services() {
    let w = world("proxy_defaults").await;
    let (did, alice) = account(&w.server, "alice.test").await;

    // app.bsky.* without a header: the configured AppView, at its URL.
    let res = alice
        .request(reqwest::Method::GET, "app.bsky.feed.getTimeline", None)
        .header("accept-language", "ja, en;q=0.5")
        .header("atproto-accept-labelers", "did:plc:labeler;redact")
        .header("x-bsky-topics", "dev")
        .header("cookie", "session=private")
        .query(&[("limit", "5"), ("cursor", "abc")])
        .send()
        .await
        .unwrap();
    let headers = res.headers().clone();
    let echo = Client::ok(res).await;
    assert_eq!(echo["service"], "appview");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/xrpc/app.bsky.feed.getTimeline");
    assert_eq!(echo["query"], "limit=5&cursor=abc");
    // The token: the account, the AppView's bare DID, the method.
    assert_eq!(echo["claims"]["iss"], did.as_str());
    assert_eq!(echo["claims"]["aud"], w.appview.did.as_str());
    assert_eq!(echo["claims"]["lxm"], "app.bsky.feed.getTimeline");
    // Forwarded request headers, and only those.
    let sent = &echo["headers"];
    assert_eq!(sent["accept-language"], "ja, en;q=0.5");
    assert_eq!(sent["atproto-accept-labelers"], "did:plc:labeler;redact");
    assert_eq!(sent["x-bsky-topics"], "dev");
    assert_eq!(sent["accept-encoding"], "identity");
    assert_eq!(sent["cookie"], Value::Null);
    assert_eq!(sent["content-type"], Value::Null);
    // Relayed response headers, and only those.
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["content-language"], "ja");
    assert_eq!(headers["atproto-repo-rev"], "3rev");
    assert_eq!(headers["atproto-content-labelers"], "did:plc:labeler");
    assert!(headers.get("x-internal").is_none());

    // chat.bsky.*: the chat service, found through its DID document.
    let echo = alice.echo("chat.bsky.convo.listConvos", None).await;
    assert_eq!(echo["service"], "chat");
    assert_eq!(echo["claims"]["aud"], w.chat.did.as_str());
    assert_eq!(echo["claims"]["lxm"], "chat.bsky.convo.listConvos");

    // A procedure without a header goes to the AppView too, body and all.
    let mute = json!({"actor": "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"});
    let res = alice
        .request(reqwest::Method::POST, "app.bsky.graph.muteActor", None)
        .json(&mute)
        .send()
        .await
        .unwrap();
    let echo = Client::ok(res).await;
    assert_eq!(echo["service"], "appview");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert_eq!(json_body(&echo["body"]), mute);

    // The header naming the configured AppView uses its configured URL.
    let appview = format!("{}#bsky_appview", w.appview.did);
    let echo = alice
        .echo("app.bsky.actor.getProfile", Some(&appview))
        .await;
    assert_eq!(echo["service"], "appview");
    drop(w.plc);
}

#[tokio::test]
async fn the_header_sends_any_unserved_method_to_the_named_service() {
    let w = world("proxy_header").await;
    let (did, bob) = account(&w.server, "bob.test").await;
    let labeler = format!("{}#atproto_labeler", w.other.did);
    let labeler = Some(labeler.as_str());

    // A report to a labeler: a com.atproto procedure this PDS does not serve.
    let report = json!({
        "reasonType": "com.atproto.moderation.defs#reasonSpam",
        "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"},
    });
    let res = bob
        .request(
            reqwest::Method::POST,
            "com.atproto.moderation.createReport",
            labeler,
        )
        .json(&report)
        .send()
        .await
        .unwrap();
    let echo = Client::ok(res).await;
    assert_eq!(echo["service"], "other");
    assert_eq!(echo["claims"]["iss"], did.as_str());
    // The audience is the DID alone, without the service fragment.
    assert_eq!(echo["claims"]["aud"], w.other.did.as_str());
    assert_eq!(echo["claims"]["lxm"], "com.atproto.moderation.createReport");
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert_eq!(echo["headers"]["atproto-proxy"], Value::Null);
    assert_eq!(json_body(&echo["body"]), report);

    // The header wins over the default AppView for app.bsky.*.
    let echo = bob.echo("app.bsky.feed.getFeed", labeler).await;
    assert_eq!(echo["service"], "other");

    // A body streamed without a length, and a large one.
    let chunks = futures::stream::iter(["{\"a\":", "1}"].map(Ok::<_, std::io::Error>));
    let streamed = reqwest::Body::wrap_stream(chunks);
    let echo = Client::ok(bob.post("com.example.thing.doIt", labeler, streamed).await).await;
    assert_eq!(echo["body"], "{\"a\":1}");
    let big = "x".repeat(60 * 1024);
    let res = bob
        .request(reqwest::Method::POST, "com.example.thing.doIt", labeler)
        .header("content-type", "text/plain")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let echo = Client::ok(res).await;
    assert_eq!(echo["body"].as_str().map(str::len), Some(big.len()));
    assert_eq!(echo["headers"]["content-type"], "text/plain");

    // Past the limit: 413, declared or streamed.
    let too_big = "x".repeat(65 * 1024);
    let res = bob
        .post("com.example.thing.doIt", labeler, too_big.clone())
        .await;
    assert_xrpc_error(res, 413, "PayloadTooLarge").await;
    let halves = [too_big[..40_000].to_owned(), too_big[40_000..].to_owned()];
    let streamed =
        reqwest::Body::wrap_stream(futures::stream::iter(halves.map(Ok::<_, std::io::Error>)));
    let res = bob.post("com.example.thing.doIt", labeler, streamed).await;
    assert_xrpc_error(res, 413, "PayloadTooLarge").await;
    drop((w.plc, w.appview, w.chat));
}

#[tokio::test]
async fn upstream_errors_are_passed_through() {
    let w = world("proxy_upstream_errors").await;
    let (_, carol) = account(&w.server, "carol.test").await;

    // A 4xx: status, error and message as the service said; extra fields
    // and private headers dropped, atproto headers kept.
    let res = carol.get("app.bsky.test.fail400", None).await;
    assert_eq!(res.headers()["atproto-repo-rev"], "rev-err");
    assert!(res.headers().get("x-internal").is_none());
    let body = assert_xrpc_error(res, 400, "NoSuchThing").await;
    assert_eq!(
        body,
        json!({"error": "NoSuchThing", "message": "there is no such thing"})
    );

    // A 500 is a 502, with the service's error.
    let body = carol
        .fails("app.bsky.test.fail500", None, 502, "Boom")
        .await;
    assert_eq!(body["message"], "it broke");

    // A body that is not JSON: the status's own error.
    carol
        .fails("app.bsky.test.failText", None, 404, "NotFound")
        .await;

    // A service that does not answer: 502.
    let dead = format!("{}#dead", w.other.did);
    let body = carol
        .fails(
            "app.bsky.feed.getTimeline",
            Some(&dead),
            502,
            "UpstreamFailure",
        )
        .await;
    assert_eq!(body["message"], "Upstream service unreachable");
    drop((w.plc, w.appview, w.chat));
}

#[tokio::test]
async fn bad_headers_unknown_services_and_missing_auth_are_refused() {
    let w = world("proxy_refusals").await;
    let server = &w.server;
    let (_, dave) = account(server, "dave.test").await;
    let anonymous = Caller {
        server,
        token: None,
    };
    let labeler = format!("{}#atproto_labeler", w.other.did);
    let labeler = Some(labeler.as_str());
    let timeline = "app.bsky.feed.getTimeline";

    // Malformed headers: 400, checked before authentication.
    for header in [
        "#atproto_labeler".to_owned(),
        w.other.did.clone(),
        format!("{}#", w.other.did),
        format!("{}#a#b", w.other.did),
        format!("{}#atproto labeler", w.other.did),
        "notadid#atproto_labeler".to_owned(),
    ] {
        for caller in [&dave, &anonymous] {
            caller
                .fails(timeline, Some(&header), 400, "InvalidRequest")
                .await;
        }
    }
    // A service the DID document does not list, or lists with an endpoint
    // that is not http(s); a DID that does not resolve.
    for proxy in [
        format!("{}#no_such_service", w.other.did),
        format!("{}#weird", w.other.did),
        "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa#bsky_appview".to_owned(),
    ] {
        let body = dave
            .fails(timeline, Some(&proxy), 400, "InvalidRequest")
            .await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("could not resolve proxy did"),
            "{proxy}: {body}"
        );
    }

    // No session: 401, with a header or without; a bad token too.
    anonymous
        .fails(timeline, None, 401, "AuthenticationRequired")
        .await;
    anonymous
        .fails(
            "com.example.thing.get",
            labeler,
            401,
            "AuthenticationRequired",
        )
        .await;
    let forged = Caller {
        server,
        token: Some("not.a.token".to_owned()),
    };
    forged.fails(timeline, None, 401, "InvalidToken").await;

    // Preferences are the PDS's own: answered locally (not the stand-in's
    // echo), with or without a header.
    for proxy in [None, labeler] {
        let prefs = dave.echo("app.bsky.actor.getPreferences", proxy).await;
        assert_eq!(prefs, json!({"preferences": []}));
    }
    // Unserved com.atproto.* (and any other namespace) is not forwarded
    // without a header...
    for nsid in [
        "com.atproto.moderation.createReport",
        "com.example.thing.get",
    ] {
        dave.fails(nsid, None, 501, "MethodNotImplemented").await;
    }
    // ...account management not even with one (method names compare
    // without case, as in the reference)...
    for nsid in [
        "com.atproto.admin.sendEmail",
        "com.atproto.server.requestemailupdate",
    ] {
        let body = dave.fails(nsid, labeler, 400, "InvalidToken").await;
        assert_eq!(body["message"], "Bad token method");
    }
    // ...and methods served here are served here, header or not.
    let described = anonymous
        .echo("com.atproto.server.describeServer", labeler)
        .await;
    assert!(described["availableUserDomains"].is_array(), "{described}");
    let appview = format!("{}#bsky_appview", w.appview.did);
    let session = dave
        .echo("com.atproto.server.getSession", Some(&appview))
        .await;
    assert_eq!(session["handle"], "dave.test");

    // Only GET and POST are forwarded.
    let res = dave
        .request(reqwest::Method::PUT, timeline, None)
        .send()
        .await
        .unwrap();
    assert_xrpc_error(res, 400, "InvalidRequest").await;

    // App passwords: chat.bsky.* only when privileged; app.bsky.* always.
    let c = Client { server };
    let access = dave.token.clone().unwrap();
    let plain = Caller {
        server,
        token: Some(app_session(&c, &access, false).await),
    };
    let privileged = Caller {
        server,
        token: Some(app_session(&c, &access, true).await),
    };
    let chat = "chat.bsky.convo.listConvos";
    let body = plain.fails(chat, None, 400, "InvalidToken").await;
    assert_eq!(body["message"], "Bad token method");
    assert_eq!(plain.echo(timeline, None).await["service"], "appview");
    assert_eq!(privileged.echo(chat, None).await["service"], "chat");
    drop(w.plc);
}

#[tokio::test]
async fn responses_stream_through() {
    let w = world("proxy_streaming").await;
    let (_, erin) = account(&w.server, "erin.test").await;
    let mut res = erin.get("app.bsky.test.stream", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain");
    // The first part arrives while the service still holds the second: the
    // PDS does not wait for the whole body.
    let first = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("the first part is relayed before the body ends")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first\n");
    w.appview.gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second\n");
    drop((w.plc, w.chat, w.other));
}
