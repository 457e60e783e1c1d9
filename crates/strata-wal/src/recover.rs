//! Recovery at open, and the replay iterator.
//!
//! Directory layout: `{id:020}.wal` segments, `checkpoint-{id:020}.snap` snapshots, `MANIFEST`
//! (which checkpoint is current and which segment follows it), `LOCK`, and `*.tmp` files that
//! only exist while a file is being written and are garbage after a crash.

use crate::error::{Error, Result};
use crate::format::{
    self, CorruptionKind, FileKind, Frame, HeaderError, RecordType, FRAME_OVERHEAD, HEADER_LEN,
};
use crate::fs::{FileBytes, FileSystem};
use crate::{Record, RecoveryMode, Source};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) const MANIFEST: &str = "MANIFEST";
pub(crate) const MANIFEST_TMP: &str = "MANIFEST.tmp";
const MANIFEST_MAGIC: [u8; 8] = *b"STRATAMF";
const MANIFEST_LEN: usize = 40;

/// At most this many problems are listed in a report; the count goes on.
pub(crate) const MAX_LISTED_PROBLEMS: usize = 1000;

pub(crate) fn segment_name(id: u64) -> String {
    format!("{id:020}.wal")
}

pub(crate) fn snapshot_name(id: u64) -> String {
    format!("checkpoint-{id:020}.snap")
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The log adds one to segment ids; u64::MAX cannot be one of its names.
    digits.parse().ok().filter(|&id| id != u64::MAX)
}

pub(crate) fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The current checkpoint, as the manifest records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// Names the snapshot file.
    pub(crate) checkpoint_id: u64,
    /// The snapshot stands for every record up to and including this sequence number.
    pub(crate) covered_seq: u64,
    /// Segments with a smaller id are covered by the snapshot and obsolete.
    pub(crate) first_segment: u64,
}

impl Manifest {
    pub(crate) fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut b = [0u8; MANIFEST_LEN];
        b[..8].copy_from_slice(&MANIFEST_MAGIC);
        b[8..12].copy_from_slice(&format::FORMAT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.checkpoint_id.to_le_bytes());
        b[20..28].copy_from_slice(&self.covered_seq.to_le_bytes());
        b[28..36].copy_from_slice(&self.first_segment.to_le_bytes());
        let crc = crate::crc::checksum(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(path: &Path, b: &[u8]) -> Result<Self> {
        let corrupt = |why| Error::Corruption {
            path: path.to_path_buf(),
            segment: None,
            offset: 0,
            kind: CorruptionKind::BadManifest(why),
        };
        if b.len() != MANIFEST_LEN {
            return Err(corrupt("wrong length"));
        }
        if b[..8] != MANIFEST_MAGIC {
            return Err(corrupt("bad magic"));
        }
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&b[36..40]);
        if u32::from_le_bytes(crc) != crate::crc::checksum(&b[..36]) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&b[8..12]);
        let version = u32::from_le_bytes(v);
        if version != format::FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                supported: format::FORMAT_VERSION,
            });
        }
        let m = Manifest {
            checkpoint_id: u64_at(12),
            covered_seq: u64_at(20),
            first_segment: u64_at(28),
        };
        // The log adds one to each of these; a value at the top of the range cannot be ours.
        if m.checkpoint_id == u64::MAX || m.covered_seq == u64::MAX || m.first_segment == u64::MAX {
            return Err(corrupt("a counter is out of range"));
        }
        Ok(m)
    }
}

/// One damaged range found by recovery or by [`check_dir`](crate::check_dir).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file concerned.
    pub path: PathBuf,
    /// Byte offset of the damage in that file.
    pub offset: u64,
    /// What is wrong.
    pub kind: CorruptionKind,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}: {}", self.path.display(), self.offset, self.kind)
    }
}

/// What recovery found and did when the log was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The covered sequence number of the checkpoint recovered, if any.
    pub checkpoint_seq: Option<u64>,
    /// Records in the checkpoint's snapshot.
    pub snapshot_records: u64,
    /// Segment files scanned.
    pub segments: usize,
    /// Log records recovered (not counting the snapshot).
    pub records: u64,
    /// Bytes of the log records recovered, framing included (not counting the snapshot).
    pub bytes: u64,
    /// Bytes of the snapshot records recovered, framing included (the end marker excluded).
    pub snapshot_bytes: u64,
    /// The highest sequence number recovered (0 for an empty log).
    pub last_seq: u64,
    /// Bytes cut from the end of the log (a torn tail, or salvage's unreadable tail).
    pub bytes_truncated: u64,
    /// Damaged ranges skipped by [`RecoveryMode::SkipCorrupt`] (at most 1000 listed).
    pub skipped: Vec<Problem>,
    /// How many damaged ranges were skipped in all.
    pub skipped_count: u64,
}

/// What recovery hands to the log it opens.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) manifest: Option<Manifest>,
    /// Live segment ids, ascending.
    pub(crate) segments: Vec<u64>,
    /// The id the next segment must take.
    pub(crate) next_segment: u64,
    pub(crate) report: RecoveryReport,
}

/// The outcome of decoding the frame at one position of a segment.
pub(crate) enum Step<'a> {
    Record(Frame<'a>, usize),
    Bad { offset: usize, kind: CorruptionKind, resume: Option<usize> },
    End,
}

/// Decodes the log record at `pos`: it must be a data frame whose sequence number follows
/// `last_seq` (exactly, when `salvage` is off; merely above it when on).
pub(crate) fn step(bytes: &[u8], pos: usize, max: usize, last_seq: u64, salvage: bool) -> Step<'_> {
    if pos >= bytes.len() {
        return Step::End;
    }
    let kind = match format::decode_frame(&bytes[pos..], max) {
        Ok(frame) if frame.ty != RecordType::Data => CorruptionKind::BadRecordType(2),
        // u64::MAX is never a valid sequence number: the log could not number the next record.
        Ok(frame) if frame.seq == u64::MAX => {
            CorruptionKind::SequenceGap { expected: last_seq.wrapping_add(1), found: frame.seq }
        }
        Ok(frame) if frame.seq == last_seq.wrapping_add(1) || (salvage && frame.seq > last_seq) => {
            let next = pos + frame.encoded_len();
            return Step::Record(frame, next);
        }
        Ok(frame) => {
            CorruptionKind::SequenceGap { expected: last_seq.wrapping_add(1), found: frame.seq }
        }
        Err(kind) => kind,
    };
    let resume = if salvage {
        format::resync(bytes, pos, max, |f| f.ty == RecordType::Data && f.seq > last_seq)
    } else {
        None
    };
    Step::Bad { offset: pos, kind, resume }
}

/// Whether the bytes from `at` on are the reserved space of a memory-mapped segment that had
/// not been filled yet (see [`FileSystem::create_mapped`](crate::FileSystem::create_mapped)),
/// and so the end of the log rather than damage: all zero (and at least one), in a file exactly
/// `reserved` bytes long, the length the log gives every segment it reserves space for.
///
/// No frame is all zeros (a frame's type byte is never 0), so such a run is never a record,
/// and a run that reaches the end of the file holds none after it either. The length is what
/// tells reserved space from damage: a plain segment grows by its frames alone, so zeros at
/// its end are bytes the disk lost (a file system that extended the file but not its data
/// on a power loss), which the recovery mode must judge. Only a plain segment exactly that
/// long whose last bytes the disk lost could still be mistaken for a mapped one.
pub(crate) fn reserved_tail(bytes: &[u8], at: usize, reserved: u64) -> bool {
    bytes.len() as u64 == reserved
        && bytes.get(at..).is_some_and(|tail| !tail.is_empty() && tail.iter().all(|&b| b == 0))
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

/// Checks a file header; `Ok(None)` means the header is damaged (the caller decides).
fn check_header(
    path: &Path,
    bytes: &[u8],
    kind: FileKind,
    id: u64,
) -> Result<std::result::Result<(), CorruptionKind>> {
    match format::decode_header(bytes) {
        Ok(h) if h.kind != kind => Ok(Err(CorruptionKind::BadMagic)),
        Ok(h) if h.id != id => Ok(Err(CorruptionKind::WrongId { expected: id, found: h.id })),
        Ok(_) => Ok(Ok(())),
        Err(HeaderError::Version(found)) => Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: format::FORMAT_VERSION,
        }),
        Err(HeaderError::Corrupt(k)) => Ok(Err(k)),
    }
}

/// The bookkeeping of one directory listing.
pub(crate) struct Listing {
    pub(crate) segments: Vec<u64>,
    pub(crate) snapshots: Vec<u64>,
    pub(crate) temps: Vec<String>,
}

pub(crate) fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Listing> {
    let mut l = Listing { segments: Vec::new(), snapshots: Vec::new(), temps: Vec::new() };
    for name in fs.list(dir).map_err(io("list", dir))? {
        if let Some(id) = parse_segment_name(&name) {
            l.segments.push(id);
        } else if let Some(id) = parse_snapshot_name(&name) {
            l.snapshots.push(id);
        } else if name.ends_with(".tmp") {
            l.temps.push(name);
        }
    }
    l.segments.sort_unstable();
    l.snapshots.sort_unstable();
    Ok(l)
}

pub(crate) fn read_manifest(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    match fs.read(&path) {
        Ok(bytes) => Manifest::decode(&path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read manifest", &path, e)),
    }
}

struct Ctx<'a> {
    path: &'a Path,
    segment: Option<u64>,
    mode: RecoveryMode,
    report: &'a mut RecoveryReport,
}

impl Ctx<'_> {
    /// Applies the mode to one problem: an error unless `tolerated`, or salvage lists it.
    fn problem(&mut self, offset: u64, kind: CorruptionKind, tolerated: bool) -> Result<()> {
        if tolerated {
            return Ok(());
        }
        if self.mode != RecoveryMode::SkipCorrupt {
            return Err(Error::Corruption {
                path: self.path.to_path_buf(),
                segment: self.segment,
                offset,
                kind,
            });
        }
        self.report.skipped_count += 1;
        if self.report.skipped.len() < MAX_LISTED_PROBLEMS {
            self.report.skipped.push(Problem { path: self.path.to_path_buf(), offset, kind });
        }
        Ok(())
    }
}

/// Validates the snapshot and counts its records (recovery keeps none of them in memory).
fn recover_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    m: &Manifest,
    mode: RecoveryMode,
    max: usize,
    report: &mut RecoveryReport,
) -> Result<()> {
    let path = dir.join(snapshot_name(m.checkpoint_id));
    let bytes = fs.read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Corruption {
                path: dir.join(MANIFEST),
                segment: None,
                offset: 0,
                kind: CorruptionKind::BadManifest("the snapshot it names is missing"),
            }
        } else {
            Error::io("read snapshot", &path, e)
        }
    })?;
    let mut ctx = Ctx { path: &path, segment: None, mode, report };
    let mut snap = SnapshotCursor::new(bytes, m.covered_seq, max);
    match check_header(&path, &snap.bytes, FileKind::Snapshot, m.checkpoint_id)? {
        Ok(()) => {}
        Err(kind) => return ctx.problem(0, kind, false),
    }
    let salvage = mode == RecoveryMode::SkipCorrupt;
    loop {
        match snap.next(salvage) {
            SnapStep::Record(payload) => {
                ctx.report.snapshot_records += 1;
                ctx.report.snapshot_bytes += (FRAME_OVERHEAD + payload.len()) as u64;
            }
            SnapStep::Done => return Ok(()),
            SnapStep::Bad(offset, kind) => ctx.problem(offset, kind, false)?,
        }
    }
}

/// Reads a snapshot's data frames in order and checks its end marker.
pub(crate) struct SnapshotCursor {
    pub(crate) bytes: FileBytes,
    pos: usize,
    covered: u64,
    count: u64,
    max: usize,
    done: bool,
}

pub(crate) enum SnapStep {
    Record(Vec<u8>),
    Bad(u64, CorruptionKind),
    Done,
}

impl SnapshotCursor {
    pub(crate) fn new(bytes: FileBytes, covered: u64, max: usize) -> Self {
        SnapshotCursor { bytes, pos: HEADER_LEN, covered, count: 0, max, done: false }
    }

    /// The next record, the next problem (after which salvage goes on and strict reading
    /// stops), or the end.
    pub(crate) fn next(&mut self, salvage: bool) -> SnapStep {
        if self.done {
            return SnapStep::Done;
        }
        let bytes: &[u8] = &self.bytes;
        let pos = self.pos;
        let kind = if pos >= bytes.len() {
            CorruptionKind::IncompleteSnapshot
        } else {
            // The end marker's payload holds a u64 count, so the cap is at least 8 bytes.
            match format::decode_frame(&bytes[pos..], self.max.max(8)) {
                Ok(f)
                    if f.ty == RecordType::Data
                        && f.seq == self.covered
                        && f.payload.len() <= self.max =>
                {
                    self.pos += f.encoded_len();
                    self.count += 1;
                    return SnapStep::Record(f.payload.to_vec());
                }
                Ok(f)
                    if f.ty == RecordType::SnapshotEnd
                        && f.payload == self.count.to_le_bytes()
                        && pos + f.encoded_len() == bytes.len() =>
                {
                    self.done = true;
                    return SnapStep::Done;
                }
                Ok(_) => CorruptionKind::IncompleteSnapshot,
                Err(kind) => kind,
            }
        };
        let resume = if salvage {
            let covered = self.covered;
            format::resync(bytes, pos, self.max.max(8), |f| {
                (f.ty == RecordType::Data && f.seq == covered) || f.ty == RecordType::SnapshotEnd
            })
        } else {
            None
        };
        match resume {
            // Salvage cannot check the count once records were skipped: accept any end marker.
            Some(p) => {
                self.pos = p;
                if let Ok(f) = format::decode_frame(&bytes[p..], self.max.max(8)) {
                    if f.ty == RecordType::SnapshotEnd {
                        self.done = true;
                    }
                }
            }
            None => self.done = true,
        }
        SnapStep::Bad(pos as u64, kind)
    }
}

/// Recovers the log in `dir`: cleans up after an interrupted checkpoint, validates the
/// snapshot and every segment according to `mode`, truncates a torn tail, and removes an empty
/// last segment so that the new active segment can take its id. `reserved` is the length of
/// a segment whose space was reserved for a memory map (see [`reserved_tail`]).
pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    mode: RecoveryMode,
    max: usize,
    reserved: u64,
) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let manifest = read_manifest(fs, dir)?;
    let listing = list(fs, dir)?;

    // A checkpoint interrupted before its manifest switch leaves temporary files and an
    // orphaned snapshot; one interrupted after the switch leaves covered segments and the old
    // snapshot. Either way these files are garbage by construction, whatever the mode.
    let mut removed = false;
    for name in &listing.temps {
        let path = dir.join(name);
        fs.remove(&path).map_err(io("remove temporary file", &path))?;
        removed = true;
    }
    for &id in &listing.snapshots {
        if manifest.map(|m| m.checkpoint_id) != Some(id) {
            let path = dir.join(snapshot_name(id));
            fs.remove(&path).map_err(io("remove obsolete snapshot", &path))?;
            removed = true;
        }
    }
    let first_segment = manifest.map_or(0, |m| m.first_segment);
    let mut segments = Vec::new();
    for &id in &listing.segments {
        if id < first_segment {
            let path = dir.join(segment_name(id));
            fs.remove(&path).map_err(io("remove covered segment", &path))?;
            removed = true;
        } else {
            segments.push(id);
        }
    }

    if let Some(m) = &manifest {
        report.checkpoint_seq = Some(m.covered_seq);
        recover_snapshot(fs, dir, m, mode, max, &mut report)?;
    }

    let salvage = mode == RecoveryMode::SkipCorrupt;
    let mut last_seq = manifest.map_or(0, |m| m.covered_seq);
    let mut prev_id: Option<u64> = None;
    let mut keep = Vec::with_capacity(segments.len());
    let count = segments.len();
    for (i, &id) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        let path = dir.join(segment_name(id));
        let mut ctx = Ctx { path: &path, segment: Some(id), mode, report: &mut report };
        if let Some(prev) = prev_id {
            if id != prev + 1 {
                ctx.problem(
                    0,
                    CorruptionKind::MissingSegment { expected: prev + 1, found: id },
                    false,
                )?;
            }
        }
        prev_id = Some(id);
        ctx.report.segments += 1;

        let bytes = fs.read(&path).map_err(io("read segment", &path))?;
        let len = bytes.len() as u64;
        let mut records = 0u64;
        let mut record_bytes = 0u64;
        let mut cut: Option<u64> = None;
        // Where the reserved zeros of a memory-mapped last segment begin: its end, not damage.
        let mut zeros_at: Option<u64> = None;
        match check_header(&path, &bytes, FileKind::Segment, id)? {
            Ok(()) => {
                let mut pos = HEADER_LEN;
                loop {
                    match step(&bytes, pos, max, last_seq, salvage) {
                        Step::Record(frame, next) => {
                            last_seq = frame.seq;
                            records += 1;
                            record_bytes += (next - pos) as u64;
                            pos = next;
                        }
                        Step::End => break,
                        Step::Bad { offset, .. }
                            if is_last && reserved_tail(&bytes, offset, reserved) =>
                        {
                            zeros_at = Some(offset as u64);
                            break;
                        }
                        Step::Bad { offset, kind, resume } => {
                            let torn_tail = is_last && mode == RecoveryMode::TolerateTornTail;
                            ctx.problem(offset as u64, kind, torn_tail)?;
                            match resume {
                                Some(p) => pos = p,
                                None => {
                                    if is_last {
                                        cut = Some(offset as u64);
                                    }
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            Err(kind) => {
                // Segments are created under a temporary name and renamed once their header
                // is durable, so a damaged header is never a torn write; only salvage goes on.
                ctx.problem(0, kind, false)?;
                if is_last {
                    cut = Some(0);
                }
            }
        }
        drop(bytes);
        ctx.report.records += records;
        ctx.report.bytes += record_bytes;
        if let Some(at) = cut {
            ctx.report.bytes_truncated += len - at;
            if at > 0 {
                fs.truncate(&path, at).map_err(io("truncate torn tail", &path))?;
            }
        } else if let Some(at) = zeros_at.filter(|_| records > 0) {
            // The segment becomes an ordinary closed one: later segments follow it, and only
            // the last segment of a log may end in zeros.
            fs.truncate(&path, at).map_err(io("cut reserved space", &path))?;
        }
        if is_last && (records == 0 || cut == Some(0)) {
            // An empty last segment (a crash right after a rotation or an open) is removed so
            // the new active segment takes its id and ids stay contiguous.
            fs.remove(&path).map_err(io("remove empty segment", &path))?;
            removed = true;
        } else {
            keep.push(id);
        }
    }
    if removed {
        fs.sync_dir(dir).map_err(io("sync directory", dir))?;
    }
    report.last_seq = last_seq;
    let next_segment =
        prev_id.map_or(first_segment, |p| if keep.last() == Some(&p) { p + 1 } else { p });
    Ok(Recovered {
        manifest,
        segments: keep,
        next_segment: next_segment.max(first_segment).max(1),
        report,
    })
}

/// Streams the records of a log: the snapshot's first, then the segments', in sequence order.
///
/// Created by [`Wal::replay`](crate::Wal::replay). It reads one file at a time (memory-mapped
/// for [`StdFs`](crate::StdFs)) and copies each payload out, so memory stays bounded by one
/// record. After recovery the files are clean, so in the strict modes an error here means the
/// files changed after open; the iterator yields it and stops. With
/// [`RecoveryMode::SkipCorrupt`] it skips the same damaged ranges recovery skipped.
pub struct Replay {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    salvage: bool,
    max: usize,
    snapshot: Option<Manifest>,
    segments: VecDeque<u64>,
    upto: u64,
    last_seq: u64,
    cur: Option<Cursor>,
    done: bool,
}

enum Cursor {
    Snapshot { path: PathBuf, cur: SnapshotCursor, seq: u64 },
    Segment { path: PathBuf, id: u64, bytes: FileBytes, pos: usize },
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("dir", &self.dir)
            .field("last_seq", &self.last_seq)
            .field("upto", &self.upto)
            .finish_non_exhaustive()
    }
}

impl Replay {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        mode: RecoveryMode,
        max: usize,
        manifest: Option<Manifest>,
        segments: Vec<u64>,
        upto: u64,
    ) -> Self {
        Replay {
            fs,
            dir,
            salvage: mode == RecoveryMode::SkipCorrupt,
            max,
            snapshot: manifest,
            segments: segments.into(),
            upto,
            last_seq: manifest.map_or(0, |m| m.covered_seq),
            cur: None,
            done: false,
        }
    }

    fn fail(&mut self, e: Error) -> Option<Result<Record>> {
        self.done = true;
        Some(Err(e))
    }

    /// Opens the next file; `Ok(false)` when there is none left.
    fn open_next(&mut self) -> Result<bool> {
        if let Some(m) = self.snapshot.take() {
            let path = self.dir.join(snapshot_name(m.checkpoint_id));
            let bytes = self.fs.read(&path).map_err(io("read snapshot", &path))?;
            if let Err(kind) = check_header(&path, &bytes, FileKind::Snapshot, m.checkpoint_id)? {
                if !self.salvage {
                    return Err(Error::Corruption { path, segment: None, offset: 0, kind });
                }
                return Ok(true);
            }
            let cur = SnapshotCursor::new(bytes, m.covered_seq, self.max);
            self.cur = Some(Cursor::Snapshot { path, cur, seq: m.covered_seq });
            return Ok(true);
        }
        let Some(id) = self.segments.pop_front() else { return Ok(false) };
        let path = self.dir.join(segment_name(id));
        let bytes = self.fs.read(&path).map_err(io("read segment", &path))?;
        if let Err(kind) = check_header(&path, &bytes, FileKind::Segment, id)? {
            if !self.salvage {
                return Err(Error::Corruption { path, segment: Some(id), offset: 0, kind });
            }
            return Ok(true);
        }
        self.cur = Some(Cursor::Segment { path, id, bytes, pos: HEADER_LEN });
        Ok(true)
    }
}

impl Iterator for Replay {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        // Each turn either yields, finishes a file, or opens one; files are finite and the
        // positions only move forward, so the loop ends.
        loop {
            if self.done {
                return None;
            }
            match &mut self.cur {
                None => match self.open_next() {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.done = true;
                        return None;
                    }
                    Err(e) => return self.fail(e),
                },
                Some(Cursor::Snapshot { path, cur, seq }) => match cur.next(self.salvage) {
                    SnapStep::Record(payload) => {
                        return Some(Ok(Record { seq: *seq, source: Source::Snapshot, payload }))
                    }
                    SnapStep::Done => self.cur = None,
                    SnapStep::Bad(offset, kind) => {
                        if !self.salvage {
                            let path = path.clone();
                            return self.fail(Error::Corruption {
                                path,
                                segment: None,
                                offset,
                                kind,
                            });
                        }
                    }
                },
                Some(Cursor::Segment { path, id, bytes, pos }) => {
                    // Records past `upto` were appended after the replay began and may still
                    // be half-written; the replay ends at the log's state when it was created.
                    if self.last_seq >= self.upto {
                        self.done = true;
                        return None;
                    }
                    match step(bytes, *pos, self.max, self.last_seq, self.salvage) {
                        Step::Record(frame, next) => {
                            *pos = next;
                            self.last_seq = frame.seq;
                            let payload = frame.payload.to_vec();
                            return Some(Ok(Record {
                                seq: frame.seq,
                                source: Source::Log,
                                payload,
                            }));
                        }
                        Step::End => self.cur = None,
                        Step::Bad { offset, kind, resume } => {
                            if !self.salvage {
                                let e = Error::Corruption {
                                    path: path.clone(),
                                    segment: Some(*id),
                                    offset: offset as u64,
                                    kind,
                                };
                                return self.fail(e);
                            }
                            match resume {
                                Some(p) => *pos = p,
                                None => self.cur = None,
                            }
                        }
                    }
                }
            }
        }
    }
}
