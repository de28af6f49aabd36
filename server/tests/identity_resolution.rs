//! Handle, DID and identity resolution against in-process services: DNS
//! through an injected TXT lookup, HTTPS well-known and `did:web` through
//! loopback servers, `did:plc` through the in-process PLC directory. No
//! test leaves the machine.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aurora_core::identity::plc::{Operation, Tombstone};
use aurora_core::syntax::{AtIdentifier, Did, Handle};
use aurora_server::identity::{
    CacheConfig, DidResolveError, DidResolver, DidResolverConfig, DnsLookupError,
    HandleResolveError, HandleResolver, HandleResolverConfig, IdentityError, IdentityResolver,
    PlcClient, TxtFuture, TxtLookup, UnavailableCause,
};
use aurora_storage_testkit::plc::{TestIdentity, TestPlcDirectory};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::{Value, json};
use url::Url;

const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const BOB: &str = "did:web:bob.example.com";

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn handle(s: &str) -> Handle {
    Handle::parse(s).unwrap()
}

/// DNS TXT answers set by the test, counting queries.
#[derive(Debug, Default)]
struct FakeDns {
    records: Mutex<HashMap<String, Result<Vec<String>, DnsLookupError>>>,
    queries: AtomicUsize,
}

impl FakeDns {
    /// Sets the TXT values of `_atproto.<handle>`.
    fn set(&self, handle: &str, values: &[&str]) {
        let values = values.iter().map(|&v| v.to_owned()).collect();
        self.records
            .lock()
            .unwrap()
            .insert(format!("_atproto.{handle}."), Ok(values));
    }

    /// Makes lookups of `_atproto.<handle>` fail.
    fn fail(&self, handle: &str) {
        self.records.lock().unwrap().insert(
            format!("_atproto.{handle}."),
            Err(DnsLookupError("SERVFAIL".to_owned())),
        );
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl TxtLookup for FakeDns {
    fn txt<'a>(&'a self, name: &'a str) -> TxtFuture<'a> {
        Box::pin(async move {
            self.queries.fetch_add(1, Ordering::SeqCst);
            let records = self.records.lock().unwrap();
            records.get(name).cloned().unwrap_or(Ok(Vec::new()))
        })
    }
}

/// Serves `app` on 127.0.0.1 and returns its base URL.
async fn serve(app: axum::Router) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Url::parse(&format!("http://{addr}")).unwrap()
}

/// A well-known server: answers by `Host` (the handle), counting requests.
async fn well_known_server(requests: Arc<AtomicUsize>) -> Url {
    async fn atproto_did(State(requests): State<Arc<AtomicUsize>>, headers: HeaderMap) -> Response {
        requests.fetch_add(1, Ordering::SeqCst);
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        match host {
            "alice.example.com" | "fallback.example.com" => (
                [(header::CONTENT_TYPE, "text/plain")],
                format!("  {ALICE}\n"),
            )
                .into_response(),
            "bob.example.com" => BOB.into_response(),
            "big.example.com" => format!("{ALICE}{}", " ".repeat(10_000)).into_response(),
            "junk.example.com" => "<html>hello</html>".into_response(),
            "error.example.com" => (StatusCode::INTERNAL_SERVER_ERROR, ALICE).into_response(),
            "moved.example.com" => Redirect::temporary("/moved-here").into_response(),
            "loop.example.com" => Redirect::temporary("/.well-known/atproto-did").into_response(),
            "slow.example.com" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                ALICE.into_response()
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }
    serve(
        axum::Router::new()
            .route("/.well-known/atproto-did", get(atproto_did))
            .route("/moved-here", get(|| async { BOB }))
            .with_state(requests),
    )
    .await
}

/// A config for tests: `.test` allowed, HTTPS sent to `well_known`.
fn handle_config(well_known: &Url) -> HandleResolverConfig {
    HandleResolverConfig {
        http_timeout: Duration::from_millis(500),
        allow_test_hosts: true,
        well_known_override: Some(well_known.clone()),
        ..HandleResolverConfig::default()
    }
}

fn no_cache(mut config: HandleResolverConfig) -> HandleResolverConfig {
    config.cache = CacheConfig::disabled();
    config
}

#[tokio::test]
async fn dns_txt_rules() {
    let requests = Arc::new(AtomicUsize::new(0));
    let well_known = well_known_server(Arc::clone(&requests)).await;
    let dns = Arc::new(FakeDns::default());
    let resolver =
        HandleResolver::with_txt_lookup(no_cache(handle_config(&well_known)), dns.clone()).unwrap();

    // One did= record among others: the answer, without asking HTTPS.
    dns.set("a.example.com", &["v=spf1 -all", &format!("did={ALICE}")]);
    assert_eq!(
        resolver.resolve(&handle("a.example.com")).await.unwrap(),
        did(ALICE)
    );
    // The same DID twice is still one DID.
    dns.set(
        "b.example.com",
        &[&format!("did={BOB}"), &format!("did={BOB}")],
    );
    assert_eq!(
        resolver.resolve(&handle("b.example.com")).await.unwrap(),
        did(BOB)
    );
    // Invalid did= values are ignored.
    dns.set("c.example.com", &["did=nope", &format!("did={BOB}")]);
    assert_eq!(
        resolver.resolve(&handle("c.example.com")).await.unwrap(),
        did(BOB)
    );
    // Handles are case-insensitive: the query is lower case.
    assert_eq!(
        resolver.resolve(&handle("A.Example.COM")).await.unwrap(),
        did(ALICE)
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0);

    // Different DIDs: resolution fails, HTTPS is not asked.
    dns.set(
        "alice.example.com",
        &[&format!("did={ALICE}"), &format!("did={BOB}")],
    );
    let err = resolver
        .resolve(&handle("alice.example.com"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        HandleResolveError::Conflicting {
            handle: handle("alice.example.com"),
            dids: vec![did(ALICE), did(BOB)],
        }
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0);

    // No did= record: HTTPS answers (alice's well-known serves ALICE).
    dns.set("fallback.example.com", &["something=else"]);
    assert_eq!(
        resolver
            .resolve(&handle("fallback.example.com"))
            .await
            .unwrap(),
        did(ALICE)
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1);

    // Neither method: not found, with both reasons.
    let err = resolver
        .resolve(&handle("nobody.example.com"))
        .await
        .unwrap_err();
    let HandleResolveError::NotFound { dns: d, https, .. } = &err else {
        panic!("expected NotFound, got {err:?}");
    };
    assert!(d.contains("no did="), "{d}");
    assert!(https.contains("404"), "{https}");

    // DNS failed and HTTPS found nothing: unavailable, not "not found".
    dns.fail("down.example.com");
    let err = resolver
        .resolve(&handle("down.example.com"))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.to_string().contains("SERVFAIL"), "{err}");
    // DNS failed but HTTPS answered: resolved.
    dns.fail("bob.example.com");
    assert_eq!(
        resolver.resolve(&handle("bob.example.com")).await.unwrap(),
        did(BOB)
    );
}

#[tokio::test]
async fn reserved_and_test_tlds() {
    let requests = Arc::new(AtomicUsize::new(0));
    let well_known = well_known_server(Arc::clone(&requests)).await;
    let dns = Arc::new(FakeDns::default());
    let resolver =
        HandleResolver::with_txt_lookup(no_cache(handle_config(&well_known)), dns.clone()).unwrap();

    // Reserved TLDs fail at once, without any lookup.
    let before = (dns.queries(), requests.load(Ordering::SeqCst));
    for h in [
        "laptop.local",
        "x.onion",
        "handle.invalid",
        "a.example",
        "b.internal",
    ] {
        let err = resolver.resolve(&handle(h)).await.unwrap_err();
        assert!(
            matches!(err, HandleResolveError::Refused { .. }),
            "{h}: {err:?}"
        );
    }
    assert_eq!(before, (dns.queries(), requests.load(Ordering::SeqCst)));

    // `.test` only when test hosts are allowed.
    let strict = HandleResolverConfig {
        allow_test_hosts: false,
        ..handle_config(&well_known)
    };
    let strict = HandleResolver::with_txt_lookup(strict, dns.clone()).unwrap();
    dns.set("alice.test", &[&format!("did={ALICE}")]);
    assert!(matches!(
        strict.resolve(&handle("alice.test")).await,
        Err(HandleResolveError::Refused { .. })
    ));
    assert_eq!(
        resolver.resolve(&handle("alice.test")).await.unwrap(),
        did(ALICE)
    );
}

#[tokio::test]
async fn https_well_known() {
    let requests = Arc::new(AtomicUsize::new(0));
    let well_known = well_known_server(Arc::clone(&requests)).await;
    let dns = Arc::new(FakeDns::default());
    let resolver =
        HandleResolver::with_txt_lookup(no_cache(handle_config(&well_known)), dns).unwrap();

    // The body is the DID, surrounding whitespace stripped; the handle
    // reaches the server as the Host.
    assert_eq!(
        resolver
            .resolve(&handle("alice.example.com"))
            .await
            .unwrap(),
        did(ALICE)
    );
    assert_eq!(
        resolver.resolve(&handle("bob.example.com")).await.unwrap(),
        did(BOB)
    );
    // A redirect is followed.
    assert_eq!(
        resolver
            .resolve(&handle("moved.example.com"))
            .await
            .unwrap(),
        did(BOB)
    );

    for (h, reason) in [
        ("big.example.com", "longer than"),
        ("junk.example.com", "is not a DID"),
        ("error.example.com", "500"),
        ("loop.example.com", "redirects"),
        ("slow.example.com", "timed out"),
        ("missing.example.com", "404"),
    ] {
        let err = resolver.resolve(&handle(h)).await.unwrap_err();
        let HandleResolveError::NotFound { https, .. } = &err else {
            panic!("{h}: expected NotFound, got {err:?}");
        };
        assert!(https.contains(reason), "{h}: {https}");
    }
}

#[tokio::test(start_paused = true)]
async fn cache_hits_expiry_fresh_and_invalidate() {
    let dns = Arc::new(FakeDns::default());
    let config = HandleResolverConfig {
        cache: CacheConfig {
            ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(10),
            capacity: 100,
        },
        allow_test_hosts: true,
        // Never asked: every handle here answers by DNS.
        well_known_override: Some(Url::parse("http://127.0.0.1:9").unwrap()),
        ..HandleResolverConfig::default()
    };
    let resolver = HandleResolver::with_txt_lookup(config, dns.clone()).unwrap();
    let alice = handle("alice.test");
    dns.set("alice.test", &[&format!("did={ALICE}")]);

    assert_eq!(resolver.resolve(&alice).await.unwrap(), did(ALICE));
    assert_eq!(resolver.resolve(&alice).await.unwrap(), did(ALICE));
    assert_eq!(dns.queries(), 1, "the second answer comes from the cache");
    // Clones share the cache.
    assert_eq!(resolver.clone().resolve(&alice).await.unwrap(), did(ALICE));
    assert_eq!(dns.queries(), 1);

    // The handle moves: the cache still says ALICE until it expires...
    dns.set("alice.test", &[&format!("did={BOB}")]);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(resolver.resolve(&alice).await.unwrap(), did(ALICE));
    // ...unless asked fresh, which also refreshes the cache.
    assert_eq!(resolver.resolve_fresh(&alice).await.unwrap(), did(BOB));
    assert_eq!(resolver.resolve(&alice).await.unwrap(), did(BOB));
    assert_eq!(dns.queries(), 2);
    dns.set("alice.test", &[&format!("did={ALICE}")]);
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(resolver.resolve(&alice).await.unwrap(), did(ALICE));
    assert_eq!(dns.queries(), 3, "expired after the TTL");

    // Failures are kept for the shorter failure TTL.
    let carol = handle("carol.test");
    dns.set(
        "carol.test",
        &[&format!("did={ALICE}"), &format!("did={BOB}")],
    );
    assert!(resolver.resolve(&carol).await.is_err());
    dns.set("carol.test", &[&format!("did={BOB}")]);
    assert!(resolver.resolve(&carol).await.is_err(), "cached failure");
    assert_eq!(dns.queries(), 4);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(resolver.resolve(&carol).await.unwrap(), did(BOB));
    assert_eq!(dns.queries(), 5);

    // Invalidate one, purge all.
    resolver.invalidate(&carol);
    assert_eq!(resolver.resolve(&carol).await.unwrap(), did(BOB));
    assert_eq!(dns.queries(), 6);
    resolver.purge();
    resolver.resolve(&alice).await.unwrap();
    resolver.resolve(&carol).await.unwrap();
    assert_eq!(dns.queries(), 8);
}

/// A PLC directory with one registered identity (handle `alice.test`).
async fn plc_with_alice() -> (TestPlcDirectory, PlcClient, TestIdentity, Did) {
    let dir = TestPlcDirectory::start().await;
    let client = PlcClient::new(&dir.url()).unwrap();
    let acct = TestIdentity::new();
    let genesis = acct.genesis("alice.test");
    let did = genesis.did().unwrap();
    client.submit(&genesis).await.unwrap();
    (dir, client, acct, did)
}

fn did_config() -> DidResolverConfig {
    DidResolverConfig {
        http_timeout: Duration::from_secs(5),
        allow_test_hosts: true,
        ..DidResolverConfig::default()
    }
}

#[tokio::test]
async fn did_plc_documents_through_the_directory() {
    let (dir, client, acct, did) = plc_with_alice().await;
    let resolver = DidResolver::new(client.clone(), did_config()).unwrap();

    let doc = resolver.resolve(&did).await.unwrap();
    assert_eq!(doc.id, did);
    assert_eq!(doc.handle(), Some(handle("alice.test")));
    assert_eq!(doc.signing_key(), Some(acct.signing.public_key()));
    assert_eq!(doc.pds_endpoint().unwrap().as_str(), "https://pds.test/");
    assert_eq!(doc.raw()["id"], did.as_str(), "the raw JSON is kept");
    assert_eq!(doc.raw()["alsoKnownAs"], json!(["at://alice.test"]));

    // An update: cached until asked fresh.
    let last = client.last_operation(&did).await.unwrap().unwrap();
    let state = dir.log(&did).unwrap().document().unwrap();
    let mut update = state.to_update(last.cid());
    update.also_known_as = vec!["at://bob.test".to_owned()];
    let update = Operation::Plc(update).sign(&acct.rotation);
    client.submit_for(&did, &update).await.unwrap();
    assert_eq!(
        resolver.resolve(&did).await.unwrap().handle(),
        Some(handle("alice.test"))
    );
    assert_eq!(
        resolver.resolve_fresh(&did).await.unwrap().handle(),
        Some(handle("bob.test"))
    );

    // Unknown DIDs are not found.
    let unknown = did_of_nobody();
    assert_eq!(
        resolver.resolve(&unknown).await.unwrap_err(),
        DidResolveError::NotFound { did: unknown }
    );

    // A tombstone deactivates the DID.
    let tombstone = Operation::Tombstone(Tombstone { prev: update.cid() }).sign(&acct.rotation);
    client.submit_for(&did, &tombstone).await.unwrap();
    resolver.invalidate(&did);
    assert_eq!(
        resolver.resolve(&did).await.unwrap_err(),
        DidResolveError::Deactivated { did: did.clone() }
    );
    // The failure is cached too.
    assert!(resolver.resolve(&did).await.is_err());
}

fn did_of_nobody() -> Did {
    TestIdentity::new().genesis("nobody.test").did().unwrap()
}

#[tokio::test]
async fn did_plc_directory_down_is_unavailable() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = PlcClient::new(&format!("http://{addr}")).unwrap();
    let resolver = DidResolver::new(client, did_config()).unwrap();
    let err = resolver.resolve(&did(ALICE)).await.unwrap_err();
    assert!(
        matches!(err, DidResolveError::Unavailable { .. }),
        "{err:?}"
    );
}

/// A `did:web:localhost%3A<port>` host serving whatever `doc` holds (with
/// `status`), and its DID.
async fn did_web_host(doc: Arc<Mutex<(StatusCode, Value)>>) -> Did {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route(
            "/.well-known/did.json",
            get(
                |State(doc): State<Arc<Mutex<(StatusCode, Value)>>>| async move {
                    let (status, body) = doc.lock().unwrap().clone();
                    (status, axum::Json(body))
                },
            ),
        )
        .with_state(doc);
    tokio::spawn(async move { axum::serve(listener, app).await });
    did(&format!("did:web:localhost%3A{port}"))
}

#[tokio::test]
async fn did_web_over_loopback() {
    let doc = Arc::new(Mutex::new((StatusCode::OK, Value::Null)));
    let web = did_web_host(Arc::clone(&doc)).await;
    let key = TestIdentity::new().signing.public_key();
    let document = json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": web.as_str(),
        "alsoKnownAs": ["at://web.test"],
        "verificationMethod": [{
            "id": format!("{web}#atproto"),
            "type": "Multikey",
            "controller": web.as_str(),
            "publicKeyMultibase": key.to_multikey(),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": "http://localhost:2583",
        }],
    });
    doc.lock().unwrap().1 = document.clone();

    let plc = PlcClient::new("http://127.0.0.1:9").unwrap();
    let resolver = DidResolver::new(plc, did_config()).unwrap();
    let web_doc = resolver.resolve(&web).await.unwrap();
    assert_eq!(web_doc.id, web);
    assert_eq!(web_doc.handle(), Some(handle("web.test")));
    assert_eq!(web_doc.signing_key(), Some(key));
    assert_eq!(
        web_doc.pds_endpoint().unwrap().as_str(),
        "http://localhost:2583/"
    );
    assert_eq!(web_doc.raw(), &document);

    // A document of another DID is refused.
    doc.lock().unwrap().1 = json!({ "id": "did:web:example.com" });
    let err = resolver.resolve_fresh(&web).await.unwrap_err();
    assert!(matches!(err, DidResolveError::Malformed { .. }), "{err:?}");
    doc.lock().unwrap().1 = json!("not a document");
    let err = resolver.resolve_fresh(&web).await.unwrap_err();
    assert!(matches!(err, DidResolveError::Malformed { .. }), "{err:?}");

    // 404 and 410.
    *doc.lock().unwrap() = (StatusCode::NOT_FOUND, json!({}));
    assert_eq!(
        resolver.resolve_fresh(&web).await.unwrap_err(),
        DidResolveError::NotFound { did: web.clone() }
    );
    *doc.lock().unwrap() = (StatusCode::GONE, json!({}));
    assert_eq!(
        resolver.resolve_fresh(&web).await.unwrap_err(),
        DidResolveError::Deactivated { did: web.clone() }
    );
    *doc.lock().unwrap() = (StatusCode::BAD_GATEWAY, json!({}));
    assert!(matches!(
        resolver.resolve_fresh(&web).await.unwrap_err(),
        DidResolveError::Unavailable { .. }
    ));

    // Without test hosts, localhost is refused before any request.
    let plc = PlcClient::new("http://127.0.0.1:9").unwrap();
    let strict = DidResolver::new(plc, DidResolverConfig::default()).unwrap();
    assert!(matches!(
        strict.resolve(&web).await.unwrap_err(),
        DidResolveError::Unsupported { .. }
    ));
}

/// An identity resolver over a PLC directory holding alice (`alice.test`),
/// with DNS set by the test and an HTTPS well-known that knows nobody.
async fn identity_setup() -> (
    IdentityResolver,
    Arc<FakeDns>,
    TestPlcDirectory,
    PlcClient,
    TestIdentity,
    Did,
) {
    let (dir, client, acct, did) = plc_with_alice().await;
    let well_known = well_known_server(Arc::new(AtomicUsize::new(0))).await;
    let dns = Arc::new(FakeDns::default());
    let handles =
        HandleResolver::with_txt_lookup(no_cache(handle_config(&well_known)), dns.clone()).unwrap();
    let dids = DidResolver::new(client.clone(), did_config()).unwrap();
    (
        IdentityResolver::new(handles, dids),
        dns,
        dir,
        client,
        acct,
        did,
    )
}

#[tokio::test]
async fn bidirectional_handle_verification() {
    let (resolver, dns, dir, client, acct, did) = identity_setup().await;
    dns.set("alice.test", &[&format!("did={did}")]);

    // Both ways: the handle is verified, from the DID or the handle.
    for id in [
        AtIdentifier::Did(did.clone()),
        AtIdentifier::Handle(handle("alice.test")),
    ] {
        let identity = resolver.resolve_identity(&id).await.unwrap();
        assert_eq!(identity.did, did);
        assert_eq!(identity.handle, Some(handle("alice.test")), "{id}");
        assert_eq!(identity.did_doc.id, did);
    }
    assert_eq!(
        resolver
            .resolve_handle(&handle("alice.test"))
            .await
            .unwrap(),
        did
    );
    let doc = resolver.resolve_did(&did).await.unwrap();
    assert_eq!(
        resolver.verified_handle(&doc).await,
        Some(handle("alice.test"))
    );

    // The handle points elsewhere: the document's claim is not verified.
    dns.set("alice.test", &[&format!("did={ALICE}")]);
    let identity = resolver
        .resolve_identity(&AtIdentifier::Did(did.clone()))
        .await
        .unwrap();
    assert_eq!(identity.handle, None);
    assert_eq!(resolver.verified_handle(&doc).await, None);
    // The handle does not resolve at all: not verified either.
    dns.set("alice.test", &[]);
    let identity = resolver
        .resolve_identity(&AtIdentifier::Did(did.clone()))
        .await
        .unwrap();
    assert_eq!(identity.handle, None);

    // A handle pointing at alice's DID that her document does not claim:
    // the identity is alice's, with her own (verified) handle.
    dns.set("alice.test", &[&format!("did={did}")]);
    dns.set("mallory.test", &[&format!("did={did}")]);
    let identity = resolver
        .resolve_identity(&AtIdentifier::Handle(handle("mallory.test")))
        .await
        .unwrap();
    assert_eq!(identity.did, did);
    assert_eq!(identity.handle, Some(handle("alice.test")));

    // The document claims a handle pointing at another DID.
    let last = client.last_operation(&did).await.unwrap().unwrap();
    let mut update = dir
        .log(&did)
        .unwrap()
        .document()
        .unwrap()
        .to_update(last.cid());
    update.also_known_as = vec!["at://bob.test".to_owned()];
    client
        .submit_for(&did, &Operation::Plc(update).sign(&acct.rotation))
        .await
        .unwrap();
    resolver.dids().invalidate(&did);
    dns.set("bob.test", &[&format!("did={BOB}")]);
    let identity = resolver
        .resolve_identity(&AtIdentifier::Did(did.clone()))
        .await
        .unwrap();
    assert_eq!(
        identity.did_doc.handle(),
        Some(handle("bob.test")),
        "claimed"
    );
    assert_eq!(identity.handle, None, "but not verified");
}

#[tokio::test]
async fn identity_errors_map_to_lexicon_errors() {
    let (resolver, dns, _dir, client, acct, alice) = identity_setup().await;

    // A handle that resolves nowhere.
    let err = resolver
        .resolve_identity(&AtIdentifier::Handle(handle("nobody.test")))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::HandleNotFound(_)), "{err:?}");
    assert_eq!(err.lexicon_error(), Some("HandleNotFound"));

    // A handle pointing at a DID the directory does not know.
    let nobody = did_of_nobody();
    dns.set("ghost.test", &[&format!("did={nobody}")]);
    let err = resolver
        .resolve_identity(&AtIdentifier::Handle(handle("ghost.test")))
        .await
        .unwrap_err();
    assert_eq!(err.lexicon_error(), Some("DidNotFound"), "{err:?}");
    let err = resolver
        .resolve_identity(&AtIdentifier::Did(did("did:web:localhost%3A1:path")))
        .await
        .unwrap_err();
    assert_eq!(err.lexicon_error(), Some("DidNotFound"), "{err:?}");

    // DNS down and no HTTPS answer: unavailable, no lexicon error.
    dns.fail("flaky.test");
    let err = resolver
        .resolve_identity(&AtIdentifier::Handle(handle("flaky.test")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::Unavailable(UnavailableCause::Handle(_))),
        "{err:?}"
    );
    assert_eq!(err.lexicon_error(), None);

    // A tombstoned DID.
    let last = client.last_operation(&alice).await.unwrap().unwrap();
    let tombstone = Operation::Tombstone(Tombstone { prev: last.cid() }).sign(&acct.rotation);
    client.submit_for(&alice, &tombstone).await.unwrap();
    let err = resolver
        .resolve_identity(&AtIdentifier::Did(alice.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::DidDeactivated(_)), "{err:?}");
    assert_eq!(err.lexicon_error(), Some("DidDeactivated"));
}
