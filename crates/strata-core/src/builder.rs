//! The fallible builder that turns settings into a [`Cache`].

use crate::cache::{Cache, Inner, Listener, Reloader, Shards, Weigher};
use crate::clock::{Clock, Epoch, SystemClock};
use crate::error::{Error, Result};
use crate::expiry::{Expiry, RemovalCause};
use crate::loader::Inflight;
use crate::shard::{Shard, TimeSettings, WindowSync};
use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;
use strata_evict::PolicyConfig;
use strata_metrics::{CacheMetrics, Registry};

/// The `cache` label of a cache built without [`CacheBuilder::metrics`].
const DEFAULT_METRICS_NAME: &str = "default";

/// The smallest share of the capacity that the default sharding gives one shard of a small
/// cache. Fewer, larger shards keep the policy's view of the workload whole, which matters
/// for hit ratio on small caches (gli and cs at 800 entries lose about half a point split
/// in two).
const MIN_SHARD_CAPACITY: u64 = 4096;

/// From this capacity on, shards may be as small as [`MIN_LARGE_SHARD_CAPACITY`].
const LARGE_CACHE: u64 = 1 << 14;

/// The smallest share of a large cache's capacity that one default shard gets. Each shard
/// sees a hash-partitioned sample of the same workload, and from a few hundred entries per
/// shard on the sample is large enough: the real cache's hit ratio on P3 and P12 at 20,000
/// and 160,000 entries, and on the Zipf workload of `cargo xtask bench`, stayed within run
/// to run noise from 4 to 256 shards. Many shards are what keep two cores from waiting on
/// each other's write locks: on that Zipf workload at two threads (where a third of the
/// operations are inserts) 8 shards ran 5.5 Mops/s, 64 ran 8.3 and 128 ran 9.1, on the
/// 2-core machine of 2026-11-24.
const MIN_LARGE_SHARD_CAPACITY: u64 = 384;

/// Default shards per core, before the capacity bounds above.
const SHARDS_PER_CORE: usize = 64;

/// The most shards a default configuration uses: each costs about 1 KiB of fixed state plus
/// a 128-byte read-buffer stripe per core.
const MAX_DEFAULT_SHARDS: usize = 1024;

/// Default shards per core of a weighted cache. An entry heavier than its shard's share of
/// the weight is refused, so a weighted cache keeps few shards: with 4 per core an entry may
/// weigh up to an eighth of the capacity on two cores (a 64 MiB memory tier takes an 8 MiB
/// value). `CacheBuilder::shards(1)` lets one entry take the whole capacity.
const WEIGHTED_SHARDS_PER_CORE: usize = 4;

/// Never reserve more than this many slots up front, all shards together: a larger cache's
/// tables grow as it fills. A capacity of `u64::MAX` (often meant as "unbounded") otherwise
/// reserved a million slots per shard, 270 MB resident in an empty cache on two cores.
const MAX_RESERVE: u64 = 1 << 20;

/// Configures and builds a [`Cache`]. Start with [`Cache::builder`].
///
/// ```
/// use std::time::Duration;
/// use strata_core::Cache;
///
/// let cache: Cache<String, Vec<u8>> = Cache::builder()
///     .max_weight(64 * 1024 * 1024)
///     .weigher(|k: &String, v: &Vec<u8>| (k.len() + v.len()).try_into().unwrap_or(u32::MAX))
///     .time_to_live(Duration::from_secs(300))
///     .time_to_idle(Duration::from_secs(60))
///     .build()?;
/// cache.insert("k".to_string(), vec![1, 2, 3]);
/// assert_eq!(cache.weighted_size(), 4);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct CacheBuilder<K, V, S = ahash::RandomState> {
    max_capacity: Option<u64>,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    expiry: Option<Box<dyn Expiry<K, V>>>,
    refresh: Option<(Duration, Reloader<K, V>)>,
    policy: PolicyConfig,
    listener: Option<Listener<K, V>>,
    shards: Option<usize>,
    clock: Arc<dyn Clock>,
    hasher: S,
    record_stats: bool,
    registry: Option<Arc<Registry>>,
    metrics_name: String,
}

impl<K, V, S> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("max_weight", &self.max_weight)
            .field("ttl", &self.ttl)
            .field("tti", &self.tti)
            .field("policy", &self.policy)
            .field("shards", &self.shards)
            .field("record_stats", &self.record_stats)
            .field("metrics_name", &self.metrics_name)
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheBuilder<K, V, ahash::RandomState> {
    pub(crate) fn new() -> Self {
        CacheBuilder {
            max_capacity: None,
            max_weight: None,
            weigher: None,
            ttl: None,
            tti: None,
            expiry: None,
            refresh: None,
            policy: PolicyConfig::default(),
            listener: None,
            shards: None,
            clock: Arc::new(SystemClock),
            hasher: ahash::RandomState::new(),
            record_stats: true,
            registry: None,
            metrics_name: DEFAULT_METRICS_NAME.to_owned(),
        }
    }
}

impl<K, V, S> CacheBuilder<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Holds at most `entries` entries. Use either this or [`max_weight`](Self::max_weight).
    pub fn max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = Some(entries);
        self
    }

    /// Holds entries whose weights (from the [`weigher`](Self::weigher)) sum to at most `weight`.
    pub fn max_weight(mut self, weight: u64) -> Self {
        self.max_weight = Some(weight);
        self
    }

    /// How much of the weight budget an entry uses (bytes, typically). An entry heavier than
    /// a shard's share of the budget is not stored; the removal listener sees it as `Size`.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Entries expire this long after they were last written.
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries expire when not read or written for this long (never past their time to live).
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Decides each entry's lifetime on create, read and update. Cannot be combined with
    /// [`time_to_idle`](Self::time_to_idle); a [`time_to_live`](Self::time_to_live) caps it.
    pub fn expire_after(mut self, expiry: impl Expiry<K, V>) -> Self {
        self.expiry = Some(Box::new(expiry));
        self
    }

    /// A read of an entry written more than `after` ago returns the current value at once
    /// and reloads it in the background with `reload`, once, however many readers see it.
    ///
    /// `reload` returns `Some(new)` to replace the value, or `None` to keep the old one (a
    /// failed reload). A value written while the reload ran wins over the reload's result.
    /// Reloads run on the current tokio runtime if there is one, else on a short-lived thread,
    /// at most 16 of them at once in the process: a reload that finds none free is skipped
    /// (the entry keeps its value, and a read after the interval tries again).
    pub fn refresh_after_write<F, Fut>(mut self, after: Duration, reload: F) -> Self
    where
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<V>> + Send + 'static,
    {
        self.refresh = Some((after, Arc::new(move |k| Box::pin(reload(k)))));
        self
    }

    /// The eviction and admission policy (the default is the one measured best across the
    /// traces in `docs/benchmarks.md`).
    pub fn eviction_policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// Called after an entry leaves the cache, outside any lock, with the reason.
    ///
    /// The listener runs on the thread of the operation that removed the entry, after that
    /// operation released its locks, so it may call back into the cache. If it panics, the
    /// panic is caught and reported with `tracing::error!` (target `strata_core::cache`),
    /// and the operation goes on as if the listener had returned: the operation completes
    /// (`invalidate_all` still empties every shard) and every other entry it removed is
    /// still reported. Only the notification that panicked is lost; its key and value are
    /// dropped while unwinding.
    pub fn removal_listener(
        mut self,
        listener: impl Fn(K, V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The number of shards, a power of two. By default it grows with the number of cores
    /// (64 per core, at most 1024), bounded so that a shard of a large cache (16,384
    /// entries or more) holds at least 384 entries and one of a smaller cache at least
    /// 4096: caches under 8192 entries keep one shard, so the policy sees the whole workload.
    /// A weighted cache gets 4 shards per core (at least 4096 units of weight each): an
    /// entry heavier than its shard's share of the weight is refused.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The source of time (a [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Whether to keep hit, miss, load and eviction counters (on by default; see
    /// [`Cache::stats`]). Off, nothing is registered or recorded, and each operation pays
    /// one branch and no atomics.
    pub fn record_stats(mut self, on: bool) -> Self {
        self.record_stats = on;
        self
    }

    /// Registers the cache's metrics in `registry` (shared with other caches, tiers and the
    /// WAL, and scraped by your exporter), with `name` as the value of their `cache` label.
    /// Without this call a private registry keeps [`Cache::stats`] and
    /// [`Cache::render_prometheus`] working, under the name `"default"`.
    ///
    /// Two caches given the same registry and name share their counters (their figures add
    /// up), and the size gauges follow the cache built last. An empty name is refused by
    /// [`build`](Self::build).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use strata_core::Cache;
    /// use strata_metrics::Registry;
    ///
    /// let registry = Arc::new(Registry::new());
    /// let users: Cache<u32, String> =
    ///     Cache::builder().max_capacity(100).metrics(Arc::clone(&registry), "users").build()?;
    /// users.get(&1);
    /// assert!(registry.render_prometheus().contains("strata_cache_misses_total{cache=\"users\"} 1\n"));
    /// # Ok::<(), strata_core::Error>(())
    /// ```
    pub fn metrics(mut self, registry: Arc<Registry>, name: impl Into<String>) -> Self {
        self.registry = Some(registry);
        self.metrics_name = name.into();
        self
    }

    /// The hasher (keyed `ahash` by default, so crafted keys cannot flood one bucket).
    pub fn hasher<S2>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            max_weight: self.max_weight,
            weigher: self.weigher,
            ttl: self.ttl,
            tti: self.tti,
            expiry: self.expiry,
            refresh: self.refresh,
            policy: self.policy,
            listener: self.listener,
            shards: self.shards,
            clock: self.clock,
            hasher,
            record_stats: self.record_stats,
            registry: self.registry,
            metrics_name: self.metrics_name,
        }
    }

    /// Checks the configuration and builds the cache.
    pub fn build(self) -> Result<Cache<K, V, S>> {
        let capacity = match (self.max_capacity, self.max_weight, self.weigher.is_some()) {
            (Some(_), Some(_), _) => {
                return Err(Error::InvalidConfig(
                    "set max_capacity (entries) or max_weight (with a weigher), not both",
                ))
            }
            (Some(_), None, true) => {
                return Err(Error::InvalidConfig(
                    "a weigher needs max_weight; max_capacity counts entries",
                ))
            }
            (None, Some(_), false) => {
                return Err(Error::InvalidConfig("max_weight needs a weigher"))
            }
            (None, None, _) => return Err(Error::InvalidConfig("set max_capacity or max_weight")),
            (Some(c), None, false) => c,
            (None, Some(w), true) => w,
        };
        if capacity == 0 {
            return Err(Error::ZeroCapacity);
        }
        for (what, d) in [("time_to_live", self.ttl), ("time_to_idle", self.tti)] {
            if let Some(d) = d.filter(|d| d.is_zero()) {
                return Err(Error::ZeroDuration { what, value: d });
            }
        }
        if let Some((d, _)) = self.refresh.as_ref().filter(|(d, _)| d.is_zero()) {
            return Err(Error::ZeroDuration { what: "refresh_after_write", value: *d });
        }
        if self.expiry.is_some() && self.tti.is_some() {
            return Err(Error::InvalidConfig(
                "expire_after and time_to_idle cannot be combined; express idle expiry in Expiry::expire_after_read",
            ));
        }
        // `PolicyConfig::build` clamps out-of-range percentages; refuse them instead, so a
        // typo is an error rather than a different policy than the one asked for.
        if self.policy.validate().is_err() {
            return Err(Error::InvalidConfig(
                "the eviction policy's percentages (window_percent, small_percent) must be at most 100",
            ));
        }
        if self.metrics_name.is_empty() {
            return Err(Error::InvalidConfig(
                "the metrics name (the cache label) must not be empty",
            ));
        }
        let registry = self.registry.unwrap_or_default();
        let stats = if self.record_stats {
            Some(
                CacheMetrics::register(&registry, &self.metrics_name)
                    .map_err(|e| Error::Metrics(e.to_string()))?,
            )
        } else {
            None
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = match self.shards {
            Some(n) if n == 0 || !n.is_power_of_two() || n > 65536 => {
                return Err(Error::BadShardCount(n))
            }
            Some(n) => n.min(prev_power_of_two(capacity)),
            None if self.weigher.is_some() => default_weighted_shards_for(capacity, cores),
            None => default_shards_for(capacity, cores),
        };
        let stripes = cores.next_power_of_two().min(64);
        let epoch = Epoch::new(self.clock.now());
        let weighted = self.weigher.is_some();
        // The first shard's policy sizes the window for all (see `WindowSync`); the cell
        // starts at its initial share, which every follower starts at too.
        let mut cell: Option<(Arc<AtomicU64>, u64)> = None;
        let shard_vec: Shards<K, V> = (0..shards)
            .map(|i| {
                let cap = shard_capacity(capacity, shards, i);
                let reserve = if weighted {
                    0
                } else {
                    cap.saturating_add(1).min(MAX_RESERVE / shards as u64) as usize
                };
                let seed = self.hasher.hash_one(i as u64 ^ 0x5eed_5eed);
                let (policy, window) = match &cell {
                    _ if shards == 1 => (self.policy.build(cap, seed), WindowSync::Alone),
                    None => {
                        let policy = self.policy.build(cap, seed);
                        let share = policy.window_share().map_or(0, f64::to_bits);
                        let shared = Arc::new(AtomicU64::new(share));
                        cell = Some((Arc::clone(&shared), share));
                        (policy, WindowSync::Lead { cell: shared, published: share })
                    }
                    Some((shared, share)) => (
                        self.policy.build_follower(cap, seed),
                        WindowSync::Follow { cell: Arc::clone(shared), applied: *share },
                    ),
                };
                let mut policy = policy;
                if weighted {
                    policy.weighted_capacity();
                }
                CachePadded::new(RwLock::new(Shard::new(policy, cap, reserve, stripes, window)))
            })
            .collect();
        let (refresh_after, reloader) = match self.refresh {
            Some((d, r)) => (Some(d), Some(r)),
            None => (None, None),
        };
        let inner = Inner {
            shards: shard_vec,
            mask: shards - 1,
            hasher: self.hasher,
            time: TimeSettings {
                ttl: self.ttl,
                tti: self.tti,
                expiry: self.expiry,
                refresh: refresh_after,
                epoch,
            },
            clock: self.clock,
            weigher: self.weigher,
            listener: self.listener,
            stats,
            registry: Arc::clone(&registry),
            name: self.metrics_name,
            inflight: Inflight::new(shards),
            reloader,
            capacity: parking_lot::Mutex::new(capacity),
        };
        let inner = Arc::new(inner);
        if inner.stats.is_some() {
            // Sizes are read at scrape time from the cache itself, so the hot path pays
            // nothing for them. The functions hold `Weak`s: the registry outlives caches it
            // does not own, and reports 0 for one that is gone.
            let (a, b) = (Arc::downgrade(&inner), Arc::downgrade(&inner));
            CacheMetrics::register_size_gauges(
                &registry,
                &inner.name,
                Arc::new(move || size_of(&a, Cache::entry_count)),
                Arc::new(move || size_of(&b, Cache::weighted_size)),
            )
            .map_err(|e| Error::Metrics(e.to_string()))?;
        }
        Ok(Cache::from_inner(inner))
    }
}

/// Reads one size figure of the cache behind `weak`, or 0 once it is gone.
fn size_of<K, V, S>(weak: &Weak<Inner<K, V, S>>, figure: fn(&Cache<K, V, S>) -> u64) -> i64
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    weak.upgrade()
        .map_or(0, |inner| i64::try_from(figure(&Cache::from_inner(inner))).unwrap_or(i64::MAX))
}

fn prev_power_of_two(n: u64) -> usize {
    let p = 1u64 << (63 - n.max(1).leading_zeros());
    usize::try_from(p).unwrap_or(1 << 16).min(1 << 16)
}

fn default_shards_for(capacity: u64, cores: usize) -> usize {
    let wanted = cores.saturating_mul(SHARDS_PER_CORE).min(MAX_DEFAULT_SHARDS).next_power_of_two();
    let per_shard =
        if capacity >= LARGE_CACHE { MIN_LARGE_SHARD_CAPACITY } else { MIN_SHARD_CAPACITY };
    wanted.min(prev_power_of_two(capacity / per_shard)).max(1)
}

fn default_weighted_shards_for(capacity: u64, cores: usize) -> usize {
    let wanted = cores.saturating_mul(WEIGHTED_SHARDS_PER_CORE).min(MAX_DEFAULT_SHARDS);
    wanted.next_power_of_two().min(prev_power_of_two(capacity / MIN_SHARD_CAPACITY)).max(1)
}

/// Shard `i`'s share: the shares sum exactly to `capacity`.
pub(crate) fn shard_capacity(capacity: u64, shards: usize, i: usize) -> u64 {
    let n = shards as u64;
    capacity / n + u64::from((i as u64) < capacity % n)
}

#[cfg(all(test, not(strata_loom)))]
mod tests {
    use super::*;

    /// `max_capacity(u64::MAX)` (an "unbounded" cache) reserves at most the budget, all
    /// shards together, and its tables then grow as it fills.
    #[test]
    fn a_huge_capacity_reserves_only_the_budget_and_grows() {
        let cache: crate::Cache<u64, u64> =
            crate::Cache::builder().max_capacity(u64::MAX).build().expect("build");
        let (table, slab) = cache
            .inner
            .shards
            .iter()
            .map(|s| s.read().reserved_slots())
            .fold((0, 0), |(t, s), (a, b)| (t + a, s + b));
        assert!(slab as u64 <= MAX_RESERVE, "slab room for {slab}");
        assert!(table as u64 <= 2 * MAX_RESERVE, "table room for {table}");
        // Past the budget: every shard grows past what it reserved.
        let n = MAX_RESERVE + MAX_RESERVE / 8;
        for k in 0..n {
            cache.insert(k, k);
        }
        assert_eq!(cache.entry_count(), n);
        assert!((0..n).step_by(997).all(|k| cache.get(&k) == Some(k)));
    }

    #[test]
    fn default_sharding_keeps_small_caches_whole_and_splits_large_ones() {
        // Small caches: one shard below 8192 entries, whatever the cores.
        for cap in [1, 100, 800, 8191] {
            assert_eq!(default_shards_for(cap, 64), 1, "capacity {cap}");
        }
        assert_eq!(default_shards_for(8192, 64), 2);
        assert_eq!(default_shards_for(16_383, 64), 2);
        // Large caches: 64 shards per core, at least 384 entries each, at most 1024.
        assert_eq!(default_shards_for(20_000, 2), 32);
        assert_eq!(default_shards_for(100_000, 2), 128);
        assert_eq!(default_shards_for(100_000, 16), 256);
        assert_eq!(default_shards_for(1 << 30, 64), MAX_DEFAULT_SHARDS);
        assert_eq!(default_shards_for(u64::MAX, usize::MAX), MAX_DEFAULT_SHARDS);
        assert_eq!(default_shards_for(1 << 20, 1), 64);
        // Weighted caches: 4 shards per core, at least 4096 units of weight each, so that
        // one entry may weigh an eighth of the capacity on two cores.
        assert_eq!(default_weighted_shards_for(64 << 20, 2), 8);
        assert_eq!(default_weighted_shards_for(1 << 20, 64), 256);
        assert_eq!(default_weighted_shards_for(10_000, 2), 2);
        assert_eq!(default_weighted_shards_for(4095, 2), 1);
        assert_eq!(default_weighted_shards_for(u64::MAX, usize::MAX), MAX_DEFAULT_SHARDS);
        for cap in [1u64, 5000, 16_384, 100_000, 1 << 24] {
            for cores in [1, 2, 3, 16, 96] {
                let n = default_shards_for(cap, cores);
                assert!(n.is_power_of_two() && n <= MAX_DEFAULT_SHARDS, "{cap} {cores}: {n}");
                assert!(n == 1 || cap / n as u64 >= MIN_LARGE_SHARD_CAPACITY, "{cap} {cores}: {n}");
            }
        }
    }
}
