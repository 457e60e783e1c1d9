//! strata-core's integration tests: one binary, one module per area.

mod api;
mod atomic;
mod concurrency;
mod expiry;
mod loading;
mod metrics;
mod model;
