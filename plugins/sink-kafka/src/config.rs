//! The Kafka sink's configuration (one `[[sinks]]` table with
//! `kind = "kafka"`) and its checks.

use std::fmt;
use std::time::Duration;

use aurora_core::event::encoding::{EventEncoding, PayloadConfigError, PayloadFormat};
use serde::Deserialize;

/// Configuration of a [`KafkaSink`](crate::KafkaSink).
///
/// ```toml
/// [[sinks]]
/// name = "events"
/// kind = "kafka"
/// brokers = ["kafka-1:9092", "kafka-2:9092"]
/// topic = "atproto.events"
/// payload = "json"          # or "frames"
/// include_records = true    # JSON only: record bodies in ops[].record
/// compression = "snappy"    # none, gzip, snappy; lz4, zstd with those crate features
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// The topic events go to.
    pub topic: String,
    /// What a message carries: the JSON form of the event (`json`) or its
    /// firehose frame (`frames`).
    #[serde(default)]
    pub payload: PayloadFormat,
    /// With `payload = "json"`: include record bodies (`ops[].record`).
    #[serde(default)]
    pub include_records: bool,
    /// Compression of produced record batches.
    #[serde(default)]
    pub compression: Compression,
    /// Most records in one produce request (per partition).
    #[serde(default = "default_max_batch_events")]
    pub max_batch_events: usize,
    /// Most record bytes (keys, values and headers, before compression) in
    /// one produce request; a single larger record is sent alone.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Create the topic when it does not exist (else delivery fails until it does).
    #[serde(default = "default_true")]
    pub create_topic: bool,
    /// Partitions of a topic this sink creates. An existing topic keeps its own.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of a topic this sink creates.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i16,
    /// The client id the broker sees.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// How long one delivery (connecting, metadata, every produce and its
    /// acknowledgement) may take before it fails and is retried.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// SASL authentication, when the brokers require it.
    #[serde(default)]
    pub sasl: Option<SaslSettings>,
}

/// Compression codec of produced record batches.
///
/// Every name parses, so that a codec this build lacks is reported as such
/// rather than as an unknown word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (needs the `lz4` feature of `aurora-sink-kafka`).
    Lz4,
    /// Zstandard (needs the `zstd` feature of `aurora-sink-kafka`).
    Zstd,
}

impl Compression {
    /// The codec name as configured.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    pub(crate) fn to_rskafka(self) -> Result<rskafka::client::partition::Compression, ConfigError> {
        use rskafka::client::partition::Compression as C;
        match self {
            Self::None => Ok(C::NoCompression),
            Self::Gzip => Ok(C::Gzip),
            Self::Snappy => Ok(C::Snappy),
            #[cfg(feature = "lz4")]
            Self::Lz4 => Ok(C::Lz4),
            #[cfg(feature = "zstd")]
            Self::Zstd => Ok(C::Zstd),
            #[allow(unreachable_patterns)]
            other => Err(ConfigError::CompressionNotBuilt(other.as_str())),
        }
    }
}

/// SASL credentials (over the plain connection: use them only on a trusted
/// network).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    /// `plain`, `scram-sha-256` or `scram-sha-512`.
    pub mechanism: SaslMechanism,
    /// The user name.
    pub username: String,
    /// The password (never printed).
    pub password: String,
}

impl fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// PLAIN.
    #[serde(rename = "plain")]
    Plain,
    /// SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

impl SaslSettings {
    pub(crate) fn to_rskafka(&self) -> rskafka::client::SaslConfig {
        use rskafka::client::{Credentials, SaslConfig};
        let credentials = Credentials::new(self.username.clone(), self.password.clone());
        match self.mechanism {
            SaslMechanism::Plain => SaslConfig::Plain(credentials),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        }
    }
}

const fn default_true() -> bool {
    true
}
const fn default_max_batch_events() -> usize {
    500
}
/// Below the brokers' default `message.max.bytes` (1 MiB) with room for
/// record overhead.
const fn default_max_batch_bytes() -> usize {
    900_000
}
const fn default_partitions() -> i32 {
    6
}
const fn default_replication_factor() -> i16 {
    1
}
fn default_client_id() -> String {
    "aurora-pds".to_owned()
}
const fn default_timeout_secs() -> u64 {
    30
}

/// A configuration the sink cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `brokers` is empty.
    #[error("brokers: at least one broker (host:port) is required")]
    NoBrokers,
    /// A broker address is not `host:port`.
    #[error("brokers: {0:?} is not host:port")]
    BadBroker(String),
    /// The topic name is not one Kafka accepts.
    #[error(
        "topic: {0:?} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -, not \".\" or \"..\")"
    )]
    BadTopic(String),
    /// A count or size that must be positive is not.
    #[error("{0}: must be at least 1")]
    NotPositive(&'static str),
    /// `payload` and `include_records` do not go together.
    #[error(transparent)]
    Payload(#[from] PayloadConfigError),
    /// A compression codec this build does not include.
    #[error(
        "compression: {0} is not built in (enable the `{0}` feature of aurora-sink-kafka, or use none, gzip or snappy)"
    )]
    CompressionNotBuilt(&'static str),
}

impl KafkaSinkConfig {
    /// Checks every value; the first problem is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.is_empty() {
            return Err(ConfigError::NoBrokers);
        }
        if let Some(bad) = self.brokers.iter().find(|b| !is_host_port(b)) {
            return Err(ConfigError::BadBroker(bad.clone()));
        }
        if !is_topic_name(&self.topic) {
            return Err(ConfigError::BadTopic(self.topic.clone()));
        }
        for (key, positive) in [
            ("max_batch_events", self.max_batch_events > 0),
            ("max_batch_bytes", self.max_batch_bytes > 0),
            ("partitions", self.partitions > 0),
            ("replication_factor", self.replication_factor > 0),
            ("timeout_secs", self.timeout_secs > 0),
        ] {
            if !positive {
                return Err(ConfigError::NotPositive(key));
            }
        }
        self.encoding()?;
        self.compression.to_rskafka()?;
        Ok(())
    }

    /// The message encoding `payload` and `include_records` ask for.
    pub fn encoding(&self) -> Result<EventEncoding, PayloadConfigError> {
        self.payload.encoding(self.include_records)
    }

    /// [`timeout_secs`](Self::timeout_secs) as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(host, port)| {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

/// Kafka's rule: 1 to 249 characters of ASCII letters, digits, `.`, `_`
/// and `-`, other than `.` and `..`.
fn is_topic_name(s: &str) -> bool {
    (1..=249).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<KafkaSinkConfig, String> {
        let text = format!("brokers = [\"127.0.0.1:9092\"]\ntopic = \"events\"\n{extra}");
        let config: KafkaSinkConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.payload, PayloadFormat::Json);
        assert!(!c.include_records);
        assert_eq!(c.compression, Compression::None);
        assert_eq!((c.max_batch_events, c.max_batch_bytes), (500, 900_000));
        assert!(c.create_topic);
        assert_eq!((c.partitions, c.replication_factor), (6, 1));
        assert_eq!(c.timeout(), Duration::from_secs(30));
        assert_eq!(c.sasl, None);
    }

    #[test]
    fn every_setting_parses() {
        let c = parse(
            "payload = \"frames\"\ncompression = \"gzip\"\nmax_batch_events = 10\n\
             max_batch_bytes = 1000\ncreate_topic = false\npartitions = 3\n\
             replication_factor = 3\nclient_id = \"pds-1\"\ntimeout_secs = 5\n\
             [sasl]\nmechanism = \"scram-sha-512\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        assert_eq!(c.payload, PayloadFormat::Frames);
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(
            c.sasl.as_ref().unwrap().mechanism,
            SaslMechanism::ScramSha512
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn bad_configs_name_the_key() {
        for (extra, wanted) in [
            ("topicc = \"x\"", "unknown field `topicc`"),
            ("payload = \"xml\"", "unknown variant `xml`"),
            (
                "include_records = true\npayload = \"frames\"",
                "include_records: applies only",
            ),
            (
                "max_batch_events = 0",
                "max_batch_events: must be at least 1",
            ),
            ("partitions = 0", "partitions: must be at least 1"),
            ("timeout_secs = 0", "timeout_secs: must be at least 1"),
            ("compression = \"brotli\"", "unknown variant `brotli`"),
        ] {
            let err = parse(extra).unwrap_err();
            assert!(err.contains(wanted), "{extra}: {err}");
        }
        let no_brokers: KafkaSinkConfig = toml::from_str("brokers = []\ntopic = \"t\"").unwrap();
        assert_eq!(no_brokers.validate(), Err(ConfigError::NoBrokers));
        for broker in [
            "localhost",
            "host:",
            ":9092",
            "host:99999",
            "host:0",
            "a b:1",
        ] {
            let c = KafkaSinkConfig {
                brokers: vec![broker.to_owned()],
                ..parse("").unwrap()
            };
            assert_eq!(c.validate(), Err(ConfigError::BadBroker(broker.to_owned())));
        }
        for ok in ["kafka:9092", "10.0.0.1:9093", "[::1]:9092"] {
            assert!(is_host_port(ok), "{ok}");
        }
        for topic in ["", ".", "..", "a/b", "a b", &"x".repeat(250)] {
            let c = KafkaSinkConfig {
                topic: topic.to_owned(),
                ..parse("").unwrap()
            };
            assert_eq!(c.validate(), Err(ConfigError::BadTopic(topic.to_owned())));
        }
    }

    #[test]
    fn codecs_not_built_are_reported_as_such() {
        for (codec, built) in [
            ("lz4", cfg!(feature = "lz4")),
            ("zstd", cfg!(feature = "zstd")),
        ] {
            let result = parse(&format!("compression = \"{codec}\""));
            if built {
                result.unwrap();
            } else {
                let err = result.unwrap_err();
                assert!(
                    err.contains(&format!("enable the `{codec}` feature")),
                    "{err}"
                );
            }
        }
    }
}
