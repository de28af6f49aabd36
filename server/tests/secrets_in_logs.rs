//! No secret reaches the log: the real `aurora serve` process, logging at
//! `debug`, goes through sign-up, sign-in, refresh, app passwords, a
//! password reset and failed sign-ins; then its whole log output is
//! searched for every password, token and key involved.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::time::Duration;

use aurora_storage_testkit::plc::TestPlcDirectory;
use common::process::AuroraProcess;
use serde_json::{Value, json};

fn start(dir: &std::path::Path, plc_url: &str) -> AuroraProcess {
    AuroraProcess::start(
        dir,
        &[
            ("AURORA_PLC_URL", plc_url),
            ("AURORA_PUBLIC_URL", "https://pds.test"),
            ("AURORA_ADMIN_PASSWORD", "the-admin-password-123"),
            ("AURORA_LOG", "debug"),
        ],
    )
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    nsid: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let url = format!("{base}/xrpc/{nsid}");
    let mut req = match &body {
        Some(b) => http.post(url).json(b),
        None => http.get(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_token_or_key_is_logged() {
    let plc = TestPlcDirectory::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &plc.url());
    let http = aurora_server::identity::http_client(Duration::from_secs(60)).unwrap();
    let base_url = server.url("");
    let base = base_url.as_str();

    let password = "Sup3r-Secret-Passw0rd";
    let created = call(
        &http,
        base,
        "com.atproto.server.createAccount",
        None,
        Some(json!({
            "handle": "secretive.test", "email": "secretive@example.com", "password": password,
        })),
    )
    .await;
    let access = created["accessJwt"].as_str().unwrap().to_owned();
    let refresh = created["refreshJwt"].as_str().unwrap().to_owned();
    let wrong = "Wr0ng-Passw0rd-Attempt";
    call(
        &http,
        base,
        "com.atproto.server.createSession",
        None,
        Some(json!({"identifier": "secretive.test", "password": wrong})),
    )
    .await;
    let login = call(
        &http,
        base,
        "com.atproto.server.createSession",
        None,
        Some(json!({"identifier": "secretive@example.com", "password": password})),
    )
    .await;
    let refreshed = call(
        &http,
        base,
        "com.atproto.server.refreshSession",
        Some(login["refreshJwt"].as_str().unwrap()),
        Some(json!({})),
    )
    .await;
    let app = call(
        &http,
        base,
        "com.atproto.server.createAppPassword",
        Some(&access),
        Some(json!({"name": "client"})),
    )
    .await;
    let app_password = app["password"].as_str().unwrap().to_owned();
    call(
        &http,
        base,
        "com.atproto.server.createSession",
        None,
        Some(json!({"identifier": "secretive.test", "password": app_password})),
    )
    .await;
    let service = call(
        &http,
        base,
        "com.atproto.server.getServiceAuth",
        Some(&access),
        None,
    )
    .await;
    call(
        &http,
        base,
        "com.atproto.server.requestPasswordReset",
        None,
        Some(json!({"email": "secretive@example.com"})),
    )
    .await;
    let outbox = std::fs::read_to_string(dir.path().join("mail/outbox.jsonl")).unwrap();
    let mail: Value = serde_json::from_str(outbox.lines().last().unwrap()).unwrap();
    let reset_token = mail["text"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .find(|w| w.len() == 11 && w.as_bytes()[5] == b'-')
        .unwrap()
        .to_owned();
    let new_password = "An0ther-Secret-Passw0rd";
    call(
        &http,
        base,
        "com.atproto.server.resetPassword",
        None,
        Some(json!({"token": reset_token, "password": new_password})),
    )
    .await;
    // A bad admin password attempt.
    http.get(format!("{base}/xrpc/com.atproto.admin.getInviteCodes"))
        .basic_auth("admin", Some("guessed-admin-password"))
        .send()
        .await
        .unwrap();
    // Let the log threads catch up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let jwt_secret = std::fs::read_to_string(dir.path().join("secrets/jwt_secret")).unwrap();
    let rotation_key =
        std::fs::read_to_string(dir.path().join("secrets/plc_rotation_key")).unwrap();
    let log = server.log.lock().unwrap().clone();
    assert!(
        log.contains("account created"),
        "the log should show activity:\n{log}"
    );
    let mut secrets = vec![
        ("password", password.to_owned()),
        ("wrong password", wrong.to_owned()),
        ("new password", new_password.to_owned()),
        ("app password", app_password),
        ("access token", access),
        ("refresh token", refresh),
        (
            "refreshed access token",
            refreshed["accessJwt"].as_str().unwrap().to_owned(),
        ),
        ("reset token", reset_token),
        ("jwt secret", jwt_secret.trim().to_owned()),
        ("rotation key", rotation_key.trim().to_owned()),
        ("admin password", "the-admin-password-123".to_owned()),
        (
            "guessed admin password",
            "guessed-admin-password".to_owned(),
        ),
    ];
    if let Some(token) = service["token"].as_str() {
        secrets.push(("service token", token.to_owned()));
    }
    for (what, secret) in &secrets {
        assert!(!secret.is_empty(), "{what} is empty");
        // JWTs: no part of the signature or payload either.
        for piece in secret.split('.').filter(|p| p.len() >= 8) {
            assert!(
                !log.contains(piece),
                "the {what} appears in the log:\n{log}"
            );
        }
    }
}
