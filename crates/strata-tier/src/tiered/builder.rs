//! The fallible builder of a [`TieredCache`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use strata_core::{Cache, Clock, SystemClock};
use strata_metrics::{Registry, TierMetrics};

use super::core::{Attachment, Core};
use super::slot::Slot;
use super::writeback::WriteBack;
use super::{TieredCache, WriteMode};
use crate::codec::Codec;
use crate::tier::Tier;
use crate::{Error, Result};

/// Configures a [`TieredCache`]; start with [`TieredCache::builder`] (postcard codecs) or
/// [`TieredCacheBuilder::with_codecs`].
#[must_use = "a builder does nothing until build() is called"]
pub struct TieredCacheBuilder<K, V> {
    tiers: Vec<(Arc<dyn Tier>, Option<Duration>)>,
    keys: Arc<dyn Codec<K>>,
    values: Arc<dyn Codec<V>>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    write_mode: WriteMode,
    writeback_retries: u32,
    writeback_workers: usize,
    breaker: (u32, Duration),
    negative: Option<(Duration, u64)>,
    near_cache_max_ttl: Option<Duration>,
    ttl: Option<Duration>,
    lock_stripes: usize,
    dirty_limit: usize,
    metrics: Option<(Arc<Registry>, String)>,
}

impl<K, V> fmt::Debug for TieredCacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.tiers.iter().map(|(t, _)| t.name()).collect();
        f.debug_struct("TieredCacheBuilder")
            .field("tiers", &names)
            .field("timeout", &self.timeout)
            .field("write_mode", &self.write_mode)
            .field("breaker", &self.breaker)
            .field("negative", &self.negative)
            .field("near_cache_max_ttl", &self.near_cache_max_ttl)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<K, V> TieredCacheBuilder<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// The default timeout of every tier call: 1 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Consecutive failures that open a tier's circuit breaker, by default.
    pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
    /// How long an open breaker refuses calls before it lets one probe through, by default.
    pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(5);
    /// The longest life of an entry in a tier above a shared tier, unless set otherwise.
    pub const DEFAULT_NEAR_CACHE_MAX_TTL: Duration = Duration::from_secs(60);

    /// Starts configuring a cache with these codecs for keys and values.
    pub fn with_codecs(keys: impl Codec<K>, values: impl Codec<V>) -> Self {
        TieredCacheBuilder {
            tiers: Vec::new(),
            keys: Arc::new(keys),
            values: Arc::new(values),
            clock: Arc::new(SystemClock),
            timeout: Self::DEFAULT_TIMEOUT,
            write_mode: WriteMode::Through,
            writeback_retries: 2,
            writeback_workers: 4,
            breaker: (Self::DEFAULT_BREAKER_THRESHOLD, Self::DEFAULT_BREAKER_COOL_DOWN),
            negative: None,
            near_cache_max_ttl: None,
            ttl: None,
            lock_stripes: 1024,
            dirty_limit: 65_536,
            metrics: None,
        }
    }

    /// Adds the next tier, below those added before (add the fastest first).
    pub fn tier(mut self, tier: Arc<dyn Tier>) -> Self {
        self.tiers.push((tier, None));
        self
    }

    /// Adds the next tier with a timeout of its own.
    pub fn tier_with_timeout(mut self, tier: Arc<dyn Tier>, timeout: Duration) -> Self {
        self.tiers.push((tier, Some(timeout)));
        self
    }

    /// The codec for keys.
    pub fn key_codec(mut self, codec: impl Codec<K>) -> Self {
        self.keys = Arc::new(codec);
        self
    }

    /// The codec for values.
    pub fn value_codec(mut self, codec: impl Codec<V>) -> Self {
        self.values = Arc::new(codec);
        self
    }

    /// The clock whose wall time turns TTLs into absolute expiries and decides what is
    /// expired (a [`ManualClock`](strata_core::ManualClock) in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The timeout of every tier call without one of its own ([`Self::DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Write-through (the default) or write-back.
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.write_mode = mode;
        self
    }

    /// How many times the write-back worker retries a failed write to a tier (2 by default),
    /// with a backoff doubling from 10 ms up to at most 2 s per retry (a lane holds the later
    /// writes of its keys while it waits, so a job holds it at most `retries` times 2 s plus
    /// the tier's timeout); never against an open breaker, nor after the tier
    /// refused the key or value itself ([`Error::TooLarge`], [`Error::Codec`],
    /// [`Error::Refused`]), which a retry cannot change soon.
    pub fn writeback_retries(mut self, retries: u32) -> Self {
        self.writeback_retries = retries;
        self
    }

    /// How many workers apply the write-back queue (4 by default, at most 64). Each key is
    /// always applied by the same worker, in order; more workers let writes of different keys
    /// to a slow tier overlap.
    pub fn writeback_workers(mut self, workers: usize) -> Self {
        self.writeback_workers = workers;
        self
    }

    /// A tier's breaker opens after `failures` consecutive failed calls (errors that say the
    /// tier is unhealthy: timeouts, IO, connection errors; not a write the tier refused, such
    /// as [`Error::TooLarge`] or [`Error::Refused`]) and lets one probe through after
    /// `cool_down`; the probe's success closes it.
    pub fn circuit_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.breaker = (failures, cool_down);
        self
    }

    /// Remembers a miss in every tier for `ttl`, for at most `capacity` keys, so that repeated
    /// lookups of absent keys do not reach the lower tiers. A write of the key forgets it.
    pub fn negative_caching(mut self, ttl: Duration, capacity: u64) -> Self {
        self.negative = Some((ttl, capacity));
        self
    }

    /// Caps the life of every entry held in the tiers above the first shared tier (one whose
    /// [`Tier::invalidations`] is `Some`), so that a lost invalidation is forgotten after at
    /// most this long. With a shared tier and no cap set, [`Self::DEFAULT_NEAR_CACHE_MAX_TTL`]
    /// applies.
    pub fn near_cache_max_ttl(mut self, max: Duration) -> Self {
        self.near_cache_max_ttl = Some(max);
        self
    }

    /// The TTL of entries written by [`TieredCache::insert`] and loads (none by default).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The number of per-key lock stripes, a power of two (1024 by default). Keys sharing a
    /// stripe wait for each other's writes and lower-tier reads.
    pub fn lock_stripes(mut self, stripes: usize) -> Self {
        self.lock_stripes = stripes;
        self
    }

    /// How many keys per tier are remembered as possibly stale after failed writes (65 536 by
    /// default) before the whole tier is distrusted until it has been cleared.
    pub fn dirty_key_limit(mut self, limit: usize) -> Self {
        self.dirty_limit = limit;
        self
    }

    /// Registers each tier's metrics in `registry` with the label `tier="<name>/<tier name>"`.
    /// Without it, a private registry (see [`TieredCache::metrics_registry`]) labels them with
    /// the tier's name alone.
    pub fn metrics(mut self, registry: Arc<Registry>, name: impl Into<String>) -> Self {
        self.metrics = Some((registry, name.into()));
        self
    }

    /// Checks the configuration and builds the cache. Needs a tokio runtime when write-back
    /// is on or a tier has invalidations (their tasks start here).
    ///
    /// # Runtime
    ///
    /// Every call of the cache bounds each tier call with a tokio timer, so the cache must be
    /// used inside a tokio runtime built with the time driver (`enable_time()` or
    /// `enable_all()` on [`tokio::runtime::Builder`]; `#[tokio::main]` has it). A call made
    /// outside a runtime, or on a runtime without the time driver, fails with
    /// [`Error::InvalidConfig`] saying so, before any tier is touched; it never panics.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the setting: no tiers, two tiers with one name, a zero
    /// timeout, TTL, cool-down, threshold, queue capacity or negative-cache setting,
    /// write-back with a single tier or with 0 or more than 64 workers, a stripe count that is
    /// not a power of two, or no runtime (or one without the time driver) where one is needed;
    /// and a shared tier (one with [`Tier::invalidations`], such as a Redis tier) whose
    /// instance another open cache already uses. Such a tier skips the notices of its own
    /// writes, so two caches over one instance would not hear each other's writes: give each
    /// cache its own instance (as two processes would have). Closing or dropping the first
    /// cache frees the instance.
    pub fn build(self) -> Result<TieredCache<K, V>> {
        let bad = |msg: &str| Err(Error::InvalidConfig(msg.to_owned()));
        if self.tiers.is_empty() {
            return bad("a tiered cache needs at least one tier");
        }
        let mut names = HashSet::new();
        for (tier, timeout) in &self.tiers {
            if !names.insert(tier.name()) {
                return Err(Error::InvalidConfig(format!(
                    "two tiers are named {:?}; names label metrics and must differ",
                    tier.name()
                )));
            }
            if timeout.unwrap_or(self.timeout).is_zero() {
                return Err(Error::InvalidConfig(format!(
                    "the timeout of tier {:?} must be greater than zero",
                    tier.name()
                )));
            }
        }
        if self.breaker.0 == 0 {
            return bad("the circuit breaker's failure threshold must be at least 1");
        }
        if self.breaker.1.is_zero() {
            return bad("the circuit breaker's cool-down must be greater than zero");
        }
        if let Some((ttl, cap)) = self.negative {
            if ttl.is_zero() || cap == 0 {
                return bad("negative caching needs a TTL and a capacity greater than zero");
            }
        }
        if self.near_cache_max_ttl.is_some_and(|d| d.is_zero()) {
            return bad("near_cache_max_ttl must be greater than zero");
        }
        if self.ttl.is_some_and(|d| d.is_zero()) {
            return bad("time_to_live must be greater than zero");
        }
        if self.lock_stripes == 0
            || !self.lock_stripes.is_power_of_two()
            || self.lock_stripes > 1 << 16
        {
            return bad("lock_stripes must be a power of two no larger than 65536");
        }
        if self.dirty_limit == 0 {
            return bad("dirty_key_limit must be at least 1");
        }
        if let WriteMode::Back { capacity, .. } = self.write_mode {
            if capacity == 0 || u32::try_from(capacity).is_err() {
                return bad("the write-back queue's capacity must be between 1 and u32::MAX");
            }
            if !(1..=64).contains(&self.writeback_workers) {
                return bad("writeback_workers must be between 1 and 64");
            }
            if self.tiers.len() < 2 {
                return bad("write-back needs a tier below the top one to write back to");
            }
        }
        // Subscribed once, here: each call may open a new stream.
        let streams: Vec<_> = self.tiers.iter().map(|(t, _)| t.invalidations()).collect();
        let needs_runtime = matches!(self.write_mode, WriteMode::Back { .. })
            || streams.iter().any(Option::is_some);
        if needs_runtime && crate::rt::require_timers().is_err() {
            return bad(
                "write-back and invalidation streams need a tokio runtime with the time driver \
                 (enable_time() or enable_all()): build inside one",
            );
        }
        let first_shared = streams.iter().position(Option::is_some);
        let near_cap = first_shared
            .map(|_| self.near_cache_max_ttl.unwrap_or(Self::DEFAULT_NEAR_CACHE_MAX_TTL));

        let registry = self.metrics.as_ref().map_or_else(Arc::default, |(r, _)| Arc::clone(r));
        let mut slots = Vec::with_capacity(self.tiers.len());
        for (i, (tier, timeout)) in self.tiers.into_iter().enumerate() {
            let label = match &self.metrics {
                Some((_, name)) => format!("{name}/{}", tier.name()),
                None => tier.name().to_owned(),
            };
            let metrics = TierMetrics::register(&registry, &label)
                .map_err(|e| Error::InvalidConfig(format!("cannot register tier metrics: {e}")))?;
            let max_ttl = match first_shared {
                Some(shared) if i < shared => near_cap,
                _ => None,
            };
            slots.push(Slot::new(
                tier,
                timeout.unwrap_or(self.timeout),
                self.breaker,
                metrics,
                max_ttl,
                self.dirty_limit,
            ));
        }
        let slots: Arc<[Slot]> = slots.into();

        let negative = match self.negative {
            Some((ttl, capacity)) => Some(
                Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(ttl)
                    .clock(Arc::clone(&self.clock))
                    .record_stats(false)
                    .build()?,
            ),
            None => None,
        };
        // The last fallible step, before any task starts.
        let shared = slots.iter().zip(&streams).filter(|(_, s)| s.is_some()).map(|(s, _)| &s.tier);
        let attachment = Attachment::claim(shared).map_err(|tier| {
            Error::InvalidConfig(format!(
                "tier {tier:?} is already attached to another open TieredCache: a shared tier \
                 skips the invalidation notices of its own writes, so the two caches would \
                 never hear each other's writes; build one tier instance per cache"
            ))
        })?;
        let writeback = match self.write_mode {
            WriteMode::Through => None,
            WriteMode::Back { capacity, on_full } => Some(WriteBack::start(
                Arc::clone(&slots),
                capacity,
                on_full,
                self.writeback_workers,
                self.writeback_retries,
                Arc::clone(&self.clock),
            )),
        };
        let core = Arc::new(Core::new(
            slots,
            self.clock,
            self.lock_stripes,
            negative,
            writeback,
            registry,
            attachment,
        ));
        for (i, stream) in streams.into_iter().enumerate() {
            if let Some(rx) = stream {
                core.watch(i, rx);
            }
        }
        Ok(TieredCache { core, keys: self.keys, values: self.values, ttl: self.ttl })
    }
}
