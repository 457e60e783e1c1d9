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
/// The local disk tier (feature `disk`).
#[cfg(feature = "disk")]
pub use strata_tier::disk::DiskTier;
/// The durable cache and its transactions (feature `wal`).
#[cfg(feature = "wal")]
pub use strata_tier::durable::{DurableCache, DurableOptions, RecoveryStats, Transaction};
/// The memory tier (feature `tier`).
#[cfg(feature = "tier")]
pub use strata_tier::memory::MemoryTier;
/// The Redis tier (feature `redis`).
#[cfg(feature = "redis")]
pub use strata_tier::redis::RedisTier;
/// The tiered cache over memory, disk and Redis (feature `tier`).
#[cfg(feature = "tier")]
pub use strata_tier::tiered::{
    OnFull, TierFailure, TieredCache, TieredCacheBuilder, WriteMode, WriteReport,
};
/// The write-ahead log (the `strata-wal` crate; feature `wal`).
#[cfg(feature = "wal")]
pub use strata_wal as wal;
