//! The life of an account, end to end over HTTP against the real server
//! and an in-process PLC directory, on SQLite and Postgres (and memory):
//! sign-up, sign-in, refresh, app passwords, handle change, email flows,
//! service auth, deactivation, takedown and deletion, with the bad inputs
//! along the way.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use aurora_core::EventType;
use aurora_core::crypto::PublicKey;
use aurora_core::event::decode_payload;
use aurora_core::syntax::Did;
use aurora_server::auth::service_auth::verify_service_jwt;
use aurora_storage_testkit::plc::TestPlcDirectory;
use common::{Db, TestServer, assert_xrpc_error, start};
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "admin-password-for-tests-only";
const PUBLIC_URL: &str = "https://pds.test";

async fn server(test: &str, db: Db, plc: &TestPlcDirectory) -> Option<TestServer> {
    let plc_url = plc.url();
    start(
        test,
        db,
        |c| {
            c.plc_url = plc_url;
            c.public_url = Some(PUBLIC_URL.to_owned());
            c.admin_password = Some(aurora_server::config::Secret::new(ADMIN_PASSWORD));
            c.user_domains = vec![".test".to_owned()];
        },
        |b| b,
    )
    .await
}

/// A small XRPC client.
struct Client<'a> {
    server: &'a TestServer,
}

impl Client<'_> {
    async fn post(&self, nsid: &str, token: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self
            .server
            .http
            .post(self.server.url(&format!("/xrpc/{nsid}")))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    async fn get(
        &self,
        nsid: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .server
            .http
            .get(self.server.url(&format!("/xrpc/{nsid}")))
            .query(query);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    async fn admin_post(&self, nsid: &str, body: Value) -> reqwest::Response {
        self.server
            .http
            .post(self.server.url(&format!("/xrpc/{nsid}")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn ok(res: reqwest::Response) -> Value {
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{status}: {body}");
        body
    }
}

/// The newest mail in the server's outbox to `to`: its token.
fn mailed_token(server: &TestServer, to: &str) -> String {
    let outbox = std::fs::read_to_string(server.data_dir.join("mail/outbox.jsonl")).unwrap();
    let mail: Value = outbox
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|m| m["to"] == to)
        .unwrap();
    let text = mail["text"].as_str().unwrap();
    text.split_whitespace()
        .find(|w| w.len() == 11 && w.as_bytes()[5] == b'-')
        .unwrap()
        .to_owned()
}

/// The event types sequenced for `did`, in order (invalidated ones are
/// not served).
async fn events_of(server: &TestServer, did: &str) -> Vec<(EventType, Value)> {
    let events = server.ctx.sequencer.events_after(0, 10_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.did.as_str() == did)
        .map(|e| {
            let body = decode_payload(&e.payload).unwrap();
            let json = body
                .iter()
                .filter_map(|(k, v)| match v {
                    aurora_core::data::Ipld::String(s) => Some((k.clone(), json!(s))),
                    aurora_core::data::Ipld::Bool(b) => Some((k.clone(), json!(b))),
                    _ => None,
                })
                .collect::<serde_json::Map<_, _>>();
            (e.event_type, Value::Object(json))
        })
        .collect()
}

async fn life_of_an_account(test: &str, db: Db) {
    let plc = TestPlcDirectory::start().await;
    let Some(server) = server(test, db, &plc).await else {
        return;
    };
    let c = Client { server: &server };

    // --- sign-up ---------------------------------------------------------
    let signup = json!({
        "handle": "alice.test",
        "email": "Alice@Example.com",
        "password": "correct horse battery",
    });
    let created = Client::ok(
        c.post("com.atproto.server.createAccount", None, signup.clone())
            .await,
    )
    .await;
    let did = created["did"].as_str().unwrap().to_owned();
    assert!(did.starts_with("did:plc:"), "{did}");
    assert_eq!(created["handle"], "alice.test");
    let access = created["accessJwt"].as_str().unwrap().to_owned();

    // The directory holds the genesis: this PDS, the handle, the server's
    // rotation key.
    let doc = plc
        .log(&Did::parse(did.as_str()).unwrap())
        .unwrap()
        .document()
        .unwrap();
    assert_eq!(doc.pds_endpoint(), Some(PUBLIC_URL));
    assert_eq!(doc.handle().unwrap().as_str(), "alice.test");
    let signing_key = doc.atproto_signing_key().unwrap();

    // #identity, #account (active), then the first #commit.
    let events = events_of(&server, &did).await;
    let types: Vec<EventType> = events.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        types,
        [EventType::Identity, EventType::Account, EventType::Commit]
    );
    assert_eq!(events[0].1["handle"], "alice.test");
    assert_eq!(events[1].1["active"], true);
    let root = server
        .ctx
        .repos
        .get_root(&Did::parse(did.as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(events[2].1["rev"], root.rev.as_str());

    // Bad sign-ups change nothing.
    for (body, status, error) in [
        (
            json!({"handle": "alice.test", "email": "other@example.com", "password": "long enough pw"}),
            400,
            "HandleNotAvailable",
        ),
        (
            json!({"handle": "ALICE.test", "email": "other@example.com", "password": "long enough pw"}),
            400,
            "HandleNotAvailable",
        ),
        (
            json!({"handle": "bob..test", "email": "bob@example.com", "password": "long enough pw"}),
            400,
            "InvalidHandle",
        ),
        (
            json!({"handle": "bo.test", "email": "bob@example.com", "password": "long enough pw"}),
            400,
            "InvalidHandle",
        ),
        (
            json!({"handle": "bob.example.org", "email": "bob@example.com", "password": "long enough pw"}),
            400,
            "UnsupportedDomain",
        ),
        (
            json!({"handle": "bob.test", "email": "not-an-email", "password": "long enough pw"}),
            400,
            "InvalidRequest",
        ),
        (
            json!({"handle": "bob.test", "email": "alice@example.com", "password": "long enough pw"}),
            400,
            "InvalidRequest",
        ),
        (
            json!({"handle": "bob.test", "email": "bob@example.com", "password": "short"}),
            400,
            "InvalidPassword",
        ),
        (
            json!({"handle": "bob.test", "email": "bob@example.com"}),
            400,
            "InvalidRequest",
        ),
        (
            json!({"email": "bob@example.com", "password": "long enough pw"}),
            400,
            "InvalidRequest",
        ),
    ] {
        let res = c
            .post("com.atproto.server.createAccount", None, body.clone())
            .await;
        assert_xrpc_error(res, status, error).await;
    }
    let accounts = server.ctx.accounts.list_accounts(None, 100).await.unwrap();
    assert_eq!(accounts.len(), 1, "failed sign-ups must store nothing");

    // --- sessions --------------------------------------------------------
    let me = Client::ok(
        c.get("com.atproto.server.getSession", Some(&access), &[])
            .await,
    )
    .await;
    assert_eq!(me["did"], did.as_str());
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["emailConfirmed"], false);
    assert_eq!(me["active"], true);

    for identifier in ["alice.test", did.as_str(), "ALICE@example.com"] {
        let s = Client::ok(
            c.post(
                "com.atproto.server.createSession",
                None,
                json!({"identifier": identifier, "password": "correct horse battery"}),
            )
            .await,
        )
        .await;
        assert_eq!(s["did"], did.as_str());
    }
    let wrong = assert_xrpc_error(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice.test", "password": "wrong password"}),
        )
        .await,
        401,
        "AuthenticationRequired",
    )
    .await;
    let unknown = assert_xrpc_error(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "nobody@example.com", "password": "wrong password"}),
        )
        .await,
        401,
        "AuthenticationRequired",
    )
    .await;
    assert_eq!(
        wrong["message"], unknown["message"],
        "errors must not reveal whether an account exists"
    );

    // Missing, malformed, forged tokens.
    assert_xrpc_error(
        c.get("com.atproto.server.getSession", None, &[]).await,
        401,
        "AuthenticationRequired",
    )
    .await;
    assert_xrpc_error(
        c.get("com.atproto.server.getSession", Some("not.a.jwt"), &[])
            .await,
        401,
        "InvalidToken",
    )
    .await;
    let forged = format!("{}x", &access[..access.len() - 1]);
    assert_xrpc_error(
        c.get("com.atproto.server.getSession", Some(&forged), &[])
            .await,
        401,
        "InvalidToken",
    )
    .await;

    // Refresh rotates; a used refresh token is rejected.
    let login = Client::ok(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice.test", "password": "correct horse battery"}),
        )
        .await,
    )
    .await;
    let refresh1 = login["refreshJwt"].as_str().unwrap().to_owned();
    let refreshed = Client::ok(
        c.post(
            "com.atproto.server.refreshSession",
            Some(&refresh1),
            json!({}),
        )
        .await,
    )
    .await;
    let access2 = refreshed["accessJwt"].as_str().unwrap().to_owned();
    let refresh2 = refreshed["refreshJwt"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    assert_xrpc_error(
        c.post(
            "com.atproto.server.refreshSession",
            Some(&refresh1),
            json!({}),
        )
        .await,
        400,
        "ExpiredToken",
    )
    .await;
    // An access token is not a refresh token.
    assert_xrpc_error(
        c.post(
            "com.atproto.server.refreshSession",
            Some(&access2),
            json!({}),
        )
        .await,
        401,
        "InvalidToken",
    )
    .await;
    Client::ok(
        c.get("com.atproto.server.getSession", Some(&access2), &[])
            .await,
    )
    .await;

    // Signing out ends the session's access tokens too.
    Client::ok(
        c.post(
            "com.atproto.server.deleteSession",
            Some(&refresh2),
            json!({}),
        )
        .await,
    )
    .await;
    assert_xrpc_error(
        c.get("com.atproto.server.getSession", Some(&access2), &[])
            .await,
        400,
        "ExpiredToken",
    )
    .await;
    assert_xrpc_error(
        c.post(
            "com.atproto.server.refreshSession",
            Some(&refresh2),
            json!({}),
        )
        .await,
        400,
        "ExpiredToken",
    )
    .await;
    // Other sessions live on.
    Client::ok(
        c.get("com.atproto.server.getSession", Some(&access), &[])
            .await,
    )
    .await;

    // --- app passwords ---------------------------------------------------
    let app = Client::ok(
        c.post(
            "com.atproto.server.createAppPassword",
            Some(&access),
            json!({"name": "my client"}),
        )
        .await,
    )
    .await;
    let app_password = app["password"].as_str().unwrap().to_owned();
    assert_eq!(app["name"], "my client");
    assert_xrpc_error(
        c.post(
            "com.atproto.server.createAppPassword",
            Some(&access),
            json!({"name": "my client"}),
        )
        .await,
        400,
        "InvalidRequest",
    )
    .await;
    let app_session = Client::ok(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice.test", "password": app_password}),
        )
        .await,
    )
    .await;
    let app_access = app_session["accessJwt"].as_str().unwrap().to_owned();
    assert!(
        app_session.get("email").is_none(),
        "app password sessions do not see the email"
    );
    // App passwords cannot manage credentials.
    assert_xrpc_error(
        c.post(
            "com.atproto.server.createAppPassword",
            Some(&app_access),
            json!({"name": "another"}),
        )
        .await,
        401,
        "InvalidToken",
    )
    .await;
    assert_xrpc_error(
        c.post(
            "com.atproto.server.revokeAppPassword",
            Some(&app_access),
            json!({"name": "my client"}),
        )
        .await,
        401,
        "InvalidToken",
    )
    .await;
    assert_xrpc_error(
        c.post(
            "com.atproto.server.requestAccountDelete",
            Some(&app_access),
            json!({}),
        )
        .await,
        401,
        "InvalidToken",
    )
    .await;
    let listed = Client::ok(
        c.get(
            "com.atproto.server.listAppPasswords",
            Some(&app_access),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(listed["passwords"].as_array().unwrap().len(), 1);
    assert!(listed["passwords"][0].get("password").is_none());
    // Revoking ends its sessions at once.
    Client::ok(
        c.post(
            "com.atproto.server.revokeAppPassword",
            Some(&access),
            json!({"name": "my client"}),
        )
        .await,
    )
    .await;
    assert_xrpc_error(
        c.get("com.atproto.server.getSession", Some(&app_access), &[])
            .await,
        400,
        "ExpiredToken",
    )
    .await;
    assert_xrpc_error(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice.test", "password": app_password}),
        )
        .await,
        401,
        "AuthenticationRequired",
    )
    .await;

    // --- service auth ----------------------------------------------------
    let token = Client::ok(
        c.get(
            "com.atproto.server.getServiceAuth",
            Some(&access),
            &[
                ("aud", "did:web:api.example.com"),
                ("lxm", "app.bsky.feed.getTimeline"),
            ],
        )
        .await,
    )
    .await;
    let lxm = aurora_core::syntax::Nsid::parse("app.bsky.feed.getTimeline").unwrap();
    let claims = verify_service_jwt(
        token["token"].as_str().unwrap(),
        &signing_key,
        "did:web:api.example.com",
        Some(&lxm),
        chrono::Utc::now(),
    )
    .unwrap();
    assert_eq!(claims.iss.as_str(), did);
    let far = (chrono::Utc::now().timestamp() + 7200).to_string();
    assert_xrpc_error(
        c.get(
            "com.atproto.server.getServiceAuth",
            Some(&access),
            &[
                ("aud", "did:web:api.example.com"),
                ("exp", far.as_str()),
                ("lxm", "app.bsky.feed.getTimeline"),
            ],
        )
        .await,
        400,
        "BadExpiration",
    )
    .await;

    // --- handle change ---------------------------------------------------
    Client::ok(
        c.post(
            "com.atproto.identity.updateHandle",
            Some(&access),
            json!({"handle": "alice2.test"}),
        )
        .await,
    )
    .await;
    let resolved = Client::ok(
        c.get(
            "com.atproto.identity.resolveHandle",
            None,
            &[("handle", "alice2.test")],
        )
        .await,
    )
    .await;
    assert_eq!(resolved["did"], did.as_str());
    assert_xrpc_error(
        c.get(
            "com.atproto.identity.resolveHandle",
            None,
            &[("handle", "alice.test")],
        )
        .await,
        400,
        "HandleNotFound",
    )
    .await;
    let doc = plc
        .log(&Did::parse(did.as_str()).unwrap())
        .unwrap()
        .document()
        .unwrap();
    assert_eq!(
        doc.handle().unwrap().as_str(),
        "alice2.test",
        "the DID document follows the handle"
    );
    let well_known = server
        .http
        .get(server.url("/.well-known/atproto-did"))
        .header("host", "alice2.test")
        .send()
        .await
        .unwrap();
    assert_eq!(well_known.status(), 200);
    assert_eq!(well_known.text().await.unwrap().trim(), did);
    let (last_type, last) = events_of(&server, &did).await.pop().unwrap();
    assert_eq!(last_type, EventType::Identity);
    assert_eq!(last["handle"], "alice2.test");
    assert_xrpc_error(
        c.post(
            "com.atproto.identity.updateHandle",
            Some(&access),
            json!({"handle": "not a handle"}),
        )
        .await,
        400,
        "InvalidHandle",
    )
    .await;
    let identity = Client::ok(
        c.get(
            "com.atproto.identity.resolveIdentity",
            None,
            &[("identifier", "alice2.test")],
        )
        .await,
    )
    .await;
    assert_eq!(identity["did"], did.as_str());
    assert_eq!(identity["handle"], "alice2.test");
    assert_eq!(identity["didDoc"]["id"], did.as_str());
    let resolved = Client::ok(
        c.get(
            "com.atproto.identity.resolveDid",
            None,
            &[("did", did.as_str())],
        )
        .await,
    )
    .await;
    assert_eq!(
        resolved["didDoc"]["alsoKnownAs"],
        json!(["at://alice2.test"])
    );
    assert_xrpc_error(
        c.get(
            "com.atproto.identity.resolveDid",
            None,
            &[("did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")],
        )
        .await,
        400,
        "DidNotFound",
    )
    .await;
    let status = Client::ok(
        c.get("com.atproto.server.checkAccountStatus", Some(&access), &[])
            .await,
    )
    .await;
    assert_eq!(status["validDid"], true, "{status}");
    assert_eq!(status["activated"], true);
    assert_eq!(status["repoBlocks"], 2);
    assert_eq!(status["indexedRecords"], 0);
    let creds = Client::ok(
        c.get(
            "com.atproto.identity.getRecommendedDidCredentials",
            Some(&access),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(creds["alsoKnownAs"], json!(["at://alice2.test"]));
    assert_eq!(creds["services"]["atproto_pds"]["endpoint"], PUBLIC_URL);
    assert_eq!(
        creds["verificationMethods"]["atproto"],
        signing_key.to_did_key()
    );

    // --- email confirmation and password reset ---------------------------
    Client::ok(
        c.post(
            "com.atproto.server.requestEmailConfirmation",
            Some(&access),
            json!({}),
        )
        .await,
    )
    .await;
    let token = mailed_token(&server, "alice@example.com");
    assert_xrpc_error(
        c.post(
            "com.atproto.server.confirmEmail",
            Some(&access),
            json!({"email": "alice@example.com", "token": "AAAAA-AAAAA"}),
        )
        .await,
        400,
        "InvalidToken",
    )
    .await;
    Client::ok(
        c.post(
            "com.atproto.server.confirmEmail",
            Some(&access),
            json!({"email": "alice@example.com", "token": token}),
        )
        .await,
    )
    .await;
    let me = Client::ok(
        c.get("com.atproto.server.getSession", Some(&access), &[])
            .await,
    )
    .await;
    assert_eq!(me["emailConfirmed"], true);

    // Reset requests answer the same for unknown addresses.
    Client::ok(
        c.post(
            "com.atproto.server.requestPasswordReset",
            None,
            json!({"email": "nobody@example.com"}),
        )
        .await,
    )
    .await;
    Client::ok(
        c.post(
            "com.atproto.server.requestPasswordReset",
            None,
            json!({"email": "alice@example.com"}),
        )
        .await,
    )
    .await;
    let token = mailed_token(&server, "alice@example.com");
    assert_xrpc_error(
        c.post(
            "com.atproto.server.resetPassword",
            None,
            json!({"token": "AAAAA-AAAAA", "password": "a new password"}),
        )
        .await,
        400,
        "InvalidToken",
    )
    .await;
    Client::ok(
        c.post(
            "com.atproto.server.resetPassword",
            None,
            json!({"token": token, "password": "a new password"}),
        )
        .await,
    )
    .await;
    // The password change ended every session.
    assert_xrpc_error(
        c.get("com.atproto.server.getSession", Some(&access), &[])
            .await,
        400,
        "ExpiredToken",
    )
    .await;
    assert_xrpc_error(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice2.test", "password": "correct horse battery"}),
        )
        .await,
        401,
        "AuthenticationRequired",
    )
    .await;
    let login = Client::ok(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice2.test", "password": "a new password"}),
        )
        .await,
    )
    .await;
    let access = login["accessJwt"].as_str().unwrap().to_owned();
    // A used reset token does not work twice.
    assert_xrpc_error(
        c.post(
            "com.atproto.server.resetPassword",
            None,
            json!({"token": token, "password": "yet another pw"}),
        )
        .await,
        400,
        "InvalidToken",
    )
    .await;

    // --- deactivation ----------------------------------------------------
    Client::ok(
        c.post(
            "com.atproto.server.deactivateAccount",
            Some(&access),
            json!({}),
        )
        .await,
    )
    .await;
    let me = Client::ok(
        c.get("com.atproto.server.getSession", Some(&access), &[])
            .await,
    )
    .await;
    assert_eq!(me["active"], false);
    assert_eq!(me["status"], "deactivated");
    let status = Client::ok(
        c.get("com.atproto.server.checkAccountStatus", Some(&access), &[])
            .await,
    )
    .await;
    assert_eq!(status["activated"], false);
    assert_eq!(status["repoRev"], root.rev.as_str());
    assert_xrpc_error(
        c.post(
            "com.atproto.identity.updateHandle",
            Some(&access),
            json!({"handle": "alice3.test"}),
        )
        .await,
        401,
        "AccountDeactivated",
    )
    .await;
    let (t, last) = events_of(&server, &did).await.pop().unwrap();
    assert_eq!(
        (t, last["active"].clone(), last["status"].clone()),
        (EventType::Account, json!(false), json!("deactivated"))
    );
    Client::ok(
        c.post(
            "com.atproto.server.activateAccount",
            Some(&access),
            json!({}),
        )
        .await,
    )
    .await;
    let me = Client::ok(
        c.get("com.atproto.server.getSession", Some(&access), &[])
            .await,
    )
    .await;
    assert_eq!(me["active"], true);

    // --- takedown (admin) -------------------------------------------------
    let subject = json!({"$type": "com.atproto.admin.defs#repoRef", "did": did});
    let res = c
        .post(
            "com.atproto.admin.updateSubjectStatus",
            Some(&access),
            json!({"subject": subject, "takedown": {"applied": true}}),
        )
        .await;
    assert_xrpc_error(res, 401, "AuthenticationRequired").await;
    let out = Client::ok(
        c.admin_post(
            "com.atproto.admin.updateSubjectStatus",
            json!({"subject": subject, "takedown": {"applied": true, "ref": "TICKET-1"}}),
        )
        .await,
    )
    .await;
    assert_eq!(out["takedown"], json!({"applied": true, "ref": "TICKET-1"}));
    assert_xrpc_error(
        c.get("com.atproto.server.getSession", Some(&access), &[])
            .await,
        400,
        "ExpiredToken",
    )
    .await;
    assert_xrpc_error(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice2.test", "password": "a new password"}),
        )
        .await,
        401,
        "AccountTakedown",
    )
    .await;
    let (t, last) = events_of(&server, &did).await.pop().unwrap();
    assert_eq!(
        (t, last["active"].clone(), last["status"].clone()),
        (EventType::Account, json!(false), json!("takendown"))
    );
    let info = Client::ok(
        server
            .http
            .get(server.url("/xrpc/com.atproto.admin.getSubjectStatus"))
            .query(&[("did", did.as_str())])
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info["takedown"]["applied"], true);
    Client::ok(
        c.admin_post(
            "com.atproto.admin.updateSubjectStatus",
            json!({"subject": subject, "takedown": {"applied": false}}),
        )
        .await,
    )
    .await;
    let login = Client::ok(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice2.test", "password": "a new password"}),
        )
        .await,
    )
    .await;
    assert_eq!(login["active"], true);
    let access = login["accessJwt"].as_str().unwrap().to_owned();
    let info = Client::ok(
        server
            .http
            .get(server.url("/xrpc/com.atproto.admin.getAccountInfo"))
            .query(&[("did", did.as_str())])
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info["handle"], "alice2.test");
    assert_eq!(info["email"], "alice@example.com");

    // --- invite codes (admin) --------------------------------------------
    let res = c
        .post(
            "com.atproto.server.createInviteCode",
            None,
            json!({"useCount": 1}),
        )
        .await;
    assert_xrpc_error(res, 401, "AuthenticationRequired").await;
    let code = Client::ok(
        c.admin_post(
            "com.atproto.server.createInviteCode",
            json!({"useCount": 1}),
        )
        .await,
    )
    .await;
    let code = code["code"].as_str().unwrap().to_owned();
    let bob = Client::ok(c.post("com.atproto.server.createAccount", None, json!({"handle": "bob.test", "email": "bob@example.com", "password": "bob's password", "inviteCode": code})).await).await;
    assert_xrpc_error(c.post("com.atproto.server.createAccount", None, json!({"handle": "carol.test", "email": "carol@example.com", "password": "carol's password", "inviteCode": code})).await, 400, "InvalidInviteCode").await;
    let bob_did = bob["did"].as_str().unwrap().to_owned();

    // --- deletion --------------------------------------------------------
    Client::ok(
        c.post(
            "com.atproto.server.requestAccountDelete",
            Some(&access),
            json!({}),
        )
        .await,
    )
    .await;
    let token = mailed_token(&server, "alice@example.com");
    assert_xrpc_error(
        c.post(
            "com.atproto.server.deleteAccount",
            None,
            json!({"did": did, "password": "wrong password", "token": token}),
        )
        .await,
        401,
        "AuthenticationRequired",
    )
    .await;
    assert_xrpc_error(
        c.post(
            "com.atproto.server.deleteAccount",
            None,
            json!({"did": did, "password": "a new password", "token": "AAAAA-AAAAA"}),
        )
        .await,
        400,
        "InvalidToken",
    )
    .await;
    Client::ok(
        c.post(
            "com.atproto.server.deleteAccount",
            None,
            json!({"did": did, "password": "a new password", "token": token}),
        )
        .await,
    )
    .await;
    assert_xrpc_error(
        c.get("com.atproto.server.getSession", Some(&access), &[])
            .await,
        400,
        "ExpiredToken",
    )
    .await;
    assert_xrpc_error(
        c.post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice2.test", "password": "a new password"}),
        )
        .await,
        401,
        "AuthenticationRequired",
    )
    .await;
    assert!(
        server
            .ctx
            .repos
            .get_root(&Did::parse(did.as_str()).unwrap())
            .await
            .unwrap()
            .is_none()
    );
    // Only the #account "deleted" event of alice is still served.
    let events = events_of(&server, &did).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].0, events[0].1["status"].clone()),
        (EventType::Account, json!("deleted"))
    );
    // Bob is untouched.
    assert_eq!(events_of(&server, &bob_did).await.len(), 3);
    let _ = PublicKey::from_did_key;
}

#[tokio::test]
async fn life_of_an_account_on_sqlite() {
    life_of_an_account("life_of_an_account_on_sqlite", Db::Sqlite).await;
}

#[tokio::test]
async fn life_of_an_account_on_postgres() {
    life_of_an_account("life_of_an_account_on_postgres", Db::Postgres).await;
}

#[tokio::test]
async fn life_of_an_account_in_memory() {
    life_of_an_account("life_of_an_account_in_memory", Db::Memory).await;
}
