//! Starts the real server in-process on 127.0.0.1:0 for end-to-end tests.

#![allow(dead_code, clippy::unwrap_used)]

pub(crate) mod dump;
pub(crate) mod pds;
pub(crate) mod process;
pub(crate) mod repo_check;
pub(crate) mod webdriver;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aurora_core::{PdsBuilder, PdsContext};
use aurora_server::Aurora;
use aurora_server::app;
use aurora_server::config::Config;
use aurora_server::serve::Server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which database a test server uses.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    /// An existing database (for several servers on one database).
    Url(String),
    Memory,
    Sqlite,
    Postgres,
}

pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) http: reqwest::Client,
    /// The running PDS's storage, for checks a client cannot make.
    pub(crate) ctx: PdsContext,
    /// The server's data folder (mail outbox, secrets).
    pub(crate) data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _tasks: aurora_server::serve::BackgroundTasks,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// Signals shutdown; returns the server task to await.
    pub(crate) fn shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a server on `db` (None when Postgres is unavailable and the test
/// skips), with `configure` applied to the config and `extend` to the builder.
pub(crate) async fn start(
    test: &str,
    db: Db,
    configure: impl FnOnce(&mut Config),
    extend: impl FnOnce(PdsBuilder) -> PdsBuilder,
) -> Option<TestServer> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        shutdown_grace_secs: 5,
        ..Config::default()
    };
    config.database_url = match db {
        Db::Url(url) => Some(url),
        Db::Memory => Some("memory:".to_owned()),
        Db::Sqlite => None,
        Db::Postgres => Some(aurora_storage_testkit::postgres::database(test)?),
    };
    configure(&mut config);
    let aurora = Aurora::open(config).await.unwrap();
    let mut pds = extend(aurora.builder().unwrap()).build().unwrap();
    let app = app::router(&pds, &aurora.http_settings().unwrap());
    let ctx = pds.context().clone();
    let server = Server::bind(aurora.config.listen, app, Duration::from_secs(5))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = stopped.await;
    }));
    Some(TestServer {
        addr,
        // reqwest is built without a default TLS provider: identity's
        // client brings one (ring).
        http: aurora_server::identity::http_client(Duration::from_secs(60)).unwrap(),
        ctx,
        data_dir: dir.path().to_owned(),
        stop: Some(stop),
        task: Some(task),
        _tasks: aurora_server::serve::BackgroundTasks::spawn(pds.take_tasks()),
        _dir: dir,
    })
}

/// Asserts an XRPC error response: status, `error` name, and a message.
pub(crate) async fn assert_xrpc_error(
    res: reqwest::Response,
    status: u16,
    error: &str,
) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}
