use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use strata_core::{Cache, RemovalCause};

/// Threads × ops of mixed insert/get/remove/invalidate. Every value read must be one that
/// was written for that key (values encode their key), the capacity bound holds after every
/// write, and the run ends (no deadlock) within a generous time bound.
#[test]
fn mixed_operations_from_many_threads_keep_every_invariant() {
    const THREADS: u64 = 4;
    const OPS: u64 = 50_000;
    const CAP: u64 = 512;
    let evicted = Arc::new(AtomicU64::new(0));
    let ev = Arc::clone(&evicted);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(CAP)
        .shards(4)
        .removal_listener(move |k, v, cause| {
            assert_eq!(v >> 32, k, "a removed value belongs to its key");
            if cause == RemovalCause::Size {
                ev.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = x % 2048;
                    match x % 100 {
                        0..=59 => {
                            if let Some(v) = cache.get(&key) {
                                assert_eq!(v >> 32, key, "value of another key returned");
                            }
                        }
                        60..=89 => cache.insert(key, (key << 32) | (i & 0xffff_ffff)),
                        90..=97 => {
                            cache.remove(&key);
                        }
                        98 => {
                            cache.invalidate_if(|k, _| k % 97 == key % 97);
                        }
                        _ => {
                            if i % 10_000 == 0 {
                                cache.invalidate_all();
                            }
                        }
                    }
                    assert!(cache.weighted_size() <= CAP);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("no worker panicked");
    }
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
    cache.run_pending_tasks();
    assert!(cache.entry_count() <= CAP);
    assert_eq!(cache.entry_count(), cache.iter().count() as u64);
    assert!(evicted.load(Ordering::Relaxed) > 0, "the workload overflowed the cache");
}

/// Single flight under contention: many threads, many keys, each key's loader runs once.
#[test]
fn single_flight_runs_each_loader_exactly_once_under_contention() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(10_000).build().unwrap();
    let calls: Arc<Vec<AtomicU64>> = Arc::new((0..100).map(|_| AtomicU64::new(0)).collect());
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                for k in 0..100u64 {
                    let key = (k + t * 7) % 100;
                    let v = cache
                        .get_with(key, async {
                            calls[key as usize].fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            key * 3
                        })
                        .await;
                    assert_eq!(v, key * 3);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    for (k, c) in calls.iter().enumerate() {
        assert_eq!(c.load(Ordering::SeqCst), 1, "key {k}");
    }
}

/// Readers and writers on the same hot keys with a small capacity: no deadlock between the
/// read path's opportunistic drains and writers.
#[test]
fn hot_keys_with_constant_eviction_do_not_deadlock() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(16).shards(1).build().unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let cache = &cache;
            s.spawn(move || {
                for i in 0..100_000u64 {
                    let k = (i * (t + 1)) % 64;
                    if i % 4 == 0 {
                        cache.insert(k, k);
                    } else if let Some(v) = cache.get(&k) {
                        assert_eq!(v, k);
                    }
                }
            });
        }
    });
    assert!(cache.entry_count() <= 16);
}
