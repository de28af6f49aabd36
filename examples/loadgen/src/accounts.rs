//! Signing up the accounts the load writes to.

use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use crate::{Result, RunArgs};

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
    let res = http
        .post(format!(
            "{}/xrpc/com.atproto.server.createAccount",
            args.url
        ))
        .json(&body)
        .send()
        .await?;
    let status = res.status();
    let created: Value = res.json().await?;
    if !status.is_success() {
        return Err(format!("createAccount {handle}: {status} {created}").into());
    }
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
