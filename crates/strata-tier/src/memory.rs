//! The memory tier: a [`strata_core::Cache`] of byte keys and values, bounded in bytes.
//!
//! An entry's [`ExpiresAt`] is honoured twice: it is handed to the cache as the time that
//! remains (so the cache reclaims it on its own), and it is checked against the wall clock on
//! every read (so that a monotonic clock and a wall clock that drift apart can never make
//! the tier serve an entry past its absolute deadline).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_core::{Cache, Clock, SystemClock};
use strata_metrics::Registry;

use crate::tier::{ExpiresAt, Tier, TierEntry, TierFuture};
use crate::{Error, Result};

/// What one entry is assumed to cost beyond its key and value bytes (the slab slot, the
/// policy node, two vector headers and the shared allocation of the value). It keeps a cache
/// of many tiny entries from holding far more memory than its budget says.
pub const ENTRY_OVERHEAD: u32 = 64;

/// The stored value: shared, so that the cache's read clones a pointer under its lock and the
/// bytes are copied outside it.
type Stored = Arc<TierEntry>;

/// A [`Tier`] held in this process's memory, bounded by the bytes of its keys and values.
///
/// ```
/// use std::time::{Duration, Instant, SystemTime};
/// use strata_tier::memory::MemoryTier;
/// use strata_tier::{ExpiresAt, Tier, TierEntry};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let tier = MemoryTier::builder().max_bytes(1 << 20).build()?;
/// let entry = TierEntry {
///     value: b"v".to_vec(),
///     expires_at: Some(ExpiresAt::after(SystemTime::now(), Duration::from_secs(60))),
/// };
/// let deadline = Instant::now() + Duration::from_secs(1);
/// tier.put(b"k", entry.clone(), deadline).await?;
/// assert_eq!(tier.get(b"k", deadline).await?, Some(entry));
/// # Ok::<(), strata_tier::Error>(())
/// # }).unwrap();
/// ```
pub struct MemoryTier {
    name: String,
    cache: Cache<Vec<u8>, Stored>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTier")
            .field("name", &self.name)
            .field("entries", &self.cache.entry_count())
            .field("weighted_size", &self.cache.weighted_size())
            .finish_non_exhaustive()
    }
}

impl MemoryTier {
    /// Starts configuring a memory tier.
    pub fn builder() -> MemoryTierBuilder {
        MemoryTierBuilder::default()
    }

    /// The number of entries held (expired ones not yet reclaimed included).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The bytes held, as the weigher counts them (keys, values and [`ENTRY_OVERHEAD`]).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// The byte budget.
    pub fn capacity(&self) -> u64 {
        self.cache.capacity()
    }

    fn get_now(&self, key: &[u8]) -> Option<TierEntry> {
        let stored = self.cache.get(key)?;
        // The cache's own deadline runs on the monotonic clock; the absolute one decides.
        if stored.is_expired(self.clock.wall()) {
            return None;
        }
        Some(TierEntry::clone(&stored))
    }

    fn put_now(&self, key: &[u8], entry: TierEntry) {
        let Some(expires_at) = entry.expires_at else {
            self.cache.insert(key.to_vec(), Arc::new(entry));
            return;
        };
        match remaining(expires_at, self.clock.as_ref()) {
            Some(ttl) => self.cache.insert_with_ttl(key.to_vec(), Arc::new(entry), ttl),
            // Already expired: store nothing, and drop the old value so that a reader never
            // sees a value older than the last write.
            None => {
                self.cache.remove(key);
            }
        }
    }
}

/// The time `expires_at` leaves at the clock's wall time, or `None` if it has passed.
fn remaining(expires_at: ExpiresAt, clock: &dyn Clock) -> Option<Duration> {
    expires_at.remaining(clock.wall())
}

impl Tier for MemoryTier {
    fn name(&self) -> &str {
        &self.name
    }

    // Memory calls finish at once, so they never reach their deadline.
    fn get<'a>(&'a self, key: &'a [u8], _deadline: Instant) -> TierFuture<'a, Option<TierEntry>> {
        let found = self.get_now(key);
        Box::pin(std::future::ready(Ok(found)))
    }

    fn put<'a>(
        &'a self,
        key: &'a [u8],
        entry: TierEntry,
        _deadline: Instant,
    ) -> TierFuture<'a, ()> {
        self.put_now(key, entry);
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove<'a>(&'a self, key: &'a [u8], _deadline: Instant) -> TierFuture<'a, ()> {
        self.cache.remove(key);
        Box::pin(std::future::ready(Ok(())))
    }

    fn clear<'a>(&'a self, _deadline: Instant) -> TierFuture<'a, ()> {
        self.cache.invalidate_all();
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Configures a [`MemoryTier`]; start with [`MemoryTier::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct MemoryTierBuilder {
    name: String,
    max_bytes: u64,
    clock: Arc<dyn Clock>,
    metrics: Option<(Arc<Registry>, String)>,
    shards: Option<usize>,
}

impl fmt::Debug for MemoryTierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTierBuilder")
            .field("name", &self.name)
            .field("max_bytes", &self.max_bytes)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryTierBuilder {
    fn default() -> Self {
        MemoryTierBuilder {
            name: "memory".to_owned(),
            max_bytes: MemoryTierBuilder::DEFAULT_MAX_BYTES,
            clock: Arc::new(SystemClock),
            metrics: None,
            shards: None,
        }
    }
}

impl MemoryTierBuilder {
    /// The default byte budget: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

    /// The tier's name in metrics, logs and errors (`memory` by default).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The byte budget: keys, values and [`ENTRY_OVERHEAD`] per entry. An entry larger than
    /// one shard's share of it is not stored (a cache may always decline to keep an entry).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The clock: monotonic time drives the cache's reclaiming, wall time decides expiry.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records the underlying cache's statistics in `registry` under `cache="<name>"`. Without
    /// it, the cache keeps no statistics (the tiered cache counts hits and misses per tier).
    pub fn metrics(mut self, registry: Arc<Registry>, name: impl Into<String>) -> Self {
        self.metrics = Some((registry, name.into()));
        self
    }

    /// The number of shards of the underlying cache, a power of two (by default it follows
    /// the budget and the number of cores).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Checks the configuration and builds the tier.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty name, and [`Error::Core`] for a budget of zero
    /// or a bad shard count.
    pub fn build(self) -> Result<MemoryTier> {
        if self.name.is_empty() {
            return Err(Error::InvalidConfig("a tier's name must not be empty".to_owned()));
        }
        let mut builder = Cache::<Vec<u8>, Stored>::builder()
            .max_weight(self.max_bytes)
            .weigher(|k: &Vec<u8>, v: &Stored| weight(k, v))
            .clock(Arc::clone(&self.clock));
        builder = match self.metrics {
            Some((registry, name)) => builder.metrics(registry, name),
            None => builder.record_stats(false),
        };
        if let Some(shards) = self.shards {
            builder = builder.shards(shards);
        }
        Ok(MemoryTier { name: self.name, cache: builder.build()?, clock: self.clock })
    }
}

/// An entry's weight: its bytes plus the fixed overhead, saturating at `u32::MAX` (which no
/// shard can hold, so such an entry is declined rather than undercounted).
fn weight(key: &[u8], entry: &TierEntry) -> u32 {
    let bytes = key.len().saturating_add(entry.value.len());
    u32::try_from(bytes).unwrap_or(u32::MAX).saturating_add(ENTRY_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use strata_core::ManualClock;

    fn entry(v: &[u8], expires_at: Option<ExpiresAt>) -> TierEntry {
        TierEntry { value: v.to_vec(), expires_at }
    }

    #[test]
    fn absolute_expiry_wins_over_the_cache_clock() {
        let clock = Arc::new(ManualClock::new());
        let tier = MemoryTier::builder().clock(clock.clone()).build().unwrap();
        let at = ExpiresAt::after(clock.wall(), Duration::from_secs(10));
        tier.put_now(b"k", entry(b"v", Some(at)));
        assert_eq!(tier.get_now(b"k"), Some(entry(b"v", Some(at))));
        clock.advance(Duration::from_secs(10));
        assert_eq!(tier.get_now(b"k"), None, "live strictly before the expiry");
    }

    #[test]
    fn expired_put_removes_the_old_value() {
        let tier = MemoryTier::builder().build().unwrap();
        tier.put_now(b"k", entry(b"old", None));
        let past = ExpiresAt::after(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
        tier.put_now(b"k", entry(b"new", Some(past)));
        assert_eq!(tier.get_now(b"k"), None);
        assert_eq!(tier.entry_count(), 0);
    }

    #[test]
    fn budget_counts_bytes_and_overhead() {
        let tier = MemoryTier::builder().max_bytes(10_000).shards(1).build().unwrap();
        tier.put_now(b"abc", entry(&[7; 100], None));
        assert_eq!(tier.weighted_size(), 103 + u64::from(ENTRY_OVERHEAD));
        // Far more than the budget: the tier stays within it.
        for i in 0..1000u32 {
            tier.put_now(&i.to_le_bytes(), entry(&[1; 100], None));
        }
        assert!(tier.weighted_size() <= 10_000, "{}", tier.weighted_size());
        // An entry that cannot fit is declined, not stored over budget.
        tier.put_now(b"huge", entry(&vec![0; 20_000], None));
        assert_eq!(tier.get_now(b"huge"), None);
    }

    #[test]
    fn builder_rejects_nonsense() {
        assert!(matches!(MemoryTier::builder().max_bytes(0).build(), Err(Error::Core(_))));
        assert!(matches!(MemoryTier::builder().name("").build(), Err(Error::InvalidConfig(_))));
        assert!(matches!(MemoryTier::builder().shards(3).build(), Err(Error::Core(_))));
    }
}
