//! The log: builder, appends, group commit, the interval flusher, close.
//!
//! Locks and their invariants:
//!
//! - `Shared::log` (the log lock) serializes appends, rotations and checkpoint starts. It
//!   guards the active segment and its memory map if it has one (frames are copied into the
//!   map at `active_len` only under this lock, so the map needs no lock of its own),
//!   `next_seq` (every record below it has been handed to the OS, in sequence order) and the
//!   list of live segments.
//! - `Shared::durable` guards `durable_seq` (every record up to it is fsynced), whether a
//!   group-commit leader is syncing, and the poison flag. Lock order: the log lock may be held
//!   while taking `durable`, never the reverse.
//! - Every segment except the active one is fsynced before the log moves past it, so syncing
//!   the active segment makes every record written so far durable.

use crate::error::{Error, Result};
use crate::format::{self, FileKind, RecordType, FRAME_OVERHEAD, HEADER_LEN, MAX_PAYLOAD_LIMIT};
use crate::fs::{FileSystem, LockGuard, SegmentMap, StdFs, WalFile};
use crate::recover::{self, Manifest, RecoveryReport, Replay};
use crate::{RecoveryMode, SyncPolicy};
use parking_lot::{Condvar, Mutex};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use strata_metrics::{Registry, WalMetrics};

/// Default segment size: 64 MiB.
pub(crate) const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Default maximum payload: 1 MiB.
const DEFAULT_MAX_RECORD: usize = 1 << 20;

/// Configures and opens a [`Wal`]; created by [`Wal::builder`].
#[derive(Debug, Clone)]
pub struct WalBuilder {
    dir: PathBuf,
    sync_policy: SyncPolicy,
    recovery_mode: RecoveryMode,
    segment_size: u64,
    max_record_size: usize,
    group_commit: bool,
    write_buffer: usize,
    memory_map: bool,
    fs: Arc<dyn FileSystem>,
    metrics: Option<(Arc<Registry>, String)>,
}

impl WalBuilder {
    /// How appends are made durable (default [`SyncPolicy::Always`]).
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    /// What recovery does with damaged records (default [`RecoveryMode::TolerateTornTail`]).
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// The size at which the active segment is closed and a new one started (default 64 MiB).
    /// A segment holds at least one record, so it may exceed this by one record.
    ///
    /// Under [`SyncPolicy::Interval`] and [`SyncPolicy::Never`] a segment is reserved at this
    /// size (at most 1 GiB) and memory-mapped, and a crash leaves zeros after its last record.
    /// Recovery takes them for the end of the log only in a file of exactly the reserved
    /// length, so reopen a crashed log with the segment size it was written with: otherwise
    /// [`RecoveryMode::AbsoluteConsistency`] reports the zeros as damage, and the tolerant
    /// modes cut them and count them in [`RecoveryReport::bytes_truncated`] (no record is
    /// lost either way).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// The largest payload accepted by appends, and the most recovery will allocate for one
    /// record (default 1 MiB). A log must be reopened with a maximum at least as large as the
    /// one it was written with, or its larger records read as corrupt.
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// Whether concurrent appenders under [`SyncPolicy::Always`] share fsyncs (default `true`).
    /// Turning it off makes every append fsync on its own while holding the log lock; it exists
    /// as the baseline the benchmarks compare group commit with.
    pub fn group_commit(mut self, on: bool) -> Self {
        self.group_commit = on;
        self
    }

    /// Bytes of appended records to collect in memory before handing them to the operating
    /// system in one `write` (default 0: one `write` per append). Only with
    /// [`SyncPolicy::Interval`] or [`SyncPolicy::Never`].
    ///
    /// This trades the guarantee that a *process* crash loses no acknowledged record for
    /// throughput: up to this many bytes of acknowledged records (and under `Interval(d)`, at
    /// most the last `d` of them, since the flusher writes the buffer out before it fsyncs)
    /// live only in the process until written, so a process crash then loses what a power
    /// loss would. [`Wal::flush_durable`], [`Wal::wait_durable`], [`Wal::replay`], rotations,
    /// checkpoints, [`Wal::close`] and dropping the `Wal` write the buffer out first.
    ///
    /// A memory-mapped segment ([`FileSystem::create_mapped`]: [`StdFs`] on Linux under these
    /// policies) needs no buffer and ignores it: its appends are already memory copies into the
    /// page cache, as cheap as a copy into the buffer, and they survive a process crash.
    pub fn write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = bytes;
        self
    }

    /// Whether segments of a log under [`SyncPolicy::Interval`] or [`SyncPolicy::Never`]
    /// are memory-mapped where the file system supports it (default `true`; see
    /// [`FileSystem::create_mapped`]). Turned off, every append is one `write`, as under
    /// `Always`; the benchmarks compare the two with it.
    pub fn memory_map(mut self, on: bool) -> Self {
        self.memory_map = on;
        self
    }

    /// The file system to use (default [`StdFs`]); tests pass a
    /// [`FaultFs`](crate::fault::FaultFs).
    pub fn file_system(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.fs = fs;
        self
    }

    /// Records the log's figures (`strata_wal_*`, labelled `wal="<name>"`) in `registry`:
    /// appends and appended bytes (framing included), fsync latency, checkpoint duration and
    /// what recovery replayed. Without it nothing is recorded and the only cost is an `Option`
    /// check. Reopening a log with the same registry and name keeps adding to the same series.
    pub fn metrics(mut self, registry: Arc<Registry>, name: impl Into<String>) -> Self {
        self.metrics = Some((registry, name.into()));
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(Error::InvalidConfig(s));
        if self.max_record_size == 0 {
            return bad("max_record_size must be at least 1 byte".into());
        }
        if self.max_record_size > MAX_PAYLOAD_LIMIT {
            return bad(format!(
                "max_record_size is above the format's limit of {MAX_PAYLOAD_LIMIT}"
            ));
        }
        if self.segment_size < (HEADER_LEN + FRAME_OVERHEAD) as u64 {
            return bad(format!(
                "segment_size {} cannot hold a header and one frame ({} bytes)",
                self.segment_size,
                HEADER_LEN + FRAME_OVERHEAD
            ));
        }
        if let SyncPolicy::Interval(d) = self.sync_policy {
            if d.is_zero() {
                return bad("SyncPolicy::Interval needs a non-zero interval; use Always".into());
            }
        }
        if self.write_buffer > 0 && self.sync_policy == SyncPolicy::Always {
            return bad("write_buffer needs SyncPolicy::Interval or Never: Always fsyncs every \
                        append before acknowledging it"
                .into());
        }
        Ok(())
    }

    /// Locks the directory (creating it if needed), recovers the log in it, and starts a new
    /// active segment.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for nonsense settings or a path that is not a directory;
    /// [`Error::Locked`] if another writer holds the directory; [`Error::Corruption`] or
    /// [`Error::UnsupportedVersion`] as the recovery mode decides; [`Error::Io`].
    pub fn open(self) -> Result<Wal> {
        self.validate()?;
        let fs = Arc::clone(&self.fs);
        let dir = self.dir.clone();
        fs.create_dir_all(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput
                || e.kind() == std::io::ErrorKind::AlreadyExists
            {
                Error::InvalidConfig(format!("{} is not a directory", dir.display()))
            } else {
                Error::io("create directory", &dir, e)
            }
        })?;
        let lock = fs.lock_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked { dir: dir.clone() }
            } else {
                Error::io("lock directory", &dir, e)
            }
        })?;
        let metrics = match &self.metrics {
            Some((registry, name)) => Some(
                WalMetrics::register(registry, name)
                    .map_err(|e| Error::InvalidConfig(format!("metrics: {e}")))?,
            ),
            None => None,
        };
        let rec = {
            let _span = tracing::info_span!("strata.wal.recover", dir = %dir.display()).entered();
            let started = Instant::now();
            // Whatever the policy now: a log written under `Interval` and reopened under
            // `Always` after a crash still ends in the space reserved for its map.
            let reserved = reserved_len(self.segment_size);
            let rec =
                recover::recover(&*fs, &dir, self.recovery_mode, self.max_record_size, reserved)?;
            if let Some(m) = &metrics {
                let r = &rec.report;
                m.recovery_duration.record_duration(started.elapsed());
                m.recovered_records.add(r.records + r.snapshot_records);
                m.recovered_bytes.add(r.bytes + r.snapshot_bytes);
                m.recovery_truncated_bytes.add(r.bytes_truncated);
                m.recovery_skipped_records.add(r.skipped_count);
            }
            tracing::debug!(
                records = rec.report.records,
                snapshot_records = rec.report.snapshot_records,
                bytes_truncated = rec.report.bytes_truncated,
                skipped = rec.report.skipped_count,
                "recovered"
            );
            rec
        };
        let last_seq = rec.report.last_seq;
        let id = rec.next_segment;
        let reserve = reserve_for(self.sync_policy, self.segment_size, self.memory_map);
        let (active, map) = create_segment(&*fs, &dir, id, reserve)?;
        let mut segments = rec.segments;
        segments.push(id);
        let shared = Arc::new(Shared {
            fs,
            dir,
            policy: self.sync_policy,
            mode: self.recovery_mode,
            segment_size: self.segment_size,
            max_record: self.max_record_size,
            group_commit: self.group_commit,
            write_buffer: self.write_buffer,
            memory_map: self.memory_map,
            log: Mutex::new(LogState {
                active: Arc::from(active),
                map,
                active_id: id,
                active_len: HEADER_LEN as u64,
                next_seq: last_seq + 1,
                segments,
                manifest: rec.manifest,
                buf: Vec::new(),
                closed: false,
                failed: false,
            }),
            durable: Mutex::new(DurableState {
                durable_seq: last_seq,
                leader: false,
                failed: false,
            }),
            durable_cv: Condvar::new(),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            checkpointing: AtomicBool::new(false),
            appended: AtomicU64::new(0),
            metrics,
            _lock: lock,
        });
        let flusher = match self.sync_policy {
            SyncPolicy::Interval(every) => {
                let s = Arc::clone(&shared);
                let handle = std::thread::Builder::new()
                    .name("strata-wal-flush".into())
                    .spawn(move || flusher(&s, every))
                    .map_err(|e| Error::io("spawn flusher thread", &shared.dir, e))?;
                Some(handle)
            }
            _ => None,
        };
        Ok(Wal { shared, flusher: Mutex::new(flusher), report: rec.report })
    }
}

/// Creates segment `id`: header written and fsynced under a temporary name, then renamed and
/// the directory fsynced, so a segment file never exists with a torn header.
///
/// `reserve` (a log that does not fsync every append) asks the file system for a segment of
/// that size with a memory map to write frames into ([`FileSystem::create_mapped`]); the
/// header then goes into the map too.
fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    id: u64,
    reserve: Option<u64>,
) -> Result<(Box<dyn WalFile>, Option<SegmentMap>)> {
    let name = recover::segment_name(id);
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let (file, mut map) = match reserve {
        Some(size) => fs.create_mapped(&tmp, size),
        None => fs.create(&tmp).map(|f| (f, None)),
    }
    .map_err(|e| Error::io("create segment", &tmp, e))?;
    let header = format::encode_header(FileKind::Segment, id);
    match map.as_mut().and_then(|m| m.frame_mut(0, HEADER_LEN)) {
        Some(at) => at.copy_from_slice(&header),
        None => {
            // A map too small for the header is of no use: cut it away.
            if let Some(m) = map.take() {
                m.seal(0).map_err(|e| Error::io("create segment", &tmp, e))?;
            }
            file.append(&header).map_err(|e| Error::io("write segment header", &tmp, e))?;
        }
    }
    file.sync().map_err(|e| Error::io("fsync segment", &tmp, e))?;
    fs.rename(&tmp, &path).map_err(|e| Error::io("rename segment", &path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok((file, map))
}

/// Frames from this size on go into a memory-mapped segment by a positioned write rather than
/// a copy into the map (see `append_nowait`).
const MAPPED_COPY_MAX: u64 = 2048;

/// The most space reserved for one memory-mapped segment; a larger `segment_size` still
/// works, its appends past this go through `write`.
const MAX_RESERVE: u64 = 1 << 30;

/// The length of a segment whose space is reserved for a memory map: recovery takes zeros
/// at the end of the last segment for unfilled reserved space only in a file of exactly this
/// length (see `recover::reserved_tail`).
pub(crate) fn reserved_len(segment_size: u64) -> u64 {
    segment_size.min(MAX_RESERVE)
}

/// How much to reserve for a new segment: nothing under `Always`, which fsyncs every append
/// anyway (a `write` per append costs little beside its fsync); the segment size otherwise, so
/// that appends are memory copies.
fn reserve_for(policy: SyncPolicy, segment_size: u64, memory_map: bool) -> Option<u64> {
    match policy {
        _ if !memory_map => None,
        SyncPolicy::Always => None,
        SyncPolicy::Interval(_) | SyncPolicy::Never => Some(reserved_len(segment_size)),
    }
}

pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
    policy: SyncPolicy,
    mode: RecoveryMode,
    segment_size: u64,
    pub(crate) max_record: usize,
    group_commit: bool,
    /// See [`WalBuilder::write_buffer`]; 0 writes every frame at once.
    write_buffer: usize,
    /// See [`WalBuilder::memory_map`].
    memory_map: bool,
    pub(crate) log: Mutex<LogState>,
    durable: Mutex<DurableState>,
    durable_cv: Condvar,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    pub(crate) checkpointing: AtomicBool,
    /// Bytes of frames appended since open. Written only under the log lock (a load and a
    /// store, no read-modify-write: the lock orders the writers), read without it.
    appended: AtomicU64,
    /// `None` unless [`WalBuilder::metrics`] was called.
    pub(crate) metrics: Option<WalMetrics>,
    _lock: LockGuard,
}

pub(crate) struct LogState {
    active: Arc<dyn WalFile>,
    /// The active segment's memory map, if it has one: frames are copied into it at
    /// `active_len` (see [`FileSystem::create_mapped`]). Sealed before the segment is closed.
    map: Option<SegmentMap>,
    pub(crate) active_id: u64,
    pub(crate) active_len: u64,
    pub(crate) next_seq: u64,
    pub(crate) segments: Vec<u64>,
    pub(crate) manifest: Option<Manifest>,
    buf: Vec<u8>,
    closed: bool,
    failed: bool,
}

struct DurableState {
    durable_seq: u64,
    leader: bool,
    failed: bool,
}

impl Shared {
    /// Marks the log poisoned after a failed write or fsync: the disk's state is unknown, so no
    /// later append may be acknowledged.
    fn poison(&self, log: &mut LogState) {
        log.failed = true;
        self.durable.lock().failed = true;
        self.durable_cv.notify_all();
    }

    /// Poisons the log after a failed `op` on the active segment, and names the segment in
    /// the error.
    fn active_failed(&self, log: &mut LogState, op: &'static str, e: std::io::Error) -> Error {
        self.poison(log);
        Error::io(op, self.dir.join(recover::segment_name(log.active_id)), e)
    }

    fn check_open(log: &LogState) -> Result<()> {
        if log.failed {
            return Err(Error::Poisoned);
        }
        if log.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Fsyncs `file` (a log segment) inside a `strata.wal.sync` span, recording the latency when
    /// metrics are on. `upto` is the highest sequence number the sync makes durable. Only the
    /// syncs that make appended records durable go through here (group commits, unshared
    /// per-append syncs, the sync of a segment being closed); segment-header and directory
    /// syncs are not counted.
    fn sync_segment(&self, file: &dyn WalFile, upto: u64) -> std::io::Result<()> {
        let _span = tracing::debug_span!("strata.wal.sync", upto).entered();
        match &self.metrics {
            Some(m) => {
                let started = Instant::now();
                let res = file.sync();
                m.fsync_duration.record_duration(started.elapsed());
                res
            }
            None => file.sync(),
        }
    }

    /// Closes the active segment (fsynced, so the invariant holds) and starts the next one.
    /// Hands the frames collected by [`WalBuilder::write_buffer`] to the OS.
    pub(crate) fn write_out(&self, log: &mut LogState) -> Result<()> {
        if log.buf.is_empty() {
            return Ok(());
        }
        let written = log.active.append(&log.buf);
        log.buf.clear();
        written.map_err(|e| self.active_failed(log, "append", e))
    }

    /// Seals the active segment's map, if any: unmaps it and cuts the file to the frames
    /// written, so appends through the file go on at the right place. Returns whether there
    /// was a map (the cut then needs a sync to be durable).
    fn seal(&self, log: &mut LogState) -> Result<bool> {
        let Some(map) = log.map.take() else { return Ok(false) };
        map.seal(log.active_len).map_err(|e| self.active_failed(log, "seal segment", e))?;
        Ok(true)
    }

    pub(crate) fn rotate(&self, log: &mut LogState) -> Result<()> {
        self.write_out(log)?;
        let old = self.dir.join(recover::segment_name(log.active_id));
        // A closed segment holds exactly its records: only the last one may end in reserved
        // zeros. The sync below makes the new length durable before the next segment exists.
        self.seal(log)?;
        if let Err(e) = self.sync_segment(&*log.active, log.next_seq - 1) {
            self.poison(log);
            return Err(Error::io("fsync segment", &old, e));
        }
        let written = log.next_seq - 1;
        {
            let mut d = self.durable.lock();
            d.durable_seq = d.durable_seq.max(written);
        }
        self.durable_cv.notify_all();
        let id = log.active_id + 1;
        let reserve = reserve_for(self.policy, self.segment_size, self.memory_map);
        let (file, map) = match create_segment(&*self.fs, &self.dir, id, reserve) {
            Ok(f) => f,
            Err(e) => {
                self.poison(log);
                return Err(e);
            }
        };
        log.active = Arc::from(file);
        log.map = map;
        log.active_id = id;
        log.active_len = HEADER_LEN as u64;
        log.segments.push(id);
        Ok(())
    }

    /// Accounts for a frame of `frame_len` bytes just handed to the OS (or the map): the
    /// active length, the next sequence number, the appended byte count and the metrics.
    /// Call with the log lock held (the byte count is a plain load and store under it).
    #[inline]
    fn appended(&self, log: &mut LogState, frame_len: u64) {
        log.active_len += frame_len;
        log.next_seq += 1;
        let total = self.appended.load(Ordering::Relaxed) + frame_len;
        self.appended.store(total, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.record_append(frame_len);
        }
    }

    /// Appends one frame; returns its sequence number once the policy is satisfied.
    pub(crate) fn append(&self, payload: &[u8]) -> Result<u64> {
        let seq = self.append_nowait(payload)?;
        if self.policy == SyncPolicy::Always {
            self.wait_durable(seq)?;
        }
        Ok(seq)
    }

    /// Appends one frame and returns its sequence number once it is handed to the OS, without
    /// waiting for the group commit (which the caller does with `wait_durable`). With group
    /// commit off under `Always` it still fsyncs under the log lock, as `append` does.
    pub(crate) fn append_nowait(&self, payload: &[u8]) -> Result<u64> {
        if payload.len() > self.max_record {
            return Err(Error::TooLarge { size: payload.len(), max: self.max_record });
        }
        let mut log = self.log.lock();
        Self::check_appendable(&log)?;
        self.append_locked(&mut log, payload)
    }

    /// [`Shared::append_nowait`] with the payload finished by `finish` under the log lock,
    /// and `logged` called under it once the record is appended.
    pub(crate) fn append_nowait_then(
        &self,
        payload: &mut Vec<u8>,
        finish: impl FnOnce(&mut Vec<u8>),
        logged: impl FnOnce(u64),
    ) -> Result<u64> {
        let mut log = self.log.lock();
        Self::check_appendable(&log)?;
        finish(payload);
        if payload.len() > self.max_record {
            return Err(Error::TooLarge { size: payload.len(), max: self.max_record });
        }
        let seq = self.append_locked(&mut log, payload)?;
        logged(seq);
        Ok(seq)
    }

    /// Whether an append may go ahead.
    fn check_appendable(log: &LogState) -> Result<()> {
        Self::check_open(log)?;
        // Recovery rejects a record numbered u64::MAX (the counter could not move past it),
        // so such an append would be acknowledged and then lost at the next open.
        if log.next_seq == u64::MAX {
            return Err(Error::SequenceExhausted);
        }
        Ok(())
    }

    /// The body of an append, once the payload is known to fit and the log to be open.
    fn append_locked(&self, log: &mut LogState, payload: &[u8]) -> Result<u64> {
        let frame_len = (FRAME_OVERHEAD + payload.len()) as u64;
        if log.active_len > HEADER_LEN as u64 && log.active_len + frame_len > self.segment_size {
            self.rotate(log)?;
        }
        let seq = log.next_seq;
        let at = usize::try_from(log.active_len).unwrap_or(usize::MAX);
        let small = frame_len < MAPPED_COPY_MAX;
        let frame = match log.map.as_mut() {
            Some(m) if small => m.frame_mut(at, frame_len as usize).map(Some),
            Some(m) if m.fits(at, frame_len as usize) => Some(None),
            _ => None,
        };
        if let Some(into_map) = frame {
            match into_map {
                // The fast path: the frame is encoded straight into the page cache (a
                // mapped segment has no write buffer: a copy into the map costs what one
                // into the buffer would, and survives a crash of the process).
                Some(out) => {
                    format::encode_frame_into(out, RecordType::Data, seq, payload);
                }
                // A large frame fills whole pages, which a positioned write fills without
                // the page faults and zeroing a first store into each page costs; it
                // lands at the same place, in the same page cache.
                None => {
                    let mut buf = std::mem::take(&mut log.buf);
                    format::encode_frame(&mut buf, RecordType::Data, seq, payload);
                    let written = log.map.as_mut().map_or(Ok(()), |m| m.write_at(at, &buf));
                    buf.clear();
                    log.buf = buf;
                    written.map_err(|e| self.active_failed(log, "append", e))?;
                }
            }
            self.appended(log, frame_len);
            return Ok(seq);
        }
        // A frame that does not fit in the rest of the map goes through the file.
        if log.map.is_some() {
            self.seal(log)?;
        }
        // `buf` holds the frames not yet written: none when `write_buffer` is 0.
        format::encode_frame(&mut log.buf, RecordType::Data, seq, payload);
        if log.buf.len() >= self.write_buffer {
            self.write_out(log)?;
        }
        self.appended(log, frame_len);
        if self.policy == SyncPolicy::Always && !self.group_commit {
            if let Err(e) = self.sync_segment(&*log.active, seq) {
                return Err(self.active_failed(log, "fsync segment", e));
            }
            let mut d = self.durable.lock();
            d.durable_seq = d.durable_seq.max(seq);
            return Ok(seq);
        }
        Ok(seq)
    }

    /// Waits until every record up to `target` is durable, leading a group commit if no one
    /// else is syncing.
    pub(crate) fn wait_durable(&self, target: u64) -> Result<()> {
        let mut d = self.durable.lock();
        // Each turn either returns, waits for a leader that is already syncing, or syncs; a
        // leader's sync covers every record written before it started, so at most two syncs
        // after this append's write are needed and the loop ends.
        loop {
            if d.durable_seq >= target {
                return Ok(());
            }
            if d.failed {
                return Err(Error::Poisoned);
            }
            if d.leader {
                self.durable_cv.wait(&mut d);
                continue;
            }
            d.leader = true;
            drop(d);
            // The appenders the previous sync released are about to append again: give them
            // the processor for a moment so that this sync covers their records too, instead
            // of alternating small and large groups. Costs one yield against an fsync of
            // hundreds of microseconds.
            // Keep yielding while records keep arriving (a few times at most), so that a
            // burst of appenders all make this sync.
            let mut seen = self.log.lock().next_seq;
            for _ in 0..4 {
                std::thread::yield_now();
                let now = self.log.lock().next_seq;
                if now == seen {
                    break;
                }
                seen = now;
            }
            let fetched = {
                let mut log = self.log.lock();
                self.write_out(&mut log)
                    .map(|()| (Arc::clone(&log.active), log.next_seq - 1, log.active_id))
            };
            let (file, upto, id) = match fetched {
                Ok(f) => f,
                Err(e) => {
                    // The log is poisoned; hand leadership back so that waiters see it.
                    self.durable.lock().leader = false;
                    self.durable_cv.notify_all();
                    return Err(e);
                }
            };
            let res = self.sync_segment(&*file, upto);
            d = self.durable.lock();
            d.leader = false;
            match res {
                Ok(()) => d.durable_seq = d.durable_seq.max(upto),
                Err(e) => {
                    d.failed = true;
                    drop(d);
                    self.durable_cv.notify_all();
                    self.log.lock().failed = true;
                    let path = self.dir.join(recover::segment_name(id));
                    return Err(Error::io("fsync segment", path, e));
                }
            }
            self.durable_cv.notify_all();
        }
    }

    pub(crate) fn flush_durable(&self) -> Result<()> {
        let target = {
            let log = self.log.lock();
            if log.failed {
                return Err(Error::Poisoned);
            }
            log.next_seq - 1
        };
        self.wait_durable(target)
    }

    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable.lock().durable_seq
    }
}

/// The `Interval` policy's background thread: fsyncs every `every` until told to stop.
fn flusher(shared: &Shared, every: Duration) {
    loop {
        {
            let mut stop = shared.stop.lock();
            if !*stop {
                shared.stop_cv.wait_for(&mut stop, every);
            }
            if *stop {
                return;
            }
        }
        // A failure poisons the log, which appenders then report; the thread stops because
        // further syncs cannot make the log trustworthy again.
        if shared.flush_durable().is_err() {
            return;
        }
    }
}

/// A segmented write-ahead log in one directory.
///
/// `Wal` is `Send + Sync`: share it in an `Arc` and append from any number of threads.
/// Dropping it stops the background flusher and writes out a [`WalBuilder::write_buffer`], but
/// does not sync; call [`Wal::close`] for a clean shutdown.
pub struct Wal {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    report: RecoveryReport,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("policy", &self.shared.policy)
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Starts configuring a log stored in `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> WalBuilder {
        WalBuilder {
            dir: dir.as_ref().to_path_buf(),
            sync_policy: SyncPolicy::Always,
            recovery_mode: RecoveryMode::default(),
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_record_size: DEFAULT_MAX_RECORD,
            group_commit: true,
            write_buffer: 0,
            memory_map: true,
            fs: Arc::new(StdFs),
            metrics: None,
        }
    }

    /// Appends a record and returns its sequence number (1 for the first record of a new log,
    /// then consecutive). When it returns, the record has been handed to the operating system,
    /// and with [`SyncPolicy::Always`] it is also fsynced.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] (nothing written); [`Error::Io`] if the write or fsync failed, after
    /// which the log is poisoned; [`Error::Poisoned`]; [`Error::Closed`];
    /// [`Error::SequenceExhausted`].
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        self.shared.append(payload)
    }

    /// Appends a record and returns its sequence number as soon as the record is handed to the
    /// operating system, without waiting for an fsync even under [`SyncPolicy::Always`]; call
    /// [`Wal::wait_durable`] with the returned number before acknowledging the record.
    ///
    /// This splits [`Wal::append`] in two so that an owner can append while holding a lock of
    /// its own (keeping its log order equal to its apply order) and wait for the group commit
    /// after releasing it, so that committers holding different locks share one fsync.
    ///
    /// # Errors
    ///
    /// As [`Wal::append`].
    pub fn append_nowait(&self, payload: &[u8]) -> Result<u64> {
        self.shared.append_nowait(payload)
    }

    /// [`Wal::append_nowait`] for a payload whose end is written under the log's lock: `finish`
    /// is called on `payload` with the lock held, once the log is known to be open, and what
    /// it leaves in `payload` is appended. Appends are ordered by the lock, so whatever
    /// `finish` takes from a counter of its own (a version, say) increases in log order, and a
    /// counter only ever changed there needs no atomic read-modify-write.
    ///
    /// `finish` runs while every other append waits: it should do little. It is not called if
    /// the log is closed or poisoned; if it is called and the append then fails, whatever it
    /// took is skipped, never logged.
    ///
    /// # Errors
    ///
    /// As [`Wal::append`]; [`Error::TooLarge`] is decided on the finished payload.
    pub fn append_nowait_with(
        &self,
        payload: &mut Vec<u8>,
        finish: impl FnOnce(&mut Vec<u8>),
    ) -> Result<u64> {
        self.shared.append_nowait_then(payload, finish, |_| {})
    }

    /// [`Wal::append_nowait_with`], then, only if the record was appended and with the lock
    /// still held, `logged` with its sequence number: what `logged` publishes is seen by every
    /// later append and by every checkpoint whose snapshot covers the record, and never for a
    /// record that failed to append. It too should do little.
    ///
    /// # Errors
    ///
    /// As [`Wal::append_nowait_with`].
    pub fn append_nowait_then(
        &self,
        payload: &mut Vec<u8>,
        finish: impl FnOnce(&mut Vec<u8>),
        logged: impl FnOnce(u64),
    ) -> Result<u64> {
        self.shared.append_nowait_then(payload, finish, logged)
    }

    /// Waits until every record up to sequence number `seq` is durable, fsyncing (as the
    /// group-commit leader) if no other thread is; returns at once if it already is. Works
    /// under every policy, so it also serves as a targeted [`Wal::flush_durable`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the fsync failed (the log is then poisoned), [`Error::Poisoned`].
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        // A number beyond the last append would never become durable; clamp it. The log lock
        // must be released before waiting: a group-commit leader takes it.
        let last = self.shared.log.lock().next_seq - 1;
        self.shared.wait_durable(seq.min(last))
    }

    /// The policy the log was opened with.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.shared.policy
    }

    /// Encodes `value` with postcard and appends it; see [`Wal::append`] and
    /// [`Record::decode`](crate::Record::decode).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if serialization fails, then as [`Wal::append`].
    pub fn append_value<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<u64> {
        let bytes = postcard::to_stdvec(value).map_err(Error::Encode)?;
        self.append(&bytes)
    }

    /// Waits until every record appended so far is durable (fsyncs if needed), whatever the
    /// policy.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the fsync failed (the log is then poisoned), [`Error::Poisoned`].
    pub fn flush_durable(&self) -> Result<()> {
        self.shared.flush_durable()
    }

    /// The highest sequence number known to be durable.
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq()
    }

    /// Bytes appended to the log since it was opened, framing included (snapshots of
    /// checkpoints not counted). Reading it takes no lock, so an owner can poll it on a hot
    /// path, for example to decide when to checkpoint.
    pub fn appended_bytes(&self) -> u64 {
        self.shared.appended.load(Ordering::Relaxed)
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.shared.log.lock().next_seq
    }

    /// What recovery found when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Streams every record in the log as it is now: the last checkpoint's snapshot records
    /// first, then the log's records in sequence order. Records appended after this call are
    /// not included. Do not run a checkpoint while a replay is in progress: it deletes the files
    /// the replay is reading (the replay then yields an [`Error::Io`]).
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`] if the log is poisoned; errors while reading are yielded by the
    /// iterator.
    pub fn replay(&self) -> Result<Replay> {
        let mut log = self.shared.log.lock();
        if log.failed {
            return Err(Error::Poisoned);
        }
        self.shared.write_out(&mut log)?;
        Ok(Replay::new(
            Arc::clone(&self.shared.fs),
            self.shared.dir.clone(),
            self.shared.mode,
            self.shared.max_record,
            log.manifest,
            log.segments.clone(),
            log.next_seq - 1,
        ))
    }

    /// Syncs everything appended, refuses further appends and stops the background flusher.
    /// Calling it twice is harmless.
    ///
    /// # Errors
    ///
    /// As [`Wal::flush_durable`]; the log is closed even if the final sync fails.
    pub fn close(&self) -> Result<()> {
        // Appends are refused before the final sync, so that it covers every append that was
        // acknowledged: one racing with close either lands before the refusal (and the sync)
        // or gets `Error::Closed`. Refused after the sync, an append acknowledged in between
        // was never fsynced, and a power loss after a successful close lost it.
        let first = {
            let mut log = self.shared.log.lock();
            let first = !log.closed;
            log.closed = true;
            first
        };
        let synced = if first { self.flush_durable() } else { Ok(()) };
        let sealed = {
            let mut log = self.shared.log.lock();
            // Cut a reserved zero tail and make the cut durable, so that a closed log holds
            // exactly its records. (Recovery would cut it too; this keeps the files tidy.)
            if first && !log.failed {
                match self.shared.seal(&mut log) {
                    Ok(true) => log.active.sync().map_err(|e| {
                        let path = self.shared.dir.join(recover::segment_name(log.active_id));
                        Error::io("fsync segment", path, e)
                    }),
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                }
            } else {
                Ok(())
            }
        };
        self.stop_flusher();
        synced.and(sealed)
    }

    fn stop_flusher(&self) {
        *self.shared.stop.lock() = true;
        self.shared.stop_cv.notify_all();
        if let Some(handle) = self.flusher.lock().take() {
            // The flusher never panics (it only calls fallible functions); if it somehow did,
            // there is nothing to recover here, and the log stays usable.
            let _ = handle.join();
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Checks that the log is usable (not poisoned or closed).
    pub(crate) fn check_open(&self) -> Result<()> {
        Shared::check_open(&self.shared.log.lock())
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop_flusher();
        // Hand buffered frames to the OS (no fsync), so that a dropped log loses no more than
        // a closed one would on a process crash. A failure poisons a log no one will use.
        let mut log = self.shared.log.lock();
        if !log.failed {
            let _ = self.shared.write_out(&mut log);
        }
    }
}

#[cfg(test)]
mod tests;
