#![doc = include_str!("../../../README.md")]
#![forbid(unsafe_code)]

pub use strata_core::*;

/// Eviction and admission policies (the `strata-evict` crate).
pub use strata_evict as evict;
/// Counters, histograms and exposition (the `strata-metrics` crate).
pub use strata_metrics as metrics;
