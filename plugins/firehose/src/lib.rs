//! # aurora-firehose
//!
//! The `com.atproto.sync.subscribeRepos` firehose of Aurora Locus, as a
//! [`Plugin`]: it reads only the [`Sequencer`](aurora_core::Sequencer) of
//! the PDS it is registered with.
//!
//! - **One encode per event.** A single reader follows the event log and
//!   frames each event once; every live subscriber gets the same bytes
//!   through its own bounded outbox (`outbox_frames`).
//! - **Cursors.** Without a cursor a subscriber gets live events only.
//!   With one, it first reads the log itself (a page at a time, so its
//!   memory stays bounded), then joins the live feed at a known `seq` and
//!   reads the log up to that point: no gap, no duplicate, in order. A
//!   cursor ahead of the log ends the stream with the `FutureCursor` error
//!   frame; one older than the retention window gets an `#info`
//!   `OutdatedCursor` message, then the oldest events kept.
//! - **Slow consumers.** A subscriber whose outbox is full is disconnected
//!   with the `ConsumerTooSlow` error frame instead of being buffered for.
//! - **Idle connections** are pinged every `ping_interval`; one that
//!   answers nothing for two intervals is closed.
//! - **Retention.** A background task deletes events older than `retention`
//!   from the log ([`Sequencer::prune`](aurora_core::Sequencer::prune)).
//!
//! Frames follow the event-stream spec: each binary WebSocket message is a
//! DAG-CBOR header (`{op: 1, t: "#commit"}`, or `{op: -1}` for an error)
//! followed by the DAG-CBOR body. After an error frame the server closes
//! the connection with code 1008 and the error name as the reason.

mod hub;
mod prune;
mod route;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use aurora_core::builder::PdsContext;
use aurora_core::plugin::{BackgroundTask, Plugin, XrpcMethodKind, XrpcRoute};
use aurora_core::syntax::Nsid;

pub use hub::PAGE_SIZE;

/// The NSID this plugin serves.
pub const SUBSCRIBE_REPOS: &str = "com.atproto.sync.subscribeRepos";

/// How the firehose serves and keeps events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehoseSettings {
    /// How long events stay in the log (and can be replayed from a cursor).
    pub retention: Duration,
    /// Most frames waiting for one live subscriber; past that it is
    /// disconnected with `ConsumerTooSlow`.
    pub outbox_frames: usize,
    /// How often idle connections are pinged.
    pub ping_interval: Duration,
}

impl Default for FirehoseSettings {
    /// 72 hours of retention, outboxes of 500 frames (as the reference
    /// PDS buffers), a ping every 30 seconds.
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(72 * 60 * 60),
            outbox_frames: 500,
            ping_interval: Duration::from_secs(30),
        }
    }
}

impl FirehoseSettings {
    /// How often the log is pruned: an eighth of the retention window,
    /// between one second and five minutes.
    pub fn prune_interval(&self) -> Duration {
        (self.retention / 8).clamp(Duration::from_secs(1), Duration::from_secs(300))
    }

    /// How long one frame may take to reach a client that does not read
    /// before the connection is dropped: two ping intervals, at least ten
    /// seconds.
    pub fn send_timeout(&self) -> Duration {
        (self.ping_interval * 2).max(Duration::from_secs(10))
    }
}

/// The firehose plugin: serves `com.atproto.sync.subscribeRepos` and
/// prunes the event log.
#[derive(Debug, Clone, Default)]
pub struct FirehosePlugin {
    settings: FirehoseSettings,
}

impl FirehosePlugin {
    /// A firehose with `settings`.
    pub fn new(settings: FirehoseSettings) -> Self {
        Self { settings }
    }

    /// Its settings.
    pub fn settings(&self) -> &FirehoseSettings {
        &self.settings
    }
}

impl Plugin for FirehosePlugin {
    fn name(&self) -> &'static str {
        "firehose"
    }

    fn routes(&self, ctx: &PdsContext) -> Vec<XrpcRoute> {
        let firehose = Arc::new(stream::Firehose {
            hub: hub::Hub::new(ctx.sequencer.clone(), self.settings.outbox_frames),
            sequencer: ctx.sequencer.clone(),
            settings: self.settings.clone(),
        });
        // A literal, valid NSID.
        let nsid = Nsid::parse(SUBSCRIBE_REPOS).unwrap_or_else(|e| panic!("{e}"));
        vec![XrpcRoute::new(
            nsid,
            XrpcMethodKind::Subscription,
            route::service(firehose),
        )]
    }

    fn tasks(&self, ctx: &PdsContext) -> Vec<BackgroundTask> {
        vec![BackgroundTask::new(
            "firehose-prune",
            prune::run(
                ctx.sequencer.clone(),
                self.settings.retention,
                self.settings.prune_interval(),
            ),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_intervals_stay_in_bounds() {
        let mut s = FirehoseSettings::default();
        assert_eq!(s.prune_interval(), Duration::from_secs(300));
        assert_eq!(s.send_timeout(), Duration::from_secs(60));
        s.retention = Duration::from_secs(2);
        s.ping_interval = Duration::from_secs(1);
        assert_eq!(s.prune_interval(), Duration::from_secs(1));
        assert_eq!(s.send_timeout(), Duration::from_secs(10));
    }
}
