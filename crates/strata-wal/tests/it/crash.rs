//! The SIGKILL crash test: this test binary re-executes itself as a child that appends under
//! `SyncPolicy::Always` or (every other round) `SyncPolicy::Interval`, and prints every
//! acknowledged sequence number; the parent kills it at a random moment, reopens the log and
//! checks that every acknowledged record is there, in order, over many rounds. Under
//! `Interval` the segments are memory-mapped, so this also checks that a frame copied into
//! the map survives the process like a `write` does, and that recovery reads the reserved
//! zeros after the last frame as the end of the log.

use crate::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "STRATA_WAL_CRASH_CHILD_DIR";
/// `always` or `interval`: the child's sync policy.
const POLICY_ENV: &str = "STRATA_WAL_CRASH_CHILD_POLICY";
/// The child's segment size; the parent reopens with the same, so that recovery knows the
/// length of a segment reserved for a memory map and reads its zeros as the end of the log.
const SEGMENT_SIZE: u64 = 64 << 10;

/// The child's body, run only by the parent test (as an ignored test, with the variable set).
#[test]
#[ignore = "the child half of sigkill_at_random_times_loses_no_acknowledged_append, which runs it"]
fn crash_child() -> anyhow::Result<()> {
    let dir = std::env::var_os(CHILD_ENV)
        .ok_or_else(|| anyhow::anyhow!("run by the SIGKILL crash test, which sets {CHILD_ENV}"))?;
    let policy = match std::env::var(POLICY_ENV).as_deref() {
        Ok("interval") => SyncPolicy::Interval(Duration::from_secs(1)),
        _ => SyncPolicy::Always,
    };
    let wal = Wal::builder(&dir).sync_policy(policy).segment_size(SEGMENT_SIZE).open()?;
    let out = std::io::stdout();
    let started = Instant::now();
    let mut seq = wal.next_seq();
    // Bounded in count and time in case the parent never kills it.
    while started.elapsed() < Duration::from_secs(20) && seq < 10_000_000 {
        let got = wal.append(&payload_for(seq))?;
        anyhow::ensure!(got == seq, "expected sequence number {seq}, got {got}");
        let mut lock = out.lock();
        writeln!(lock, "ACK {got}")?;
        lock.flush()?;
        seq += 1;
    }
    Ok(())
}

#[test]
fn sigkill_at_random_times_loses_no_acknowledged_append() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut rng = Rng::from_time();
    eprintln!("seed {}", rng.0);
    let mut acked_max = 0u64;
    let mut total_killed_with_acks = 0;
    let rounds = 24;
    let started = Instant::now();
    for round in 0..rounds {
        // Keep the whole test well under a minute even on a slow disk.
        if started.elapsed() > Duration::from_secs(45) {
            break;
        }
        let mut child = Command::new(&exe)
            .args(["--exact", "crash::crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, tmp.path())
            .env(POLICY_ENV, if round % 2 == 0 { "always" } else { "interval" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness prints "test crash::crash_child ... " without a newline before the
                // test body runs, so the first ACK shares its line.
                if let Some(n) =
                    line.split("ACK ").nth(1).and_then(|n| n.trim().parse::<u64>().ok())
                {
                    acks.push(n);
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(30 + rng.below(250)));
        child.kill()?;
        child.wait()?;
        let acks = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))?;
        // What the child acknowledged is consecutive and continues the log.
        for w in acks.windows(2) {
            anyhow::ensure!(w[1] == w[0] + 1, "round {round}: acks not consecutive");
        }
        if let Some(&first) = acks.first() {
            anyhow::ensure!(
                first <= acked_max + 1,
                "round {round}: child skipped ahead: first ack {first}, known {acked_max}"
            );
            total_killed_with_acks += 1;
        }
        acked_max = acked_max.max(acks.last().copied().unwrap_or(0));

        let wal = Wal::builder(tmp.path()).segment_size(SEGMENT_SIZE).open()?;
        let records = replay_all(&wal)?;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        anyhow::ensure!(
            seqs == (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "round {round}: records missing or out of order"
        );
        anyhow::ensure!(
            seqs.len() as u64 >= acked_max,
            "round {round}: acknowledged {acked_max} records, recovered {}",
            seqs.len()
        );
        for r in &records {
            anyhow::ensure!(
                r.payload == payload_for(r.seq),
                "round {round}: record {} damaged",
                r.seq
            );
        }
        // Unacknowledged records that survived become part of the history the next child
        // continues from.
        acked_max = seqs.len() as u64;
    }
    anyhow::ensure!(
        total_killed_with_acks >= 3,
        "the child acknowledged too little to test anything"
    );
    eprintln!("{acked_max} records over the rounds");
    Ok(())
}
