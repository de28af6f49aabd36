//! Database faults under the running server:
//! - Postgres stopped (as in a crash) and started again: while it is down,
//!   requests that need it fail fast with 503 and an XRPC error, nothing is
//!   half-written, and the server recovers by itself when it returns;
//! - a full disk under the SQLite data folder: writes fail cleanly with a
//!   clear error and change nothing, reads go on, and writes work again
//!   once there is room.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use aurora_storage_testkit::plc::TestPlcDirectory;
use aurora_storage_testkit::postgres::PrivateCluster;
use common::dump::{connect, differences, dump, sqlite_url};
use common::pds::{Client, rkey_of, server_with, sign_up};
use common::{Db, TestServer, assert_xrpc_error};
use serde_json::{Value, json};

/// A request while the database is unavailable must be answered within
/// this (the pool's acquire timeout bounds it).
const FAIL_FAST: Duration = Duration::from_secs(3);

fn post(text: &str) -> Value {
    json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-07T12:00:00.000Z"})
}

async fn create(c: &Client<'_>, did: &str, token: &str, text: &str) -> reqwest::Response {
    c.post(
        "com.atproto.repo.createRecord",
        Some(token),
        json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(text)}),
    )
    .await
}

/// How many posts `did`'s repo lists.
async fn posts(c: &Client<'_>, did: &str) -> usize {
    let listed = c
        .ok_get(
            "com.atproto.repo.listRecords",
            None,
            &[("repo", did), ("collection", "app.bsky.feed.post")],
        )
        .await;
    listed["records"].as_array().unwrap().len()
}

/// The calls a client makes while the database is down: each is answered
/// fast with a 503 and an XRPC error (`_health` with a 503 of its own).
async fn calls_during_outage(server: &TestServer, did: &str, token: &str, rkey: &str) {
    let xrpc = |nsid: &str| server.url(&format!("/xrpc/{nsid}"));
    let calls = [
        (
            "createRecord",
            server
                .http
                .post(xrpc("com.atproto.repo.createRecord"))
                .bearer_auth(token)
                .json(&json!({"repo": did, "collection": "app.bsky.feed.post",
                              "record": post("written while the database is down")})),
        ),
        (
            "getRecord",
            server.http.get(xrpc("com.atproto.repo.getRecord")).query(&[
                ("repo", did),
                ("collection", "app.bsky.feed.post"),
                ("rkey", rkey),
            ]),
        ),
        (
            "createSession",
            server
                .http
                .post(xrpc("com.atproto.server.createSession"))
                .json(&json!({"identifier": "alice.test", "password": "a long password"})),
        ),
        (
            "sync.getRepo",
            server
                .http
                .get(xrpc("com.atproto.sync.getRepo"))
                .query(&[("did", did)]),
        ),
        ("_health", server.http.get(server.url("/xrpc/_health"))),
    ];
    for (what, request) in calls {
        let started = Instant::now();
        let res = request.send().await.unwrap();
        let took = started.elapsed();
        assert!(
            took < FAIL_FAST,
            "{what} took {took:?} with the database down"
        );
        println!("  {what}: answered in {took:?}");
        if what == "_health" {
            assert_eq!(res.status(), 503);
        } else {
            assert_xrpc_error(res, 503, "ServiceUnavailable").await;
        }
    }
}

/// Waits until `/xrpc/_health` answers 200; how long that took.
async fn wait_healthy(server: &TestServer) -> Duration {
    let started = Instant::now();
    loop {
        if server.get("/xrpc/_health").await.status() == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn postgres_outage(test: &str, immediate: bool) {
    let Some(cluster) = PrivateCluster::start(test) else {
        return;
    };
    let plc = TestPlcDirectory::start().await;
    let server = server_with(test, Db::Url(cluster.url()), &plc, |c| {
        c.rate_limits.enabled = false;
    })
    .await
    .unwrap();
    let c = Client { server: &server };
    let (did, token) = sign_up(&c, "alice.test").await;
    let created = Client::ok(create(&c, &did, &token, "before the outage").await).await;
    let rkey = rkey_of(&created);
    let db = connect(&cluster.url()).await;
    let before = dump(&db).await;
    db.close().await.unwrap();

    cluster.stop(immediate).unwrap();
    println!("{test}: Postgres stopped");
    calls_during_outage(&server, &did, &token, &rkey).await;
    // And again, now that the pool has seen the failure.
    calls_during_outage(&server, &did, &token, &rkey).await;

    cluster.resume().unwrap();
    let recovered = wait_healthy(&server).await;
    println!("{test}: Postgres back; the server recovered in {recovered:?}");

    // Nothing from the outage was written, half or whole.
    let db = connect(&cluster.url()).await;
    let after = dump(&db).await;
    let changed = differences(&before, &after);
    assert!(
        changed.is_empty(),
        "the outage changed the database:\n{}",
        changed.join("\n")
    );

    // Everything works again, on the same sessions.
    let record = c
        .ok_get(
            "com.atproto.repo.getRecord",
            None,
            &[
                ("repo", &did),
                ("collection", "app.bsky.feed.post"),
                ("rkey", &rkey),
            ],
        )
        .await;
    assert_eq!(record["cid"], created["cid"]);
    let again = Client::ok(create(&c, &did, &token, "after the outage").await).await;
    assert_eq!(again["commit"]["rev"].as_str().unwrap().len(), 13);
    assert_eq!(posts(&c, &did).await, 2);
}

#[tokio::test]
async fn postgres_crash_and_restart_fail_fast_and_recover() {
    postgres_outage("db_faults_postgres_crash", true).await;
}

#[tokio::test]
async fn postgres_shutdown_and_restart_fail_fast_and_recover() {
    postgres_outage("db_faults_postgres_shutdown", false).await;
}

/// A small filesystem of its own at `path` (tmpfs), or why not.
/// As root, or else through password-less `sudo`.
fn privileged(program: &str) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        std::process::Command::new(program)
    } else {
        let mut sudo = std::process::Command::new("sudo");
        sudo.args(["-n", program]);
        sudo
    }
}

fn mount_small_fs(path: &Path, size: &str) -> Result<(), String> {
    let out = privileged("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0777"),
            "tmpfs",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("running mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Unmounts `path` when dropped.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = privileged("umount").arg("-l").arg(self.0).status();
    }
}

/// Fills the filesystem of `dir` until a write fails for want of space.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "ENOSPC, got {e}");
            break;
        }
    }
    // Byte by byte, for the last partial chunk.
    while file.write_all(&[0]).and_then(|()| file.sync_all()).is_ok() {}
    path
}

#[tokio::test]
async fn a_full_disk_fails_writes_cleanly_and_reads_go_on() {
    const TEST: &str = "db_faults_full_disk";
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    std::fs::create_dir(&data).unwrap();
    if let Err(reason) = mount_small_fs(&data, "24m") {
        aurora_storage_testkit::skip(
            TEST,
            &format!("cannot mount a small filesystem (needs root): {reason}"),
        );
        return;
    }
    let _mounted = Mounted(&data);
    let plc = TestPlcDirectory::start().await;
    let data_dir = data.clone();
    let server = server_with(TEST, Db::Sqlite, &plc, move |c| {
        c.data_dir = data_dir;
        c.rate_limits.enabled = false;
    })
    .await
    .unwrap();
    let c = Client { server: &server };
    let (did, token) = sign_up(&c, "alice.test").await;
    let mut rkeys = Vec::new();
    for i in 0..5 {
        let created = Client::ok(create(&c, &did, &token, &format!("post {i}")).await).await;
        rkeys.push(rkey_of(&created));
    }
    let db = connect(&sqlite_url(&data)).await;
    let before = dump(&db).await;

    let filler = fill(&data);
    println!("{TEST}: the data folder's filesystem is full");

    // Writes fail with a clear error, and quickly. SQLite can still fit a
    // write in space its files already hold (a rolled-back write leaves its
    // WAL frames allocated), so not every write fails; each one either is
    // acknowledged and wholly there, or is refused and leaves nothing.
    let big = |i: usize| {
        json!({"repo": did, "collection": "com.example.padding",
               "record": {"$type": "com.example.padding", "pad": "x".repeat(200_000), "i": i}})
    };
    let mut acknowledged = BTreeSet::new();
    for i in 0..10 {
        let started = Instant::now();
        let res = c
            .post("com.atproto.repo.createRecord", Some(&token), big(i))
            .await;
        assert!(started.elapsed() < FAIL_FAST);
        if res.status() == 200 {
            acknowledged.insert(i);
        } else {
            assert_xrpc_error(res, 507, "InsufficientStorage").await;
        }
    }
    println!(
        "{TEST}: of 10 big writes, {} fitted and the rest were refused with 507",
        acknowledged.len()
    );
    assert!(acknowledged.len() < 10, "no write was refused");
    let mut uploads_refused = 0;
    for _ in 0..3 {
        let res = server
            .http
            .post(server.url("/xrpc/com.atproto.repo.uploadBlob"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .body(vec![9u8; 1024 * 1024])
            .send()
            .await
            .unwrap();
        if res.status() != 200 {
            assert_xrpc_error(res, 507, "InsufficientStorage").await;
            uploads_refused += 1;
        }
    }
    assert!(uploads_refused > 0, "no upload was refused");
    // Reads go on.
    for rkey in &rkeys {
        c.ok_get(
            "com.atproto.repo.getRecord",
            None,
            &[
                ("repo", &did),
                ("collection", "app.bsky.feed.post"),
                ("rkey", rkey),
            ],
        )
        .await;
    }
    assert_eq!(posts(&c, &did).await, 5);
    let repo = c
        .get("com.atproto.sync.getRepo", None, &[("did", &did)])
        .await;
    assert_eq!(repo.status(), 200);
    c.ok_get("com.atproto.server.getSession", Some(&token), &[])
        .await;

    // Nothing was half-written: the acknowledged writes are there, each
    // with one record row and one event; the refused ones left nothing.
    let listed = c
        .ok_get(
            "com.atproto.repo.listRecords",
            None,
            &[
                ("repo", &did),
                ("collection", "com.example.padding"),
                ("limit", "100"),
            ],
        )
        .await;
    let stored: BTreeSet<usize> = listed["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| usize::try_from(r["value"]["i"].as_u64().unwrap()).unwrap())
        .collect();
    assert_eq!(
        stored, acknowledged,
        "exactly the acknowledged writes are stored"
    );
    let after = dump(&db).await;
    let added = |table: &str| after[table].len() - before[table].len();
    assert_eq!(added("record"), acknowledged.len(), "record rows");
    assert_eq!(added("repo_seq"), acknowledged.len(), "events");
    assert_eq!(added("blob"), 0, "blob rows");
    assert_eq!(after["account"], before["account"]);
    // With room again, writes work again.
    std::fs::remove_file(filler).unwrap();
    let created = Client::ok(create(&c, &did, &token, "room again").await).await;
    assert!(created["uri"].as_str().is_some());
    assert_eq!(posts(&c, &did).await, 6);
    db.close().await.unwrap();
    drop(server);
}
