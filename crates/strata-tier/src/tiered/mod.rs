//! [`TieredCache`]: an ordered list of [`Tier`](crate::Tier)s (fastest first) used as one
//! typed cache.
//!
//! - **Read-through.** A get asks each tier in order; a hit below the top is promoted
//!   (written, with its expiry) into every tier above it.
//! - **Writes** go to every tier before returning ([`WriteMode::Through`]), or to the top
//!   tier at once and to the others through a bounded, ordered queue ([`WriteMode::Back`]).
//! - **Time.** A TTL becomes an absolute [`ExpiresAt`] once, on the
//!   builder's wall clock, and travels unchanged; expired entries are never written down or
//!   served.
//! - **Per-key ordering.** Writes, promotions and invalidations of a key run under that key's
//!   lock across all tiers, so a concurrent put and remove cannot leave a stale copy anywhere.
//! - **Degraded mode.** Every tier call has a timeout and goes through the tier's circuit
//!   breaker; reads route around a failing tier, and a write a tier missed is reported in the
//!   [`WriteReport`] and keeps that tier from serving the key until it is written again.
//! - **Coherence.** The invalidation stream of a shared tier (see
//!   [`Tier::invalidations`](crate::Tier::invalidations)) drops copies held above it, and
//!   entries above a shared tier live at most [`TieredCacheBuilder::near_cache_max_ttl`].
//! - **Runtime.** Calls run inside a tokio runtime with the time driver, since every tier call
//!   is bounded by a timer; elsewhere they fail with [`Error::InvalidConfig`], never panic.
//!
//! `docs/tiers.md` states the semantics in full.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use strata_tier::memory::MemoryTier;
//! use strata_tier::tiered::TieredCache;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let near = Arc::new(MemoryTier::builder().name("near").max_bytes(1 << 20).build()?);
//! let far = Arc::new(MemoryTier::builder().name("far").max_bytes(64 << 20).build()?);
//! let cache: TieredCache<String, u64> = TieredCache::builder().tier(near).tier(far).build()?;
//! cache.insert_with_ttl(&"answer".to_string(), &42, Duration::from_secs(60)).await?;
//! assert_eq!(cache.get(&"answer".to_string()).await?, Some(42));
//! cache.close().await;
//! # Ok::<(), strata_tier::Error>(())
//! # }).unwrap();
//! ```

mod breaker;
mod builder;
mod core;
mod slot;
mod writeback;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_metrics::{CircuitState, Registry};

pub use self::builder::TieredCacheBuilder;
use self::core::Core;
use crate::codec::{Codec, Postcard};
use crate::tier::{ExpiresAt, TierEntry};
use crate::{Error, Result};

/// How writes reach the tiers below the top one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Every tier is written before the call returns (the default).
    Through,
    /// The top tier is written before the call returns; the others by background workers,
    /// in order per key, through a queue of at most `capacity` writes.
    Back {
        /// The most writes waiting at once.
        capacity: usize,
        /// What a write does when the queue is full.
        on_full: OnFull,
    },
}

/// What a write does when the write-back queue is full. It is never dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// The caller waits for a place.
    Wait,
    /// The call fails with [`Error::Full`] and nothing is written.
    Error,
}

/// One tier that did not take a write.
#[derive(Debug)]
pub struct TierFailure {
    /// The tier's name.
    pub tier: String,
    /// Why.
    pub error: Error,
}

/// What a write did not achieve: the tiers that failed to take it.
///
/// A tier listed here does not serve the key until a later write of it succeeds there, so
/// the failure costs misses, never stale reads. With [`WriteMode::Back`], only the top tier
/// is reported; the queue's failures are counted in the lower tiers' metrics.
#[derive(Debug, Default)]
pub struct WriteReport {
    failures: Vec<TierFailure>,
}

impl WriteReport {
    /// Whether every tier took the write.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// The tiers that did not take the write, top first.
    pub fn failures(&self) -> &[TierFailure] {
        &self.failures
    }

    fn push(&mut self, failure: TierFailure) {
        self.failures.push(failure);
    }

    fn into_first_error(self) -> Error {
        self.failures.into_iter().next().map_or(Error::Closed, |f| f.error)
    }
}

/// A typed cache over an ordered list of tiers. Cloning it is cheap and shares the cache.
///
/// Build one with [`TieredCache::builder`]; see the [module docs](self) for the model.
pub struct TieredCache<K, V> {
    core: Arc<Core>,
    keys: Arc<dyn Codec<K>>,
    values: Arc<dyn Codec<V>>,
    ttl: Option<Duration>,
}

impl<K, V> Clone for TieredCache<K, V> {
    fn clone(&self) -> Self {
        TieredCache {
            core: Arc::clone(&self.core),
            keys: Arc::clone(&self.keys),
            values: Arc::clone(&self.values),
            ttl: self.ttl,
        }
    }
}

impl<K, V> fmt::Debug for TieredCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.core.slots.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("TieredCache").field("tiers", &names).finish_non_exhaustive()
    }
}

impl<K, V> TieredCache<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// Starts configuring a cache whose keys and values go through [`Postcard`].
    pub fn builder() -> TieredCacheBuilder<K, V>
    where
        Postcard: Codec<K> + Codec<V>,
    {
        TieredCacheBuilder::with_codecs(Postcard::keys(), Postcard::values())
    }

    fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.keys.encode(key, &mut out)?;
        Ok(out)
    }

    fn entry(&self, value: &V, ttl: Option<Duration>) -> Result<TierEntry> {
        let mut bytes = Vec::new();
        self.values.encode(value, &mut bytes)?;
        let now = self.core.clock.wall();
        // A TTL past what the clock can represent means "never", stored as no expiry at all
        // (rather than `ExpiresAt::after`'s saturated far future), so tiers see it as such.
        let expires_at =
            ttl.filter(|ttl| now.checked_add(*ttl).is_some()).map(|ttl| ExpiresAt::after(now, ttl));
        Ok(TierEntry { value: bytes, expires_at })
    }

    /// The value for `key` from the first tier that holds it live, promoted into the tiers
    /// above that one. A tier that fails or times out is skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] or [`Error::TooLarge`] for a key that cannot be encoded or stored
    /// bytes that cannot be decoded, [`Error::Closed`] after [`close`](Self::close), and
    /// [`Error::InvalidConfig`] when called outside a tokio runtime with the time driver (see
    /// [`TieredCacheBuilder::build`]).
    pub async fn get(&self, key: &K) -> Result<Option<V>> {
        let key = self.key_bytes(key)?;
        match self.core.get(&key).await? {
            Some(entry) => self.values.decode(&entry.value).map(Some),
            None => Ok(None),
        }
    }

    /// The value for `key`, or, on a miss in every tier, the value `load` produces, which is
    /// then stored with the default TTL. Concurrent calls for one key run one load: the
    /// others wait for it and read its result (other keys that share the key's lock stripe
    /// wait too, so keep loads short). `load` may read this cache ([`get`](Self::get),
    /// `get_with`) on its own task; it must not write to it (insert, remove, clear) nor wait
    /// for another task that reads it, since those wait for the stripe that the load holds.
    ///
    /// # Errors
    ///
    /// Those of [`get`](Self::get), and the error `load` returns. A value loaded but not
    /// stored in any tier is still returned (the tiers count the failures).
    pub async fn get_with<F, Fut>(&self, key: &K, load: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>>,
    {
        let key = self.key_bytes(key)?;
        let ttl = self.ttl;
        let (entry, _) = self
            .core
            .get_or_load(&key, async move {
                let value = load().await?;
                self.entry(&value, ttl)
            })
            .await?;
        self.values.decode(&entry.value)
    }

    /// Stores `value` under `key` with the builder's default TTL (none unless set).
    ///
    /// # Errors
    ///
    /// [`Error::Full`] in write-back mode with [`OnFull::Error`] when the queue is full
    /// (nothing written), codec errors, [`Error::Closed`], and the first tier's error when
    /// no tier took the write, and [`Error::InvalidConfig`], with nothing written, when
    /// called outside a tokio runtime with the time driver. Lesser failures are listed in the
    /// [`WriteReport`].
    pub async fn insert(&self, key: &K, value: &V) -> Result<WriteReport> {
        let entry = self.entry(value, self.ttl)?;
        self.core.put(self.key_bytes(key)?, entry).await
    }

    /// Stores `value` under `key` for `ttl`. A zero `ttl` removes the key: the entry would be
    /// expired on arrival, and an expired entry is never written down.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub async fn insert_with_ttl(&self, key: &K, value: &V, ttl: Duration) -> Result<WriteReport> {
        if ttl.is_zero() {
            return self.remove(key).await;
        }
        let entry = self.entry(value, Some(ttl))?;
        self.core.put(self.key_bytes(key)?, entry).await
    }

    /// Stores `value` under `key` until the absolute time `expires_at` (for example one read
    /// from another system); an expiry in the past removes the key.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub async fn insert_until(
        &self,
        key: &K,
        value: &V,
        expires_at: ExpiresAt,
    ) -> Result<WriteReport> {
        let mut entry = self.entry(value, None)?;
        entry.expires_at = Some(expires_at);
        self.core.put(self.key_bytes(key)?, entry).await
    }

    /// Removes `key` from every tier. A tier that fails is listed in the report and will not
    /// serve the key until it is written again, so the removal holds for readers.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] (write-back, [`OnFull::Error`]), codec errors, [`Error::Closed`], and
    /// [`Error::InvalidConfig`] as for [`insert`](Self::insert).
    pub async fn remove(&self, key: &K) -> Result<WriteReport> {
        self.core.remove(self.key_bytes(key)?).await
    }

    /// Clears every tier (for a shared tier: its namespace). In write-back mode the lower
    /// tiers are cleared by the queue, after the writes queued before, and read as empty
    /// until then; this call waits for a place in the queue whatever [`OnFull`] says.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], and [`Error::InvalidConfig`] as for [`insert`](Self::insert). A
    /// tier that fails to clear is listed in the report and is not read again until a later
    /// clear of it succeeds.
    pub async fn invalidate_all(&self) -> Result<WriteReport> {
        self.core.invalidate_all().await
    }

    /// Waits until the write-back queue has applied every write queued before this call.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closed.
    pub async fn flush(&self) -> Result<()> {
        self.core.flush().await
    }

    /// Stops taking calls, waits for writes in flight, drains the write-back queue, and stops
    /// the invalidation listeners. Later calls fail with [`Error::Closed`]. Call it before
    /// shutting down: dropping the cache also drains the queue, but nobody waits for it.
    pub async fn close(&self) {
        self.core.close().await;
    }

    /// The tiers' names, top first.
    pub fn tier_names(&self) -> Vec<&str> {
        self.core.slots.iter().map(|s| s.name.as_str()).collect()
    }

    /// The circuit-breaker state of the tier called `tier`.
    pub fn circuit_state(&self, tier: &str) -> Option<CircuitState> {
        self.core.slots.iter().find(|s| s.name == tier).map(|s| s.circuit_state())
    }

    /// Writes waiting in the write-back queue (0 in write-through mode).
    pub fn writeback_len(&self) -> usize {
        self.core.writeback.as_ref().map_or(0, |wb| wb.len())
    }

    /// The registry holding the tiers' metrics (the builder's, or a private one).
    pub fn metrics_registry(&self) -> &Arc<Registry> {
        &self.core.registry
    }
}
