//! Blobs, repo import and preferences over HTTP against the real server:
//! uploads stream into the blob store with a size limit and a sniffed MIME
//! type; a committed record's blobs become permanent; blobs no record uses
//! go; an imported repo is indexed and its blobs listed as missing until
//! uploaded; preferences are private per account.

#![allow(clippy::unwrap_used, clippy::too_many_lines, clippy::similar_names)]

mod common;

use std::time::Duration;

use aurora_core::EventType;
use aurora_core::cid::Cid;
use aurora_core::crypto::{Curve, SigningKey};
use aurora_core::data::{DAG_CBOR, RAW, cid_for, encode, json_to_ipld};
use aurora_core::repo::commit::UnsignedCommit;
use aurora_core::repo::{Mst, car_bytes};
use aurora_core::syntax::{Did, Tid};
use aurora_storage_testkit::plc::TestPlcDirectory;
use common::pds::{Client, events_of, rkey_of, server, server_with, sign_up};
use common::{Db, TestServer, assert_xrpc_error};
use serde_json::{Value, json};

/// A tiny PNG (signature and header chunk are what sniffing needs).
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0\x90wS\xde";

async fn upload(
    server: &TestServer,
    token: &str,
    body: Vec<u8>,
    content_type: &str,
) -> reqwest::Response {
    server
        .http
        .post(server.url("/xrpc/com.atproto.repo.uploadBlob"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn upload_ok(server: &TestServer, token: &str, body: Vec<u8>, content_type: &str) -> Value {
    Client::ok(upload(server, token, body, content_type).await).await["blob"].clone()
}

fn post_with_image(text: &str, blob: &Value) -> Value {
    json!({
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": "2026-12-06T12:00:00.000Z",
        "embed": {
            "$type": "app.bsky.embed.images",
            "images": [{"alt": "", "image": blob}],
        },
    })
}

fn did(s: &str) -> Did {
    Did::parse(s).unwrap()
}

fn cid_of(blob: &Value) -> Cid {
    Cid::try_from(blob["ref"]["$link"].as_str().unwrap()).unwrap()
}

/// Waits (up to 10 s) for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn blob_lifecycle(test: &str, db: Db) {
    let plc = TestPlcDirectory::start().await;
    let Some(server) = server(test, db, &plc).await else {
        return;
    };
    let c = Client { server: &server };
    let (alice, token) = sign_up(&c, "alice.test").await;
    let alice_did = did(&alice);

    // Upload: the CID is of the raw bytes, the MIME type sniffed from them
    // (the declared type is wrong on purpose), the blob still temporary.
    let blob = upload_ok(&server, &token, PNG.to_vec(), "text/plain").await;
    assert_eq!(blob["$type"], "blob");
    assert_eq!(blob["mimeType"], "image/png");
    assert_eq!(blob["size"], PNG.len());
    let cid = cid_of(&blob);
    assert_eq!(cid, cid_for(RAW, PNG));
    let stored = server
        .ctx
        .repos
        .get_blob(&alice_did, &cid)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.temp_key.is_some(),
        "temporary until a record uses it"
    );
    assert!(!server.ctx.blobs.contains(&alice_did, &cid).await.unwrap());

    // Uploading the same bytes again gives the same blob.
    let again = upload_ok(&server, &token, PNG.to_vec(), "image/png").await;
    assert_eq!(again, blob);

    // A record that references it makes it permanent.
    let first = c
        .ok_post(
            "com.atproto.repo.createRecord",
            Some(&token),
            json!({"repo": alice, "collection": "app.bsky.feed.post", "record": post_with_image("one", &blob)}),
        )
        .await;
    let stored = server
        .ctx
        .repos
        .get_blob(&alice_did, &cid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.temp_key, None);
    assert!(server.ctx.blobs.contains(&alice_did, &cid).await.unwrap());
    // The #commit event lists it.
    let commit = server
        .ctx
        .sequencer
        .events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.did == alice_did && e.event_type == EventType::Commit)
        .unwrap();
    let body = aurora_core::event::decode_payload(&commit.payload).unwrap();
    assert_eq!(
        body["blobs"],
        aurora_core::data::Ipld::List(vec![aurora_core::data::Ipld::Link(cid)])
    );

    // A second record shares it.
    let second = c
        .ok_post(
            "com.atproto.repo.createRecord",
            Some(&token),
            json!({"repo": alice, "collection": "app.bsky.feed.post", "record": post_with_image("two", &blob)}),
        )
        .await;
    let stats = server.ctx.repos.repo_stats(&alice_did).await.unwrap();
    assert_eq!((stats.expected_blobs, stats.imported_blobs), (1, 1));

    // A record referencing a blob nobody uploaded fails and writes nothing.
    let ghost = json!({"$type": "blob", "ref": {"$link": cid_for(RAW, b"never uploaded").to_string()}, "mimeType": "image/png", "size": 14});
    let root_before = server
        .ctx
        .repos
        .get_root(&alice_did)
        .await
        .unwrap()
        .unwrap();
    c.fails_post(
        "com.atproto.repo.createRecord",
        Some(&token),
        json!({"repo": alice, "collection": "app.bsky.feed.post", "record": post_with_image("ghost", &ghost)}),
        400,
        "BlobNotFound",
    )
    .await;
    assert_eq!(
        server
            .ctx
            .repos
            .get_root(&alice_did)
            .await
            .unwrap()
            .unwrap(),
        root_before
    );
    // Another account's blob is not yours to reference either.
    let (mallory, mallory_token) = sign_up(&c, "mallory.test").await;
    c.fails_post(
        "com.atproto.repo.createRecord",
        Some(&mallory_token),
        json!({"repo": mallory, "collection": "app.bsky.feed.post", "record": post_with_image("stolen", &blob)}),
        400,
        "BlobNotFound",
    )
    .await;

    // Deleting one of the two records keeps the blob...
    c.ok_post(
        "com.atproto.repo.deleteRecord",
        Some(&token),
        json!({"repo": alice, "collection": "app.bsky.feed.post", "rkey": rkey_of(&first)}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        server
            .ctx
            .repos
            .get_blob(&alice_did, &cid)
            .await
            .unwrap()
            .is_some()
    );
    assert!(server.ctx.blobs.contains(&alice_did, &cid).await.unwrap());

    // ...updating the other to drop the image removes it: row and bytes.
    c.ok_post(
        "com.atproto.repo.putRecord",
        Some(&token),
        json!({"repo": alice, "collection": "app.bsky.feed.post", "rkey": rkey_of(&second),
               "record": {"$type": "app.bsky.feed.post", "text": "no image now", "createdAt": "2026-12-06T12:00:00.000Z"}}),
    )
    .await;
    eventually("the unreferenced blob is deleted", || async {
        server
            .ctx
            .repos
            .get_blob(&alice_did, &cid)
            .await
            .unwrap()
            .is_none()
            && !server.ctx.blobs.contains(&alice_did, &cid).await.unwrap()
    })
    .await;
    let stats = server.ctx.repos.repo_stats(&alice_did).await.unwrap();
    assert_eq!((stats.expected_blobs, stats.imported_blobs), (0, 0));

    // Uploads need a session.
    let res = server
        .http
        .post(server.url("/xrpc/com.atproto.repo.uploadBlob"))
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_xrpc_error(res, 401, "AuthenticationRequired").await;
}

#[tokio::test]
async fn blob_lifecycle_on_sqlite() {
    blob_lifecycle("blob_lifecycle_sqlite", Db::Sqlite).await;
}

#[tokio::test]
async fn blob_lifecycle_on_postgres() {
    blob_lifecycle("blob_lifecycle_postgres", Db::Postgres).await;
}

#[tokio::test]
async fn blob_lifecycle_in_memory() {
    blob_lifecycle("blob_lifecycle_memory", Db::Memory).await;
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_and_unused_uploads_expire() {
    let plc = TestPlcDirectory::start().await;
    let server = server_with("blob_limits", Db::Sqlite, &plc, |c| {
        c.blob_max_bytes = 64 * 1024;
        c.blob_temp_grace_secs = 1;
    })
    .await
    .unwrap();
    let c = Client { server: &server };
    let (alice, token) = sign_up(&c, "limits.test").await;
    let alice_did = did(&alice);

    // Over the limit: declared by Content-Length...
    let res = upload(
        &server,
        &token,
        vec![7u8; 64 * 1024 + 1],
        "application/octet-stream",
    )
    .await;
    assert_xrpc_error(res, 413, "PayloadTooLarge").await;
    // ...or streamed without a length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![1u8; 8 * 1024])).collect();
    let res = server
        .http
        .post(server.url("/xrpc/com.atproto.repo.uploadBlob"))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    // Nothing of either is kept.
    let tmp = server.data_dir.join("blobs/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "no temporary file left"
    );

    // A streamed upload within the limit works; its declared type is kept
    // when sniffing finds nothing.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|i| Ok(vec![i; 8 * 1024])).collect();
    let res = server
        .http
        .post(server.url("/xrpc/com.atproto.repo.uploadBlob"))
        .bearer_auth(&token)
        .header("content-type", "application/x-custom")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let blob = Client::ok(res).await["blob"].clone();
    assert_eq!(blob["size"], 32 * 1024);
    assert_eq!(blob["mimeType"], "application/x-custom");
    let cid = cid_of(&blob);

    // Unused, it is swept after the grace period: row and file.
    eventually("the unused upload is swept", || async {
        server
            .ctx
            .repos
            .get_blob(&alice_did, &cid)
            .await
            .unwrap()
            .is_none()
            && std::fs::read_dir(&tmp).unwrap().count() == 0
    })
    .await;
}

/// A repo CAR for `did` signed by some other host's key, holding `records`
/// (path, JSON record).
async fn foreign_repo(did: &Did, records: &[(&str, Value)]) -> Vec<u8> {
    let mut blocks = Vec::new();
    let mut entries = Vec::new();
    for (path, record) in records {
        let bytes = encode(&json_to_ipld(record).unwrap()).unwrap();
        let cid = cid_for(DAG_CBOR, &bytes);
        blocks.push((cid, bytes::Bytes::from(bytes)));
        entries.push((path.to_string(), cid));
    }
    let tree = Mst::from_entries(entries).unwrap();
    blocks.extend(tree.blocks().unwrap());
    let old_host = SigningKey::generate(Curve::K256);
    let commit = UnsignedCommit::new(did.clone(), tree.root_cid(), Tid::now()).sign(&old_host);
    let (commit_cid, commit_block) = commit.to_block();
    blocks.push((commit_cid, commit_block));
    car_bytes(commit_cid, blocks).await.unwrap()
}

async fn import_repo(server: &TestServer, token: &str, car: Vec<u8>) -> reqwest::Response {
    server
        .http
        .post(server.url("/xrpc/com.atproto.repo.importRepo"))
        .bearer_auth(token)
        .header("content-type", "application/vnd.ipld.car")
        .body(car)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn imported_repo_is_indexed_and_its_blobs_listed_until_uploaded() {
    let plc = TestPlcDirectory::start().await;
    let server = server("import_repo", Db::Sqlite, &plc).await.unwrap();
    let c = Client { server: &server };
    let (carol, token) = sign_up(&c, "carol.test").await;
    let carol_did = did(&carol);
    // A record written here before the import, which the import replaces.
    c.ok_post(
        "com.atproto.repo.createRecord",
        Some(&token),
        json!({"repo": carol, "collection": "app.bsky.feed.like", "rkey": "3kaaaaaaaaaa2",
               "record": {"$type": "app.bsky.feed.like", "createdAt": "2026-12-06T12:00:00.000Z",
                          "subject": {"uri": "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3kaaaaaaaaaa2", "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"}}}),
    )
    .await;

    let image = b"\xff\xd8\xff\xe0\0\x10JFIF\0 an old photo".to_vec();
    let image_cid = cid_for(RAW, &image);
    let image_ref = json!({"$type": "blob", "ref": {"$link": image_cid.to_string()}, "mimeType": "image/jpeg", "size": image.len()});
    let car = foreign_repo(
        &carol_did,
        &[
            ("app.bsky.actor.profile/self", json!({"$type": "app.bsky.actor.profile", "displayName": "Carol", "avatar": image_ref})),
            ("app.bsky.feed.post/3kbbbbbbbbbb2", post_with_image("from my old host", &image_ref)),
            ("app.bsky.feed.post/3kcccccccccc2", json!({"$type": "app.bsky.feed.post", "text": "plain", "createdAt": "2026-01-01T00:00:00.000Z"})),
        ],
    )
    .await;

    // Someone else's repo, or a broken CAR, is refused.
    let (_, dave_token) = sign_up(&c, "dave.test").await;
    let res = import_repo(&server, &dave_token, car.clone()).await;
    assert_xrpc_error(res, 400, "InvalidRequest").await;
    let res = import_repo(&server, &token, car[..car.len() - 10].to_vec()).await;
    assert_xrpc_error(res, 400, "InvalidRequest").await;

    Client::ok(import_repo(&server, &token, car).await).await;

    // The records are served; the one written before the import is gone.
    let posts = c
        .ok_get(
            "com.atproto.repo.listRecords",
            None,
            &[("repo", &carol), ("collection", "app.bsky.feed.post")],
        )
        .await;
    assert_eq!(posts["records"].as_array().unwrap().len(), 2);
    let profile = c
        .ok_get(
            "com.atproto.repo.getRecord",
            None,
            &[
                ("repo", &carol),
                ("collection", "app.bsky.actor.profile"),
                ("rkey", "self"),
            ],
        )
        .await;
    assert_eq!(profile["value"]["displayName"], "Carol");
    let likes = c
        .ok_get(
            "com.atproto.repo.listRecords",
            None,
            &[("repo", &carol), ("collection", "app.bsky.feed.like")],
        )
        .await;
    assert_eq!(likes["records"].as_array().unwrap().len(), 0);

    // The commit is re-signed with the account's key and announced by #sync.
    let events = events_of(&server, &carol).await;
    assert_eq!(events.last().unwrap().0, EventType::Sync);
    let status = c
        .ok_get("com.atproto.server.checkAccountStatus", Some(&token), &[])
        .await;
    assert_eq!(status["indexedRecords"], 3);
    assert_eq!(status["expectedBlobs"], 1);
    assert_eq!(status["importedBlobs"], 0);

    // The blob is listed as missing until it is uploaded; then it is
    // permanent at once (records already use it).
    let missing = c
        .ok_get("com.atproto.repo.listMissingBlobs", Some(&token), &[])
        .await;
    let missing = missing["blobs"].as_array().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["cid"], image_cid.to_string());
    assert!(
        missing[0]["recordUri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("at://{carol}/"))
    );
    upload_ok(&server, &token, image, "image/jpeg").await;
    let missing = c
        .ok_get("com.atproto.repo.listMissingBlobs", Some(&token), &[])
        .await;
    assert_eq!(missing["blobs"], json!([]));
    assert_eq!(
        server
            .ctx
            .repos
            .get_blob(&carol_did, &image_cid)
            .await
            .unwrap()
            .unwrap()
            .temp_key,
        None
    );
    assert!(
        server
            .ctx
            .blobs
            .contains(&carol_did, &image_cid)
            .await
            .unwrap()
    );
    let status = c
        .ok_get("com.atproto.server.checkAccountStatus", Some(&token), &[])
        .await;
    assert_eq!(status["importedBlobs"], 1);

    // Writes continue on top of the imported repo.
    c.ok_post(
        "com.atproto.repo.createRecord",
        Some(&token),
        json!({"repo": carol, "collection": "app.bsky.feed.post",
               "record": {"$type": "app.bsky.feed.post", "text": "hello from my new host", "createdAt": "2026-12-06T12:00:00.000Z"}}),
    )
    .await;
    let posts = c
        .ok_get(
            "com.atproto.repo.listRecords",
            None,
            &[("repo", &carol), ("collection", "app.bsky.feed.post")],
        )
        .await;
    assert_eq!(posts["records"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn preferences_are_private_per_account() {
    let plc = TestPlcDirectory::start().await;
    let server = server("preferences", Db::Sqlite, &plc).await.unwrap();
    let c = Client { server: &server };
    let (erin, token) = sign_up(&c, "erin.test").await;
    let (_, frank_token) = sign_up(&c, "frank.test").await;

    let empty = c
        .ok_get("app.bsky.actor.getPreferences", Some(&token), &[])
        .await;
    assert_eq!(empty, json!({"preferences": []}));
    let prefs = json!([
        {"$type": "app.bsky.actor.defs#adultContentPref", "enabled": false},
        {"$type": "app.bsky.actor.defs#personalDetailsPref", "birthDate": "1990-01-01T00:00:00.000Z"},
    ]);
    c.ok_post(
        "app.bsky.actor.putPreferences",
        Some(&token),
        json!({"preferences": prefs}),
    )
    .await;
    let got = c
        .ok_get("app.bsky.actor.getPreferences", Some(&token), &[])
        .await;
    assert_eq!(got["preferences"], prefs);
    // Private: another account sees its own (none).
    let other = c
        .ok_get("app.bsky.actor.getPreferences", Some(&frank_token), &[])
        .await;
    assert_eq!(other["preferences"], json!([]));
    // Outside the app.bsky namespace: refused.
    c.fails_post(
        "app.bsky.actor.putPreferences",
        Some(&token),
        json!({"preferences": [{"$type": "com.example.pref", "x": 1}]}),
        400,
        "InvalidRequest",
    )
    .await;
    // checkAccountStatus counts them.
    let status = c
        .ok_get("com.atproto.server.checkAccountStatus", Some(&token), &[])
        .await;
    assert_eq!(status["privateStateValues"], 2);

    // An app password session neither sees nor sets personal details, and
    // its writes keep them.
    let app = c
        .ok_post(
            "com.atproto.server.createAppPassword",
            Some(&token),
            json!({"name": "client"}),
        )
        .await;
    let session = c
        .ok_post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": erin, "password": app["password"]}),
        )
        .await;
    let app_token = session["accessJwt"].as_str().unwrap();
    let got = c
        .ok_get("app.bsky.actor.getPreferences", Some(app_token), &[])
        .await;
    assert_eq!(got["preferences"], json!([prefs[0]]));
    c.fails_post(
        "app.bsky.actor.putPreferences",
        Some(app_token),
        json!({"preferences": [prefs[1]]}),
        400,
        "InvalidRequest",
    )
    .await;
    let changed = json!({"$type": "app.bsky.actor.defs#adultContentPref", "enabled": true});
    c.ok_post(
        "app.bsky.actor.putPreferences",
        Some(app_token),
        json!({"preferences": [changed]}),
    )
    .await;
    let got = c
        .ok_get("app.bsky.actor.getPreferences", Some(&token), &[])
        .await;
    assert_eq!(got["preferences"], json!([changed, prefs[1]]));
}
