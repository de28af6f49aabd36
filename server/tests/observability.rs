//! What an operator watches: Prometheus metrics at `/metrics` (requests per
//! method and status, commits, firehose subscribers, the database pool),
//! JSON log lines, and `--log-level`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use aurora_storage_testkit::plc::TestPlcDirectory;
use common::pds::{ADMIN_PASSWORD, Client, metric_value, server, server_with, sign_up};
use common::process::AuroraProcess;
use common::{Db, TestServer};
use serde_json::{Value, json};

async fn scrape(server: &TestServer, admin: bool) -> reqwest::Response {
    let req = server.http.get(server.url("/metrics"));
    let req = if admin {
        req.basic_auth("admin", Some(ADMIN_PASSWORD))
    } else {
        req
    };
    req.send().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_commits_subscribers_and_the_pool() {
    let plc = TestPlcDirectory::start().await;
    let server = server("observability_metrics", Db::Sqlite, &plc)
        .await
        .unwrap();
    let c = Client { server: &server };

    // Closed without the admin's credentials, like the admin API.
    let res = scrape(&server, false).await;
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "AuthenticationRequired");

    let (did, token) = sign_up(&c, "watched.test").await;
    for i in 0..3 {
        c.ok_post(
            "com.atproto.repo.createRecord",
            Some(&token),
            json!({"repo": did, "collection": "app.bsky.feed.post",
                   "record": {"$type": "app.bsky.feed.post", "text": format!("post {i}"), "createdAt": "2026-12-06T00:00:00Z"}}),
        )
        .await;
    }
    // A refused write counts as 4xx; a made-up method under its own label
    // would let clients create series, so it counts as `_proxy`.
    c.post("com.atproto.repo.createRecord", None, json!({}))
        .await;
    server
        .http
        .get(server.url("/xrpc/com.example.madeUp.method"))
        .send()
        .await
        .unwrap();
    let (_ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/xrpc/com.atproto.sync.subscribeRepos",
        server.addr
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let res = scrape(&server, true).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = res.text().await.unwrap();
    let at_least = |series: &str, n: f64| {
        let value =
            metric_value(&metrics, series).unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
        assert!(value >= n, "{series} = {value}, expected at least {n}");
    };
    at_least(
        r#"aurora_xrpc_requests_total{method="com.atproto.repo.createRecord",status="2xx"}"#,
        3.0,
    );
    at_least(
        r#"aurora_xrpc_requests_total{method="com.atproto.repo.createRecord",status="4xx"}"#,
        1.0,
    );
    at_least(
        r#"aurora_xrpc_request_duration_seconds_count{method="com.atproto.repo.createRecord"}"#,
        4.0,
    );
    at_least(r#"aurora_commits_total{kind="write"}"#, 3.0);
    at_least("aurora_firehose_subscribers", 1.0);
    at_least(r#"aurora_db_pool_connections{state="idle"}"#, 0.0);
    assert!(!metrics.contains("com.example.madeUp"), "{metrics}");
    assert!(
        metrics.contains(r#"method="_proxy""#),
        "unserved methods under one label"
    );
}

#[tokio::test]
async fn metrics_can_be_public() {
    let plc = TestPlcDirectory::start().await;
    let server = server_with("observability_public", Db::Memory, &plc, |c| {
        c.metrics_public = true;
    })
    .await
    .unwrap();
    let res = scrape(&server, false).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("aurora_xrpc_requests_total")
    );
}

/// `AURORA_LOG_FORMAT=json` writes one JSON object per line, and
/// `--log-level` wins over `AURORA_LOG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_the_log_level_flag() {
    let plc = TestPlcDirectory::start().await;
    let dir = tempfile::tempdir().unwrap();
    let plc_url = plc.url();
    let server = AuroraProcess::start_with_args(
        dir.path(),
        &[
            ("AURORA_PLC_URL", plc_url.as_str()),
            ("AURORA_LOG_FORMAT", "json"),
            ("AURORA_LOG", "error"),
        ],
        &["--log-level", "debug"],
    );
    let http = aurora_server::identity::http_client(Duration::from_secs(30)).unwrap();
    let res = http
        .get(server.url("/xrpc/com.atproto.server.describeServer"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.log.lock().unwrap().clone();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on"))),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "--log-level debug beat AURORA_LOG=error: {log}"
    );

    // A filter that does not parse is refused before anything starts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aurora"))
        .args(["--log-level", "aurora=notalevel", "config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-level"));
}
