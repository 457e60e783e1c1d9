//! Checkpoints: replace the log's covered segments with a snapshot, atomically.
//!
//! Protocol (each step's crash outcome in brackets; "old" and "new" are the whole log state
//! before and after, which recover to the same records):
//!
//! 1. [`Wal::begin_checkpoint`] rotates to a fresh segment under the log lock; everything up to
//!    `covered_seq` is in older segments. [old]
//! 2. The owner streams its snapshot into `checkpoint-N.snap.tmp`. [old; the temporary file is
//!    removed at open]
//! 3. [`Checkpoint::finish`] writes an end marker holding the record count, fsyncs, renames the
//!    file to `checkpoint-N.snap` and fsyncs the directory. [old; the snapshot is not named by
//!    the manifest, so open removes it]
//! 4. `MANIFEST.tmp` is written and fsynced, renamed over `MANIFEST`, the directory fsynced.
//!    [old before the rename is durable, new after: rename is atomic]
//! 5. Covered segments and the previous snapshot are removed, the directory fsynced. [new; open
//!    removes whatever is left]

use crate::error::{Error, Result};
use crate::format::{self, FileKind, RecordType};
use crate::fs::WalFile;
use crate::recover::{self, Manifest, MANIFEST, MANIFEST_TMP};
use crate::wal::Wal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Flush the snapshot buffer to the file at this size.
const SNAPSHOT_BUFFER: usize = 256 << 10;

/// What a checkpoint covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The checkpoint's number (names its snapshot file).
    pub checkpoint_id: u64,
    /// The snapshot must reflect at least every record up to this sequence number.
    pub covered_seq: u64,
    /// Segments before this id are dropped when the checkpoint finishes.
    pub first_segment: u64,
}

/// A checkpoint in progress; created by [`Wal::begin_checkpoint`].
///
/// Appends may continue while it is open. The owner writes records that, replayed alone,
/// rebuild its state as of [`CheckpointInfo::covered_seq`] *or later*: records after
/// `covered_seq` are replayed on top of the snapshot, so they must be idempotent (a put or a
/// delete of a key is; an increment is not), or the owner must hold off appends while it takes
/// the snapshot. Dropping it without [`Checkpoint::finish`] abandons it; the log is unchanged.
pub struct Checkpoint<'a> {
    wal: &'a Wal,
    file: Box<dyn WalFile>,
    tmp: PathBuf,
    info: CheckpointInfo,
    count: u64,
    buf: Vec<u8>,
    finished: bool,
    /// When [`Wal::begin_checkpoint`] was called; the checkpoint duration runs from here to
    /// the end of [`Checkpoint::finish`], the owner's streaming included.
    started: Instant,
    /// `strata.wal.checkpoint`, entered while the log does checkpoint work; it closes when the
    /// checkpoint is finished or dropped.
    span: tracing::Span,
}

impl std::fmt::Debug for Checkpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("info", &self.info)
            .field("records", &self.count)
            .finish()
    }
}

impl Wal {
    /// Starts a checkpoint: closes the active segment and opens a snapshot file for the owner
    /// to fill.
    ///
    /// # Errors
    ///
    /// [`Error::CheckpointInProgress`] if another checkpoint is open; [`Error::Poisoned`],
    /// [`Error::Closed`], [`Error::Io`].
    pub fn begin_checkpoint(&self) -> Result<Checkpoint<'_>> {
        self.check_open()?;
        let shared = self.shared();
        if shared.checkpointing.swap(true, Ordering::AcqRel) {
            return Err(Error::CheckpointInProgress);
        }
        let span = tracing::info_span!("strata.wal.checkpoint", id = tracing::field::Empty);
        let started = Instant::now();
        match span.in_scope(|| self.start_checkpoint(started, span.clone())) {
            Ok(cp) => Ok(cp),
            Err(e) => {
                shared.checkpointing.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    fn start_checkpoint(&self, started: Instant, span: tracing::Span) -> Result<Checkpoint<'_>> {
        let shared = self.shared();
        let info = {
            let mut log = shared.log.lock();
            if log.active_len > format::HEADER_LEN as u64 {
                shared.rotate(&mut log)?;
            }
            CheckpointInfo {
                checkpoint_id: log.manifest.map_or(1, |m| m.checkpoint_id + 1),
                covered_seq: log.next_seq - 1,
                first_segment: log.active_id,
            }
        };
        span.record("id", info.checkpoint_id);
        let tmp = shared.dir.join(format!("{}.tmp", recover::snapshot_name(info.checkpoint_id)));
        let file = shared.fs.create(&tmp).map_err(|e| Error::io("create snapshot", &tmp, e))?;
        let mut buf = Vec::with_capacity(SNAPSHOT_BUFFER);
        buf.extend_from_slice(&format::encode_header(FileKind::Snapshot, info.checkpoint_id));
        Ok(Checkpoint { wal: self, file, tmp, info, count: 0, buf, finished: false, started, span })
    }
}

impl Checkpoint<'_> {
    /// What this checkpoint covers.
    pub fn info(&self) -> CheckpointInfo {
        self.info
    }

    /// Adds one record to the snapshot.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`], [`Error::Io`].
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        let max = self.wal.shared().max_record;
        if payload.len() > max {
            return Err(Error::TooLarge { size: payload.len(), max });
        }
        format::encode_frame(&mut self.buf, RecordType::Data, self.info.covered_seq, payload);
        self.count += 1;
        if self.buf.len() >= SNAPSHOT_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Encodes `value` with postcard and adds it to the snapshot.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`], then as [`Checkpoint::append`].
    pub fn append_value<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let bytes = postcard::to_stdvec(value).map_err(Error::Encode)?;
        self.append(&bytes)
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file.append(&self.buf).map_err(|e| Error::io("write snapshot", &self.tmp, e))?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Makes the snapshot durable, switches the manifest to it, and drops the covered
    /// segments. Once it returns `Ok`, a reopen recovers from the snapshot.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]. An error before the manifest switch leaves the log as it was; one after
    /// it leaves garbage files that the next open removes. Either way the log recovers.
    pub fn finish(self) -> Result<CheckpointInfo> {
        let span = self.span.clone();
        let _entered = span.enter();
        let started = self.started;
        let shared = std::sync::Arc::clone(self.wal.shared());
        let info = self.finish_inner()?;
        if let Some(m) = &shared.metrics {
            m.checkpoint_duration.record_duration(started.elapsed());
        }
        Ok(info)
    }

    fn finish_inner(mut self) -> Result<CheckpointInfo> {
        let shared = std::sync::Arc::clone(self.wal.shared());
        let dir = shared.dir.clone();
        format::encode_frame(
            &mut self.buf,
            RecordType::SnapshotEnd,
            self.info.covered_seq,
            &self.count.to_le_bytes(),
        );
        self.flush()?;
        self.file.sync().map_err(|e| Error::io("fsync snapshot", &self.tmp, e))?;
        let snap = dir.join(recover::snapshot_name(self.info.checkpoint_id));
        shared.fs.rename(&self.tmp, &snap).map_err(|e| Error::io("rename snapshot", &snap, e))?;
        shared.fs.sync_dir(&dir).map_err(|e| Error::io("fsync directory", &dir, e))?;

        let manifest = Manifest {
            checkpoint_id: self.info.checkpoint_id,
            covered_seq: self.info.covered_seq,
            first_segment: self.info.first_segment,
        };
        let mtmp = dir.join(MANIFEST_TMP);
        let mpath = dir.join(MANIFEST);
        let mfile = shared.fs.create(&mtmp).map_err(|e| Error::io("create manifest", &mtmp, e))?;
        mfile.append(&manifest.encode()).map_err(|e| Error::io("write manifest", &mtmp, e))?;
        mfile.sync().map_err(|e| Error::io("fsync manifest", &mtmp, e))?;
        drop(mfile);
        shared.fs.rename(&mtmp, &mpath).map_err(|e| Error::io("rename manifest", &mpath, e))?;
        self.finished = true;

        // From here on the new checkpoint is the log's state, whether or not the rest succeeds.
        let (old_segments, old_snapshot) = {
            let mut log = shared.log.lock();
            let old_snapshot = log.manifest.map(|m| m.checkpoint_id);
            log.manifest = Some(manifest);
            let first = self.info.first_segment;
            let old: Vec<u64> = log.segments.iter().copied().filter(|&id| id < first).collect();
            log.segments.retain(|&id| id >= first);
            (old, old_snapshot)
        };
        shared.fs.sync_dir(&dir).map_err(|e| Error::io("fsync directory", &dir, e))?;
        for id in old_segments {
            let path = dir.join(recover::segment_name(id));
            shared.fs.remove(&path).map_err(|e| Error::io("remove covered segment", &path, e))?;
        }
        if let Some(id) = old_snapshot.filter(|&id| id != self.info.checkpoint_id) {
            let path = dir.join(recover::snapshot_name(id));
            shared.fs.remove(&path).map_err(|e| Error::io("remove old snapshot", &path, e))?;
        }
        shared.fs.sync_dir(&dir).map_err(|e| Error::io("fsync directory", &dir, e))?;
        Ok(self.info)
    }
}

impl Drop for Checkpoint<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: a leftover temporary file is removed at the next open anyway.
            let _ = self.wal.shared().fs.remove(&self.tmp);
        }
        self.wal.shared().checkpointing.store(false, Ordering::Release);
    }
}
