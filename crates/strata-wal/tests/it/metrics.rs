//! Metrics recorded through `WalBuilder::metrics`: exact append and byte counts under
//! concurrent appenders, fsync counts, checkpoint and recovery figures.
//!
//! `strata_wal_appended_bytes_total` and `strata_wal_recovered_bytes_total` count framed
//! bytes: each record's payload plus its `FRAME_OVERHEAD` bytes of framing.

use crate::*;
use strata_metrics::Registry;
use strata_wal::format::FRAME_OVERHEAD;

const NAME: &str = "it";

fn framed(payload: &[u8]) -> u64 {
    (payload.len() + FRAME_OVERHEAD) as u64
}

fn counter(registry: &Registry, name: &str) -> u64 {
    registry.snapshot().counter_sum(name, &[("wal", NAME)])
}

fn histogram_count(registry: &Registry, name: &str) -> u64 {
    registry.snapshot().histogram(name, &[("wal", NAME)]).map_or(0, |h| h.count())
}

#[test]
fn concurrent_appends_are_counted_exactly_and_a_reopen_counts_the_replay() -> anyhow::Result<()> {
    const THREADS: u64 = 2;
    const PER_THREAD: u64 = 150;
    const N: u64 = THREADS * PER_THREAD;
    let fs = FaultFs::new();
    let registry = Arc::new(Registry::new());
    let wal =
        on(&fs).sync_policy(SyncPolicy::Always).metrics(Arc::clone(&registry), NAME).open()?;
    // A fresh log: recovery ran once and replayed nothing.
    assert_eq!(histogram_count(&registry, "strata_wal_recovery_duration_seconds"), 1);
    assert_eq!(counter(&registry, "strata_wal_recovered_records_total"), 0);

    let bytes = std::thread::scope(|s| -> anyhow::Result<u64> {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let wal = &wal;
                s.spawn(move || -> strata_wal::Result<u64> {
                    let mut bytes = 0;
                    for i in 0..PER_THREAD {
                        // Payload lengths differ by thread and index, so a byte count that
                        // merely multiplies the append count would not match.
                        let payload = payload_for(t * PER_THREAD + i + 1);
                        wal.append(&payload)?;
                        bytes += framed(&payload);
                    }
                    Ok(bytes)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| anyhow::anyhow!("appender panicked"))??;
        }
        Ok(total)
    })?;

    assert_eq!(counter(&registry, "strata_wal_appends_total"), N);
    assert_eq!(counter(&registry, "strata_wal_appended_bytes_total"), bytes);
    let fsyncs = histogram_count(&registry, "strata_wal_fsync_duration_seconds");
    assert!((1..=N).contains(&fsyncs), "{fsyncs} fsyncs for {N} appends");
    let text = registry.render_prometheus();
    assert!(text.contains(&format!("strata_wal_appends_total{{wal=\"{NAME}\"}} {N}")), "{text}");

    wal.close()?;
    drop(wal);
    let wal = on(&fs).metrics(Arc::clone(&registry), NAME).open()?;
    assert_eq!(wal.recovery_report().records, N);
    assert_eq!(wal.recovery_report().bytes, bytes);
    assert_eq!(counter(&registry, "strata_wal_recovered_records_total"), N);
    assert_eq!(counter(&registry, "strata_wal_recovered_bytes_total"), bytes);
    assert_eq!(counter(&registry, "strata_wal_recovery_truncated_bytes_total"), 0);
    assert_eq!(histogram_count(&registry, "strata_wal_recovery_duration_seconds"), 2);
    // Recovery is not an append: the append figures did not move.
    assert_eq!(counter(&registry, "strata_wal_appends_total"), N);
    Ok(())
}

#[test]
fn checkpoints_and_snapshot_replay_are_counted() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let registry = Arc::new(Registry::new());
    let wal = on(&fs).sync_policy(SyncPolicy::Never).metrics(Arc::clone(&registry), NAME).open()?;
    for seq in 1..=10 {
        wal.append(&payload_for(seq))?;
    }
    let snapshot: Vec<Vec<u8>> = (100..103).map(payload_for).collect();
    let mut cp = wal.begin_checkpoint()?;
    for p in &snapshot {
        cp.append(p)?;
    }
    cp.finish()?;
    // An abandoned checkpoint is not counted; only finished ones are.
    drop(wal.begin_checkpoint()?);
    assert_eq!(histogram_count(&registry, "strata_wal_checkpoint_duration_seconds"), 1);

    let tail: Vec<Vec<u8>> = (11..16).map(payload_for).collect();
    for p in &tail {
        wal.append(p)?;
    }
    wal.close()?;
    drop(wal);

    let wal = on(&fs).metrics(Arc::clone(&registry), NAME).open()?;
    let report = wal.recovery_report();
    assert_eq!((report.snapshot_records, report.records), (3, 5));
    let snapshot_bytes: u64 = snapshot.iter().map(|p| framed(p)).sum();
    let tail_bytes: u64 = tail.iter().map(|p| framed(p)).sum();
    assert_eq!((report.snapshot_bytes, report.bytes), (snapshot_bytes, tail_bytes));
    assert_eq!(counter(&registry, "strata_wal_recovered_records_total"), 8);
    assert_eq!(counter(&registry, "strata_wal_recovered_bytes_total"), snapshot_bytes + tail_bytes);
    Ok(())
}

#[test]
fn a_torn_tail_is_counted_as_truncated_bytes() -> anyhow::Result<()> {
    let mut files = written_log(20, 1 << 20);
    let last = files.last_mut().ok_or_else(|| anyhow::anyhow!("no segment written"))?;
    // Cut the last record short, as a crash in the middle of its write would.
    let cut = 3;
    last.1.truncate(last.1.len() - cut);
    let fs = disk_with(&files);
    let registry = Arc::new(Registry::new());
    let wal = on(&fs).metrics(Arc::clone(&registry), NAME).open()?;
    let report = wal.recovery_report();
    assert_eq!(report.records, 19);
    assert_eq!(report.bytes_truncated, framed(&payload_for(20)) - cut as u64);
    assert_eq!(
        counter(&registry, "strata_wal_recovery_truncated_bytes_total"),
        report.bytes_truncated
    );
    assert_eq!(counter(&registry, "strata_wal_recovered_records_total"), 19);
    Ok(())
}
