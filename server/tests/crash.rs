//! Crash safety: the real `aurora serve`, under load from `loadgen` (writes,
//! deletes, reads and a live firehose subscriber) with a `jsonl` event sink,
//! is killed with SIGKILL at a random moment, restarted, and checked; then
//! again, for `AURORA_CRASH_CYCLES` cycles (10 by default, the CI form; the
//! long form is 100), on SQLite and on Postgres.
//!
//! After every restart:
//! - every write acknowledged with 200 is there (a create with the CID it
//!   was acknowledged with; an acknowledged delete gone), and no refused
//!   write is;
//! - a write whose answer was lost to the kill is either wholly there or
//!   wholly absent: the repo, the record index and the event log agree;
//! - each repo's commit is signed by its key and its MST is the canonical
//!   tree of its records; the event log replayed from 0 has every seq once
//!   and in order, each `#commit` self-contained and chained to the one
//!   before, and exactly one `#commit` per acknowledged write;
//! - the sink resumes from its cursor and delivers every event at least once.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_core::cid::Cid;
use aurora_core::data::Ipld;
use aurora_core::event::{Frame, decode_frame};
use aurora_core::repo::{Mst, SignedCommit, read_car_bytes};
use aurora_storage_testkit::plc::TestPlcDirectory;
use common::dump::{connect, sqlite_url};
use common::pds::{ADMIN_PASSWORD, rkey_of};
use common::process::AuroraProcess;
use common::repo_check::{RepoFollower, link, repo_key, seq_of, text};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const COLLECTION: &str = "app.bsky.feed.post";

/// The `loadgen` binary beside `aurora` in the target folder. `cargo test
/// --workspace` (the README's command) builds it, for loadgen's own CLI
/// test; a run of this test alone builds it when it is missing. (After
/// changing loadgen, run the test through the workspace command, or
/// `cargo build -p aurora-loadgen`.)
fn loadgen() -> PathBuf {
    let aurora = Path::new(env!("CARGO_BIN_EXE_aurora"));
    let path = aurora.with_file_name(format!("loadgen{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let target_dir = aurora.parent().and_then(Path::parent).unwrap();
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "aurora-loadgen",
                "--bin",
                "loadgen",
                "--target-dir",
            ])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "building loadgen failed");
    }
    path
}

/// One write as `loadgen --ack-log` logged it.
#[derive(Debug, Clone)]
struct Write {
    create: bool,
    did: String,
    rkey: String,
    outcome: String,
    cid: Option<String>,
    commit: Option<String>,
    rev: Option<String>,
}

fn read_ack_log(path: &Path) -> Vec<Write> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        // A line cut short by a kill of loadgen is not a write.
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|v| Write {
            create: v["op"] == "create",
            did: v["did"].as_str().unwrap().to_owned(),
            rkey: v["rkey"].as_str().unwrap().to_owned(),
            outcome: v["outcome"].as_str().unwrap().to_owned(),
            cid: v["cid"].as_str().map(str::to_owned),
            commit: v["commit"].as_str().map(str::to_owned),
            rev: v["rev"].as_str().map(str::to_owned),
        })
        .collect()
}

/// What the server holds of one repo, read three ways.
struct RepoState {
    /// From the signed commit's MST (`sync.getRepo`): rkey → record CID.
    tree: BTreeMap<String, Cid>,
    /// From the record index (`repo.listRecords`).
    index: BTreeMap<String, Cid>,
}

/// Reads a repo and checks its commit: signed by the DID's key, the MST
/// loads and is exactly the canonical tree of its entries.
async fn read_repo(
    http: &reqwest::Client,
    base: &str,
    did: &str,
    plc: &TestPlcDirectory,
) -> RepoState {
    let car = http
        .get(format!("{base}/xrpc/com.atproto.sync.getRepo"))
        .query(&[("did", did)])
        .send()
        .await
        .unwrap();
    assert!(car.status().is_success(), "getRepo {did}: {}", car.status());
    let car = car.bytes().await.unwrap();
    let (root, blocks) = read_car_bytes(&car).unwrap();
    let commit = SignedCommit::from_block(&blocks[&root]).unwrap();
    commit
        .verify(&repo_key(plc, did))
        .expect("the repo's commit is signed by its key");
    let tree = Mst::open(&commit.data, Arc::new(blocks)).unwrap();
    let entries = tree.entries().unwrap();
    let rebuilt = Mst::from_entries(entries.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
    assert_eq!(
        rebuilt.root_cid(),
        commit.data,
        "{did}: the MST is canonical"
    );
    let prefix = format!("{COLLECTION}/");
    let tree = entries
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v)))
        .collect();

    let mut index = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![
            ("repo", did.to_owned()),
            ("collection", COLLECTION.to_owned()),
            ("limit", "100".to_owned()),
        ];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page: Value = http
            .get(format!("{base}/xrpc/com.atproto.repo.listRecords"))
            .query(&query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let records = page["records"].as_array().unwrap();
        for r in records {
            let rkey = rkey_of(r);
            index.insert(rkey, r["cid"].as_str().unwrap().parse().unwrap());
        }
        match page["cursor"].as_str() {
            Some(c) if !records.is_empty() => cursor = Some(c.to_owned()),
            _ => break,
        }
    }
    RepoState { tree, index }
}

/// The event log replayed from cursor 0 until it goes quiet: each event's
/// seq, and per DID the record map its `#commit` ops build and the revs
/// (with commit CIDs) of its commits. Checks every commit as a relay does.
struct Replay {
    seqs: Vec<i64>,
    records: HashMap<String, BTreeMap<String, Cid>>,
    commits: HashMap<String, Vec<(String, Cid)>>,
}

/// The newest `seq` in the event log, read from the database itself.
async fn head_seq(database: &str) -> i64 {
    let db = connect(database).await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT MAX(seq) AS head FROM repo_seq",
        ))
        .await
        .unwrap()
        .unwrap();
    let head = row.try_get::<Option<i64>>("", "head").unwrap().unwrap_or(0);
    db.close().await.unwrap();
    head
}

async fn replay(addr: &str, head: i64, plc: &Arc<TestPlcDirectory>) -> Replay {
    let url = format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos?cursor=0");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut follower = RepoFollower::new(plc.clone());
    let mut out = Replay {
        seqs: Vec::new(),
        records: HashMap::new(),
        commits: HashMap::new(),
    };
    while out.seqs.last().copied().unwrap_or(0) < head {
        let next = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the replay stalled after {:?} (head {head})",
                    out.seqs.last()
                )
            });
        let Some(Ok(message)) = next else {
            panic!("the firehose ended: {next:?}")
        };
        let Message::Binary(bytes) = message else {
            continue;
        };
        let Frame::Message {
            kind,
            body: Ipld::Map(body),
        } = decode_frame(&bytes).unwrap()
        else {
            panic!("an error frame in the replay")
        };
        out.seqs.push(seq_of(&body));
        follower.follow(&kind, &body);
        if kind != "#commit" {
            continue;
        }
        let did = text(&body, "repo").to_owned();
        out.commits
            .entry(did.clone())
            .or_default()
            .push((text(&body, "rev").to_owned(), link(&body["commit"])));
        let records = out.records.entry(did).or_default();
        let Ipld::List(ops) = &body["ops"] else {
            panic!("ops")
        };
        for op in ops {
            let Ipld::Map(op) = op else { panic!("op") };
            let Some(rkey) = text(op, "path")
                .strip_prefix(&format!("{COLLECTION}/"))
                .map(str::to_owned)
            else {
                continue;
            };
            match text(op, "action") {
                "delete" => {
                    records.remove(&rkey);
                }
                _ => {
                    records.insert(rkey, link(&op["cid"]));
                }
            }
        }
    }
    out
}

/// Every `seq` in the sink's files (`events/*.jsonl`).
fn sink_seqs(dir: &Path) -> BTreeSet<i64> {
    let Ok(files) = std::fs::read_dir(dir.join("events")) else {
        return BTreeSet::new();
    };
    files
        .filter_map(Result::ok)
        .filter_map(|f| std::fs::read_to_string(f.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| v["seq"].as_i64())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A record's create and its delete, as logged.
type CreateAndDelete<'a> = (Option<&'a Write>, Option<&'a Write>);

/// The tallies printed at the end.
#[derive(Default, Debug)]
struct Counts {
    acknowledged: usize,
    found: usize,
    lost: usize,
    unknown: usize,
    unknown_present: usize,
    refused: usize,
    /// Never sent: the server was down.
    unreached: usize,
    deletes_acknowledged: usize,
    events: usize,
}

/// Checks everything the server holds against what the clients were told.
async fn check(
    http: &reqwest::Client,
    server: &AuroraProcess,
    dir: &Path,
    database: &str,
    writes: &[Write],
    plc: &Arc<TestPlcDirectory>,
) -> Counts {
    let base = server.url("");
    let base = base.trim_end_matches('/');
    // Nothing writes during the check, so the log's head stays put.
    let replay = replay(&server.addr, head_seq(database).await, plc).await;
    assert!(
        replay.seqs.windows(2).all(|w| w[0] < w[1]),
        "the event log has every seq once, in increasing order"
    );
    let mut counts = Counts {
        events: replay.seqs.len(),
        ..Counts::default()
    };

    // Per (did, rkey): the create, and the delete if any.
    let mut by_record: BTreeMap<(&str, &str), CreateAndDelete> = BTreeMap::new();
    for w in writes {
        let entry = by_record
            .entry((w.did.as_str(), w.rkey.as_str()))
            .or_default();
        if w.create {
            entry.0 = Some(w);
        } else {
            entry.1 = Some(w);
        }
    }
    let dids: BTreeSet<&str> = writes.iter().map(|w| w.did.as_str()).collect();
    let mut repos = HashMap::new();
    for did in &dids {
        let state = read_repo(http, base, did, plc).await;
        assert_eq!(
            state.tree, state.index,
            "{did}: the record index is the repo's tree"
        );
        let from_events = replay.records.get(*did).cloned().unwrap_or_default();
        assert_eq!(
            state.tree, from_events,
            "{did}: the event log's ops build the repo's tree"
        );
        repos.insert(*did, state);
    }

    for ((did, rkey), (create, delete)) in &by_record {
        let present = repos[did].tree.get(*rkey);
        let Some(create) = create else { continue };
        match create.outcome.as_str() {
            "acknowledged" => {
                counts.acknowledged += 1;
                let cid: Cid = create.cid.as_deref().unwrap().parse().unwrap();
                let deleted = delete.is_some_and(|d| d.outcome == "acknowledged");
                counts.deletes_acknowledged += usize::from(deleted);
                let maybe_deleted = delete.is_some_and(|d| d.outcome == "unknown");
                match present {
                    Some(found) => {
                        assert_eq!(*found, cid, "{did}/{rkey}: the acknowledged CID");
                        assert!(!deleted, "{did}/{rkey}: an acknowledged delete was undone");
                        counts.found += 1;
                    }
                    None if deleted || maybe_deleted => counts.found += 1,
                    None => {
                        counts.lost += 1;
                        eprintln!("LOST: {did}/{rkey} acknowledged as {cid}");
                    }
                }
            }
            outcome @ ("refused" | "unreached") => {
                if outcome == "refused" {
                    counts.refused += 1;
                } else {
                    counts.unreached += 1;
                }
                assert!(present.is_none(), "{did}/{rkey}: a refused create is there");
            }
            _ => {
                counts.unknown += 1;
                counts.unknown_present += usize::from(present.is_some());
            }
        }
    }
    // One #commit per acknowledged write, with the acknowledged commit CID.
    for w in writes.iter().filter(|w| w.outcome == "acknowledged") {
        let rev = w.rev.as_deref().unwrap();
        let commit: Cid = w.commit.as_deref().unwrap().parse().unwrap();
        let matching: Vec<_> = replay
            .commits
            .get(&w.did)
            .into_iter()
            .flatten()
            .filter(|(r, _)| r == rev)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{}: one #commit for acknowledged rev {rev}",
            w.did
        );
        assert_eq!(
            matching[0].1, commit,
            "{}: the acknowledged commit CID",
            w.did
        );
    }
    assert_eq!(counts.lost, 0, "acknowledged writes were lost: {counts:?}");

    // The sink catches up from its cursor: every event, at least once.
    let expected: BTreeSet<i64> = replay.seqs.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = sink_seqs(dir);
        let missing: Vec<_> = expected.difference(&delivered).take(5).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink never delivered seqs {missing:?}…"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    counts
}

/// Starts `loadgen run` against `server`, logging writes to `ack_log`.
fn start_load(loadgen: &Path, server: &AuroraProcess, ack_log: &Path) -> Child {
    Command::new(loadgen)
        .args([
            "run",
            "--clients",
            "8",
            "--accounts",
            "3",
            "--seconds",
            "20",
            "--mix",
            "mixed",
        ])
        .args(["--subscribers", "1", "--handle-domain", ".test", "--url"])
        .arg(server.url(""))
        .arg("--ack-log")
        .arg(ack_log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn kill_under_load(test: &str, database: Option<String>) {
    let cycles: usize = std::env::var("AURORA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let plc = Arc::new(TestPlcDirectory::start().await);
    let plc_url = plc.url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("aurora.toml"),
        "[rate_limits]\nenabled = false\n\n[[sinks]]\nkind = \"jsonl\"\nname = \"audit\"\npath = \"events\"\nstart = \"oldest\"\n",
    )
    .unwrap();
    let mut env = vec![
        ("AURORA_PLC_URL", plc_url.as_str()),
        ("AURORA_PUBLIC_URL", "https://pds.test"),
        ("AURORA_USER_DOMAINS", ".test"),
        ("AURORA_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    if let Some(url) = &database {
        env.push(("AURORA_DATABASE_URL", url.as_str()));
    }
    let database_url = database.clone().unwrap_or_else(|| sqlite_url(dir.path()));
    let http = aurora_server::identity::http_client(Duration::from_secs(30)).unwrap();
    let loadgen = loadgen();
    let mut writes = Vec::new();
    let mut server = AuroraProcess::start(dir.path(), &env);
    let started = Instant::now();
    for cycle in 0..cycles {
        let ack_log = dir.path().join(format!("ack-{cycle}.jsonl"));
        let mut load = start_load(&loadgen, &server, &ack_log);
        // Once writes flow, wait a random moment, then SIGKILL the server.
        let deadline = Instant::now() + Duration::from_secs(60);
        while read_ack_log(&ack_log).is_empty() {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: no write was answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..1500))).await;
        drop(server); // kill -9
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = load.kill();
        let _ = load.wait();
        writes.extend(read_ack_log(&ack_log));

        server = AuroraProcess::start(dir.path(), &env);
        let counts = check(&http, &server, dir.path(), &database_url, &writes, &plc).await;
        println!("{test}: cycle {}/{cycles}: {counts:?}", cycle + 1);
    }
    let counts = check(&http, &server, dir.path(), &database_url, &writes, &plc).await;
    println!(
        "{test}: {cycles} kills in {:.0?}: creates acknowledged {} (of them deleted by an acknowledged delete {}), found {}, lost {}; \
         outcome unknown {} (present {}), refused {}, not sent {}; {} events",
        started.elapsed(),
        counts.acknowledged,
        counts.deletes_acknowledged,
        counts.found,
        counts.lost,
        counts.unknown,
        counts.unknown_present,
        counts.refused,
        counts.unreached,
        counts.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_on_sqlite() {
    kill_under_load("crash_sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_on_postgres() {
    let Some(url) = aurora_storage_testkit::postgres::database("crash_postgres") else {
        return;
    };
    kill_under_load("crash_postgres", Some(url)).await;
}
