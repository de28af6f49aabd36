//! Signing up the accounts the load writes to.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use crate::{Result, RunArgs};

/// Tries of one sign-up before the run fails.
const SIGN_UP_ATTEMPTS: u64 = 5;

/// A signed-up account: its DID and an access token.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub did: String,
    pub token: String,
}

/// Signs up `n` fresh accounts (a few at a time: sign-up hashes a password
/// and talks to the PLC directory, and is not what is measured).
pub(crate) async fn sign_up(
    http: &reqwest::Client,
    args: &RunArgs,
    n: usize,
) -> Result<Vec<Account>> {
    // Handles must be new on every run against the same server.
    let run = chrono::Utc::now().format("%H%M%S%3f");
    stream::iter(0..n)
        .map(|i| {
            let handle = format!("lg{run}-{i}{}", args.handle_domain);
            create_account(http, args, handle)
        })
        .buffered(4)
        .try_collect()
        .await
}

async fn create_account(http: &reqwest::Client, args: &RunArgs, handle: String) -> Result<Account> {
    let mut body = json!({
        "handle": handle,
        "email": format!("{handle}@example.com"),
        "password": "loadgen password, not secret",
    });
    if let Some(code) = &args.invite_code {
        body["inviteCode"] = Value::from(code.as_str());
    }
    let url = format!("{}/xrpc/com.atproto.server.createAccount", args.url);
    // A server error is tried again a few times: the reference PLC
    // directory (@did-plc/server) answers 500 when concurrent registrations
    // conflict in its serializable transactions, and the PDS passes that on.
    let mut attempt = 1;
    let created: Value = loop {
        let res = http.post(&url).json(&body).send().await?;
        let status = res.status();
        let created: Value = res.json().await?;
        if status.is_success() {
            break created;
        }
        if !status.is_server_error() || attempt == SIGN_UP_ATTEMPTS {
            return Err(format!("createAccount {handle}: {status} {created}").into());
        }
        tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        attempt += 1;
    };
    let field = |name: &str| {
        created[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("createAccount answered without {name}: {created}"))
    };
    Ok(Account {
        did: field("did")?,
        token: field("accessJwt")?,
    })
}
