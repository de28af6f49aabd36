//! Event sinks end to end, on the real server over loopback: a webhook
//! receiver that is down while 10,000 records are written (writes keep
//! their speed; once it is back it gets every event, in order, signed), a
//! restart resuming from the stored cursor, JSON-lines files, and a
//! misconfigured sink stopping start-up.
#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::cast_precision_loss
)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aurora_server::config::{Config, ConfigDuration, SinkEntry, SinkStart};
use aurora_storage_testkit::plc::TestPlcDirectory;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::pds::{Client, metric_value, scrape_metrics, server_with, sign_up};
use common::process::{AuroraProcess, run_aurora};
use common::{Db, TestServer};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "webhook-secret-for-tests";

/// A webhook receiver: verifies every signature, answers 500 while
/// refusing, records the `seq`s it accepted.
#[derive(Clone, Default)]
struct Receiver {
    accepting: Arc<AtomicBool>,
    /// While set, requests get no answer at all (until the flag clears).
    hanging: Arc<AtomicBool>,
    /// Requests that got no answer.
    hung: Arc<Mutex<u64>>,
    seqs: Arc<Mutex<Vec<i64>>>,
    bodies: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<u64>>,
}

/// Checks `x-aurora-signature: t=<unix>,v1=<hex>` over `<t>.<body>`,
/// computed here independently of the sink.
fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get("x-aurora-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((t, v1)) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
    else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let Ok(t_secs) = t.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(t_secs) > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let Ok(given) = hex::decode(v1) else {
        return false;
    };
    mac.verify_slice(&given).is_ok()
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    assert!(signature_ok(&headers, &body), "bad signature");
    if r.hanging.load(Ordering::SeqCst) {
        *r.hung.lock().unwrap() += 1;
        while r.hanging.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The sender gave up long ago: whatever this says, it is not heard.
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if !r.accepting.load(Ordering::SeqCst) {
        *r.refused.lock().unwrap() += 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let batch: Value = serde_json::from_slice(&body).unwrap();
    let mut seqs = r.seqs.lock().unwrap();
    for event in batch["events"].as_array().unwrap() {
        seqs.push(event["seq"].as_i64().unwrap());
    }
    r.bodies.lock().unwrap().push(batch);
    StatusCode::OK
}

impl Receiver {
    async fn start() -> (Self, SocketAddr) {
        let receiver = Self::default();
        let app = axum::Router::new()
            .route("/in", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn seqs(&self) -> Vec<i64> {
        self.seqs.lock().unwrap().clone()
    }
}

fn webhook(addr: SocketAddr) -> SinkEntry {
    let mut entry = SinkEntry::new("webhook", "hook");
    entry.batch_size = 1000;
    entry.max_backoff = ConfigDuration(Duration::from_secs(1));
    entry.settings = [
        ("url".to_owned(), format!("http://{addr}/in").into()),
        ("secret".to_owned(), SECRET.into()),
        ("timeout_secs".to_owned(), 5.into()),
        ("records".to_owned(), true.into()),
    ]
    .into_iter()
    .collect();
    entry
}

fn post(i: usize) -> Value {
    json!({"$type": "app.bsky.feed.post", "text": format!("post {i}"), "createdAt": "2026-12-06T12:00:00.000Z"})
}

/// Writes `n` records with `writers` concurrent writers (one account
/// each); returns the time it took.
async fn write(server: &TestServer, accounts: &[(String, String)], n: usize) -> Duration {
    let started = Instant::now();
    let per = n / accounts.len();
    let mut tasks = Vec::new();
    for (did, access) in accounts {
        let (did, access) = (did.clone(), access.clone());
        let http = server.http.clone();
        let url = server.url("/xrpc/com.atproto.repo.createRecord");
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let res = http
                    .post(&url)
                    .bearer_auth(&access)
                    .json(&json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(i)}))
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success(), "{}", res.text().await.unwrap());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

async fn accounts(server: &TestServer, n: usize) -> Vec<(String, String)> {
    let c = Client { server };
    let mut out = Vec::new();
    for i in 0..n {
        out.push(sign_up(&c, &format!("writer{i}.test")).await);
    }
    out
}

async fn head(server: &TestServer) -> i64 {
    server.ctx.sequencer.current_seq().await.unwrap().unwrap()
}

/// Every seq in the log after `after`, ascending.
async fn logged_after(server: &TestServer, after: i64) -> Vec<i64> {
    let events = server
        .ctx
        .sequencer
        .events_after(after, 1_000_000)
        .await
        .unwrap();
    events.iter().map(|e| e.seq).collect()
}

/// The value of one series on the server's `/metrics`.
async fn metric(server: &TestServer, series: &str) -> f64 {
    let text = scrape_metrics(server).await;
    metric_value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Waits until `series` reaches `at_least` (the status is published as
/// the runner goes).
async fn wait_for_metric(server: &TestServer, series: &str, at_least: f64) {
    for _ in 0..100 {
        if metric(server, series).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series} stayed below {at_least}");
}

/// The first delivery of each event in `got`, checking the at-least-once
/// order the runner promises: events come in increasing order, except that
/// after a restart or a takeover the sink may get again a batch it had
/// before the cursor was stored; such a replay only repeats events already
/// delivered. (The caller compares the result with the log: nothing
/// skipped.)
fn first_deliveries(got: &[i64]) -> Vec<i64> {
    let mut first: Vec<i64> = Vec::with_capacity(got.len());
    for &seq in got {
        match first.last() {
            Some(&last) if seq <= last => assert!(
                first.contains(&seq),
                "{seq} replayed but never delivered: {got:?}"
            ),
            _ => first.push(seq),
        }
    }
    first
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_down_while_10000_records_are_written_gets_every_event_once_back() {
    const RECORDS: usize = 10_000;
    const BASELINE: usize = 2_000;
    const WRITERS: usize = 4;
    let plc = TestPlcDirectory::start().await;

    // The write rate without sinks, measured here, on this machine.
    let plain = server_with("sinks_plain", Db::Memory, &plc, |_| {})
        .await
        .unwrap();
    let plain_accounts = accounts(&plain, WRITERS).await;
    let plain_time = write(&plain, &plain_accounts, BASELINE).await;
    drop(plain);

    let (receiver, addr) = Receiver::start().await;
    let server = server_with("sinks_down", Db::Memory, &plc, |c| {
        // Its own name: metrics are per process and per sink name.
        let mut hook = webhook(addr);
        hook.name = "hook-down".to_owned();
        c.sinks = vec![hook];
    })
    .await
    .unwrap();
    let writers = accounts(&server, WRITERS).await;
    // The receiver is down from the start: every delivery fails.
    wait_for("a refused delivery", Duration::from_secs(30), || {
        *receiver.refused.lock().unwrap() > 0
    })
    .await;
    let first_logged = logged_after(&server, 0).await;
    let with_sink_time = write(&server, &writers, RECORDS).await;
    assert!(receiver.seqs().is_empty());
    assert!(*receiver.refused.lock().unwrap() > 1, "retried");
    // Operators see the trouble on /metrics.
    assert!(metric(&server, r#"aurora_sink_failures{sink="hook-down"}"#).await >= 1.0);

    // Writes keep their speed: per record, no slower than half the rate
    // without sinks (a generous bound for a noisy machine).
    let plain_rate = BASELINE as f64 / plain_time.as_secs_f64();
    let sink_rate = RECORDS as f64 / with_sink_time.as_secs_f64();
    eprintln!("writes/s: without sinks {plain_rate:.0}, with the webhook down {sink_rate:.0}");
    assert!(
        sink_rate > plain_rate * 0.5,
        "writes slowed down: {sink_rate:.0}/s against {plain_rate:.0}/s"
    );

    // The receiver comes back: it gets every event from the sink's start,
    // each once, in order, signed.
    receiver.accepting.store(true, Ordering::SeqCst);
    let head = head(&server).await;
    wait_for("every event", Duration::from_secs(120), || {
        receiver.seqs().last().copied() == Some(head)
    })
    .await;
    let got = receiver.seqs();
    let expected: Vec<i64> = logged_after(&server, 0)
        .await
        .into_iter()
        .filter(|seq| *seq > got[0] - 1)
        .collect();
    assert_eq!(got, expected, "every event after the start, once, in order");
    assert!(got.len() > RECORDS, "{} events", got.len());
    #[allow(clippy::cast_precision_loss)]
    let delivered = got.len() as f64;
    wait_for_metric(
        &server,
        r#"aurora_sink_delivered_events{sink="hook-down"}"#,
        delivered,
    )
    .await;
    // The sink started at the head when the server did: the sign-ups made
    // after it are in, nothing before.
    assert!(got[0] <= first_logged[first_logged.len() - 1]);
    // Record bodies came along, in the shared JSON schema.
    let bodies = receiver.bodies.lock().unwrap();
    let commit = bodies
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap().iter())
        .find(|e| e["type"] == "commit" && e["ops"][0]["collection"] == "app.bsky.feed.post")
        .unwrap();
    assert_eq!(bodies[0]["sink"], "hook-down");
    assert_eq!(commit["ops"][0]["action"], "create");
    assert!(
        commit["ops"][0]["record"]["text"]
            .as_str()
            .unwrap()
            .starts_with("post ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_each_sink_from_its_cursor() {
    let plc = TestPlcDirectory::start().await;
    let data = tempfile::tempdir().unwrap();
    let (receiver, addr) = Receiver::start().await;
    receiver.accepting.store(true, Ordering::SeqCst);
    let configure = |c: &mut Config| {
        c.data_dir = data.path().to_owned();
        c.sinks = vec![webhook(addr)];
        let mut files = SinkEntry::new("jsonl", "files");
        files.start = SinkStart::Oldest;
        files.settings = [("path".to_owned(), "events".into())].into_iter().collect();
        c.sinks.push(files);
    };
    let first = server_with("sinks_restart_a", Db::Sqlite, &plc, configure)
        .await
        .unwrap();
    let writers = accounts(&first, 1).await;
    write(&first, &writers, 5).await;
    let head_a = head(&first).await;
    wait_for("the first events", Duration::from_secs(30), || {
        receiver.seqs().last().copied() == Some(head_a)
    })
    .await;
    // Down again: five more records wait in the log.
    receiver.accepting.store(false, Ordering::SeqCst);
    write(&first, &writers, 5).await;
    let head_b = head(&first).await;
    let mut first = first;
    first.shutdown().await.unwrap().unwrap();
    drop(first);

    receiver.accepting.store(true, Ordering::SeqCst);
    let second = server_with("sinks_restart_b", Db::Sqlite, &plc, configure)
        .await
        .unwrap();
    wait_for("the rest", Duration::from_secs(30), || {
        receiver.seqs().last().copied() == Some(head_b)
    })
    .await;
    let got = receiver.seqs();
    // At least once, in order: a batch delivered just before the stop
    // may come twice, nothing is skipped.
    let unique = first_deliveries(&got);
    let expected: Vec<i64> = logged_after(&second, unique[0] - 1).await;
    assert_eq!(unique, expected);

    // The JSON-lines sink started at the oldest event and has them all.
    let dir = data.path().join("events");
    let wait_files = || {
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            seqs.extend(text.lines().map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_i64()
                    .unwrap()
            }));
        }
        seqs
    };
    wait_for("the files", Duration::from_secs(30), || {
        wait_files().last().copied() == Some(head_b)
    })
    .await;
    let in_files = first_deliveries(&wait_files());
    assert_eq!(in_files, logged_after(&second, 0).await);
}

#[tokio::test]
async fn a_misconfigured_sink_stops_start_up_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    for (settings, message) in [
        (
            vec![("url", "http://127.0.0.1:9/in"), ("secret", "short")],
            "sinks \"hook\" (kind webhook): secret: must be at least 16 characters",
        ),
        (
            vec![
                ("url", "http://127.0.0.1:9/in"),
                ("secret", SECRET),
                ("sekret", "x"),
            ],
            "sinks \"hook\" (kind webhook): sekret: unknown field",
        ),
        (
            vec![("secret", SECRET)],
            "sinks \"hook\" (kind webhook): missing field `url`",
        ),
    ] {
        let mut entry = SinkEntry::new("webhook", "hook");
        entry.settings = settings
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        let config = Config {
            data_dir: data.path().to_owned(),
            database_url: Some("memory:".to_owned()),
            sinks: vec![entry],
            ..Config::default()
        };
        let aurora = aurora_server::Aurora::open(config).await.unwrap();
        let e = aurora.builder().err().unwrap().to_string();
        assert!(e.starts_with(message), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_never_answers_times_out_and_gets_everything_later() {
    let plc = TestPlcDirectory::start().await;
    let (receiver, addr) = Receiver::start().await;
    receiver.hanging.store(true, Ordering::SeqCst);
    receiver.accepting.store(true, Ordering::SeqCst);
    let server = server_with("sinks_hanging", Db::Sqlite, &plc, |c| {
        let mut hook = webhook(addr);
        hook.name = "hook-silent".to_owned();
        hook.start = SinkStart::Oldest;
        hook.settings.insert("timeout_secs".to_owned(), 1.into());
        c.sinks = vec![hook];
    })
    .await
    .unwrap();
    let writers = accounts(&server, 2).await;
    let took = write(&server, &writers, 40).await;
    // Each attempt waits a second for an answer that never comes; writes
    // do not wait for it.
    assert!(took < Duration::from_secs(20), "writes took {took:?}");
    wait_for_metric(&server, r#"aurora_sink_failures{sink="hook-silent"}"#, 2.0).await;
    assert!(receiver.seqs().is_empty());
    assert!(
        *receiver.hung.lock().unwrap() >= 2,
        "retried after each timeout"
    );

    receiver.hanging.store(false, Ordering::SeqCst);
    let head = head(&server).await;
    wait_for("every event", Duration::from_secs(60), || {
        receiver.seqs().last().copied() == Some(head)
    })
    .await;
    // Every event from the oldest, once, in order: the timed-out attempts
    // were never acknowledged, so nothing was skipped.
    assert_eq!(receiver.seqs(), logged_after(&server, 0).await);
    // The failure count clears with the first acknowledged batch.
    let failures = r#"aurora_sink_failures{sink="hook-silent"}"#;
    let mut cleared = false;
    for _ in 0..100 {
        if metric(&server, failures).await < 0.5 {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cleared, "{failures} did not clear");
}

/// `aurora sinks status`'s row for `sink`: cursor, events behind, node.
fn status_row(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    sink: &str,
) -> (Option<i64>, Option<(i64, i64, String)>) {
    let (status, out, err) = run_aurora(dir, env, &["sinks", "status"]);
    assert!(status.success(), "{err}");
    let mut lines = out.lines();
    // `-` while the log is empty.
    let head = lines
        .next()
        .and_then(|l| l.strip_prefix("head\t"))
        .unwrap()
        .parse()
        .ok();
    assert_eq!(
        lines.next(),
        Some("sink\tkind\tcursor\tevents_behind\tseconds_behind\trunning_on")
    );
    let row = lines
        .find(|l| l.starts_with(&format!("{sink}\t")))
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (
                cols[2].parse().unwrap(),
                cols[3].parse().unwrap(),
                cols[5].to_owned(),
            )
        });
    (head, row)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_one_postgres_run_each_sink_once_and_take_over_from_a_dead_one() {
    let Some(database) = aurora_storage_testkit::postgres::database("sinks_nodes") else {
        return;
    };
    let plc = TestPlcDirectory::start().await;
    let plc_url = plc.url();
    let (receiver, addr) = Receiver::start().await;
    receiver.accepting.store(true, Ordering::SeqCst);
    let config_dir = tempfile::tempdir().unwrap();
    let with_sink = config_dir.path().join("aurora.toml");
    std::fs::write(
        &with_sink,
        format!(
            "[[sinks]]\nkind = \"webhook\"\nname = \"hook\"\nstart = \"oldest\"\n\
             max_backoff = \"1s\"\nlease_ttl = \"2s\"\nurl = \"http://{addr}/in\"\n\
             secret = \"{SECRET}\"\ntimeout_secs = 5\n"
        ),
    )
    .unwrap();
    let without_sink = config_dir.path().join("plain.toml");
    std::fs::write(&without_sink, "").unwrap();
    let (with_sink, without_sink) = (
        with_sink.to_str().unwrap().to_owned(),
        without_sink.to_str().unwrap().to_owned(),
    );
    let env = [
        ("AURORA_DATABASE_URL", database.as_str()),
        ("AURORA_PLC_URL", plc_url.as_str()),
        ("AURORA_PUBLIC_URL", "https://pds.test"),
        ("AURORA_USER_DOMAINS", ".test"),
        (
            "AURORA_JWT_SECRET",
            "a shared secret of the two nodes, 32+ chars",
        ),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node = |dir: &tempfile::TempDir| aurora_server::sinks::node_id(dir.path());
    let args = ["--config", with_sink.as_str()];
    let a = AuroraProcess::start_with_args(dir_a.path(), &env, &args);
    // Node a takes the lease before b starts.
    wait_for("node a to run the sink", Duration::from_secs(30), || {
        status_row(dir_a.path(), &env, "hook")
            .1
            .is_some_and(|r| r.2 == node(&dir_a))
    })
    .await;
    let b = AuroraProcess::start_with_args(dir_b.path(), &env, &args);

    // Writes through both nodes, one at a time (so the log has no gaps).
    let http = aurora_server::identity::http_client(Duration::from_secs(30)).unwrap();
    let res = http
        .post(a.url("/xrpc/com.atproto.server.createAccount"))
        .json(&json!({"handle": "both.test", "email": "both@example.com", "password": "a long password"}))
        .send()
        .await
        .unwrap();
    let created = common::pds::Client::ok(res).await;
    let (did, token) = (
        created["did"].as_str().unwrap().to_owned(),
        created["accessJwt"].as_str().unwrap().to_owned(),
    );
    let write_through = |nodes: Vec<&AuroraProcess>, n: usize| {
        let urls: Vec<String> = nodes
            .iter()
            .map(|p| p.url("/xrpc/com.atproto.repo.createRecord"))
            .collect();
        let (http, did, token) = (http.clone(), did.clone(), token.clone());
        async move {
            for i in 0..n {
                let res = http
                    .post(&urls[i % urls.len()])
                    .bearer_auth(&token)
                    .json(&json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(i)}))
                    .send()
                    .await
                    .unwrap();
                assert!(res.status().is_success(), "{}", res.text().await.unwrap());
            }
        }
    };
    write_through(vec![&a, &b], 20).await;
    let head = status_row(dir_a.path(), &env, "hook").0.unwrap();
    wait_for("every event", Duration::from_secs(30), || {
        receiver.seqs().last().copied() == Some(head)
    })
    .await;
    // One node delivered: every event exactly once, in order.
    let all: Vec<i64> = (1..=head).collect();
    assert_eq!(receiver.seqs(), all);
    let (_, row) = status_row(dir_b.path(), &env, "hook");
    assert_eq!(row, Some((head, 0, node(&dir_a))));

    // Node a dies (SIGKILL, no release): b takes over within the lease's
    // time and delivers what is written through it.
    drop(a);
    write_through(vec![&b], 10).await;
    let head = status_row(dir_b.path(), &env, "hook").0.unwrap();
    wait_for("node b to take over", Duration::from_secs(30), || {
        receiver.seqs().last().copied() == Some(head)
    })
    .await;
    let got = first_deliveries(&receiver.seqs());
    let all: Vec<i64> = (1..=head).collect();
    assert_eq!(got, all, "nothing skipped");
    let (_, row) = status_row(dir_b.path(), &env, "hook");
    assert_eq!(row, Some((head, 0, node(&dir_b))));

    // A configured sink's cursor cannot be removed; once the entry is gone
    // (and b stopped), it can, once.
    let (status, _, err) = run_aurora(
        dir_b.path(),
        &env,
        &["--config", &with_sink, "sinks", "remove", "hook"],
    );
    assert!(!status.success());
    assert!(err.contains("sink \"hook\" is still configured"), "{err}");
    drop(b);
    let plain = ["--config", without_sink.as_str(), "sinks", "remove", "hook"];
    let (status, out, err) = run_aurora(dir_b.path(), &env, &plain);
    assert!(status.success(), "{err}");
    assert_eq!(out.trim(), "cursor of sink \"hook\" removed");
    let (status, _, err) = run_aurora(dir_b.path(), &env, &plain);
    assert!(!status.success());
    assert!(err.contains("no sink \"hook\" has a cursor"), "{err}");
    let (_, row) = status_row(dir_b.path(), &env, "hook");
    assert_eq!(row, None);
}
