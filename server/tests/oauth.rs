//! ATProto OAuth end to end over HTTP against the real server: discovery,
//! PAR with DPoP nonces, the sign-in page (its form posted as a browser
//! would), the code exchange, XRPC calls with DPoP-bound tokens, refresh
//! with rotation and replay detection, revocation, and the refusals the
//! profile asks for. The client is written here against the spec: DPoP
//! proofs are signed with `p256`, independently of the server's verifier.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use aurora_core::store::OAuthRequest;
use aurora_storage_testkit::plc::TestPlcDirectory;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::pds::{Client, PUBLIC_URL, server, sign_up};
use common::{Db, TestServer};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const REDIRECT_URI: &str = "http://127.0.0.1/callback";
const SCOPE: &str = "atproto transition:generic";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `form` with a `private_key_jwt` client assertion, if there is one.
fn with_assertion(
    mut form: Vec<(&'static str, String)>,
    assertion: Option<String>,
) -> Vec<(&'static str, String)> {
    if let Some(a) = assertion {
        form.push(("client_assertion_type", JWT_BEARER.to_owned()));
        form.push(("client_assertion", a));
    }
    form
}

/// The loopback development client: its metadata is its `client_id`.
fn client_id() -> String {
    format!(
        "http://localhost?redirect_uri={}&scope={}",
        urlencode(REDIRECT_URI),
        urlencode(SCOPE)
    )
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A DPoP key, the last nonce the server gave, and the server's public
/// URL (the issuer), which proofs name.
struct Dpop {
    key: SigningKey,
    nonce: Option<String>,
    issuer: String,
}

impl Dpop {
    fn new() -> Self {
        Self::for_issuer(PUBLIC_URL)
    }

    fn for_issuer(issuer: &str) -> Self {
        Self {
            key: SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng),
            nonce: None,
            issuer: issuer.to_owned(),
        }
    }

    /// A proof for `method` on `url`, with `ath` when `token` is given.
    fn proof(&self, method: &str, url: &str, token: Option<&str>) -> String {
        let point = self.key.verifying_key().to_encoded_point(false);
        let header = json!({
            "typ": "dpop+jwt",
            "alg": "ES256",
            "jwk": {"kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())},
        });
        let mut claims = json!({
            "jti": b64(&rand::random::<[u8; 16]>()),
            "htm": method,
            "htu": url,
            "iat": chrono::Utc::now().timestamp(),
        });
        if let Some(nonce) = &self.nonce {
            claims["nonce"] = Value::from(nonce.as_str());
        }
        if let Some(token) = token {
            claims["ath"] = Value::from(b64(&Sha256::digest(token.as_bytes())));
        }
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(&serde_json::to_vec(&claims).unwrap())
        );
        let signature: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }

    /// Remembers the nonce of a response.
    fn take_nonce(&mut self, res: &reqwest::Response) {
        if let Some(nonce) = res.headers().get("dpop-nonce") {
            self.nonce = Some(nonce.to_str().unwrap().to_owned());
        }
    }
}

/// POSTs a form to an OAuth endpoint with a fresh proof.
async fn post_form(
    server: &TestServer,
    dpop: &mut Dpop,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let proof = dpop.proof("POST", &format!("{}{path}", dpop.issuer), None);
    let res = server
        .http
        .post(server.url(path))
        .header("dpop", proof)
        .form(form)
        .send()
        .await
        .unwrap();
    dpop.take_nonce(&res);
    res
}

async fn oauth_error(res: reqwest::Response, status: u16, code: &str) {
    assert_eq!(res.status().as_u16(), status, "status of {code}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(body["error_description"].as_str().is_some(), "{body}");
}

/// PKCE: a verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = b64(&rand::random::<[u8; 32]>());
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Pushes an authorization request; returns its `request_uri`.
async fn push(server: &TestServer, dpop: &mut Dpop, challenge: &str, state: &str) -> String {
    push_for(server, dpop, &client_id(), SCOPE, challenge, state).await
}

/// [`push`] for another client and scope.
async fn push_for(
    server: &TestServer,
    dpop: &mut Dpop,
    client_id: &str,
    scope: &str,
    challenge: &str,
    state: &str,
) -> String {
    let form = [
        ("client_id", client_id),
        ("response_type", "code"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("state", state),
        ("redirect_uri", REDIRECT_URI),
        ("scope", scope),
    ];
    let mut res = post_form(server, dpop, "/oauth/par", &form).await;
    if dpop.nonce.is_some() && res.status() == 400 {
        // The nonce may have rotated: one retry, as clients do.
        res = post_form(server, dpop, "/oauth/par", &form).await;
    }
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expires_in"], 300);
    body["request_uri"].as_str().unwrap().to_owned()
}

/// The value of `name="..." value="..."` in a page.
fn form_value(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\" value=\"")).unwrap();
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].replace("&amp;", "&")
}

/// Opens the sign-in page and signs in as `identifier`, approving:
/// the redirect's query parameters.
async fn sign_in_and_approve(
    server: &TestServer,
    request_uri: &str,
    identifier: &str,
    password: &str,
) -> Vec<(String, String)> {
    sign_in_and_approve_for(server, &client_id(), request_uri, identifier, password).await
}

/// [`sign_in_and_approve`] for another client.
async fn sign_in_and_approve_for(
    server: &TestServer,
    client_id: &str,
    request_uri: &str,
    identifier: &str,
    password: &str,
) -> Vec<(String, String)> {
    let page_url = format!(
        "/oauth/authorize?client_id={}&request_uri={}",
        urlencode(client_id),
        urlencode(request_uri)
    );
    let res = server.get(&page_url).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page = res.text().await.unwrap();
    assert!(
        page.contains("<label for=\"password\">Password</label>"),
        "{page}"
    );
    assert!(page.contains("name=\"viewport\""));
    if client_id.contains("transition%3Ageneric") {
        assert!(
            page.contains("Create, change and delete your posts"),
            "scopes in plain words"
        );
    }
    assert!(
        page.contains(&client_id.replace('&', "&amp;")),
        "the client is named in full"
    );
    let csrf = form_value(&page, "csrf");
    let form_uri = form_value(&page, "request_uri");

    // A post without the page's token (another site's form) is refused.
    let forged = server
        .http
        .post(server.url("/oauth/authorize"))
        .header("cookie", &cookie)
        .form(&[
            ("request_uri", form_uri.as_str()),
            ("csrf", "forged"),
            ("decision", "approve"),
            ("identifier", identifier),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // A wrong password shows the page again, with the reason.
    let wrong = server
        .http
        .post(server.url("/oauth/authorize"))
        .header("cookie", &cookie)
        .form(&[
            ("request_uri", form_uri.as_str()),
            ("csrf", csrf.as_str()),
            ("decision", "approve"),
            ("identifier", identifier),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("role=\"alert\""));

    let res = server
        .http
        .post(server.url("/oauth/authorize"))
        .header("cookie", &cookie)
        .header("origin", PUBLIC_URL)
        .form(&[
            ("request_uri", form_uri.as_str()),
            ("csrf", csrf.as_str()),
            ("decision", "approve"),
            ("identifier", identifier),
            ("password", password),
            ("remember", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://127.0.0.1/callback?")
            || location.starts_with("https://app.example/callback?"),
        "{location}"
    );
    let url = url::Url::parse(&location).unwrap();
    url.query_pairs().into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `getSession` with a DPoP-bound token.
async fn get_session(server: &TestServer, dpop: &mut Dpop, token: &str) -> reqwest::Response {
    xrpc(
        server,
        dpop,
        "GET",
        "com.atproto.server.getSession",
        token,
        None,
    )
    .await
}

/// An XRPC call with a DPoP-bound token.
async fn xrpc(
    server: &TestServer,
    dpop: &mut Dpop,
    method: &str,
    nsid: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let path = format!("/xrpc/{nsid}");
    let proof = dpop.proof(method, &format!("{}{path}", dpop.issuer), Some(token));
    let req = if method == "POST" {
        server
            .http
            .post(server.url(&path))
            .json(&body.unwrap_or(json!({})))
    } else {
        server.http.get(server.url(&path))
    };
    let res = req
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    dpop.take_nonce(&res);
    res
}

/// Exchanges `code` with `verifier`.
async fn exchange(
    server: &TestServer,
    dpop: &mut Dpop,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    exchange_for(server, dpop, &client_id(), code, verifier).await
}

/// [`exchange`] for another client.
async fn exchange_for(
    server: &TestServer,
    dpop: &mut Dpop,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> reqwest::Response {
    post_form(
        server,
        dpop,
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// Refreshes with `token`.
async fn refresh_with(server: &TestServer, dpop: &mut Dpop, token: &str) -> reqwest::Response {
    let client_id = client_id();
    post_form(
        server,
        dpop,
        "/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", token),
        ],
    )
    .await
}

async fn authorization_code_flow(test: &str, db: Db) {
    let plc = TestPlcDirectory::start().await;
    let Some(server) = server(test, db, &plc).await else {
        return;
    };
    let c = Client { server: &server };
    let (did, _) = sign_up(&c, "alice.test").await;

    // --- discovery -------------------------------------------------------
    let res = server.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(res.status(), 200);
    let meta: Value = res.json().await.unwrap();
    assert_eq!(meta["issuer"], PUBLIC_URL);
    assert_eq!(
        meta["pushed_authorization_request_endpoint"],
        format!("{PUBLIC_URL}/oauth/par")
    );
    assert_eq!(meta["require_pushed_authorization_requests"], true);
    assert_eq!(meta["dpop_signing_alg_values_supported"], json!(["ES256"]));
    let resource: Value = server
        .get("/.well-known/oauth-protected-resource")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resource["authorization_servers"], json!([PUBLIC_URL]));

    // --- PAR: the first try gets a nonce, bad requests grant nothing -----
    let mut dpop = Dpop::new();
    let (verifier, challenge) = pkce();
    let client_id = client_id();
    let first = post_form(
        &server,
        &mut dpop,
        "/oauth/par",
        &[("client_id", &client_id)],
    )
    .await;
    assert!(dpop.nonce.is_some(), "every answer carries a DPoP nonce");
    oauth_error(first, 400, "use_dpop_nonce").await;
    // Each bad request: what it lacks or breaks, and the error it gets.
    let bad_requests: [(&[(&str, &str)], &str); 4] = [
        (&[("state", "s"), ("scope", SCOPE)], "invalid_request"),
        (
            &[
                ("code_challenge", &challenge),
                ("code_challenge_method", "plain"),
                ("state", "s"),
                ("scope", SCOPE),
            ],
            "invalid_request",
        ),
        (
            &[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("scope", SCOPE),
            ],
            "invalid_request",
        ),
        (
            &[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("state", "s"),
                ("scope", "atproto transition:chat.bsky"),
            ],
            "invalid_scope",
        ),
    ];
    for (fields, error) in bad_requests {
        let mut form = vec![("client_id", client_id.as_str()), ("response_type", "code")];
        form.extend_from_slice(fields);
        let res = post_form(&server, &mut dpop, "/oauth/par", &form).await;
        oauth_error(res, 400, error).await;
    }
    let proofless = server
        .http
        .post(server.url("/oauth/par"))
        .form(&[("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    oauth_error(proofless, 401, "invalid_dpop_proof").await;

    let request_uri = push(&server, &mut dpop, &challenge, "state-1").await;
    let params = sign_in_and_approve(&server, &request_uri, "alice.test", "a long password").await;
    assert_eq!(param(&params, "iss"), Some(PUBLIC_URL));
    assert_eq!(param(&params, "state"), Some("state-1"));
    let code = param(&params, "code").unwrap().to_owned();

    // --- token: another key, a wrong redirect, then the real exchange ----
    let mut stranger = Dpop::new();
    stranger.nonce.clone_from(&dpop.nonce);
    let stolen = exchange(&server, &mut stranger, &code, &verifier).await;
    // A code is consumed by any exchange attempt: the stranger's failed
    // try spends it, so the rightful client starts over.
    oauth_error(stolen, 400, "invalid_grant").await;
    let request_uri = push(&server, &mut dpop, &challenge, "state-2").await;
    let params = sign_in_and_approve(&server, &request_uri, "alice.test", "a long password").await;
    let code = param(&params, "code").unwrap().to_owned();
    let res = exchange(&server, &mut dpop, &code, &verifier).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["token_type"], "DPoP");
    assert_eq!(tokens["sub"], did.as_str());
    assert_eq!(tokens["scope"], SCOPE);
    assert!(tokens["expires_in"].as_i64().unwrap() > 800);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // The code is single use; its replay ends the session it made.
    let replay = exchange(&server, &mut dpop, &code, &verifier).await;
    oauth_error(replay, 400, "invalid_grant").await;
    let revoked = get_session(&server, &mut dpop, &access).await;
    assert_eq!(revoked.status(), 401);
    assert!(
        revoked.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("DPoP ")
    );

    // --- a fresh session; calls with it ---------------------------------
    let (verifier, challenge) = pkce();
    let request_uri = push(&server, &mut dpop, &challenge, "state-3").await;
    let params = sign_in_and_approve(&server, &request_uri, "alice.test", "a long password").await;
    let code = param(&params, "code").unwrap().to_owned();
    let res = exchange(&server, &mut dpop, &code, &verifier).await;
    let tokens: Value = res.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh2 = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh, refresh2);

    let res = get_session(&server, &mut dpop, &access).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("dpop-nonce"));
    let session: Value = res.json().await.unwrap();
    assert_eq!(session["did"], did.as_str());
    assert!(
        session.get("email").is_none(),
        "no email without transition:email"
    );
    let post = json!({
        "repo": did,
        "collection": "app.bsky.feed.post",
        "record": {"$type": "app.bsky.feed.post", "text": "hello from an OAuth app", "createdAt": "2026-12-07T00:00:00.000Z"},
    });
    let res = xrpc(
        &server,
        &mut dpop,
        "POST",
        "com.atproto.repo.createRecord",
        &access,
        Some(post.clone()),
    )
    .await;
    assert_eq!(res.status(), 200);
    let uri = res.json::<Value>().await.unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(uri.starts_with(&format!("at://{did}/app.bsky.feed.post/")));

    // Credentials management is not for OAuth sessions.
    let res = xrpc(
        &server,
        &mut dpop,
        "POST",
        "com.atproto.server.createAppPassword",
        &access,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(res.status(), 403);

    // A replayed proof, a proof for another method or URL, a missing
    // proof, the token as a bearer token: all refused.
    let path = "/xrpc/com.atproto.server.getSession";
    let proof = dpop.proof("GET", &format!("{PUBLIC_URL}{path}"), Some(&access));
    let send = |proof: Option<String>, scheme: &'static str| {
        let mut req = server
            .http
            .get(server.url(path))
            .header("authorization", format!("{scheme} {access}"));
        if let Some(proof) = proof {
            req = req.header("dpop", proof);
        }
        req.send()
    };
    assert_eq!(
        send(Some(proof.clone()), "DPoP").await.unwrap().status(),
        200
    );
    let replayed = send(Some(proof), "DPoP").await.unwrap();
    assert_eq!(replayed.status(), 401);
    assert!(
        replayed.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_dpop_proof")
    );
    let wrong_method = dpop.proof("POST", &format!("{PUBLIC_URL}{path}"), Some(&access));
    assert_eq!(
        send(Some(wrong_method), "DPoP").await.unwrap().status(),
        401
    );
    let wrong_url = dpop.proof("GET", &server.url(path), Some(&access));
    assert_eq!(send(Some(wrong_url), "DPoP").await.unwrap().status(), 401);
    let wrong_ath = dpop.proof("GET", &format!("{PUBLIC_URL}{path}"), Some("another token"));
    assert_eq!(send(Some(wrong_ath), "DPoP").await.unwrap().status(), 401);
    assert_eq!(send(None, "DPoP").await.unwrap().status(), 401);
    let other_key = Dpop {
        nonce: dpop.nonce.clone(),
        ..Dpop::new()
    };
    let stolen_token = other_key.proof("GET", &format!("{PUBLIC_URL}{path}"), Some(&access));
    assert_eq!(
        send(Some(stolen_token), "DPoP").await.unwrap().status(),
        401
    );
    assert_eq!(send(None, "Bearer").await.unwrap().status(), 401);
    let stale_nonce = Dpop {
        key: dpop.key.clone(),
        nonce: Some("not-a-nonce".to_owned()),
        issuer: PUBLIC_URL.to_owned(),
    };
    let res = send(
        Some(stale_nonce.proof("GET", &format!("{PUBLIC_URL}{path}"), Some(&access))),
        "DPoP",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("use_dpop_nonce")
    );

    // --- refresh rotates; the old refresh token's replay ends it all -----
    let res = refresh_with(&server, &mut dpop, &refresh2).await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    let access3 = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh3 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh3, refresh2);
    let old_access = get_session(&server, &mut dpop, &access).await;
    assert_eq!(
        old_access.status(),
        401,
        "the previous access token ends with the rotation"
    );
    let res = get_session(&server, &mut dpop, &access3).await;
    assert_eq!(res.status(), 200);
    let replay = refresh_with(&server, &mut dpop, &refresh2).await;
    oauth_error(replay, 400, "invalid_grant").await;
    let res = get_session(&server, &mut dpop, &access3).await;
    assert_eq!(
        res.status(),
        401,
        "a replayed refresh token ends the session"
    );
    let res = refresh_with(&server, &mut dpop, &refresh3).await;
    oauth_error(res, 400, "invalid_grant").await;

    // --- wrong PKCE verifier, expired code -------------------------------
    let (_, challenge) = pkce();
    let request_uri = push(&server, &mut dpop, &challenge, "state-4").await;
    let params = sign_in_and_approve(&server, &request_uri, "alice.test", "a long password").await;
    let code = param(&params, "code").unwrap().to_owned();
    let (wrong_verifier, _) = pkce();
    let res = exchange(&server, &mut dpop, &code, &wrong_verifier).await;
    oauth_error(res, 400, "invalid_grant").await;

    let (verifier, challenge) = pkce();
    let request_uri = push(&server, &mut dpop, &challenge, "state-5").await;
    let params = sign_in_and_approve(&server, &request_uri, "alice.test", "a long password").await;
    let code = param(&params, "code").unwrap().to_owned();
    // Five minutes pass: the stored request's code expires.
    let store = &server.ctx.oauth;
    let request = store
        .take_oauth_request_by_code(&code)
        .await
        .unwrap()
        .unwrap();
    store
        .create_oauth_request(&OAuthRequest {
            expires_at: chrono::Utc::now() - chrono::TimeDelta::seconds(1),
            ..request
        })
        .await
        .unwrap();
    let res = exchange(&server, &mut dpop, &code, &verifier).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "This code has expired");

    // --- revocation; sessions end with a password change and a takedown --
    let new_session = |state: &'static str, identifier: &'static str| {
        let server = &server;
        let client_id = client_id.clone();
        async move {
            let mut dpop = Dpop::new();
            let (verifier, challenge) = pkce();
            let _ = post_form(
                server,
                &mut dpop,
                "/oauth/par",
                &[("client_id", &client_id)],
            )
            .await;
            let request_uri = push(server, &mut dpop, &challenge, state).await;
            let params =
                sign_in_and_approve(server, &request_uri, identifier, "a long password").await;
            let code = param(&params, "code").unwrap().to_owned();
            let res = exchange(server, &mut dpop, &code, &verifier).await;
            let tokens: Value = res.json().await.unwrap();
            (
                dpop,
                tokens["access_token"].as_str().unwrap().to_owned(),
                tokens["refresh_token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (mut d, access, refresh) = new_session("state-6", "alice.test").await;
    let res = post_form(
        &server,
        &mut d,
        "/oauth/revoke",
        &[("client_id", &client_id), ("token", &refresh)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = get_session(&server, &mut d, &access).await;
    assert_eq!(
        res.status(),
        401,
        "revoking the refresh token ends the session"
    );
    let res = post_form(
        &server,
        &mut d,
        "/oauth/revoke",
        &[("client_id", &client_id), ("token", "unknown")],
    )
    .await;
    assert_eq!(
        res.status(),
        200,
        "revoking an unknown token is not an error"
    );

    let (bob, _) = sign_up(&c, "bob.test").await;
    let (mut d, access, _) = new_session("state-7", "bob.test").await;
    let out = Client::ok(
        c.admin_post(
            "com.atproto.admin.updateSubjectStatus",
            json!({"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": bob}, "takedown": {"applied": true, "ref": "T-1"}}),
        )
        .await,
    )
    .await;
    assert_eq!(out["takedown"]["applied"], true);
    let bob_did = bob.parse().unwrap();
    assert!(
        server
            .ctx
            .oauth
            .list_oauth_sessions(&bob_did)
            .await
            .unwrap()
            .is_empty()
    );
    let res = get_session(&server, &mut d, &access).await;
    assert_eq!(res.status(), 401, "a takedown ends OAuth sessions");

    let (mut d, access, _) = new_session("state-8", "alice.test").await;
    assert_eq!(
        server
            .ctx
            .oauth
            .list_oauth_sessions(&did.parse().unwrap())
            .await
            .unwrap()
            .len(),
        1
    );
    server
        .ctx
        .accounts
        .update_password(
            &did.parse().unwrap(),
            "$argon2id$v=19$m=7168,t=5,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        )
        .await
        .unwrap();
    let res = get_session(&server, &mut d, &access).await;
    assert_eq!(res.status(), 401, "a password change ends OAuth sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_flow_sqlite() {
    authorization_code_flow("oauth_flow_sqlite", Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_flow_postgres() {
    authorization_code_flow("oauth_flow_postgres", Db::Postgres).await;
}

/// The sign-in page in a real browser: headless Chromium on a phone-sized
/// window, driven with the keyboard through sign-in and consent, then
/// again with the remembered account, then a denial. Screenshots are saved
/// under the test's output folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_page_in_a_browser() {
    let name = "sign_in_page_in_a_browser";
    if let Some(why) = common::webdriver::missing() {
        aurora_storage_testkit::skip(name, &why);
        return;
    }
    // The browser must see the server at its public URL (the issuer), so
    // that the form's origin is the issuer's.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let plc = TestPlcDirectory::start().await;
    let server = common::pds::server_with(name, Db::Sqlite, &plc, |c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(issuer.clone());
    })
    .await
    .unwrap();
    let c = Client { server: &server };
    let (did, _) = sign_up(&c, "carol.test").await;
    let browser = common::webdriver::Browser::start(390, 844).await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oauth-browser");
    let mut dpop = Dpop::for_issuer(&issuer);
    let _ = post_form(
        &server,
        &mut dpop,
        "/oauth/par",
        &[("client_id", &client_id())],
    )
    .await;
    let page_url = |request_uri: &str| {
        format!(
            "{issuer}/oauth/authorize?client_id={}&request_uri={}",
            urlencode(&client_id()),
            urlencode(request_uri)
        )
    };
    let wait_for_redirect = async |browser: &common::webdriver::Browser| {
        for _ in 0..100 {
            let url = browser.url().await;
            if url.starts_with(REDIRECT_URI) {
                return url::Url::parse(&url)
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect::<Vec<(String, String)>>();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "no redirect to the app: at {}, showing {}",
            browser.url().await,
            browser.text().await
        );
    };

    // --- sign in with the keyboard alone ---------------------------------
    let (verifier, challenge) = pkce();
    let request_uri = push(&server, &mut dpop, &challenge, "b-1").await;
    browser.goto(&page_url(&request_uri)).await;
    let text = browser.text().await;
    assert!(text.contains("Sign in to"), "{text}");
    assert!(
        text.contains("http://localhost"),
        "the app is named: {text}"
    );
    assert!(
        text.contains("Create, change and delete your posts"),
        "{text}"
    );
    // Readable on a phone: nothing wider than the screen.
    let fits = browser
        .eval("return document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(fits, json!(true));
    // Every field has a label.
    let unlabelled = browser
        .eval(
            "return [...document.querySelectorAll('input:not([type=hidden])')]\
             .filter(i => !i.labels || i.labels.length === 0).length",
        )
        .await;
    assert_eq!(unlabelled, json!(0));
    let shot = browser.screenshot(&shots.join("sign-in.png")).await;
    println!("screenshot of the sign-in page: {}", shot.display());

    let identifier = browser.find("#identifier").await;
    browser.type_into(&identifier, "carol.test").await;
    browser.keys("\u{E004}").await; // Tab
    assert_eq!(browser.focused_id().await, "password");
    browser.keys("a long password").await;
    browser.keys("\u{E004}").await;
    assert_eq!(browser.focused_id().await, "remember");
    browser.keys(" ").await; // tick "Remember this device"
    // On through the permission details to Allow, then Enter.
    for _ in 0..5 {
        browser.keys("\u{E004}").await;
        if browser.focused_id().await == "allow" {
            break;
        }
    }
    assert_eq!(browser.focused_id().await, "allow");
    browser.keys("\u{E007}").await;
    let params = wait_for_redirect(&browser).await;
    assert_eq!(param(&params, "state"), Some("b-1"));
    assert_eq!(param(&params, "iss"), Some(issuer.as_str()));
    let code = param(&params, "code").unwrap().to_owned();
    let res = exchange(&server, &mut dpop, &code, &verifier).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["sub"], did.as_str());
    let access = tokens["access_token"].as_str().unwrap();
    let res = get_session(&server, &mut dpop, access).await;
    assert_eq!(res.status(), 200);

    // --- the remembered account approves without its password ------------
    let (verifier, challenge) = pkce();
    let request_uri = push(&server, &mut dpop, &challenge, "b-2").await;
    browser.goto(&page_url(&request_uri)).await;
    let text = browser.text().await;
    assert!(
        text.contains("carol.test (signed in on this device)"),
        "{text}"
    );
    let shot = browser
        .screenshot(&shots.join("remembered-account.png"))
        .await;
    println!("screenshot with a remembered account: {}", shot.display());
    let allow = browser.find("#allow").await;
    browser.type_into(&allow, "\u{E007}").await;
    let params = wait_for_redirect(&browser).await;
    let code = param(&params, "code").unwrap().to_owned();
    assert_eq!(
        exchange(&server, &mut dpop, &code, &verifier)
            .await
            .status(),
        200
    );

    // --- a denial goes back to the app as access_denied ------------------
    let (_, challenge) = pkce();
    let request_uri = push(&server, &mut dpop, &challenge, "b-3").await;
    browser.goto(&page_url(&request_uri)).await;
    let deny = browser.find("#deny").await;
    browser.type_into(&deny, "\u{E007}").await;
    let params = wait_for_redirect(&browser).await;
    assert_eq!(param(&params, "error"), Some("access_denied"));
    assert_eq!(param(&params, "state"), Some("b-3"));
    assert_eq!(param(&params, "code"), None);

    // The two approvals made two sessions: the account page lists them,
    // and revoking one there ends it.
    let did_key: aurora_core::syntax::Did = did.parse().unwrap();
    let sessions = server
        .ctx
        .oauth
        .list_oauth_sessions(&did_key)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2);
    browser.goto(&format!("{issuer}/oauth/account")).await;
    let text = browser.text().await;
    assert!(
        text.contains("Apps and devices") && text.contains("carol.test"),
        "{text}"
    );
    assert_eq!(text.matches("Revoke").count(), 2, "{text}");
    assert!(text.contains("(this browser)"), "{text}");
    let fits = browser
        .eval("return document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(fits, json!(true), "the account page fits a phone");
    let shot = browser.screenshot(&shots.join("account-page.png")).await;
    println!("screenshot of the account page: {}", shot.display());
    let revoke = browser.find("form button[aria-label^=Revoke]").await;
    browser.type_into(&revoke, "\u{E007}").await;
    for _ in 0..50 {
        if server
            .ctx
            .oauth
            .list_oauth_sessions(&did_key)
            .await
            .unwrap()
            .len()
            == 1
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let left = server
        .ctx
        .oauth
        .list_oauth_sessions(&did_key)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, sessions[1].id, "the first listed was revoked");
    assert_eq!(browser.text().await.matches("Revoke").count(), 1);
    browser.close().await;
}

/// A session granted granular permissions can do exactly what they name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granular_scopes_limit_what_a_session_can_do() {
    let plc = TestPlcDirectory::start().await;
    let Some(server) = server("oauth_granular_scopes", Db::Sqlite, &plc).await else {
        return;
    };
    let c = Client { server: &server };
    let (did, _) = sign_up(&c, "dave.test").await;
    let scope = "atproto repo:app.bsky.feed.post?action=create blob:image/*";
    let client = format!(
        "http://localhost?redirect_uri={}&scope={}",
        urlencode(REDIRECT_URI),
        urlencode(scope)
    );
    let mut dpop = Dpop::new();
    let _ = post_form(&server, &mut dpop, "/oauth/par", &[("client_id", &client)]).await;
    let (verifier, challenge) = pkce();
    // The page names the permissions (a request of its own: opening the
    // page binds a request to the browser that opened it).
    let request_uri = push_for(&server, &mut dpop, &client, scope, &challenge, "g-0").await;
    let page = server
        .get(&format!(
            "/oauth/authorize?client_id={}&request_uri={}",
            urlencode(&client),
            urlencode(&request_uri)
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Create records: app.bsky.feed.post."),
        "{page}"
    );
    assert!(page.contains("Upload files of type image/*."), "{page}");
    let request_uri = push_for(&server, &mut dpop, &client, scope, &challenge, "g-1").await;
    let params = sign_in_and_approve_for(
        &server,
        &client,
        &request_uri,
        "dave.test",
        "a long password",
    )
    .await;
    let code = param(&params, "code").unwrap().to_owned();
    let res = exchange_for(&server, &mut dpop, &client, &code, &verifier).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["scope"], scope);
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    let record = |collection: &str| {
        json!({
            "repo": did,
            "collection": collection,
            "record": {"$type": collection, "text": "granted", "createdAt": "2026-12-07T00:00:00.000Z",
                       "subject": {"uri": format!("at://{did}/app.bsky.feed.post/3jzfcijpj2z2a"), "cid": "bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a"}},
        })
    };
    let res = xrpc(
        &server,
        &mut dpop,
        "POST",
        "com.atproto.repo.createRecord",
        &access,
        Some(record("app.bsky.feed.post")),
    )
    .await;
    assert_eq!(res.status(), 200, "the granted collection and action");
    let rkey = res.json::<Value>().await.unwrap()["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let refused = [
        (
            "com.atproto.repo.createRecord",
            Some(record("app.bsky.feed.like")),
            "repo:app.bsky.feed.like?action=create",
        ),
        (
            "com.atproto.repo.deleteRecord",
            Some(json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey})),
            "repo:app.bsky.feed.post?action=delete",
        ),
        (
            "com.atproto.repo.putRecord",
            Some(
                json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey, "record": {"$type": "app.bsky.feed.post", "text": "edited", "createdAt": "2026-12-07T00:00:00.000Z"}}),
            ),
            "repo:app.bsky.feed.post?action",
        ),
        (
            "com.atproto.identity.updateHandle",
            Some(json!({"handle": "dave2.test"})),
            "identity:handle",
        ),
        ("app.bsky.actor.getPreferences", None, "transition:generic"),
    ];
    for (nsid, body, needed) in refused {
        let method = if body.is_some() { "POST" } else { "GET" };
        let res = xrpc(&server, &mut dpop, method, nsid, &access, body).await;
        assert_eq!(res.status(), 403, "{nsid}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "InsufficientScope", "{nsid}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(needed),
            "{nsid}: {body}"
        );
    }

    // Blobs: images yes, other types no.
    let upload = |mime: &'static str, token: String, proof: String| {
        server
            .http
            .post(server.url("/xrpc/com.atproto.repo.uploadBlob"))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .header("content-type", mime)
            .body(b"\x89PNG\r\n\x1a\n0000".to_vec())
            .send()
    };
    let url = format!("{PUBLIC_URL}/xrpc/com.atproto.repo.uploadBlob");
    let res = upload(
        "image/png",
        access.clone(),
        dpop.proof("POST", &url, Some(&access)),
    )
    .await
    .unwrap();
    dpop.take_nonce(&res);
    assert_eq!(res.status(), 200);
    let res = upload(
        "video/mp4",
        access.clone(),
        dpop.proof("POST", &url, Some(&access)),
    )
    .await
    .unwrap();
    dpop.take_nonce(&res);
    assert_eq!(res.status(), 403);

    // getSession is for every session.
    let res = get_session(&server, &mut dpop, &access).await;
    assert_eq!(res.status(), 200);
}

/// A confidential client (registered ahead with `[oauth]
/// client_metadata_files`) authenticates with `private_key_jwt` at PAR,
/// token and refresh; missing, replayed or foreign assertions grant
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_clients_authenticate_with_private_key_jwt() {
    const CLIENT: &str = "https://app.example/client-metadata.json";
    const CALLBACK: &str = "https://app.example/callback";
    let client_key = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let point = client_key.verifying_key().to_encoded_point(false);
    let metadata = json!({
        "client_id": CLIENT,
        "client_name": "Example App",
        "redirect_uris": [CALLBACK],
        "scope": SCOPE,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "dpop_bound_access_tokens": true,
        "application_type": "web",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
                           "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}]},
    });
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("client.json");
    std::fs::write(&path, metadata.to_string()).unwrap();
    let plc = TestPlcDirectory::start().await;
    let Some(server) = common::pds::server_with("oauth_confidential", Db::Sqlite, &plc, |c| {
        c.oauth.client_metadata_files = vec![path.clone()];
    })
    .await
    else {
        return;
    };
    let c = Client { server: &server };
    let (did, _) = sign_up(&c, "erin.test").await;
    let assertion_for = |key: &SigningKey, kid: &str, aud: &str| {
        let now = chrono::Utc::now().timestamp();
        let header = json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
        let claims = json!({"iss": CLIENT, "sub": CLIENT, "aud": aud,
                            "jti": b64(&rand::random::<[u8; 16]>()), "iat": now, "exp": now + 60});
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(&serde_json::to_vec(&claims).unwrap())
        );
        let signature: Signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    };
    let assertion = |key: &SigningKey, kid: &str| assertion_for(key, kid, PUBLIC_URL);
    let mut dpop = Dpop::new();
    let (verifier, challenge) = pkce();
    let par = |assertion: Option<String>| {
        let form = vec![
            ("client_id", CLIENT.to_owned()),
            ("response_type", "code".to_owned()),
            ("code_challenge", challenge.clone()),
            ("code_challenge_method", "S256".to_owned()),
            ("state", "c-1".to_owned()),
            ("redirect_uri", CALLBACK.to_owned()),
            ("scope", SCOPE.to_owned()),
        ];
        with_assertion(form, assertion)
    };
    let send = async |dpop: &mut Dpop, path: &str, form: Vec<(&'static str, String)>| {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post_form(&server, dpop, path, &form).await
    };
    let _ = send(&mut dpop, "/oauth/par", par(None)).await; // a nonce
    oauth_error(
        send(&mut dpop, "/oauth/par", par(None)).await,
        400,
        "invalid_request",
    )
    .await;
    // An assertion for another server (aud) is refused.
    let res = send(
        &mut dpop,
        "/oauth/par",
        par(Some(assertion_for(
            &client_key,
            "k1",
            "https://other.example",
        ))),
    )
    .await;
    oauth_error(res, 400, "invalid_client").await;
    let stranger = SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let res = send(
        &mut dpop,
        "/oauth/par",
        par(Some(assertion(&stranger, "k1"))),
    )
    .await;
    oauth_error(res, 400, "invalid_client").await;
    let used = assertion(&client_key, "k1");
    let res = send(&mut dpop, "/oauth/par", par(Some(used.clone()))).await;
    assert_eq!(res.status(), 201);
    let request_uri = res.json::<Value>().await.unwrap()["request_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = send(&mut dpop, "/oauth/par", par(Some(used))).await;
    oauth_error(res, 400, "invalid_grant").await; // a replayed assertion

    let params = sign_in_and_approve_for(
        &server,
        CLIENT,
        &request_uri,
        "erin.test",
        "a long password",
    )
    .await;
    let code = param(&params, "code").unwrap().to_owned();
    let token_form = |assertion: Option<String>| {
        let form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", CLIENT.to_owned()),
            ("code", code.clone()),
            ("redirect_uri", CALLBACK.to_owned()),
            ("code_verifier", verifier.clone()),
        ];
        with_assertion(form, assertion)
    };
    let res = send(
        &mut dpop,
        "/oauth/token",
        token_form(Some(assertion(&client_key, "k1"))),
    )
    .await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["sub"], did.as_str());
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    let refresh_form = |token: &str, assertion: Option<String>| {
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", CLIENT.to_owned()),
            ("refresh_token", token.to_owned()),
        ];
        with_assertion(form, assertion)
    };
    // A refresh without the client's authentication is refused and
    // changes nothing.
    let res = send(&mut dpop, "/oauth/token", refresh_form(&refresh, None)).await;
    oauth_error(res, 400, "invalid_request").await;
    let res = send(
        &mut dpop,
        "/oauth/token",
        refresh_form(&refresh, Some(assertion(&client_key, "k1"))),
    )
    .await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    let access = rotated["access_token"].as_str().unwrap().to_owned();
    let res = get_session(&server, &mut dpop, &access).await;
    assert_eq!(res.status(), 200);
}
