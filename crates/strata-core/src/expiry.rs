//! Per-entry expiry, consulted on create, read and update, as in Caffeine and moka.

use std::time::{Duration, Instant};

/// Decides how long each entry lives.
///
/// Each method returns the time left until the entry expires, counted from the instant it is
/// given; `None` means "no deadline of its own" (a cache-wide `time_to_live` still caps it).
/// The defaults keep whatever was decided before, so an implementation overrides only the
/// events it cares about.
///
/// ```
/// use std::time::{Duration, Instant};
/// use strata_core::{Cache, Expiry};
///
/// /// Short-lived errors, long-lived successes.
/// struct ByOutcome;
/// impl Expiry<String, Result<u32, String>> for ByOutcome {
///     fn expire_after_create(&self, _: &String, v: &Result<u32, String>, _: Instant) -> Option<Duration> {
///         Some(if v.is_ok() { Duration::from_secs(600) } else { Duration::from_secs(5) })
///     }
/// }
///
/// let cache: Cache<String, Result<u32, String>> =
///     Cache::builder().max_capacity(100).expire_after(ByOutcome).build()?;
/// cache.insert("a".into(), Ok(1));
/// assert_eq!(cache.get("a"), Some(Ok(1)));
/// # Ok::<(), strata_core::Error>(())
/// ```
pub trait Expiry<K, V>: Send + Sync + 'static {
    /// Time to live of a new entry.
    fn expire_after_create(&self, key: &K, value: &V, created_at: Instant) -> Option<Duration> {
        let _ = (key, value, created_at);
        None
    }

    /// Time to live after a read; `remaining` is what was left before it.
    fn expire_after_read(
        &self,
        key: &K,
        value: &V,
        read_at: Instant,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        let _ = (key, value, read_at);
        remaining
    }

    /// Time to live after the value was replaced; `remaining` is what was left before it.
    fn expire_after_update(
        &self,
        key: &K,
        value: &V,
        updated_at: Instant,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        let _ = (key, value, updated_at);
        remaining
    }
}

/// Why an entry left the cache, as told to the removal listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalCause {
    /// Its time to live or time to idle ran out.
    Expired,
    /// The policy evicted it to respect the capacity, or refused to admit it.
    Size,
    /// The user removed or invalidated it.
    Explicit,
    /// A new value was written for its key.
    Replaced,
}

impl RemovalCause {
    /// Whether the cache removed the entry on its own (expiry or size), rather than a user.
    pub fn was_evicted(self) -> bool {
        matches!(self, RemovalCause::Expired | RemovalCause::Size)
    }
}
