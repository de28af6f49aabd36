//! # aurora-sink-webhook
//!
//! An event sink that POSTs each batch of events to an HTTP endpoint as
//! JSON, signed with HMAC-SHA256 so that the receiver can check it came
//! from this server.
//!
//! ```toml
//! [[sinks]]
//! kind = "webhook"
//! name = "hooks"
//! url = "https://hooks.example.com/aurora"
//! secret = "a long random string shared with the receiver"
//! timeout_secs = 10      # default 10: connect + answer
//! records = false        # include record bodies (ops[].record)
//! ```
//!
//! **The request.** `POST <url>` with `content-type: application/json` and
//! the body `{"sink": "<name>", "events": [<event>, ...]}`, the events in
//! ascending `seq` in the JSON form of `aurora_core::event::json`.
//!
//! **The signature.** Header `x-aurora-signature: t=<unix seconds>,v1=<hex>`,
//! where `<hex>` is the lowercase hex HMAC-SHA256, keyed with `secret`, of
//! the timestamp, a `.`, and the body bytes exactly as received:
//! `HMAC(secret, "<t>.<body>")`. A receiver recomputes it, compares in
//! constant time, and rejects timestamps too far from its clock (replays).
//!
//! **Acknowledgement.** Any `2xx` answer acknowledges the batch. Any other
//! status, a connection failure or no answer within `timeout_secs` fails
//! the delivery: the server's sink runner retries the same batch with
//! backoff, so the receiver sees every event at least once, in order, and
//! should de-duplicate on `seq`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aurora_core::event::{JsonEvent, JsonOptions, SeqEvent};
use aurora_core::sink::{ConfigurableSink, EventSink, SinkConfigError, SinkEnv, SinkError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-aurora-signature";

/// Shortest accepted `secret`.
pub const MIN_SECRET_LEN: usize = 16;

/// Most of a failing answer's body quoted in the error.
const ERROR_BODY_QUOTE: usize = 200;

/// The settings of a `webhook` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where batches are POSTed: an `http` or `https` URL.
    pub url: String,
    /// The HMAC-SHA256 key, shared with the receiver; at least
    /// [`MIN_SECRET_LEN`] characters.
    pub secret: String,
    /// Seconds to connect and get an answer.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Include created and updated records' bodies.
    #[serde(default)]
    pub records: bool,
}

fn default_timeout_secs() -> u64 {
    10
}

/// The body of one POST.
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookBatch {
    /// The sink's name.
    pub sink: String,
    /// The events, ascending by `seq`.
    pub events: Vec<JsonEvent>,
}

/// The `webhook` sink.
pub struct WebhookSink {
    name: String,
    url: url::Url,
    secret: Vec<u8>,
    options: JsonOptions,
    http: reqwest::Client,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// The signature header's value for `body` sent at `timestamp` (Unix
/// seconds): `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// An HTTP client with rustls on the ring provider and the platform's
/// root certificates, limited to `timeout`, following no redirects.
fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut tls = match rustls_platform_verifier::Verifier::new(provider) {
        Ok(verifier) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier)),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no usable system root certificates: webhooks over https will fail; \
                 install the system's CA certificates"
            );
            builder.with_root_certificates(rustls::RootCertStore::empty())
        }
    }
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("aurora-locus/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

impl WebhookSink {
    /// A sink named `name` with `config`.
    pub fn new(name: &str, config: WebhookConfig) -> Result<Self, SinkConfigError> {
        let url = url::Url::parse(&config.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                SinkConfigError::new(format!(
                    "url: {:?} is not an http(s) URL such as https://hooks.example.com/aurora",
                    config.url
                ))
            })?;
        if config.secret.chars().count() < MIN_SECRET_LEN {
            return Err(SinkConfigError::new(format!(
                "secret: must be at least {MIN_SECRET_LEN} characters"
            )));
        }
        if config.timeout_secs == 0 {
            return Err(SinkConfigError::new("timeout_secs: must be greater than 0"));
        }
        let http = http_client(Duration::from_secs(config.timeout_secs))
            .map_err(|e| SinkConfigError::new(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            url,
            secret: config.secret.into_bytes(),
            options: JsonOptions {
                records: config.records,
            },
            http,
        })
    }
}

#[async_trait]
impl EventSink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, events: &[SeqEvent]) -> Result<(), SinkError> {
        let batch = WebhookBatch {
            sink: self.name.clone(),
            events: events
                .iter()
                .map(|e| JsonEvent::from_event(e, self.options))
                .collect::<Result<_, _>>()
                .map_err(SinkError::new)?,
        };
        let body = serde_json::to_vec(&batch).map_err(SinkError::new)?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let response = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&self.secret, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| SinkError::new(format!("POST {}: {}", self.url, error_chain(&e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let quote: String = text.chars().take(ERROR_BODY_QUOTE).collect();
        Err(SinkError::new(format!(
            "POST {} answered {status}: {quote}",
            self.url
        )))
    }
}

/// An error and its causes, `: `-separated (reqwest hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ConfigurableSink for WebhookSink {
    const KIND: &'static str = "webhook";
    type Config = WebhookConfig;

    fn from_config(
        name: &str,
        config: WebhookConfig,
        _env: &SinkEnv,
    ) -> Result<Self, SinkConfigError> {
        Self::new(name, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_documented_scheme() {
        // HMAC-SHA256("key", "1700000000.{}"), computed independently:
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac key
        assert_eq!(
            signature(b"key", 1_700_000_000, b"{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let config = |url: &str, secret: &str, timeout_secs| WebhookConfig {
            url: url.to_owned(),
            secret: secret.to_owned(),
            timeout_secs,
            records: false,
        };
        let ok = "0123456789abcdef";
        for (c, problem) in [
            (config("ftp://x.example", ok, 5), "url"),
            (config("not a url", ok, 5), "url"),
            (config("https://x.example", "short", 5), "secret"),
            (config("https://x.example", ok, 0), "timeout_secs"),
        ] {
            let e = WebhookSink::new("h", c).unwrap_err();
            assert!(e.0.starts_with(problem), "{e}");
        }
        WebhookSink::new("h", config("http://127.0.0.1:9/in", ok, 5)).unwrap();
    }
}
