//! A segmented write-ahead log that is safe against any bytes on disk.
//!
//! `strata-wal` knows nothing about caches: it stores opaque payloads (usually postcard-encoded
//! values of the owner's record type) in append-only segment files, makes them durable according
//! to a [`SyncPolicy`], and hands them back in sequence order after a restart.
//!
//! **Invariant:** decoding a WAL file never panics and never allocates more than the configured
//! maximum record size for one record, whatever bytes the file holds; every record handed back
//! was written by [`Wal::append`] (its CRC32C matched) and records come back in strictly
//! increasing sequence order.
//!
//! How it is built:
//!
//! - [`format`](mod@format) is the on-disk format: a 24-byte file header (magic, version, id, CRC32C) and
//!   record frames (CRC32C, length, type, sequence number, payload). Pure functions, no IO.
//! - [`FileSystem`] is the seam to the disk: [`StdFs`] uses real files (read back through
//!   `memmap2`; under [`SyncPolicy::Interval`] and [`SyncPolicy::Never`] on Linux, segments
//!   are preallocated and appended to through a shared memory map, a [`SegmentMap`], on the
//!   file systems whose `fallocate` reserves room for later stores: ext4, XFS, tmpfs),
//!   [`fault::FaultFs`] is an in-memory disk that fails, tears and forgets writes.
//! - [`Wal`] owns the active segment. Appends take `&self` and are serialized by a mutex; with
//!   [`SyncPolicy::Always`] the appenders waiting for durability elect a leader that issues one
//!   `fsync` for all of them (group commit).
//! - Recovery ([`RecoveryMode`]) runs inside [`WalBuilder::open`]; [`Wal::replay`] streams the
//!   recovered records. [`Wal::begin_checkpoint`] replaces the covered segments with a snapshot
//!   through a manifest that is switched atomically.
//! - Observability: [`WalBuilder::metrics`] records the `strata_wal_*` families of
//!   `strata-metrics` (appends, framed bytes, fsync latency, checkpoint duration, recovery
//!   figures); `tracing` spans `strata.wal.sync`, `strata.wal.checkpoint` and
//!   `strata.wal.recover` cover fsyncs, checkpoints and recovery, never a single append.
//! - [`check_dir`] validates (and optionally repairs) a log directory offline; it backs
//!   `cargo xtask wal-check`.
//!
//! ```
//! use strata_wal::{SyncPolicy, Wal};
//!
//! # fn main() -> strata_wal::Result<()> {
//! let dir = tempfile::tempdir().map_err(|e| strata_wal::Error::io("tempdir", "/tmp", e))?;
//! let wal = Wal::builder(dir.path()).sync_policy(SyncPolicy::Always).open()?;
//! let seq = wal.append(b"hello")?;
//! wal.close()?;
//! drop(wal);
//!
//! let wal = Wal::builder(dir.path()).open()?;
//! let records: Vec<_> = wal.replay()?.collect::<strata_wal::Result<_>>()?;
//! assert_eq!(records.len(), 1);
//! assert_eq!(records[0].seq, seq);
//! assert_eq!(records[0].payload, b"hello");
//! # Ok(())
//! # }
//! ```

mod check;
mod checkpoint;
mod crc;
mod error;
pub mod fault;
pub mod format;
mod fs;
mod mmap;
#[cfg(target_os = "linux")]
mod prefault;
mod recover;
mod wal;

pub use check::{check_dir, CheckOptions, CheckReport};
pub use checkpoint::{Checkpoint, CheckpointInfo};
pub use error::{Error, Result};
pub use format::CorruptionKind;
pub use fs::{FileBytes, FileSystem, LockGuard, SegmentMap, StdFs, WalFile};
pub use recover::{Problem, RecoveryReport, Replay};
pub use wal::{Wal, WalBuilder};

use std::time::Duration;

/// When appended records are forced to stable storage with `fsync`.
///
/// Every policy hands each record to the operating system before [`Wal::append`] returns (a
/// `write` call, or under `Interval` and `Never` a copy into a shared memory map of the
/// segment, which is the kernel's page cache too), so a crash of the *process* loses nothing
/// that was acknowledged.
/// The policies differ in what a crash of the *machine* (power loss, kernel panic) may lose;
/// `docs/durability.md` states it in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `append` returns after the record is fsynced. Concurrent appenders share one fsync
    /// (group commit). A power loss loses no acknowledged record.
    Always,
    /// A background thread fsyncs every interval. A power loss loses at most the records
    /// appended during the last interval (plus the time one fsync takes).
    Interval(Duration),
    /// The log never fsyncs on its own; the operating system writes pages back when it chooses
    /// (typically within 30 s on Linux). [`Wal::flush_durable`] still forces a sync on demand.
    Never,
}

/// What recovery does with a record that fails its checksum or is cut short.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// The default. A bad record in the *last* segment is taken for a write torn by a crash:
    /// the segment is truncated before it and the dropped bytes are reported in
    /// [`RecoveryReport::bytes_truncated`]. Corruption anywhere else is an error.
    #[default]
    TolerateTornTail,
    /// Any bad byte anywhere, including a torn tail, is an [`Error::Corruption`].
    AbsoluteConsistency,
    /// Salvage: bad records are skipped (the decoder resynchronises on the next valid frame)
    /// and listed in [`RecoveryReport::skipped`]. Records may be missing from the replay, but
    /// every record replayed is one that was written.
    SkipCorrupt,
}

/// Where a replayed record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The record belongs to the last checkpoint's snapshot. Its `seq` is the checkpoint's
    /// covered sequence number (every snapshot record carries the same one).
    Snapshot,
    /// The record was appended to the log after the last checkpoint.
    Log,
}

/// One record handed back by [`Wal::replay`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The sequence number [`Wal::append`] returned for it (for snapshot records, the covered
    /// sequence number of the checkpoint).
    pub seq: u64,
    /// Whether it comes from the snapshot or from the log.
    pub source: Source,
    /// The payload bytes exactly as appended.
    pub payload: Vec<u8>,
}

impl Record {
    /// Decodes the payload as a postcard-encoded `T` (the counterpart of
    /// [`Wal::append_value`]).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the payload is not a valid `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        postcard::from_bytes(&self.payload)
            .map_err(|source| Error::Decode { seq: self.seq, source })
    }
}
