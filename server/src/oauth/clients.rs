//! Client metadata: loopback development clients from their `client_id`,
//! the others fetched from their `client_id` URL (and a confidential
//! client's `jwks_uri`), with the limits a server fetching URLs chosen by
//! strangers needs: public addresses only, no redirects, a time limit and
//! a size limit. Validated documents are cached for ten minutes.

use std::sync::Arc;
use std::time::Duration;

use aurora_oauth::client::{ClientId, ClientKeys, ClientMetadata};
use http::StatusCode;
use url::Url;

use super::{OAuthError, OAuthSetupError};

/// How client metadata is fetched.
#[derive(Debug, Clone)]
pub struct ClientFetchSettings {
    /// Time limit of one fetch.
    pub timeout: Duration,
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// How long a validated document is reused.
    pub cache_ttl: Duration,
    /// Whether fetches may reach loopback and private addresses (tests and
    /// local development only).
    pub allow_private_addresses: bool,
    /// Metadata documents of clients registered ahead, served instead of
    /// fetched (see `[oauth] client_metadata_files`).
    pub registered: Vec<Vec<u8>>,
}

impl Default for ClientFetchSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_bytes: 512 * 1024,
            cache_ttl: Duration::from_secs(600),
            allow_private_addresses: false,
            registered: Vec::new(),
        }
    }
}

pub(crate) struct ClientRegistry {
    /// Clients registered ahead, by `client_id`.
    registered: std::collections::HashMap<String, Arc<ClientMetadata>>,
    http: reqwest::Client,
    max_bytes: usize,
    metadata: moka::sync::Cache<String, Arc<ClientMetadata>>,
    jwks: moka::sync::Cache<String, Arc<serde_json::Value>>,
}

fn invalid_client(why: impl Into<String>) -> OAuthError {
    OAuthError::bad("invalid_client", why)
}

impl ClientRegistry {
    pub(crate) fn new(settings: &ClientFetchSettings) -> Result<Self, OAuthSetupError> {
        let http = crate::identity::build_outbound_client(
            settings.timeout,
            reqwest::redirect::Policy::none(),
            settings.allow_private_addresses,
        )
        .map_err(|e| OAuthSetupError::Http(e.to_string()))?;
        let mut registered = std::collections::HashMap::new();
        for document in &settings.registered {
            let metadata = registered_client(document).map_err(OAuthSetupError::Client)?;
            registered.insert(metadata.client_id.clone(), Arc::new(metadata));
        }
        Ok(Self {
            registered,
            http,
            max_bytes: settings.max_bytes,
            metadata: cache(settings.cache_ttl),
            jwks: cache(settings.cache_ttl),
        })
    }

    /// The validated metadata of `client_id`.
    pub(crate) async fn metadata(
        &self,
        client_id: &str,
    ) -> Result<Arc<ClientMetadata>, OAuthError> {
        if let Some(found) = self.registered.get(client_id) {
            return Ok(found.clone());
        }
        if let Some(found) = self.metadata.get(client_id) {
            return Ok(found);
        }
        let parsed = ClientId::parse(client_id)
            .map_err(|e| OAuthError::bad(e.oauth_error(), e.to_string()))?;
        let metadata = match parsed {
            ClientId::Loopback {
                id,
                redirect_uris,
                scope,
            } => ClientMetadata::loopback(&id, &redirect_uris, &scope),
            ClientId::Discoverable(url) => {
                let document = self.fetch(&url).await.map_err(|why| {
                    invalid_client(format!("cannot fetch the client metadata: {why}"))
                })?;
                ClientMetadata::from_document(&url, &document)
                    .map_err(|e| OAuthError::bad(e.oauth_error(), e.to_string()))?
            }
        };
        let metadata = Arc::new(metadata);
        self.metadata.insert(client_id.to_owned(), metadata.clone());
        Ok(metadata)
    }

    /// The keys of a confidential client.
    pub(crate) async fn jwks(
        &self,
        metadata: &ClientMetadata,
    ) -> Result<Arc<serde_json::Value>, OAuthError> {
        match &metadata.keys {
            None => Err(invalid_client("the client publishes no keys")),
            Some(ClientKeys::Inline(jwks)) => Ok(Arc::new(jwks.clone())),
            Some(ClientKeys::Uri(url)) => {
                if let Some(found) = self.jwks.get(url.as_str()) {
                    return Ok(found);
                }
                let document = self.fetch(url).await.map_err(|why| {
                    invalid_client(format!("cannot fetch the client's jwks_uri: {why}"))
                })?;
                let jwks: serde_json::Value = serde_json::from_slice(&document)
                    .map_err(|e| invalid_client(format!("the client's JWKS is not JSON: {e}")))?;
                let jwks = Arc::new(jwks);
                self.jwks.insert(url.as_str().to_owned(), jwks.clone());
                Ok(jwks)
            }
        }
    }

    /// GETs a JSON document of at most `max_bytes`.
    async fn fetch(&self, url: &Url) -> Result<Vec<u8>, String> {
        let mut res = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| crate::identity::error_chain(&e))?;
        if res.status() != StatusCode::OK {
            return Err(format!("{url} answered {}", res.status()));
        }
        if res
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(format!("{url} is larger than {} bytes", self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| crate::identity::error_chain(&e))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(format!("{url} is larger than {} bytes", self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Validates a registered client's document, by the same rules as a
/// fetched one (its `client_id` must be a metadata URL).
fn registered_client(document: &[u8]) -> Result<ClientMetadata, String> {
    let value: serde_json::Value =
        serde_json::from_slice(document).map_err(|e| format!("not JSON: {e}"))?;
    let client_id = value
        .get("client_id")
        .and_then(serde_json::Value::as_str)
        .ok_or("no client_id")?;
    let ClientId::Discoverable(url) = ClientId::parse(client_id).map_err(|e| e.to_string())? else {
        return Err(format!(
            "{client_id} is a loopback client, which needs no registration"
        ));
    };
    ClientMetadata::from_document(&url, document).map_err(|e| format!("{client_id}: {e}"))
}

fn cache<V: Clone + Send + Sync + 'static>(ttl: Duration) -> moka::sync::Cache<String, V> {
    moka::sync::Cache::builder()
        .max_capacity(1000)
        .time_to_live(ttl)
        .build()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::Router;
    use axum::routing::get;

    /// A registry that may reach loopback (the test server), with a 1 KiB
    /// limit.
    fn registry() -> ClientRegistry {
        ClientRegistry::new(&ClientFetchSettings {
            max_bytes: 1024,
            allow_private_addresses: true,
            ..ClientFetchSettings::default()
        })
        .unwrap()
    }

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn fetches_are_bounded_and_follow_no_redirects() {
        let base = serve(
            Router::new()
                .route("/small.json", get(|| async { "{\"a\": 1}" }))
                .route("/big.json", get(|| async { "x".repeat(4096) }))
                .route(
                    "/moved.json",
                    get(|| async { axum::response::Redirect::temporary("/small.json") }),
                )
                .route(
                    "/missing.json",
                    get(|| async { (StatusCode::NOT_FOUND, "{}") }),
                ),
        )
        .await;
        let r = registry();
        let url = |path: &str| Url::parse(&format!("{base}{path}")).unwrap();
        assert_eq!(r.fetch(&url("/small.json")).await.unwrap(), b"{\"a\": 1}");
        let big = r.fetch(&url("/big.json")).await.unwrap_err();
        assert!(big.contains("larger than 1024 bytes"), "{big}");
        let moved = r.fetch(&url("/moved.json")).await.unwrap_err();
        assert!(moved.contains("307"), "{moved}");
        let missing = r.fetch(&url("/missing.json")).await.unwrap_err();
        assert!(missing.contains("404"), "{missing}");
    }

    #[tokio::test]
    async fn private_addresses_are_not_fetched_by_default() {
        let base = serve(Router::new().route("/c.json", get(|| async { "{}" }))).await;
        let r = ClientRegistry::new(&ClientFetchSettings::default()).unwrap();
        let url = Url::parse(&format!("{base}/c.json").replace("127.0.0.1", "localhost")).unwrap();
        let err = r.fetch(&url).await.unwrap_err();
        assert!(err.contains("no public address"), "{err}");
    }

    #[test]
    fn registered_clients_are_checked_like_fetched_ones() {
        let good = serde_json::json!({
            "client_id": "https://app.example/client-metadata.json",
            "redirect_uris": ["https://app.example/callback"],
            "scope": "atproto",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "dpop_bound_access_tokens": true,
            "token_endpoint_auth_method": "none",
        });
        let r = ClientRegistry::new(&ClientFetchSettings {
            registered: vec![good.to_string().into_bytes()],
            ..ClientFetchSettings::default()
        })
        .unwrap();
        assert!(
            r.registered
                .contains_key("https://app.example/client-metadata.json")
        );
        let mut bad = good.clone();
        bad["scope"] = "transition:generic".into();
        let err = ClientRegistry::new(&ClientFetchSettings {
            registered: vec![bad.to_string().into_bytes()],
            ..ClientFetchSettings::default()
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("atproto"), "{err}");
        let loopback = serde_json::json!({"client_id": "http://localhost"});
        assert!(
            ClientRegistry::new(&ClientFetchSettings {
                registered: vec![loopback.to_string().into_bytes()],
                ..ClientFetchSettings::default()
            })
            .is_err()
        );
    }
}
