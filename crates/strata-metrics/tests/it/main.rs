//! Integration tests of strata-metrics, one binary with a module per concern.

mod alloc_free;
mod catalogue;
mod concurrency;
#[cfg(feature = "metrics-facade")]
mod facade;
mod histogram;
mod prometheus;
mod recorder;
