//! Checkpoints: snapshot + manifest switch, crashed at every disk operation.

use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use strata_wal::fault::Fault;
use strata_wal::{Error, Source};

/// The owner's record: a put of a key (idempotent, as the checkpoint contract requires).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Put {
    key: u8,
    value: u32,
}

type State = BTreeMap<u8, u32>;

fn apply(state: &mut State, put: Put) {
    state.insert(put.key, put.value);
}

/// Rebuilds the state from a replay; checks the order rules on the way.
fn rebuild(records: &[strata_wal::Record]) -> anyhow::Result<State> {
    let mut state = State::new();
    let mut last = 0;
    let mut in_log = false;
    for r in records {
        match r.source {
            Source::Snapshot => anyhow::ensure!(!in_log, "snapshot record after log records"),
            Source::Log => {
                anyhow::ensure!(r.seq > last, "log records out of order");
                in_log = true;
            }
        }
        last = last.max(r.seq);
        apply(&mut state, r.decode()?);
    }
    Ok(state)
}

/// The scripted workload: 25 puts, a checkpoint with 4 puts racing it, 5 more puts, a second
/// checkpoint, 3 puts. Stops at the first error; returns the acknowledged puts in order and the
/// one put in flight when the error hit, if any.
fn workload(wal: &Wal) -> (Vec<Put>, Option<Put>) {
    let mut acked = Vec::new();
    let mut state = State::new();
    let mut n = 0u32;
    let mut put = |acked: &mut Vec<Put>, state: &mut State| -> Result<(), Put> {
        n += 1;
        let p = Put { key: (n % 7) as u8, value: n };
        match wal.append_value(&p) {
            Ok(_) => {
                acked.push(p);
                apply(state, p);
                Ok(())
            }
            Err(_) => Err(p),
        }
    };
    macro_rules! step {
        ($e:expr) => {
            if let Err(p) = $e {
                return (acked, Some(p));
            }
        };
    }
    for _ in 0..25 {
        step!(put(&mut acked, &mut state));
    }
    for round in 0..2 {
        let snapshot = state.clone();
        let Ok(mut cp) = wal.begin_checkpoint() else { return (acked, None) };
        for _ in 0..4 - round * 2 {
            step!(put(&mut acked, &mut state));
        }
        for (&key, &value) in &snapshot {
            if cp.append_value(&Put { key, value }).is_err() {
                return (acked, None);
            }
        }
        if cp.finish().is_err() {
            return (acked, None);
        }
        for _ in 0..5 - round * 2 {
            step!(put(&mut acked, &mut state));
        }
    }
    (acked, None)
}

#[test]
fn checkpoint_replaces_segments_and_replays_the_same_state() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let wal = on(&fs).segment_size(300).open()?;
    let (acked, failed) = workload(&wal);
    assert!(failed.is_none());
    let mut expect = State::new();
    acked.iter().for_each(|p| apply(&mut expect, *p));
    let records = replay_all(&wal)?;
    assert!(records.iter().any(|r| r.source == Source::Snapshot));
    assert_eq!(rebuild(&records)?, expect);
    // Only the segments after the second checkpoint are left.
    let segments =
        fs.files().iter().filter(|(p, _)| p.extension().is_some_and(|e| e == "wal")).count();
    assert!(segments <= 3, "{segments} segments left");
    assert!(wal.begin_checkpoint().is_ok(), "a finished checkpoint frees the slot");
    wal.close()?;
    drop(wal);
    let (wal, records) = open_replay(&fs, RecoveryMode::AbsoluteConsistency)?;
    assert_eq!(rebuild(&records)?, expect);
    assert!(wal.recovery_report().checkpoint_seq.is_some());
    Ok(())
}

#[test]
fn only_one_checkpoint_at_a_time() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let wal = on(&fs).open()?;
    wal.append(b"x")?;
    let cp = wal.begin_checkpoint()?;
    assert!(matches!(wal.begin_checkpoint(), Err(Error::CheckpointInProgress)));
    drop(cp);
    let cp = wal.begin_checkpoint()?;
    assert_eq!(cp.info().covered_seq, 1);
    cp.finish()?;
    // An abandoned checkpoint leaves the log as it was.
    let cp = wal.begin_checkpoint()?;
    drop(cp);
    drop(wal);
    let (_, records) = open_replay(&fs, RecoveryMode::AbsoluteConsistency)?;
    assert!(records.is_empty(), "the first checkpoint had an empty snapshot");
    Ok(())
}

#[test]
fn a_crash_at_every_step_of_a_checkpoint_recovers_the_same_state() -> anyhow::Result<()> {
    let total = {
        let fs = FaultFs::new();
        let wal = on(&fs).segment_size(300).open()?;
        let (_, failed) = workload(&wal);
        assert!(failed.is_none());
        fs.ops()
    };
    assert!(total > 50, "the workload should take many disk operations, took {total}");
    for at in 0..=total {
        for variant in 0..3 {
            let keep_torn = variant == 1;
            let fs = FaultFs::new();
            if keep_torn {
                // A torn write just before the crash.
                fs.inject(at, Fault::Tear { keep: 9 });
                fs.inject(at + 1, Fault::Crash);
            } else {
                fs.inject(at, Fault::Crash);
            }
            let (acked, in_flight) = match on(&fs).segment_size(300).open() {
                Ok(wal) => workload(&wal),
                Err(_) => (Vec::new(), None),
            };
            if variant == 2 {
                // Half of every file's unsynced bytes reached the disk before the crash.
                fs.restart_keeping(|unsynced| unsynced / 2);
            } else {
                fs.restart();
            }
            let (wal, records) = open_replay(&fs, RecoveryMode::TolerateTornTail)
                .map_err(|e| anyhow::anyhow!("crash at op {at}: reopen failed: {e}"))?;
            let state = rebuild(&records)?;
            let mut expect = State::new();
            acked.iter().for_each(|p| apply(&mut expect, *p));
            let mut with_flight = expect.clone();
            if let Some(p) = in_flight {
                apply(&mut with_flight, p);
            }
            assert!(
                state == expect || state == with_flight,
                "crash at op {at} (variant {variant}): recovered {state:?}, acknowledged {expect:?}"
            );
            // Recovery is idempotent: a second reopen sees the same state.
            wal.close()?;
            drop(wal);
            let (_, again) = open_replay(&fs, RecoveryMode::AbsoluteConsistency)
                .map_err(|e| anyhow::anyhow!("crash at op {at}: second reopen failed: {e}"))?;
            assert_eq!(rebuild(&again)?, state, "crash at op {at}");
        }
    }
    Ok(())
}
