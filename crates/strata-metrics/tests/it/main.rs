//! Integration tests of strata-metrics, one binary with a module per concern.

mod catalogue;
mod concurrency;
mod histogram;
mod prometheus;
mod recorder;
