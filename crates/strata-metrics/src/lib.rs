//! Metrics for Strata: counters cheap enough for the hot path.
//!
//! **Invariant: recording a value never locks and never allocates.**

#![forbid(unsafe_code)]

mod counter;

pub use counter::Counter;
