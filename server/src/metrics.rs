//! Prometheus metrics at `/metrics`.
//!
//! Every crate records through the `metrics` facade (the firehose plugin
//! its subscribers, the repo writer its commits, the sink runner its lag);
//! the server installs one Prometheus recorder per process and renders it
//! on `GET /metrics`, behind the admin's basic auth unless
//! `metrics_public` is set.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `aurora_xrpc_requests_total` | counter | `method` (NSID, `_proxy` or `_unknown`), `status` (`2xx` .. `5xx`) |
//! | `aurora_xrpc_request_duration_seconds` | histogram | `method` (until the response head) |
//! | `aurora_commits_total` | counter | `kind` (`write`, `import`) |
//! | `aurora_commit_duration_seconds` | histogram | `kind` (lock wait, build, store) |
//! | `aurora_commit_root_conflicts_total` | counter | (commits rebuilt after another node moved the root) |
//! | `aurora_firehose_subscribers` | gauge | (live `subscribeRepos` connections) |
//! | `aurora_firehose_outbox_frames_max` / `_total` | gauge | (frames waiting, largest outbox / all) |
//! | `aurora_firehose_events_total` | counter | (events fanned out live) |
//! | `aurora_firehose_too_slow_total` | counter | (subscribers cut off with `ConsumerTooSlow`) |
//! | `aurora_db_pool_connections` | gauge | `state` (`in_use`, `idle`) |
//! | `aurora_db_commit_batch_size` | histogram | (commits written per database transaction: group commit) |
//! | `aurora_sink_lag_events` / `aurora_sink_lag_seconds` | gauge | `sink` (events and seconds behind the head at the last measurement) |
//! | `aurora_sink_failures` | gauge | `sink` (failed attempts in a row at the current batch) |
//! | `aurora_sink_delivered_events` | gauge | `sink` (events acknowledged since start) |

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use aurora_core::PdsContext;
use aurora_core::plugin::{BackgroundTask, Plugin};

use crate::config::Secret;
use crate::storage::Storage;
use crate::xrpc::ApiError;

/// Latency buckets, seconds: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Commits per transaction buckets (the SQL store's group commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The process's recorder, installed on first use. `None` when another
/// recorder was installed first (an embedding application's own).
pub fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("aurora_db_commit_batch_size".to_owned()),
                        BATCH_BUCKETS,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    describe();
                    // Histograms drain into their buckets on upkeep; keep
                    // it running so an idle scrape is cheap.
                    let upkeep = handle.clone();
                    std::thread::Builder::new()
                        .name("metrics-upkeep".to_owned())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(Duration::from_secs(5));
                                upkeep.run_upkeep();
                            }
                        })
                        .ok()?;
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics is empty");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!("aurora_xrpc_requests_total", "XRPC requests answered");
    metrics::describe_histogram!(
        "aurora_xrpc_request_duration_seconds",
        metrics::Unit::Seconds,
        "time to the response head of an XRPC request"
    );
    metrics::describe_counter!("aurora_commits_total", "repo commits stored");
    metrics::describe_histogram!(
        "aurora_commit_duration_seconds",
        metrics::Unit::Seconds,
        "time to commit a write: repo lock, build, sign, store"
    );
    metrics::describe_counter!(
        "aurora_commit_root_conflicts_total",
        "commits rebuilt because another node moved the repo root first"
    );
    metrics::describe_gauge!(
        "aurora_db_pool_connections",
        "database pool connections by state"
    );
    metrics::describe_histogram!(
        "aurora_db_commit_batch_size",
        "repo commits written together in one database transaction (group commit)"
    );
}

/// How `/metrics` is served.
#[derive(Clone)]
pub struct MetricsSettings {
    /// Renders the recorder.
    pub handle: PrometheusHandle,
    /// Whether the endpoint is open to anyone.
    pub public: bool,
    /// The admin password that opens it otherwise (none: closed).
    pub admin_password: Option<Secret>,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn render(
    State(settings): State<Arc<MetricsSettings>>,
    headers: HeaderMap,
) -> Response {
    if !settings.public
        && let Err(e) =
            crate::accounts::admin::check_admin_auth(&headers, settings.admin_password.as_ref())
    {
        return ApiError(e).into_response();
    }
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        settings.handle.render(),
    )
        .into_response()
}

/// The request metrics of one method, registered once.
struct MethodMetrics {
    duration: Histogram,
    /// By status class: 1xx .. 5xx.
    by_class: [Counter; 5],
}

impl MethodMetrics {
    fn new(method: &str) -> Self {
        let counter = |class: &'static str| metrics::counter!("aurora_xrpc_requests_total", "method" => method.to_owned(), "status" => class);
        Self {
            duration: metrics::histogram!("aurora_xrpc_request_duration_seconds", "method" => method.to_owned()),
            by_class: [
                counter("1xx"),
                counter("2xx"),
                counter("3xx"),
                counter("4xx"),
                counter("5xx"),
            ],
        }
    }

    fn record(&self, started: Instant, status: http::StatusCode) {
        self.duration.record(started.elapsed().as_secs_f64());
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].increment(1);
    }
}

/// Request metrics of every method the server serves. Methods are
/// labelled by NSID only when a plugin serves them, so clients cannot
/// create label values: everything else under `/xrpc/` is `_proxy` (or
/// `_unknown` without a proxy), and other paths are `_http`.
pub(crate) struct RequestMetrics {
    served: HashMap<String, MethodMetrics>,
    unserved: MethodMetrics,
    other: MethodMetrics,
}

impl RequestMetrics {
    pub(crate) fn new<'a>(served: impl IntoIterator<Item = &'a str>, proxied: bool) -> Arc<Self> {
        Arc::new(Self {
            served: served
                .into_iter()
                .map(|nsid| (nsid.to_owned(), MethodMetrics::new(nsid)))
                .collect(),
            unserved: MethodMetrics::new(if proxied { "_proxy" } else { "_unknown" }),
            other: MethodMetrics::new("_http"),
        })
    }

    fn of(&self, path: &str) -> &MethodMetrics {
        match path.strip_prefix("/xrpc/") {
            Some(nsid) => self.served.get(nsid).unwrap_or(&self.unserved),
            None => &self.other,
        }
    }
}

/// Middleware counting every request by method and status class, and
/// timing it to its response head. It sits outside rate limits, timeouts
/// and body limits, so their refusals count too.
pub(crate) async fn track(
    State(metrics): State<Arc<RequestMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = metrics.of(req.uri().path());
    let res = next.run(req).await;
    method.record(started, res.status());
    res
}

/// Samples the database pool into `aurora_db_pool_connections` every few
/// seconds (a background task of its own; memory storage has no pool).
#[derive(Debug)]
pub(crate) struct DbPoolMetrics(pub(crate) Storage);

impl Plugin for DbPoolMetrics {
    fn name(&self) -> &'static str {
        "db-pool-metrics"
    }

    fn tasks(&self, _: &PdsContext) -> Vec<BackgroundTask> {
        let Storage::Sql { store, .. } = &self.0 else {
            return Vec::new();
        };
        let store = store.clone();
        vec![BackgroundTask::new("db pool metrics", async move {
            let in_use = metrics::gauge!("aurora_db_pool_connections", "state" => "in_use");
            let idle = metrics::gauge!("aurora_db_pool_connections", "state" => "idle");
            loop {
                let (size, idle_now) = store.pool_stats();
                #[allow(clippy::cast_precision_loss)]
                let idle_now = idle_now as f64;
                idle.set(idle_now);
                in_use.set((f64::from(size) - idle_now).max(0.0));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })]
    }
}
