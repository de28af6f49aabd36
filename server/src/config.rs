//! Configuration: built-in defaults < `aurora.toml` (or `--config FILE`) <
//! `AURORA_*` environment variables (nested keys with `__`, e.g.
//! `AURORA_DATABASE__MAX_CONNECTIONS`).
//!
//! Loading validates every value; an error names the key as the user wrote
//! it (the environment variable or the file key) and says what is wrong.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aurora_core::syntax::{Did, Handle, Nsid};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::rate_limit::{RateLimitSettings, RateWindow};

/// The configuration file read when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "aurora.toml";

/// Environment variables under the `AURORA_` prefix that are not
/// configuration keys (they steer the test harness).
const NOT_CONFIG: &[&str] = &["REQUIRE_SERVICES", "TEST_POSTGRES_URL", "PG_BINDIR"];

/// A secret value: never printed, logged or serialized in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Environment values that look like numbers arrive as numbers.
        Ok(Self(lenient_string(d)?))
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::S(s) => s,
        Raw::I(i) => i.to_string(),
        Raw::U(u) => u.to_string(),
        Raw::F(f) => f.to_string(),
        Raw::B(b) => b.to_string(),
    })
}

/// A list given either as an array or as one comma-separated string.
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(d)? {
        Raw::One(s) => s.split(',').map(str::to_owned).collect(),
        Raw::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// A length of time in the configuration: a whole number and a unit, `s`,
/// `m`, `h` or `d` (`30s`, `5m`, `72h`, `3d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// Parses `<number><unit>`; the error says what is wrong.
    pub fn parse(spec: &str) -> Result<Duration, &'static str> {
        let unit_at = spec
            .find(|c: char| !c.is_ascii_digit())
            .ok_or("the duration needs a unit: s, m, h or d")?;
        let (count, unit) = spec.split_at(unit_at);
        let count: u64 = count
            .parse()
            .map_err(|_| "the duration must start with a whole number")?;
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 60 * 60,
            "d" => 24 * 60 * 60,
            _ => return Err("the duration's unit must be s, m, h or d"),
        };
        let secs = count
            .checked_mul(unit_secs)
            .ok_or("the duration is too long")?;
        if secs == 0 {
            return Err("the duration must be longer than 0");
        }
        Ok(Duration::from_secs(secs))
    }
}

impl fmt::Display for ConfigDuration {
    /// In the largest unit that divides it (whole seconds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (count, unit) = [(24 * 60 * 60, "d"), (60 * 60, "h"), (60, "m")]
            .into_iter()
            .find(|(unit, _)| secs.is_multiple_of(*unit))
            .map_or((secs, "s"), |(unit, name)| (secs / unit, name));
        write!(f, "{count}{unit}")
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = lenient_string(d)?;
        Self::parse(spec.trim()).map(Self).map_err(|reason| {
            serde::de::Error::custom(format!(
                "{spec:?} is not a duration: {reason} (write a number and a unit, e.g. \"72h\")"
            ))
        })
    }
}

/// Database pool and durability settings (`[database]`, `AURORA_DATABASE__*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Maximum pooled connections. Unset: 16 on Postgres; on SQLite 4
    /// reading connections (plus the one that writes), as more readers
    /// than cores only add threads and memory.
    pub max_connections: Option<u32>,
    /// Seconds to wait for a connection or the SQLite write lock (and the
    /// connect timeout). Short, so that requests fail fast (503) when the
    /// database is down; see `SqlOptions::acquire_timeout`.
    pub acquire_timeout_secs: u64,
    /// SQLite `synchronous`: `full` (default; survives power loss) or `normal`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// SQLite page cache of each connection, in MiB. Small by default: the
    /// kernel's page cache holds the database file anyway, outside the
    /// process, and a cache this size holds the hot index pages.
    pub sqlite_cache_mib: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout_secs: 2,
            sqlite_synchronous: SqliteSynchronous::Full,
            sqlite_cache_mib: aurora_storage_sql::SQLITE_CACHE_KIB / 1024,
        }
    }
}

/// SQLite durability.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// fsync every commit.
    Full,
    /// fsync at checkpoints.
    Normal,
}

/// Per-client rate limits on XRPC methods (`[rate_limits]`,
/// `AURORA_RATE_LIMITS__*`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Whether limits are enforced (`AURORA_RATE_LIMITS__ENABLED`).
    pub enabled: bool,
    /// Count clients by the first `X-Forwarded-For` address instead of the
    /// peer address (`AURORA_RATE_LIMITS__TRUST_PROXY`). Only for a server
    /// behind a proxy that sets the header.
    pub trust_proxy: bool,
    /// NSID -> windows such as `["30/5m", "300/1d"]`
    /// (`AURORA_RATE_LIMITS__METHODS`, an inline table:
    /// `{"com.example.method"=["10/1m"]}`). Entries are merged over the
    /// defaults; an empty list removes a method's limit.
    #[serde(deserialize_with = "method_limits")]
    pub methods: BTreeMap<String, Vec<RateWindow>>,
}

impl Default for RateLimitsConfig {
    /// The reference PDS's limits on sign-in, sign-up and password reset.
    fn default() -> Self {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 60 * MINUTE;
        let per = |limit, secs| RateWindow::new(limit, Duration::from_secs(secs));
        let methods = [
            (
                "com.atproto.server.createSession",
                vec![per(30, 5 * MINUTE), per(300, 24 * HOUR)],
            ),
            (
                "com.atproto.server.createAccount",
                vec![per(100, 5 * MINUTE)],
            ),
            (
                "com.atproto.server.requestPasswordReset",
                vec![per(50, HOUR)],
            ),
            ("com.atproto.server.resetPassword", vec![per(50, HOUR)]),
        ];
        Self {
            enabled: true,
            trust_proxy: false,
            methods: methods
                .into_iter()
                .map(|(nsid, windows)| (nsid.to_owned(), windows))
                .collect(),
        }
    }
}

impl RateLimitsConfig {
    /// What the HTTP layer enforces; `None` when disabled.
    pub fn settings(&self) -> Option<RateLimitSettings> {
        self.enabled.then(|| RateLimitSettings {
            trust_proxy: self.trust_proxy,
            methods: self
                .methods
                .iter()
                .filter(|(_, windows)| !windows.is_empty())
                .map(|(nsid, windows)| (nsid.clone(), windows.clone()))
                .collect(),
        })
    }
}

/// `rate_limits.methods`: valid NSIDs, each with a list of windows (or one
/// comma-separated string of them).
fn method_limits<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<RateWindow>>, D::Error> {
    use serde::de::Error;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
        Other(serde::de::IgnoredAny),
    }
    let raw = BTreeMap::<String, Raw>::deserialize(d)?;
    let mut methods = BTreeMap::new();
    for (nsid, windows) in raw {
        Nsid::parse(nsid.as_str())
            .map_err(|e| D::Error::custom(format!("{nsid:?} is not a valid NSID: {e}")))?;
        let specs = match windows {
            Raw::One(s) => s.split(',').map(str::to_owned).collect(),
            Raw::Many(v) => v,
            Raw::Other(_) => {
                return Err(D::Error::custom(format!(
                    "{nsid}: expected a list of limits such as [\"30/5m\", \"300/1d\"]"
                )));
            }
        };
        let windows = specs
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|e| D::Error::custom(format!("{nsid}: {e}")))
            })
            .collect::<Result<Vec<RateWindow>, _>>()?;
        methods.insert(nsid, windows);
    }
    Ok(methods)
}

/// Limits of service proxying (`[proxy]`, `AURORA_PROXY__*`): how calls
/// forwarded to an AppView, a chat service or any service named in an
/// `atproto-proxy` header are bounded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Seconds the upstream service gets to connect and to answer with its
    /// response headers, and the longest pause while it streams the body
    /// (`AURORA_PROXY__TIMEOUT_SECS`).
    pub timeout_secs: u64,
    /// Largest request body forwarded, in bytes
    /// (`AURORA_PROXY__MAX_REQUEST_BYTES`).
    pub max_request_bytes: u64,
    /// Largest response body relayed, in bytes
    /// (`AURORA_PROXY__MAX_RESPONSE_BYTES`); a longer one is cut off.
    pub max_response_bytes: u64,
}

impl Default for ProxyConfig {
    /// The reference PDS's limits (30 s body timeout, 10 MB responses);
    /// requests get the same 10 MB.
    fn default() -> Self {
        Self {
            timeout_secs: 30,
            max_request_bytes: 10 * 1024 * 1024,
            max_response_bytes: 10 * 1024 * 1024,
        }
    }
}

/// The OAuth authorization server (`[oauth]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    /// Client metadata documents (JSON files) of clients the operator
    /// registers ahead: their `client_id` is served from these instead of
    /// being fetched (first-party apps, clients on private networks).
    pub client_metadata_files: Vec<PathBuf>,
}

/// Where a sink without a stored cursor starts (`[[sinks]] start`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkStart {
    /// At the head of the log: only events sequenced from now on.
    #[default]
    Head,
    /// At the oldest event still in the log (see `firehose_retention`).
    Oldest,
}

/// One `[[sinks]]` entry: an event sink the server runs from its own
/// durable cursor.
///
/// `kind` selects the implementation (a cargo feature of the server, see
/// [`crate::sinks`]); `name` keys its cursor in the database. Every other
/// key that is not one of the runner's settings below belongs to the kind
/// and is checked by it ([`settings`](Self::settings)).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SinkEntry {
    /// Which implementation: `jsonl`, `webhook`, `kafka`, `nats`, ...
    pub kind: String,
    /// A unique name (letters, digits, `.`, `_`, `-`; at most 64); renaming
    /// a sink gives it a new cursor.
    pub name: String,
    /// Where a sink without a cursor starts: `head` (default) or `oldest`.
    #[serde(default)]
    pub start: SinkStart,
    /// Most events per delivered batch.
    #[serde(default = "default_sink_batch_size")]
    pub batch_size: usize,
    /// Longest wait between retries of a failing batch (the wait starts
    /// at half a second and doubles, with jitter, up to this).
    #[serde(default = "default_sink_max_backoff")]
    pub max_backoff: ConfigDuration,
    /// How long a node's lease on the sink lasts without renewal: when
    /// nodes share the database, how soon another takes over the sink of
    /// one that died (see [`crate::sinks::runner`]).
    #[serde(default = "default_sink_lease_ttl")]
    pub lease_ttl: ConfigDuration,
    /// The kind's own keys.
    #[serde(flatten)]
    pub settings: BTreeMap<String, figment::value::Value>,
}

/// Most events per sink batch allowed (`batch_size`).
pub const MAX_SINK_BATCH_SIZE: usize = 10_000;

fn default_sink_batch_size() -> usize {
    500
}

fn default_sink_max_backoff() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}

fn default_sink_lease_ttl() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}

impl SinkEntry {
    /// An entry of `kind` named `name` with the runner's defaults and no
    /// settings of its own.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            start: SinkStart::default(),
            batch_size: default_sink_batch_size(),
            max_backoff: default_sink_max_backoff(),
            lease_ttl: default_sink_lease_ttl(),
            settings: BTreeMap::new(),
        }
    }

    /// How errors name this entry: `sinks "audit" (kind jsonl)`.
    pub fn key(&self) -> String {
        format!("sinks {:?} (kind {})", self.name, self.kind)
    }

    /// Checks each entry, and that no two share a name.
    fn validate_all(sinks: &[Self]) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for sink in sinks {
            sink.validate()?;
            if !names.insert(sink.name.as_str()) {
                return Err(ConfigError {
                    key: sink.key(),
                    message: "another sink has the same name".to_owned(),
                });
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let error = |message: String| ConfigError {
            key: self.key(),
            message,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(error(
                "name must be 1 to 64 letters, digits, '.', '_' or '-'".to_owned(),
            ));
        }
        if !(1..=MAX_SINK_BATCH_SIZE).contains(&self.batch_size) {
            return Err(error(format!(
                "batch_size must be between 1 and {MAX_SINK_BATCH_SIZE}"
            )));
        }
        if self.lease_ttl.0 < Duration::from_secs(1) {
            return Err(error("lease_ttl must be at least 1s".to_owned()));
        }
        Ok(())
    }

    /// This entry as `aurora config` shows it: settings whose name says
    /// they are secret (`secret`, `password`, `token`, `key`, `credentials`)
    /// and passwords in URLs are redacted.
    fn redacted(&self) -> Self {
        use figment::value::Value;
        fn redact(name: &str, value: &Value) -> Value {
            let secret = ["secret", "password", "token", "key", "credential"]
                .iter()
                .any(|word| name.to_ascii_lowercase().contains(word));
            match value {
                Value::String(tag, _) if secret => Value::String(*tag, "<redacted>".to_owned()),
                Value::String(tag, s) => Value::String(*tag, redact_url_password(s)),
                Value::Dict(tag, dict) => Value::Dict(
                    *tag,
                    dict.iter()
                        .map(|(k, v)| (k.clone(), redact(k, v)))
                        .collect(),
                ),
                Value::Array(tag, items) => {
                    Value::Array(*tag, items.iter().map(|v| redact(name, v)).collect())
                }
                other if secret => Value::String(other.tag(), "<redacted>".to_owned()),
                other => other.clone(),
            }
        }
        Self {
            settings: self
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), redact(k, v)))
                .collect(),
            ..self.clone()
        }
    }
}

/// The DID of Bluesky's AppView, the default `appview_did`.
pub const DEFAULT_APPVIEW_DID: &str = "did:web:api.bsky.app";
/// The URL of Bluesky's AppView, the default `appview_url`.
pub const DEFAULT_APPVIEW_URL: &str = "https://api.bsky.app";
/// The DID of Bluesky's chat service, the default `chat_did`.
pub const DEFAULT_CHAT_DID: &str = "did:web:api.bsky.chat";

/// A service that calls without an `atproto-proxy` header go to (see
/// [`Config::appview`] and [`Config::chat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultService {
    /// The service's DID: the audience of the service tokens sent to it.
    pub did: Did,
    /// Its endpoint; `None` to resolve it from the DID document.
    pub url: Option<url::Url>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

/// The effective configuration of an `aurora` process.
///
/// Unknown keys are errors, so a misspelt setting is reported instead of
/// silently ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`AURORA_LISTEN`).
    pub listen: SocketAddr,
    /// Public hostname of this PDS (`AURORA_HOSTNAME`).
    pub hostname: String,
    /// The service DID (`AURORA_SERVICE_DID`); default `did:web:<hostname>`.
    pub service_did: Option<String>,
    /// Public URL of this PDS (`AURORA_PUBLIC_URL`), written into account DID
    /// documents as their `atproto_pds` endpoint; default `https://<hostname>`,
    /// or `http://localhost:<port>` when the hostname is `localhost`.
    pub public_url: Option<String>,
    /// Folder for the SQLite database, blobs and generated secrets (`AURORA_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Database URL (`AURORA_DATABASE_URL`): `sqlite://...`, `postgres://...`
    /// or `memory:` (nothing persists). Default: SQLite in the data folder.
    pub database_url: Option<String>,
    /// Pool and durability settings.
    pub database: DatabaseConfig,
    /// Folder for blobs (`AURORA_BLOB_DIR`); default `<data_dir>/blobs`.
    pub blob_dir: Option<PathBuf>,
    /// Largest accepted request body and blob, in bytes (`AURORA_BLOB_MAX_BYTES`).
    pub blob_max_bytes: u64,
    /// Seconds an uploaded blob is kept while no record references it
    /// (`AURORA_BLOB_TEMP_GRACE_SECS`).
    pub blob_temp_grace_secs: u64,
    /// Seconds a request may take before it is answered with 504 (`AURORA_REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// Seconds in-flight requests get to finish on shutdown (`AURORA_SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace_secs: u64,
    /// Password of the `admin` user for admin endpoints (`AURORA_ADMIN_PASSWORD`).
    pub admin_password: Option<Secret>,
    /// Secret for session JWTs (`AURORA_JWT_SECRET`); generated into the data folder when unset.
    pub jwt_secret: Option<Secret>,
    /// PLC rotation key, secp256k1 private key in hex (`AURORA_PLC_ROTATION_KEY`); generated when unset.
    pub plc_rotation_key: Option<Secret>,
    /// The PLC directory (`AURORA_PLC_URL`).
    pub plc_url: String,
    /// Handle domains users may register under (`AURORA_USER_DOMAINS`, comma list).
    #[serde(deserialize_with = "comma_list")]
    pub user_domains: Vec<String>,
    /// Relays asked to crawl this PDS (`com.atproto.sync.requestCrawl`) at
    /// start-up and after writes (`AURORA_CRAWLERS`, comma list of base
    /// URLs such as `https://bsky.network`).
    #[serde(deserialize_with = "comma_list")]
    pub crawlers: Vec<String>,
    /// Whether sign-up needs an invite code (`AURORA_INVITE_REQUIRED`).
    pub invite_required: bool,
    /// Privacy policy link for `describeServer` (`AURORA_PRIVACY_POLICY_URL`).
    pub privacy_policy_url: Option<String>,
    /// Terms of service link (`AURORA_TERMS_OF_SERVICE_URL`).
    pub terms_of_service_url: Option<String>,
    /// Operator contact email (`AURORA_CONTACT_EMAIL`).
    pub contact_email: Option<String>,
    /// Log filter, `tracing` syntax (`AURORA_LOG`; `RUST_LOG` wins when
    /// set, and `--log-level` over both).
    pub log: String,
    /// Log lines as `text` or `json`, one object per line (`AURORA_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Serve `/metrics` without authentication (`AURORA_METRICS_PUBLIC`);
    /// by default it needs the admin's basic auth, like the admin API.
    pub metrics_public: bool,
    /// Per-client rate limits.
    pub rate_limits: RateLimitsConfig,
    /// How long events stay in the log, replayable by `subscribeRepos`
    /// cursors (`AURORA_FIREHOSE_RETENTION`, e.g. `72h`).
    pub firehose_retention: ConfigDuration,
    /// Most frames waiting for one firehose subscriber before it is
    /// disconnected as too slow (`AURORA_FIREHOSE_OUTBOX_FRAMES`).
    pub firehose_outbox_frames: usize,
    /// Seconds between pings on an idle firehose connection (`AURORA_FIREHOSE_PING_SECS`).
    pub firehose_ping_secs: u64,
    /// MiB of repo blocks (MST nodes, commits) kept in memory for writes
    /// (`AURORA_BLOCK_CACHE_MIB`); 0 turns the cache off.
    pub block_cache_mib: u64,
    /// The AppView's DID (`AURORA_APPVIEW_DID`): `app.bsky.*` calls without
    /// an `atproto-proxy` header go to its `#bsky_appview` service. Default
    /// Bluesky's, `did:web:api.bsky.app`; empty turns default proxying off.
    pub appview_did: Option<String>,
    /// The AppView's URL (`AURORA_APPVIEW_URL`); default `https://api.bsky.app`
    /// for the default DID, otherwise resolved from the DID document. Needs
    /// `appview_did`.
    pub appview_url: Option<String>,
    /// The chat service's DID (`AURORA_CHAT_DID`): `chat.bsky.*` calls
    /// without an `atproto-proxy` header go to its `#bsky_chat` service.
    /// Default Bluesky's, `did:web:api.bsky.chat`; empty turns default
    /// proxying off.
    pub chat_did: Option<String>,
    /// The chat service's URL (`AURORA_CHAT_URL`); default: resolved from
    /// the DID document. Needs `chat_did`.
    pub chat_url: Option<String>,
    /// Limits of service proxying.
    pub proxy: ProxyConfig,
    /// The OAuth authorization server.
    pub oauth: OAuthConfig,
    /// Event sinks (`[[sinks]]`), each run from its own durable cursor.
    pub sinks: Vec<SinkEntry>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2583)),
            hostname: "localhost".to_owned(),
            service_did: None,
            public_url: None,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database: DatabaseConfig::default(),
            blob_dir: None,
            blob_max_bytes: 100 * 1024 * 1024,
            blob_temp_grace_secs: 3600,
            request_timeout_secs: 120,
            shutdown_grace_secs: 30,
            admin_password: None,
            jwt_secret: None,
            plc_rotation_key: None,
            plc_url: "https://plc.directory".to_owned(),
            user_domains: vec![".test".to_owned()],
            crawlers: Vec::new(),
            invite_required: false,
            privacy_policy_url: None,
            terms_of_service_url: None,
            contact_email: None,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            metrics_public: false,
            rate_limits: RateLimitsConfig::default(),
            firehose_retention: ConfigDuration(Duration::from_secs(72 * 60 * 60)),
            firehose_outbox_frames: 500,
            firehose_ping_secs: 30,
            block_cache_mib: crate::repo::block_cache::DEFAULT_CAPACITY_BYTES / (1024 * 1024),
            appview_did: None,
            appview_url: None,
            chat_did: None,
            chat_url: None,
            proxy: ProxyConfig::default(),
            oauth: OAuthConfig::default(),
            sinks: Vec::new(),
        }
    }
}

/// A configuration problem: which key, where it came from, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key as the user wrote it, e.g. `AURORA_LISTEN` or `listen (in aurora.toml)`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// The environment variable of a config key path (`database.max_connections`
/// -> `AURORA_DATABASE__MAX_CONNECTIONS`).
pub fn env_name(path: &str) -> String {
    format!("AURORA_{}", path.to_ascii_uppercase().replace('.', "__"))
}

impl ConfigError {
    fn for_key(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: env_name(key),
            message: message.into(),
        }
    }

    fn from_figment(e: &figment::Error) -> Self {
        let path = e.path.join(".");
        let source = e
            .metadata
            .as_ref()
            .map(|m| m.name.to_string())
            .unwrap_or_default();
        let key = if path.is_empty() {
            source.clone()
        } else if source.contains("environment") {
            env_name(&path)
        } else if let Some(file) = e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
            format!("{path} (in {file})")
        } else {
            path.clone()
        };
        Self {
            key: if key.is_empty() {
                "configuration".to_owned()
            } else {
                key
            },
            message: e.kind.to_string(),
        }
    }
}

impl Config {
    /// Loads defaults < `file` (or `aurora.toml` when present) < `AURORA_*`
    /// environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError {
                        key: "--config".to_owned(),
                        message: format!("file {} does not exist", path.display()),
                    });
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        figment = figment.merge(
            Env::prefixed("AURORA_")
                .filter(|key| {
                    !NOT_CONFIG
                        .iter()
                        .any(|k| key.as_str().eq_ignore_ascii_case(k))
                })
                .split("__"),
        );
        let mut config: Self = figment
            .extract()
            .map_err(|e| ConfigError::from_figment(&e))?;
        config.normalize_and_validate()?;
        Ok(config)
    }

    fn normalize_and_validate(&mut self) -> Result<(), ConfigError> {
        if Handle::parse(self.hostname.clone()).is_err() && self.hostname != "localhost" {
            return Err(ConfigError::for_key(
                "hostname",
                format!("{:?} is not a valid hostname", self.hostname),
            ));
        }
        if let Some(did) = &self.service_did {
            Did::parse(did.clone())
                .map_err(|e| ConfigError::for_key("service_did", e.to_string()))?;
        }
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| ConfigError::for_key("public_url", e.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https")
                || parsed.host_str().is_none()
                || parsed.path() != "/"
                || parsed.query().is_some()
            {
                return Err(ConfigError::for_key(
                    "public_url",
                    "must be an http(s) origin such as https://pds.example.com",
                ));
            }
        }
        if let Some(url) = &self.database_url {
            let scheme = url.split_once(':').map_or("", |(s, _)| s);
            if !matches!(scheme, "sqlite" | "postgres" | "postgresql" | "memory") {
                return Err(ConfigError::for_key(
                    "database_url",
                    format!(
                        "unknown database scheme {scheme:?} (use sqlite://, postgres:// or memory:)"
                    ),
                ));
            }
        }
        url::Url::parse(&self.plc_url)
            .map_err(|e| ConfigError::for_key("plc_url", format!("{e}")))?;
        if self.user_domains.is_empty() {
            return Err(ConfigError::for_key(
                "user_domains",
                "at least one domain is needed",
            ));
        }
        for domain in &mut self.user_domains {
            if !domain.starts_with('.') {
                domain.insert(0, '.');
            }
            let bare = domain.trim_start_matches('.');
            // A single label (".test") is allowed; otherwise it must be a hostname.
            let ok = bare.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
            });
            if !ok {
                return Err(ConfigError::for_key(
                    "user_domains",
                    format!("{domain:?} is not a valid domain"),
                ));
            }
            *domain = domain.to_ascii_lowercase();
        }
        for crawler in &mut self.crawlers {
            let ok = url::Url::parse(crawler).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.query().is_none()
            });
            if !ok {
                return Err(ConfigError::for_key(
                    "crawlers",
                    format!("{crawler:?} is not an http(s) URL such as https://bsky.network"),
                ));
            }
            *crawler = crawler.trim_end_matches('/').to_owned();
        }
        self.appview()?;
        self.chat()?;
        SinkEntry::validate_all(&self.sinks)?;
        for (key, value) in [
            ("blob_max_bytes", self.blob_max_bytes),
            ("request_timeout_secs", self.request_timeout_secs),
            (
                "database.max_connections",
                self.database.max_connections.map_or(1, u64::from),
            ),
            ("proxy.timeout_secs", self.proxy.timeout_secs),
            ("proxy.max_request_bytes", self.proxy.max_request_bytes),
            ("proxy.max_response_bytes", self.proxy.max_response_bytes),
            (
                "firehose_outbox_frames",
                u64::try_from(self.firehose_outbox_frames).unwrap_or(u64::MAX),
            ),
            ("firehose_ping_secs", self.firehose_ping_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::for_key(key, "must be greater than 0"));
            }
        }
        Ok(())
    }

    /// Where `app.bsky.*` calls without an `atproto-proxy` header go:
    /// `None` when default proxying is off (`appview_did` empty).
    pub fn appview(&self) -> Result<Option<DefaultService>, ConfigError> {
        default_service(
            ("appview_did", self.appview_did.as_deref()),
            ("appview_url", self.appview_url.as_deref()),
            DEFAULT_APPVIEW_DID,
            Some(DEFAULT_APPVIEW_URL),
        )
    }

    /// Where `chat.bsky.*` calls without an `atproto-proxy` header go:
    /// `None` when default proxying is off (`chat_did` empty).
    pub fn chat(&self) -> Result<Option<DefaultService>, ConfigError> {
        default_service(
            ("chat_did", self.chat_did.as_deref()),
            ("chat_url", self.chat_url.as_deref()),
            DEFAULT_CHAT_DID,
            None,
        )
    }

    /// Whether this is a development setup (hostname `localhost`, or a
    /// `.test` user domain): then `.test` handles and `did:web:localhost`
    /// resolve, and proxied services may be plain `http` on loopback.
    pub fn allows_test_hosts(&self) -> bool {
        self.hostname == "localhost"
            || self
                .user_domains
                .iter()
                .any(|d| d.to_ascii_lowercase().ends_with(".test"))
    }

    /// The database URL in effect: the configured one, or SQLite in the data folder.
    pub fn effective_database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}", self.data_dir.join("aurora.sqlite").display())
        })
    }

    /// The blob folder in effect.
    pub fn effective_blob_dir(&self) -> PathBuf {
        self.blob_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// The service DID in effect.
    pub fn effective_service_did(&self) -> String {
        self.service_did
            .clone()
            .unwrap_or_else(|| format!("did:web:{}", self.hostname))
    }

    /// The effective public URL (see [`Config::public_url`]), without a
    /// trailing slash.
    pub fn effective_public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.hostname == "localhost" => {
                format!("http://localhost:{}", self.listen.port())
            }
            None => format!("https://{}", self.hostname),
        }
    }

    /// The effective configuration as TOML, with every default resolved and
    /// every secret (including a password in the database URL) redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(redact_url_password(&self.effective_database_url()));
        shown.blob_dir = Some(self.effective_blob_dir());
        shown.service_did = Some(self.effective_service_did());
        shown.public_url = Some(self.effective_public_url());
        shown.sinks = self.sinks.iter().map(SinkEntry::redacted).collect();
        for (service, did, url) in [
            (
                self.appview(),
                &mut shown.appview_did,
                &mut shown.appview_url,
            ),
            (self.chat(), &mut shown.chat_did, &mut shown.chat_url),
        ] {
            match service {
                Ok(Some(s)) => {
                    *did = Some(s.did.to_string());
                    *url = s.url.map(|u| u.to_string());
                }
                Ok(None) => *did = Some(String::new()),
                Err(_) => {}
            }
        }
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// A default proxy target from its `did` and `url` settings: both unset is
/// `default_did` (at `default_url`), an empty DID is none, a URL needs an
/// explicit DID (so that tokens are never addressed to one service and sent
/// to another).
fn default_service(
    (did_key, did): (&str, Option<&str>),
    (url_key, url): (&str, Option<&str>),
    default_did: &str,
    default_url: Option<&str>,
) -> Result<Option<DefaultService>, ConfigError> {
    let did = did.map(str::trim);
    let url = url.map(str::trim).filter(|u| !u.is_empty());
    let (did, url) = match (did, url) {
        (None, None) => (default_did, default_url),
        (Some(""), None) => return Ok(None),
        (None | Some(""), Some(_)) => {
            return Err(ConfigError::for_key(
                did_key,
                format!("must be set when {} is", env_name(url_key)),
            ));
        }
        (Some(did), url) => (did, url),
    };
    let did = Did::parse(did).map_err(|e| ConfigError::for_key(did_key, e.to_string()))?;
    let url = url
        .map(|raw| {
            crate::identity::did_document::server_url(raw).ok_or_else(|| {
                ConfigError::for_key(
                    url_key,
                    "must be an http(s) origin such as https://api.example.com",
                )
            })
        })
        .transpose()?;
    Ok(Some(DefaultService { did, url }))
}

fn redact_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_loads() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/aurora.toml"
        ));
        let config = Config::load(Some(path)).unwrap();
        assert_eq!(config.hostname, "pds.example.com");
        assert_eq!(config.effective_public_url(), "https://pds.example.com");
    }

    #[test]
    fn the_public_url_defaults_from_the_hostname() {
        let mut config = Config {
            listen: "127.0.0.1:2583".parse().unwrap(),
            ..Config::default()
        };
        assert_eq!(config.effective_public_url(), "http://localhost:2583");
        config.hostname = "pds.example.com".to_owned();
        assert_eq!(config.effective_public_url(), "https://pds.example.com");
        config.public_url = Some("https://pds.example.com/".to_owned());
        assert_eq!(config.effective_public_url(), "https://pds.example.com");
        config.public_url = Some("ftp://pds.example.com".to_owned());
        assert!(config.normalize_and_validate().is_err());
        config.public_url = Some("https://pds.example.com/path".to_owned());
        assert!(config.normalize_and_validate().is_err());
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("listen"), "AURORA_LISTEN");
        assert_eq!(
            env_name("database.max_connections"),
            "AURORA_DATABASE__MAX_CONNECTIONS"
        );
    }

    #[test]
    fn redacts() {
        let mut c = Config {
            admin_password: Some(Secret::new("hunter2")),
            database_url: Some("postgres://aurora:pa55word@db:5432/aurora".into()),
            ..Config::default()
        };
        c.normalize_and_validate().unwrap();
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("pa55word"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
        assert!(format!("{c:?}").contains("<redacted>") && !format!("{c:?}").contains("hunter2"));
    }

    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::from_figment(&e))
    }

    #[test]
    fn rate_limits_default_to_the_reference_pds_and_merge_per_method() {
        let c = from_toml("").unwrap();
        let settings = c.rate_limits.settings().unwrap();
        assert!(!settings.trust_proxy);
        let shown: BTreeMap<&str, Vec<String>> = settings
            .methods
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(ToString::to_string).collect()))
            .collect();
        assert_eq!(
            shown,
            BTreeMap::from([
                (
                    "com.atproto.server.createAccount",
                    vec!["100/5m".to_owned()]
                ),
                (
                    "com.atproto.server.createSession",
                    vec!["30/5m".to_owned(), "300/1d".to_owned()]
                ),
                (
                    "com.atproto.server.requestPasswordReset",
                    vec!["50/1h".to_owned()]
                ),
                ("com.atproto.server.resetPassword", vec!["50/1h".to_owned()]),
            ])
        );

        // A file overrides one method, adds one, removes one; the rest stay.
        let c = from_toml(
            r#"
            [rate_limits]
            trust_proxy = true
            [rate_limits.methods]
            "com.atproto.server.createSession" = ["5/1m"]
            "com.example.expensive" = "2/10s, 100/1d"
            "com.atproto.server.createAccount" = []
            "#,
        )
        .unwrap();
        let settings = c.rate_limits.settings().unwrap();
        assert!(settings.trust_proxy);
        let one = |nsid: &str| settings.methods.get(nsid).cloned();
        assert_eq!(
            one("com.atproto.server.createSession"),
            Some(vec![RateWindow::new(5, Duration::from_secs(60))])
        );
        assert_eq!(
            one("com.example.expensive"),
            Some(vec![
                RateWindow::new(2, Duration::from_secs(10)),
                RateWindow::new(100, Duration::from_secs(86_400)),
            ])
        );
        assert_eq!(one("com.atproto.server.createAccount"), None);
        assert!(one("com.atproto.server.resetPassword").is_some());

        // The effective configuration prints back in the same form.
        let again: toml::Value = toml::from_str(&c.to_redacted_toml()).unwrap();
        assert_eq!(
            again["rate_limits"]["methods"]["com.example.expensive"],
            toml::Value::try_from(["2/10s", "100/1d"]).unwrap()
        );

        let c = from_toml("[rate_limits]\nenabled = false\n").unwrap();
        assert_eq!(c.rate_limits.settings(), None);
    }

    #[test]
    fn bad_rate_limits_name_the_key_and_the_problem() {
        for (text, problem) in [
            (r#""com.example.x" = ["30/5w"]"#, "unit"),
            (r#""com.example.x" = ["0/5m"]"#, "at least 1"),
            (r#""com.example.x" = [30]"#, "list of limits"),
            (r#""not an nsid" = ["1/1m"]"#, "not a valid NSID"),
        ] {
            let e = from_toml(&format!("[rate_limits.methods]\n{text}\n")).unwrap_err();
            assert!(e.key.starts_with("rate_limits.methods"), "{text}: {e}");
            assert!(e.message.contains(problem), "{text}: {e}");
        }
        let e = from_toml("[rate_limits]\nlimit = 3\n").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn firehose_settings_default_parse_and_name_their_key() {
        let c = from_toml("").unwrap();
        assert_eq!(
            c.firehose_retention,
            ConfigDuration(Duration::from_secs(72 * 3600))
        );
        assert_eq!((c.firehose_outbox_frames, c.firehose_ping_secs), (500, 30));
        assert!(c.to_redacted_toml().contains("firehose_retention = \"3d\""));
        assert_eq!(env_name("firehose_retention"), "AURORA_FIREHOSE_RETENTION");
        let c = from_toml("firehose_retention = \"90m\"\nfirehose_outbox_frames = 8").unwrap();
        assert_eq!(c.firehose_retention.0, Duration::from_secs(5400));
        assert_eq!(c.firehose_outbox_frames, 8);
        for (text, problem) in [
            ("\"72x\"", "unit"),
            ("\"h\"", "whole number"),
            ("\"0h\"", "longer than 0"),
            ("\"72\"", "needs a unit"),
        ] {
            let e = from_toml(&format!("firehose_retention = {text}")).unwrap_err();
            assert!(e.key.starts_with("firehose_retention"), "{text}: {e}");
            assert!(e.message.contains(problem), "{text}: {e}");
        }
        for key in ["firehose_outbox_frames", "firehose_ping_secs"] {
            let mut c = from_toml(&format!("{key} = 0")).unwrap();
            let e = c.normalize_and_validate().unwrap_err();
            assert_eq!(e.key, env_name(key));
        }
    }

    #[test]
    fn default_services_are_bluesky_s_and_need_a_did_with_a_url() {
        let c = from_toml("").unwrap();
        let appview = c.appview().unwrap().unwrap();
        assert_eq!(appview.did.as_str(), DEFAULT_APPVIEW_DID);
        assert_eq!(appview.url.unwrap().as_str(), "https://api.bsky.app/");
        let chat = c.chat().unwrap().unwrap();
        assert_eq!(chat.did.as_str(), DEFAULT_CHAT_DID);
        assert_eq!(chat.url, None, "resolved from the DID document");

        // Shown with their effective values, and loaded back the same.
        let again = from_toml(&c.to_redacted_toml()).unwrap();
        assert_eq!(again.appview().unwrap(), c.appview().unwrap());
        assert_eq!(again.chat().unwrap(), c.chat().unwrap());

        let c = from_toml(
            "appview_did = \"did:web:appview.example.com\"\n\
             appview_url = \"http://127.0.0.1:3000\"\n\
             chat_did = \"\"\n",
        )
        .unwrap();
        let appview = c.appview().unwrap().unwrap();
        assert_eq!(appview.did.as_str(), "did:web:appview.example.com");
        assert_eq!(appview.url.unwrap().as_str(), "http://127.0.0.1:3000/");
        assert_eq!(c.chat().unwrap(), None);
        let again = from_toml(&c.to_redacted_toml()).unwrap();
        assert_eq!(again.chat().unwrap(), None);

        // A custom DID alone: its endpoint is resolved.
        let c = from_toml("appview_did = \"did:web:appview.example.com\"\n").unwrap();
        assert_eq!(c.appview().unwrap().unwrap().url, None);

        for (text, key) in [
            (
                "appview_url = \"https://appview.example.com\"",
                "AURORA_APPVIEW_DID",
            ),
            ("chat_url = \"https://chat.example.com\"", "AURORA_CHAT_DID"),
            ("appview_did = \"not a did\"", "AURORA_APPVIEW_DID"),
            (
                "appview_did = \"did:web:a.example.com\"\nappview_url = \"https://a.example.com/xrpc\"",
                "AURORA_APPVIEW_URL",
            ),
            (
                "chat_did = \"did:web:a.example.com\"\nchat_url = \"ftp://a.example.com\"",
                "AURORA_CHAT_URL",
            ),
            ("[proxy]\ntimeout_secs = 0", "AURORA_PROXY__TIMEOUT_SECS"),
            (
                "[proxy]\nmax_request_bytes = 0",
                "AURORA_PROXY__MAX_REQUEST_BYTES",
            ),
        ] {
            let mut c = from_toml(text).unwrap();
            let e = c.normalize_and_validate().unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn sinks_are_checked_and_their_secrets_redacted() {
        let mut c = from_toml(
            r#"
            [[sinks]]
            kind = "webhook"
            name = "hook"
            url = "https://user:pa55word@hooks.example.com/in"
            secret = "hunter2-hunter2"
            start = "oldest"
            [sinks.headers]
            authorization_token = "t0ken"
            x-team = "blue"
            "#,
        )
        .unwrap();
        c.normalize_and_validate().unwrap();
        let sink = &c.sinks[0];
        assert_eq!(
            (sink.kind.as_str(), sink.name.as_str()),
            ("webhook", "hook")
        );
        assert_eq!(sink.start, SinkStart::Oldest);
        assert_eq!(sink.max_backoff.0, Duration::from_secs(60));
        assert_eq!(sink.settings.len(), 3, "{:?}", sink.settings);
        let shown = c.to_redacted_toml();
        for secret in ["pa55word", "hunter2", "t0ken"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("blue"), "{shown}");
        let again = from_toml(&shown).unwrap();
        assert_eq!(again.sinks[0].settings.len(), 3);
        assert_eq!(again.sinks[0].start, SinkStart::Oldest);

        for (text, problem) in [
            ("kind = \"jsonl\"\nname = \"a b\"", "name must be"),
            ("kind = \"jsonl\"\nname = \"\"", "name must be"),
            (
                "kind = \"jsonl\"\nname = \"a\"\nbatch_size = 0",
                "batch_size",
            ),
            (
                "kind = \"jsonl\"\nname = \"a\"\n[[sinks]]\nkind = \"webhook\"\nname = \"a\"",
                "same name",
            ),
        ] {
            let mut c = from_toml(&format!("[[sinks]]\n{text}\n")).unwrap();
            let e = c.normalize_and_validate().unwrap_err();
            assert!(e.key.starts_with("sinks \""), "{text}: {e}");
            assert!(e.message.contains(problem), "{text}: {e}");
        }
        for (text, problem) in [
            ("name = \"a\"", "missing field `kind`"),
            (
                "kind = \"jsonl\"\nname = \"a\"\nstart = \"tail\"",
                "unknown variant",
            ),
            (
                "kind = \"jsonl\"\nname = \"a\"\nmax_backoff = \"5\"",
                "unit",
            ),
        ] {
            let e = from_toml(&format!("[[sinks]]\n{text}\n")).unwrap_err();
            assert!(e.message.contains(problem), "{text}: {e}");
        }
    }

    #[test]
    fn crawlers_are_http_urls() {
        let mut c = Config {
            crawlers: vec![
                "https://bsky.network/".into(),
                "http://127.0.0.1:9000".into(),
            ],
            ..Config::default()
        };
        c.normalize_and_validate().unwrap();
        assert_eq!(
            c.crawlers,
            ["https://bsky.network", "http://127.0.0.1:9000"]
        );
        for bad in [
            "bsky.network",
            "ftp://relay.example",
            "https://relay.example/?x=1",
        ] {
            let mut c = Config {
                crawlers: vec![bad.into()],
                ..Config::default()
            };
            let e = c.normalize_and_validate().unwrap_err();
            assert_eq!(e.key, "AURORA_CRAWLERS", "{bad}");
        }
    }

    #[test]
    fn user_domains_get_a_leading_dot() {
        let mut c = Config {
            user_domains: vec!["example.com".into(), ".Test".into()],
            ..Config::default()
        };
        c.normalize_and_validate().unwrap();
        assert_eq!(c.user_domains, [".example.com", ".test"]);
    }
}
