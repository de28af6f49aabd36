//! How long the resolvers keep answers.
//!
//! Handle and DID resolution answers are kept in memory: a successful one
//! for [`CacheConfig::ttl`] (an hour by default: the handle spec calls DNS
//! TTLs too short for handles), a failure for the shorter
//! [`CacheConfig::failure_ttl`] (five minutes), so that a handle whose DNS
//! was just fixed is not refused for long and a broken one is not looked
//! up on every request. At most [`CacheConfig::capacity`] answers are kept;
//! when full, expired answers go first, then those closest to expiring.
//!
//! Times come from `tokio::time::Instant`, so that tests can move a paused
//! clock instead of sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long a resolver keeps answers, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a successful answer is kept.
    pub ttl: Duration,
    /// How long a failure (not found, or the lookup failed) is kept.
    pub failure_ttl: Duration,
    /// The most answers kept; `0` turns caching off.
    pub capacity: usize,
}

impl CacheConfig {
    /// The default [`ttl`](Self::ttl): one hour.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(60 * 60);
    /// The default [`failure_ttl`](Self::failure_ttl): five minutes.
    pub const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(5 * 60);
    /// The default [`capacity`](Self::capacity).
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// No caching at all.
    pub const fn disabled() -> Self {
        Self {
            ttl: Duration::ZERO,
            failure_ttl: Duration::ZERO,
            capacity: 0,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Self::DEFAULT_TTL,
            failure_ttl: Self::DEFAULT_FAILURE_TTL,
            capacity: Self::DEFAULT_CAPACITY,
        }
    }
}

/// A cached answer and when it expires.
#[derive(Debug)]
struct Entry<T> {
    value: T,
    expires: Instant,
}

/// A bounded map of answers (`Ok` or `Err`) with expiry times; safe to
/// share between tasks.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V, E> {
    config: CacheConfig,
    entries: Mutex<HashMap<K, Entry<Result<V, E>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone, E: Clone> TtlCache<K, V, E> {
    pub(crate) fn new(config: CacheConfig) -> Self {
        Self {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The unexpired answer for `key`, if any.
    pub(crate) fn get(&self, key: &K) -> Option<Result<V, E>> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some(entry) if entry.expires > Instant::now() => Some(entry.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `key`, for the TTL of a success or a failure.
    pub(crate) fn insert(&self, key: K, value: Result<V, E>) {
        let ttl = if value.is_ok() {
            self.config.ttl
        } else {
            self.config.failure_ttl
        };
        if self.config.capacity == 0 || ttl.is_zero() {
            self.remove(&key);
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= self.config.capacity {
            entries.retain(|_, e| e.expires > now);
            while entries.len() >= self.config.capacity {
                let Some(soonest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                entries.remove(&soonest);
            }
        }
        entries.insert(
            key,
            Entry {
                value,
                expires: now + ttl,
            },
        );
    }

    /// Forgets the answer for `key`.
    pub(crate) fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Forgets every answer.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// How many answers are kept (expired ones included until touched).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Locks the map; a panic while it was held cannot have left it
    /// inconsistent (each operation is one map call), so poisoning is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<Result<V, E>>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(capacity: usize) -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(10),
            capacity,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_expire_after_their_ttl() {
        let cache: TtlCache<&str, u32, String> = TtlCache::new(config(10));
        cache.insert("ok", Ok(1));
        cache.insert("bad", Err("nope".to_owned()));
        assert_eq!(cache.get(&"ok"), Some(Ok(1)));
        assert_eq!(cache.get(&"bad"), Some(Err("nope".to_owned())));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.get(&"ok"), Some(Ok(1)));
        assert_eq!(cache.get(&"bad"), None, "failures expire sooner");
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(cache.get(&"ok"), None);
        assert_eq!(cache.len(), 0, "expired entries are dropped when read");
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_evicting_expired_then_soonest() {
        let cache: TtlCache<u32, u32, ()> = TtlCache::new(config(3));
        cache.insert(1, Err(())); // expires at 10 s
        cache.insert(2, Ok(2)); // 60 s
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.insert(3, Ok(3)); // 61 s
        cache.insert(4, Ok(4)); // full: 1 goes (soonest)
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&1), None);
        cache.insert(5, Ok(5)); // 2 goes
        assert_eq!(cache.get(&2), None);
        assert_eq!(cache.get(&3), Some(Ok(3)));
        // Replacing a key does not evict another.
        cache.insert(5, Ok(50));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&5), Some(Ok(50)));
        cache.remove(&5);
        assert_eq!(cache.get(&5), None);
        cache.clear();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn disabled_keeps_nothing() {
        let cache: TtlCache<u32, u32, ()> = TtlCache::new(CacheConfig::disabled());
        cache.insert(1, Ok(1));
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.len(), 0);
    }
}
