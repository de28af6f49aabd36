//! Builds and runs the example: its own XRPC method answers, its layer
//! marks every response, and the built-in PDS is there too.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use aurora_storage_testkit::process::ServerProcess;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_variant_serves_its_method_and_layer_beside_the_pds() {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_aurora-example-custom-pds"));
    command
        .env_clear()
        .env("AURORA_LISTEN", "127.0.0.1:0")
        .env("AURORA_DATABASE_URL", "memory:")
        .env("AURORA_DATA_DIR", data.path())
        .env("AURORA_LOG", "warn")
        .current_dir(data.path());
    let server = ServerProcess::start(command);
    let http = aurora_server::identity::http_client(Duration::from_secs(30)).unwrap();
    let res = http
        .get(format!(
            "http://{}/xrpc/com.example.hello.greet?name=you",
            server.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-powered-by"],
        "aurora-locus (custom variant)"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["greeting"], "hello you, from localhost");
    // The layer wraps the built-in methods too.
    let res = http
        .get(format!(
            "http://{}/xrpc/com.atproto.server.describeServer",
            server.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-powered-by"));
}
