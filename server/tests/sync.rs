//! The sync API (`com.atproto.sync.*`, the `aurora-sync` plugin) over HTTP
//! against the real server: repo exports that verify against the account's
//! key, diffs `since` a rev, record proofs, blocks, blobs with their
//! headers, listings with cursors and statuses, repos that are not served,
//! `requestCrawl` to a stand-in relay, and a 100,000-record export.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aurora_core::cid::Cid;
use aurora_core::crypto::PublicKey;
use aurora_core::data::{DAG_CBOR, RAW, cid_for, encode, json_to_ipld};
use aurora_core::repo::commit::{SignedCommit, UnsignedCommit};
use aurora_core::repo::{LoadedRepo, Mst, RepoHead, load_repo_bytes, prepare_import, read_car};
use aurora_core::store::AccountStatus;
use aurora_core::syntax::{Did, TidClock};
use aurora_storage_testkit::plc::TestPlcDirectory;
use bytes::Bytes;
use common::pds::{Client, rkey_of, server, server_with, sign_up};
use common::{Db, TestServer, assert_xrpc_error};
use futures::StreamExt;
use serde_json::{Value, json};

/// A tiny PNG; a suffix byte makes distinct blobs.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde";

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn post(text: &str) -> Value {
    json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-10T12:00:00.000Z"})
}

fn post_with_image(text: &str, blob: &Value) -> Value {
    json!({
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": "2026-12-10T12:00:00.000Z",
        "embed": {"$type": "app.bsky.embed.images", "images": [{"alt": "", "image": blob}]},
    })
}

async fn upload(server: &TestServer, token: &str, body: Vec<u8>) -> Value {
    let res = server
        .http
        .post(server.url("/xrpc/com.atproto.repo.uploadBlob"))
        .bearer_auth(token)
        .header("content-type", "image/png")
        .body(body)
        .send()
        .await
        .unwrap();
    Client::ok(res).await["blob"].clone()
}

async fn create(c: &Client<'_>, token: &str, repo: &str, record: Value) -> Value {
    c.ok_post(
        "com.atproto.repo.createRecord",
        Some(token),
        json!({"repo": repo, "collection": "app.bsky.feed.post", "record": record}),
    )
    .await
}

/// The account's repo signing key, from its DID document.
fn repo_key(plc: &TestPlcDirectory, did_str: &str) -> PublicKey {
    plc.log(&did(did_str))
        .unwrap()
        .document()
        .unwrap()
        .atproto_signing_key()
        .unwrap()
}

/// A successful CAR response's bytes.
async fn car_of(c: &Client<'_>, nsid: &str, query: &[(&str, &str)]) -> Vec<u8> {
    let res = c.get(nsid, None, query).await;
    assert_eq!(res.status().as_u16(), 200, "{nsid} {query:?}");
    assert_eq!(
        res.headers()["content-type"],
        "application/vnd.ipld.car",
        "{nsid}"
    );
    res.bytes().await.unwrap().to_vec()
}

/// A CAR file's roots and blocks, in file order.
async fn read_all(car: &[u8]) -> (Vec<Cid>, Vec<(Cid, Bytes)>) {
    let (roots, blocks) = read_car(car).await.unwrap();
    let blocks: Vec<_> = blocks.map(Result::unwrap).collect().await;
    (roots, blocks)
}

/// Reads an unsigned varint off the front of `buf`.
fn varint(buf: &mut &[u8]) -> usize {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let byte = buf[0];
        *buf = &buf[1..];
        n |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return n;
        }
        shift += 7;
    }
}

/// A CAR file with no roots (as `getBlocks` sends, and CAR readers that
/// insist on a root refuse): its blocks, each checked against its CID.
fn read_rootless(car: &[u8]) -> Vec<(Cid, Bytes)> {
    let mut buf = car;
    let len = varint(&mut buf);
    let header = aurora_core::data::decode(&buf[..len]).unwrap();
    assert_eq!(
        aurora_core::data::ipld_to_json(&header).unwrap(),
        json!({"version": 1, "roots": []})
    );
    buf = &buf[len..];
    let mut blocks = Vec::new();
    while !buf.is_empty() {
        let len = varint(&mut buf);
        let mut section = &buf[..len];
        let cid = Cid::read_bytes(&mut section).unwrap();
        aurora_core::repo::verify_block(&cid, section).unwrap();
        blocks.push((cid, Bytes::copy_from_slice(section)));
        buf = &buf[len..];
    }
    blocks
}

async fn sync_api(test: &str, db: Db) {
    let plc = TestPlcDirectory::start().await;
    let Some(server) = server(test, db, &plc).await else {
        return;
    };
    let c = Client { server: &server };
    let (alice, token) = sign_up(&c, "alice.test").await;
    let key = repo_key(&plc, &alice);

    // Three blobs, each used by one post; a fourth uploaded but unused.
    let mut blobs = Vec::new();
    for i in 0..4u8 {
        blobs.push(upload(&server, &token, [PNG, &[i]].concat()).await);
    }
    let mut created = Vec::new();
    let mut commit_revs = Vec::new();
    for (i, blob) in blobs.iter().take(3).enumerate() {
        let r = create(
            &c,
            &token,
            &alice,
            post_with_image(&format!("post {i}"), blob),
        )
        .await;
        commit_revs.push(r["commit"]["rev"].as_str().unwrap().to_owned());
        created.push(r);
    }
    let plain = create(&c, &token, &alice, post("no image")).await;

    // --- getLatestCommit -------------------------------------------------
    let root = server
        .ctx
        .repos
        .get_root(&did(&alice))
        .await
        .unwrap()
        .unwrap();
    let latest = c
        .ok_get("com.atproto.sync.getLatestCommit", None, &[("did", &alice)])
        .await;
    assert_eq!(
        latest,
        json!({"cid": root.cid.to_string(), "rev": root.rev.as_str()})
    );
    assert_eq!(latest["cid"], plain["commit"]["cid"]);

    // --- getRepo: the whole repo, signed by the account's key -----------
    let car = car_of(&c, "com.atproto.sync.getRepo", &[("did", &alice)]).await;
    let repo = load_repo_bytes(&car, Some(&key)).unwrap();
    assert_eq!(repo.commit_cid, root.cid);
    assert_eq!(repo.mst.len().unwrap(), 4);
    for r in created.iter().chain([&plain]) {
        let path = format!("app.bsky.feed.post/{}", rkey_of(r));
        assert_eq!(
            repo.mst.get(&path).unwrap().unwrap().to_string(),
            r["cid"].as_str().unwrap()
        );
    }
    // Only the current tree: no block twice, none of an older tree.
    let (_, blocks) = read_all(&car).await;
    let distinct: HashSet<Cid> = blocks.iter().map(|b| b.0).collect();
    assert_eq!(distinct.len(), blocks.len());
    let mut expected: HashSet<Cid> = repo
        .mst
        .blocks()
        .unwrap()
        .into_iter()
        .map(|b| b.0)
        .collect();
    expected.extend(repo.mst.entries().unwrap().into_iter().map(|e| e.1));
    expected.insert(root.cid);
    assert_eq!(distinct, expected);

    // --- getRepo?since: only what later commits wrote ------------------
    let since_car = car_of(
        &c,
        "com.atproto.sync.getRepo",
        &[("did", &alice), ("since", &commit_revs[2])],
    )
    .await;
    let (roots, diff) = read_all(&since_car).await;
    assert_eq!(roots, [root.cid]);
    let diff_cids: HashSet<Cid> = diff.iter().map(|b| b.0).collect();
    assert!(diff_cids.contains(&root.cid), "the new commit");
    let plain_cid = Cid::try_from(plain["cid"].as_str().unwrap()).unwrap();
    assert!(diff_cids.contains(&plain_cid), "the new record");
    let first_cid = Cid::try_from(created[0]["cid"].as_str().unwrap()).unwrap();
    assert!(!diff_cids.contains(&first_cid), "an older record");
    // The repo as of `since` plus the diff is the current repo.
    let old_car = {
        let mut blocks: BTreeMap<Cid, Bytes> = repo.blocks.clone();
        for cid in &diff_cids {
            blocks.remove(cid);
        }
        blocks
    };
    let mut merged = old_car.clone();
    merged.extend(diff);
    LoadedRepo::from_blocks(root.cid, merged, Some(&key)).unwrap();
    assert!(LoadedRepo::from_blocks(root.cid, old_car, Some(&key)).is_err());
    // Nothing is newer than the current rev.
    let (roots, none) = read_all(
        &car_of(
            &c,
            "com.atproto.sync.getRepo",
            &[("did", &alice), ("since", root.rev.as_str())],
        )
        .await,
    )
    .await;
    assert_eq!((roots, none.len()), (vec![root.cid], 0));
    c.fails_get(
        "com.atproto.sync.getRepo",
        None,
        &[("did", &alice), ("since", "not-a-tid")],
        400,
        "InvalidRequest",
    )
    .await;

    // --- getRecord: the record with its proof ---------------------------
    let rkey = rkey_of(&created[1]);
    let record_car = car_of(
        &c,
        "com.atproto.sync.getRecord",
        &[
            ("did", &alice),
            ("collection", "app.bsky.feed.post"),
            ("rkey", &rkey),
        ],
    )
    .await;
    let (roots, blocks) = read_all(&record_car).await;
    assert_eq!(roots, [root.cid]);
    let blocks: BTreeMap<Cid, Bytes> = blocks.into_iter().collect();
    assert!(blocks.len() < repo.blocks.len(), "a proof, not the repo");
    let commit = SignedCommit::from_block(&blocks[&root.cid]).unwrap();
    commit.verify(&key).unwrap();
    let proof = Mst::open(&commit.data, Arc::new(blocks.clone())).unwrap();
    let record_cid = proof
        .get(&format!("app.bsky.feed.post/{rkey}"))
        .unwrap()
        .unwrap();
    assert_eq!(record_cid.to_string(), created[1]["cid"].as_str().unwrap());
    let record = aurora_core::data::decode(&blocks[&record_cid]).unwrap();
    assert_eq!(
        aurora_core::data::ipld_to_json(&record).unwrap()["text"],
        json!("post 1")
    );
    c.fails_get(
        "com.atproto.sync.getRecord",
        None,
        &[
            ("did", &alice),
            ("collection", "app.bsky.feed.post"),
            ("rkey", "3zzzzzzzzzzzz"),
        ],
        400,
        "RecordNotFound",
    )
    .await;
    c.fails_get(
        "com.atproto.sync.getRecord",
        None,
        &[("did", &alice), ("collection", "app.bsky.feed.post")],
        400,
        "InvalidRequest",
    )
    .await;

    // --- getBlocks ------------------------------------------------------
    let res = server
        .http
        .get(server.url(&format!(
            "/xrpc/com.atproto.sync.getBlocks?did={alice}&cids={}&cids={}",
            root.cid, record_cid
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let got = read_rootless(&res.bytes().await.unwrap());
    assert_eq!(
        got.iter().map(|b| b.0).collect::<Vec<_>>(),
        [root.cid, record_cid]
    );
    assert_eq!(got[1].1, blocks[&record_cid]);
    let nowhere = cid_for(DAG_CBOR, b"not a block of this repo");
    let body = assert_xrpc_error(
        server
            .http
            .get(server.url(&format!(
                "/xrpc/com.atproto.sync.getBlocks?did={alice}&cids={}&cids={nowhere}",
                root.cid
            )))
            .send()
            .await
            .unwrap(),
        400,
        "BlockNotFound",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&nowhere.to_string())
    );
    c.fails_get(
        "com.atproto.sync.getBlocks",
        None,
        &[("did", &alice)],
        400,
        "InvalidRequest",
    )
    .await;
    c.fails_get(
        "com.atproto.sync.getBlocks",
        None,
        &[("did", &alice), ("cids", "nope")],
        400,
        "InvalidRequest",
    )
    .await;

    // --- getBlob --------------------------------------------------------
    let blob_cid = |b: &Value| b["ref"]["$link"].as_str().unwrap().to_owned();
    let res = c
        .get(
            "com.atproto.sync.getBlob",
            None,
            &[("did", &alice), ("cid", &blob_cid(&blobs[0]))],
        )
        .await;
    assert_eq!(res.status().as_u16(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], (PNG.len() + 1).to_string().as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
    assert_eq!(
        h["content-disposition"],
        format!("attachment; filename=\"{}\"", blob_cid(&blobs[0])).as_str()
    );
    assert_eq!(res.bytes().await.unwrap(), [PNG, &[0]].concat());
    // An upload no record uses is not served; nor is an unknown blob.
    for cid in [
        blob_cid(&blobs[3]),
        cid_for(RAW, b"never uploaded").to_string(),
    ] {
        c.fails_get(
            "com.atproto.sync.getBlob",
            None,
            &[("did", &alice), ("cid", &cid)],
            400,
            "BlobNotFound",
        )
        .await;
    }

    // --- listBlobs ------------------------------------------------------
    let mut used: Vec<String> = blobs.iter().take(3).map(blob_cid).collect();
    used.sort();
    let page = c
        .ok_get(
            "com.atproto.sync.listBlobs",
            None,
            &[("did", &alice), ("limit", "2")],
        )
        .await;
    assert_eq!(page["cids"], json!(used[..2]));
    assert_eq!(page["cursor"], json!(used[1]));
    let rest = c
        .ok_get(
            "com.atproto.sync.listBlobs",
            None,
            &[("did", &alice), ("limit", "2"), ("cursor", &used[1])],
        )
        .await;
    assert_eq!(rest, json!({"cids": [used[2]]}));
    let all = c
        .ok_get("com.atproto.sync.listBlobs", None, &[("did", &alice)])
        .await;
    assert_eq!(all, json!({"cids": used}));
    let since = c
        .ok_get(
            "com.atproto.sync.listBlobs",
            None,
            &[("did", &alice), ("since", &commit_revs[1])],
        )
        .await;
    assert_eq!(since, json!({"cids": [blob_cid(&blobs[2])]}));
    for bad in [("limit", "0"), ("limit", "1001"), ("cursor", "nope")] {
        c.fails_get(
            "com.atproto.sync.listBlobs",
            None,
            &[("did", &alice), bad],
            400,
            "InvalidRequest",
        )
        .await;
    }

    // --- listRepos and getRepoStatus, with accounts that are not active --
    let (bob, _) = sign_up(&c, "bob.test").await;
    let (carol, carol_token) = sign_up(&c, "carol.test").await;
    let (dave, _) = sign_up(&c, "dave.test").await;
    let (erin, _) = sign_up(&c, "erin.test").await;
    let status = c
        .ok_get("com.atproto.sync.getRepoStatus", None, &[("did", &alice)])
        .await;
    assert_eq!(
        status,
        json!({"did": alice, "active": true, "rev": root.rev.as_str()})
    );
    Client::ok(
        c.admin_post(
            "com.atproto.admin.updateSubjectStatus",
            json!({"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": bob},
                   "takedown": {"applied": true, "ref": "T-1"}}),
        )
        .await,
    )
    .await;
    c.ok_post(
        "com.atproto.server.deactivateAccount",
        Some(&carol_token),
        json!({}),
    )
    .await;
    Client::ok(
        c.admin_post("com.atproto.admin.deleteAccount", json!({"did": dave}))
            .await,
    )
    .await;
    server
        .ctx
        .accounts
        .update_status(&did(&erin), AccountStatus::Suspended)
        .await
        .unwrap();

    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "2".to_owned())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = c.ok_get("com.atproto.sync.listRepos", None, &query).await;
        pages += 1;
        listed.extend(page["repos"].as_array().unwrap().iter().cloned());
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(pages >= 2, "paged");
    let by_did: BTreeMap<String, Value> = listed
        .into_iter()
        .map(|r| (r["did"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(by_did.len(), 4, "the deleted account is gone: {by_did:?}");
    assert_eq!(
        by_did[&alice],
        json!({"did": alice, "head": root.cid.to_string(), "rev": root.rev.as_str(), "active": true})
    );
    for (who, status) in [
        (&bob, "takendown"),
        (&carol, "deactivated"),
        (&erin, "suspended"),
    ] {
        let entry = &by_did[who];
        assert_eq!(
            (entry["active"].clone(), entry["status"].clone()),
            (json!(false), json!(status)),
            "{entry}"
        );
        let head = server.ctx.repos.get_root(&did(who)).await.unwrap().unwrap();
        assert_eq!(entry["head"], head.cid.to_string());
        assert_eq!(entry["rev"], head.rev.as_str());
        let got = c
            .ok_get("com.atproto.sync.getRepoStatus", None, &[("did", who)])
            .await;
        assert_eq!(got, json!({"did": who, "active": false, "status": status}));
    }
    for bad in [("limit", "0"), ("limit", "1001"), ("cursor", "not a did")] {
        c.fails_get(
            "com.atproto.sync.listRepos",
            None,
            &[bad],
            400,
            "InvalidRequest",
        )
        .await;
    }

    // --- repos that are not served ---------------------------------------
    let unknown = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".to_owned();
    for (who, error) in [
        (&bob, "RepoTakendown"),
        (&carol, "RepoDeactivated"),
        (&erin, "RepoSuspended"),
        (&dave, "RepoNotFound"),
        (&unknown, "RepoNotFound"),
    ] {
        let cid = blob_cid(&blobs[0]);
        let root_cid = root.cid.to_string();
        let calls: [(&str, Vec<(&str, &str)>); 6] = [
            ("com.atproto.sync.getRepo", vec![("did", who)]),
            ("com.atproto.sync.getLatestCommit", vec![("did", who)]),
            (
                "com.atproto.sync.getRecord",
                vec![
                    ("did", who),
                    ("collection", "app.bsky.feed.post"),
                    ("rkey", &rkey),
                ],
            ),
            (
                "com.atproto.sync.getBlocks",
                vec![("did", who), ("cids", &root_cid)],
            ),
            (
                "com.atproto.sync.getBlob",
                vec![("did", who), ("cid", &cid)],
            ),
            ("com.atproto.sync.listBlobs", vec![("did", who)]),
        ];
        for (nsid, query) in calls {
            let res = c.get(nsid, None, &query).await;
            let body = assert_xrpc_error(res, 400, error).await;
            assert!(!body["message"].as_str().unwrap().is_empty(), "{nsid}");
        }
    }
    c.fails_get(
        "com.atproto.sync.getRepoStatus",
        None,
        &[("did", &dave)],
        400,
        "RepoNotFound",
    )
    .await;
    c.fails_get("com.atproto.sync.getRepo", None, &[], 400, "InvalidRequest")
        .await;
    c.fails_get(
        "com.atproto.sync.getRepo",
        None,
        &[("did", "alice.test")],
        400,
        "InvalidRequest",
    )
    .await;
    // A takedown lifted, the repo is served again.
    Client::ok(
        c.admin_post(
            "com.atproto.admin.updateSubjectStatus",
            json!({"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": bob},
                   "takedown": {"applied": false}}),
        )
        .await,
    )
    .await;
    let car = car_of(&c, "com.atproto.sync.getRepo", &[("did", &bob)]).await;
    load_repo_bytes(&car, Some(&repo_key(&plc, &bob))).unwrap();
}

#[tokio::test]
async fn sync_api_on_sqlite() {
    sync_api("sync_api_on_sqlite", Db::Sqlite).await;
}

#[tokio::test]
async fn sync_api_on_postgres() {
    sync_api("sync_api_on_postgres", Db::Postgres).await;
}

#[tokio::test]
async fn sync_api_in_memory() {
    sync_api("sync_api_in_memory", Db::Memory).await;
}

/// A stand-in relay: records the bodies of `requestCrawl` calls.
async fn relay() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/xrpc/com.atproto.sync.requestCrawl",
        axum::routing::post(move |body: Bytes| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn wait_for_crawls(seen: &Mutex<Vec<Value>>, n: usize) {
    let start = Instant::now();
    while seen.lock().unwrap().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "expected {n} crawl requests, got {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn request_crawl_at_start_up_and_after_a_write() {
    let plc = TestPlcDirectory::start().await;
    let (relay_a, seen_a) = relay().await;
    let (relay_b, seen_b) = relay().await;
    let server = server_with("request_crawl", Db::Memory, &plc, |c| {
        c.hostname = "pds.example.com".to_owned();
        c.crawlers = vec![format!("{relay_a}/"), relay_b];
    })
    .await
    .unwrap();
    let c = Client { server: &server };
    // At start-up, to every relay, naming this server.
    wait_for_crawls(&seen_a, 1).await;
    wait_for_crawls(&seen_b, 1).await;
    assert_eq!(
        seen_a.lock().unwrap()[0],
        json!({"hostname": "pds.example.com"})
    );
    // The first write asks again...
    let (alice, token) = sign_up(&c, "alice.test").await;
    wait_for_crawls(&seen_a, 2).await;
    wait_for_crawls(&seen_b, 2).await;
    // ...later writes within the interval do not.
    create(&c, &token, &alice, post("hello")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen_a.lock().unwrap().len(), 2);
    assert_eq!(seen_b.lock().unwrap().len(), 2);
}

/// A repo of 100,000 records, stored with one commit, exported with
/// `getRepo`: the export streams out of storage block by block (the walk's
/// memory bound is tested in `aurora-sync`) and verifies whole.
#[tokio::test]
async fn a_100k_record_repo_exports() {
    const N: usize = 100_000;
    let plc = TestPlcDirectory::start().await;
    let server = server("export_100k", Db::Sqlite, &plc).await.unwrap();
    let c = Client { server: &server };
    let (alice, _) = sign_up(&c, "alice.test").await;
    let alice_did = did(&alice);
    let t = Instant::now();

    // The repo as an import: records, tree, a commit (re-signed on import).
    let mut blocks = BTreeMap::new();
    let mut entries = Vec::with_capacity(N);
    for i in 0..N {
        let value = json_to_ipld(&json!({"$type": "app.bsky.feed.like", "n": i,
            "createdAt": "2026-12-10T12:00:00.000Z",
            "subject": {"uri": "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3kaaaaaaaaaaa", "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"}}))
        .unwrap();
        let bytes = Bytes::from(encode(&value).unwrap());
        let cid = cid_for(DAG_CBOR, &bytes);
        blocks.insert(cid, bytes);
        entries.push((format!("app.bsky.feed.like/{i:013}"), cid));
    }
    let tree = Mst::from_entries(entries).unwrap();
    blocks.extend(tree.blocks().unwrap());
    let key = server
        .ctx
        .accounts
        .get_signing_key(&alice_did)
        .await
        .unwrap()
        .unwrap();
    let clock = TidClock::new();
    let (commit_cid, commit_block) =
        UnsignedCommit::new(alice_did.clone(), tree.root_cid(), clock.next())
            .sign(&key)
            .to_block();
    blocks.insert(commit_cid, commit_block);
    let repo = LoadedRepo::from_blocks(commit_cid, blocks, None).unwrap();
    let root = server
        .ctx
        .repos
        .get_root(&alice_did)
        .await
        .unwrap()
        .unwrap();
    let current = SignedCommit::from_block(
        &server
            .ctx
            .repos
            .get_block(&alice_did, &root.cid)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let head = RepoHead {
        commit: root.cid,
        rev: root.rev.clone(),
        data: current.data,
    };
    let prepared = prepare_import(&alice_did, &key, Some(&head), &repo, &[], &clock)
        .await
        .unwrap();
    drop(repo);
    server.ctx.repos.apply_commit(prepared.write).await.unwrap();
    eprintln!("stored a {N}-record repo in {:?}", t.elapsed());

    let t = Instant::now();
    let res = c
        .get("com.atproto.sync.getRepo", None, &[("did", &alice)])
        .await;
    assert_eq!(res.status().as_u16(), 200);
    let mut body = res.bytes_stream();
    let (mut car, mut chunks) = (Vec::new(), 0usize);
    while let Some(chunk) = body.next().await {
        car.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    eprintln!(
        "exported {} bytes in {chunks} chunks in {:?}",
        car.len(),
        t.elapsed()
    );
    assert!(chunks > 10, "streamed, not sent at once");
    let loaded = load_repo_bytes(&car, Some(&repo_key(&plc, &alice))).unwrap();
    assert_eq!(loaded.commit_cid, prepared.commit);
    assert_eq!(loaded.mst.len().unwrap(), N);
}
