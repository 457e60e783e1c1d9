//! The crate's one error type.

use crate::format::CorruptionKind;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in `strata-wal`; each variant says what the caller can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an operation. Retrying may help for transient conditions
    /// (disk full), but after a failed write or fsync the log is poisoned (see [`Error::Poisoned`]).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What the log was doing (`"fsync"`, `"create segment"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file of the log holds bytes that are not what the log wrote. Open with
    /// [`RecoveryMode::SkipCorrupt`](crate::RecoveryMode::SkipCorrupt) to salvage, or run
    /// `cargo xtask wal-check DIR --repair` to truncate at the damage.
    #[error("corrupt WAL file {} at byte {offset}: {kind}", path.display())]
    Corruption {
        /// The segment, snapshot or manifest file.
        path: PathBuf,
        /// The segment id when the file is a segment.
        segment: Option<u64>,
        /// Byte offset of the first bad byte range (the start of the bad record or header).
        offset: u64,
        /// What exactly is wrong.
        kind: CorruptionKind,
    },
    /// A payload is larger than the configured maximum record size. The log is unchanged;
    /// split the payload or raise [`WalBuilder::max_record_size`](crate::WalBuilder::max_record_size).
    #[error("record of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The payload size offered.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Another process (or another `Wal` in this process) holds the directory lock. Stop the
    /// other writer first; two writers would corrupt the log.
    #[error("WAL directory {} is locked by another writer", dir.display())]
    Locked {
        /// The log directory.
        dir: PathBuf,
    },
    /// A file was written by a newer (or unknown) format version. Use a newer `strata-wal`.
    #[error("{} has format version {found}; this build reads version {supported}", path.display())]
    UnsupportedVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version found in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A builder setting makes no sense (zero interval, record larger than a segment, a
    /// directory path that is a file, ...). Nothing was opened.
    #[error("invalid WAL configuration: {0}")]
    InvalidConfig(String),
    /// An earlier write or fsync failed, so what the disk holds is unknown; the log refuses
    /// further appends rather than acknowledge records it cannot vouch for. Drop the `Wal` and
    /// reopen it: recovery truncates the partial write.
    #[error("the WAL is poisoned by an earlier IO failure; reopen it to recover")]
    Poisoned,
    /// [`Wal::close`](crate::Wal::close) was called.
    #[error("the WAL is closed")]
    Closed,
    /// The log has numbered every sequence number it can: the next record would take
    /// `u64::MAX`, which recovery rejects (only a damaged or hand-made manifest or segment
    /// claims numbers this high). Nothing was written.
    #[error("the WAL's sequence numbers are exhausted")]
    SequenceExhausted,
    /// Only one checkpoint can be in progress at a time; finish or drop the other one.
    #[error("a checkpoint is already in progress")]
    CheckpointInProgress,
    /// A payload could not be encoded as postcard.
    #[error("could not encode a record: {0}")]
    Encode(#[source] postcard::Error),
    /// A payload is not a valid postcard encoding of the requested type (the record itself is
    /// intact: its checksum matched).
    #[error("record {seq} does not decode as the requested type: {source}")]
    Decode {
        /// Sequence number of the record.
        seq: u64,
        /// The postcard error.
        #[source]
        source: postcard::Error,
    },
}

impl Error {
    /// Builds an [`Error::Io`]; public so that tests and tools built on the
    /// [`FileSystem`](crate::FileSystem) seam report errors the same way.
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io { op, path: path.as_ref().to_path_buf(), source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
