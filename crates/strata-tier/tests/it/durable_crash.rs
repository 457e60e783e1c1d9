//! The SIGKILL crash test of the durable cache: this test binary re-executes itself as a child
//! whose committer threads move amounts between accounts in transactions under
//! `SyncPolicy::Always` (with background checkpoints every few kilobytes of log) and print
//! every acknowledged commit; the parent kills the child at a random moment, reopens the
//! cache and checks that every acknowledged commit is there, the sum of the balances is
//! unchanged, and no transaction is partly applied, over many rounds.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_tier::durable::{DurableCache, DurableOptions};
use strata_wal::SyncPolicy;

use crate::durable::Rng;

const CHILD_ENV: &str = "STRATA_DURABLE_CRASH_CHILD_DIR";
const ACCOUNTS: u64 = 8;
const COMMITTERS: u64 = 4;
const START: i64 = 1_000;

/// Accounts hold (balance, how many transactions touched it); `last/T` holds (0, the id of
/// committer T's last commit). Commit ids of one committer are consecutive from 1, so the
/// touches of all accounts must add up to twice the sum of the last ids: a transaction whose
/// id is there but whose transfer is not (or half of it) breaks that equation.
type Db = DurableCache<String, (i64, u64)>;

fn account(i: u64) -> String {
    format!("acct/{i}")
}

fn last(t: u64) -> String {
    format!("last/{t}")
}

fn options() -> DurableOptions<String, (i64, u64)> {
    DurableOptions::new()
        .sync_policy(SyncPolicy::Always)
        .capacity(1_000)
        .segment_size(64 << 10)
        .checkpoint_bytes(Some(16 << 10))
        .max_attempts(1_000_000)
}

/// The child's body, run only by the parent test (as an ignored test, with the variable set).
#[test]
#[ignore = "the child half of sigkill_never_loses_or_tears_an_acknowledged_transaction, which runs it"]
fn crash_child() -> anyhow::Result<()> {
    let dir = std::env::var_os(CHILD_ENV)
        .ok_or_else(|| anyhow::anyhow!("run by the durable crash test, which sets {CHILD_ENV}"))?;
    let db: Db = DurableCache::open(&dir, options())?;
    db.transaction(|tx| -> strata_tier::Result<()> {
        if tx.get(&"init".to_string())?.is_none() {
            for i in 0..ACCOUNTS {
                tx.insert(account(i), (START, 0))?;
            }
            tx.insert("init".to_string(), (1, 0))?;
        }
        Ok(())
    })?;
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..COMMITTERS)
            .map(|t| {
                let db = &db;
                s.spawn(move || -> anyhow::Result<()> {
                    let mut rng = Rng::seeded(started.elapsed().as_nanos() as u64 ^ (t + 1));
                    let mut id = db.get(&last(t)).map_or(0, |v| v.1);
                    let out = std::io::stdout();
                    // Bounded in count and time in case the parent never kills it.
                    for _ in 0..1_000_000 {
                        if started.elapsed() > Duration::from_secs(20) {
                            break;
                        }
                        id += 1;
                        let from = rng.below(ACCOUNTS);
                        let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                        let amount = 1 + rng.below(100) as i64;
                        db.transaction(|tx| -> anyhow::Result<()> {
                            let a = tx
                                .get(&account(from))?
                                .ok_or_else(|| anyhow::anyhow!("no {from}"))?;
                            let b =
                                tx.get(&account(to))?.ok_or_else(|| anyhow::anyhow!("no {to}"))?;
                            tx.insert(account(from), (a.0 - amount, a.1 + 1))?;
                            tx.insert(account(to), (b.0 + amount, b.1 + 1))?;
                            tx.insert(last(t), (0, id))?;
                            Ok(())
                        })?;
                        let mut lock = out.lock();
                        writeln!(lock, "ACK {t} {id}")?;
                        lock.flush()?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("committer panicked"))??;
        }
        Ok(())
    })?;
    db.close_blocking()?;
    Ok(())
}

/// Reopens the cache and checks the invariants; returns each committer's last commit id.
fn check(dir: &Path, round: usize) -> anyhow::Result<Vec<u64>> {
    let db: Db = DurableCache::open(dir, options())?;
    let lasts: Vec<u64> = (0..COMMITTERS).map(|t| db.get(&last(t)).map_or(0, |v| v.1)).collect();
    if db.get(&"init".to_string()).is_none() {
        anyhow::ensure!(db.iter().next().is_none(), "round {round}: data without the init record");
        db.close_blocking()?;
        return Ok(lasts);
    }
    let mut sum = 0;
    let mut touches = 0;
    for i in 0..ACCOUNTS {
        let (balance, touched) = db
            .get(&account(i))
            .ok_or_else(|| anyhow::anyhow!("round {round}: account {i} lost"))?;
        sum += balance;
        touches += touched;
    }
    anyhow::ensure!(sum == START * ACCOUNTS as i64, "round {round}: balances sum to {sum}");
    let commits: u64 = lasts.iter().sum();
    anyhow::ensure!(
        touches == 2 * commits,
        "round {round}: {touches} account touches for {commits} commits: a transaction is torn"
    );
    db.close_blocking()?;
    Ok(lasts)
}

#[cfg(unix)]
#[test]
fn sigkill_never_loses_or_tears_an_acknowledged_transaction() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let seed = Instant::now().elapsed().as_nanos() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
    let mut rng = Rng::seeded(seed);
    eprintln!("seed {seed}");
    let mut lasts = vec![0u64; COMMITTERS as usize];
    let mut total_acks = 0usize;
    let started = Instant::now();
    for round in 0..20 {
        // Keep the whole test well under a minute even on a slow disk.
        if started.elapsed() > Duration::from_secs(45) {
            break;
        }
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "durable_crash::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let reader = std::thread::spawn(move || {
            let mut acks: Vec<(u64, u64)> = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness prints "test durable_crash::crash_child ... " without a newline
                // before the body runs, so the first ACK may share its line.
                let Some(rest) = line.split("ACK ").nth(1) else { continue };
                let mut parts = rest.split_whitespace().map(|p| p.parse::<u64>());
                if let (Some(Ok(t)), Some(Ok(id))) = (parts.next(), parts.next()) {
                    acks.push((t, id));
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(50 + rng.below(450)));
        child.kill()?;
        child.wait()?;
        let acks = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))?;
        total_acks += acks.len();
        // Each committer acknowledges consecutive ids, continuing where the last round's
        // recovered state left off.
        let mut expect: Vec<u64> = lasts.iter().map(|l| l + 1).collect();
        for &(t, id) in &acks {
            anyhow::ensure!(t < COMMITTERS, "round {round}: unknown committer {t}");
            anyhow::ensure!(
                id == expect[t as usize],
                "round {round}: committer {t} acknowledged {id}, expected {}",
                expect[t as usize]
            );
            expect[t as usize] += 1;
        }
        let recovered = check(tmp.path(), round)?;
        for t in 0..COMMITTERS as usize {
            let acked = expect[t] - 1;
            // A commit in flight at the kill may be there without its acknowledgement (it
            // reached the log but not stdout), but never more than the committers in flight.
            anyhow::ensure!(
                recovered[t] == acked || recovered[t] == acked + 1,
                "round {round}: committer {t} acknowledged up to {acked}, recovered {}",
                recovered[t]
            );
        }
        lasts = recovered;
    }
    eprintln!("{total_acks} acknowledged transactions, last ids {lasts:?}");
    anyhow::ensure!(total_acks > 0, "the child never acknowledged a commit");
    // The kills also fell among background checkpoints: at least one of them finished.
    anyhow::ensure!(
        tmp.path().join("MANIFEST").exists(),
        "no checkpoint ever finished, so crashes during checkpoints were not exercised"
    );
    Ok(())
}
