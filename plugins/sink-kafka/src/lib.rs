//! # aurora-sink-kafka
//!
//! An [`EventSink`] that produces every repo event to a Kafka topic, with
//! [rskafka](https://docs.rs/rskafka) (a pure-Rust client: no librdkafka, no
//! C toolchain).
//!
//! - **Messages.** One record per event. The key is the repo's DID; the
//!   value is the event's documented JSON form
//!   ([`aurora_core::event::json`], record bodies included with
//!   `include_records`) or its `subscribeRepos` frame (`payload =
//!   "frames"`); the headers `seq` (decimal) and `type` (`commit`, `sync`,
//!   `identity`, `account`) let consumers route and de-duplicate without
//!   parsing the value; the record timestamp is the event's `time`.
//! - **Order.** The partition is Kafka's default partitioner applied to the
//!   DID (murmur2, as the Java client and librdkafka compute it), so one
//!   repo's events stay in one partition, in `seq` order. Adding partitions
//!   to the topic later moves repos to other partitions, as it does for any
//!   keyed Kafka producer.
//! - **Acknowledgement.** Records are produced with `acks = all`;
//!   [`deliver`](EventSink::deliver) returns `Ok` only once the brokers
//!   acknowledged every record of the batch. Partitions are written
//!   concurrently, each in order, in produce requests of at most
//!   `max_batch_events` records and `max_batch_bytes` bytes.
//! - **Failures.** Any failure (brokers down, a rejected record, the
//!   `timeout_secs` deadline) fails the whole delivery; the server's sink
//!   runner retries the same batch with backoff, and this sink reconnects
//!   from scratch. Delivery is at least once: after a failure, records
//!   some partitions already took are produced again, so a consumer skips
//!   an event whose `seq` is not above the last it handled for that
//!   partition.
//! - **Topic.** Created on first connection when missing (`create_topic`,
//!   with `partitions` and `replication_factor`); an existing topic keeps
//!   its partition count.
//!
//! ```toml
//! [[sinks]]
//! name = "events"
//! kind = "kafka"
//! brokers = ["kafka-1:9092", "kafka-2:9092"]
//! topic = "atproto.events"
//! ```
//!
//! See [`KafkaSinkConfig`] for every setting.

mod config;
mod partition;

pub use aurora_core::event::encoding::PayloadFormat;
pub use config::{Compression, ConfigError, KafkaSinkConfig, SaslMechanism, SaslSettings};

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aurora_core::event::SeqEvent;
use aurora_core::event::encoding::{EncodeEventError, EventEncoding};
use aurora_core::sink::{ConfigurableSink, SinkConfigError, SinkEnv};
use aurora_core::{EventSink, SinkError};
use rskafka::BackoffConfig;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use tokio::sync::Mutex;

/// Bytes a record costs in a batch beyond its key, value and headers
/// (lengths, offsets and timestamps as varints); an upper bound.
const RECORD_OVERHEAD: usize = 40;

/// Why a delivery to Kafka failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// An event could not be encoded (a corrupt stored event).
    #[error(transparent)]
    Encode(#[from] EncodeEventError),
    /// The brokers could not be reached or did not answer metadata requests.
    #[error("connecting to Kafka brokers {brokers:?}: {source}")]
    Connect {
        /// The configured bootstrap brokers.
        brokers: Vec<String>,
        /// The client's error.
        source: Box<ClientError>,
    },
    /// The topic does not exist and `create_topic` is off.
    #[error("topic {0:?} does not exist (create it, or set create_topic = true)")]
    TopicMissing(String),
    /// Creating the topic failed.
    #[error("creating topic {topic:?}: {source}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The client's error.
        source: Box<ClientError>,
    },
    /// A produce request failed or was not acknowledged.
    #[error("producing events {first_seq}..={last_seq} to {topic}[{partition}]: {source}")]
    Produce {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// First event of the failed request.
        first_seq: i64,
        /// Last event of the failed request.
        last_seq: i64,
        /// The client's error.
        source: Box<ClientError>,
    },
    /// The delivery took longer than `timeout_secs`.
    #[error("delivery of events {first_seq}..={last_seq} timed out after {timeout:?}")]
    Timeout {
        /// First event of the batch.
        first_seq: i64,
        /// Last event of the batch.
        last_seq: i64,
        /// The configured timeout.
        timeout: Duration,
    },
}

/// The Kafka event sink (see the [crate docs](crate)).
#[derive(Debug)]
pub struct KafkaSink {
    name: String,
    config: KafkaSinkConfig,
    encoding: EventEncoding,
    compression: rskafka::client::partition::Compression,
    /// The open connection; `None` before the first delivery and after a
    /// failed one.
    connection: Mutex<Option<Connection>>,
}

/// A client and one partition client per partition of the topic.
#[derive(Debug)]
struct Connection {
    /// Keeps the broker connections the partition clients share.
    _client: Client,
    partitions: Vec<PartitionClient>,
}

/// One encoded event on its way to a partition.
#[derive(Debug)]
struct Outgoing {
    seq: i64,
    record: Record,
}

impl KafkaSink {
    /// A sink named `name` (the key of its cursor) with `config`; fails on
    /// a configuration it cannot run with. Nothing is connected until the
    /// first delivery, so brokers that are down do not stop the server from
    /// starting.
    pub fn new(name: impl Into<String>, config: KafkaSinkConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            name: name.into(),
            encoding: config.encoding()?,
            compression: config.compression.to_rskafka()?,
            config,
            connection: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaSinkConfig {
        &self.config
    }

    fn encode(&self, event: &SeqEvent) -> Result<Outgoing, KafkaSinkError> {
        let value = self.encoding.encode(event)?;
        let headers = BTreeMap::from([
            ("seq".to_owned(), event.seq.to_string().into_bytes()),
            (
                "type".to_owned(),
                event.event_type.as_str().as_bytes().to_vec(),
            ),
        ]);
        Ok(Outgoing {
            seq: event.seq,
            record: Record {
                key: Some(event.did.as_str().as_bytes().to_vec()),
                value: Some(value),
                headers,
                timestamp: event.time,
            },
        })
    }

    async fn connect(&self) -> Result<Connection, KafkaSinkError> {
        let config = &self.config;
        let connect_error = |source| KafkaSinkError::Connect {
            brokers: config.brokers.clone(),
            source: Box::new(source),
        };
        let mut builder = ClientBuilder::new(config.brokers.clone())
            .client_id(config.client_id.as_str())
            // rskafka retries retryable errors itself; bound that by the
            // delivery timeout so that a failure reaches the runner.
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
                deadline: Some(config.timeout()),
            });
        if let Some(sasl) = &config.sasl {
            builder = builder.sasl_config(sasl.to_rskafka());
        }
        let client = builder.build().await.map_err(connect_error)?;
        let partitions = match topic_partitions(&client, &config.topic).await {
            Ok(Some(n)) => n,
            Ok(None) => self.create_topic(&client).await?,
            Err(e) => return Err(connect_error(e)),
        };
        let mut clients = Vec::with_capacity(partitions.len());
        for partition in partitions {
            clients.push(
                client
                    .partition_client(
                        config.topic.as_str(),
                        partition,
                        UnknownTopicHandling::Retry,
                    )
                    .await
                    .map_err(connect_error)?,
            );
        }
        tracing::info!(
            sink = %self.name,
            topic = %config.topic,
            partitions = clients.len(),
            "kafka sink connected"
        );
        Ok(Connection {
            _client: client,
            partitions: clients,
        })
    }

    /// Creates the topic (when allowed) and waits until the metadata shows it.
    async fn create_topic(&self, client: &Client) -> Result<Vec<i32>, KafkaSinkError> {
        let config = &self.config;
        if !config.create_topic {
            return Err(KafkaSinkError::TopicMissing(config.topic.clone()));
        }
        let create_error = |source| KafkaSinkError::CreateTopic {
            topic: config.topic.clone(),
            source: Box::new(source),
        };
        let timeout_ms = i32::try_from(config.timeout().as_millis()).unwrap_or(i32::MAX);
        let created = client
            .controller_client()
            .map_err(create_error)?
            .create_topic(
                config.topic.as_str(),
                config.partitions,
                config.replication_factor,
                timeout_ms,
            )
            .await;
        match created {
            Ok(()) => tracing::info!(
                sink = %self.name,
                topic = %config.topic,
                partitions = config.partitions,
                replication_factor = config.replication_factor,
                "kafka sink created its topic"
            ),
            // Another producer was first.
            Err(ClientError::ServerError {
                protocol_error: ProtocolError::TopicAlreadyExists,
                ..
            }) => {}
            Err(e) => return Err(create_error(e)),
        }
        // The metadata may lag the creation for a moment.
        let mut wait = Duration::from_millis(50);
        loop {
            if let Some(partitions) = topic_partitions(client, &config.topic)
                .await
                .map_err(create_error)?
            {
                return Ok(partitions);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// Produces `outgoing` (in `seq` order) to the partitions of `connection`.
    async fn produce(
        &self,
        connection: &Connection,
        outgoing: Vec<Outgoing>,
    ) -> Result<(), KafkaSinkError> {
        let count = u32::try_from(connection.partitions.len()).unwrap_or(u32::MAX);
        let mut by_partition: Vec<Vec<Outgoing>> =
            connection.partitions.iter().map(|_| Vec::new()).collect();
        for item in outgoing {
            let key = item.record.key.as_deref().unwrap_or_default();
            let index = usize::try_from(partition::partition_for(key, count)).unwrap_or(0);
            by_partition[index].push(item);
        }
        let sends = connection
            .partitions
            .iter()
            .zip(by_partition)
            .filter(|(_, items)| !items.is_empty())
            .map(|(client, items)| self.produce_partition(client, items));
        futures::future::join_all(sends)
            .await
            .into_iter()
            .collect::<Result<(), _>>()
    }

    /// Produces one partition's records in order, in bounded requests.
    async fn produce_partition(
        &self,
        client: &PartitionClient,
        items: Vec<Outgoing>,
    ) -> Result<(), KafkaSinkError> {
        for request in chunks(
            items,
            self.config.max_batch_events,
            self.config.max_batch_bytes,
        ) {
            let (first_seq, last_seq) = (request[0].seq, request[request.len() - 1].seq);
            let records = request.into_iter().map(|o| o.record).collect();
            client
                .produce(records, self.compression)
                .await
                .map_err(|source| KafkaSinkError::Produce {
                    topic: client.topic().to_owned(),
                    partition: client.partition(),
                    first_seq,
                    last_seq,
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    async fn deliver_batch(&self, events: &[SeqEvent]) -> Result<(), KafkaSinkError> {
        let outgoing = events
            .iter()
            .map(|e| self.encode(e))
            .collect::<Result<Vec<_>, _>>()?;
        let mut slot = self.connection.lock().await;
        // Taken out: a failed or cancelled delivery leaves no connection
        // behind, and the next one starts afresh.
        let connection = match slot.take() {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        self.produce(&connection, outgoing).await?;
        *slot = Some(connection);
        Ok(())
    }
}

/// The partition ids of `topic`, or `None` when it does not exist.
async fn topic_partitions(client: &Client, topic: &str) -> Result<Option<Vec<i32>>, ClientError> {
    Ok(client
        .list_topics()
        .await?
        .into_iter()
        .find(|t| t.name == topic && !t.partitions.is_empty())
        .map(|t| t.partitions.into_iter().collect()))
}

/// Splits `items` into runs of at most `max_events` records and
/// `max_bytes` bytes (a larger record goes alone).
fn chunks(items: Vec<Outgoing>, max_events: usize, max_bytes: usize) -> Vec<Vec<Outgoing>> {
    let mut out = Vec::new();
    let mut current: Vec<Outgoing> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = item.record.approximate_size() + RECORD_OVERHEAD;
        if !current.is_empty() && (current.len() >= max_events || bytes + size > max_bytes) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[async_trait]
impl EventSink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, events: &[SeqEvent]) -> Result<(), SinkError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let timeout = self.config.timeout();
        let result = tokio::time::timeout(timeout, self.deliver_batch(events))
            .await
            .unwrap_or(Err(KafkaSinkError::Timeout {
                first_seq: first.seq,
                last_seq: last.seq,
                timeout,
            }));
        result.map_err(SinkError::new)
    }
}

impl ConfigurableSink for KafkaSink {
    const KIND: &'static str = "kafka";
    type Config = KafkaSinkConfig;

    fn from_config(
        name: &str,
        config: KafkaSinkConfig,
        _env: &SinkEnv,
    ) -> Result<Self, SinkConfigError> {
        Self::new(name, config).map_err(|e| SinkConfigError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: i64, value_len: usize) -> Outgoing {
        Outgoing {
            seq,
            record: Record {
                key: None,
                value: Some(vec![0; value_len]),
                headers: BTreeMap::new(),
                timestamp: chrono::Utc::now(),
            },
        }
    }

    fn seqs(chunks: &[Vec<Outgoing>]) -> Vec<Vec<i64>> {
        chunks
            .iter()
            .map(|c| c.iter().map(|o| o.seq).collect())
            .collect()
    }

    #[test]
    fn chunks_respect_both_limits_and_keep_order() {
        let items = (1..=7).map(|s| item(s, 60)).collect();
        assert_eq!(
            seqs(&chunks(items, 3, 10_000)),
            [vec![1, 2, 3], vec![4, 5, 6], vec![7]]
        );
        // 100 bytes a record with the overhead: two fit in 250.
        let items = (1..=5).map(|s| item(s, 60)).collect();
        assert_eq!(
            seqs(&chunks(items, 100, 250)),
            [vec![1, 2], vec![3, 4], vec![5]]
        );
        // A record over the byte limit goes alone.
        let items = vec![item(1, 10), item(2, 5000), item(3, 10)];
        assert_eq!(seqs(&chunks(items, 100, 250)), [vec![1], vec![2], vec![3]]);
        assert!(chunks(Vec::new(), 1, 1).is_empty());
    }
}
