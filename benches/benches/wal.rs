//! strata-wal throughput: appends/s per sync policy, record size and appender count; group
//! commit against one fsync per append; memory-mapped segments against one `write` per
//! append; recovery MB/s from the page cache; and the machine's
//! raw fsync rate, the physical limit for `SyncPolicy::Always`.
//!
//! Run with `cargo bench -p strata-benches --bench wal`. Sample counts and times are small so
//! the whole run takes about two minutes; a summary with the group-commit ratio is printed at
//! the end.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata_wal::{SyncPolicy, Wal};

const THREADS: [usize; 2] = [1, 8];
const SIZES: [usize; 2] = [64, 4096];

/// Name, policy, group commit, memory-mapped segments (the `-write` variants append with one
/// `write` per record, as before segments were mapped).
fn policies() -> [(&'static str, SyncPolicy, bool, bool); 6] {
    let interval = SyncPolicy::Interval(Duration::from_millis(10));
    [
        ("always", SyncPolicy::Always, true, true),
        ("always-no-group-commit", SyncPolicy::Always, false, true),
        ("interval-10ms", interval, true, true),
        ("interval-10ms-write", interval, true, false),
        ("never", SyncPolicy::Never, true, true),
        ("never-write", SyncPolicy::Never, true, false),
    ]
}

fn open(dir: &std::path::Path, policy: SyncPolicy, group: bool) -> Wal {
    open_with(dir, policy, group, true)
}

fn open_with(dir: &std::path::Path, policy: SyncPolicy, group: bool, mapped: bool) -> Wal {
    Wal::builder(dir)
        .sync_policy(policy)
        .group_commit(group)
        .memory_map(mapped)
        .max_record_size(64 << 10)
        .open()
        .expect("open a WAL in a fresh temporary directory")
}

/// Appends `total` records of `size` bytes from `threads` threads and returns the time taken.
fn run_appends(wal: &Wal, threads: usize, size: usize, total: u64) -> Duration {
    let payload = vec![0xa5u8; size];
    let per = total.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let payload = &payload;
            s.spawn(move || {
                for _ in 0..per {
                    wal.append(payload).expect("append");
                }
            });
        }
    });
    start.elapsed()
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (name, policy, gc, mapped) in policies() {
        for size in SIZES {
            for threads in THREADS {
                // One fsync per append is only interesting beside group commit (8 appenders).
                if !gc && threads == 1 {
                    continue;
                }
                group.throughput(Throughput::Elements(1));
                let id = BenchmarkId::new(format!("{name}/{size}B"), format!("{threads}t"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let tmp = tempfile::tempdir().expect("tempdir");
                        let wal = open_with(tmp.path(), policy, gc, mapped);
                        let took = run_appends(&wal, threads, size, iters);
                        wal.close().expect("close");
                        took
                    });
                });
            }
        }
    }
    group.finish();
}

/// Writes a log of about `bytes` bytes of `size`-byte records; returns the directory and the
/// exact bytes of its segments.
fn prepared_log(bytes: u64, size: usize) -> (tempfile::TempDir, u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wal = open(tmp.path(), SyncPolicy::Never, true);
    let payload = vec![0x5au8; size];
    for _ in 0..bytes / size as u64 {
        wal.append(&payload).expect("append");
    }
    wal.close().expect("close");
    drop(wal);
    let total = std::fs::read_dir(tmp.path())
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    (tmp, total)
}

fn recover_and_replay(dir: &std::path::Path) -> u64 {
    let wal = Wal::builder(dir)
        .max_record_size(64 << 10)
        .sync_policy(SyncPolicy::Never)
        .open()
        .expect("open");
    let mut n = 0;
    for r in wal.replay().expect("replay") {
        n += r.expect("record").payload.len() as u64;
    }
    n
}

fn recovery(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_recovery");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for size in SIZES {
        let (tmp, total) = prepared_log(128 << 20, size);
        // Warm the page cache so the figure is the decoder's, not the disk's.
        recover_and_replay(tmp.path());
        group.throughput(Throughput::Bytes(total));
        group.bench_function(BenchmarkId::new("open+replay", format!("{size}B")), |b| {
            b.iter(|| recover_and_replay(tmp.path()));
        });
    }
    group.finish();
}

fn raw_fsync(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_fsync_raw");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(tmp.path().join("f")).expect("create");
    group.bench_function("write64+fdatasync", |b| {
        b.iter(|| {
            file.write_all(&[0u8; 64]).expect("write");
            file.sync_data().expect("fdatasync");
        });
    });
    group.finish();
}

/// Appends 64-byte records from `threads` threads for `window`; returns how many were
/// acknowledged.
fn appends_for(wal: &Wal, threads: usize, size: usize, window: Duration) -> u64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let record = vec![0xa5u8; size];
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    wal.append(&record).expect("append");
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

/// A plain-timed comparison printed beside criterion's figures: the raw fsync rate, and group
/// commit against one fsync per append with 8 appenders, for 64-byte and 4 KiB records. The
/// fsync latency of a shared or virtual disk drifts from second to second, so the contenders
/// are measured in interleaved slices of 300 ms, five rounds, and summed.
fn summary(_: &mut Criterion) {
    let slice = Duration::from_millis(300);
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(tmp.path().join("f")).expect("create");
    let single_dir = tempfile::tempdir().expect("tempdir");
    let single = open(single_dir.path(), SyncPolicy::Always, false);
    let grouped_dir = tempfile::tempdir().expect("tempdir");
    let grouped = open(grouped_dir.path(), SyncPolicy::Always, true);
    let sizes = [64usize, 4096];
    let mut syncs = 0u64;
    let (mut one, mut group) = ([0u64; 2], [0u64; 2]);
    for _ in 0..5 {
        let start = Instant::now();
        while start.elapsed() < slice {
            file.write_all(&[0u8; 64]).expect("write");
            file.sync_data().expect("fdatasync");
            syncs += 1;
        }
        for (i, &size) in sizes.iter().enumerate() {
            one[i] += appends_for(&single, 8, size, slice);
            group[i] += appends_for(&grouped, 8, size, slice);
        }
    }
    let secs = slice.as_secs_f64() * 5.0;
    let rate = |n: u64| n as f64 / secs;
    let mut line = format!("\nwal summary (interleaved): raw fdatasync {:.0}/s", rate(syncs));
    for (i, size) in sizes.iter().enumerate() {
        line += &format!(
            "; Always, 8 appenders, {size} B: one fsync per append {:.0} appends/s, group commit \
             {:.0} appends/s ({:.1}x)",
            rate(one[i]),
            rate(group[i]),
            rate(group[i]) / rate(one[i]).max(1e-9)
        );
    }
    // Interval(10 ms), one appender: memory-mapped segments against one `write` per append,
    // in strict turns.
    let interval = SyncPolicy::Interval(Duration::from_millis(10));
    let mapped_dir = tempfile::tempdir().expect("tempdir");
    let mapped = open_with(mapped_dir.path(), interval, true, true);
    let written_dir = tempfile::tempdir().expect("tempdir");
    let written = open_with(written_dir.path(), interval, true, false);
    let (mut by_map, mut by_write) = ([0u64; 2], [0u64; 2]);
    for _ in 0..5 {
        for (i, &size) in sizes.iter().enumerate() {
            by_map[i] += appends_for(&mapped, 1, size, slice);
            by_write[i] += appends_for(&written, 1, size, slice);
        }
    }
    for (i, size) in sizes.iter().enumerate() {
        line += &format!(
            "; Interval(10ms), 1 appender, {size} B: mapped segment {:.0} appends/s, one write \
             per append {:.0} appends/s ({:.1}x)",
            rate(by_map[i]),
            rate(by_write[i]),
            rate(by_map[i]) / rate(by_write[i]).max(1e-9)
        );
    }
    println!("{line}");
}

// `criterion_group!` defines an undocumented public function; it is not API.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, raw_fsync, appends, recovery, summary);
}
use group::benches;
criterion_main!(benches);
