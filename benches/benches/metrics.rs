//! Cost of recording into strata-metrics: one histogram record, one counter add (alone and
//! with two threads adding to the same counter), one gauge set, against a bare atomic add; and
//! the cost of a snapshot and a Prometheus render of a full cache + tier + WAL set.
//!
//! Issue 7's budget is a median of at most 20 ns per histogram record.

use criterion::{black_box, criterion_main, BatchSize, Criterion};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use strata_metrics::{CacheMetrics, Counter, Gauge, Histogram, Registry, TierMetrics, WalMetrics};

/// Latency-like values spread over six orders of magnitude, so the bench walks many buckets
/// instead of hammering one (which a branch predictor and one hot line would flatter).
fn values() -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let exp = (x % 20) as u32 + 6; // 64 ns .. 33 ms
            (x >> 20) % (1u64 << exp) + (1u64 << (exp - 1))
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let vals = values();
    let mut g = c.benchmark_group("record");
    let h = Histogram::new();
    let mut i = 0usize;
    g.bench_function("histogram_record", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            h.record(black_box(vals[i]));
        });
    });
    let mut i = 0usize;
    g.bench_function("histogram_record_duration", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            h.record_duration(black_box(Duration::from_nanos(vals[i])));
        });
    });
    let counter = Counter::new();
    g.bench_function("counter_add", |b| b.iter(|| counter.add(black_box(1))));
    let gauge = Gauge::new();
    g.bench_function("gauge_set", |b| b.iter(|| gauge.set(black_box(7))));
    let atomic = AtomicU64::new(0);
    g.bench_function("bare_atomic_fetch_add", |b| {
        b.iter(|| atomic.fetch_add(black_box(1), Ordering::Relaxed));
    });
    g.finish();
}

/// Time per operation when `threads` threads each do `iters` operations on one shared target.
fn contended<T: Send + Sync + 'static>(
    threads: usize,
    iters: u64,
    target: Arc<T>,
    op: fn(&T),
) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (t, barrier) = (Arc::clone(&target), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op(black_box(&t));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        let _ = h.join();
    }
    // Per operation of one thread: the wall time all threads took for `iters` each.
    start.elapsed()
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads");
    g.bench_function("counter_incr", |b| {
        let target = Arc::new(Counter::new());
        b.iter_custom(|iters| contended(2, iters, Arc::clone(&target), |c: &Counter| c.incr()));
    });
    g.bench_function("bare_atomic_incr", |b| {
        let target = Arc::new(AtomicU64::new(0));
        b.iter_custom(|iters| {
            contended(2, iters, Arc::clone(&target), |a: &AtomicU64| {
                a.fetch_add(1, Ordering::Relaxed);
            })
        });
    });
    g.bench_function("histogram_record", |b| {
        let target = Arc::new(Histogram::new());
        b.iter_custom(|iters| {
            contended(2, iters, Arc::clone(&target), |h: &Histogram| h.record(1_500))
        });
    });
    g.finish();
}

fn export(c: &mut Criterion) {
    let registry = Registry::new();
    let cache = CacheMetrics::register(&registry, "users").expect("valid names");
    let tier = TierMetrics::register(&registry, "redis").expect("valid names");
    let wal = WalMetrics::register(&registry, "main").expect("valid names");
    for v in values() {
        cache.load_duration.record(v);
        tier.get.duration.record(v);
        wal.fsync_duration.record(v);
        cache.hits.incr();
    }
    let mut g = c.benchmark_group("export");
    g.bench_function("snapshot", |b| b.iter(|| black_box(registry.snapshot())));
    g.bench_function("render_prometheus", |b| {
        b.iter_batched(
            || registry.snapshot(),
            |s| black_box(s.render_prometheus()),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

// `criterion_group!` generates an undocumented `pub fn`; the bench binary has no API to document.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::record, super::two_threads, super::export);
}
criterion_main!(group::benches);
