//! The load: C clients writing (and reading) as fast as the server answers,
//! or at a capped rate, for a time or a number of requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::accounts::Account;
use crate::firehose::{Subscribers, latency_histogram, record};
use crate::procstat::{Sampler, settled};
use crate::report::{FirehoseReport, OpReport, Percentiles, RunReport, ServerReport};
use crate::{Mix, Result, RunArgs};

/// The operations of the load, by XRPC method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    Delete,
    Get,
    List,
}

impl Op {
    fn method(self) -> &'static str {
        match self {
            Self::Create => "com.atproto.repo.createRecord",
            Self::Delete => "com.atproto.repo.deleteRecord",
            Self::Get => "com.atproto.repo.getRecord",
            Self::List => "com.atproto.repo.listRecords",
        }
    }
}

/// One client's tally for one operation.
struct Tally {
    ok: u64,
    errors: u64,
    latency: Histogram<u64>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            latency: latency_histogram(3),
            first_error: None,
        }
    }

    fn add(&mut self, other: &Self) {
        self.ok += other.ok;
        self.errors += other.errors;
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

const COLLECTION: &str = "app.bsky.feed.post";

/// The write log of `--ack-log`: one JSON line per write, written as soon
/// as its outcome is known, so that it survives whatever happens next.
pub(crate) struct AckLog(std::sync::Mutex<std::fs::File>);

impl AckLog {
    pub(crate) fn create(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self(std::sync::Mutex::new(std::fs::File::create(path)?)))
    }

    fn write(&self, line: &Value) {
        use std::io::Write as _;
        let mut text = line.to_string();
        text.push('\n');
        if let Ok(mut file) = self.0.lock() {
            // One write call per line: lines never interleave.
            let _ = file.write_all(text.as_bytes());
        }
    }
}

/// Why a request has no answer.
enum SendError {
    /// No connection was made: the request was never sent.
    Connect(String),
    /// The connection failed after the request may have been sent.
    Other(String),
}

/// How a write ended, as the client saw it.
enum Outcome {
    /// 2xx, with the answer's body.
    Acknowledged(Value),
    /// An HTTP error status: the server refused it.
    Refused(u16),
    /// No answer (connection lost): it may or may not have happened.
    Unknown,
    /// No connection: it was never sent.
    Unreached,
}

/// One client: its account, the records it made and may delete or read.
struct LoadClient {
    http: reqwest::Client,
    base: String,
    account: Account,
    rkeys: Vec<String>,
    rng: StdRng,
    mix: Mix,
    tallies: BTreeMap<Op, Tally>,
    /// `--ack-log`.
    ack_log: Option<Arc<AckLog>>,
}

impl LoadClient {
    fn pick(&mut self) -> Op {
        match self.mix {
            Mix::Create => Op::Create,
            Mix::Mixed => {
                let (roll, has_records) = (self.rng.random_range(0..100), !self.rkeys.is_empty());
                if roll < 70 || (roll < 80 && !has_records) {
                    Op::Create
                } else if roll < 80 {
                    Op::Delete
                } else if roll < 90 && has_records {
                    Op::Get
                } else {
                    Op::List
                }
            }
        }
    }

    async fn step(&mut self) {
        let op = self.pick();
        let start = Instant::now();
        let outcome = self.call(op).await;
        let elapsed = start.elapsed();
        let tally = self.tallies.entry(op).or_insert_with(Tally::new);
        match outcome {
            Ok(()) => {
                tally.ok += 1;
                record(&mut tally.latency, elapsed);
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
        }
    }

    async fn call(&mut self, op: Op) -> std::result::Result<(), String> {
        let url = format!("{}/xrpc/{}", self.base, op.method());
        let did = self.account.did.clone();
        // The record key a logged write is about.
        let mut logged_rkey = None;
        let request = match op {
            Op::Create => {
                let mut body = json!({
                    "repo": did,
                    "collection": COLLECTION,
                    "record": {
                        "$type": COLLECTION,
                        "text": "a post from loadgen",
                        "createdAt": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    },
                });
                if self.ack_log.is_some() {
                    // A TID, as the collection requires, from this
                    // process's clock: unique across the clients.
                    let rkey = aurora_core::syntax::TidClock::global()
                        .next()
                        .as_str()
                        .to_owned();
                    body["rkey"] = json!(rkey);
                    logged_rkey = Some(rkey);
                }
                self.http.post(url).json(&body)
            }
            Op::Delete => {
                let i = self.rng.random_range(0..self.rkeys.len());
                let rkey = self.rkeys.swap_remove(i);
                let request = self
                    .http
                    .post(url)
                    .json(&json!({"repo": did, "collection": COLLECTION, "rkey": rkey}));
                logged_rkey = Some(rkey);
                request
            }
            Op::Get => {
                let rkey = &self.rkeys[self.rng.random_range(0..self.rkeys.len())];
                self.http.get(url).query(&[
                    ("repo", did.as_str()),
                    ("collection", COLLECTION),
                    ("rkey", rkey.as_str()),
                ])
            }
            Op::List => self.http.get(url).query(&[
                ("repo", did.as_str()),
                ("collection", COLLECTION),
                ("limit", "50"),
            ]),
        };
        let answer = self.send(request).await;
        if let (Some(log), Some(rkey)) = (&self.ack_log, logged_rkey) {
            log.write(&log_line(op, &did, &rkey, &answer));
        }
        let (status, body) = answer.map_err(|e| match e {
            SendError::Connect(e) | SendError::Other(e) => e,
        })?;
        if !status.is_success() {
            return Err(format!("{status} {}", String::from_utf8_lossy(&body)));
        }
        if op == Op::Create {
            let created: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            if let Some(rkey) = created["uri"].as_str().and_then(|u| u.rsplit('/').next()) {
                self.rkeys.push(rkey.to_owned());
            }
        }
        Ok(())
    }

    /// Sends `request` with the client's session; the status and the whole
    /// body, or why there is no answer.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> std::result::Result<(reqwest::StatusCode, bytes::Bytes), SendError> {
        let res = request
            .bearer_auth(&self.account.token)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    SendError::Connect(e.to_string())
                } else {
                    SendError::Other(e.to_string())
                }
            })?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|e| SendError::Other(e.to_string()))?;
        Ok((status, body))
    }
}

/// The `--ack-log` line of a write.
fn log_line(
    op: Op,
    did: &str,
    rkey: &str,
    answer: &std::result::Result<(reqwest::StatusCode, bytes::Bytes), SendError>,
) -> Value {
    let outcome = match answer {
        Ok((status, body)) if status.is_success() => {
            Outcome::Acknowledged(serde_json::from_slice(body).unwrap_or(Value::Null))
        }
        Ok((status, _)) => Outcome::Refused(status.as_u16()),
        Err(SendError::Connect(_)) => Outcome::Unreached,
        Err(SendError::Other(_)) => Outcome::Unknown,
    };
    let op = if op == Op::Create { "create" } else { "delete" };
    let mut line = json!({"op": op, "did": did, "collection": COLLECTION, "rkey": rkey});
    match outcome {
        Outcome::Acknowledged(body) => {
            line["outcome"] = json!("acknowledged");
            line["cid"] = body["cid"].clone();
            line["commit"] = body["commit"]["cid"].clone();
            line["rev"] = body["commit"]["rev"].clone();
        }
        Outcome::Refused(status) => {
            line["outcome"] = json!("refused");
            line["status"] = json!(status);
        }
        Outcome::Unknown => line["outcome"] = json!("unknown"),
        Outcome::Unreached => line["outcome"] = json!("unreached"),
    }
    line
}

/// Runs the load with its subscribers and server sampling, and reports.
pub(crate) async fn run(
    http: &reqwest::Client,
    args: &RunArgs,
    accounts: Vec<Account>,
) -> Result<RunReport> {
    let before = match args.pid {
        Some(pid) => settled(pid).await,
        None => None,
    };
    let subscribers = Subscribers::connect(&args.url, args.subscribers).await?;
    let with_subscribers = match args.pid {
        Some(pid) => settled(pid).await,
        None => None,
    };
    eprintln!("loadgen: {} subscribers connected", args.subscribers);

    let sampler = args.pid.map(Sampler::start);
    let head_before = subscribers.head();
    let started = Instant::now();
    let ack_log = match &args.ack_log {
        Some(path) => Some(Arc::new(AckLog::create(path)?)),
        None => None,
    };
    let clients = spawn_clients(
        http,
        args,
        &accounts,
        started + Duration::from_secs(args.seconds),
        ack_log.as_ref(),
    );
    let mut tallies: BTreeMap<Op, Tally> = BTreeMap::new();
    for client in clients {
        for (op, tally) in client.await? {
            tallies.entry(op).or_insert_with(Tally::new).add(&tally);
        }
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let lag = subscribers.drain(Duration::from_secs(60)).await;
    let usage = match sampler {
        Some(s) => s.finish().await,
        None => None,
    };
    let seen = subscribers.finish().await;

    let mut all = Tally::new();
    let ops = tallies
        .iter()
        .map(|(op, t)| {
            all.add(t);
            OpReport::new(
                op.method(),
                t.ok,
                t.errors,
                &t.latency,
                load_seconds,
                t.first_error.clone(),
            )
        })
        .collect();
    let total = OpReport::new(
        "all",
        all.ok,
        all.errors,
        &all.latency,
        load_seconds,
        all.first_error,
    );
    let firehose = FirehoseReport::new(&seen, head_before, load_seconds, lag);
    let server = args.pid.map(|pid| ServerReport {
        pid,
        rss_before: before.map(|s| s.rss),
        idle_subscriber_bytes: match (before, with_subscribers) {
            (Some(b), Some(w)) if args.subscribers > 0 => {
                Some(w.rss.saturating_sub(b.rss) / args.subscribers as u64)
            }
            _ => None,
        },
        usage,
    });
    Ok(RunReport {
        label: args.label.clone(),
        url: args.url.clone(),
        mix: args.mix,
        clients: args.clients,
        accounts: accounts.len(),
        seconds: load_seconds,
        rate_cap: args.rate,
        total,
        ops,
        firehose,
        server,
    })
}

/// Starts the clients; each runs until `deadline` or until the shared
/// request budget is spent, and returns its tallies.
fn spawn_clients(
    http: &reqwest::Client,
    args: &RunArgs,
    accounts: &[Account],
    deadline: Instant,
    ack_log: Option<&Arc<AckLog>>,
) -> Vec<tokio::task::JoinHandle<BTreeMap<Op, Tally>>> {
    let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
    let pace = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|rate| Duration::from_secs_f64(args.clients as f64 / rate));
    let mut clients = Vec::with_capacity(args.clients);
    let clients_n = args.clients;
    for i in 0..args.clients {
        let mut client = LoadClient {
            http: http.clone(),
            base: args.url.trim_end_matches('/').to_owned(),
            account: accounts[i % accounts.len()].clone(),
            rkeys: Vec::new(),
            rng: StdRng::from_rng(&mut rand::rng()),
            mix: args.mix,
            tallies: BTreeMap::new(),
            ack_log: ack_log.cloned(),
        };
        let budget = budget.clone();
        clients.push(tokio::spawn(async move {
            // Spread over the period, so that a rate cap makes a steady
            // stream of requests instead of all clients at once.
            let mut ticks = pace.map(|p| {
                let offset = p.mul_f64(i as f64 / clients_n as f64);
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, p);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while Instant::now() < deadline
                && budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_ok()
            {
                if let Some(ticks) = &mut ticks {
                    ticks.tick().await;
                }
                client.step().await;
            }
            client.tallies
        }));
    }
    clients
}

impl Percentiles {
    /// p50/p99/max of a histogram of microseconds, in milliseconds.
    pub(crate) fn of_micros(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| v as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}
