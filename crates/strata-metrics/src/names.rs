//! The canonical metric families of the whole project, in one place.
//!
//! Every Strata crate records under these names, so dashboards and alerts written against one
//! version keep working. Label names are the constants in [`labels`]; label values that are
//! fixed vocabularies (causes, results, operations) are constants too. The catalogue, with the
//! meaning of each family, is rendered in `docs/metrics.md`.

use crate::desc::{MetricDesc, MetricKind, Unit};

/// Label names shared by the families.
pub mod labels {
    /// The cache's name, chosen by the user when building it.
    pub const CACHE: &str = "cache";
    /// Why an entry left the cache on the cache's own initiative.
    pub const CAUSE: &str = "cause";
    /// Whether an operation succeeded (`success`) or failed (`failure`).
    pub const RESULT: &str = "result";
    /// The tier's name (`memory`, `disk`, `redis`, or the user's).
    pub const TIER: &str = "tier";
    /// The tier operation (`get`, `put`, `remove`).
    pub const OP: &str = "op";
    /// The write-ahead log's name.
    pub const WAL: &str = "wal";
}

/// Values of the [`labels::CAUSE`] label of [`CACHE_EVICTIONS`].
pub mod cause {
    /// Evicted by the policy to respect the capacity (entries or weight).
    pub const SIZE: &str = "size";
    /// Removed because its time to live, time to idle or per-entry expiry passed.
    pub const EXPIRED: &str = "expired";
}

/// Values of the [`labels::RESULT`] label.
pub mod result {
    /// The operation succeeded.
    pub const SUCCESS: &str = "success";
    /// The operation failed (an error, a panic, or a dropped future).
    pub const FAILURE: &str = "failure";
}

/// Values of the [`labels::OP`] label of the tier families.
pub mod op {
    /// A read.
    pub const GET: &str = "get";
    /// A write.
    pub const PUT: &str = "put";
    /// A delete.
    pub const REMOVE: &str = "remove";
}

/// Exposition bounds, in seconds, for operations from a microsecond to ten seconds (lookups,
/// loads, tier calls, fsyncs): the 1-2.5-5 series.
pub const LATENCY_BOUNDS_SECONDS: &[f64] = &[
    0.000_001,
    0.000_002_5,
    0.000_005,
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
];

/// Exposition bounds, in seconds, for rare long operations (checkpoints, recovery): a
/// millisecond to ten minutes.
pub const LONG_BOUNDS_SECONDS: &[f64] =
    &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0];

const CACHE_LABELS: &[&str] = &[labels::CACHE];
const TIER_LABELS: &[&str] = &[labels::TIER];
const TIER_OP_LABELS: &[&str] = &[labels::TIER, labels::OP];
const WAL_LABELS: &[&str] = &[labels::WAL];

const fn counter(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> MetricDesc {
    MetricDesc { name, help, kind: MetricKind::Counter, unit: Unit::None, labels, bounds: &[] }
}

const fn gauge(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> MetricDesc {
    MetricDesc { name, help, kind: MetricKind::Gauge, unit: Unit::None, labels, bounds: &[] }
}

const fn seconds(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
) -> MetricDesc {
    MetricDesc { name, help, kind: MetricKind::Histogram, unit: Unit::Seconds, labels, bounds }
}

// ---- Cache (strata-core) ----

/// Lookups that found a live entry.
pub const CACHE_HITS: MetricDesc =
    counter("strata_cache_hits_total", "Lookups that found a live entry.", CACHE_LABELS);
/// Lookups that found no live entry.
pub const CACHE_MISSES: MetricDesc =
    counter("strata_cache_misses_total", "Lookups that found no live entry.", CACHE_LABELS);
/// Entries inserted under a key that had none.
pub const CACHE_INSERTS: MetricDesc = counter(
    "strata_cache_inserts_total",
    "Entries inserted under a key that had no live entry.",
    CACHE_LABELS,
);
/// Entries whose value was replaced.
pub const CACHE_UPDATES: MetricDesc =
    counter("strata_cache_updates_total", "Live entries whose value was replaced.", CACHE_LABELS);
/// Entries removed by the user (remove, invalidate).
pub const CACHE_REMOVALS: MetricDesc = counter(
    "strata_cache_removals_total",
    "Entries removed explicitly by the user (remove, invalidate).",
    CACHE_LABELS,
);
/// Entries removed by the cache itself, by cause (`size`, `expired`); the `expired` series is
/// the expiration count.
pub const CACHE_EVICTIONS: MetricDesc = counter(
    "strata_cache_evictions_total",
    "Entries removed by the cache itself, by cause (size: capacity policy; expired: TTL, TTI or per-entry expiry).",
    &[labels::CACHE, labels::CAUSE],
);
/// Loader calls, by result (`success`, `failure`).
pub const CACHE_LOADS: MetricDesc = counter(
    "strata_cache_loads_total",
    "Loader calls completed, by result (success or failure, panics and cancellations included).",
    &[labels::CACHE, labels::RESULT],
);
/// Loader latency.
pub const CACHE_LOAD_DURATION: MetricDesc = seconds(
    "strata_cache_load_duration_seconds",
    "Time a loader took, successful or not.",
    CACHE_LABELS,
    LATENCY_BOUNDS_SECONDS,
);
/// Background refreshes started by refresh-after-write.
pub const CACHE_REFRESHES: MetricDesc = counter(
    "strata_cache_refreshes_total",
    "Background reloads started by refresh-after-write.",
    CACHE_LABELS,
);
/// Candidates the admission policy refused.
pub const CACHE_ADMISSION_REJECTIONS: MetricDesc = counter(
    "strata_cache_admission_rejections_total",
    "Candidate entries the admission policy refused to keep.",
    CACHE_LABELS,
);
/// Live entries.
pub const CACHE_ENTRIES: MetricDesc =
    gauge("strata_cache_entries", "Entries held, as of the last maintenance.", CACHE_LABELS);
/// Total weight of the entries, in the weigher's units.
pub const CACHE_WEIGHTED_SIZE: MetricDesc = gauge(
    "strata_cache_weighted_size",
    "Total weight of the entries held, in the weigher's units (entries when there is no weigher).",
    CACHE_LABELS,
);

// ---- Write-ahead log (strata-wal) ----

/// Records appended.
pub const WAL_APPENDS: MetricDesc =
    counter("strata_wal_appends_total", "Records appended to the log.", WAL_LABELS);
/// Bytes appended, framing included.
pub const WAL_APPENDED_BYTES: MetricDesc = MetricDesc {
    unit: Unit::Bytes,
    ..counter(
        "strata_wal_appended_bytes_total",
        "Bytes appended to the log, framing included.",
        WAL_LABELS,
    )
};
/// fsync (or fdatasync) latency; its `_count` is the number of syncs.
pub const WAL_FSYNC_DURATION: MetricDesc = seconds(
    "strata_wal_fsync_duration_seconds",
    "Time each fsync of the log took; the _count series is the number of fsyncs.",
    WAL_LABELS,
    LATENCY_BOUNDS_SECONDS,
);
/// Checkpoint duration; its `_count` is the number of checkpoints.
pub const WAL_CHECKPOINT_DURATION: MetricDesc = seconds(
    "strata_wal_checkpoint_duration_seconds",
    "Time each checkpoint took; the _count series is the number of checkpoints.",
    WAL_LABELS,
    LONG_BOUNDS_SECONDS,
);
/// Recovery duration.
pub const WAL_RECOVERY_DURATION: MetricDesc = seconds(
    "strata_wal_recovery_duration_seconds",
    "Time each recovery (replay on open) took.",
    WAL_LABELS,
    LONG_BOUNDS_SECONDS,
);
/// Records replayed by recovery.
pub const WAL_RECOVERED_RECORDS: MetricDesc =
    counter("strata_wal_recovered_records_total", "Records replayed by recovery.", WAL_LABELS);
/// Bytes of the records replayed by recovery, framing included.
pub const WAL_RECOVERED_BYTES: MetricDesc = MetricDesc {
    unit: Unit::Bytes,
    ..counter(
        "strata_wal_recovered_bytes_total",
        "Bytes of the records replayed by recovery (snapshot and log), framing included.",
        WAL_LABELS,
    )
};
/// Corrupt records skipped by recovery.
pub const WAL_RECOVERY_SKIPPED_RECORDS: MetricDesc = counter(
    "strata_wal_recovery_skipped_records_total",
    "Corrupt records recovery skipped (only in the skip-corrupt recovery mode).",
    WAL_LABELS,
);
/// Torn-tail bytes truncated by recovery.
pub const WAL_RECOVERY_TRUNCATED_BYTES: MetricDesc = MetricDesc {
    unit: Unit::Bytes,
    ..counter(
        "strata_wal_recovery_truncated_bytes_total",
        "Bytes of torn or corrupt tail recovery truncated.",
        WAL_LABELS,
    )
};

// ---- Tiers (strata-tier) ----

/// Tier reads that found the key.
pub const TIER_HITS: MetricDesc =
    counter("strata_tier_hits_total", "Tier reads that found the key.", TIER_LABELS);
/// Tier reads that did not find the key.
pub const TIER_MISSES: MetricDesc =
    counter("strata_tier_misses_total", "Tier reads that did not find the key.", TIER_LABELS);
/// Tier operation latency, by operation.
pub const TIER_OPERATION_DURATION: MetricDesc = seconds(
    "strata_tier_operation_duration_seconds",
    "Time each tier operation took, by operation (get, put, remove), failures included.",
    TIER_OP_LABELS,
    LATENCY_BOUNDS_SECONDS,
);
/// Tier operations that failed, by operation.
pub const TIER_ERRORS: MetricDesc = counter(
    "strata_tier_errors_total",
    "Tier operations that returned an error, by operation; timeouts are counted separately.",
    TIER_OP_LABELS,
);
/// Tier operations that ran past their deadline, by operation.
pub const TIER_TIMEOUTS: MetricDesc = counter(
    "strata_tier_timeouts_total",
    "Tier operations abandoned at their deadline, by operation.",
    TIER_OP_LABELS,
);
/// Circuit-breaker state: 0 closed, 1 half-open, 2 open.
pub const TIER_CIRCUIT_STATE: MetricDesc = gauge(
    "strata_tier_circuit_breaker_state",
    "Circuit-breaker state of the tier: 0 closed, 1 half-open, 2 open.",
    TIER_LABELS,
);
/// Entries copied from this tier to a faster one after a hit.
pub const TIER_PROMOTIONS: MetricDesc = counter(
    "strata_tier_promotions_total",
    "Entries found in this tier and copied up to a faster tier.",
    TIER_LABELS,
);
/// Writes waiting in the write-back queue.
pub const TIER_WRITEBACK_QUEUE_DEPTH: MetricDesc = gauge(
    "strata_tier_writeback_queue_depth",
    "Writes waiting in the tier's write-back queue.",
    TIER_LABELS,
);
/// Writes refused because the write-back queue was full.
pub const TIER_WRITEBACK_REJECTIONS: MetricDesc = counter(
    "strata_tier_writeback_rejections_total",
    "Writes refused (returned to the caller as an error) because the write-back queue was full.",
    TIER_LABELS,
);

/// Every canonical family, for catalogue tests and documentation.
pub const ALL: &[MetricDesc] = &[
    CACHE_HITS,
    CACHE_MISSES,
    CACHE_INSERTS,
    CACHE_UPDATES,
    CACHE_REMOVALS,
    CACHE_EVICTIONS,
    CACHE_LOADS,
    CACHE_LOAD_DURATION,
    CACHE_REFRESHES,
    CACHE_ADMISSION_REJECTIONS,
    CACHE_ENTRIES,
    CACHE_WEIGHTED_SIZE,
    WAL_APPENDS,
    WAL_APPENDED_BYTES,
    WAL_FSYNC_DURATION,
    WAL_CHECKPOINT_DURATION,
    WAL_RECOVERY_DURATION,
    WAL_RECOVERED_RECORDS,
    WAL_RECOVERED_BYTES,
    WAL_RECOVERY_SKIPPED_RECORDS,
    WAL_RECOVERY_TRUNCATED_BYTES,
    TIER_HITS,
    TIER_MISSES,
    TIER_OPERATION_DURATION,
    TIER_ERRORS,
    TIER_TIMEOUTS,
    TIER_CIRCUIT_STATE,
    TIER_PROMOTIONS,
    TIER_WRITEBACK_QUEUE_DEPTH,
    TIER_WRITEBACK_REJECTIONS,
];
