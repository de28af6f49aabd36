//! What the DPoP and client-assertion checks share: a memory of the `jti`s
//! already used while a token carrying them could still be accepted, the
//! clock arithmetic on JWT times (whole seconds since the epoch), and the
//! check that a token's header and claims are UTF-8.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Keys seen within a window. Cheap to clone; clones share the memory.
#[derive(Clone)]
pub(crate) struct SeenOnce {
    seen: moka::sync::Cache<String, ()>,
}

impl SeenOnce {
    /// Remembers each key for `window`.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            seen: moka::sync::Cache::builder().time_to_live(window).build(),
        }
    }

    /// Whether `key` is new (and from now on remembered).
    pub(crate) fn first_use(&self, key: String) -> bool {
        self.seen.entry(key).or_insert(()).is_fresh()
    }

    /// How many keys are remembered (approximately, for `Debug`).
    pub(crate) fn len(&self) -> u64 {
        self.seen.entry_count()
    }
}

/// Whether the header and the claims of the compact JWS `jws` are
/// base64url of UTF-8 text, as RFC 7519 §7.2 requires. The JOSE library
/// parses them with `serde_json`, which checks the strings it keeps but
/// not those of members it skips, so it alone lets invalid UTF-8 through.
pub(crate) fn header_and_claims_are_utf8(jws: &str) -> bool {
    jws.split('.').take(2).all(|part| {
        URL_SAFE_NO_PAD
            .decode(part)
            .is_ok_and(|bytes| std::str::from_utf8(&bytes).is_ok())
    })
}

/// `t` in whole seconds since the epoch, as JWTs write times.
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `d` in whole seconds, to compare with JWT times.
pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
