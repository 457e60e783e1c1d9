//! Offline validation and repair of a log directory (`cargo xtask wal-check`), in the spirit
//! of `redis-check-aof`.

use crate::error::{Error, Result};
use crate::format::{self, CorruptionKind, FileKind, RecordType, HEADER_LEN, MAX_PAYLOAD_LIMIT};
use crate::fs::FileSystem;
use crate::recover::{self, Problem, SnapStep, SnapshotCursor, Step, MAX_LISTED_PROBLEMS};
use std::fmt;
use std::path::{Path, PathBuf};

/// Settings for [`check_dir`].
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// Truncate the log at its first bad record (and remove the segments after it).
    pub repair: bool,
    /// The largest payload accepted. The default is the format's limit: checking reads
    /// payloads in place and never allocates for them, so a large bound costs nothing.
    pub max_record_size: usize,
    /// The segment size the log was written with (default 64 MiB, as
    /// [`WalBuilder::segment_size`](crate::WalBuilder::segment_size)). Zeros at the end of the
    /// last segment are the unfilled space of a memory-mapped segment, not damage, only in a
    /// file as long as the space reserved for this size; elsewhere they are a problem.
    pub segment_size: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            repair: false,
            max_record_size: MAX_PAYLOAD_LIMIT,
            segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// What [`check_dir`] found (and repaired).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// The directory checked.
    pub dir: PathBuf,
    /// `(checkpoint id, covered sequence number)` of the manifest, if there is one.
    pub checkpoint: Option<(u64, u64)>,
    /// Valid records in the snapshot.
    pub snapshot_records: u64,
    /// Segment files examined.
    pub segments: usize,
    /// Valid log records found.
    pub records: u64,
    /// Total bytes of the segment files.
    pub bytes: u64,
    /// The highest valid sequence number found (0 if none).
    pub last_seq: u64,
    /// Every problem found, in file order (at most 1000 listed).
    pub problems: Vec<Problem>,
    /// Files a normal open would delete as garbage (temporary files, covered segments).
    pub garbage: Vec<PathBuf>,
    /// What `repair` did, one line per action.
    pub repairs: Vec<String>,
    /// Problems that repair cannot fix (in the manifest or the snapshot).
    pub unrepairable: bool,
}

impl CheckReport {
    /// Whether the log has no problem left (none found, or all repaired).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() || (!self.repairs.is_empty() && !self.unrepairable)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "WAL directory {}", self.dir.display())?;
        if let Some((id, seq)) = self.checkpoint {
            writeln!(
                f,
                "  checkpoint {id} covers records up to {seq}; snapshot holds {} records",
                self.snapshot_records
            )?;
        }
        writeln!(
            f,
            "  {} segments, {} bytes, {} valid records, last sequence number {}",
            self.segments, self.bytes, self.records, self.last_seq
        )?;
        for g in &self.garbage {
            writeln!(f, "  garbage (removed at next open): {}", g.display())?;
        }
        if self.problems.is_empty() {
            writeln!(f, "  OK: every record is valid")?;
        }
        for p in &self.problems {
            writeln!(f, "  PROBLEM: {p}")?;
        }
        for r in &self.repairs {
            writeln!(f, "  REPAIRED: {r}")?;
        }
        if self.unrepairable {
            writeln!(f, "  the manifest or snapshot is damaged; --repair cannot fix that (try opening with RecoveryMode::SkipCorrupt)")?;
        }
        Ok(())
    }
}

/// Validates every file of the log in `dir` and reports what is wrong and where; with
/// [`CheckOptions::repair`], truncates the log at its first bad record, as a
/// [`RecoveryMode::TolerateTornTail`](crate::RecoveryMode::TolerateTornTail) open would do
/// for a torn tail, but anywhere in the log (records after the damage are lost).
///
/// Takes the directory lock, so it refuses to run beside a live writer.
///
/// # Errors
///
/// [`Error::Locked`] if a writer holds the directory, [`Error::Io`]. Damage is not an error:
/// it is listed in the report.
pub fn check_dir(fs: &dyn FileSystem, dir: &Path, opts: CheckOptions) -> Result<CheckReport> {
    let max = opts.max_record_size.clamp(1, MAX_PAYLOAD_LIMIT);
    let reserved = crate::wal::reserved_len(opts.segment_size);
    let _lock = fs.lock_dir(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked { dir: dir.to_path_buf() }
        } else {
            Error::io("lock directory", dir, e)
        }
    })?;
    let mut report = CheckReport { dir: dir.to_path_buf(), ..CheckReport::default() };
    let push = |report: &mut CheckReport, path: &Path, offset: u64, kind: CorruptionKind| {
        if report.problems.len() < MAX_LISTED_PROBLEMS {
            report.problems.push(Problem { path: path.to_path_buf(), offset, kind });
        }
    };

    let manifest = match recover::read_manifest(fs, dir) {
        Ok(m) => m,
        Err(Error::Corruption { path, offset, kind, .. }) => {
            push(&mut report, &path, offset, kind);
            report.unrepairable = true;
            None
        }
        Err(e) => return Err(e),
    };
    let listing = recover::list(fs, dir)?;
    for t in &listing.temps {
        report.garbage.push(dir.join(t));
    }
    for &id in &listing.snapshots {
        if manifest.map(|m| m.checkpoint_id) != Some(id) {
            report.garbage.push(dir.join(recover::snapshot_name(id)));
        }
    }
    let first = manifest.map_or(0, |m| m.first_segment);
    for &id in listing.segments.iter().filter(|&&id| id < first) {
        report.garbage.push(dir.join(recover::segment_name(id)));
    }

    if let Some(m) = manifest {
        report.checkpoint = Some((m.checkpoint_id, m.covered_seq));
        let path = dir.join(recover::snapshot_name(m.checkpoint_id));
        match fs.read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                push(
                    &mut report,
                    &dir.join(recover::MANIFEST),
                    0,
                    CorruptionKind::BadManifest("the snapshot it names is missing"),
                );
                report.unrepairable = true;
            }
            Err(e) => return Err(Error::io("read snapshot", &path, e)),
            Ok(bytes) => {
                let header = format::decode_header(&bytes);
                match header {
                    Ok(h) if h.kind == FileKind::Snapshot && h.id == m.checkpoint_id => {
                        let mut cur = SnapshotCursor::new(bytes, m.covered_seq, max);
                        // Each step moves forward through a finite file or ends it.
                        loop {
                            match cur.next(true) {
                                SnapStep::Record(_) => report.snapshot_records += 1,
                                SnapStep::Done => break,
                                SnapStep::Bad(offset, kind) => {
                                    push(&mut report, &path, offset, kind);
                                    report.unrepairable = true;
                                }
                            }
                        }
                    }
                    _ => {
                        push(&mut report, &path, 0, CorruptionKind::BadMagic);
                        report.unrepairable = true;
                    }
                }
            }
        }
    }

    // The first damage in the log: (segment index, byte offset) for repair.
    let mut first_bad: Option<(usize, u64)> = None;
    let mut last_seq = manifest.map_or(0, |m| m.covered_seq);
    let segments: Vec<u64> = listing.segments.iter().copied().filter(|&id| id >= first).collect();
    let mut prev: Option<u64> = None;
    for (i, &id) in segments.iter().enumerate() {
        let path = dir.join(recover::segment_name(id));
        report.segments += 1;
        if let Some(p) = prev {
            if id != p + 1 {
                push(
                    &mut report,
                    &path,
                    0,
                    CorruptionKind::MissingSegment { expected: p + 1, found: id },
                );
                first_bad.get_or_insert((i, 0));
            }
        }
        prev = Some(id);
        let bytes = fs.read(&path).map_err(|e| Error::io("read segment", &path, e))?;
        report.bytes += bytes.len() as u64;
        match format::decode_header(&bytes) {
            Ok(h) if h.kind == FileKind::Segment && h.id == id => {}
            Ok(h) => {
                let kind = if h.kind == FileKind::Segment {
                    CorruptionKind::WrongId { expected: id, found: h.id }
                } else {
                    CorruptionKind::BadMagic
                };
                push(&mut report, &path, 0, kind);
                first_bad.get_or_insert((i, 0));
                continue;
            }
            Err(format::HeaderError::Version(found)) => {
                return Err(Error::UnsupportedVersion {
                    path,
                    found,
                    supported: format::FORMAT_VERSION,
                });
            }
            Err(format::HeaderError::Corrupt(kind)) => {
                push(&mut report, &path, 0, kind);
                first_bad.get_or_insert((i, 0));
                continue;
            }
        }
        let mut pos = HEADER_LEN;
        // Every turn moves `pos` forward or ends the file.
        loop {
            match recover::step(&bytes, pos, max, last_seq, false) {
                Step::Record(frame, next) => {
                    last_seq = frame.seq;
                    report.records += 1;
                    pos = next;
                }
                Step::End => break,
                // The unfilled space of a memory-mapped last segment: its end, not damage.
                Step::Bad { offset, .. }
                    if i + 1 == segments.len()
                        && recover::reserved_tail(&bytes, offset, reserved) =>
                {
                    break
                }
                Step::Bad { offset, kind, .. } => {
                    push(&mut report, &path, offset as u64, kind);
                    first_bad.get_or_insert((i, offset as u64));
                    let after = last_seq;
                    match format::resync(&bytes, offset, max, |f| {
                        f.ty == RecordType::Data && f.seq > after
                    }) {
                        Some(p) => {
                            // The records between are lost with the damage, which is already
                            // reported; go on from the frame found.
                            if let Ok(f) = format::decode_frame(&bytes[p..], max) {
                                last_seq = f.seq - 1;
                            }
                            pos = p;
                        }
                        None => break,
                    }
                }
            }
        }
    }
    report.last_seq = last_seq;

    if opts.repair {
        if let Some((i, offset)) = first_bad {
            let path = dir.join(recover::segment_name(segments[i]));
            if offset == 0 {
                fs.remove(&path).map_err(|e| Error::io("remove segment", &path, e))?;
                report.repairs.push(format!("removed {}", path.display()));
            } else {
                fs.truncate(&path, offset).map_err(|e| Error::io("truncate segment", &path, e))?;
                report.repairs.push(format!("truncated {} to {offset} bytes", path.display()));
            }
            for &id in &segments[i + 1..] {
                let later = dir.join(recover::segment_name(id));
                fs.remove(&later).map_err(|e| Error::io("remove segment", &later, e))?;
                report.repairs.push(format!("removed {} (after the damage)", later.display()));
            }
            fs.sync_dir(dir).map_err(|e| Error::io("fsync directory", dir, e))?;
        }
    }
    Ok(report)
}
