//! The fault filesystem: crashes drop unsynced data; no acknowledged append may be lost.

use crate::*;
use std::collections::BTreeMap;
use std::sync::Mutex;
use strata_wal::fault::Fault;
use strata_wal::Error;

/// Appends from `threads` threads until the disk fails; returns every acknowledged
/// `(seq, payload)`.
fn append_until_failure(wal: &Wal, threads: usize, per_thread: usize) -> BTreeMap<u64, Vec<u8>> {
    let acked = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let acked = &acked;
            s.spawn(move || {
                for i in 0..per_thread {
                    let payload = format!("thread {t} record {i}").into_bytes();
                    match wal.append(&payload) {
                        Ok(seq) => {
                            let prev = acked.lock().expect("no panics").insert(seq, payload);
                            assert!(prev.is_none(), "sequence number {seq} handed out twice");
                        }
                        Err(Error::Io { .. } | Error::Poisoned) => return,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            });
        }
    });
    acked.into_inner().expect("no panics")
}

#[test]
fn always_loses_no_acknowledged_append_when_unsynced_data_is_dropped() -> anyhow::Result<()> {
    let mut rng = Rng::from_time();
    eprintln!("seed {}", rng.0);
    for round in 0..60 {
        let fs = FaultFs::new();
        let wal =
            on(&fs).sync_policy(SyncPolicy::Always).segment_size(512 + rng.below(2048)).open()?;
        // Crash somewhere in the next few hundred disk operations: inside a write, a sync, a
        // rotation, or a group commit.
        let at = fs.ops() + rng.below(400);
        if round % 3 == 0 {
            fs.inject(at, Fault::Tear { keep: rng.below(40) as usize });
            fs.inject(at + 1 + rng.below(20), Fault::Crash);
        } else {
            fs.inject(at, Fault::Crash);
        }
        let acked = append_until_failure(&wal, 1 + (round % 8), 200);
        drop(wal);
        if round % 2 == 0 {
            fs.restart();
        } else {
            // Some unsynced bytes reached the disk before the power went.
            fs.restart_keeping(|unsynced| rng.below(unsynced as u64 + 1) as usize);
        }
        let (wal, records) = open_replay(&fs, RecoveryMode::TolerateTornTail)?;
        let got: BTreeMap<u64, Vec<u8>> = records.into_iter().map(|r| (r.seq, r.payload)).collect();
        for (seq, payload) in &acked {
            assert_eq!(
                got.get(seq),
                Some(payload),
                "round {round}: acknowledged record {seq} lost"
            );
        }
        // What came back is a contiguous prefix (unacknowledged records may be there or not).
        let seqs: Vec<u64> = got.keys().copied().collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "round {round}");
        assert!(wal.append(b"after restart").is_ok());
    }
    Ok(())
}

#[test]
fn never_and_interval_lose_only_unsynced_records() -> anyhow::Result<()> {
    for policy in [SyncPolicy::Never, SyncPolicy::Interval(std::time::Duration::from_secs(3600))] {
        let fs = FaultFs::new();
        let wal = on(&fs).sync_policy(policy).open()?;
        for i in 0..10u64 {
            wal.append(&payload_for(i + 1))?;
        }
        wal.flush_durable()?;
        assert_eq!(wal.durable_seq(), 10);
        for i in 10..15u64 {
            wal.append(&payload_for(i + 1))?;
        }
        // The machine dies with five records written but not synced: they are lost, the
        // synced ones are not.
        fs.crash();
        drop(wal);
        fs.restart();
        let (_, records) = open_replay(&fs, RecoveryMode::AbsoluteConsistency)?;
        assert_eq!(records.len(), 10, "{policy:?}");
    }
    Ok(())
}

#[test]
fn interval_flusher_makes_records_durable_and_stops_cleanly() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let wal =
        on(&fs).sync_policy(SyncPolicy::Interval(std::time::Duration::from_millis(5))).open()?;
    let seq = wal.append(b"x")?;
    // Bounded wait for the background thread (up to 10 s); the test asserts that it happens,
    // not how fast.
    let mut waited = 0;
    while wal.durable_seq() < seq && waited < 1000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(wal.durable_seq(), seq, "the flusher never synced");
    wal.close()?;
    assert!(matches!(wal.append(b"y"), Err(Error::Closed)));
    Ok(())
}

#[test]
fn failed_fsync_poisons_and_reopen_recovers() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let wal = on(&fs).open()?;
    wal.append(b"one")?;
    // The next op is the append's write, the one after it the group-commit fsync.
    fs.inject(fs.ops() + 1, Fault::Fail);
    assert!(matches!(wal.append(b"two"), Err(Error::Io { .. })));
    assert!(matches!(wal.append(b"three"), Err(Error::Poisoned)));
    assert!(matches!(wal.flush_durable(), Err(Error::Poisoned)));
    drop(wal);
    let (_, records) = open_replay(&fs, RecoveryMode::TolerateTornTail)?;
    // "two" was written before its fsync failed, so it may be there; "one" must be.
    assert_eq!(records[0].payload, b"one");
    assert!(records.len() <= 2);
    Ok(())
}

#[test]
fn every_single_operation_failure_is_reported_never_swallowed() -> anyhow::Result<()> {
    // Walk a failure over every disk operation of open + 30 appends + a rotation-heavy
    // workload: each must surface as an error (or be recovered from at the next open).
    let total = {
        let fs = FaultFs::new();
        let wal = on(&fs).segment_size(200).open()?;
        for i in 0..30 {
            wal.append(&payload_for(i + 1))?;
        }
        wal.close()?;
        fs.ops()
    };
    for at in 0..total {
        let fs = FaultFs::new();
        fs.inject(at, Fault::Fail);
        let mut acked = 0;
        if let Ok(wal) = on(&fs).segment_size(200).open() {
            for i in 0..30 {
                match wal.append(&payload_for(i + 1)) {
                    Ok(seq) => {
                        assert_eq!(seq, i + 1);
                        acked = seq;
                    }
                    Err(_) => break,
                }
            }
        }
        let (_, records) = open_replay(&fs, RecoveryMode::TolerateTornTail)?;
        assert!(records.len() as u64 >= acked, "failure at op {at} lost acknowledged records");
        assert!(records.iter().all(|r| r.payload == payload_for(r.seq)));
    }
    Ok(())
}
