//! The durable cache (strata-tier, feature `wal`): insert throughput under `Interval(1s)` and
//! `Never` beside the in-memory cache's in the same run; transaction commits/s with 8 committers under
//! `Always` beside the disk's raw fsync rate; warm restart time for 1M entries (from a
//! checkpoint, and from the log alone).
//!
//! Run with `cargo bench -p strata-benches --bench durable`. A summary with the ratios is
//! printed at the end; the disk's fsync rate drifts, so compare figures of one run only.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata_core::Cache;
use strata_tier::durable::{DurableCache, DurableOptions};
use strata_wal::SyncPolicy;

/// Distinct keys in the insert benches (all fit: nothing is evicted).
const KEYS: u64 = 100_000;
/// The insert summary: rounds of one slice per side.
const INSERT_ROUNDS: usize = 8;
/// Long enough that refilling the processor caches with one cache's working set at the start
/// of a slice weighs little.
const INSERT_SLICE: Duration = Duration::from_millis(300);
/// Entries in the warm-restart bench.
const RESTART_ENTRIES: u64 = 1_000_000;
const COMMITTERS: usize = 8;
const ACCOUNTS: u64 = 1_024;

fn durable(dir: &std::path::Path, policy: SyncPolicy, capacity: u64) -> DurableCache<u64, u64> {
    DurableCache::open(
        dir,
        DurableOptions::new()
            .sync_policy(policy)
            .capacity(capacity)
            .checkpoint_bytes(Some(256 << 20))
            .max_attempts(1_000_000),
    )
    .expect("open a durable cache in a fresh temporary directory")
}

fn memory() -> Cache<u64, u64> {
    Cache::builder().max_capacity(KEYS).build().expect("build an in-memory cache")
}

fn inserts(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_insert");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    let mem = memory();
    let mut k = 0u64;
    group.bench_function("in-memory", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            mem.insert(k, k);
        });
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = durable(tmp.path(), SyncPolicy::Interval(Duration::from_secs(1)), KEYS);
    group.bench_function("durable-interval-1s", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            db.insert(k, k).expect("insert");
        });
    });
    db.close_blocking().expect("close");
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = durable(tmp.path(), SyncPolicy::Never, KEYS);
    group.bench_function("durable-never", |b| {
        b.iter(|| {
            k = (k + 1) % KEYS;
            db.insert(k, k).expect("insert");
        });
    });
    group.finish();
    db.close_blocking().expect("close");
}

/// Runs transfer transactions from `COMMITTERS` threads for `window`; returns the commits.
fn commits_for(db: &DurableCache<u64, u64>, window: Duration) -> u64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..COMMITTERS as u64 {
            let (stop, done) = (&stop, &done);
            s.spawn(move || {
                let mut n = 0u64;
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (from, to) = (x % ACCOUNTS, (x >> 20) % ACCOUNTS);
                    db.transaction(|tx| -> strata_tier::Result<()> {
                        let a = tx.get(&from)?.unwrap_or(0);
                        let b = tx.get(&to)?.unwrap_or(0);
                        tx.insert(from, a.wrapping_sub(1))?;
                        tx.insert(to, b.wrapping_add(1))
                    })
                    .expect("commit");
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
    });
    done.into_inner()
}

fn fsyncs_for(file: &mut std::fs::File, window: Duration) -> u64 {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < window {
        file.write_all(&[0u8; 64]).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    n
}

fn transactions(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_txn");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = durable(tmp.path(), SyncPolicy::Always, ACCOUNTS * 2);
    group.bench_function("always-8-committers-300ms", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let window = Duration::from_millis(300);
                let n = commits_for(&db, window);
                // Report time per commit, so criterion's figure reads as commits/s.
                total += window / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
            }
            total
        });
    });
    group.finish();
    db.close_blocking().expect("close");
}

/// Fills a cache with `RESTART_ENTRIES` entries; with `checkpoint`, then writes a snapshot.
fn prepared(checkpoint: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Room to spare, so that no entry is evicted (a shard's share can fill before the whole).
    let db = durable(tmp.path(), SyncPolicy::Never, 2 * RESTART_ENTRIES);
    for k in 0..RESTART_ENTRIES {
        db.insert(k, k.wrapping_mul(31)).expect("insert");
    }
    if checkpoint {
        db.checkpoint().expect("checkpoint");
    }
    db.close_blocking().expect("close");
    tmp
}

fn reopen(dir: &std::path::Path) -> Duration {
    let start = Instant::now();
    let db = durable(dir, SyncPolicy::Never, 2 * RESTART_ENTRIES);
    let took = start.elapsed();
    assert_eq!(db.recovery_stats().entries, RESTART_ENTRIES, "every entry recovered");
    db.close_blocking().expect("close");
    took
}

fn restart(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_restart_1m");
    group.sample_size(10).warm_up_time(Duration::from_millis(100));
    for (name, checkpoint) in [("from-checkpoint", true), ("from-log", false)] {
        let dir = prepared(checkpoint);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| reopen(dir.path())).sum());
        });
    }
    group.finish();
}

/// Plain-timed figures printed together, measured in interleaved slices so that drift of the
/// machine or the disk affects both sides of each ratio alike.
fn summary(_: &mut Criterion) {
    let slice = Duration::from_millis(300);
    // Insert throughput, in-memory against durable under Interval(1s), then against durable
    // under Never: each pair takes strict turns in slices, so that drift of the machine
    // affects both sides alike and each slice starts after the other side's, with the
    // processor caches holding the other's working set. (Two slices of one side in a row
    // would give the second a warm start; a third cache in the rotation would put each
    // durable slice after the other durable one, whose log is still being written back.)
    let pair = |policy: SyncPolicy| -> (f64, f64) {
        let mem = memory();
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = durable(tmp.path(), policy, KEYS);
        let mut counts = [0u64; 2];
        let mut k = 0u64;
        for _ in 0..INSERT_ROUNDS {
            for (which, count) in counts.iter_mut().enumerate() {
                let start = Instant::now();
                while start.elapsed() < INSERT_SLICE {
                    for _ in 0..256 {
                        k = (k + 1) % KEYS;
                        if which == 0 {
                            mem.insert(k, k);
                        } else {
                            db.insert(k, k).expect("insert");
                        }
                    }
                    *count += 256;
                }
            }
        }
        db.close_blocking().expect("close");
        let secs = INSERT_SLICE.as_secs_f64() * INSERT_ROUNDS as f64;
        (counts[0] as f64 / secs, counts[1] as f64 / secs)
    };
    let (mem_rate, dur_rate) = pair(SyncPolicy::Interval(Duration::from_secs(1)));
    let (mem_rate_2, never_rate) = pair(SyncPolicy::Never);
    let secs = slice.as_secs_f64() * 5.0;

    // Commits/s under Always with 8 committers, beside the raw fsync rate.
    let fsync_dir = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(fsync_dir.path().join("f")).expect("create");
    let tx_dir = tempfile::tempdir().expect("tempdir");
    let txdb = durable(tx_dir.path(), SyncPolicy::Always, ACCOUNTS * 2);
    let (mut syncs, mut commits) = (0u64, 0u64);
    for _ in 0..5 {
        syncs += fsyncs_for(&mut file, slice);
        commits += commits_for(&txdb, slice);
    }
    txdb.close_blocking().expect("close");
    let (sync_rate, commit_rate) = (syncs as f64 / secs, commits as f64 / secs);

    // Warm restart of 1M entries.
    let from_cp = prepared(true);
    let cp_time = reopen(from_cp.path());
    drop(from_cp);
    let from_log = prepared(false);
    let log_time = reopen(from_log.path());

    println!(
        "\ndurable summary (interleaved): insert in-memory {mem_rate:.0}/s, durable Interval(1s) \
         {dur_rate:.0}/s ({:.0}% of in-memory); in-memory {mem_rate_2:.0}/s against durable \
         Never {never_rate:.0}/s ({:.0}%); Always, {COMMITTERS} committers: {commit_rate:.0} \
         txn commits/s beside raw fdatasync {sync_rate:.0}/s ({:.1} commits per fsync-time); \
         warm restart of {RESTART_ENTRIES} entries: {:.2} s from a checkpoint, {:.2} s from the log",
        100.0 * dur_rate / mem_rate,
        100.0 * never_rate / mem_rate_2,
        commit_rate / sync_rate,
        cp_time.as_secs_f64(),
        log_time.as_secs_f64(),
    );
}

// `criterion_group!` defines an undocumented public function; it is not API.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, inserts, transactions, restart, summary);
}
use group::benches;
criterion_main!(benches);
