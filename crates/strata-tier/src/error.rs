//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong in a tier, the tiered cache or the durable cache.
///
/// Every variant names what failed; none of them means data was lost silently: a write that
/// returns an error was either not applied at all or is reported as such.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration that cannot work; the message says which setting and why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A call to a tier did not finish before its deadline.
    #[error("tier {tier}: {op} timed out")]
    Timeout {
        /// The tier's name.
        tier: String,
        /// The operation (`get`, `put`, `remove`, `clear`).
        op: &'static str,
    },
    /// The tier is not taking calls: its circuit breaker is open or it is shut down.
    #[error("tier {tier} is unavailable: {reason}")]
    Unavailable {
        /// The tier's name.
        tier: String,
        /// Why, in words.
        reason: String,
    },
    /// The bounded write-back queue is full and the caller asked not to wait.
    #[error("write-back queue of tier {tier} is full ({capacity} pending writes)")]
    Full {
        /// The tier's name.
        tier: String,
        /// The queue's bound.
        capacity: usize,
    },
    /// A key or value is larger than the configured limit; nothing was written.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// `key` or `value`.
        what: &'static str,
        /// Its encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The tier answered but refused this write, and is healthy: a Redis server at its
    /// `maxmemory` under the `noeviction` policy (`OOM`), say. Nothing was written; the tier
    /// keeps serving reads, and a later write may succeed once it has room.
    #[error("tier {tier} refused the write: {reason}")]
    Refused {
        /// The tier's name.
        tier: String,
        /// Why, in the tier's words.
        reason: String,
    },
    /// A key or value could not be encoded or decoded by the codec.
    #[error("codec: {0}")]
    Codec(String),
    /// Stored bytes failed their checksum or could not be parsed; they were not served.
    #[error("corrupt data in {path}: {detail}")]
    Corrupt {
        /// The file (or other location) holding the bytes.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (`open`, `write`, `fsync`, ...).
        op: &'static str,
        /// The path it was applied to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An error from the in-memory cache.
    #[error(transparent)]
    Core(#[from] strata_core::Error),
    /// An error from the Redis client.
    #[cfg(feature = "redis")]
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// An error from the write-ahead log.
    #[cfg(feature = "wal")]
    #[error(transparent)]
    Wal(#[from] strata_wal::Error),
    /// A transaction conflicted with a concurrent commit and ran out of retries.
    #[error("transaction conflict after {attempts} attempts")]
    Conflict {
        /// How many times the transaction ran.
        attempts: u32,
    },
    /// The cache or tier was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
