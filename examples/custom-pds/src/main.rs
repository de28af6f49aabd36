//! A custom PDS variant in one file: the complete built-in PDS, configured
//! like `aurora serve` (defaults < `aurora.toml` < `AURORA_*`), plus a plugin
//! that adds its own XRPC method and a tower layer.
//!
//! ```sh
//! cargo run -p aurora-example-custom-pds
//! curl http://127.0.0.1:2583/xrpc/com.example.hello.greet?name=you
//! ```

use std::time::Duration;

use aurora_core::http::HttpService;
use aurora_core::plugin::XrpcMethodKind;
use aurora_core::{PdsContext, Plugin, XrpcRoute};
use aurora_server::config::Config;
use aurora_server::serve::{BackgroundTasks, Server, shutdown_signal};
use aurora_server::xrpc::{from_http_service, into_http_service, route};
use aurora_server::{Aurora, app};
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::routing::get;
use serde_json::{Value, json};

/// Adds `com.example.hello.greet` and marks every response with a header.
struct HelloPlugin;

async fn greet(State(ctx): State<PdsContext>, Query(params): Query<Value>) -> axum::Json<Value> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("world");
    axum::Json(json!({ "greeting": format!("hello {name}, from {}", ctx.service.hostname) }))
}

impl Plugin for HelloPlugin {
    fn name(&self) -> &'static str {
        "hello"
    }

    fn routes(&self, ctx: &PdsContext) -> Vec<XrpcRoute> {
        vec![route(
            "com.example.hello.greet",
            XrpcMethodKind::Query,
            get(greet).with_state(ctx.clone()),
        )]
    }

    fn layer(&self, _ctx: &PdsContext, inner: HttpService) -> HttpService {
        // Any tower layer works; here axum's `map_response`.
        let router = axum::Router::new()
            .fallback_service(from_http_service(inner))
            .layer(axum::middleware::map_response(
                |mut res: axum::response::Response| async move {
                    res.headers_mut().insert(
                        "x-powered-by",
                        HeaderValue::from_static("aurora-locus (custom variant)"),
                    );
                    res
                },
            ));
        into_http_service(router)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(None)?;
    let listen = config.listen;
    let aurora = Aurora::open(config).await?;
    let mut pds = aurora.builder()?.plugin(HelloPlugin).build()?;
    let server = Server::bind(
        listen,
        app::router(&pds, &aurora.http_settings()?),
        Duration::from_secs(10),
    )
    .await?;
    println!("custom PDS listening on http://{}", server.local_addr()?);
    // Background jobs: the firehose's log pruning, the event sink runners.
    let tasks = BackgroundTasks::spawn(pds.take_tasks());
    server.serve(shutdown_signal()).await?;
    drop(tasks);
    aurora.storage.close().await;
    Ok(())
}
