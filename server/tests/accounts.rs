//! The life of an account, end to end over HTTP against the real server
//! and an in-process PLC directory, on SQLite and Postgres (and memory):
//! sign-up, sign-in, refresh, app passwords, handle change, email flows,
//! service auth, deactivation, takedown and deletion, with the bad inputs
//! along the way.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use aurora_core::EventType;
use aurora_core::crypto::PublicKey;
use aurora_core::syntax::Did;
use aurora_server::auth::service_auth::verify_service_jwt;
use aurora_storage_testkit::plc::TestPlcDirectory;
use common::pds::{ADMIN_PASSWORD, Client, PUBLIC_URL, events_of, mailed_token, server};
use common::{Db, assert_xrpc_error};
use serde_json::{Value, json};

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
    let created = c
        .ok_post("com.atproto.server.createAccount", None, signup.clone())
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
    let me = c
        .ok_get("com.atproto.server.getSession", Some(&access), &[])
        .await;
    assert_eq!(me["did"], did.as_str());
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["emailConfirmed"], false);
    assert_eq!(me["active"], true);

    for identifier in ["alice.test", did.as_str(), "ALICE@example.com"] {
        let s = c
            .ok_post(
                "com.atproto.server.createSession",
                None,
                json!({"identifier": identifier, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(s["did"], did.as_str());
    }
    let wrong = c
        .fails_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice.test", "password": "wrong password"}),
            401,
            "AuthenticationRequired",
        )
        .await;
    let unknown = c
        .fails_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "nobody@example.com", "password": "wrong password"}),
            401,
            "AuthenticationRequired",
        )
        .await;
    assert_eq!(
        wrong["message"], unknown["message"],
        "errors must not reveal whether an account exists"
    );

    // Missing, malformed, forged tokens.
    c.fails_get(
        "com.atproto.server.getSession",
        None,
        &[],
        401,
        "AuthenticationRequired",
    )
    .await;
    c.fails_get(
        "com.atproto.server.getSession",
        Some("not.a.jwt"),
        &[],
        401,
        "InvalidToken",
    )
    .await;
    let forged = format!("{}x", &access[..access.len() - 1]);
    c.fails_get(
        "com.atproto.server.getSession",
        Some(&forged),
        &[],
        401,
        "InvalidToken",
    )
    .await;

    // Refresh rotates; a used refresh token is rejected.
    let login = c
        .ok_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice.test", "password": "correct horse battery"}),
        )
        .await;
    let refresh1 = login["refreshJwt"].as_str().unwrap().to_owned();
    let refreshed = c
        .ok_post(
            "com.atproto.server.refreshSession",
            Some(&refresh1),
            json!({}),
        )
        .await;
    let access2 = refreshed["accessJwt"].as_str().unwrap().to_owned();
    let refresh2 = refreshed["refreshJwt"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    c.fails_post(
        "com.atproto.server.refreshSession",
        Some(&refresh1),
        json!({}),
        400,
        "ExpiredToken",
    )
    .await;
    // An access token is not a refresh token.
    c.fails_post(
        "com.atproto.server.refreshSession",
        Some(&access2),
        json!({}),
        401,
        "InvalidToken",
    )
    .await;
    c.ok_get("com.atproto.server.getSession", Some(&access2), &[])
        .await;

    // Signing out ends the session's access tokens too.
    c.ok_post(
        "com.atproto.server.deleteSession",
        Some(&refresh2),
        json!({}),
    )
    .await;
    c.fails_get(
        "com.atproto.server.getSession",
        Some(&access2),
        &[],
        400,
        "ExpiredToken",
    )
    .await;
    c.fails_post(
        "com.atproto.server.refreshSession",
        Some(&refresh2),
        json!({}),
        400,
        "ExpiredToken",
    )
    .await;
    // Other sessions live on.
    c.ok_get("com.atproto.server.getSession", Some(&access), &[])
        .await;

    // --- app passwords ---------------------------------------------------
    let app = c
        .ok_post(
            "com.atproto.server.createAppPassword",
            Some(&access),
            json!({"name": "my client"}),
        )
        .await;
    let app_password = app["password"].as_str().unwrap().to_owned();
    assert_eq!(app["name"], "my client");
    c.fails_post(
        "com.atproto.server.createAppPassword",
        Some(&access),
        json!({"name": "my client"}),
        400,
        "InvalidRequest",
    )
    .await;
    let app_session = c
        .ok_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice.test", "password": app_password}),
        )
        .await;
    let app_access = app_session["accessJwt"].as_str().unwrap().to_owned();
    assert!(
        app_session.get("email").is_none(),
        "app password sessions do not see the email"
    );
    // App passwords cannot manage credentials.
    c.fails_post(
        "com.atproto.server.createAppPassword",
        Some(&app_access),
        json!({"name": "another"}),
        401,
        "InvalidToken",
    )
    .await;
    c.fails_post(
        "com.atproto.server.revokeAppPassword",
        Some(&app_access),
        json!({"name": "my client"}),
        401,
        "InvalidToken",
    )
    .await;
    c.fails_post(
        "com.atproto.server.requestAccountDelete",
        Some(&app_access),
        json!({}),
        401,
        "InvalidToken",
    )
    .await;
    let listed = c
        .ok_get(
            "com.atproto.server.listAppPasswords",
            Some(&app_access),
            &[],
        )
        .await;
    assert_eq!(listed["passwords"].as_array().unwrap().len(), 1);
    assert!(listed["passwords"][0].get("password").is_none());
    // Revoking ends its sessions at once.
    c.ok_post(
        "com.atproto.server.revokeAppPassword",
        Some(&access),
        json!({"name": "my client"}),
    )
    .await;
    c.fails_get(
        "com.atproto.server.getSession",
        Some(&app_access),
        &[],
        400,
        "ExpiredToken",
    )
    .await;
    c.fails_post(
        "com.atproto.server.createSession",
        None,
        json!({"identifier": "alice.test", "password": app_password}),
        401,
        "AuthenticationRequired",
    )
    .await;

    // --- service auth ----------------------------------------------------
    let token = c
        .ok_get(
            "com.atproto.server.getServiceAuth",
            Some(&access),
            &[
                ("aud", "did:web:api.example.com"),
                ("lxm", "app.bsky.feed.getTimeline"),
            ],
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
    c.fails_get(
        "com.atproto.server.getServiceAuth",
        Some(&access),
        &[
            ("aud", "did:web:api.example.com"),
            ("exp", far.as_str()),
            ("lxm", "app.bsky.feed.getTimeline"),
        ],
        400,
        "BadExpiration",
    )
    .await;

    // --- handle change ---------------------------------------------------
    c.ok_post(
        "com.atproto.identity.updateHandle",
        Some(&access),
        json!({"handle": "alice2.test"}),
    )
    .await;
    let resolved = c
        .ok_get(
            "com.atproto.identity.resolveHandle",
            None,
            &[("handle", "alice2.test")],
        )
        .await;
    assert_eq!(resolved["did"], did.as_str());
    c.fails_get(
        "com.atproto.identity.resolveHandle",
        None,
        &[("handle", "alice.test")],
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
    c.fails_post(
        "com.atproto.identity.updateHandle",
        Some(&access),
        json!({"handle": "not a handle"}),
        400,
        "InvalidHandle",
    )
    .await;
    let identity = c
        .ok_get(
            "com.atproto.identity.resolveIdentity",
            None,
            &[("identifier", "alice2.test")],
        )
        .await;
    assert_eq!(identity["did"], did.as_str());
    assert_eq!(identity["handle"], "alice2.test");
    assert_eq!(identity["didDoc"]["id"], did.as_str());
    let resolved = c
        .ok_get(
            "com.atproto.identity.resolveDid",
            None,
            &[("did", did.as_str())],
        )
        .await;
    assert_eq!(
        resolved["didDoc"]["alsoKnownAs"],
        json!(["at://alice2.test"])
    );
    c.fails_get(
        "com.atproto.identity.resolveDid",
        None,
        &[("did", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")],
        400,
        "DidNotFound",
    )
    .await;
    let status = c
        .ok_get("com.atproto.server.checkAccountStatus", Some(&access), &[])
        .await;
    assert_eq!(status["validDid"], true, "{status}");
    assert_eq!(status["activated"], true);
    assert_eq!(status["repoBlocks"], 2);
    assert_eq!(status["indexedRecords"], 0);
    let creds = c
        .ok_get(
            "com.atproto.identity.getRecommendedDidCredentials",
            Some(&access),
            &[],
        )
        .await;
    assert_eq!(creds["alsoKnownAs"], json!(["at://alice2.test"]));
    assert_eq!(creds["services"]["atproto_pds"]["endpoint"], PUBLIC_URL);
    assert_eq!(
        creds["verificationMethods"]["atproto"],
        signing_key.to_did_key()
    );

    // --- email confirmation and password reset ---------------------------
    c.ok_post(
        "com.atproto.server.requestEmailConfirmation",
        Some(&access),
        json!({}),
    )
    .await;
    let token = mailed_token(&server, "alice@example.com");
    c.fails_post(
        "com.atproto.server.confirmEmail",
        Some(&access),
        json!({"email": "alice@example.com", "token": "AAAAA-AAAAA"}),
        400,
        "InvalidToken",
    )
    .await;
    c.ok_post(
        "com.atproto.server.confirmEmail",
        Some(&access),
        json!({"email": "alice@example.com", "token": token}),
    )
    .await;
    let me = c
        .ok_get("com.atproto.server.getSession", Some(&access), &[])
        .await;
    assert_eq!(me["emailConfirmed"], true);

    // Reset requests answer the same for unknown addresses.
    c.ok_post(
        "com.atproto.server.requestPasswordReset",
        None,
        json!({"email": "nobody@example.com"}),
    )
    .await;
    c.ok_post(
        "com.atproto.server.requestPasswordReset",
        None,
        json!({"email": "alice@example.com"}),
    )
    .await;
    let token = mailed_token(&server, "alice@example.com");
    c.fails_post(
        "com.atproto.server.resetPassword",
        None,
        json!({"token": "AAAAA-AAAAA", "password": "a new password"}),
        400,
        "InvalidToken",
    )
    .await;
    c.ok_post(
        "com.atproto.server.resetPassword",
        None,
        json!({"token": token, "password": "a new password"}),
    )
    .await;
    // The password change ended every session.
    c.fails_get(
        "com.atproto.server.getSession",
        Some(&access),
        &[],
        400,
        "ExpiredToken",
    )
    .await;
    c.fails_post(
        "com.atproto.server.createSession",
        None,
        json!({"identifier": "alice2.test", "password": "correct horse battery"}),
        401,
        "AuthenticationRequired",
    )
    .await;
    let login = c
        .ok_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice2.test", "password": "a new password"}),
        )
        .await;
    let access = login["accessJwt"].as_str().unwrap().to_owned();
    // A used reset token does not work twice.
    c.fails_post(
        "com.atproto.server.resetPassword",
        None,
        json!({"token": token, "password": "yet another pw"}),
        400,
        "InvalidToken",
    )
    .await;

    // --- deactivation ----------------------------------------------------
    c.ok_post(
        "com.atproto.server.deactivateAccount",
        Some(&access),
        json!({}),
    )
    .await;
    let me = c
        .ok_get("com.atproto.server.getSession", Some(&access), &[])
        .await;
    assert_eq!(me["active"], false);
    assert_eq!(me["status"], "deactivated");
    let status = c
        .ok_get("com.atproto.server.checkAccountStatus", Some(&access), &[])
        .await;
    assert_eq!(status["activated"], false);
    assert_eq!(status["repoRev"], root.rev.as_str());
    c.fails_post(
        "com.atproto.identity.updateHandle",
        Some(&access),
        json!({"handle": "alice3.test"}),
        401,
        "AccountDeactivated",
    )
    .await;
    let (t, last) = events_of(&server, &did).await.pop().unwrap();
    assert_eq!(
        (t, last["active"].clone(), last["status"].clone()),
        (EventType::Account, json!(false), json!("deactivated"))
    );
    c.ok_post(
        "com.atproto.server.activateAccount",
        Some(&access),
        json!({}),
    )
    .await;
    let me = c
        .ok_get("com.atproto.server.getSession", Some(&access), &[])
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
    c.fails_get(
        "com.atproto.server.getSession",
        Some(&access),
        &[],
        400,
        "ExpiredToken",
    )
    .await;
    c.fails_post(
        "com.atproto.server.createSession",
        None,
        json!({"identifier": "alice2.test", "password": "a new password"}),
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
    let login = c
        .ok_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "alice2.test", "password": "a new password"}),
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
    let bob = c.ok_post("com.atproto.server.createAccount", None, json!({"handle": "bob.test", "email": "bob@example.com", "password": "bob's password", "inviteCode": code})).await;
    c.fails_post("com.atproto.server.createAccount", None, json!({"handle": "carol.test", "email": "carol@example.com", "password": "carol's password", "inviteCode": code}), 400, "InvalidInviteCode").await;
    let bob_did = bob["did"].as_str().unwrap().to_owned();

    // --- deletion --------------------------------------------------------
    c.ok_post(
        "com.atproto.server.requestAccountDelete",
        Some(&access),
        json!({}),
    )
    .await;
    let token = mailed_token(&server, "alice@example.com");
    c.fails_post(
        "com.atproto.server.deleteAccount",
        None,
        json!({"did": did, "password": "wrong password", "token": token}),
        401,
        "AuthenticationRequired",
    )
    .await;
    c.fails_post(
        "com.atproto.server.deleteAccount",
        None,
        json!({"did": did, "password": "a new password", "token": "AAAAA-AAAAA"}),
        400,
        "InvalidToken",
    )
    .await;
    c.ok_post(
        "com.atproto.server.deleteAccount",
        None,
        json!({"did": did, "password": "a new password", "token": token}),
    )
    .await;
    c.fails_get(
        "com.atproto.server.getSession",
        Some(&access),
        &[],
        400,
        "ExpiredToken",
    )
    .await;
    c.fails_post(
        "com.atproto.server.createSession",
        None,
        json!({"identifier": "alice2.test", "password": "a new password"}),
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

/// Signs up and returns (did, access token).
async fn sign_up(c: &Client<'_>, handle: &str, email: &str) -> (String, String) {
    let created = c
        .ok_post(
            "com.atproto.server.createAccount",
            None,
            json!({"handle": handle, "email": email, "password": "a long password"}),
        )
        .await;
    (
        created["did"].as_str().unwrap().to_owned(),
        created["accessJwt"].as_str().unwrap().to_owned(),
    )
}

/// The user changes their DID document through the PDS: a mailed token,
/// `signPlcOperation` with the change, `submitPlcOperation`; the directory
/// takes it and `#identity` announces it. Operations that would cut the
/// account off this PDS are refused.
#[tokio::test]
async fn plc_operations_signed_and_submitted_through_the_pds() {
    let plc = TestPlcDirectory::start().await;
    let server = server("plc_operations", Db::Sqlite, &plc).await.unwrap();
    let c = Client { server: &server };
    let (did, access) = sign_up(&c, "dora.test", "dora@example.com").await;
    let parsed = Did::parse(did.as_str()).unwrap();

    // Without a mailed token, nothing is signed.
    c.fails_post(
        "com.atproto.identity.signPlcOperation",
        Some(&access),
        json!({"token": "AAAAA-AAAAA"}),
        400,
        "InvalidToken",
    )
    .await;
    c.ok_post(
        "com.atproto.identity.requestPlcOperationSignature",
        Some(&access),
        json!({}),
    )
    .await;
    let token = mailed_token(&server, "dora@example.com");
    let extra = "https://dora.example.com";
    let signed = c
        .ok_post(
            "com.atproto.identity.signPlcOperation",
            Some(&access),
            json!({"token": token, "alsoKnownAs": ["at://dora.test", extra]}),
        )
        .await;
    let op = signed["operation"].clone();
    assert_eq!(op["alsoKnownAs"], json!(["at://dora.test", extra]));
    let before = plc.log(&parsed).unwrap().entries().len();
    let events_before = events_of(&server, &did).await.len();
    c.ok_post(
        "com.atproto.identity.submitPlcOperation",
        Some(&access),
        json!({"operation": op}),
    )
    .await;
    let log = plc.log(&parsed).unwrap();
    assert_eq!(log.entries().len(), before + 1);
    assert_eq!(log.document().unwrap().handles().len(), 1);
    let events = events_of(&server, &did).await;
    assert_eq!(events.len(), events_before + 1);
    assert_eq!(events.last().unwrap().0, EventType::Identity);

    // A token is used once.
    c.fails_post(
        "com.atproto.identity.signPlcOperation",
        Some(&access),
        json!({"token": token}),
        400,
        "InvalidToken",
    )
    .await;
    // An operation moving the account to another PDS is refused here.
    c.ok_post(
        "com.atproto.identity.requestPlcOperationSignature",
        Some(&access),
        json!({}),
    )
    .await;
    let token = mailed_token(&server, "dora@example.com");
    let elsewhere = c.ok_post("com.atproto.identity.signPlcOperation",
            Some(&access),
            json!({"token": token, "services": {"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": "https://elsewhere.example.com"}}})).await;
    let res = c
        .post(
            "com.atproto.identity.submitPlcOperation",
            Some(&access),
            json!({"operation": elsewhere["operation"]}),
        )
        .await;
    assert_xrpc_error(res, 400, "InvalidRequest").await;
    assert_eq!(
        plc.log(&parsed).unwrap().entries().len(),
        before + 1,
        "nothing submitted"
    );
    // A malformed operation.
    let res = c
        .post(
            "com.atproto.identity.submitPlcOperation",
            Some(&access),
            json!({"operation": {"type": "plc_operation"}}),
        )
        .await;
    assert_xrpc_error(res, 400, "InvalidRequest").await;
}

/// Serves a did:web document on loopback, as `did:web:localhost%3A<port>`.
async fn did_web_host(
    doc: std::sync::Arc<std::sync::Mutex<Value>>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/.well-known/did.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.lock().unwrap().clone()) }
        }),
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("did:web:localhost%3A{port}"), task)
}

/// An account whose did:web identity already exists moves in: the owner
/// vouches with a service token signed by the key in its DID document; the
/// account starts deactivated, reads the credentials to put in its
/// document, and once the document points here, activates.
#[tokio::test]
async fn an_existing_did_web_identity_signs_up_deactivated_and_activates() {
    use aurora_core::crypto::{Curve, SigningKey};
    use aurora_server::auth::service_auth::create_service_jwt;

    let plc = TestPlcDirectory::start().await;
    let server = server("did_web_migration", Db::Sqlite, &plc).await.unwrap();
    let c = Client { server: &server };
    let old_key = SigningKey::generate(Curve::K256);
    let doc = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let (did, _host) = did_web_host(doc.clone()).await;
    let did_doc = |key: &PublicKey, pds: &str| {
        json!({
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": did,
            "alsoKnownAs": ["at://erin.test"],
            "verificationMethod": [{"id": format!("{did}#atproto"), "type": "Multikey", "controller": did, "publicKeyMultibase": key.to_multikey()}],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}],
        })
    };
    *doc.lock().unwrap() = did_doc(&old_key.public_key(), "https://old-pds.example.com");

    let service_did = "did:web:localhost";
    let now = chrono::Utc::now();
    let lxm = aurora_core::syntax::Nsid::parse("com.atproto.server.createAccount").unwrap();
    let parsed = Did::parse(did.as_str()).unwrap();
    let token = create_service_jwt(
        &old_key,
        &parsed,
        service_did,
        Some(&lxm),
        now + chrono::TimeDelta::seconds(60),
        now,
    );
    let body = json!({"handle": "erin.test", "email": "erin@example.com", "password": "erin's password", "did": did});

    // Without a token, or with one signed by another key: refused.
    c.fails_post(
        "com.atproto.server.createAccount",
        None,
        body.clone(),
        401,
        "AuthenticationRequired",
    )
    .await;
    let stranger = SigningKey::generate(Curve::K256);
    let forged = create_service_jwt(
        &stranger,
        &parsed,
        service_did,
        Some(&lxm),
        now + chrono::TimeDelta::seconds(60),
        now,
    );
    c.fails_post(
        "com.atproto.server.createAccount",
        Some(&forged),
        body.clone(),
        401,
        "InvalidToken",
    )
    .await;
    assert!(
        server
            .ctx
            .accounts
            .list_accounts(None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let created = c
        .ok_post(
            "com.atproto.server.createAccount",
            Some(&token),
            body.clone(),
        )
        .await;
    assert_eq!(created["did"], did.as_str());
    let access = created["accessJwt"].as_str().unwrap().to_owned();
    let me = c
        .ok_get("com.atproto.server.getSession", Some(&access), &[])
        .await;
    assert_eq!(
        (me["active"].clone(), me["status"].clone()),
        (json!(false), json!("deactivated"))
    );
    assert!(
        events_of(&server, &did).await.is_empty(),
        "nothing is announced before activation"
    );
    let status = c
        .ok_get("com.atproto.server.checkAccountStatus", Some(&access), &[])
        .await;
    assert_eq!(status["validDid"], false);

    // The owner points the document here, with the new repo key.
    let creds = c
        .ok_get(
            "com.atproto.identity.getRecommendedDidCredentials",
            Some(&access),
            &[],
        )
        .await;
    let new_key =
        PublicKey::from_did_key(creds["verificationMethods"]["atproto"].as_str().unwrap()).unwrap();
    *doc.lock().unwrap() = did_doc(&new_key, PUBLIC_URL);
    let status = c
        .ok_get("com.atproto.server.checkAccountStatus", Some(&access), &[])
        .await;
    assert_eq!(status["validDid"], true, "{status}");
    c.ok_post(
        "com.atproto.server.activateAccount",
        Some(&access),
        json!({}),
    )
    .await;
    let me = c
        .ok_get("com.atproto.server.getSession", Some(&access), &[])
        .await;
    assert_eq!(me["active"], true);
    let types: Vec<EventType> = events_of(&server, &did)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(types, [EventType::Identity, EventType::Account]);
    // The same DID cannot sign up twice (even were the old key still in
    // its document).
    *doc.lock().unwrap() = did_doc(&old_key.public_key(), PUBLIC_URL);
    let again = json!({"handle": "erin2.test", "email": "erin2@example.com", "password": "erin's password", "did": did});
    c.fails_post(
        "com.atproto.server.createAccount",
        Some(&token),
        again,
        400,
        "InvalidRequest",
    )
    .await;
}

/// The operator's endpoints, behind basic auth.
async fn admin_endpoints(test: &str, db: Db) {
    let plc = TestPlcDirectory::start().await;
    let Some(server) = server(test, db, &plc).await else {
        return;
    };
    let c = Client { server: &server };
    let (did, _) = sign_up(&c, "frank.test", "frank@example.com").await;
    let (other, _) = sign_up(&c, "gina.test", "gina@example.com").await;
    let admin_get = |nsid: &str, query: Vec<(&'static str, String)>| {
        server
            .http
            .get(server.url(&format!("/xrpc/{nsid}")))
            .query(&query)
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
    };

    // Wrong password, wrong user, no auth.
    for auth in [
        Some(("admin", "wrong")),
        Some(("root", ADMIN_PASSWORD)),
        None,
    ] {
        let mut req = server
            .http
            .get(server.url("/xrpc/com.atproto.admin.getAccountInfo"))
            .query(&[("did", did.as_str())]);
        if let Some((user, pass)) = auth {
            req = req.basic_auth(user, Some(pass));
        }
        assert_xrpc_error(req.send().await.unwrap(), 401, "AuthenticationRequired").await;
    }

    let infos = Client::ok(
        admin_get(
            "com.atproto.admin.getAccountInfos",
            vec![("dids", did.clone()), ("dids", other.clone())],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(infos["infos"].as_array().unwrap().len(), 2);

    Client::ok(
        c.admin_post(
            "com.atproto.admin.updateAccountHandle",
            json!({"did": did, "handle": "frankie.test"}),
        )
        .await,
    )
    .await;
    Client::ok(
        c.admin_post(
            "com.atproto.admin.updateAccountEmail",
            json!({"account": did, "email": "frankie@example.com"}),
        )
        .await,
    )
    .await;
    assert_xrpc_error(
        c.admin_post(
            "com.atproto.admin.updateAccountHandle",
            json!({"did": did, "handle": "gina.test"}),
        )
        .await,
        400,
        "HandleNotAvailable",
    )
    .await;
    Client::ok(
        c.admin_post(
            "com.atproto.admin.updateAccountPassword",
            json!({"did": did, "password": "operator set this"}),
        )
        .await,
    )
    .await;
    let info = Client::ok(
        admin_get(
            "com.atproto.admin.getAccountInfo",
            vec![("did", did.clone())],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (info["handle"].clone(), info["email"].clone()),
        (json!("frankie.test"), json!("frankie@example.com"))
    );
    c.ok_post(
        "com.atproto.server.createSession",
        None,
        json!({"identifier": "frankie.test", "password": "operator set this"}),
    )
    .await;

    // Invite codes: list, disable.
    let made = Client::ok(
        c.admin_post(
            "com.atproto.server.createInviteCodes",
            json!({"codeCount": 2, "useCount": 3, "forAccounts": [did]}),
        )
        .await,
    )
    .await;
    assert_eq!(made["codes"][0]["codes"].as_array().unwrap().len(), 2);
    let listed = Client::ok(
        admin_get(
            "com.atproto.admin.getInviteCodes",
            vec![("limit", "1".to_owned())],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(listed["codes"].as_array().unwrap().len(), 1);
    let cursor = listed["cursor"].as_str().unwrap().to_owned();
    let rest = Client::ok(
        admin_get(
            "com.atproto.admin.getInviteCodes",
            vec![("limit", "10".to_owned()), ("cursor", cursor)],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(rest["codes"].as_array().unwrap().len(), 1);
    Client::ok(
        c.admin_post(
            "com.atproto.admin.disableInviteCodes",
            json!({"accounts": [did]}),
        )
        .await,
    )
    .await;
    let code = made["codes"][0]["codes"][0].as_str().unwrap();
    c.fails_post("com.atproto.server.createAccount", None, json!({"handle": "hank.test", "email": "hank@example.com", "password": "hank's password", "inviteCode": code}), 400, "InvalidInviteCode").await;

    // Deletion by the operator.
    Client::ok(
        c.admin_post("com.atproto.admin.deleteAccount", json!({"did": did}))
            .await,
    )
    .await;
    assert_xrpc_error(
        admin_get(
            "com.atproto.admin.getAccountInfo",
            vec![("did", did.clone())],
        )
        .await
        .unwrap(),
        400,
        "AccountNotFound",
    )
    .await;
    let events = events_of(&server, &did).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["status"], "deleted");
    assert_eq!(
        server
            .ctx
            .accounts
            .list_accounts(None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn admin_endpoints_on_sqlite() {
    admin_endpoints("admin_endpoints_on_sqlite", Db::Sqlite).await;
}

#[tokio::test]
async fn admin_endpoints_on_postgres() {
    admin_endpoints("admin_endpoints_on_postgres", Db::Postgres).await;
}
