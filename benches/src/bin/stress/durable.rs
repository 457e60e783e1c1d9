//! The durable workload and the kill and torn-tail faults.
//!
//! A child process (this binary, re-executed with `--child DIR`) opens the durable cache and
//! runs writes, removes and transactions from a few threads. Before each operation it prints
//! an intent line, and after the cache acknowledges it an ack line; the parent records both.
//! The parent SIGKILLs the child at a random moment (fault `kill`), optionally writes a torn
//! record after the last frame of the newest log segment (fault `torn`), reopens the
//! directory itself and checks:
//! - that recovery cut at least the torn bytes;
//! - every key holds the result of its last acknowledged operation, or of the one operation
//!   that was in flight on it (each key belongs to one thread, which has one operation in
//!   flight at most);
//! - the accounts moved by transactions sum to their initial total (no half-applied
//!   transaction), and each committer's commit marker is its last acknowledged commit or
//!   the one in flight.

use crate::args::{Args, WalMode};
use crate::run::Run;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_tier::durable::{DurableCache, DurableOptions};
use strata_wal::SyncPolicy;

/// Plain keys: key `k` belongs to child thread `k % CHILD_THREADS`.
const KEYS: u64 = 4_096;
const CHILD_THREADS: u64 = 2;
const ACCOUNTS: u64 = 16;
const ACCOUNT_BASE: u64 = 1 << 40;
const MARKER_BASE: u64 = 1 << 41;
const INITIAL_BALANCE: i64 = 1_000;
/// Larger than every key the workload writes, so that nothing is evicted and every
/// acknowledged write must be found.
const CAPACITY: u64 = 64 * 1024;
/// Bounds on one child's life.
const MIN_LIFE: Duration = Duration::from_millis(300);
const MAX_LIFE: Duration = Duration::from_millis(1_500);
/// The durable cache's largest log record (its default), for walking segments.
const MAX_RECORD: usize = 32 << 20;

type Store = DurableCache<u64, i64>;

fn options(wal: WalMode) -> DurableOptions<u64, i64> {
    let policy = match wal {
        WalMode::Always => SyncPolicy::Always,
        WalMode::Interval | WalMode::Off => SyncPolicy::Interval(Duration::from_secs(1)),
        WalMode::Never => SyncPolicy::Never,
    };
    // Small checkpoints, so that runs of a few seconds also cross checkpoints.
    DurableOptions::new().capacity(CAPACITY).sync_policy(policy).checkpoint_bytes(Some(1 << 20))
}

fn open(dir: &Path, wal: WalMode) -> Result<Store, String> {
    DurableCache::open(dir, options(wal)).map_err(|e| format!("open {}: {e}", dir.display()))
}

/// One operation of a child thread, as announced in its intent line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put { key: u64, value: i64 },
    Remove { key: u64 },
    Transfer { from: u64, to: u64, amount: i64, id: i64 },
}

impl Op {
    fn line(&self, thread: u64, n: u64) -> String {
        match *self {
            Op::Put { key, value } => format!("I {thread} {n} P {key} {value}"),
            Op::Remove { key } => format!("I {thread} {n} D {key}"),
            Op::Transfer { from, to, amount, id } => {
                format!("I {thread} {n} T {from} {to} {amount} {id}")
            }
        }
    }

    fn parse(words: &[&str]) -> Option<Op> {
        let num = |i: usize| words.get(i)?.parse::<i64>().ok();
        match *words.first()? {
            "P" => Some(Op::Put { key: num(1)? as u64, value: num(2)? }),
            "D" => Some(Op::Remove { key: num(1)? as u64 }),
            "T" => Some(Op::Transfer {
                from: num(1)? as u64,
                to: num(2)? as u64,
                amount: num(3)?,
                id: num(4)?,
            }),
            _ => None,
        }
    }
}

/// What the parent learned from a child's output: per thread, per key, the last
/// acknowledged operation, and the operation in flight.
#[derive(Default)]
struct Ledger {
    /// Last acknowledged state of each plain key: `Some(v)` written, `None` removed.
    acked: HashMap<u64, Option<i64>>,
    /// Last acknowledged commit id of each committer thread.
    commits: HashMap<u64, i64>,
    /// Per thread: the operation announced and not (yet) acknowledged.
    in_flight: HashMap<u64, (u64, Op)>,
    acks: u64,
    /// Acknowledged transactions.
    commits_acked: u64,
}

impl Ledger {
    fn take(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(kind), Some(thread), Some(n)) = (
            words.first(),
            words.get(1).and_then(|w| w.parse::<u64>().ok()),
            words.get(2).and_then(|w| w.parse::<u64>().ok()),
        ) else {
            return;
        };
        match *kind {
            "I" => {
                if let Some(op) = Op::parse(&words[3..]) {
                    self.in_flight.insert(thread, (n, op));
                }
            }
            "A" => {
                if let Some((m, op)) = self.in_flight.remove(&thread) {
                    if m == n {
                        self.acks += 1;
                        match op {
                            Op::Put { key, value } => {
                                self.acked.insert(key, Some(value));
                            }
                            Op::Remove { key } => {
                                self.acked.insert(key, None);
                            }
                            Op::Transfer { id, .. } => {
                                self.commits_acked += 1;
                                self.commits.insert(thread, id);
                            }
                        }
                    }
                }
            }
            // "E": the operation failed and changed nothing; it stays "in flight" (it may
            // or may not count), which the check allows for.
            _ => {}
        }
    }
}

/// Runs rounds of child life, fault and check until the run is over.
pub(crate) fn run(run: &Run, args: &Args, dir: &Path) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut round = 0u64;
    let mut rng = args.seed ^ 0x9E37_79B9_7F4A_7C15;
    while !run.over() && round < 100_000 {
        round += 1;
        if let Err(e) = one_round(run, args, dir, round, &mut rng, &ledger) {
            run.violation(format!("durable round {round}: {e}"));
            return;
        }
    }
}

fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

fn one_round(
    run: &Run,
    args: &Args,
    dir: &Path,
    round: u64,
    rng: &mut u64,
    ledger: &Arc<Mutex<Ledger>>,
) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .arg("--child")
        .arg(dir)
        .args(["--wal", args.wal.name(), "--seed", &(args.seed + round).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn child: {e}"))?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let reader = {
        let ledger = Arc::clone(ledger);
        std::thread::spawn(move || {
            let mut lines = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                ledger.lock().unwrap_or_else(|e| e.into_inner()).take(&line);
                lines += 1;
            }
            lines
        })
    };
    let span = MAX_LIFE - MIN_LIFE;
    let life = MIN_LIFE + Duration::from_micros(next(rng) % span.as_micros() as u64);
    let until = (Instant::now() + life).min(run.deadline.max(Instant::now() + MIN_LIFE));
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the child exited early: {status}"));
        }
    }
    if args.faults.kill {
        // SIGKILL: no destructor, no flush, no close.
        child.kill().map_err(|e| format!("kill child: {e}"))?;
        Run::add(&run.tally.kills, 1);
    } else {
        // A clean stop: the child closes the cache when its stdin closes.
        drop(child.stdin.take());
    }
    let status = child.wait().map_err(|e| format!("wait child: {e}"))?;
    if !args.faults.kill && !status.success() {
        return Err(format!("the child failed: {status}"));
    }
    let _ = reader.join();
    let mut torn = 0;
    if args.faults.torn {
        torn = tear_tail(dir, rng)?;
        Run::add(&run.tally.torn_tails, 1);
    }
    if args.inject_loss {
        lose_one(args, dir, ledger)?;
    }
    check(run, args, dir, ledger, torn)
}

/// Removes one key whose last acknowledged operation wrote it: a stand-in for a cache that
/// loses an acknowledged write, which the check must catch.
fn lose_one(args: &Args, dir: &Path, ledger: &Arc<Mutex<Ledger>>) -> Result<(), String> {
    let victim = {
        let ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
        let written = |k: &u64| matches!(ledger.acked.get(k), Some(Some(_)));
        let in_flight: Vec<u64> = ledger
            .in_flight
            .values()
            .filter_map(|(_, op)| match op {
                Op::Put { key, .. } | Op::Remove { key } => Some(*key),
                Op::Transfer { .. } => None,
            })
            .collect();
        (0..KEYS).find(|k| written(k) && !in_flight.contains(k))
    };
    if let Some(key) = victim {
        let store = open(dir, args.wal)?;
        store.remove(&key).map_err(|e| format!("inject loss: {e}"))?;
        store.close_blocking().map_err(|e| format!("inject loss: {e}"))?;
    }
    Ok(())
}

/// Writes a torn record right after the last complete frame of the newest log segment: a
/// frame header that promises more bytes than follow, as a write (or, in a memory-mapped
/// segment, a copy) cut short by a crash leaves it. In a segment written with `write` the
/// frames end the file and the torn bytes extend it; in a memory-mapped one (`Interval`,
/// `Never`) they land in the reserved zeros after the frames, where a crash would leave
/// them. Returns the bytes written, which recovery must cut (0 if there is no segment).
fn tear_tail(dir: &Path, rng: &mut u64) -> Result<u64, String> {
    use std::os::unix::fs::FileExt;
    let Some(segment) = newest_segment(dir)? else { return Ok(0) };
    let mut torn = vec![0u8; 1 + (next(rng) % 24) as usize];
    for b in torn.iter_mut() {
        *b = next(rng) as u8;
    }
    // A length field that promises a full record.
    torn[0] = 0x40;
    let at = frames_end(&segment)?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .map_err(|e| format!("open {}: {e}", segment.display()))?;
    f.write_all_at(&torn, at).map_err(|e| format!("tear {}: {e}", segment.display()))?;
    Ok(torn.len() as u64)
}

/// The offset just past the last complete frame of a segment (its header, if it has none),
/// found the way recovery walks a segment.
fn frames_end(segment: &Path) -> Result<u64, String> {
    use strata_wal::format::{FrameIter, HEADER_LEN};
    let bytes = std::fs::read(segment).map_err(|e| format!("read {}: {e}", segment.display()))?;
    let Some(body) = bytes.get(HEADER_LEN..) else { return Ok(bytes.len() as u64) };
    let mut end = HEADER_LEN as u64;
    for frame in FrameIter::new(body, HEADER_LEN as u64, MAX_RECORD) {
        match frame {
            Ok((offset, f)) => end = offset + f.encoded_len() as u64,
            Err(_) => break,
        }
    }
    Ok(end)
}

fn newest_segment(dir: &Path) -> Result<Option<PathBuf>, String> {
    let mut newest: Option<PathBuf> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("read {}: {e}", d.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "wal")
                && newest.as_ref().is_none_or(|n| path.file_name() > n.file_name())
            {
                newest = Some(path);
            }
        }
    }
    Ok(newest)
}

/// Reopens the directory and checks it against the ledger. What the reopened cache holds
/// then becomes the ledger's truth for the next round: an operation that was in flight at the
/// kill either happened or did not, for good.
fn check(
    run: &Run,
    args: &Args,
    dir: &Path,
    ledger: &Arc<Mutex<Ledger>>,
    torn: u64,
) -> Result<(), String> {
    let store = open(dir, args.wal)?;
    // A torn tail that recovery did not cut would mean it read the torn bytes as the end
    // (or as a record): the fault would have tested nothing.
    let cut = store.recovery_stats().bytes_truncated;
    if cut < torn {
        run.violation(format!("{torn} torn bytes written, recovery cut only {cut}"));
    }
    let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
    let mut verified = 0;
    for key in 0..KEYS {
        let thread = key % CHILD_THREADS;
        let found = store.get(&key);
        let acked = ledger.acked.get(&key).copied().flatten();
        let mut allowed = vec![acked];
        match ledger.in_flight.get(&thread) {
            Some((_, Op::Put { key: k, value })) if *k == key => allowed.push(Some(*value)),
            Some((_, Op::Remove { key: k })) if *k == key => allowed.push(None),
            _ => {}
        }
        if ledger.acked.contains_key(&key) {
            verified += 1;
        }
        if !allowed.contains(&found) {
            run.lost(
                1,
                format!("key {key}: found {found:?} after a restart, acknowledged {acked:?}"),
            );
        }
        ledger.acked.insert(key, found);
    }
    let balances: Vec<Option<i64>> =
        (0..ACCOUNTS).map(|a| store.get(&(ACCOUNT_BASE + a))).collect();
    if balances.iter().any(Option::is_some) {
        let sum: i64 = balances.iter().map(|b| b.unwrap_or(0)).sum();
        verified += 1;
        if balances.iter().any(Option::is_none) || sum != INITIAL_BALANCE * ACCOUNTS as i64 {
            run.lost(
                1,
                format!("accounts after a restart: {balances:?} (a transaction is half applied)"),
            );
        }
    }
    for thread in 0..CHILD_THREADS {
        let marker = store.get(&(MARKER_BASE + thread));
        let acked = ledger.commits.get(&thread).copied();
        let mut allowed = vec![acked];
        if let Some((_, Op::Transfer { id, .. })) = ledger.in_flight.get(&thread) {
            allowed.push(Some(*id));
        }
        if acked.is_some() {
            verified += 1;
        }
        if !allowed.contains(&marker) {
            run.lost(
                1,
                format!("committer {thread}: commit marker {marker:?}, acknowledged {acked:?}"),
            );
        }
        match marker {
            Some(id) => ledger.commits.insert(thread, id),
            None => ledger.commits.remove(&thread),
        };
    }
    ledger.in_flight.clear();
    Run::add(&run.tally.records_verified, verified);
    run.tally.transactions.store(ledger.commits_acked, std::sync::atomic::Ordering::Relaxed);
    run.tally.durable_acks.store(ledger.acks, std::sync::atomic::Ordering::Relaxed);
    drop(ledger);
    store.close_blocking().map_err(|e| format!("close after check: {e}"))
}

/// The child: opens the cache, seeds the accounts once, then runs operations from
/// `CHILD_THREADS` threads until SIGKILLed or until stdin closes.
pub(crate) fn child(dir: &Path, args: &Args) -> i32 {
    match child_inner(dir, args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stress child: {e}");
            1
        }
    }
}

fn child_inner(dir: &Path, args: &Args) -> Result<(), String> {
    let store = open(dir, args.wal)?;
    if store.get(&ACCOUNT_BASE).is_none() {
        store
            .transaction(|tx| -> Result<(), strata_tier::Error> {
                for a in 0..ACCOUNTS {
                    tx.insert(ACCOUNT_BASE + a, INITIAL_BALANCE)?;
                }
                Ok(())
            })
            .map_err(|e| format!("seed accounts: {e}"))?;
    }
    let out = Mutex::new(std::io::stdout());
    let say = |line: String| {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        // A parent that stopped reading is gone; the child stops soon after.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(600);
    std::thread::scope(|s| {
        for thread in 0..CHILD_THREADS {
            let (store, say, stop) = (&store, &say, &stop);
            s.spawn(move || {
                let mut rng = (args.seed << 8 | thread) | 1;
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    n += 1;
                    let r = next(&mut rng);
                    let key = (r % (KEYS / CHILD_THREADS)) * CHILD_THREADS + thread;
                    let op = match r % 10 {
                        0..=5 => Op::Put { key, value: (n as i64) << 8 | thread as i64 },
                        6 => Op::Remove { key },
                        _ => Op::Transfer {
                            from: ACCOUNT_BASE + (r >> 20) % ACCOUNTS,
                            to: ACCOUNT_BASE + (r >> 30) % ACCOUNTS,
                            amount: (r >> 40) as i64 % 100,
                            id: (args.seed as i64) << 32 | n as i64,
                        },
                    };
                    say(op.line(thread, n));
                    let done = match op {
                        Op::Put { key, value } => store.insert(key, value).map(drop),
                        Op::Remove { key } => store.remove(&key).map(drop),
                        Op::Transfer { from, to, amount, id } => {
                            store.transaction(|tx| -> Result<(), strata_tier::Error> {
                                let a = tx.get(&from)?.unwrap_or(0);
                                let b = tx.get(&to)?.unwrap_or(0);
                                if from != to {
                                    tx.insert(from, a - amount)?;
                                    tx.insert(to, b + amount)?;
                                }
                                tx.insert(MARKER_BASE + thread, id)?;
                                Ok(())
                            })
                        }
                    };
                    match done {
                        Ok(()) => say(format!("A {thread} {n}")),
                        Err(e) => say(format!("E {thread} {n} {e}")),
                    }
                }
            });
        }
        // Stop when the parent closes stdin (a clean stop); SIGKILL needs no handling.
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    store.close_blocking().map_err(|e| format!("close: {e}"))
}
