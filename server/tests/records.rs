//! Records over HTTP against the real server: writes are signed commits
//! with their `#commit` events, reads come from the record index, swaps
//! are honoured, a failed write leaves nothing, and concurrent writers to
//! one repo — in one server or in two servers on one Postgres — never fork
//! it or lose a write.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use aurora_core::EventType;
use aurora_core::event::decode_payload;
use aurora_core::repo::commit::SignedCommit;
use aurora_core::syntax::Did;
use aurora_storage_testkit::plc::TestPlcDirectory;
use common::pds::{Client, server, server_with, sign_up, two_servers_on_one_postgres};
use common::{Db, TestServer};
use serde_json::{Value, json};

fn post(text: &str) -> Value {
    json!({"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-11-25T12:00:00.000Z"})
}

/// The `#commit` events of `did`, decoded: (seq, rev, since, ops count).
async fn commits_of(server: &TestServer, did: &str) -> Vec<(i64, String, Option<String>, usize)> {
    let events = server.ctx.sequencer.events_after(0, 100_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.did.as_str() == did && e.event_type == EventType::Commit)
        .map(|e| {
            let body = decode_payload(&e.payload).unwrap();
            let text = |k: &str| match body.get(k) {
                Some(aurora_core::data::Ipld::String(s)) => Some(s.clone()),
                _ => None,
            };
            let ops = match &body["ops"] {
                aurora_core::data::Ipld::List(l) => l.len(),
                _ => 0,
            };
            (e.seq, text("rev").unwrap(), text("since"), ops)
        })
        .collect()
}

/// The commit chain is linear: each commit's `since` is the previous
/// commit's `rev`, and revs increase in seq order.
fn assert_linear(chain: &[(i64, String, Option<String>, usize)]) {
    for pair in chain.windows(2) {
        assert!(pair[0].0 < pair[1].0);
        assert!(pair[0].1 < pair[1].1, "revs increase: {pair:?}");
        assert_eq!(
            pair[1].2.as_deref(),
            Some(pair[0].1.as_str()),
            "since = previous rev"
        );
    }
}

async fn records_round_trip(test: &str, db: Db) {
    let plc = TestPlcDirectory::start().await;
    let Some(server) = server(test, db, &plc).await else {
        return;
    };
    let c = Client { server: &server };
    let (did, access) = sign_up(&c, "writer.test").await;
    let (_, other_access) = sign_up(&c, "other.test").await;

    // create
    let created = c
        .ok_post(
            "com.atproto.repo.createRecord",
            Some(&access),
            json!({"repo": did, "collection": "app.bsky.feed.post", "record": post("hello")}),
        )
        .await;
    let uri = created["uri"].as_str().unwrap().to_owned();
    assert!(
        uri.starts_with(&format!("at://{did}/app.bsky.feed.post/")),
        "{uri}"
    );
    assert!(created["cid"].as_str().unwrap().starts_with("bafyrei"));
    assert!(created["commit"]["cid"].is_string() && created["commit"]["rev"].is_string());
    assert_eq!(created["validationStatus"], "valid");
    let rkey = uri.rsplit('/').next().unwrap().to_owned();

    // The commit is signed by the key in the DID document, and it is the root.
    let root = server
        .ctx
        .repos
        .get_root(&Did::parse(did.as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(root.cid.to_string(), created["commit"]["cid"]);
    let block = server
        .ctx
        .repos
        .get_block(&Did::parse(did.as_str()).unwrap(), &root.cid)
        .await
        .unwrap()
        .unwrap();
    let commit = SignedCommit::from_block(&block).unwrap();
    let key = plc
        .log(&Did::parse(did.as_str()).unwrap())
        .unwrap()
        .document()
        .unwrap()
        .atproto_signing_key()
        .unwrap();
    commit.verify(&key).unwrap();

    // get / list / describe
    let got = c
        .ok_get(
            "com.atproto.repo.getRecord",
            None,
            &[
                ("repo", "writer.test"),
                ("collection", "app.bsky.feed.post"),
                ("rkey", &rkey),
            ],
        )
        .await;
    assert_eq!(got["uri"], uri.as_str());
    assert_eq!(got["cid"], created["cid"]);
    assert_eq!(got["value"], post("hello"));
    c.fails_get(
        "com.atproto.repo.getRecord",
        None,
        &[
            ("repo", did.as_str()),
            ("collection", "app.bsky.feed.post"),
            ("rkey", "3zzzzzzzzzzzz"),
        ],
        400,
        "RecordNotFound",
    )
    .await;
    c.fails_get(
        "com.atproto.repo.getRecord",
        None,
        &[
            ("repo", did.as_str()),
            ("collection", "app.bsky.feed.post"),
            ("rkey", &rkey),
            (
                "cid",
                "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
            ),
        ],
        400,
        "RecordNotFound",
    )
    .await;
    for i in 0..4 {
        c.ok_post("com.atproto.repo.createRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(&format!("post {i}"))})).await;
    }
    let page = c
        .ok_get(
            "com.atproto.repo.listRecords",
            None,
            &[
                ("repo", did.as_str()),
                ("collection", "app.bsky.feed.post"),
                ("limit", "3"),
            ],
        )
        .await;
    assert_eq!(page["records"].as_array().unwrap().len(), 3);
    assert_eq!(
        page["records"][0]["value"]["text"], "post 3",
        "newest first"
    );
    let cursor = page["cursor"].as_str().unwrap().to_owned();
    let rest = c
        .ok_get(
            "com.atproto.repo.listRecords",
            None,
            &[
                ("repo", did.as_str()),
                ("collection", "app.bsky.feed.post"),
                ("limit", "3"),
                ("cursor", &cursor),
            ],
        )
        .await;
    assert_eq!(rest["records"].as_array().unwrap().len(), 2);
    assert!(rest.get("cursor").is_none());
    let reversed = c
        .ok_get(
            "com.atproto.repo.listRecords",
            None,
            &[
                ("repo", did.as_str()),
                ("collection", "app.bsky.feed.post"),
                ("reverse", "true"),
            ],
        )
        .await;
    assert_eq!(
        reversed["records"][0]["value"]["text"], "hello",
        "oldest first"
    );
    c.fails_get(
        "com.atproto.repo.listRecords",
        None,
        &[
            ("repo", did.as_str()),
            ("collection", "app.bsky.feed.post"),
            ("limit", "1000"),
        ],
        400,
        "InvalidRequest",
    )
    .await;
    let described = c
        .ok_get(
            "com.atproto.repo.describeRepo",
            None,
            &[("repo", did.as_str())],
        )
        .await;
    assert_eq!(described["collections"], json!(["app.bsky.feed.post"]));
    assert_eq!(described["handle"], "writer.test");
    assert_eq!(described["handleIsCorrect"], true);

    // put (update), swaps
    let profile = json!({"$type": "app.bsky.actor.profile", "displayName": "Writer"});
    let put = c.ok_post("com.atproto.repo.putRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": profile, "swapRecord": null})).await;
    let first_cid = put["cid"].as_str().unwrap().to_owned();
    c.fails_post("com.atproto.repo.putRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": profile, "swapRecord": null}), 400, "InvalidSwap").await;
    let renamed = json!({"$type": "app.bsky.actor.profile", "displayName": "Writer 2"});
    let put2 = c.ok_post("com.atproto.repo.putRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": renamed, "swapRecord": first_cid})).await;
    c.fails_post("com.atproto.repo.putRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": profile, "swapRecord": first_cid}), 400, "InvalidSwap").await;
    c.fails_post("com.atproto.repo.createRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.feed.post", "record": post("stale"), "swapCommit": created["commit"]["cid"]}), 400, "InvalidSwap").await;
    let ok = c.ok_post("com.atproto.repo.createRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.feed.post", "record": post("fresh"), "swapCommit": put2["commit"]["cid"]})).await;
    assert!(ok["uri"].is_string());

    // bad input changes nothing
    let before = server
        .ctx
        .repos
        .get_root(&Did::parse(did.as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    let refused = c.fails_post("com.atproto.repo.createRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.feed.post", "record": {"$type": "app.bsky.feed.like"}}), 400, "InvalidRequest").await;
    assert_eq!(
        refused["message"],
        "Invalid $type: expected app.bsky.feed.post, got app.bsky.feed.like"
    );
    // Records of known lexicons are checked against their schemas.
    let refused = c.fails_post("com.atproto.repo.createRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(&"a".repeat(301))}), 400, "InvalidRequest").await;
    assert_eq!(
        refused["message"],
        "Invalid app.bsky.feed.post record: Record/text must not be longer than 300 graphemes"
    );
    let refused = c.fails_post("com.atproto.repo.putRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.feed.like", "rkey": "self", "record": {"$type": "app.bsky.feed.like", "subject": {"uri": uri}, "createdAt": "2026-11-25T12:00:00.000Z"}}), 400, "InvalidRequest").await;
    assert_eq!(
        refused["message"],
        "Invalid record key for app.bsky.feed.like: must be a valid TID (got \"self\")"
    );
    let refused = c.fails_post("com.atproto.repo.applyWrites", Some(&access), json!({"repo": did, "writes": [
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post("fine")},
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.like", "value": {"$type": "app.bsky.feed.like", "subject": {"uri": uri}, "createdAt": "2026-11-25T12:00:00.000Z"}},
    ]}), 400, "InvalidRequest").await;
    assert_eq!(
        refused["message"],
        "Invalid app.bsky.feed.like record: Record/subject must have the property \"cid\""
    );
    let refused = c.fails_post("com.atproto.repo.createRecord", Some(&access), json!({"repo": did, "collection": "com.example.unknown", "validate": true, "record": {"anything": 1}}), 400, "InvalidRequest").await;
    assert_eq!(
        refused["message"],
        "Unknown lexicon type: com.example.unknown"
    );
    c.fails_post(
        "com.atproto.repo.createRecord",
        Some(&access),
        json!({"repo": did, "collection": "not a nsid", "record": post("x")}),
        400,
        "InvalidRequest",
    )
    .await;
    c.fails_post("com.atproto.repo.createRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": &rkey, "record": post("dup")}), 400, "InvalidRequest").await;
    c.fails_post(
        "com.atproto.repo.createRecord",
        Some(&other_access),
        json!({"repo": did, "collection": "app.bsky.feed.post", "record": post("not yours")}),
        401,
        "AuthenticationRequired",
    )
    .await;
    c.fails_post(
        "com.atproto.repo.createRecord",
        None,
        json!({"repo": did, "collection": "app.bsky.feed.post", "record": post("anon")}),
        401,
        "AuthenticationRequired",
    )
    .await;
    // An applyWrites whose third write fails writes none of them.
    c.fails_post(
        "com.atproto.repo.applyWrites",
        Some(&access),
        json!({"repo": did, "writes": [
            {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post("a")},
            {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post("b")},
            {"$type": "com.atproto.repo.applyWrites#update", "collection": "app.bsky.feed.post", "rkey": "3zzzzzzzzzzzz", "value": post("c")},
        ]}),
        400,
        "InvalidRequest",
    )
    .await;
    let too_many: Vec<Value> = (0..201).map(|i| json!({"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post(&i.to_string())})).collect();
    c.fails_post(
        "com.atproto.repo.applyWrites",
        Some(&access),
        json!({"repo": did, "writes": too_many}),
        400,
        "InvalidRequest",
    )
    .await;
    let after = server
        .ctx
        .repos
        .get_root(&Did::parse(did.as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before, after, "failed writes leave the repo as it was");

    // applyWrites: one commit for the batch
    let commits_before = commits_of(&server, &did).await.len();
    let batch = c.ok_post(
        "com.atproto.repo.applyWrites",
        Some(&access),
        json!({"repo": did, "writes": [
            {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.like", "rkey": "3kaaaaaaaaaaa", "value": {"$type": "app.bsky.feed.like", "subject": {"uri": uri, "cid": created["cid"]}, "createdAt": "2026-11-25T12:00:00.000Z"}},
            {"$type": "com.atproto.repo.applyWrites#update", "collection": "app.bsky.feed.post", "rkey": rkey, "value": post("hello, edited")},
            {"$type": "com.atproto.repo.applyWrites#delete", "collection": "app.bsky.actor.profile", "rkey": "self"},
        ]}),
    )
    .await;
    let results = batch["results"].as_array().unwrap();
    assert_eq!(
        results[0]["$type"],
        "com.atproto.repo.applyWrites#createResult"
    );
    assert_eq!(
        results[1]["$type"],
        "com.atproto.repo.applyWrites#updateResult"
    );
    assert_eq!(
        results[2]["$type"],
        "com.atproto.repo.applyWrites#deleteResult"
    );
    assert_eq!(results[0]["validationStatus"], "valid");
    assert_eq!(results[1]["validationStatus"], "valid");
    let commits = commits_of(&server, &did).await;
    assert_eq!(commits.len(), commits_before + 1);
    assert_eq!(commits.last().unwrap().3, 3, "one commit with three ops");
    c.fails_get(
        "com.atproto.repo.getRecord",
        None,
        &[
            ("repo", did.as_str()),
            ("collection", "app.bsky.actor.profile"),
            ("rkey", "self"),
        ],
        400,
        "RecordNotFound",
    )
    .await;

    // validationStatus: unknown lexicons are stored unchecked, and so is
    // anything written with validate=false; a record without $type is
    // stored with the collection as its $type.
    let unknown = c
        .ok_post(
            "com.atproto.repo.createRecord",
            Some(&access),
            json!({"repo": did, "collection": "com.example.unknown", "record": {"anything": 1}}),
        )
        .await;
    assert_eq!(unknown["validationStatus"], "unknown");
    let stored = c
        .ok_get(
            "com.atproto.repo.getRecord",
            None,
            &[
                ("repo", did.as_str()),
                ("collection", "com.example.unknown"),
                (
                    "rkey",
                    unknown["uri"].as_str().unwrap().rsplit('/').next().unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(
        stored["value"],
        json!({"$type": "com.example.unknown", "anything": 1})
    );
    let unchecked = c.ok_post("com.atproto.repo.createRecord", Some(&access), json!({"repo": did, "collection": "app.bsky.feed.post", "validate": false, "record": {"text": 42}})).await;
    assert_eq!(unchecked["validationStatus"], "unknown");

    // delete
    let deleted = c
        .ok_post(
            "com.atproto.repo.deleteRecord",
            Some(&access),
            json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey}),
        )
        .await;
    assert!(deleted["commit"]["cid"].is_string());
    let again = c
        .ok_post(
            "com.atproto.repo.deleteRecord",
            Some(&access),
            json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey}),
        )
        .await;
    assert!(
        again.get("commit").is_none(),
        "deleting nothing makes no commit"
    );
    c.fails_get(
        "com.atproto.repo.getRecord",
        None,
        &[
            ("repo", did.as_str()),
            ("collection", "app.bsky.feed.post"),
            ("rkey", &rkey),
        ],
        400,
        "RecordNotFound",
    )
    .await;

    assert_linear(&commits_of(&server, &did).await);

    // A deactivated repo is not served.
    c.ok_post(
        "com.atproto.server.deactivateAccount",
        Some(&access),
        json!({}),
    )
    .await;
    c.fails_get(
        "com.atproto.repo.listRecords",
        None,
        &[("repo", did.as_str()), ("collection", "app.bsky.feed.post")],
        400,
        "RepoDeactivated",
    )
    .await;
    c.fails_post(
        "com.atproto.repo.createRecord",
        Some(&access),
        json!({"repo": did, "collection": "app.bsky.feed.post", "record": post("while away")}),
        401,
        "AccountDeactivated",
    )
    .await;
}

#[tokio::test]
async fn records_round_trip_on_sqlite() {
    records_round_trip("records_round_trip_on_sqlite", Db::Sqlite).await;
}

#[tokio::test]
async fn records_round_trip_on_postgres() {
    records_round_trip("records_round_trip_on_postgres", Db::Postgres).await;
}

#[tokio::test]
async fn records_round_trip_in_memory() {
    records_round_trip("records_round_trip_in_memory", Db::Memory).await;
}

/// 16 clients write to one repo at once (spread over `servers`): every
/// acknowledged record is there, and the commit chain is linear.
async fn concurrent_writers(servers: &[&TestServer], did: &str, access: &str) {
    const CLIENTS: usize = 16;
    const WRITES: usize = 10;
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let server = servers[client % servers.len()];
        let (http, base) = (server.http.clone(), server.url(""));
        let (did, access, acknowledged) = (did.to_owned(), access.to_owned(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..WRITES {
                let res = http
                    .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
                    .bearer_auth(&access)
                    .json(&json!({"repo": did, "collection": "app.bsky.feed.post", "record": post(&format!("{client}-{i}"))}))
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                let body: Value = res.json().await.unwrap();
                assert!(status.is_success(), "{status}: {body}");
                acknowledged.lock().unwrap().push(body["uri"].as_str().unwrap().to_owned());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), CLIENTS * WRITES);
    let did_parsed = Did::parse(did).unwrap();
    let collection = aurora_core::syntax::Nsid::parse("app.bsky.feed.post").unwrap();
    let stored: HashSet<String> = servers[0]
        .ctx
        .repos
        .list_records(
            &did_parsed,
            &collection,
            &aurora_core::store::RecordPage {
                limit: 10_000,
                cursor: None,
                reverse: false,
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("at://{did}/app.bsky.feed.post/{}", r.rkey))
        .collect();
    for uri in &acknowledged {
        assert!(stored.contains(uri), "acknowledged {uri} is stored");
    }
    let chain = commits_of(servers[0], did).await;
    assert_eq!(
        chain.len(),
        1 + CLIENTS * WRITES,
        "one commit per write, plus the first"
    );
    assert_linear(&chain);
}

#[tokio::test]
async fn sixteen_concurrent_writers_on_one_repo_sqlite() {
    let plc = TestPlcDirectory::start().await;
    let server = server("concurrent_sqlite", Db::Sqlite, &plc).await.unwrap();
    let c = Client { server: &server };
    let (did, access) = sign_up(&c, "busy.test").await;
    concurrent_writers(&[&server], &did, &access).await;
}

/// The block cache only saves reads: with it off, every write fetches its
/// tree's nodes from the database and still lands.
#[tokio::test]
async fn writers_without_a_block_cache_fetch_every_node() {
    let plc = TestPlcDirectory::start().await;
    let server = server_with("no_block_cache", Db::Sqlite, &plc, |c| {
        c.block_cache_mib = 0;
    })
    .await
    .unwrap();
    let c = Client { server: &server };
    let (did, access) = sign_up(&c, "uncached.test").await;
    concurrent_writers(&[&server], &did, &access).await;
}

/// Two servers on one Postgres, each with its own writer: only the
/// database's compare-and-swap on the root keeps them from forking.
#[tokio::test]
async fn sixteen_concurrent_writers_through_two_servers_on_one_postgres() {
    let plc = TestPlcDirectory::start().await;
    let Some((a, b)) = two_servers_on_one_postgres("two_servers_one_postgres", &plc).await else {
        return;
    };
    let c = Client { server: &a };
    let (did, access) = sign_up(&c, "shared.test").await;
    concurrent_writers(&[&a, &b], &did, &access).await;
}
