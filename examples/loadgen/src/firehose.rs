//! Firehose subscribers: live ones that count events and their delivery
//! latency during a load run, and a backfill reader.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{BackfillReport, Percentiles};
use crate::{BackfillArgs, Result};

/// The frame header of the event stream spec.
#[derive(Deserialize)]
struct Header {
    op: i64,
    t: Option<String>,
}

/// The few body fields measured; the rest (blocks, ops) is skipped unread.
#[derive(Deserialize)]
struct Body {
    seq: Option<i64>,
    time: Option<String>,
    error: Option<String>,
    message: Option<String>,
}

/// What one frame says, as far as the measurements go.
enum Event {
    /// A sequenced event: its `seq` and how long ago it was sequenced.
    Seq { seq: i64, age: Option<Duration> },
    /// `#info` and other unsequenced messages.
    Other,
    /// An error frame; the stream ends.
    Error(String),
}

fn decode(frame: &[u8]) -> Result<Event> {
    let split = aurora_core::data::first_item_len(frame)?;
    let header: Header = serde_ipld_dagcbor::from_slice(&frame[..split])?;
    let body: Body = serde_ipld_dagcbor::from_slice(&frame[split..])?;
    if header.op == -1 {
        return Ok(Event::Error(format!(
            "{}: {}",
            body.error.unwrap_or_default(),
            body.message.unwrap_or_default()
        )));
    }
    let Some(seq) = body.seq else {
        return Ok(Event::Other);
    };
    if header.t.is_none() {
        return Ok(Event::Other);
    }
    let age = body
        .time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| (chrono::Utc::now() - t.to_utc()).to_std().ok())
        // An event stamped a little in the future (clock granularity) is
        // delivered at once.
        .or(Some(Duration::ZERO));
    Ok(Event::Seq { seq, age })
}

/// A live subscriber's socket settings. Frames are a few KiB; tungstenite's
/// default 128 KiB read buffer is zeroed on every read, which with a
/// thousand subscribers made the load tool (not the server) the bottleneck
/// of the latency it measures.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024)
}

/// The `subscribeRepos` WebSocket URL of the PDS at `url` (http or https).
fn subscribe_url(url: &str, cursor: Option<i64>) -> String {
    let ws = url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let query = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
    format!(
        "{}/xrpc/com.atproto.sync.subscribeRepos{query}",
        ws.trim_end_matches('/')
    )
}

/// What one live subscriber saw.
pub(crate) struct SubscriberStats {
    pub events: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// Events whose `seq` was not one more than the previous one.
    pub gaps: u64,
    /// Events whose `seq` was not larger than the previous one.
    pub out_of_order: u64,
    /// Delivery latency (sequenced → received), microseconds.
    pub latency: Histogram<u64>,
    pub error: Option<String>,
}

/// Live subscribers running in the background.
pub(crate) struct Subscribers {
    tasks: Vec<JoinHandle<SubscriberStats>>,
    /// Each subscriber's latest `seq` (0 before any).
    progress: Arc<Vec<AtomicI64>>,
    stop: watch::Sender<bool>,
}

impl Subscribers {
    /// Connects `n` live subscribers (a few at a time), returning once all
    /// are connected.
    pub(crate) async fn connect(url: &str, n: usize) -> Result<Self> {
        let progress: Arc<Vec<AtomicI64>> = Arc::new((0..n).map(|_| AtomicI64::new(0)).collect());
        let (stop, stopped) = watch::channel(false);
        let url = subscribe_url(url, None);
        let sockets: Vec<_> = futures::stream::iter(0..n)
            .map(|_| {
                tokio_tungstenite::connect_async_with_config(url.clone(), Some(ws_config()), false)
            })
            .buffered(32)
            .collect()
            .await;
        let mut tasks = Vec::with_capacity(n);
        for (i, socket) in sockets.into_iter().enumerate() {
            let (ws, _) = socket?;
            let progress = progress.clone();
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let mut stats = SubscriberStats {
                    events: 0,
                    first_seq: None,
                    last_seq: None,
                    gaps: 0,
                    out_of_order: 0,
                    latency: latency_histogram(2),
                    error: None,
                };
                let mut ws = ws;
                loop {
                    let message = tokio::select! {
                        m = ws.next() => m,
                        _ = stopped.changed() => break,
                    };
                    match message {
                        Some(Ok(Message::Binary(frame))) => match decode(&frame) {
                            Ok(Event::Seq { seq, age }) => {
                                stats.record(seq, age);
                                progress[i].store(seq, Ordering::Relaxed);
                            }
                            Ok(Event::Other) => {}
                            Ok(Event::Error(e)) => {
                                stats.error = Some(e);
                                break;
                            }
                            Err(e) => {
                                stats.error = Some(format!("undecodable frame: {e}"));
                                break;
                            }
                        },
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            stats.error = Some(e.to_string());
                            break;
                        }
                        None => {
                            stats.error = Some("the server closed the stream".into());
                            break;
                        }
                    }
                }
                stats
            }));
        }
        Ok(Self {
            tasks,
            progress,
            stop,
        })
    }

    /// The highest `seq` any subscriber has seen.
    pub(crate) fn head(&self) -> i64 {
        self.progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Waits until every subscriber has the same latest `seq` and nothing
    /// new came for a while (or `patience` ran out); returns how long that
    /// took.
    pub(crate) async fn drain(&self, patience: Duration) -> Duration {
        let start = Instant::now();
        let (mut settled_at, mut last_head) = (start, self.head());
        loop {
            let head = self.head();
            let all_there = self
                .progress
                .iter()
                .all(|p| p.load(Ordering::Relaxed) == head);
            if head != last_head || !all_there {
                settled_at = Instant::now();
                last_head = head;
            }
            if all_there && settled_at.elapsed() > Duration::from_millis(500) {
                return settled_at.duration_since(start);
            }
            if start.elapsed() > patience {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every subscriber and returns what each saw.
    pub(crate) async fn finish(self) -> Vec<SubscriberStats> {
        let _ = self.stop.send(true);
        let mut all = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            if let Ok(stats) = task.await {
                all.push(stats);
            }
        }
        all
    }
}

impl SubscriberStats {
    fn record(&mut self, seq: i64, age: Option<Duration>) {
        if let Some(last) = self.last_seq {
            if seq <= last {
                self.out_of_order += 1;
            } else if seq != last + 1 {
                self.gaps += 1;
            }
        } else {
            self.first_seq = Some(seq);
        }
        self.last_seq = Some(seq);
        self.events += 1;
        if let Some(age) = age {
            record(&mut self.latency, age);
        }
    }
}

/// A histogram of microseconds up to a minute, with 2 or 3 significant
/// digits (less memory or more precision).
pub(crate) fn latency_histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, significant_digits.clamp(2, 3))
        .expect("the bounds are constant and valid")
}

/// Records `elapsed` in a histogram of [`latency_histogram`]'s microseconds
/// (at least 1, its lowest bound; past its highest, the highest).
pub(crate) fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// Reads the firehose from `args.cursor` until no event came for
/// `args.idle_ms`.
pub(crate) async fn backfill(args: &BackfillArgs) -> Result<BackfillReport> {
    let start = Instant::now();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(subscribe_url(&args.url, Some(args.cursor))).await?;
    let idle = Duration::from_millis(args.idle_ms);
    let (mut events, mut bytes, mut out_of_order) = (0_u64, 0_u64, 0_u64);
    let (mut first_seq, mut last_seq) = (None, None::<i64>);
    let mut last_at = start;
    let mut latency = latency_histogram(3);
    loop {
        let message = match tokio::time::timeout(idle, ws.next()).await {
            Err(_) => break,
            Ok(None) => return Err("the server closed the stream".into()),
            Ok(Some(message)) => message?,
        };
        let Message::Binary(frame) = message else {
            continue;
        };
        bytes += frame.len() as u64;
        match decode(&frame)? {
            Event::Seq { seq, age } => {
                if last_seq.is_some_and(|last| seq <= last) {
                    out_of_order += 1;
                }
                first_seq.get_or_insert(seq);
                last_seq = Some(seq);
                events += 1;
                last_at = Instant::now();
                if let Some(age) = age {
                    record(&mut latency, age);
                }
            }
            Event::Other => {}
            Event::Error(e) => return Err(format!("error frame: {e}").into()),
        }
    }
    let seconds = last_at.duration_since(start).as_secs_f64();
    Ok(BackfillReport {
        label: args.label.clone(),
        cursor: args.cursor,
        events,
        first_seq,
        last_seq,
        out_of_order,
        seconds,
        events_per_second: if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        },
        megabytes_per_second: if seconds > 0.0 {
            bytes as f64 / 1e6 / seconds
        } else {
            0.0
        },
        event_age_ms: Percentiles::of_micros(&latency),
    })
}
