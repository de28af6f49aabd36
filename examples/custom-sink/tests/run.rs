//! Builds and runs the example: sign up, write records, and read the
//! counts its sink kept.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use aurora_storage_testkit::plc::TestPlcDirectory;
use aurora_storage_testkit::process::ServerProcess;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_counts_record_operations_per_collection() {
    let plc = TestPlcDirectory::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_aurora-example-custom-sink"));
    command
        .env_clear()
        .env("AURORA_LISTEN", "127.0.0.1:0")
        .env("AURORA_DATABASE_URL", "memory:")
        .env("AURORA_DATA_DIR", data.path())
        .env("AURORA_PLC_URL", plc.url())
        .env("AURORA_LOG", "warn")
        .current_dir(data.path());
    let server = ServerProcess::start(command);
    let http = aurora_server::identity::http_client(Duration::from_secs(30)).unwrap();
    let url = |nsid: &str| format!("http://{}/xrpc/{nsid}", server.addr);
    let created = answer(http.post(url("com.atproto.server.createAccount")).json(
        &json!({"handle": "counted.test", "email": "c@example.com", "password": "a long password"}),
    ))
    .await;
    let (did, access) = (
        created["did"].as_str().unwrap(),
        created["accessJwt"].as_str().unwrap(),
    );
    let mut rkeys = Vec::new();
    for i in 0..3 {
        let res = answer(
            http.post(url("com.atproto.repo.createRecord"))
                .bearer_auth(access)
                .json(&json!({"repo": did, "collection": "app.bsky.feed.post",
                              "record": {"$type": "app.bsky.feed.post", "text": format!("{i}"),
                                         "createdAt": "2026-12-06T12:00:00.000Z"}})),
        )
        .await;
        rkeys.push(
            res["uri"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let res = http
        .post(url("com.atproto.repo.deleteRecord"))
        .bearer_auth(access)
        .json(&json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkeys[0]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());

    let expected = json!({"app.bsky.feed.post": {"create": 3, "delete": 1}});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = answer(http.get(url("com.example.counter.getCounts"))).await;
        if counts["counts"] == expected {
            break;
        }
        assert!(Instant::now() < deadline, "counts stayed {counts}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `request` and reads its JSON answer, which must be a success.
async fn answer(request: reqwest::RequestBuilder) -> Value {
    let res = request.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}
