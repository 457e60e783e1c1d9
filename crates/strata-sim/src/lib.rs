//! Trace-driven hit-ratio simulation for Strata's eviction policies.
//!
//! - [`trace`] reads the public traces the field publishes results on (ARC `.lis`, LIRS text,
//!   cache2k binary), compressed as they are distributed (zstd, gzip, xz).
//! - [`synth`] generates seeded synthetic traces (Zipf, scans, loops, phase changes), so the
//!   project's own tests need no external data.
//! - [`replay`] replays a trace through a [`strata_evict::Policy`] (or any cache, through a
//!   closure) with the field's semantics: for each key a `get`, and on a miss an `insert`.
//! - [`mod@reference`] records the published request counts and LRU / OPT hit ratios of the
//!   shared traces, which the tests and `cargo xtask hitratio` check parsers against.
//!
//! **Invariant: a replay is deterministic.** The same trace, capacity, policy and seed give the
//! same hits on every machine; nothing here reads a clock or an unseeded random source.

#![forbid(unsafe_code)]

pub mod reference;
pub mod replay;
pub mod synth;
pub mod trace;

use std::path::PathBuf;

/// Everything that can go wrong reading a trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read, or did not decompress.
    #[error("reading {path}: {source}")]
    Io {
        /// The trace file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line or record did not follow the format.
    #[error("{path}: record {record}: {message}")]
    Parse {
        /// The trace file (empty when parsing from memory).
        path: PathBuf,
        /// The 1-based line (text formats) or record (binary formats) number.
        record: u64,
        /// What was wrong.
        message: String,
    },
    /// The file name does not say which format it is in.
    #[error("{0}: unknown trace format (expected *.lis[.zst|.gz|.xz], *.trace[.gz|.zst] or cache2k *.trace.xz)")]
    UnknownFormat(PathBuf),
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
