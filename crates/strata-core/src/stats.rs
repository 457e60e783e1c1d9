//! Statistics: the cache records into a [`CacheMetrics`] bundle registered in a
//! [`Registry`](strata_metrics::Registry) (striped counters, a load-latency histogram), and
//! [`Cache::stats`](crate::Cache::stats) copies it into a plain [`CacheStats`].
//!
//! The bundle lives in an `Option`: with statistics off the cache holds `None`, and every
//! recording site is one predictable branch with no atomics.

use strata_metrics::CacheMetrics;

/// A point-in-time copy of a cache's statistics.
///
/// Counters are exact once writers pause; taken while they run, each counter is exact at
/// some instant but the counters are not read atomically together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing (or an expired entry).
    pub misses: u64,
    /// New entries written.
    pub inserts: u64,
    /// Values replaced for keys already present.
    pub updates: u64,
    /// Entries removed by the user (remove, invalidate).
    pub removals: u64,
    /// Entries evicted to respect the capacity (admission rejections included).
    pub evictions: u64,
    /// Entries removed because they expired.
    pub expirations: u64,
    /// New entries the admission policy refused (counted in `evictions` too).
    pub admission_rejections: u64,
    /// Loader calls that produced a value.
    pub loads_ok: u64,
    /// Loader calls that failed: errors (which are not cached), panics, and leaders
    /// cancelled before their loader finished.
    pub loads_failed: u64,
    /// Total time spent in loaders, in nanoseconds.
    pub load_nanos: u64,
    /// Background refreshes started.
    pub refreshes: u64,
    /// Entries held when the snapshot was taken.
    pub entry_count: u64,
    /// Total weight held when the snapshot was taken.
    pub weighted_size: u64,
}

impl CacheStats {
    /// Hits over requests; 0 when there were no requests.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    /// Misses over requests; 0 when there were no requests.
    pub fn miss_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.misses as f64 / total as f64
        }
    }

    /// Failed loads over all loads; 0 when nothing was loaded.
    pub fn load_failure_ratio(&self) -> f64 {
        let n = self.loads_ok + self.loads_failed;
        if n == 0 {
            0.0
        } else {
            self.loads_failed as f64 / n as f64
        }
    }

    /// Mean loader time in nanoseconds; 0 when nothing was loaded.
    pub fn average_load_nanos(&self) -> f64 {
        let n = self.loads_ok + self.loads_failed;
        if n == 0 {
            0.0
        } else {
            self.load_nanos as f64 / n as f64
        }
    }
}

/// Copies the live figures of `m` into a [`CacheStats`]; `entry_count` and `weighted_size`
/// are the cache's own figures, read by the caller.
pub(crate) fn snapshot(m: &CacheMetrics, entry_count: u64, weighted_size: u64) -> CacheStats {
    CacheStats {
        hits: m.hits.get(),
        misses: m.misses.get(),
        inserts: m.inserts.get(),
        updates: m.updates.get(),
        removals: m.removals.get(),
        evictions: m.evictions_size.get(),
        expirations: m.expirations.get(),
        admission_rejections: m.admission_rejections.get(),
        loads_ok: m.load_successes.get(),
        loads_failed: m.load_failures.get(),
        // The histogram's sum is exact (only its buckets are approximate).
        load_nanos: m.load_duration.snapshot().sum(),
        refreshes: m.refreshes.get(),
        entry_count,
        weighted_size,
    }
}
