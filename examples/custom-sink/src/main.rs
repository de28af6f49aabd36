//! A custom event sink in one file: it counts the records created, updated
//! and deleted per collection, and a plugin serves the counts at
//! `com.example.counter.getCounts`. The rest is the complete built-in PDS,
//! configured like `aurora serve`.
//!
//! ```sh
//! cargo run -p aurora-example-custom-sink
//! curl http://127.0.0.1:2583/xrpc/com.example.counter.getCounts
//! ```
//!
//! The server runs the sink like any configured one: from its own durable
//! cursor (named after the sink), in order, at least once, retried with
//! backoff when `deliver` fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aurora_core::event::{JsonEvent, JsonOptions, SeqEvent, json::JsonEventBody};
use aurora_core::plugin::XrpcMethodKind;
use aurora_core::sink::{EventSink, SinkError};
use aurora_core::{PdsContext, Plugin, XrpcRoute};
use aurora_server::config::Config;
use aurora_server::serve::{BackgroundTasks, Server, shutdown_signal};
use aurora_server::xrpc::route;
use aurora_server::{Aurora, app};
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

/// Record operations per collection and action.
type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// The sink: counts every record operation of every commit.
#[derive(Debug, Clone, Default)]
struct CollectionCounter {
    counts: Arc<Mutex<Counts>>,
}

impl CollectionCounter {
    fn snapshot(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl EventSink for CollectionCounter {
    fn name(&self) -> &'static str {
        "collection-counter"
    }

    async fn deliver(&self, events: &[SeqEvent]) -> Result<(), SinkError> {
        // Decode the whole batch first: a batch is acknowledged entirely or
        // not at all.
        let mut batch: Counts = BTreeMap::new();
        for event in events {
            let json =
                JsonEvent::from_event(event, JsonOptions::default()).map_err(SinkError::new)?;
            if let JsonEventBody::Commit(commit) = json.body {
                for op in commit.ops {
                    *batch
                        .entry(op.collection)
                        .or_default()
                        .entry(op.action)
                        .or_default() += 1;
                }
            }
        }
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (collection, actions) in batch {
            for (action, n) in actions {
                *counts
                    .entry(collection.clone())
                    .or_default()
                    .entry(action)
                    .or_default() += n;
            }
        }
        Ok(())
    }
}

/// Serves the counts at `com.example.counter.getCounts`.
struct CounterPlugin(CollectionCounter);

async fn get_counts(State(counter): State<CollectionCounter>) -> axum::Json<Value> {
    axum::Json(json!({ "counts": counter.snapshot() }))
}

impl Plugin for CounterPlugin {
    fn name(&self) -> &'static str {
        "counter"
    }

    fn routes(&self, _ctx: &PdsContext) -> Vec<XrpcRoute> {
        vec![route(
            "com.example.counter.getCounts",
            XrpcMethodKind::Query,
            get(get_counts).with_state(self.0.clone()),
        )]
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(None)?;
    let listen = config.listen;
    let aurora = Aurora::open(config).await?;
    let counter = CollectionCounter::default();
    let mut pds = aurora
        .builder()?
        .event_sink(Arc::new(counter.clone()))
        .plugin(CounterPlugin(counter))
        .build()?;
    let server = Server::bind(
        listen,
        app::router(&pds, &aurora.http_settings()?),
        Duration::from_secs(10),
    )
    .await?;
    println!(
        "custom-sink PDS listening on http://{}",
        server.local_addr()?
    );
    // The sink runners (and the firehose's pruning) are background tasks.
    let tasks = BackgroundTasks::spawn(pds.take_tasks());
    server.serve(shutdown_signal()).await?;
    drop(tasks);
    aurora.storage.close().await;
    Ok(())
}
