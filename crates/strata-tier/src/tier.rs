//! The [`Tier`] trait: what every level of the hierarchy offers, in bytes.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Result;

/// The future a [`Tier`] call returns: boxed so that tiers can be stored as `dyn Tier`.
pub type TierFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// An absolute wall-clock expiry, in milliseconds since the Unix epoch.
///
/// A TTL is turned into this once, where the entry is written, and travels unchanged through
/// every tier (and the write-ahead log), so that an entry expires at the same instant
/// everywhere and across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExpiresAt(pub u64);

impl ExpiresAt {
    /// The expiry `ttl` after `now`, at least one millisecond later; a TTL too large to
    /// represent saturates to the far future (it never expires), never to "now".
    pub fn after(now: SystemTime, ttl: Duration) -> Self {
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        ExpiresAt(unix_millis(now).saturating_add(ttl))
    }

    /// Whether the entry is expired at `now` (an entry is live strictly before its expiry).
    pub fn is_expired(self, now: SystemTime) -> bool {
        unix_millis(now) >= self.0
    }

    /// The time left at `now`, or `None` if already expired.
    pub fn remaining(self, now: SystemTime) -> Option<Duration> {
        let now = unix_millis(now);
        (self.0 > now).then(|| Duration::from_millis(self.0 - now))
    }

    /// The expiry as a wall-clock time.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A stored value with its expiry, as tiers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierEntry {
    /// The encoded value.
    pub value: Vec<u8>,
    /// When the value stops being served, or `None` for never.
    pub expires_at: Option<ExpiresAt>,
}

impl TierEntry {
    /// Whether the entry is expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|e| e.is_expired(now))
    }
}

/// One level of the hierarchy: memory, local disk, Redis, or your own.
///
/// Keys and values are bytes (a [`Codec`](crate::Codec) turns typed keys and values into
/// them). The contract every implementation keeps, checked by the conformance suite:
/// - `get` never returns an expired entry, nor bytes that failed their integrity check;
/// - `put` replaces any previous value and stores the expiry unchanged; a `put` of an entry
///   that is already expired stores nothing and removes the old value;
/// - `remove` of an absent key succeeds; after `remove` or `clear` returns, `get` misses;
/// - every call gives up with [`Error::Timeout`](crate::Error::Timeout) at `deadline` at the
///   latest, and reports failures as errors, never as panics;
/// - a write that a healthy tier declines (no room for it) is
///   [`Error::Refused`](crate::Error::Refused) or [`Error::TooLarge`](crate::Error::TooLarge),
///   which the tiered cache does not count against the tier's health.
pub trait Tier: Send + Sync + 'static {
    /// A short name for metrics, logs and errors (`memory`, `disk`, `redis`).
    fn name(&self) -> &str;

    /// The entry for `key`, if present and live.
    fn get<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, Option<TierEntry>>;

    /// Stores `entry` under `key`.
    fn put<'a>(&'a self, key: &'a [u8], entry: TierEntry, deadline: Instant) -> TierFuture<'a, ()>;

    /// Removes `key`.
    fn remove<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, ()>;

    /// Removes every entry of this tier (for a shared tier such as Redis: every entry under
    /// this tier's namespace).
    fn clear<'a>(&'a self, deadline: Instant) -> TierFuture<'a, ()>;

    /// For a tier shared between processes (Redis): a stream of keys that another process
    /// wrote or removed, so that the tiers above this one drop their copies. `None` (the
    /// default) for a tier that only this process writes.
    fn invalidations(&self) -> Option<tokio::sync::broadcast::Receiver<Invalidation>> {
        None
    }
}

/// A notice from a shared tier that copies held above it are stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Another process wrote or removed this key.
    Key(Vec<u8>),
    /// Notices may have been lost (the connection dropped): drop every copy held above.
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_absolute_and_saturate() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let e = ExpiresAt::after(now, Duration::from_secs(5));
        assert_eq!(e, ExpiresAt(1_005_000));
        assert!(!e.is_expired(now));
        assert!(e.is_expired(now + Duration::from_secs(5)));
        assert_eq!(e.remaining(now), Some(Duration::from_secs(5)));
        assert_eq!(ExpiresAt::after(now, Duration::from_micros(10)), ExpiresAt(1_000_001));
        let far = ExpiresAt::after(now, Duration::MAX);
        assert_eq!(far, ExpiresAt(u64::MAX));
        assert!(!far.is_expired(now + Duration::from_secs(1 << 40)));
    }
}
