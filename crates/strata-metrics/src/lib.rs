//! Metrics for Strata: counters, gauges and histograms cheap enough for the hot path, a
//! registry of named, labelled families, the `Recorder` seam, and Prometheus text.
//!
//! **Invariant: recording a value never locks, never allocates, and never fails.** Counters
//! are striped over padded cache lines, each owned by one thread, which adds with a relaxed
//! load and store (the one-time claim of a thread's stripe, on its first add, registers a
//! thread-local destructor; nothing else happens per thread). Histograms are log-linear bucket
//! arrays allocated once and updated with one relaxed `fetch_add`. Everything that can fail or
//! allocate (registration, snapshots, rendering) happens off the hot path, through a
//! [`Registry`].
//!
//! How the pieces fit:
//! - [`Counter`], [`Gauge`], [`Histogram`]: the primitives. A histogram keeps every value's
//!   bucket with relative error at most `2^-(p+1)` (3.125 % at the default precision).
//! - [`MetricDesc`] and [`names`]: the static description of each family and the canonical
//!   catalogue of the whole project (`strata_cache_hits_total`, …).
//! - [`Registry`]: families of labelled series; hands out `Arc` handles; takes a [`Snapshot`].
//! - [`CacheMetrics`], [`TierMetrics`], [`WalMetrics`]: the handle bundles the crates hold.
//! - [`Recorder`]: where a snapshot's figures go. [`TextEncoder`] writes Prometheus text
//!   (format 0.0.4); `facade::MetricsFacadeRecorder` (feature `metrics-facade`) forwards to the
//!   `metrics` crate; [`NoopRecorder`] drops everything.
//!
//! ```
//! use strata_metrics::{CacheMetrics, Registry};
//! let registry = Registry::new();
//! let metrics = CacheMetrics::register(&registry, "users")?;
//! metrics.hits.incr();
//! metrics.misses.incr();
//! assert_eq!(metrics.stats(0, 0).hit_ratio(), Some(0.5));
//! assert!(registry.render_prometheus().contains("strata_cache_misses_total{cache=\"users\"} 1"));
//! # Ok::<(), strata_metrics::Error>(())
//! ```

#![forbid(unsafe_code)]

mod counter;
mod desc;
mod error;
#[cfg(feature = "metrics-facade")]
pub mod facade;
mod gauge;
mod histogram;
#[cfg(all(test, strata_loom))]
mod loom_models;
pub mod names;
mod prometheus;
mod recorder;
mod registry;
mod sets;
mod sync;

pub use counter::Counter;
pub use desc::{MetricDesc, MetricKind, Unit};
pub use error::{Error, Result};
pub use gauge::Gauge;
pub use histogram::{
    Bucket, Histogram, HistogramSnapshot, DEFAULT_PRECISION, MAX_PRECISION, MIN_PRECISION,
};
pub use prometheus::{TextEncoder, CONTENT_TYPE};
pub use recorder::{NoopRecorder, Recorder};
pub use registry::{FamilySnapshot, GaugeFn, Label, Registry, SeriesSnapshot, Snapshot, Value};
pub use sets::{
    CacheMetrics, CacheStats, CircuitState, EvictionCause, TierMetrics, TierOpMetrics, WalMetrics,
};
