//! Torn tails at every byte, bit flips everywhere, per recovery mode.

use crate::*;
use strata_wal::format::{FRAME_OVERHEAD, HEADER_LEN};
use strata_wal::{Error, RecoveryMode, Source, StdFs};

/// File offsets where each record ends, for a single-segment log of `n` records.
fn boundaries(n: u64) -> Vec<usize> {
    let mut at = HEADER_LEN;
    let mut ends = vec![at];
    for seq in 1..=n {
        at += FRAME_OVERHEAD + payload_for(seq).len();
        ends.push(at);
    }
    ends
}

#[test]
fn torn_tail_at_every_byte_recovers_the_complete_records() -> anyhow::Result<()> {
    let n = 8;
    let files = written_log(n, 1 << 20);
    assert_eq!(files.len(), 1);
    let (path, full) = &files[0];
    let ends = boundaries(n);
    assert_eq!(*ends.last().unwrap_or(&0), full.len());
    // Every cut from the end of the header (a segment is never shorter: it is renamed into
    // place with its header durable) through the last three records and the full file.
    let from = ends[ends.len() - 4];
    for cut in HEADER_LEN..=full.len() {
        let complete = ends.iter().filter(|&&e| e <= cut).count() as u64 - 1;
        let last_end = ends[complete as usize];
        let fs = disk_with(&[(path.clone(), full[..cut].to_vec())]);
        let (wal, records) = open_replay(&fs, RecoveryMode::TolerateTornTail)?;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=complete).collect::<Vec<_>>(), "cut at {cut}");
        for r in &records {
            assert_eq!(r.payload, payload_for(r.seq));
            assert_eq!(r.source, Source::Log);
        }
        assert_eq!(wal.recovery_report().bytes_truncated, (cut - last_end) as u64, "cut at {cut}");
        // The log goes on after the cut with the next sequence number, and a second recovery
        // sees a clean log.
        assert_eq!(wal.append(b"after")?, complete + 1);
        wal.close()?;
        drop(wal);
        let (_, again) = open_replay(&fs, RecoveryMode::AbsoluteConsistency)?;
        assert_eq!(again.len() as u64, complete + 1);

        // Absolute consistency refuses a torn tail, and accepts a cut on a record boundary.
        let fs = disk_with(&[(path.clone(), full[..cut].to_vec())]);
        let strict = open_replay(&fs, RecoveryMode::AbsoluteConsistency);
        if cut == last_end {
            assert_eq!(strict?.1.len() as u64, complete);
        } else {
            assert!(
                matches!(strict, Err(Error::Corruption { offset, .. }) if offset == last_end as u64),
                "cut at {cut}"
            );
        }
        if cut >= from {
            // Salvage agrees with the torn-tail mode on a torn tail.
            let fs = disk_with(&[(path.clone(), full[..cut].to_vec())]);
            assert_eq!(open_replay(&fs, RecoveryMode::SkipCorrupt)?.1.len() as u64, complete);
        }
    }
    Ok(())
}

#[test]
fn torn_tail_on_real_files() -> anyhow::Result<()> {
    let n = 5;
    let tmp = tempfile::tempdir()?;
    {
        let wal = Wal::builder(tmp.path()).open()?;
        for seq in 1..=n {
            wal.append(&payload_for(seq))?;
        }
        wal.close()?;
    }
    let seg = tmp.path().join(format!("{:020}.wal", 1));
    let full = std::fs::read(&seg)?;
    let ends = boundaries(n);
    for cut in ends[ends.len() - 3]..=full.len() {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(format!("{:020}.wal", 1));
        std::fs::write(&path, &full[..cut])?;
        let wal = Wal::builder(dir.path()).open()?;
        let complete = ends.iter().filter(|&&e| e <= cut).count() as u64 - 1;
        let got = replay_all(&wal)?;
        assert_eq!(got.len() as u64, complete, "cut at {cut}");
        assert!(got.iter().all(|r| r.payload == payload_for(r.seq)));
        // The torn bytes are gone from the file itself.
        drop(wal);
        assert_eq!(std::fs::metadata(&path)?.len() as usize, ends[complete as usize]);
    }
    let _ = StdFs;
    Ok(())
}

#[test]
fn every_bit_flip_is_detected_and_the_mode_decides() -> anyhow::Result<()> {
    let n = 6;
    let files = written_log(n, 1 << 20);
    let (path, full) = &files[0];
    let ends = boundaries(n);
    for bit in 0..full.len() * 8 {
        let byte = bit / 8;
        let mut bad = full.clone();
        bad[byte] ^= 1 << (bit % 8);
        // The record the flip lands in (0 = the header).
        let hit = ends.iter().filter(|&&e| e <= byte).count();

        let fs = disk_with(&[(path.clone(), bad.clone())]);
        let strict = open_replay(&fs, RecoveryMode::AbsoluteConsistency);
        assert!(matches!(strict, Err(Error::Corruption { .. })), "bit {bit} went unnoticed");

        let fs = disk_with(&[(path.clone(), bad.clone())]);
        let torn = open_replay(&fs, RecoveryMode::TolerateTornTail);
        if hit == 0 {
            assert!(matches!(torn, Err(Error::Corruption { offset: 0, .. })), "bit {bit}");
        } else {
            let (wal, records) = torn?;
            let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
            assert_eq!(seqs, (1..hit as u64).collect::<Vec<_>>(), "bit {bit}");
            assert_eq!(wal.recovery_report().bytes_truncated as usize, full.len() - ends[hit - 1]);
        }

        let fs = disk_with(&[(path.clone(), bad)]);
        let (wal, records) = open_replay(&fs, RecoveryMode::SkipCorrupt)?;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        if hit == 0 {
            assert!(seqs.is_empty(), "bit {bit}");
        } else {
            let expect: Vec<u64> = (1..=n).filter(|&s| s != hit as u64).collect();
            assert_eq!(seqs, expect, "bit {bit}");
            assert_eq!(wal.recovery_report().skipped_count, 1);
        }
        assert!(records.iter().all(|r| r.payload == payload_for(r.seq)));
    }
    Ok(())
}

#[test]
fn damage_before_the_last_segment_is_never_a_torn_tail() -> anyhow::Result<()> {
    let files = written_log(40, 256);
    assert!(files.len() >= 4, "{} segments", files.len());
    let mut bad = files.clone();
    let mid = bad[1].1.len() / 2 + 3;
    bad[1].1[mid] ^= 0x40;
    let fs = disk_with(&bad);
    assert!(matches!(
        open_replay(&fs, RecoveryMode::TolerateTornTail),
        Err(Error::Corruption { segment: Some(2), .. })
    ));
    let fs = disk_with(&bad);
    let (wal, records) = open_replay(&fs, RecoveryMode::SkipCorrupt)?;
    assert_eq!(records.len(), 39);
    assert!(records.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(records.iter().all(|r| r.payload == payload_for(r.seq)));
    // The salvaged log goes on; reopening it in salvage mode gives the same records plus new.
    let next = wal.append(&payload_for(41))?;
    assert_eq!(next, 41);
    wal.close()?;
    drop(wal);
    let (_, again) = open_replay(&fs, RecoveryMode::SkipCorrupt)?;
    assert_eq!(again.len(), 40);

    // A whole missing segment is a gap, not a torn tail.
    let mut missing = files.clone();
    missing.remove(2);
    let fs = disk_with(&missing);
    assert!(matches!(
        open_replay(&fs, RecoveryMode::TolerateTornTail),
        Err(Error::Corruption { .. })
    ));
    Ok(())
}

#[test]
fn hostile_counters_at_the_top_of_the_range_are_refused() -> anyhow::Result<()> {
    use strata_wal::format::{encode_frame, encode_header, FileKind, RecordType};
    // A well-formed frame (valid CRC) claiming the last possible sequence number: the log could
    // not number a record after it, so it is treated as damage in every mode.
    let mut seg = encode_header(FileKind::Segment, 1).to_vec();
    encode_frame(&mut seg, RecordType::Data, 1, b"one");
    encode_frame(&mut seg, RecordType::Data, u64::MAX, b"max");
    let files = [(dir().join(format!("{:020}.wal", 1)), seg)];
    for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::SkipCorrupt] {
        let fs = disk_with(&files);
        let (wal, records) = open_replay(&fs, mode)?;
        assert_eq!(records.len(), 1, "{mode:?}");
        assert_eq!(wal.append(b"two")?, 2);
    }
    let fs = disk_with(&files);
    assert!(open_replay(&fs, RecoveryMode::AbsoluteConsistency).is_err());
    Ok(())
}

/// Zeros after the last frame of a plain (not preallocated) segment are not reserved space
/// but bytes the disk lost, e.g. a file system that extended the file on a power loss but
/// never wrote its data: the recovery mode judges them like any other damage.
#[test]
fn zeros_after_a_plain_log_are_damage_the_mode_judges() -> anyhow::Result<()> {
    let n = 30;
    let files = written_log(n, 1 << 20);
    anyhow::ensure!(files.len() == 1, "{} segments", files.len());
    let (path, full) = &files[0];
    let end = full.len() as u64;
    for zeros in [1usize, FRAME_OVERHEAD, 4096] {
        let mut padded = full.clone();
        padded.resize(full.len() + zeros, 0);

        let fs = disk_with(&[(path.clone(), padded.clone())]);
        match open_replay(&fs, RecoveryMode::AbsoluteConsistency) {
            Err(Error::Corruption { path: p, segment, offset, .. }) => {
                anyhow::ensure!(p == *path && segment == Some(1) && offset == end, "{zeros}");
            }
            other => anyhow::bail!("{zeros} zeros: expected corruption, got {other:?}"),
        }
        // Nothing was cut: the strict mode refuses and leaves the evidence.
        anyhow::ensure!(fs.contents(path).is_some_and(|b| b == padded));
        let check = strata_wal::check_dir(&fs, &dir(), strata_wal::CheckOptions::default())?;
        anyhow::ensure!(check.problems.len() == 1 && check.problems[0].offset == end);

        for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::SkipCorrupt] {
            let fs = disk_with(&[(path.clone(), padded.clone())]);
            let (wal, records) = open_replay(&fs, mode)?;
            anyhow::ensure!(records.len() as u64 == n, "{mode:?}: {} records", records.len());
            anyhow::ensure!(records.iter().all(|r| r.payload == payload_for(r.seq)));
            let report = wal.recovery_report();
            anyhow::ensure!(report.bytes_truncated == zeros as u64, "{mode:?}: {report:?}");
            let listed = u64::from(mode == RecoveryMode::SkipCorrupt);
            anyhow::ensure!(report.skipped_count == listed, "{mode:?}: {report:?}");
            drop(wal);
            anyhow::ensure!(fs.contents(path).is_some_and(|b| b == *full), "{mode:?}: cut");
        }
    }

    // What tells the two apart is the length: a file exactly as long as the space a mapped
    // segment reserves (the segment size) is taken for one, in every mode.
    let reserved = 8192u64;
    let mut mapped_like = full.clone();
    mapped_like.resize(reserved as usize, 0);
    let fs = disk_with(&[(path.clone(), mapped_like.clone())]);
    let wal = on(&fs).segment_size(reserved).recovery_mode(RecoveryMode::AbsoluteConsistency);
    let wal = wal.open()?;
    anyhow::ensure!(replay_all(&wal)?.len() as u64 == n);
    anyhow::ensure!(wal.recovery_report().bytes_truncated == 0);
    // With another segment size the same file is a plain one with a zero tail.
    let fs = disk_with(&[(path.clone(), mapped_like)]);
    let opened =
        on(&fs).segment_size(reserved + 1).recovery_mode(RecoveryMode::AbsoluteConsistency).open();
    anyhow::ensure!(
        matches!(opened, Err(Error::Corruption { offset, .. }) if offset == end),
        "{opened:?}"
    );
    Ok(())
}

#[test]
fn a_log_at_the_top_of_the_sequence_range_refuses_appends_instead_of_overflowing(
) -> anyhow::Result<()> {
    use strata_wal::format::{encode_frame, encode_header, FileKind, RecordType};
    // A checkpoint covering the largest sequence number recovery accepts (a hostile or
    // damaged manifest with a valid checksum): the next append would take u64::MAX, a
    // number recovery rejects, and the one after that would overflow the counter.
    let covered = u64::MAX - 1;
    let mut manifest = b"STRATAMF".to_vec();
    manifest.extend_from_slice(&strata_wal::format::FORMAT_VERSION.to_le_bytes());
    manifest.extend_from_slice(&1u64.to_le_bytes());
    manifest.extend_from_slice(&covered.to_le_bytes());
    manifest.extend_from_slice(&1u64.to_le_bytes());
    let crc = crc32c::crc32c(&manifest);
    manifest.extend_from_slice(&crc.to_le_bytes());
    let mut snap = encode_header(FileKind::Snapshot, 1).to_vec();
    encode_frame(&mut snap, RecordType::Data, covered, b"last");
    encode_frame(&mut snap, RecordType::SnapshotEnd, covered, &1u64.to_le_bytes());
    let fs = disk_with(&[
        (dir().join("MANIFEST"), manifest),
        (dir().join("checkpoint-00000000000000000001.snap"), snap),
    ]);
    let (wal, records) = open_replay(&fs, RecoveryMode::AbsoluteConsistency)?;
    assert_eq!(records.len(), 1);
    let appended = wal.append(b"one more");
    assert!(
        matches!(appended, Err(Error::SequenceExhausted)),
        "an append numbered u64::MAX is lost at reopen: {appended:?}"
    );
    assert!(matches!(wal.append(b"and another"), Err(Error::SequenceExhausted)));
    wal.close()?;
    drop(wal);
    let (_, again) = open_replay(&fs, RecoveryMode::AbsoluteConsistency)?;
    assert_eq!(again.len(), 1);
    Ok(())
}
