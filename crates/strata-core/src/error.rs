//! The crate's one error type.

use std::time::Duration;

/// What can go wrong when building or using a [`Cache`](crate::Cache).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given a configuration that cannot work; the message says which.
    #[error("invalid cache configuration: {0}")]
    InvalidConfig(&'static str),
    /// A capacity of zero (or a zero weight budget) was asked for.
    #[error("capacity must be at least 1, got 0")]
    ZeroCapacity,
    /// A duration that must be positive (a TTL, a time-to-idle, a refresh interval) was zero.
    #[error("{what} must be greater than zero, got {value:?}")]
    ZeroDuration {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: Duration,
    },
    /// The shard count must be a power of two between 1 and 65536.
    #[error("shard count must be a power of two between 1 and 65536, got {0}")]
    BadShardCount(usize),
    /// The cache's metrics could not be registered in the registry given to
    /// [`CacheBuilder::metrics`](crate::CacheBuilder::metrics), typically because it holds
    /// an incompatible family under one of the cache's metric names.
    #[error("cannot register the cache's metrics: {0}")]
    Metrics(String),
    /// An [`Atomic`](crate::Atomic) section was asked about a key whose shard it does not
    /// hold; name every key the section touches in [`Cache::atomically`](crate::Cache::atomically).
    #[error("the key's shard is not locked by this atomic section")]
    NotLocked,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
