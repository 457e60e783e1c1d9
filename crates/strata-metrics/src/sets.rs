//! Ready-made bundles of handles for the cache, the write-ahead log and the tiers.
//!
//! Each bundle registers its canonical families (from [`names`](crate::names)) with the
//! owner's label once, at build time, and keeps `Arc` handles, so recording is a field access
//! and one atomic add; it never looks anything up by name.

use crate::counter::Counter;
use crate::error::Result;
use crate::gauge::Gauge;
use crate::histogram::{Histogram, HistogramSnapshot};
use crate::names::{self, cause, labels, op, result};
use crate::registry::{GaugeFn, Registry};
use std::sync::Arc;
use std::time::Duration;

/// Why the cache removed an entry on its own initiative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionCause {
    /// The capacity policy chose it.
    Size,
    /// Its time to live, time to idle, or per-entry expiry passed.
    Expired,
}

/// The handles one cache records into; all series carry `cache="<name>"`.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// `strata_cache_hits_total`.
    pub hits: Arc<Counter>,
    /// `strata_cache_misses_total`.
    pub misses: Arc<Counter>,
    /// `strata_cache_inserts_total`.
    pub inserts: Arc<Counter>,
    /// `strata_cache_updates_total`.
    pub updates: Arc<Counter>,
    /// `strata_cache_removals_total` (explicit removals).
    pub removals: Arc<Counter>,
    /// `strata_cache_evictions_total{cause="size"}`.
    pub evictions_size: Arc<Counter>,
    /// `strata_cache_evictions_total{cause="expired"}`: the expiration count.
    pub expirations: Arc<Counter>,
    /// `strata_cache_loads_total{result="success"}`.
    pub load_successes: Arc<Counter>,
    /// `strata_cache_loads_total{result="failure"}`.
    pub load_failures: Arc<Counter>,
    /// `strata_cache_load_duration_seconds` (nanoseconds recorded).
    pub load_duration: Arc<Histogram>,
    /// `strata_cache_refreshes_total`.
    pub refreshes: Arc<Counter>,
    /// `strata_cache_admission_rejections_total`.
    pub admission_rejections: Arc<Counter>,
}

impl CacheMetrics {
    /// Registers the cache's counters and load histogram for cache `name` in `registry`.
    /// Registering the same name twice returns handles to the same series. The entry-count and
    /// weighted-size gauges are registered apart, by [`register_size_gauges`](Self::register_size_gauges),
    /// because they read the cache itself, which usually does not exist yet at this point.
    pub fn register(registry: &Registry, name: &str) -> Result<Self> {
        let l = [(labels::CACHE, name)];
        let c = |d| registry.counter(d, &l);
        let evict = |why| {
            registry
                .counter(&names::CACHE_EVICTIONS, &[(labels::CACHE, name), (labels::CAUSE, why)])
        };
        let load = |r| {
            registry.counter(&names::CACHE_LOADS, &[(labels::CACHE, name), (labels::RESULT, r)])
        };
        Ok(Self {
            hits: c(&names::CACHE_HITS)?,
            misses: c(&names::CACHE_MISSES)?,
            inserts: c(&names::CACHE_INSERTS)?,
            updates: c(&names::CACHE_UPDATES)?,
            removals: c(&names::CACHE_REMOVALS)?,
            evictions_size: evict(cause::SIZE)?,
            expirations: evict(cause::EXPIRED)?,
            load_successes: load(result::SUCCESS)?,
            load_failures: load(result::FAILURE)?,
            load_duration: registry.histogram(&names::CACHE_LOAD_DURATION, &l)?,
            refreshes: c(&names::CACHE_REFRESHES)?,
            admission_rejections: c(&names::CACHE_ADMISSION_REJECTIONS)?,
        })
    }

    /// Counts one eviction by `cause`.
    #[inline]
    pub fn record_eviction(&self, cause: EvictionCause) {
        match cause {
            EvictionCause::Size => self.evictions_size.incr(),
            EvictionCause::Expired => self.expirations.incr(),
        }
    }

    /// Counts one finished load and records how long it took.
    #[inline]
    pub fn record_load(&self, ok: bool, took: Duration) {
        if ok { &self.load_successes } else { &self.load_failures }.incr();
        self.load_duration.record_duration(took);
    }

    /// Registers `strata_cache_entries` and `strata_cache_weighted_size` for cache `name` as
    /// functions read at each snapshot, so the hot path pays nothing for them. The functions
    /// typically hold a `Weak` to the cache and return 0 once it is gone; registering again
    /// (a cache rebuilt under the same name) replaces them.
    pub fn register_size_gauges(
        registry: &Registry,
        name: &str,
        entries: GaugeFn,
        weighted_size: GaugeFn,
    ) -> Result<()> {
        let l = [(labels::CACHE, name)];
        registry.gauge_fn(&names::CACHE_ENTRIES, &l, entries)?;
        registry.gauge_fn(&names::CACHE_WEIGHTED_SIZE, &l, weighted_size)
    }

    /// The figures as of now, with derived ratios; `entries` and `weighted_size` are the
    /// cache's own live figures.
    pub fn stats(&self, entries: u64, weighted_size: u64) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            inserts: self.inserts.get(),
            updates: self.updates.get(),
            removals: self.removals.get(),
            evictions_size: self.evictions_size.get(),
            expirations: self.expirations.get(),
            load_successes: self.load_successes.get(),
            load_failures: self.load_failures.get(),
            refreshes: self.refreshes.get(),
            admission_rejections: self.admission_rejections.get(),
            entries,
            weighted_size,
            load_duration: self.load_duration.snapshot(),
        }
    }
}

/// A cache's statistics at one moment (`cache.stats()`): raw totals plus derived ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// New entries.
    pub inserts: u64,
    /// Replaced values.
    pub updates: u64,
    /// Explicit removals.
    pub removals: u64,
    /// Evictions by the capacity policy.
    pub evictions_size: u64,
    /// Evictions by expiry.
    pub expirations: u64,
    /// Loads that produced a value.
    pub load_successes: u64,
    /// Loads that failed, panicked or were cancelled.
    pub load_failures: u64,
    /// Background refreshes started.
    pub refreshes: u64,
    /// Candidates refused by admission.
    pub admission_rejections: u64,
    /// Entries held when the figures were taken.
    pub entries: u64,
    /// Total weight held when the figures were taken.
    pub weighted_size: u64,
    /// Load latency in nanoseconds.
    pub load_duration: HistogramSnapshot,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl CacheStats {
    /// Hits plus misses.
    pub fn requests(&self) -> u64 {
        self.hits.saturating_add(self.misses)
    }

    /// Hits over requests; `None` before the first request.
    pub fn hit_ratio(&self) -> Option<f64> {
        ratio(self.hits, self.requests())
    }

    /// Misses over requests; `None` before the first request.
    pub fn miss_ratio(&self) -> Option<f64> {
        ratio(self.misses, self.requests())
    }

    /// All evictions, by size and by expiry.
    pub fn evictions(&self) -> u64 {
        self.evictions_size.saturating_add(self.expirations)
    }

    /// Failed loads over all loads; `None` before the first load.
    pub fn load_failure_ratio(&self) -> Option<f64> {
        ratio(self.load_failures, self.load_successes.saturating_add(self.load_failures))
    }

    /// The mean load time; `None` before the first load.
    pub fn mean_load_time(&self) -> Option<Duration> {
        self.load_duration.mean().map(|ns| Duration::from_nanos(ns as u64))
    }
}

/// The handles of one tier operation (get, put or remove).
#[derive(Debug, Clone)]
pub struct TierOpMetrics {
    /// `strata_tier_errors_total{op}`.
    pub errors: Arc<Counter>,
    /// `strata_tier_timeouts_total{op}`.
    pub timeouts: Arc<Counter>,
    /// `strata_tier_operation_duration_seconds{op}` (nanoseconds recorded).
    pub duration: Arc<Histogram>,
}

impl TierOpMetrics {
    fn register(registry: &Registry, tier: &str, op: &str) -> Result<Self> {
        let l = [(labels::TIER, tier), (labels::OP, op)];
        Ok(Self {
            errors: registry.counter(&names::TIER_ERRORS, &l)?,
            timeouts: registry.counter(&names::TIER_TIMEOUTS, &l)?,
            duration: registry.histogram(&names::TIER_OPERATION_DURATION, &l)?,
        })
    }
}

/// A circuit breaker's state, as the `strata_tier_circuit_breaker_state` gauge encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow (0).
    Closed = 0,
    /// A trial call is allowed (1).
    HalfOpen = 1,
    /// Calls are refused (2).
    Open = 2,
}

/// The handles one tier records into; all series carry `tier="<name>"`.
#[derive(Debug, Clone)]
pub struct TierMetrics {
    /// `strata_tier_hits_total`.
    pub hits: Arc<Counter>,
    /// `strata_tier_misses_total`.
    pub misses: Arc<Counter>,
    /// `strata_tier_promotions_total`.
    pub promotions: Arc<Counter>,
    /// `strata_tier_circuit_breaker_state`.
    pub circuit_state: Arc<Gauge>,
    /// `strata_tier_writeback_queue_depth`.
    pub writeback_queue_depth: Arc<Gauge>,
    /// `strata_tier_writeback_rejections_total`.
    pub writeback_rejections: Arc<Counter>,
    /// Reads.
    pub get: TierOpMetrics,
    /// Writes.
    pub put: TierOpMetrics,
    /// Deletes.
    pub remove: TierOpMetrics,
}

impl TierMetrics {
    /// Registers the tier families for tier `name` in `registry`.
    pub fn register(registry: &Registry, name: &str) -> Result<Self> {
        let l = [(labels::TIER, name)];
        Ok(Self {
            hits: registry.counter(&names::TIER_HITS, &l)?,
            misses: registry.counter(&names::TIER_MISSES, &l)?,
            promotions: registry.counter(&names::TIER_PROMOTIONS, &l)?,
            circuit_state: registry.gauge(&names::TIER_CIRCUIT_STATE, &l)?,
            writeback_queue_depth: registry.gauge(&names::TIER_WRITEBACK_QUEUE_DEPTH, &l)?,
            writeback_rejections: registry.counter(&names::TIER_WRITEBACK_REJECTIONS, &l)?,
            get: TierOpMetrics::register(registry, name, op::GET)?,
            put: TierOpMetrics::register(registry, name, op::PUT)?,
            remove: TierOpMetrics::register(registry, name, op::REMOVE)?,
        })
    }

    /// Publishes the circuit breaker's state.
    pub fn set_circuit_state(&self, state: CircuitState) {
        self.circuit_state.set(state as i64);
    }
}

/// The handles one write-ahead log records into; all series carry `wal="<name>"`.
#[derive(Debug, Clone)]
pub struct WalMetrics {
    /// `strata_wal_appends_total`.
    pub appends: Arc<Counter>,
    /// `strata_wal_appended_bytes_total`.
    pub appended_bytes: Arc<Counter>,
    /// `strata_wal_fsync_duration_seconds` (nanoseconds recorded; its count is the fsyncs).
    pub fsync_duration: Arc<Histogram>,
    /// `strata_wal_checkpoint_duration_seconds`.
    pub checkpoint_duration: Arc<Histogram>,
    /// `strata_wal_recovery_duration_seconds`.
    pub recovery_duration: Arc<Histogram>,
    /// `strata_wal_recovered_records_total`.
    pub recovered_records: Arc<Counter>,
    /// `strata_wal_recovered_bytes_total`.
    pub recovered_bytes: Arc<Counter>,
    /// `strata_wal_recovery_skipped_records_total`.
    pub recovery_skipped_records: Arc<Counter>,
    /// `strata_wal_recovery_truncated_bytes_total`.
    pub recovery_truncated_bytes: Arc<Counter>,
}

impl WalMetrics {
    /// Registers the WAL families for log `name` in `registry`.
    pub fn register(registry: &Registry, name: &str) -> Result<Self> {
        let l = [(labels::WAL, name)];
        Ok(Self {
            appends: registry.counter(&names::WAL_APPENDS, &l)?,
            appended_bytes: registry.counter(&names::WAL_APPENDED_BYTES, &l)?,
            fsync_duration: registry.histogram(&names::WAL_FSYNC_DURATION, &l)?,
            checkpoint_duration: registry.histogram(&names::WAL_CHECKPOINT_DURATION, &l)?,
            recovery_duration: registry.histogram(&names::WAL_RECOVERY_DURATION, &l)?,
            recovered_records: registry.counter(&names::WAL_RECOVERED_RECORDS, &l)?,
            recovered_bytes: registry.counter(&names::WAL_RECOVERED_BYTES, &l)?,
            recovery_skipped_records: registry.counter(&names::WAL_RECOVERY_SKIPPED_RECORDS, &l)?,
            recovery_truncated_bytes: registry.counter(&names::WAL_RECOVERY_TRUNCATED_BYTES, &l)?,
        })
    }

    /// Counts one appended record of `bytes` bytes.
    #[inline]
    pub fn record_append(&self, bytes: u64) {
        self.appends.incr();
        self.appended_bytes.add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_derive_ratios() {
        let r = Registry::new();
        let m = CacheMetrics::register(&r, "c").unwrap();
        assert_eq!(m.stats(0, 0).hit_ratio(), None);
        m.hits.add(3);
        m.misses.incr();
        m.record_eviction(EvictionCause::Size);
        m.record_eviction(EvictionCause::Expired);
        m.record_eviction(EvictionCause::Expired);
        m.record_load(true, Duration::from_micros(10));
        m.record_load(false, Duration::from_micros(30));
        let s = m.stats(7, 70);
        assert_eq!((s.entries, s.weighted_size), (7, 70));
        assert_eq!(s.hit_ratio(), Some(0.75));
        assert_eq!(s.miss_ratio(), Some(0.25));
        assert_eq!((s.evictions_size, s.expirations, s.evictions()), (1, 2, 3));
        assert_eq!(s.load_failure_ratio(), Some(0.5));
        assert_eq!(s.mean_load_time(), Some(Duration::from_micros(20)));
        // The same figures are visible through the registry.
        let snap = r.snapshot();
        assert_eq!(snap.counter_sum("strata_cache_evictions_total", &[("cause", "expired")]), 2);
        assert_eq!(snap.counter_sum("strata_cache_loads_total", &[("cache", "c")]), 2);
    }

    #[test]
    fn tier_and_wal_register_side_by_side() {
        let r = Registry::new();
        let redis = TierMetrics::register(&r, "redis").unwrap();
        let disk = TierMetrics::register(&r, "disk").unwrap();
        redis.get.timeouts.incr();
        redis.set_circuit_state(CircuitState::Open);
        disk.put.errors.add(2);
        let wal = WalMetrics::register(&r, "main").unwrap();
        wal.record_append(100);
        wal.record_append(28);
        let snap = r.snapshot();
        assert_eq!(
            snap.counter_sum("strata_tier_timeouts_total", &[("tier", "redis"), ("op", "get")]),
            1
        );
        assert_eq!(snap.counter_sum("strata_tier_errors_total", &[("tier", "disk")]), 2);
        assert_eq!(snap.gauge("strata_tier_circuit_breaker_state", &[("tier", "redis")]), Some(2));
        assert_eq!(snap.counter_sum("strata_wal_appended_bytes_total", &[]), 128);
    }
}
