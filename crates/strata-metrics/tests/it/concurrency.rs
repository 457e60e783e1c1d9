//! Counters, gauges and histograms add up exactly under concurrency (threads × ops).

use std::sync::{Arc, Barrier};
use strata_metrics::{names, Counter, Gauge, Histogram, Registry};

const THREADS: u64 = 8;
const OPS: u64 = 50_000;

/// Runs `f(thread_index)` on `THREADS` threads released together, and joins them.
fn run_threads(f: impl Fn(u64) + Send + Sync + 'static) {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (f, barrier) = (Arc::clone(&f), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                f(t);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker panicked");
    }
}

#[test]
fn counters_are_exact() {
    let incr = Arc::new(Counter::new());
    let add = Arc::new(Counter::new());
    let (i2, a2) = (Arc::clone(&incr), Arc::clone(&add));
    run_threads(move |t| {
        for op in 0..OPS {
            i2.incr();
            a2.add(t + op % 7);
        }
    });
    assert_eq!(incr.get(), THREADS * OPS);
    let per_thread_extra: u64 = (0..OPS).map(|op| op % 7).sum();
    let expected: u64 = (0..THREADS).map(|t| t * OPS + per_thread_extra).sum();
    assert_eq!(add.get(), expected);
}

#[test]
fn registry_counters_shared_between_threads_are_exact() {
    // Every thread asks the registry for the handle itself, as separate components would.
    let registry = Arc::new(Registry::new());
    let r = Arc::clone(&registry);
    run_threads(move |_| {
        let hits = r.counter(&names::CACHE_HITS, &[("cache", "shared")]).expect("valid");
        for _ in 0..OPS {
            hits.incr();
        }
    });
    assert_eq!(registry.snapshot().counter_sum("strata_cache_hits_total", &[]), THREADS * OPS);
}

#[test]
fn gauges_balance_to_zero() {
    let g = Arc::new(Gauge::new());
    let g2 = Arc::clone(&g);
    run_threads(move |t| {
        for op in 0..OPS {
            let d = (t + op) as i64 % 5 + 1;
            g2.add(d);
            g2.add(-d);
        }
    });
    assert_eq!(g.get(), 0);
}

#[test]
fn histogram_count_and_sum_are_exact() {
    let h = Arc::new(Histogram::new());
    let h2 = Arc::clone(&h);
    run_threads(move |t| {
        for op in 0..OPS {
            h2.record(t * 1_000_000 + op);
        }
    });
    let s = h.snapshot();
    assert_eq!(s.count(), THREADS * OPS);
    let expected_sum: u64 = (0..THREADS).map(|t| t * 1_000_000 * OPS + OPS * (OPS - 1) / 2).sum();
    assert_eq!(s.sum(), expected_sum);
    assert_eq!(s.buckets().map(|b| b.count).sum::<u64>(), THREADS * OPS);
}
