//! The in-memory workload: strata-core alone under Zipf reads, writes, removes and TTL
//! expiry from every thread, checked as it runs.

use crate::run::Run;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use strata_core::Cache;
use strata_sim::synth::{generate, Pattern, Phase};

pub(crate) const CAPACITY: u64 = 50_000;
const KEYS: u64 = 200_000;
/// Keys at or above this carry a deadline in their value (they are inserted with a TTL).
const TTL_BASE: u64 = 1 << 40;
const MAX_OPS_PER_THREAD: u64 = 2_000_000_000;
/// How late (µs) a TTL read may be before it counts as serving an expired entry.
const EXPIRY_GRACE_MICROS: u64 = 100_000;

pub(crate) fn build() -> Result<Cache<u64, u64>, String> {
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_idle(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("could not build the cache: {e}"))
}

/// Runs `threads` workers until the run is over.
pub(crate) fn run(run: &Run, cache: &Cache<u64, u64>, threads: usize) {
    let t0 = run.started;
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || worker(run, cache, t0, t as u64));
        }
    });
}

fn worker(run: &Run, cache: &Cache<u64, u64>, t0: Instant, t: u64) {
    let tally = &run.tally;
    let phase = Phase {
        pattern: Pattern::Zipf { keys: KEYS, exponent: 0.99 },
        requests: 1 << 16,
        key_offset: 0,
    };
    let keys = generate(&[phase], 0xC0FFEE + t);
    let mut i = 0u64;
    while i < MAX_OPS_PER_THREAD {
        let key = keys[(i as usize) % keys.len()];
        let op_start = Instant::now();
        match i % 20 {
            0..=12 => {
                tally.gets.fetch_add(1, Ordering::Relaxed);
                if let Some(v) = cache.get(&key) {
                    tally.hits.fetch_add(1, Ordering::Relaxed);
                    tally.checks.fetch_add(1, Ordering::Relaxed);
                    if v >> 32 != key {
                        run.violation(format!("key {key} returned value {v:#x} of another key"));
                    }
                } else {
                    cache.insert(key, (key << 32) | (i & 0xffff_ffff));
                }
            }
            13..=15 => cache.insert(key, (key << 32) | (i & 0xffff_ffff)),
            16 => {
                cache.remove(&key);
            }
            17 | 18 => {
                // Short-lived entries whose value is their own deadline: reading one after
                // that deadline is a served-expired violation.
                let k = TTL_BASE + key % 1000;
                if i % 40 < 20 {
                    let ttl = Duration::from_millis(1 + i % 50);
                    let dl = t0.elapsed() + ttl;
                    cache.insert_with_ttl(k, dl.as_micros() as u64, ttl);
                } else {
                    let before = t0.elapsed().as_micros() as u64;
                    if let Some(dl) = cache.get(&k) {
                        tally.checks.fetch_add(1, Ordering::Relaxed);
                        // The writer stamps its deadline just before the cache reads its own
                        // clock, so a writer preempted in between makes the cache's deadline
                        // later than the stamp; exact boundaries are tested with a manual
                        // clock, here a grace window applies.
                        if dl + EXPIRY_GRACE_MICROS < before {
                            run.violation(format!(
                                "key {k} served {} µs after its deadline",
                                before - dl
                            ));
                        }
                    }
                }
            }
            _ => {
                if cache.entry_count() > CAPACITY {
                    run.violation(format!(
                        "{} entries held, capacity {CAPACITY}",
                        cache.entry_count()
                    ));
                }
                tally.checks.fetch_add(1, Ordering::Relaxed);
            }
        }
        run.latency.record(op_start.elapsed().as_nanos() as u64);
        i += 1;
        if i % 1024 == 0 {
            tally.ops.fetch_add(1024, Ordering::Relaxed);
            if run.over() {
                break;
            }
        }
    }
}

/// Single flight: many threads miss on the same fresh keys at once; each loader runs once.
/// Returns how many loads ran for 200 keys.
pub(crate) fn single_flight(run: &Run, cache: &Cache<u64, u64>, threads: usize) -> u64 {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        run.violation("could not start a tokio runtime for the single-flight check".into());
        return 0;
    };
    let loads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                rt.block_on(async {
                    for k in 0..200u64 {
                        let key = (1 << 50) + k;
                        let v = cache
                            .get_with(key, async {
                                loads.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_micros(200));
                                key << 32
                            })
                            .await;
                        if v != key << 32 {
                            run.violation(format!("get_with({key}) returned {v:#x}"));
                        }
                    }
                });
            });
        }
    });
    let loads = loads.load(Ordering::SeqCst);
    if loads > 200 {
        run.violation(format!("single flight: 200 keys loaded {loads} times"));
    }
    loads
}
