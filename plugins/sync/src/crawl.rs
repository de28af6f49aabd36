//! `com.atproto.sync.requestCrawl` to relays: "come and crawl this PDS",
//! sent at start-up and, like the reference PDS, when events are sequenced
//! after a quiet period — at most once per [`CrawlSettings::interval`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use aurora_core::Sequencer;

/// The reference PDS asks relays to crawl it at most this often.
pub const DEFAULT_CRAWL_INTERVAL: Duration = Duration::from_secs(20 * 60);

/// Where and how to send `requestCrawl`.
#[derive(Debug, Clone)]
pub struct CrawlSettings {
    /// The HTTP client (with the server's TLS setup and timeouts).
    pub http: reqwest::Client,
    /// Relay base URLs (`https://bsky.network`).
    pub crawlers: Vec<String>,
    /// Least time between two crawl requests caused by writes.
    pub interval: Duration,
}

/// Decides when a write warrants a crawl request: the first write ever,
/// then the first after `interval` has passed since the last request.
#[derive(Debug, Clone)]
pub(crate) struct CrawlSchedule {
    interval: Duration,
    last: Option<Instant>,
}

impl CrawlSchedule {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// Whether a write at `now` should request a crawl (and if so, counts it).
    pub(crate) fn on_write(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// Asks every crawler to crawl `hostname`; failures are logged, not retried
/// (the next write after the interval asks again).
pub(crate) async fn request_crawl(http: &reqwest::Client, crawlers: &[String], hostname: &str) {
    let requests = crawlers.iter().map(|crawler| async move {
        let url = format!(
            "{}/xrpc/com.atproto.sync.requestCrawl",
            crawler.trim_end_matches('/')
        );
        let sent = http
            .post(&url)
            .json(&serde_json::json!({ "hostname": hostname }))
            .send()
            .await;
        match sent {
            Ok(res) if res.status().is_success() => {
                tracing::info!(crawler = %crawler, "requested a crawl");
            }
            Ok(res) => {
                let status = res.status();
                let body = res.text().await.unwrap_or_default();
                tracing::warn!(crawler = %crawler, %status, body = %body.chars().take(300).collect::<String>(), "crawl request refused");
            }
            Err(e) => tracing::warn!(crawler = %crawler, error = %e, "crawl request failed"),
        }
    });
    futures::future::join_all(requests).await;
}

/// The background job: a request at start-up, then on writes as
/// [`CrawlSchedule`] allows. Ends when the sequencer goes away.
pub(crate) async fn run(settings: CrawlSettings, hostname: String, sequencer: Arc<dyn Sequencer>) {
    let mut writes = sequencer.subscribe();
    request_crawl(&settings.http, &settings.crawlers, &hostname).await;
    let mut schedule = CrawlSchedule::new(settings.interval);
    while writes.changed().await.is_ok() {
        if schedule.on_write(Instant::now()) {
            request_crawl(&settings.http, &settings.crawlers, &hostname).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_request_a_crawl_at_most_once_per_interval() {
        let mut s = CrawlSchedule::new(Duration::from_secs(1200));
        let t0 = Instant::now();
        assert!(s.on_write(t0), "the first write asks");
        assert!(!s.on_write(t0 + Duration::from_secs(1)));
        assert!(!s.on_write(t0 + Duration::from_secs(1199)));
        assert!(s.on_write(t0 + Duration::from_secs(1200)));
        assert!(!s.on_write(t0 + Duration::from_secs(1300)));
    }
}
