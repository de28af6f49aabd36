//! What a run found, as a table and as JSON.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Mix;
use crate::firehose::{SubscriberStats, latency_histogram};
use crate::procstat::Usage;

/// Latency percentiles, milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// One XRPC method's figures (or `all` of them).
#[derive(Debug, Serialize)]
pub(crate) struct OpReport {
    pub method: &'static str,
    pub ok: u64,
    pub errors: u64,
    /// Successful requests per second.
    pub per_second: f64,
    pub latency_ms: Percentiles,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl OpReport {
    pub(crate) fn new(
        method: &'static str,
        ok: u64,
        errors: u64,
        latency: &Histogram<u64>,
        seconds: f64,
        first_error: Option<String>,
    ) -> Self {
        let per_second = if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        };
        Self {
            method,
            ok,
            errors,
            per_second,
            latency_ms: Percentiles::of_micros(latency),
            first_error,
        }
    }
}

/// What the live subscribers saw.
#[derive(Debug, Default, Serialize)]
pub(crate) struct FirehoseReport {
    pub subscribers: usize,
    /// Events the fullest subscriber received during and after the load.
    pub events: u64,
    /// Of those, events per second of load.
    pub events_per_second: f64,
    /// Frames delivered to all subscribers together, per second of load.
    pub frames_per_second: f64,
    /// Subscribers that received every event the fullest one did, in order,
    /// without a gap in `seq`.
    pub complete_subscribers: usize,
    /// Subscribers that ended with an error (e.g. `ConsumerTooSlow`).
    pub failed_subscribers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
    /// Sequenced → received, over all subscribers.
    pub delivery_latency_ms: Percentiles,
    /// From the end of the load until every subscriber had the last event.
    pub drain_ms: f64,
}

impl FirehoseReport {
    pub(crate) fn new(
        seen: &[SubscriberStats],
        head_before: i64,
        seconds: f64,
        drain: Duration,
    ) -> Self {
        let mut latency = latency_histogram(2);
        let mut report = Self {
            subscribers: seen.len(),
            drain_ms: drain.as_secs_f64() * 1000.0,
            ..Self::default()
        };
        let fullest = seen.iter().map(|s| s.events).max().unwrap_or(0);
        let last = seen.iter().filter_map(|s| s.last_seq).max();
        let mut frames = 0_u64;
        for s in seen {
            frames += s.events;
            let _ = latency.add(&s.latency);
            if s.error.is_some() {
                report.failed_subscribers += 1;
                if report.first_failure.is_none() {
                    report.first_failure.clone_from(&s.error);
                }
            } else if s.events == fullest
                && s.last_seq == last
                && s.gaps == 0
                && s.out_of_order == 0
                && s.first_seq.is_none_or(|f| f > head_before)
            {
                report.complete_subscribers += 1;
            }
        }
        report.events = fullest;
        if seconds > 0.0 {
            report.events_per_second = fullest as f64 / seconds;
            report.frames_per_second = frames as f64 / seconds;
        }
        report.delivery_latency_ms = Percentiles::of_micros(&latency);
        report
    }
}

/// The server process, when its pid was given.
#[derive(Debug, Serialize)]
pub(crate) struct ServerReport {
    pub pid: u32,
    /// RSS before the subscribers connected, bytes.
    pub rss_before: Option<u64>,
    /// RSS added per connected, idle subscriber, bytes.
    pub idle_subscriber_bytes: Option<u64>,
    /// RSS and CPU during the load.
    pub usage: Option<Usage>,
}

/// A `loadgen run`.
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    pub label: String,
    pub url: String,
    pub mix: Mix,
    pub clients: usize,
    pub accounts: usize,
    pub seconds: f64,
    pub rate_cap: Option<f64>,
    pub total: OpReport,
    pub ops: Vec<OpReport>,
    pub firehose: FirehoseReport,
    pub server: Option<ServerReport>,
}

fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}

impl RunReport {
    pub(crate) fn print(&self) {
        println!(
            "== {} ({}): {} clients, {} accounts, {:?} mix, {:.1} s",
            self.label, self.url, self.clients, self.accounts, self.mix, self.seconds
        );
        println!(
            "{:<32} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9}",
            "method", "ok", "errors", "per s", "p50 ms", "p99 ms", "max ms"
        );
        for op in self.ops.iter().chain(std::iter::once(&self.total)) {
            println!(
                "{:<32} {:>9} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2}",
                op.method,
                op.ok,
                op.errors,
                op.per_second,
                op.latency_ms.p50,
                op.latency_ms.p99,
                op.latency_ms.max
            );
            if let Some(e) = &op.first_error {
                println!(
                    "    first error: {}",
                    e.chars().take(200).collect::<String>()
                );
            }
        }
        let f = &self.firehose;
        println!(
            "firehose: {} subscribers, {} events ({:.1}/s, {:.0} frames/s), complete {}/{}, failed {}, delivery p50 {:.2} ms p99 {:.2} ms max {:.2} ms, drained {:.0} ms after the load",
            f.subscribers,
            f.events,
            f.events_per_second,
            f.frames_per_second,
            f.complete_subscribers,
            f.subscribers,
            f.failed_subscribers,
            f.delivery_latency_ms.p50,
            f.delivery_latency_ms.p99,
            f.delivery_latency_ms.max,
            f.drain_ms
        );
        if let Some(e) = &f.first_failure {
            println!("    first subscriber failure: {e}");
        }
        if let Some(s) = &self.server {
            let mut line = format!("server pid {}:", s.pid);
            if let Some(rss) = s.rss_before {
                let _ = write!(line, " RSS before {}", mib(rss));
            }
            if let Some(b) = s.idle_subscriber_bytes {
                let _ = write!(line, ", {:.1} KiB per idle subscriber", b as f64 / 1024.0);
            }
            if let Some(u) = &s.usage {
                let _ = write!(
                    line,
                    ", under load RSS mean {} peak {}, CPU {:.2} cores",
                    mib(u.mean_rss),
                    mib(u.peak_rss),
                    u.cpu_cores
                );
            }
            println!("{line}");
        }
    }
}

/// A `loadgen backfill`.
#[derive(Debug, Serialize)]
pub(crate) struct BackfillReport {
    pub label: String,
    pub cursor: i64,
    pub events: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub out_of_order: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub megabytes_per_second: f64,
    /// How old events were when they arrived (large in a backfill: they
    /// are history).
    pub event_age_ms: Percentiles,
}

impl BackfillReport {
    pub(crate) fn print(&self) {
        println!(
            "== {} backfill from cursor {}: {} events (seq {:?}..{:?}, {} out of order) in {:.2} s: {:.0} events/s, {:.1} MB/s",
            self.label,
            self.cursor,
            self.events,
            self.first_seq,
            self.last_seq,
            self.out_of_order,
            self.seconds,
            self.events_per_second,
            self.megabytes_per_second
        );
    }
}
