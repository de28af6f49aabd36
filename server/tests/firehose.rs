//! The `subscribeRepos` firehose over real WebSockets against the real
//! server: frame format, cursors (backfill and cut-over to live while
//! writes go on, the future, the past beyond retention), slow consumers,
//! pings, and event order with two servers on one Postgres.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aurora_core::data::{DAG_CBOR, Ipld, cid_for, encode, json_to_ipld};
use aurora_core::event::{Frame, decode_frame};
use aurora_core::repo::{Mst, SignedCommit, UnsignedCommit, car_bytes, read_car_bytes};
use aurora_core::syntax::{Did, Tid};
use aurora_server::config::{Config, ConfigDuration};
use aurora_storage_testkit::plc::TestPlcDirectory;
use common::pds::{
    ADMIN_PASSWORD, Client, server, server_with, sign_up, two_servers_on_one_postgres,
};
use common::process::AuroraProcess;
use common::repo_check::{RepoFollower, link, seq_of, text};
use common::{Db, TestServer};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a frame that should come.
const PATIENCE: Duration = Duration::from_secs(30);

fn subscribe_url(server: &TestServer, cursor: Option<i64>) -> String {
    subscribe_url_at(&server.addr.to_string(), cursor)
}

/// The subscribeRepos URL of the server at `addr` (`host:port`).
fn subscribe_url_at(addr: &str, cursor: Option<i64>) -> String {
    let query = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
    format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos{query}")
}

async fn subscribe(server: &TestServer, cursor: Option<i64>) -> Ws {
    subscribe_at(&server.addr.to_string(), cursor).await
}

async fn subscribe_at(addr: &str, cursor: Option<i64>) -> Ws {
    tokio_tungstenite::connect_async(subscribe_url_at(addr, cursor))
        .await
        .unwrap()
        .0
}

/// What a subscriber reads next.
#[derive(Debug)]
enum Next {
    Frame(Frame),
    Ping,
    /// A close frame: its code and reason.
    Closed(Option<(CloseCode, String)>),
    /// The connection ended without a close frame.
    Ended,
    /// Nothing within the wait.
    Nothing,
}

async fn next(ws: &mut Ws, wait: Duration) -> Next {
    match tokio::time::timeout(wait, ws.next()).await {
        Err(_) => Next::Nothing,
        Ok(None | Some(Err(_))) => Next::Ended,
        Ok(Some(Ok(message))) => match message {
            Message::Binary(bytes) => Next::Frame(decode_frame(&bytes).unwrap()),
            Message::Ping(_) => Next::Ping,
            Message::Close(close) => {
                Next::Closed(close.map(|c| (c.code, c.reason.as_str().to_owned())))
            }
            other => panic!("unexpected message {other:?}"),
        },
    }
}

/// The next frame (pings skipped); panics on anything else.
async fn frame(ws: &mut Ws) -> Frame {
    loop {
        match next(ws, PATIENCE).await {
            Next::Frame(frame) => return frame,
            Next::Ping => {}
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

/// The next message frame: its type and body.
async fn message(ws: &mut Ws) -> (String, BTreeMap<String, Ipld>) {
    match frame(ws).await {
        Frame::Message {
            kind,
            body: Ipld::Map(body),
        } => (kind, body),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Asserts an error frame `error`, then a close with 1008 and the name.
async fn assert_error_frame(ws: &mut Ws, error: &str) {
    match frame(ws).await {
        Frame::Error { error: got, .. } => assert_eq!(got, error),
        other @ Frame::Message { .. } => panic!("expected the {error} error frame, got {other:?}"),
    }
    match next(ws, PATIENCE).await {
        Next::Closed(Some((code, reason))) => {
            assert_eq!(code, CloseCode::Policy);
            assert_eq!(reason, error);
        }
        other => panic!("expected a close after {error}, got {other:?}"),
    }
}

/// The `seq`s in the log after `cursor`.
async fn logged_after(server: &TestServer, cursor: i64) -> Vec<i64> {
    server
        .ctx
        .sequencer
        .events_after(cursor, 1_000_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
}

async fn head(server: &TestServer) -> i64 {
    server
        .ctx
        .sequencer
        .current_seq()
        .await
        .unwrap()
        .unwrap_or(0)
}

fn post(text: &str) -> Value {
    json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-06T12:00:00.000Z"})
}

async fn create(c: &Client<'_>, did: &str, token: &str, text: &str) -> Value {
    c.ok_post(
        "com.atproto.repo.createRecord",
        Some(token),
        json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(text)}),
    )
    .await
}

/// The repo signing key `plc` holds for `did`.
/// A repo CAR for `did` with one record, signed by some other host.
async fn foreign_repo(did: &Did) -> Vec<u8> {
    let record = encode(&json_to_ipld(&post("from my old host")).unwrap()).unwrap();
    let record_cid = cid_for(DAG_CBOR, &record);
    let tree = Mst::from_entries([("app.bsky.feed.post/3kbbbbbbbbbb2", record_cid)]).unwrap();
    let mut blocks = tree.blocks().unwrap();
    blocks.push((record_cid, bytes::Bytes::from(record)));
    let key = aurora_core::crypto::SigningKey::generate(aurora_core::crypto::Curve::K256);
    let (commit_cid, commit_block) = UnsignedCommit::new(did.clone(), tree.root_cid(), Tid::now())
        .sign(&key)
        .to_block();
    blocks.push((commit_cid, commit_block));
    car_bytes(commit_cid, blocks).await.unwrap()
}

#[tokio::test]
async fn frames_carry_every_event_type_as_the_spec_says() {
    let plc = Arc::new(TestPlcDirectory::start().await);
    let server = server("firehose_frames", Db::Memory, &plc).await.unwrap();
    let c = Client { server: &server };
    let mut ws = subscribe(&server, Some(0)).await;
    let (did, token) = sign_up(&c, "frames.test").await;
    let mut follower = RepoFollower::new(plc.clone());

    // Sign-up: #identity, #account, then the repo's first (empty) commit.
    let (kind, identity) = message(&mut ws).await;
    assert_eq!(kind, "#identity");
    assert_eq!(text(&identity, "did"), did);
    assert_eq!(text(&identity, "handle"), "frames.test");
    assert!(!text(&identity, "time").is_empty());
    let (kind, account) = message(&mut ws).await;
    assert_eq!(kind, "#account");
    assert_eq!(account["active"], Ipld::Bool(true));
    assert!(seq_of(&account) > seq_of(&identity));
    let (kind, first) = message(&mut ws).await;
    assert_eq!(kind, "#commit");
    follower.follow("#commit", &first);
    assert!(!first.contains_key("prevData"));

    // Create, update, delete: ops with `cid` and `prev`, `since` and
    // `prevData` chaining the commits.
    let created = create(&c, &did, &token, "one").await;
    let rkey = created["uri"].as_str().unwrap().rsplit('/').next().unwrap();
    let (_, create_body) = message(&mut ws).await;
    follower.follow("#commit", &create_body);
    assert_eq!(text(&create_body, "since"), text(&first, "rev"));
    let first_commit = SignedCommit::from_block(
        &read_car_bytes(match &first["blocks"] {
            Ipld::Bytes(b) => b,
            _ => panic!(),
        })
        .unwrap()
        .1[&link(&first["commit"])],
    )
    .unwrap();
    assert_eq!(link(&create_body["prevData"]), first_commit.data);
    c.ok_post(
        "com.atproto.repo.putRecord",
        Some(&token),
        json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey, "record": post("one, edited")}),
    )
    .await;
    let (_, update_body) = message(&mut ws).await;
    follower.follow("#commit", &update_body);
    let Ipld::List(ops) = &update_body["ops"] else {
        panic!()
    };
    let Ipld::Map(op) = &ops[0] else { panic!() };
    assert_eq!(text(op, "action"), "update");
    assert_eq!(
        link(&op["prev"]).to_string(),
        created["cid"].as_str().unwrap()
    );
    c.ok_post(
        "com.atproto.repo.deleteRecord",
        Some(&token),
        json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey}),
    )
    .await;
    let (_, delete_body) = message(&mut ws).await;
    follower.follow("#commit", &delete_body);

    // A large commit (200 writes) still carries everything it needs.
    let writes: Vec<Value> = (0..200)
        .map(|i| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post(&format!("bulk {i}"))}))
        .collect();
    c.ok_post(
        "com.atproto.repo.applyWrites",
        Some(&token),
        json!({"repo": did, "writes": writes}),
    )
    .await;
    let (kind, bulk) = message(&mut ws).await;
    assert_eq!(kind, "#commit");
    let Ipld::List(ops) = &bulk["ops"] else {
        panic!()
    };
    assert_eq!(ops.len(), 200);
    follower.follow("#commit", &bulk);

    // An import resets the repo: #sync with the new commit.
    let car = foreign_repo(&Did::parse(did.as_str()).unwrap()).await;
    let res = server
        .http
        .post(server.url("/xrpc/com.atproto.repo.importRepo"))
        .bearer_auth(&token)
        .header("content-type", "application/vnd.ipld.car")
        .body(car)
        .send()
        .await
        .unwrap();
    Client::ok(res).await;
    let (kind, sync) = message(&mut ws).await;
    assert_eq!(kind, "#sync");
    assert_eq!(text(&sync, "did"), did);
    let Ipld::Bytes(car) = &sync["blocks"] else {
        panic!()
    };
    let (root, blocks) = read_car_bytes(car).unwrap();
    let commit = SignedCommit::from_block(&blocks[&root]).unwrap();
    assert_eq!(commit.rev.as_str(), text(&sync, "rev"));
    follower.follow("#sync", &sync);
    assert_eq!(follower.commits, 5);

    // A takedown: #account, inactive, with its status.
    let admin = |nsid: &str, body: Value| {
        server
            .http
            .post(server.url(&format!("/xrpc/{nsid}")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&body)
            .send()
    };
    let subject = json!({"$type": "com.atproto.admin.defs#repoRef", "did": did});
    Client::ok(
        admin(
            "com.atproto.admin.updateSubjectStatus",
            json!({"subject": subject, "takedown": {"applied": true, "ref": "test"}}),
        )
        .await
        .unwrap(),
    )
    .await;
    let (kind, takedown) = message(&mut ws).await;
    assert_eq!(kind, "#account");
    assert_eq!(takedown["active"], Ipld::Bool(false));
    assert_eq!(text(&takedown, "status"), "takendown");

    // Seqs increase frame after frame, and the frames are the log.
    let seqs: Vec<i64> = [
        &identity,
        &account,
        &first,
        &create_body,
        &update_body,
        &delete_body,
        &bulk,
        &sync,
        &takedown,
    ]
    .iter()
    .map(|b| seq_of(b))
    .collect();
    assert_eq!(seqs, logged_after(&server, 0).await);

    // The account is deleted: its earlier events are invalidated and no
    // longer replayed; the deletion itself is.
    Client::ok(
        admin("com.atproto.admin.deleteAccount", json!({"did": did}))
            .await
            .unwrap(),
    )
    .await;
    let (kind, deleted) = message(&mut ws).await;
    assert_eq!(
        (kind.as_str(), text(&deleted, "status")),
        ("#account", "deleted")
    );
    let mut replay = subscribe(&server, Some(0)).await;
    let (kind, only) = message(&mut replay).await;
    assert_eq!(
        (kind.as_str(), seq_of(&only)),
        ("#account", seq_of(&deleted))
    );
    assert!(matches!(
        next(&mut replay, Duration::from_millis(300)).await,
        Next::Nothing
    ));
}

/// A task writing `n` posts to `did`'s repo through `server`, pausing
/// `pace` after each.
fn spawn_writer(
    server: &TestServer,
    did: &str,
    token: &str,
    n: usize,
    pace: Duration,
) -> tokio::task::JoinHandle<()> {
    spawn_writer_at(
        &server.http,
        server.url("/xrpc/com.atproto.repo.createRecord"),
        did,
        token,
        n,
        pace,
    )
}

/// [`spawn_writer`] through `url`, the createRecord URL of any server.
fn spawn_writer_at(
    http: &reqwest::Client,
    url: String,
    did: &str,
    token: &str,
    n: usize,
    pace: Duration,
) -> tokio::task::JoinHandle<()> {
    let http = http.clone();
    let (did, token) = (did.to_owned(), token.to_owned());
    tokio::spawn(async move {
        for i in 0..n {
            let res = http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(&format!("post {i}"))}))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "{}", res.text().await.unwrap());
            tokio::time::sleep(pace).await;
        }
    })
}

/// A subscriber (from `cursor`, or live) that reads until it has seen the
/// `seq` `until` says (once it says one), checking that each `seq` is
/// larger than the last and verifying every commit as a relay would
/// ([`RepoFollower`]).
fn collect(
    mut ws: Ws,
    cursor: Option<i64>,
    mut until: tokio::sync::watch::Receiver<i64>,
    plc: &Arc<TestPlcDirectory>,
) -> tokio::task::JoinHandle<Vec<i64>> {
    let mut follower = RepoFollower::new(plc.clone());
    tokio::spawn(async move {
        let mut seen: Vec<i64> = Vec::new();
        loop {
            let last = seen.last().copied().or(cursor).unwrap_or(-1);
            let target = *until.borrow_and_update();
            if target > 0 && last >= target {
                return seen;
            }
            tokio::select! {
                got = next(&mut ws, PATIENCE) => match got {
                    Next::Frame(Frame::Message { kind, body: Ipld::Map(body) }) => {
                        let seq = seq_of(&body);
                        assert!(seq > last, "seq {seq} after {last}: out of order or repeated");
                        follower.follow(&kind, &body);
                        seen.push(seq);
                    }
                    Next::Ping => {}
                    other => panic!("subscriber got {other:?} after {last}"),
                },
                _ = until.changed() => {}
            }
        }
    })
}

/// A writer runs throughout while subscribers join at different cursors;
/// each sees every event after its cursor exactly once, in order.
async fn subscribers_join_while_a_writer_runs(test: &str, db: Db) {
    let plc = Arc::new(TestPlcDirectory::start().await);
    let Some(server) = server(test, db, &plc).await else {
        return;
    };
    let c = Client { server: &server };
    let (did, token) = sign_up(&c, "steady.test").await;
    // More than a page of history before anyone subscribes with a cursor.
    for i in 0..120 {
        create(&c, &did, &token, &format!("before {i}")).await;
    }
    let (done_tx, done_rx) = tokio::sync::watch::channel(0_i64);

    let live = collect(subscribe(&server, None).await, None, done_rx.clone(), &plc);
    // Let it join the feed (a live subscriber starts wherever it joins).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Paced, so that it runs while every subscriber joins.
    let writer = spawn_writer(&server, &did, &token, 240, Duration::from_millis(10));
    // Subscribers join at different points, with different cursors.
    let mut joined = Vec::new();
    for (pause, cursor_of) in [
        (50_u64, 0_u8), // from the start of the log
        (300, 1),       // from half-way
        (600, 2),       // from the head
        (900, 0),
    ] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        assert!(!writer.is_finished(), "the writer still runs");
        let now = head(&server).await;
        let cursor = match cursor_of {
            0 => 0,
            1 => now / 2,
            _ => now,
        };
        joined.push((
            cursor,
            collect(
                subscribe(&server, Some(cursor)).await,
                Some(cursor),
                done_rx.clone(),
                &plc,
            ),
        ));
    }
    writer.await.unwrap();
    let last = head(&server).await;
    done_tx.send(last).unwrap();

    for (cursor, subscriber) in joined {
        let seen = tokio::time::timeout(PATIENCE, subscriber)
            .await
            .expect("a subscriber fell behind")
            .unwrap();
        assert_eq!(
            seen,
            logged_after(&server, cursor).await,
            "the subscriber from cursor {cursor} saw every event once, in order"
        );
    }
    let seen = tokio::time::timeout(PATIENCE, live).await.unwrap().unwrap();
    assert_live(&server, &seen, 240).await;
}

/// A live subscriber's `seq`s are the log from where it joined, and at
/// least `writes` long.
async fn assert_live(server: &TestServer, seen: &[i64], writes: usize) {
    assert_eq!(
        seen,
        logged_after(server, seen[0] - 1).await,
        "live: no gap"
    );
    assert!(
        seen.len() >= writes,
        "live saw all the writes ({})",
        seen.len()
    );
}

#[tokio::test]
async fn subscribers_join_while_a_writer_runs_on_sqlite() {
    subscribers_join_while_a_writer_runs("firehose_steady_sqlite", Db::Sqlite).await;
}

#[tokio::test]
async fn subscribers_join_while_a_writer_runs_in_memory() {
    subscribers_join_while_a_writer_runs("firehose_steady_memory", Db::Memory).await;
}

#[tokio::test]
async fn subscribers_join_while_a_writer_runs_on_postgres() {
    subscribers_join_while_a_writer_runs("firehose_steady_postgres", Db::Postgres).await;
}

#[tokio::test]
async fn without_a_cursor_only_live_events_come() {
    let plc = TestPlcDirectory::start().await;
    let server = server("firehose_live", Db::Memory, &plc).await.unwrap();
    let c = Client { server: &server };
    let (did, token) = sign_up(&c, "live.test").await;
    create(&c, &did, &token, "old").await;
    let mut ws = subscribe(&server, None).await;
    assert!(
        matches!(
            next(&mut ws, Duration::from_millis(500)).await,
            Next::Nothing
        ),
        "nothing from the past"
    );
    let before = head(&server).await;
    create(&c, &did, &token, "new 1").await;
    create(&c, &did, &token, "new 2").await;
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let (kind, body) = message(&mut ws).await;
        assert_eq!(kind, "#commit");
        seqs.push(seq_of(&body));
    }
    assert_eq!(seqs, logged_after(&server, before).await);
}

#[tokio::test]
async fn a_cursor_from_the_future_gets_the_future_cursor_error() {
    let plc = TestPlcDirectory::start().await;
    let server = server("firehose_future", Db::Sqlite, &plc).await.unwrap();
    let c = Client { server: &server };
    sign_up(&c, "future.test").await;
    let mut ws = subscribe(&server, Some(head(&server).await + 1)).await;
    assert_error_frame(&mut ws, "FutureCursor").await;
    // The head itself is no future.
    let mut ws = subscribe(&server, Some(head(&server).await)).await;
    assert!(matches!(
        next(&mut ws, Duration::from_millis(300)).await,
        Next::Nothing
    ));
    // A malformed cursor is refused before the upgrade.
    let res = server
        .get("/xrpc/com.atproto.sync.subscribeRepos?cursor=soon")
        .await;
    assert_eq!(res.status().as_u16(), 400);
}

#[tokio::test]
async fn a_cursor_past_retention_gets_outdated_cursor_then_the_oldest_events() {
    const RETENTION: Duration = Duration::from_secs(4);
    let plc = TestPlcDirectory::start().await;
    let server = server_with("firehose_outdated", Db::Sqlite, &plc, |c: &mut Config| {
        c.firehose_retention = ConfigDuration(RETENTION);
    })
    .await
    .unwrap();
    let c = Client { server: &server };
    let (did, token) = sign_up(&c, "old.test").await;
    create(&c, &did, &token, "soon forgotten").await;
    let old_head = head(&server).await;
    // The pruning task removes all but the newest of the old events.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.ctx.sequencer.oldest_seq().await.unwrap() != Some(old_head) {
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = head(&server).await;
    create(&c, &did, &token, "fresh 1").await;
    create(&c, &did, &token, "fresh 2").await;
    let fresh = logged_after(&server, before).await;
    assert_eq!(fresh.len(), 2);

    let mut ws = subscribe(&server, Some(0)).await;
    let (kind, info) = message(&mut ws).await;
    assert_eq!(kind, "#info");
    assert_eq!(text(&info, "name"), "OutdatedCursor");
    assert!(!text(&info, "message").is_empty());
    let mut seqs = Vec::new();
    for _ in 0..2 {
        seqs.push(seq_of(&message(&mut ws).await.1));
    }
    assert_eq!(seqs, fresh, "the oldest events within retention follow");

    // A cursor within the window gets no #info.
    let mut ws = subscribe(&server, Some(fresh[0])).await;
    let (kind, body) = message(&mut ws).await;
    assert_eq!((kind.as_str(), seq_of(&body)), ("#commit", fresh[1]));
}

#[tokio::test]
async fn a_consumer_that_does_not_read_is_cut_off_with_consumer_too_slow() {
    const WRITES: usize = 150;
    let plc = TestPlcDirectory::start().await;
    let server = server_with("firehose_slow", Db::Memory, &plc, |c: &mut Config| {
        c.firehose_outbox_frames = 4;
    })
    .await
    .unwrap();
    let c = Client { server: &server };
    let (did, token) = sign_up(&c, "slow.test").await;

    // A client with a tiny receive window, which then reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(
        subscribe_url(&server, None),
        MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    // A consumer that keeps up gets everything.
    let mut fast = subscribe(&server, None).await;
    let fast = tokio::spawn(async move {
        for _ in 0..WRITES {
            assert_eq!(message(&mut fast).await.0, "#commit");
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Big records fill the slow one's socket buffers (the server's send
    // buffer on loopback takes megabytes), then its outbox.
    let big = "x".repeat(60_000);
    for i in 0..WRITES {
        c.ok_post(
            "com.atproto.repo.createRecord",
            Some(&token),
            json!({"repo": did, "collection": "com.example.big", "record": {"$type": "com.example.big", "n": i, "text": big}}),
        )
        .await;
    }
    tokio::time::timeout(PATIENCE, fast).await.unwrap().unwrap();
    // The slow one gets what was under way, then the error frame.
    let mut commits = 0;
    loop {
        match frame(&mut slow).await {
            Frame::Message { kind, .. } => {
                assert_eq!(kind, "#commit");
                commits += 1;
            }
            Frame::Error { error, .. } => {
                assert_eq!(error, "ConsumerTooSlow");
                break;
            }
        }
    }
    assert!(
        commits < WRITES,
        "cut off before the end ({commits} commits)"
    );
    match next(&mut slow, PATIENCE).await {
        Next::Closed(Some((code, reason))) => {
            assert_eq!(
                (code, reason.as_str()),
                (CloseCode::Policy, "ConsumerTooSlow")
            );
        }
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn idle_connections_are_pinged_and_silent_ones_closed() {
    let plc = TestPlcDirectory::start().await;
    let server = server_with("firehose_ping", Db::Memory, &plc, |c: &mut Config| {
        c.firehose_ping_secs = 1;
    })
    .await
    .unwrap();
    // A reading client answers pings (the WebSocket layer sends pongs) and
    // stays connected.
    let mut ws = subscribe(&server, None).await;
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(3_500);
    while tokio::time::Instant::now() < until {
        match next(&mut ws, Duration::from_millis(200)).await {
            Next::Ping => pings += 1,
            Next::Nothing => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings");
    ws.send(Message::Ping(Vec::new().into())).await.unwrap();

    // One that never answers is closed.
    let mut silent = subscribe(&server, None).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never closed");
        match next(&mut silent, PATIENCE).await {
            Next::Ping => {}
            Next::Ended | Next::Closed(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Two servers on one Postgres, writers through both: subscribers on
/// either server see every event, in increasing `seq` order, no matter
/// which server wrote it.
#[tokio::test]
async fn two_servers_on_one_postgres_serve_one_ordered_log() {
    let plc = Arc::new(TestPlcDirectory::start().await);
    let Some((a, b)) = two_servers_on_one_postgres("firehose_two_servers", &plc).await else {
        return;
    };
    let (done_tx, done_rx) = tokio::sync::watch::channel(0_i64);
    let start = head(&a).await;
    let live_a = collect(subscribe(&a, None).await, None, done_rx.clone(), &plc);
    let live_b = collect(subscribe(&b, None).await, None, done_rx.clone(), &plc);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (did_a, token_a) = sign_up(&Client { server: &a }, "north.test").await;
    let (did_b, token_b) = sign_up(&Client { server: &b }, "south.test").await;

    let mut writers = Vec::new();
    for w in 0..8 {
        // Each repo is written through both servers.
        let server = if w % 2 == 0 { &a } else { &b };
        let (did, token) = if w < 4 {
            (&did_a, &token_a)
        } else {
            (&did_b, &token_b)
        };
        writers.push(spawn_writer(server, did, token, 15, Duration::ZERO));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from_a = collect(
        subscribe(&a, Some(start)).await,
        Some(start),
        done_rx.clone(),
        &plc,
    );
    let mid = head(&b).await / 2;
    let from_b = collect(
        subscribe(&b, Some(mid)).await,
        Some(mid),
        done_rx.clone(),
        &plc,
    );
    for w in writers {
        w.await.unwrap();
    }
    let last = head(&a).await;
    assert_eq!(last, head(&b).await);
    done_tx.send(last).unwrap();

    let log = logged_after(&a, start).await;
    assert_eq!(log.len(), 2 * 3 + 8 * 15, "sign-ups and writes");
    for (name, subscriber, cursor) in [("from_a", from_a, start), ("from_b", from_b, mid)] {
        let seen = tokio::time::timeout(PATIENCE, subscriber)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, logged_after(&a, cursor).await, "{name}");
    }
    // Each live subscriber saw both servers' events, in log order.
    for subscriber in [live_a, live_b] {
        let seen = tokio::time::timeout(PATIENCE, subscriber)
            .await
            .unwrap()
            .unwrap();
        assert_live(&a, &seen, 8 * 15).await;
    }
}

/// The same with two real `aurora serve` processes on one Postgres: each
/// signs up an account, writers go through both processes to both repos,
/// and subscribers on either process see one log: every event once, in
/// increasing `seq` order, each commit verified; a replay from cursor 0
/// afterwards is exactly what the subscriber from 0 saw live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aurora_processes_on_one_postgres_serve_one_ordered_log() {
    const WRITES: usize = 20;
    let Some(database) = aurora_storage_testkit::postgres::database("firehose_processes") else {
        return;
    };
    let plc = Arc::new(TestPlcDirectory::start().await);
    let plc_url = plc.url();
    let env = [
        ("AURORA_DATABASE_URL", database.as_str()),
        ("AURORA_PLC_URL", plc_url.as_str()),
        ("AURORA_PUBLIC_URL", "https://pds.test"),
        ("AURORA_USER_DOMAINS", ".test"),
        (
            "AURORA_JWT_SECRET",
            "a shared secret of the two processes, 32+ chars",
        ),
        ("AURORA_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = AuroraProcess::start(dir_a.path(), &env);
    let b = AuroraProcess::start(dir_b.path(), &env);
    let http = aurora_server::identity::http_client(PATIENCE).unwrap();

    let (done_tx, done_rx) = tokio::sync::watch::channel(0_i64);
    let from_zero = collect(
        subscribe_at(&a.addr, Some(0)).await,
        Some(0),
        done_rx.clone(),
        &plc,
    );
    let live_b = collect(
        subscribe_at(&b.addr, None).await,
        None,
        done_rx.clone(),
        &plc,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut accounts = Vec::new();
    for (process, handle) in [(&a, "east.test"), (&b, "west.test")] {
        let res = http
            .post(process.url("/xrpc/com.atproto.server.createAccount"))
            .json(&json!({"handle": handle, "email": format!("{handle}@example.com"), "password": "a long password"}))
            .send()
            .await
            .unwrap();
        let created = Client::ok(res).await;
        accounts.push((
            created["did"].as_str().unwrap().to_owned(),
            created["accessJwt"].as_str().unwrap().to_owned(),
        ));
    }
    let mut writers = Vec::new();
    for (i, (did, token)) in accounts.iter().chain(accounts.iter()).enumerate() {
        // Each repo is written through both processes at once.
        let process = if i % 2 == 0 { &a } else { &b };
        writers.push(spawn_writer_at(
            &http,
            process.url("/xrpc/com.atproto.repo.createRecord"),
            did,
            token,
            WRITES,
            Duration::ZERO,
        ));
    }
    for w in writers {
        w.await.unwrap();
    }
    // Sign-ups (#identity, #account, first #commit) and the writes; the
    // log has nothing else, so its head is its length.
    let events = 2 * 3 + 4 * WRITES;
    let head = i64::try_from(events).unwrap();
    done_tx.send(head).unwrap();

    let seen = tokio::time::timeout(PATIENCE, from_zero)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen,
        (1..=head).collect::<Vec<_>>(),
        "every event once, in order"
    );
    let live = tokio::time::timeout(PATIENCE, live_b)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        live, seen,
        "the other process's live subscriber saw the same log"
    );
    // A replay afterwards, from the other process, is the same log again.
    let replay = collect(subscribe_at(&b.addr, Some(0)).await, Some(0), done_rx, &plc);
    let replayed = tokio::time::timeout(PATIENCE, replay)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replayed, seen);
}
