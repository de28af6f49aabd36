//! No secret reaches the log: the real `aurora serve` process, logging at
//! `debug`, goes through sign-up, sign-in, refresh, app passwords, a
//! password reset and failed sign-ins; then its whole log output is
//! searched for every password, token and key involved.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aurora_storage_testkit::plc::TestPlcDirectory;
use serde_json::{Value, json};

struct Aurora {
    child: Child,
    log: Arc<Mutex<String>>,
    url: String,
}

impl Drop for Aurora {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn start(dir: &std::path::Path, plc_url: &str) -> Aurora {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aurora"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AURORA_LISTEN", "127.0.0.1:0")
        .env("AURORA_DATA_DIR", dir)
        .env("AURORA_PLC_URL", plc_url)
        .env("AURORA_PUBLIC_URL", "https://pds.test")
        .env("AURORA_ADMIN_PASSWORD", "the-admin-password-123")
        .env("AURORA_LOG", "debug")
        .current_dir(dir)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        let addr_tx = addr_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                {
                    let _ = addr_tx.send(addr.to_owned());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        if let Ok(addr) = addr_rx.recv_timeout(Duration::from_millis(200)) {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            log.lock().unwrap()
        );
    };
    Aurora {
        child,
        log,
        url: format!("http://{addr}"),
    }
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
    let base = server.url.as_str();

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
