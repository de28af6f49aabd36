//! A PDS under test with an in-process PLC directory, an XRPC client, and
//! what tests read behind the API (the mail outbox, the event log).

use aurora_core::EventType;
use aurora_core::event::decode_payload;
use aurora_storage_testkit::plc::TestPlcDirectory;
use serde_json::{Value, json};

use super::{Db, TestServer, assert_xrpc_error, start};

pub(crate) const ADMIN_PASSWORD: &str = "admin-password-for-tests-only";
pub(crate) const PUBLIC_URL: &str = "https://pds.test";

pub(crate) async fn server(test: &str, db: Db, plc: &TestPlcDirectory) -> Option<TestServer> {
    server_with(test, db, plc, |_| {}).await
}

/// [`server`] with `configure` applied to the configuration last.
pub(crate) async fn server_with(
    test: &str,
    db: Db,
    plc: &TestPlcDirectory,
    configure: impl FnOnce(&mut aurora_server::config::Config),
) -> Option<TestServer> {
    let plc_url = plc.url();
    start(
        test,
        db,
        |c| {
            c.plc_url = plc_url;
            c.public_url = Some(PUBLIC_URL.to_owned());
            c.admin_password = Some(aurora_server::config::Secret::new(ADMIN_PASSWORD));
            c.user_domains = vec![".test".to_owned()];
            configure(c);
        },
        |b| b,
    )
    .await
}

/// Two servers on one fresh Postgres database (`None` when Postgres is
/// unavailable and the test skips), sharing the session secret so that a
/// session works on both.
pub(crate) async fn two_servers_on_one_postgres(
    test: &str,
    plc: &TestPlcDirectory,
) -> Option<(TestServer, TestServer)> {
    let url = aurora_storage_testkit::postgres::database(test)?;
    let plc_url = plc.url();
    let configure = |c: &mut aurora_server::config::Config| {
        c.plc_url.clone_from(&plc_url);
        c.public_url = Some(PUBLIC_URL.to_owned());
        c.jwt_secret = Some(aurora_server::config::Secret::new(
            "a shared secret of the two servers, 32+ chars",
        ));
    };
    let a = start(&format!("{test}_a"), Db::Url(url.clone()), configure, |b| b)
        .await
        .unwrap();
    let b = start(&format!("{test}_b"), Db::Url(url), configure, |b| b)
        .await
        .unwrap();
    Some((a, b))
}

/// Signs up `handle` (under `.test`): its DID and access token.
pub(crate) async fn sign_up(c: &Client<'_>, handle: &str) -> (String, String) {
    let created = c
        .ok_post(
            "com.atproto.server.createAccount",
            None,
            json!({"handle": handle, "email": format!("{handle}@example.com"), "password": "a long password"}),
        )
        .await;
    (
        created["did"].as_str().unwrap().to_owned(),
        created["accessJwt"].as_str().unwrap().to_owned(),
    )
}

/// The record key of a created record (the last segment of its `uri`).
pub(crate) fn rkey_of(created: &Value) -> String {
    created["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// A small XRPC client.
pub(crate) struct Client<'a> {
    pub(crate) server: &'a TestServer,
}

impl Client<'_> {
    pub(crate) async fn post(
        &self,
        nsid: &str,
        token: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
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

    pub(crate) async fn get(
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

    pub(crate) async fn admin_post(&self, nsid: &str, body: Value) -> reqwest::Response {
        self.server
            .http
            .post(self.server.url(&format!("/xrpc/{nsid}")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn ok_post(&self, nsid: &str, token: Option<&str>, body: Value) -> Value {
        Self::ok(self.post(nsid, token, body).await).await
    }

    pub(crate) async fn ok_get(
        &self,
        nsid: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
    ) -> Value {
        Self::ok(self.get(nsid, token, query).await).await
    }

    /// Asserts that a call fails with `status` and the XRPC error `error`.
    pub(crate) async fn fails_post(
        &self,
        nsid: &str,
        token: Option<&str>,
        body: Value,
        status: u16,
        error: &str,
    ) -> Value {
        assert_xrpc_error(self.post(nsid, token, body).await, status, error).await
    }

    pub(crate) async fn fails_get(
        &self,
        nsid: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        status: u16,
        error: &str,
    ) -> Value {
        assert_xrpc_error(self.get(nsid, token, query).await, status, error).await
    }

    pub(crate) async fn ok(res: reqwest::Response) -> Value {
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{status}: {body}");
        body
    }
}

/// The newest mail in the server's outbox to `to`: its token.
pub(crate) fn mailed_token(server: &TestServer, to: &str) -> String {
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
pub(crate) async fn events_of(server: &TestServer, did: &str) -> Vec<(EventType, Value)> {
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

/// The server's `/metrics` text, read with the admin's credentials.
pub(crate) async fn scrape_metrics(server: &TestServer) -> String {
    server
        .http
        .get(server.url("/metrics"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `series` (`name{labels}` as rendered) in a
/// `/metrics` text, if it is there.
pub(crate) fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
