//! # aurora-sink-nats
//!
//! An [`EventSink`] that publishes every repo event to a NATS JetStream
//! stream, with [async-nats](https://docs.rs/async-nats).
//!
//! - **Subjects.** `<subject_prefix>.<type>`: `.commit`, `.sync`,
//!   `.identity` and `.account`, so consumers filter by event type.
//! - **Messages.** The payload is the event's documented JSON form
//!   ([`aurora_core::event::json`], record bodies included with
//!   `include_records`) or its `subscribeRepos` frame (`payload =
//!   "frames"`). Headers: `Nats-Msg-Id: <sink name>-<seq>`, which JetStream
//!   de-duplicates on within the stream's duplicate window, and `seq`,
//!   `did` and `type`, so consumers can route without parsing the payload.
//! - **Acknowledgement.** A batch is published pipelined (up to
//!   `max_in_flight` unacknowledged at once) and every acknowledgement is
//!   awaited in order; [`deliver`](EventSink::deliver) returns `Ok` only
//!   once JetStream stored every event of the batch.
//! - **Failures.** Any failure (servers down, a rejected message, a
//!   missing acknowledgement) fails the whole delivery, and the server's
//!   sink runner retries the same batch with backoff. Events JetStream
//!   already stored are recognised by their `Nats-Msg-Id` within the
//!   duplicate window (2 minutes by default) and not stored twice. Because
//!   publishes are pipelined, an event refused while later ones were stored
//!   lands after them once it is accepted: consumers that need strict
//!   per-repo order compare the `seq` header.
//! - **Stream.** Created on first connection when missing (`create_stream`:
//!   subjects `<subject_prefix>.>`, `storage`, `replicas`, `max_age_secs`,
//!   `duplicate_window_secs`); an existing stream is checked to capture
//!   every subject this sink publishes to, and never changed.
//!
//! ```toml
//! [[sinks]]
//! name = "nats"
//! kind = "nats"
//! servers = ["nats://nats-1:4222"]
//! stream = "ATPROTO_EVENTS"
//! subject_prefix = "atproto.events"
//! ```
//!
//! See [`NatsSinkConfig`] for every setting.

mod config;

pub use aurora_core::event::encoding::PayloadFormat;
pub use config::{ConfigError, NatsSinkConfig, StreamStorage};

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{
    CreateStreamError, GetStreamError, GetStreamErrorKind, PublishAckFuture, PublishError,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, Context};
use async_nats::{ConnectError, ConnectOptions, Event};
use async_trait::async_trait;
use aurora_core::event::encoding::{EncodeEventError, EventEncoding};
use aurora_core::event::{EventType, SeqEvent};
use aurora_core::sink::{ConfigurableSink, SinkConfigError, SinkEnv};
use aurora_core::{EventSink, SinkError};
use tokio::sync::Mutex;

/// Every event type, for the stream's subject check.
const EVENT_TYPES: [EventType; 4] = [
    EventType::Commit,
    EventType::Sync,
    EventType::Identity,
    EventType::Account,
];

/// Why a delivery to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsSinkError {
    /// An event could not be encoded (a corrupt stored event).
    #[error(transparent)]
    Encode(#[from] EncodeEventError),
    /// The servers could not be reached.
    #[error("connecting to NATS servers {servers:?}: {source}")]
    Connect {
        /// The configured servers.
        servers: Vec<String>,
        /// The client's error.
        source: ConnectError,
    },
    /// The root certificates could not be loaded.
    #[error("root_certificates: {0}")]
    Tls(String),
    /// Looking up the stream failed.
    #[error("looking up JetStream stream {stream:?}: {source}")]
    GetStream {
        /// The stream.
        stream: String,
        /// The client's error.
        source: GetStreamError,
    },
    /// The stream does not exist and `create_stream` is off.
    #[error("JetStream stream {0:?} does not exist (create it, or set create_stream = true)")]
    StreamMissing(String),
    /// Creating the stream failed.
    #[error("creating JetStream stream {stream:?}: {source}")]
    CreateStream {
        /// The stream.
        stream: String,
        /// The client's error.
        source: CreateStreamError,
    },
    /// The existing stream does not capture a subject this sink publishes to.
    #[error(
        "JetStream stream {stream:?} (subjects {subjects:?}) does not capture {missing:?}; add it to the stream's subjects or change subject_prefix"
    )]
    SubjectsNotCovered {
        /// The stream.
        stream: String,
        /// Its subjects.
        subjects: Vec<String>,
        /// The first subject it does not capture.
        missing: String,
    },
    /// A publish was refused or not acknowledged.
    #[error("publishing event {seq} to {subject}: {source}")]
    Publish {
        /// The event.
        seq: i64,
        /// Its subject.
        subject: String,
        /// The client's error.
        source: PublishError,
    },
    /// An acknowledgement named another stream: the subject is captured by
    /// a stream other than the configured one.
    #[error("event {seq} was stored in stream {actual:?}, not {expected:?}")]
    WrongStream {
        /// The event.
        seq: i64,
        /// The configured stream.
        expected: String,
        /// The stream that acknowledged it.
        actual: String,
    },
    /// The delivery took longer than allowed.
    #[error("delivery of events {first_seq}..={last_seq} timed out after {timeout:?}")]
    Timeout {
        /// First event of the batch.
        first_seq: i64,
        /// Last event of the batch.
        last_seq: i64,
        /// The limit.
        timeout: Duration,
    },
}

/// The NATS JetStream event sink (see the [crate docs](crate)).
#[derive(Debug)]
pub struct NatsSink {
    name: String,
    config: NatsSinkConfig,
    encoding: EventEncoding,
    /// The JetStream context, once connected and the stream checked.
    context: Mutex<Option<Context>>,
}

impl NatsSink {
    /// A sink named `name` (the key of its cursor and the prefix of its
    /// message ids) with `config`; fails on a configuration it cannot run
    /// with. Nothing is connected until the first delivery, so servers that
    /// are down do not stop the server from starting.
    pub fn new(name: impl Into<String>, config: NatsSinkConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            name: name.into(),
            encoding: config.encoding()?,
            config,
            context: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NatsSinkConfig {
        &self.config
    }

    /// The `Nats-Msg-Id` of event `seq`.
    pub fn message_id(&self, seq: i64) -> String {
        format!("{}-{seq}", self.name)
    }

    async fn connect(&self) -> Result<Context, NatsSinkError> {
        let config = &self.config;
        let timeout = config.timeout();
        let sink = self.name.clone();
        let mut options = ConnectOptions::new()
            .name(format!("aurora sink {}", self.name))
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .require_tls(config.tls_required)
            .event_callback(move |event| {
                let sink = sink.clone();
                async move { log_event(&sink, &event) }
            });
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &config.root_certificates {
            // Checked here too: the file may have gone since start-up.
            if !path.is_file() {
                return Err(NatsSinkError::Tls(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            options = options.add_root_certificates(path.clone());
        }
        let client = options
            .connect(config.servers.as_slice())
            .await
            .map_err(|source| NatsSinkError::Connect {
                servers: config.servers.clone(),
                source,
            })?;
        let context = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .ack_timeout(timeout)
            // Never the limit: this sink bounds its own window.
            .max_ack_inflight(config.max_in_flight.saturating_mul(2))
            .build(client);
        self.ensure_stream(&context).await?;
        tracing::info!(
            sink = %self.name,
            stream = %config.stream,
            subjects = %format!("{}.*", config.subject_prefix),
            "nats sink connected"
        );
        Ok(context)
    }

    /// Creates the stream when missing (and allowed), else checks that it
    /// captures every subject this sink publishes to.
    async fn ensure_stream(&self, context: &Context) -> Result<(), NatsSinkError> {
        let config = &self.config;
        let subjects = match context.get_stream(&config.stream).await {
            Ok(stream) => stream.cached_info().config.subjects.clone(),
            Err(e) if is_stream_not_found(&e) => {
                if !config.create_stream {
                    return Err(NatsSinkError::StreamMissing(config.stream.clone()));
                }
                let created =
                    context
                        .create_stream(self.stream_config())
                        .await
                        .map_err(|source| NatsSinkError::CreateStream {
                            stream: config.stream.clone(),
                            source,
                        })?;
                tracing::info!(
                    sink = %self.name,
                    stream = %config.stream,
                    subjects = ?created.cached_info().config.subjects,
                    "nats sink created its stream"
                );
                return Ok(());
            }
            Err(source) => {
                return Err(NatsSinkError::GetStream {
                    stream: config.stream.clone(),
                    source,
                });
            }
        };
        for event_type in EVENT_TYPES {
            let subject = config.subject(event_type);
            if !subjects
                .iter()
                .any(|pattern| config::subject_matches(pattern, &subject))
            {
                return Err(NatsSinkError::SubjectsNotCovered {
                    stream: config.stream.clone(),
                    subjects,
                    missing: subject,
                });
            }
        }
        Ok(())
    }

    fn stream_config(&self) -> StreamConfig {
        let config = &self.config;
        StreamConfig {
            name: config.stream.clone(),
            subjects: config.stream_subjects(),
            storage: match config.storage {
                StreamStorage::File => StorageType::File,
                StreamStorage::Memory => StorageType::Memory,
            },
            num_replicas: config.replicas,
            max_age: Duration::from_secs(config.max_age_secs),
            duplicate_window: Duration::from_secs(config.duplicate_window_secs),
            description: Some(format!(
                "ATProto repo events from aurora sink {}",
                self.name
            )),
            ..StreamConfig::default()
        }
    }

    fn message(&self, event: &SeqEvent) -> Result<PublishMessage, NatsSinkError> {
        let payload = self.encoding.encode(event)?;
        Ok(PublishMessage::build()
            .payload(payload.into())
            .message_id(self.message_id(event.seq))
            .header("seq", event.seq.to_string().as_str())
            .header("did", event.did.as_str())
            .header("type", event.event_type.as_str()))
    }

    /// Publishes `events` pipelined and awaits every acknowledgement in order.
    async fn publish(&self, context: &Context, events: &[SeqEvent]) -> Result<(), NatsSinkError> {
        let window = self.config.max_in_flight;
        let mut pending: VecDeque<(i64, String, PublishAckFuture)> =
            VecDeque::with_capacity(window.min(events.len()));
        for event in events {
            if pending.len() >= window
                && let Some((seq, subject, ack)) = pending.pop_front()
            {
                self.check_ack(seq, subject, ack).await?;
            }
            let subject = self.config.subject(event.event_type);
            let ack = context
                .send_publish(subject.clone(), self.message(event)?)
                .await
                .map_err(|source| NatsSinkError::Publish {
                    seq: event.seq,
                    subject: subject.clone(),
                    source,
                })?;
            pending.push_back((event.seq, subject, ack));
        }
        while let Some((seq, subject, ack)) = pending.pop_front() {
            self.check_ack(seq, subject, ack).await?;
        }
        Ok(())
    }

    async fn check_ack(
        &self,
        seq: i64,
        subject: String,
        ack: PublishAckFuture,
    ) -> Result<(), NatsSinkError> {
        let ack = ack.await.map_err(|source| NatsSinkError::Publish {
            seq,
            subject,
            source,
        })?;
        if ack.stream != self.config.stream {
            return Err(NatsSinkError::WrongStream {
                seq,
                expected: self.config.stream.clone(),
                actual: ack.stream,
            });
        }
        if ack.duplicate {
            tracing::debug!(sink = %self.name, seq, "nats sink: event was already in the stream");
        }
        Ok(())
    }

    async fn deliver_batch(&self, events: &[SeqEvent]) -> Result<(), NatsSinkError> {
        let mut slot = self.context.lock().await;
        // Taken out: after a failed or cancelled delivery the next one
        // connects and checks the stream afresh.
        let context = match slot.take() {
            Some(context) => context,
            None => self.connect().await?,
        };
        self.publish(&context, events).await?;
        *slot = Some(context);
        Ok(())
    }

    /// The most one delivery may take: connecting, and the acknowledgement
    /// timeout for each window of in-flight publishes.
    fn delivery_deadline(&self, events: usize) -> Duration {
        let windows = events.div_ceil(self.config.max_in_flight) + 1;
        self.config
            .timeout()
            .saturating_mul(u32::try_from(windows).unwrap_or(u32::MAX))
    }
}

fn is_stream_not_found(e: &GetStreamError) -> bool {
    matches!(
        e.kind(),
        GetStreamErrorKind::JetStream(inner) if inner.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}

fn log_event(sink: &str, event: &Event) {
    match event {
        Event::Connected => tracing::info!(sink, "nats sink: connected to a server"),
        Event::Disconnected => {
            tracing::warn!(
                sink,
                "nats sink: disconnected; reconnecting in the background"
            );
        }
        other => tracing::warn!(sink, event = %other, "nats sink: connection event"),
    }
}

#[async_trait]
impl EventSink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, events: &[SeqEvent]) -> Result<(), SinkError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let timeout = self.delivery_deadline(events.len());
        let result = tokio::time::timeout(timeout, self.deliver_batch(events))
            .await
            .unwrap_or(Err(NatsSinkError::Timeout {
                first_seq: first.seq,
                last_seq: last.seq,
                timeout,
            }));
        result.map_err(SinkError::new)
    }
}

impl ConfigurableSink for NatsSink {
    const KIND: &'static str = "nats";
    type Config = NatsSinkConfig;

    /// A relative `root_certificates` path is taken relative to the data folder.
    fn from_config(
        name: &str,
        mut config: NatsSinkConfig,
        env: &SinkEnv,
    ) -> Result<Self, SinkConfigError> {
        config.root_certificates = config.root_certificates.map(|p| env.resolve(&p));
        Self::new(name, config).map_err(|e| SinkConfigError::new(e.to_string()))
    }
}
