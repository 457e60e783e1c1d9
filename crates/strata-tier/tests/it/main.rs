//! strata-tier's integration tests, one module per area.

mod conformance;
#[cfg(feature = "disk")]
mod disk;
#[cfg(feature = "wal")]
mod durable;
#[cfg(feature = "wal")]
mod durable_crash;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_server;
mod tiered;
