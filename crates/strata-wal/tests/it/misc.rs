//! Locking, file modes, typed records, concurrency, and `check_dir`.

use crate::*;
use serde::{Deserialize, Serialize};
use strata_wal::{check_dir, CheckOptions, CorruptionKind, Error, StdFs};

#[test]
fn second_writer_gets_a_clear_error() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::builder(tmp.path()).open()?;
    match Wal::builder(tmp.path()).open() {
        Err(Error::Locked { dir }) => assert_eq!(dir, tmp.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(matches!(
        check_dir(&StdFs, tmp.path(), CheckOptions::default()),
        Err(Error::Locked { .. })
    ));
    drop(wal);
    Wal::builder(tmp.path()).open()?;
    Ok(())
}

#[test]
fn a_file_is_not_a_directory() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("f");
    std::fs::write(&file, b"x")?;
    assert!(matches!(Wal::builder(&file).open(), Err(Error::InvalidConfig(_))));
    Ok(())
}

#[cfg(unix)]
#[test]
fn files_are_private_to_the_owner() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    let wal = Wal::builder(tmp.path()).segment_size(100).open()?;
    for i in 0..10 {
        wal.append(&payload_for(i + 1))?;
    }
    let mut cp = wal.begin_checkpoint()?;
    cp.append(b"snapshot record")?;
    cp.finish()?;
    wal.close()?;
    let mut n = 0;
    for entry in std::fs::read_dir(tmp.path())? {
        let entry = entry?;
        let mode = entry.metadata()?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?} has mode {mode:o}", entry.file_name());
        n += 1;
    }
    assert!(n >= 4, "expected segments, snapshot, manifest and lock, found {n} files");
    Ok(())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Op {
    Put { key: String, value: Vec<u8>, deadline_ms: u64 },
    Delete { key: String },
}

#[test]
fn typed_records_round_trip() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let wal = on(&fs).open()?;
    let ops = vec![
        Op::Put { key: "a".into(), value: vec![1, 2, 3], deadline_ms: 99 },
        Op::Delete { key: "a".into() },
    ];
    for op in &ops {
        wal.append_value(op)?;
    }
    let got: Vec<Op> = replay_all(&wal)?.iter().map(|r| r.decode()).collect::<Result<_, _>>()?;
    assert_eq!(got, ops);
    // An intact record that is not the requested type is a decode error, not corruption.
    wal.append(&[0xff, 0xff, 0xff])?;
    let last = replay_all(&wal)?.pop().ok_or_else(|| anyhow::anyhow!("no records"))?;
    assert!(matches!(last.decode::<Op>(), Err(Error::Decode { seq: 3, .. })));
    Ok(())
}

#[test]
fn concurrent_appenders_under_group_commit_on_real_files() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let wal = Arc::new(Wal::builder(tmp.path()).segment_size(16 << 10).open()?);
    let per = 150u64;
    let threads = 8u64;
    let mut acked: Vec<(u64, Vec<u8>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let wal = Arc::clone(&wal);
                s.spawn(move || {
                    (0..per)
                        .map(|i| {
                            let p = format!("{t}:{i}").into_bytes();
                            wal.append(&p).map(|seq| (seq, p))
                        })
                        .collect::<strata_wal::Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect::<strata_wal::Result<Vec<_>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    acked.sort();
    assert_eq!(
        acked.iter().map(|a| a.0).collect::<Vec<_>>(),
        (1..=per * threads).collect::<Vec<_>>()
    );
    assert_eq!(wal.durable_seq(), per * threads);
    wal.close()?;
    drop(wal);
    let wal = Wal::builder(tmp.path()).recovery_mode(RecoveryMode::AbsoluteConsistency).open()?;
    let got: Vec<(u64, Vec<u8>)> =
        replay_all(&wal)?.into_iter().map(|r| (r.seq, r.payload)).collect();
    assert_eq!(got, acked);
    Ok(())
}

#[test]
fn check_dir_reports_and_repairs() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    {
        let wal = Wal::builder(tmp.path()).segment_size(300).open()?;
        for i in 0..30 {
            wal.append(&payload_for(i + 1))?;
        }
        wal.close()?;
    }
    let clean = check_dir(&StdFs, tmp.path(), CheckOptions::default())?;
    assert!(clean.problems.is_empty(), "{clean}");
    assert_eq!(clean.records, 30);
    assert!(clean.to_string().contains("OK"));

    // Damage the middle of the second segment.
    let seg = tmp.path().join(format!("{:020}.wal", 2));
    let mut bytes = std::fs::read(&seg)?;
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&seg, &bytes)?;
    let damaged = check_dir(&StdFs, tmp.path(), CheckOptions::default())?;
    assert_eq!(damaged.problems.len(), 1, "{damaged}");
    let p = &damaged.problems[0];
    assert_eq!(p.path, seg);
    assert!(p.offset as usize <= at && p.offset >= 24);
    assert!(matches!(
        p.kind,
        CorruptionKind::ChecksumMismatch { .. }
            | CorruptionKind::LengthTooLarge { .. }
            | CorruptionKind::Truncated { .. }
    ));
    assert!(damaged.to_string().contains("PROBLEM"));
    assert!(!damaged.is_clean());
    // The default open refuses damage before the last segment...
    assert!(matches!(
        Wal::builder(tmp.path()).open(),
        Err(Error::Corruption { segment: Some(2), .. })
    ));
    // ...and repair truncates there, after which even the strictest open succeeds.
    let repaired =
        check_dir(&StdFs, tmp.path(), CheckOptions { repair: true, ..CheckOptions::default() })?;
    assert!(repaired.is_clean(), "{repaired}");
    assert_eq!(std::fs::metadata(&seg)?.len(), p.offset);
    let after = check_dir(&StdFs, tmp.path(), CheckOptions::default())?;
    assert!(after.problems.is_empty(), "{after}");
    let wal = Wal::builder(tmp.path()).recovery_mode(RecoveryMode::AbsoluteConsistency).open()?;
    let records = replay_all(&wal)?;
    assert_eq!(records.len() as u64, after.records);
    assert!(records.iter().all(|r| r.payload == payload_for(r.seq)));
    Ok(())
}

mod roundtrip {
    use crate::*;
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Entry {
        key: String,
        value: Option<Vec<u8>>,
        deadline: u64,
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            ".{0,20}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            any::<u64>(),
        )
            .prop_map(|(key, value, deadline)| Entry { key, value, deadline })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Raw payloads of any size up to the maximum come back byte for byte, across
        /// rotations and a reopen.
        #[test]
        fn payloads_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..60), seg in 64u64..2000) {
            let fs = FaultFs::new();
            let wal = on(&fs).segment_size(seg).max_record_size(300).sync_policy(SyncPolicy::Never).open().map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (i, p) in payloads.iter().enumerate() {
                prop_assert_eq!(wal.append(p).map_err(|e| TestCaseError::fail(e.to_string()))?, i as u64 + 1);
            }
            let live: Vec<Vec<u8>> = replay_all(&wal).map_err(|e| TestCaseError::fail(e.to_string()))?.into_iter().map(|r| r.payload).collect();
            prop_assert_eq!(&live, &payloads);
            wal.close().map_err(|e| TestCaseError::fail(e.to_string()))?;
            drop(wal);
            let (_, records) = open_replay(&fs, RecoveryMode::AbsoluteConsistency).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let reopened: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload).collect();
            prop_assert_eq!(reopened, payloads);
        }

        /// Typed values go through postcard and come back equal.
        #[test]
        fn typed_values_round_trip(entries in proptest::collection::vec(entry(), 0..30)) {
            let fs = FaultFs::new();
            let wal = on(&fs).open().map_err(|e| TestCaseError::fail(e.to_string()))?;
            for e in &entries {
                wal.append_value(e).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let got: Vec<Entry> = replay_all(&wal)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .iter()
                .map(|r| r.decode())
                .collect::<Result<_, _>>()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, entries);
        }
    }
}

#[test]
fn append_nowait_is_durable_only_after_wait_durable() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let wal = on(&fs).sync_policy(SyncPolicy::Always).open()?;
    let first = wal.append_nowait(&payload_for(1))?;
    assert_eq!(first, 1);
    assert!(wal.durable_seq() < first, "append_nowait must not fsync under Always");
    let second = wal.append_nowait(&payload_for(2))?;
    wal.wait_durable(first)?;
    // One fsync covers every record written before it, so the second is durable too.
    assert!(wal.durable_seq() >= second);
    // A number beyond the last append is clamped instead of waiting forever.
    wal.wait_durable(u64::MAX)?;
    let third = wal.append_nowait(&payload_for(3))?;
    fs.crash();
    drop(wal);
    fs.restart();
    let wal = on(&fs).open()?;
    let seqs: Vec<u64> = replay_all(&wal)?.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![first, second], "record {third} was never synced, so the crash drops it");
    Ok(())
}

/// What `finish` writes is decided under the log lock: a counter it changes with a plain load
/// and store (no read-modify-write) still hands out each number once, in log order, across
/// concurrent appenders and segment rotations, and `logged` sees each record's number; a
/// payload that `finish` makes too large is refused, nothing is written and `logged` is not
/// called; a closed log calls neither.
#[test]
fn append_nowait_with_and_then_finish_the_payload_in_log_order() -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let tmp = tempfile::tempdir()?;
    let wal = Wal::builder(tmp.path()).segment_size(16 << 10).max_record_size(64).open()?;
    let counter = AtomicU64::new(100);
    let logged = AtomicU64::new(0);
    let (threads, per) = (4u64, 500u64);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (wal, counter, logged) = (&wal, &counter, &logged);
            s.spawn(move || {
                for _ in 0..per {
                    let mut payload = vec![t as u8];
                    let mut taken = 0;
                    let seq = wal
                        .append_nowait_then(
                            &mut payload,
                            |p| {
                                taken = counter.load(Ordering::Relaxed);
                                counter.store(taken + 1, Ordering::Relaxed);
                                p.extend_from_slice(&taken.to_le_bytes());
                            },
                            // Under the lock too: the previous record's number, plus one.
                            |seq| {
                                assert_eq!(logged.load(Ordering::Relaxed) + 1, seq);
                                logged.store(seq, Ordering::Relaxed);
                            },
                        )
                        .expect("append");
                    assert_eq!(taken, 99 + seq, "record {seq} took number {taken}");
                }
            });
        }
    });
    let mut oversized = vec![0u8; 60];
    let refused = wal.append_nowait_then(
        &mut oversized,
        |p| p.extend_from_slice(&[1; 8]),
        |_| panic!("a refused record is not logged"),
    );
    assert!(matches!(refused, Err(Error::TooLarge { size: 68, max: 64 })), "{refused:?}");
    assert_eq!(logged.load(Ordering::Relaxed), threads * per);
    // The plain form: finished under the lock, in order after the others.
    let seq = wal.append_nowait_with(&mut vec![9], |p| {
        p.extend_from_slice(&counter.load(Ordering::Relaxed).to_le_bytes());
    })?;
    assert_eq!(seq, threads * per + 1);
    wal.flush_durable()?;
    let records = replay_all(&wal)?;
    assert_eq!(records.len() as u64, threads * per + 1, "the refused payload is not in the log");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        let n = u64::from_le_bytes(r.payload[1..9].try_into()?);
        assert_eq!(n, 100 + i as u64, "record {} took number {n}", r.seq);
    }
    wal.close()?;
    let closed = wal.append_nowait_then(
        &mut Vec::new(),
        |_| panic!("finish is not called on a closed log"),
        |_| panic!("nor logged"),
    );
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
    let closed = wal.append_nowait_with(&mut Vec::new(), |_| panic!("nor here"));
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
    Ok(())
}

#[test]
fn a_write_buffer_collects_frames_until_full_or_flushed() -> anyhow::Result<()> {
    assert!(matches!(
        on(&FaultFs::new()).sync_policy(SyncPolicy::Always).write_buffer(1024).open(),
        Err(Error::InvalidConfig(_))
    ));
    let fs = FaultFs::new();
    let wal = on(&fs).sync_policy(SyncPolicy::Never).write_buffer(1024).open()?;
    let segment_len = |fs: &FaultFs| -> usize {
        fs.files()
            .iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "wal"))
            .map(|(_, n)| n)
            .sum()
    };
    let empty = segment_len(&fs);
    for seq in 1..=3 {
        wal.append(&payload_for(seq))?;
    }
    assert_eq!(segment_len(&fs), empty, "three small frames stay in the buffer");
    // Replay writes the buffer out first, so it sees every appended record.
    assert_eq!(replay_all(&wal)?.len(), 3);
    assert!(segment_len(&fs) > empty);
    // Filling the buffer writes it out without any flush.
    let written = segment_len(&fs);
    let mut seq = 4;
    while segment_len(&fs) == written {
        assert!(seq < 200, "a 1 KiB buffer must be written out within 200 frames");
        wal.append(&payload_for(seq))?;
        seq += 1;
    }
    // A crash loses what is still buffered: only a suffix of the acknowledged records.
    wal.append(&payload_for(seq))?;
    fs.crash();
    drop(wal);
    fs.restart();
    let wal = on(&fs).open()?;
    let seqs: Vec<u64> = replay_all(&wal)?.iter().map(|r| r.seq).collect();
    assert!(seqs.len() < seq as usize, "the last record was still buffered");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "a prefix survives");
    drop(wal);
    // flush_durable writes out and syncs: nothing is lost by a crash after it.
    let fs = FaultFs::new();
    let wal = on(&fs).sync_policy(SyncPolicy::Never).write_buffer(1 << 20).open()?;
    for seq in 1..=10 {
        wal.append(&payload_for(seq))?;
    }
    wal.flush_durable()?;
    fs.crash();
    drop(wal);
    fs.restart();
    assert_eq!(replay_all(&on(&fs).open()?)?.len(), 10);
    Ok(())
}
