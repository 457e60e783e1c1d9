//! The cache's statistics as exported through strata-metrics: exact counters under
//! concurrency, evictions by cause, loads of every outcome, sizes read at scrape time, and
//! Prometheus text that a parser accepts.

use prometheus_parse::{Scrape, Value as Parsed};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;
use strata_core::{Cache, ManualClock, PolicyConfig, RemovalCause};
use strata_metrics::{Registry, Snapshot};

fn counter(snap: &Snapshot, name: &str, filter: &[(&str, &str)]) -> u64 {
    snap.counter_sum(name, filter)
}

/// More threads than the counters have stripes (16), so both the thread-owned stripes and
/// the shared one are exercised; every op is a get whose outcome is known in advance.
#[test]
fn hits_and_misses_add_up_to_threads_times_ops() {
    const THREADS: u64 = 20;
    const OPS: u64 = 5_000;
    const PRESENT: u64 = 100;
    let registry = Arc::new(Registry::new());
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100_000)
        .metrics(Arc::clone(&registry), "exact")
        .build()
        .unwrap();
    for k in 0..PRESENT {
        cache.insert(k, k);
    }
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut hits = 0;
                for i in 0..OPS {
                    // Keys below PRESENT are cached and stay cached: all the keys written
                    // fit in a tenth of the capacity, so nothing is evicted.
                    let k = (i * 7 + t) % (2 * PRESENT);
                    if cache.get(&k).is_some() {
                        hits += 1;
                    }
                    // Each thread also writes keys of its own, so inserts are exact too.
                    if i % 10 == 0 {
                        cache.insert(1_000_000 + t * OPS + i, 0);
                    }
                }
                hits
            })
        })
        .collect();
    let observed: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let s = cache.stats();
    assert_eq!(s.hits + s.misses, THREADS * OPS, "{s:?}");
    assert_eq!(s.hits, observed, "every hit a caller saw is counted once");
    assert_eq!(s.inserts, PRESENT + THREADS * OPS / 10);
    assert_eq!((s.updates, s.evictions, s.expirations), (0, 0, 0));
    // The registry holds the very same counters.
    let snap = registry.snapshot();
    assert_eq!(counter(&snap, "strata_cache_hits_total", &[("cache", "exact")]), s.hits);
    assert_eq!(counter(&snap, "strata_cache_misses_total", &[("cache", "exact")]), s.misses);
    assert_eq!(
        snap.gauge("strata_cache_entries", &[("cache", "exact")]),
        Some(cache.entry_count() as i64)
    );
}

/// Size evictions and expirations land in their own `cause` series, agree with what the
/// removal listener saw, and updates, removals and rejections are counted apart.
#[test]
fn evictions_and_expirations_are_counted_by_cause() {
    let clock = Arc::new(ManualClock::new());
    let seen: Arc<Mutex<Vec<RemovalCause>>> = Arc::default();
    let s2 = Arc::clone(&seen);
    let registry = Arc::new(Registry::new());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .eviction_policy(PolicyConfig::Lru)
        .time_to_live(Duration::from_secs(60))
        .clock(clock.clone())
        .removal_listener(move |_, _, c| s2.lock().unwrap().push(c))
        .metrics(Arc::clone(&registry), "causes")
        .build()
        .unwrap();
    for k in 0..30 {
        cache.insert(k, k);
    }
    cache.insert(29, 1); // an update
    assert_eq!(cache.remove(&28), Some(28));
    clock.advance(Duration::from_secs(61));
    cache.run_pending_tasks();
    let s = cache.stats();
    assert_eq!((s.inserts, s.updates, s.removals), (30, 1, 1), "{s:?}");
    assert_eq!(s.evictions, 20, "LRU of capacity 10 evicts the first 20 of 30 keys");
    assert_eq!(s.expirations, 9, "the 9 keys left expire");
    assert_eq!(s.entry_count, 0);
    let causes = seen.lock().unwrap().clone();
    let by = |c: RemovalCause| causes.iter().filter(|&&x| x == c).count() as u64;
    assert_eq!(by(RemovalCause::Size), s.evictions);
    assert_eq!(by(RemovalCause::Expired), s.expirations);
    let snap = registry.snapshot();
    let ev = |cause| counter(&snap, "strata_cache_evictions_total", &[("cause", cause)]);
    assert_eq!((ev("size"), ev("expired")), (20, 9));
    assert_eq!(counter(&snap, "strata_cache_removals_total", &[]), 1);
    assert_eq!(counter(&snap, "strata_cache_updates_total", &[]), 1);
}

#[test]
fn an_entry_too_heavy_to_keep_is_an_admission_rejection() {
    let cache: Cache<u32, Vec<u8>> =
        Cache::builder().max_weight(100).weigher(|_, v: &Vec<u8>| v.len() as u32).build().unwrap();
    cache.insert(1, vec![0; 10]);
    cache.insert(2, vec![0; 1_000]);
    let s = cache.stats();
    assert_eq!((s.inserts, s.admission_rejections, s.evictions), (1, 1, 1), "{s:?}");
    assert_eq!((s.entry_count, s.weighted_size), (1, 10));
    let snap = cache.metrics_registry().snapshot();
    assert_eq!(counter(&snap, "strata_cache_admission_rejections_total", &[]), 1);
    assert_eq!(snap.gauge("strata_cache_weighted_size", &[("cache", "default")]), Some(10));
}

/// Successes, errors, panics and cancelled leaders are all counted, and each one is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_are_counted_by_outcome_and_timed() {
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(100).build().unwrap();
    assert_eq!(cache.get_with(1, async { 10 }).await, 10);
    let failed = cache.try_get_with(2, async { Err::<u32, &str>("backend down") }).await;
    assert_eq!(failed.unwrap_err().as_ref(), &"backend down");
    // A loader that panics: the leader's task dies, and the load counts as a failure.
    let c = cache.clone();
    let panicked = tokio::spawn(async move {
        c.get_with(3, async {
            panic!("loader bug");
        })
        .await
    })
    .await;
    assert!(panicked.is_err());
    // A leader cancelled mid-load (its future dropped at the timeout) is a failure too.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(20),
        cache.get_with(4, async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            40
        }),
    )
    .await;
    assert!(cancelled.is_err());
    let got = cache
        .get_all_with([1, 5, 6], |keys| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            keys.into_iter().map(|k| (k, k)).collect::<Vec<_>>()
        })
        .await;
    assert_eq!(got.len(), 3);
    let s = cache.stats();
    assert_eq!((s.loads_ok, s.loads_failed), (2, 3), "{s:?}");
    // One call, one lookup: the leader's second look (and a retry's) is not a read, so the
    // four loading calls and the batch's two missing keys are six misses, key 1 one hit.
    assert_eq!((s.hits, s.misses), (1, 6), "{s:?}");
    assert!((s.load_failure_ratio() - 0.6).abs() < 1e-9);
    // The batch slept 2 ms and the cancelled load ran until its 20 ms timeout (which was
    // armed a moment before the load started): the sum covers at least 20 ms.
    assert!(s.load_nanos >= 20_000_000, "{s:?}");
    let snap = cache.metrics_registry().snapshot();
    let ok = counter(&snap, "strata_cache_loads_total", &[("result", "success")]);
    let err = counter(&snap, "strata_cache_loads_total", &[("result", "failure")]);
    assert_eq!((ok, err), (2, 3));
    let h = snap.histogram("strata_cache_load_duration_seconds", &[]).unwrap();
    assert_eq!(h.count(), 5, "one latency per load, whatever its outcome");
    assert_eq!(h.sum(), s.load_nanos);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_is_counted_and_its_reload_timed_as_a_load() {
    let clock = Arc::new(ManualClock::new());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .clock(clock.clone())
        .refresh_after_write(Duration::from_secs(1), |k| async move { Some(k + 1) })
        .build()
        .unwrap();
    cache.insert(1, 1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.get(&1), Some(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cache.get(&1) != Some(2) {
        assert!(std::time::Instant::now() < deadline, "refresh never landed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = cache.stats();
    assert_eq!((s.refreshes, s.loads_ok, s.loads_failed, s.updates), (1, 1, 0, 1), "{s:?}");
}

/// The text a cache renders parses with a Prometheus parser, carries the catalogue's names,
/// and shows the figures `stats()` shows.
#[test]
fn prometheus_text_of_a_cache_parses_and_matches_its_stats() {
    let registry = Arc::new(Registry::new());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(1_000)
        .metrics(Arc::clone(&registry), "users")
        .build()
        .unwrap();
    for k in 0..50 {
        cache.insert(k, k);
    }
    for k in 0..80 {
        cache.get(&k);
    }
    let text = cache.render_prometheus();
    assert_eq!(text, registry.render_prometheus(), "one registry, one text");
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let value = |metric: &str| {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get("cache") == Some("users"))
            .unwrap_or_else(|| panic!("{metric} missing from:\n{text}"));
        match sample.value {
            Parsed::Counter(v) | Parsed::Gauge(v) | Parsed::Untyped(v) => v,
            ref other => panic!("{metric}: unexpected {other:?}"),
        }
    };
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (50, 30));
    assert_eq!(value("strata_cache_hits_total"), 50.0);
    assert_eq!(value("strata_cache_misses_total"), 30.0);
    assert_eq!(value("strata_cache_inserts_total"), 50.0);
    assert_eq!(value("strata_cache_entries"), 50.0);
    assert_eq!(value("strata_cache_weighted_size"), 50.0);
    assert!(text.contains("# TYPE strata_cache_hits_total counter\n"));
    assert!(text.contains("# TYPE strata_cache_load_duration_seconds histogram\n"));
}

/// With statistics off nothing is registered; a registry shared by two caches keeps their
/// series apart by name.
#[test]
fn stats_off_registers_nothing_and_names_keep_caches_apart() {
    let registry = Arc::new(Registry::new());
    let off: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .record_stats(false)
        .metrics(Arc::clone(&registry), "off")
        .build()
        .unwrap();
    let a: Cache<u32, u32> =
        Cache::builder().max_capacity(10).metrics(Arc::clone(&registry), "a").build().unwrap();
    let b: Cache<u32, u32> =
        Cache::builder().max_capacity(10).metrics(Arc::clone(&registry), "b").build().unwrap();
    for c in [&off, &a, &b] {
        c.insert(1, 1);
        c.get(&1);
    }
    b.get(&2);
    let text = registry.render_prometheus();
    assert!(!text.contains("cache=\"off\""), "{text}");
    assert!(text.contains("strata_cache_hits_total{cache=\"a\"} 1\n"), "{text}");
    assert!(text.contains("strata_cache_misses_total{cache=\"a\"} 0\n"), "{text}");
    assert!(text.contains("strata_cache_misses_total{cache=\"b\"} 1\n"), "{text}");
    assert_eq!((off.stats().hits, off.metrics_name()), (0, "off"));
    let empty = Cache::<u32, u32>::builder().max_capacity(10).metrics(registry, "").build();
    assert!(empty.is_err(), "an empty cache label is refused");
}

/// The size gauges hold the cache weakly: dropping the last handle frees every entry (no
/// reference cycle through the registry) and the gauges then read zero.
#[test]
fn the_registry_does_not_keep_a_dropped_cache_alive() {
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let registry = Arc::new(Registry::new());
    let cache: Cache<u32, Arc<Tracked>> =
        Cache::builder().max_capacity(10).metrics(Arc::clone(&registry), "gone").build().unwrap();
    for k in 0..5 {
        cache.insert(k, Arc::new(Tracked(Arc::clone(&dropped))));
    }
    let gauge = |r: &Registry| r.snapshot().gauge("strata_cache_entries", &[("cache", "gone")]);
    assert_eq!(gauge(&registry), Some(5));
    drop(cache);
    assert_eq!(dropped.load(Ordering::SeqCst), 5, "values freed with the cache");
    assert_eq!(gauge(&registry), Some(0));
    // The counters outlive the cache in the registry, as Prometheus expects of totals.
    assert_eq!(counter(&registry.snapshot(), "strata_cache_inserts_total", &[]), 5);
}
