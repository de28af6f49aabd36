//! The NATS sink's configuration (one `[[sinks]]` table with
//! `kind = "nats"`) and its checks.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aurora_core::event::EventType;
use aurora_core::event::encoding::{EventEncoding, PayloadConfigError, PayloadFormat};
use serde::Deserialize;

/// Configuration of a [`NatsSink`](crate::NatsSink).
///
/// ```toml
/// [[sinks]]
/// name = "nats"
/// kind = "nats"
/// servers = ["nats://nats-1:4222", "nats://nats-2:4222"]
/// stream = "ATPROTO_EVENTS"
/// subject_prefix = "atproto.events"   # atproto.events.commit, .sync, .identity, .account
/// payload = "json"                    # or "frames"
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URLs (`nats://host:port`, `tls://host:port`, or `host:port`).
    pub servers: Vec<String>,
    /// The JetStream stream that stores the events.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Events are published to `<subject_prefix>.<type>`: `.commit`,
    /// `.sync`, `.identity` and `.account`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// What a message carries: the JSON form of the event (`json`) or its
    /// firehose frame (`frames`).
    #[serde(default)]
    pub payload: PayloadFormat,
    /// With `payload = "json"`: include record bodies (`ops[].record`).
    #[serde(default)]
    pub include_records: bool,
    /// Create the stream when it does not exist (else delivery fails until
    /// it does). An existing stream is only checked: its subjects must
    /// cover this sink's.
    #[serde(default = "default_true")]
    pub create_stream: bool,
    /// Storage of a stream this sink creates.
    #[serde(default)]
    pub storage: StreamStorage,
    /// Replicas of a stream this sink creates (1 to 5).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Age after which a stream this sink creates drops messages; 0 keeps
    /// them until other limits apply.
    #[serde(default)]
    pub max_age_secs: u64,
    /// De-duplication window of a stream this sink creates: a redelivered
    /// event (same `Nats-Msg-Id`) within it is stored once.
    #[serde(default = "default_duplicate_window_secs")]
    pub duplicate_window_secs: u64,
    /// Most publishes awaiting their acknowledgement at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long connecting, a stream request or one acknowledgement may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Authentication token.
    #[serde(default)]
    pub token: Option<String>,
    /// User name (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// Password (with `user`).
    #[serde(default)]
    pub password: Option<String>,
    /// Refuse servers that do not offer TLS.
    #[serde(default)]
    pub tls_required: bool,
    /// PEM file of extra root certificates for the servers' TLS.
    #[serde(default)]
    pub root_certificates: Option<PathBuf>,
}

impl fmt::Debug for NatsSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsSinkConfig")
            .field("servers", &self.servers)
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("payload", &self.payload)
            .field("include_records", &self.include_records)
            .field("create_stream", &self.create_stream)
            .field("storage", &self.storage)
            .field("replicas", &self.replicas)
            .field("max_age_secs", &self.max_age_secs)
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout_secs", &self.timeout_secs)
            .field("token", &redacted(&self.token))
            .field("user", &self.user)
            .field("password", &redacted(&self.password))
            .field("tls_required", &self.tls_required)
            .field("root_certificates", &self.root_certificates)
            .finish()
    }
}

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamStorage {
    /// On disk.
    #[default]
    File,
    /// In memory (lost when the servers restart).
    Memory,
}

fn default_stream() -> String {
    "ATPROTO_EVENTS".to_owned()
}
fn default_subject_prefix() -> String {
    "atproto.events".to_owned()
}
const fn default_true() -> bool {
    true
}
const fn default_replicas() -> usize {
    1
}
/// JetStream's own default.
const fn default_duplicate_window_secs() -> u64 {
    120
}
const fn default_max_in_flight() -> usize {
    256
}
const fn default_timeout_secs() -> u64 {
    30
}

/// A configuration the sink cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `servers` is empty.
    #[error("servers: at least one server URL is required")]
    NoServers,
    /// A server URL does not parse.
    #[error("servers: {url:?}: {reason}")]
    BadServer {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The stream name is not one JetStream accepts.
    #[error("stream: {0:?} is not a stream name (no spaces, '.', '*' or '>')")]
    BadStream(String),
    /// The subject prefix is not a literal subject.
    #[error(
        "subject_prefix: {0:?} is not a subject (dot-separated tokens without spaces or wildcards)"
    )]
    BadSubjectPrefix(String),
    /// A count or duration that must be positive is not.
    #[error("{0}: must be at least 1")]
    NotPositive(&'static str),
    /// More replicas than JetStream allows.
    #[error("replicas: must be 1 to 5")]
    BadReplicas,
    /// The duplicate window is longer than the stream keeps messages.
    #[error("duplicate_window_secs: must not exceed max_age_secs")]
    WindowOverAge,
    /// Half of a user/password pair, or a token with a user.
    #[error("user and password: give both or neither, and not with token")]
    BadCredentials,
    /// The root certificates file is missing.
    #[error("root_certificates: {0} does not exist")]
    MissingRootCertificates(PathBuf),
    /// `payload` and `include_records` do not go together.
    #[error(transparent)]
    Payload(#[from] PayloadConfigError),
}

impl NatsSinkConfig {
    /// Checks every value; the first problem is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.servers.is_empty() {
            return Err(ConfigError::NoServers);
        }
        for url in &self.servers {
            let bad = |reason: String| ConfigError::BadServer {
                url: url.clone(),
                reason,
            };
            let addr = url
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| bad(e.to_string()))?;
            // WebSocket transports are not built in.
            if !matches!(addr.scheme(), "nats" | "tls") {
                return Err(bad("the scheme must be nats:// or tls://".to_owned()));
            }
        }
        if !is_stream_name(&self.stream) {
            return Err(ConfigError::BadStream(self.stream.clone()));
        }
        if !is_literal_subject(&self.subject_prefix) {
            return Err(ConfigError::BadSubjectPrefix(self.subject_prefix.clone()));
        }
        for (key, positive) in [
            ("max_in_flight", self.max_in_flight > 0),
            ("timeout_secs", self.timeout_secs > 0),
            ("duplicate_window_secs", self.duplicate_window_secs > 0),
        ] {
            if !positive {
                return Err(ConfigError::NotPositive(key));
            }
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::BadReplicas);
        }
        if self.max_age_secs > 0 && self.duplicate_window_secs > self.max_age_secs {
            return Err(ConfigError::WindowOverAge);
        }
        if self.user.is_some() != self.password.is_some()
            || (self.token.is_some() && self.user.is_some())
        {
            return Err(ConfigError::BadCredentials);
        }
        if let Some(path) = &self.root_certificates
            && !path.is_file()
        {
            return Err(ConfigError::MissingRootCertificates(path.clone()));
        }
        self.encoding()?;
        Ok(())
    }

    /// The message encoding `payload` and `include_records` ask for.
    pub fn encoding(&self) -> Result<EventEncoding, PayloadConfigError> {
        self.payload.encoding(self.include_records)
    }

    /// The subject events of `event_type` are published to.
    pub fn subject(&self, event_type: EventType) -> String {
        format!("{}.{}", self.subject_prefix, event_type.as_str())
    }

    /// The subjects of a stream this sink creates: everything under the prefix.
    pub fn stream_subjects(&self) -> Vec<String> {
        vec![format!("{}.>", self.subject_prefix)]
    }

    /// [`timeout_secs`](Self::timeout_secs) as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// JetStream's rule for stream names.
fn is_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

/// Dot-separated, non-empty tokens without whitespace or wildcards.
fn is_literal_subject(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && !token.chars().any(char::is_whitespace)
        })
}

/// Whether the subject `pattern` (with `*` and `>` wildcards) matches the
/// literal `subject`.
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(s)) if literal == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<NatsSinkConfig, String> {
        let text = format!("servers = [\"nats://127.0.0.1:4222\"]\n{extra}");
        let config: NatsSinkConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn defaults_and_subjects() {
        let c = parse("").unwrap();
        assert_eq!(c.stream, "ATPROTO_EVENTS");
        assert_eq!(c.subject(EventType::Commit), "atproto.events.commit");
        assert_eq!(c.subject(EventType::Account), "atproto.events.account");
        assert_eq!(c.stream_subjects(), ["atproto.events.>"]);
        assert_eq!(c.payload, PayloadFormat::Json);
        assert!(c.create_stream);
        assert_eq!(c.storage, StreamStorage::File);
        assert_eq!(
            (c.replicas, c.max_age_secs, c.duplicate_window_secs),
            (1, 0, 120)
        );
        assert_eq!(c.timeout(), Duration::from_secs(30));
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = parse("user = \"pds\"\npassword = \"hunter2\"").unwrap();
        let shown = format!("{c:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains("hunter2"),
            "{shown}"
        );
        let c = parse("token = \"s3cret\"").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn bad_configs_name_the_key() {
        for (extra, wanted) in [
            ("streams = \"x\"", "unknown field `streams`"),
            ("stream = \"a.b\"", "stream: \"a.b\" is not a stream name"),
            ("stream = \"\"", "stream: \"\" is not a stream name"),
            ("subject_prefix = \"a.*\"", "subject_prefix: \"a.*\""),
            ("subject_prefix = \"a..b\"", "subject_prefix: \"a..b\""),
            ("subject_prefix = \"a b\"", "subject_prefix: \"a b\""),
            (
                "payload = \"frames\"\ninclude_records = true",
                "include_records: applies only",
            ),
            ("storage = \"tape\"", "unknown variant `tape`"),
            ("replicas = 7", "replicas: must be 1 to 5"),
            ("max_in_flight = 0", "max_in_flight: must be at least 1"),
            (
                "max_age_secs = 60",
                "duplicate_window_secs: must not exceed max_age_secs",
            ),
            ("user = \"u\"", "user and password"),
            (
                "token = \"t\"\nuser = \"u\"\npassword = \"p\"",
                "user and password",
            ),
            (
                "root_certificates = \"/nonexistent/ca.pem\"",
                "root_certificates: /nonexistent/ca.pem does not exist",
            ),
        ] {
            let err = parse(extra).unwrap_err();
            assert!(err.contains(wanted), "{extra}: {err}");
        }
        let none: NatsSinkConfig = toml::from_str("servers = []").unwrap();
        assert_eq!(none.validate(), Err(ConfigError::NoServers));
        for url in ["http://x:1", "ws://x:1", "nats://x:notaport"] {
            let bad = NatsSinkConfig {
                servers: vec![url.to_owned()],
                ..parse("").unwrap()
            };
            assert!(
                matches!(bad.validate(), Err(ConfigError::BadServer { .. })),
                "{url}: {:?}",
                bad.validate()
            );
        }
        for url in ["127.0.0.1:4222", "tls://nats.example:4222", "nats://a:1"] {
            let good = NatsSinkConfig {
                servers: vec![url.to_owned()],
                ..parse("").unwrap()
            };
            good.validate().unwrap();
        }
    }

    #[test]
    fn wildcard_matching() {
        for (pattern, subject, matches) in [
            ("a.>", "a.commit", true),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            ("a.*", "a.commit", true),
            ("a.*", "a.b.c", false),
            ("a.commit", "a.commit", true),
            ("a.commit", "a.sync", false),
            ("*.commit", "a.commit", true),
            (">", "a.commit", true),
            ("a.b", "a", false),
        ] {
            assert_eq!(
                subject_matches(pattern, subject),
                matches,
                "{pattern} {subject}"
            );
        }
    }
}
