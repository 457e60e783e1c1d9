//! Memory-mapped segments (`StdFs` on Linux, under `Interval` and `Never`): what the files
//! look like after a crash, a clean close and rotations, and what every recovery mode makes
//! of the reserved zeros, of a torn frame before them and of damage inside them.
#![cfg(target_os = "linux")]

use crate::*;
use std::os::unix::fs::FileExt;
use std::time::Duration;
use strata_wal::{check_dir, CheckOptions, CorruptionKind};

const RESERVE: u64 = 256 << 10;

fn segment(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

fn file_len(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

/// Opens a mapped log in `dir`, appends records 1..=n, and drops it without `close`: what a
/// crashed process leaves (dropping syncs nothing; the frames are in the page cache).
fn crashed_log(dir: &Path, policy: SyncPolicy, n: u64) -> anyhow::Result<()> {
    let wal = Wal::builder(dir).sync_policy(policy).segment_size(RESERVE).open()?;
    for seq in 1..=n {
        anyhow::ensure!(wal.append(&payload_for(seq))? == seq);
    }
    drop(wal);
    Ok(())
}

/// A directory whose segments get memory-mapped: the temporary directory, or else `/dev/shm`
/// (tmpfs), so that a machine whose temporary directory sits on a file system without maps
/// (ZFS, btrfs, overlayfs in a container: see `fallocate_reserves` in `fs.rs`, whose unit
/// test checks that decision against the file system the tests run on) still runs these
/// tests. With neither, the tests say so and stop, and under `CI=true` they fail.
fn mapped_dir() -> anyhow::Result<Option<PathBuf>> {
    for dir in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
        if !dir.is_dir() {
            continue;
        }
        let Ok(probe) = tempfile::tempdir_in(&dir) else { continue };
        crashed_log(probe.path(), SyncPolicy::Never, 1)?;
        if file_len(&segment(probe.path(), 1))? == RESERVE {
            return Ok(Some(dir));
        }
    }
    anyhow::ensure!(
        std::env::var_os("CI").is_none_or(|v| v != "true"),
        "no directory here gets memory-mapped segments (temporary directory, /dev/shm)"
    );
    eprintln!("not checked: no directory here gets memory-mapped segments");
    Ok(None)
}

/// Opens a log written by [`crashed_log`], with its segment size.
fn open_mode(dir: &Path, mode: RecoveryMode) -> strata_wal::Result<Wal> {
    Wal::builder(dir).segment_size(RESERVE).recovery_mode(mode).open()
}

fn check_records(wal: &Wal, n: u64) -> anyhow::Result<()> {
    let records = replay_all(wal)?;
    anyhow::ensure!(records.len() as u64 == n, "{} records, expected {n}", records.len());
    for (i, r) in records.iter().enumerate() {
        anyhow::ensure!(r.seq == i as u64 + 1 && r.payload == payload_for(r.seq));
    }
    Ok(())
}

const MODES: [RecoveryMode; 3] =
    [RecoveryMode::TolerateTornTail, RecoveryMode::AbsoluteConsistency, RecoveryMode::SkipCorrupt];

#[test]
fn a_crashed_mapped_log_recovers_every_record_in_every_mode() -> anyhow::Result<()> {
    let Some(base) = mapped_dir()? else { return Ok(()) };
    for policy in [SyncPolicy::Interval(Duration::from_secs(60)), SyncPolicy::Never] {
        for mode in MODES {
            let tmp = tempfile::tempdir_in(&base)?;
            crashed_log(tmp.path(), policy, 300)?;
            // The segment still holds its reserved zeros after the frames.
            anyhow::ensure!(file_len(&segment(tmp.path(), 1))? == RESERVE);
            let opts = CheckOptions { segment_size: RESERVE, ..CheckOptions::default() };
            let check = check_dir(&strata_wal::StdFs, tmp.path(), opts)?;
            anyhow::ensure!(check.problems.is_empty(), "{mode:?}: {:?}", check.problems);
            let wal = open_mode(tmp.path(), mode)?;
            anyhow::ensure!(
                wal.recovery_report().bytes_truncated == 0,
                "{mode:?}: zeros are no damage"
            );
            anyhow::ensure!(wal.recovery_report().skipped_count == 0);
            check_records(&wal, 300)?;
            // Recovery cut the zeros: the old segment now ends at its last frame, so that
            // only the newest segment of a log ever ends in reserved space.
            let len = file_len(&segment(tmp.path(), 1))?;
            anyhow::ensure!(len < RESERVE && len == wal.recovery_report().bytes + 24);
        }
    }
    Ok(())
}

#[test]
fn close_cuts_the_reserved_space_and_rotation_leaves_exact_segments() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let policy = SyncPolicy::Interval(Duration::from_millis(5));
    let wal = Wal::builder(tmp.path()).sync_policy(policy).segment_size(4096).open()?;
    // Small records over many rotations, then one larger than a whole segment (it goes
    // through `write` after the map is sealed), then more small ones.
    let mut payloads = Vec::new();
    for seq in 1..=400u64 {
        let p = if seq == 200 { vec![0xAB; 10_000] } else { payload_for(seq) };
        anyhow::ensure!(wal.append(&p)? == seq);
        payloads.push(p);
    }
    wal.close()?;
    drop(wal);
    let mut total = 0;
    let mut segments = 0;
    for entry in std::fs::read_dir(tmp.path())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wal") {
            total += file_len(&path)?;
            segments += 1;
        }
    }
    let framed: u64 = payloads.iter().map(|p| p.len() as u64 + 17).sum();
    anyhow::ensure!(segments >= 5, "{segments} segments");
    anyhow::ensure!(total == framed + 24 * segments, "files hold exactly header and frames");
    let wal = open_mode(tmp.path(), RecoveryMode::AbsoluteConsistency)?;
    let records = replay_all(&wal)?;
    anyhow::ensure!(records.iter().map(|r| &r.payload).eq(payloads.iter()));
    Ok(())
}

#[test]
fn a_torn_frame_before_the_zeros_is_a_torn_tail() -> anyhow::Result<()> {
    let Some(base) = mapped_dir()? else { return Ok(()) };
    for mode in MODES {
        let tmp = tempfile::tempdir_in(&base)?;
        crashed_log(tmp.path(), SyncPolicy::Never, 100)?;
        // A frame torn the way a crash mid-copy leaves it: a header promising more bytes
        // than were copied, the reserved zeros after it.
        let path = segment(tmp.path(), 1);
        let end = frames_end(&path)?;
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.write_all_at(&[0x40, 0, 0, 0, 9, 9, 9, 1, 7], end)?;
        drop(file);
        let opened = open_mode(tmp.path(), mode);
        if mode == RecoveryMode::AbsoluteConsistency {
            match opened {
                Err(strata_wal::Error::Corruption { offset, .. }) => anyhow::ensure!(offset == end),
                other => anyhow::bail!("a torn frame is corruption here: {other:?}"),
            }
            continue;
        }
        let wal = opened?;
        anyhow::ensure!(wal.recovery_report().bytes_truncated == RESERVE - end, "{mode:?}");
        check_records(&wal, 100)?;
        anyhow::ensure!(file_len(&path)? == end);
    }
    Ok(())
}

/// The offset just past the last valid frame of a segment file.
fn frames_end(path: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path)?;
    let mut end = 24u64;
    for frame in strata_wal::format::FrameIter::new(&bytes[24..], 24, 1 << 20) {
        match frame {
            Ok((offset, f)) => end = offset + f.encoded_len() as u64,
            Err(_) => break,
        }
    }
    Ok(end)
}

#[test]
fn damage_inside_the_reserved_zeros_is_not_taken_for_the_end() -> anyhow::Result<()> {
    let Some(base) = mapped_dir()? else { return Ok(()) };
    let tmp = tempfile::tempdir_in(&base)?;
    crashed_log(tmp.path(), SyncPolicy::Never, 50)?;
    let path = segment(tmp.path(), 1);
    let end = frames_end(&path)?;
    // One stray byte far past the frames: the zeros before it do not reach the end of the
    // file, so they are not the reserved tail but a gap.
    let file = std::fs::OpenOptions::new().write(true).open(&path)?;
    file.write_all_at(&[1], end + 5000)?;
    drop(file);
    let opts = CheckOptions { segment_size: RESERVE, ..CheckOptions::default() };
    let check = check_dir(&strata_wal::StdFs, tmp.path(), opts)?;
    anyhow::ensure!(check.problems.len() == 1 && check.problems[0].offset == end);
    match open_mode(tmp.path(), RecoveryMode::AbsoluteConsistency) {
        Err(strata_wal::Error::Corruption { offset, kind, .. }) => {
            anyhow::ensure!(offset == end);
            anyhow::ensure!(matches!(kind, CorruptionKind::ChecksumMismatch { .. }));
        }
        other => anyhow::bail!("expected corruption, got {other:?}"),
    }
    let wal = open_mode(tmp.path(), RecoveryMode::TolerateTornTail)?;
    check_records(&wal, 50)?;
    anyhow::ensure!(wal.recovery_report().bytes_truncated == RESERVE - end);
    Ok(())
}

#[test]
fn large_and_small_frames_mixed_survive_a_crash() -> anyhow::Result<()> {
    // Frames of 2 KiB and more go into the reserved space with a positioned write, smaller
    // ones by a copy into the map; both must land in order, and survive the process.
    let tmp = tempfile::tempdir()?;
    let payload = |seq: u64| -> Vec<u8> {
        let len = if seq % 3 == 0 { 2031 + (seq as usize * 7) % 5000 } else { 10 + seq as usize };
        (0..len).map(|i| (seq as u8) ^ (i as u8)).collect()
    };
    let wal = Wal::builder(tmp.path())
        .sync_policy(SyncPolicy::Never)
        .segment_size(RESERVE)
        .max_record_size(64 << 10)
        .open()?;
    for seq in 1..=150u64 {
        anyhow::ensure!(wal.append(&payload(seq))? == seq);
    }
    drop(wal);
    let wal = Wal::builder(tmp.path())
        .segment_size(RESERVE)
        .max_record_size(64 << 10)
        .recovery_mode(RecoveryMode::AbsoluteConsistency)
        .open()?;
    let records = replay_all(&wal)?;
    anyhow::ensure!(records.len() == 150, "{} records", records.len());
    for r in &records {
        anyhow::ensure!(r.payload == payload(r.seq), "record {} differs", r.seq);
    }
    anyhow::ensure!(wal.recovery_report().bytes_truncated == 0);
    Ok(())
}

#[test]
fn replay_of_a_live_mapped_log_sees_every_frame_and_stops_at_its_end() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let wal =
        Wal::builder(tmp.path()).sync_policy(SyncPolicy::Never).segment_size(RESERVE).open()?;
    for seq in 1..=200u64 {
        wal.append(&payload_for(seq))?;
    }
    // The replay maps the active segment, zeros and all, while the log keeps appending to it.
    let replay = wal.replay()?;
    for seq in 201..=260u64 {
        wal.append(&payload_for(seq))?;
    }
    let records = replay.collect::<strata_wal::Result<Vec<_>>>()?;
    anyhow::ensure!(records.len() == 200, "{} records", records.len());
    anyhow::ensure!(records.iter().all(|r| r.payload == payload_for(r.seq)));
    check_records(&wal, 260)?;
    wal.close()?;
    Ok(())
}

#[test]
fn the_zeros_are_the_end_only_in_a_segment_of_the_reserved_length() -> anyhow::Result<()> {
    let Some(base) = mapped_dir()? else { return Ok(()) };
    // Reopened under another policy, the segment size alone says what was reserved: a log
    // written under `Never` and reopened under `Always` reads its zeros as the end.
    let tmp = tempfile::tempdir_in(&base)?;
    crashed_log(tmp.path(), SyncPolicy::Never, 120)?;
    let wal = Wal::builder(tmp.path())
        .segment_size(RESERVE)
        .recovery_mode(RecoveryMode::AbsoluteConsistency)
        .open()?;
    check_records(&wal, 120)?;
    anyhow::ensure!(wal.recovery_report().bytes_truncated == 0);
    drop(wal);

    // Reopened with another segment size, the file is not as long as that reservation, so
    // its zeros are damage like any other: the strict mode names the file and the offset,
    // the tolerant modes cut them and lose no record.
    for mode in MODES {
        let tmp = tempfile::tempdir_in(&base)?;
        crashed_log(tmp.path(), SyncPolicy::Never, 120)?;
        let path = segment(tmp.path(), 1);
        let end = frames_end(&path)?;
        let opened = Wal::builder(tmp.path()).segment_size(RESERVE * 2).recovery_mode(mode).open();
        if mode == RecoveryMode::AbsoluteConsistency {
            match opened {
                Err(strata_wal::Error::Corruption { path: p, offset, .. }) => {
                    anyhow::ensure!(p == path && offset == end, "{p:?} at {offset}");
                }
                other => anyhow::bail!("expected corruption, got {other:?}"),
            }
            anyhow::ensure!(file_len(&path)? == RESERVE, "the strict mode cuts nothing");
            continue;
        }
        let wal = opened?;
        check_records(&wal, 120)?;
        anyhow::ensure!(wal.recovery_report().bytes_truncated == RESERVE - end, "{mode:?}");
        anyhow::ensure!(file_len(&path)? == end);
    }
    Ok(())
}

#[test]
fn garbage_after_the_last_frame_of_an_unsealed_segment_is_judged_by_the_mode() -> anyhow::Result<()>
{
    let Some(base) = mapped_dir()? else { return Ok(()) };
    for mode in MODES {
        let tmp = tempfile::tempdir_in(&base)?;
        crashed_log(tmp.path(), SyncPolicy::Interval(Duration::from_secs(60)), 100)?;
        // Bytes that are neither a frame nor reserved zeros right after the last frame.
        let path = segment(tmp.path(), 1);
        let end = frames_end(&path)?;
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.write_all_at(&[0xA5; 64], end)?;
        drop(file);
        let opened = open_mode(tmp.path(), mode);
        if mode == RecoveryMode::AbsoluteConsistency {
            match opened {
                Err(strata_wal::Error::Corruption { path: p, offset, .. }) => {
                    anyhow::ensure!(p == path && offset == end, "{p:?} at {offset}");
                }
                other => anyhow::bail!("garbage is corruption here: {other:?}"),
            }
            continue;
        }
        let wal = opened?;
        check_records(&wal, 100)?;
        let report = wal.recovery_report();
        anyhow::ensure!(report.bytes_truncated == RESERVE - end, "{mode:?}: {report:?}");
        let listed = u64::from(mode == RecoveryMode::SkipCorrupt);
        anyhow::ensure!(report.skipped_count == listed, "{mode:?}: {report:?}");
        anyhow::ensure!(file_len(&path)? == end);
    }
    Ok(())
}

#[test]
fn zeros_after_an_unmapped_log_on_real_files_are_refused_by_the_strict_mode() -> anyhow::Result<()>
{
    // `memory_map(false)`: every append is a `write`, the file holds exactly its frames, and
    // a zero tail can only be lost data.
    for policy in [SyncPolicy::Never, SyncPolicy::Always] {
        let tmp = tempfile::tempdir()?;
        let wal = Wal::builder(tmp.path())
            .sync_policy(policy)
            .segment_size(RESERVE)
            .memory_map(false)
            .open()?;
        for seq in 1..=60u64 {
            anyhow::ensure!(wal.append(&payload_for(seq))? == seq);
        }
        drop(wal);
        let path = segment(tmp.path(), 1);
        let end = file_len(&path)?;
        anyhow::ensure!(end == frames_end(&path)?, "{policy:?}: a plain file holds its frames");
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(end + 4096)?;
        drop(file);
        match open_mode(tmp.path(), RecoveryMode::AbsoluteConsistency) {
            Err(strata_wal::Error::Corruption { path: p, offset, .. }) => {
                anyhow::ensure!(p == path && offset == end, "{p:?} at {offset}");
            }
            other => anyhow::bail!("{policy:?}: expected corruption, got {other:?}"),
        }
        let wal = open_mode(tmp.path(), RecoveryMode::TolerateTornTail)?;
        check_records(&wal, 60)?;
        anyhow::ensure!(wal.recovery_report().bytes_truncated == 4096);
        anyhow::ensure!(file_len(&path)? == end);
    }
    Ok(())
}
