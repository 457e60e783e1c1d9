#![doc = include_str!("../../../README.md")]
#![forbid(unsafe_code)]

pub use strata_core::*;

/// Eviction and admission policies (the `strata-evict` crate).
pub use strata_evict as evict;
/// Counters, histograms and exposition (the `strata-metrics` crate).
pub use strata_metrics as metrics;

/// Tiers (memory, disk, Redis), the tiered cache, and the durable cache (the `strata-tier`
/// crate; feature `tier`, implied by `disk`, `redis` and `wal`).
#[cfg(feature = "tier")]
pub use strata_tier as tier;
/// The write-ahead log (the `strata-wal` crate; feature `wal`).
#[cfg(feature = "wal")]
pub use strata_wal as wal;
