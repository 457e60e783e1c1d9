//! Statistics: striped counters on the hot path, a plain snapshot for users.

use strata_metrics::Counter;

/// The live counters of one cache.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) inserts: Counter,
    pub(crate) updates: Counter,
    pub(crate) removals: Counter,
    pub(crate) evictions_size: Counter,
    pub(crate) expirations: Counter,
    pub(crate) rejections: Counter,
    pub(crate) loads_ok: Counter,
    pub(crate) loads_err: Counter,
    pub(crate) load_nanos: Counter,
    pub(crate) refreshes: Counter,
}

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
    /// Loader calls that failed (errors are not cached).
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

impl Counters {
    pub(crate) fn snapshot(&self, entry_count: u64, weighted_size: u64) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            inserts: self.inserts.get(),
            updates: self.updates.get(),
            removals: self.removals.get(),
            evictions: self.evictions_size.get(),
            expirations: self.expirations.get(),
            admission_rejections: self.rejections.get(),
            loads_ok: self.loads_ok.get(),
            loads_failed: self.loads_err.get(),
            load_nanos: self.load_nanos.get(),
            refreshes: self.refreshes.get(),
            entry_count,
            weighted_size,
        }
    }
}
