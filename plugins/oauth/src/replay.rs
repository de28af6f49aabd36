//! What the DPoP and client-assertion checks share: a memory of the `jti`s
//! already used while a token carrying them could still be accepted, and
//! the clock arithmetic on JWT times (whole seconds since the epoch).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// `t` in whole seconds since the epoch, as JWTs write times.
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `d` in whole seconds, to compare with JWT times.
pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}
