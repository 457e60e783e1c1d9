use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_core::{Cache, ManualClock};

fn cache() -> Cache<u32, String> {
    Cache::builder().max_capacity(1000).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_run_the_loader_once() {
    let cache = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (cache, calls) = (cache.clone(), Arc::clone(&calls));
        tasks.push(tokio::spawn(async move {
            cache
                .get_with(1, async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    "one".to_string()
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "one");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads_ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_reach_every_waiter_and_are_not_cached() {
    let cache = cache();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (cache, calls) = (cache.clone(), Arc::clone(&calls));
        tasks.push(tokio::spawn(async move {
            cache
                .try_get_with(1, async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<String, _>("db down")
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(*t.await.unwrap().unwrap_err(), "db down");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!cache.contains_key(&1));
    let v = cache.try_get_with(1, async { Ok::<_, &str>("back".to_string()) }).await.unwrap();
    assert_eq!(v, "back", "the next call loads again");
    assert_eq!(cache.stats().loads_failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_loader_does_not_wedge_the_key() {
    let cache = cache();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_with(1, std::future::pending::<String>()).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let follower = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_with(1, async { "second".to_string() }).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    let v = tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("follower finished")
        .unwrap();
    assert_eq!(v, "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_does_not_wedge_the_key() {
    let cache = cache();
    let c = cache.clone();
    let panicked = tokio::spawn(async move {
        c.get_with(1, async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            panic!("loader bug");
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let c = cache.clone();
    let follower = tokio::spawn(async move { c.get_with(1, async { "ok".to_string() }).await });
    assert!(panicked.await.is_err());
    let v =
        tokio::time::timeout(Duration::from_secs(5), follower).await.expect("no wedge").unwrap();
    assert_eq!(v, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_loading_calls_the_loader_once_for_all_missing_keys() {
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(1000).build().unwrap();
    cache.insert(1, 10);
    let calls = AtomicUsize::new(0);
    let got = cache
        .get_all_with(vec![1, 2, 3, 4, 2], |missing| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(missing, vec![2, 3, 4]);
                // The loader may skip keys it does not find.
                missing.into_iter().filter(|k| *k != 4).map(|k| (k, k * 10)).collect()
            }
        })
        .await;
    assert_eq!(calls.into_inner(), 1);
    assert_eq!(got.len(), 3);
    assert_eq!(got[&2], 20);
    assert!(!got.contains_key(&4));
    assert_eq!(cache.get(&3), Some(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_after_write_serves_the_old_value_and_reloads_once() {
    let clock = Arc::new(ManualClock::new());
    let reloads = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&reloads);
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .clock(clock.clone())
        .refresh_after_write(Duration::from_secs(10), move |k| {
            let r = Arc::clone(&r);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                r.fetch_add(1, Ordering::SeqCst);
                Some(k + 100)
            }
        })
        .build()
        .unwrap();
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(Duration::from_secs(11));
    for _ in 0..20 {
        assert_eq!(cache.get(&1), Some(1), "stale reads return at once with the old value");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cache.get(&1) != Some(101) {
        assert!(std::time::Instant::now() < deadline, "refresh never landed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reloads.load(Ordering::SeqCst), 1, "many stale reads, one reload");
    assert_eq!(cache.stats().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_a_refresh_wins() {
    let clock = Arc::new(ManualClock::new());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .clock(clock.clone())
        .refresh_after_write(Duration::from_secs(1), |_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some(999)
        })
        .build()
        .unwrap();
    cache.insert(1, 1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.get(&1), Some(1)); // starts the reload
    cache.insert(1, 2); // a newer write while it runs
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cache.get(&1), Some(2));
}

#[test]
fn refresh_works_without_a_runtime() {
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
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Without a runtime each reload runs on a thread of its own, but never more than 16 at once
/// in the process: a burst of stale keys used to start a thread per key. Those skipped are
/// reloaded by a later read once threads are free.
#[test]
fn refreshes_without_a_runtime_run_on_a_bounded_number_of_threads() {
    const KEYS: u32 = 200;
    let clock = Arc::new(ManualClock::new());
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let release = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let (r, p, g) = (running.clone(), peak.clone(), release.clone());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(u64::from(KEYS))
        .clock(clock.clone())
        .refresh_after_write(Duration::from_secs(1), move |k| {
            let (running, peak, release) = (r.clone(), p.clone(), g.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                // Held until the test lets go (at most 5 s, should the test fail first).
                let (lock, cv) = &*release;
                let held = lock.lock().unwrap();
                drop(cv.wait_timeout_while(held, Duration::from_secs(5), |go| !*go).unwrap());
                running.fetch_sub(1, Ordering::SeqCst);
                Some(k + 1000)
            }
        })
        .build()
        .unwrap();
    for k in 0..KEYS {
        cache.insert(k, k);
    }
    clock.advance(Duration::from_secs(2));
    for k in 0..KEYS {
        assert_eq!(cache.get(&k), Some(k), "a stale read returns the old value at once");
    }
    std::thread::sleep(Duration::from_millis(100));
    let most = peak.load(Ordering::SeqCst);
    assert!((1..=16).contains(&most), "{most} reloads ran at once");
    {
        let (lock, cv) = &*release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    // Every key is reloaded in the end, the skipped ones by later reads.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (0..KEYS).any(|k| cache.get(&k) != Some(k + 1000)) {
        assert!(std::time::Instant::now() < deadline, "some keys were never reloaded");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(peak.load(Ordering::SeqCst) <= 16);
}

/// A refresh must not land on a value written after it started, even when that write put
/// the key in another slot (it was removed, and its slot reused by another key) or came
/// after `invalidate_all`: the write generations of the two values must differ.
///
/// The runtime is single-threaded, so the reload task runs only when the test yields: each
/// case is set up completely before the reload can finish.
#[tokio::test(flavor = "current_thread")]
async fn a_refresh_never_overwrites_a_key_written_again_after_it_started() {
    type Rewrite = fn(&Cache<u32, u32>);
    let cases: [(&str, Rewrite); 3] = [
        ("same slot", |c| c.insert(1, 3)),
        ("another slot", |c| {
            c.remove(&1);
            c.insert(2, 2); // takes the slot key 1 left
            c.insert(1, 3);
        }),
        ("after invalidate_all", |c| {
            c.invalidate_all();
            c.insert(1, 3);
        }),
    ];
    for (what, rewrite) in cases {
        let clock = Arc::new(ManualClock::new());
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(10)
            .shards(1)
            .clock(clock.clone())
            .refresh_after_write(Duration::from_secs(1), |_| async { Some(999) })
            .build()
            .unwrap();
        cache.insert(1, 1);
        clock.advance(Duration::from_secs(2));
        assert_eq!(cache.get(&1), Some(1), "{what}: starts the reload");
        rewrite(&cache);
        // The reload counts as a load before it writes, in the same poll: once it is
        // counted, it is over.
        for _ in 0..1000 {
            if cache.stats().loads_ok == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(cache.stats().loads_ok, 1, "{what}: the reload ran");
        assert_eq!(cache.peek(&1), Some(3), "{what}: the newer write wins");
    }
}

/// A refresh spawned on a runtime that shuts down before it runs the task must not leave
/// the key marked as refreshing forever: a later stale read starts a new refresh.
#[test]
fn a_refresh_dropped_before_it_ran_does_not_wedge_the_key() {
    let clock = Arc::new(ManualClock::new());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .clock(clock.clone())
        .refresh_after_write(Duration::from_secs(1), |k| async move { Some(k + 100) })
        .build()
        .unwrap();
    cache.insert(1, 1);
    clock.advance(Duration::from_secs(2));
    // The read spawns the reload on this single-threaded runtime, which never gets to run
    // it: `block_on` returns first, and dropping the runtime drops the task unpolled.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async { assert_eq!(cache.get(&1), Some(1)) });
    drop(runtime);
    assert_eq!(cache.stats().refreshes, 1);
    // Without a runtime, the next stale read reloads on a thread of its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cache.get(&1) != Some(101) {
        assert!(std::time::Instant::now() < deadline, "the key is never refreshed again");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(cache.stats().refreshes, 2);
}

/// A refresh replaces the value, not the entry's lifetime: a value written with a TTL of
/// its own keeps that TTL when refreshed, counted from the refresh's write, with or without
/// a (longer) cache-wide TTL, as Caffeine's and moka's per-entry expiry re-apply the
/// entry's policy on update.
///
/// The runtime is single-threaded, so the reload runs only when the test yields; `peek`
/// checks expiry without starting another refresh.
#[tokio::test(flavor = "current_thread")]
async fn a_refreshed_value_keeps_the_ttl_it_was_written_with() {
    let s = Duration::from_secs(1);
    for cache_wide in [None, Some(60 * s)] {
        let clock = Arc::new(ManualClock::new());
        let mut builder = Cache::builder()
            .max_capacity(10)
            .clock(clock.clone())
            .refresh_after_write(s, |k: u32| async move { Some(k + 100) });
        if let Some(ttl) = cache_wide {
            builder = builder.time_to_live(ttl);
        }
        let cache: Cache<u32, u32> = builder.build().unwrap();
        cache.insert_with_ttl(1, 1, 10 * s);
        clock.advance(2 * s);
        assert_eq!(cache.get(&1), Some(1), "{cache_wide:?}: starts the reload");
        for _ in 0..1000 {
            if cache.stats().loads_ok == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(cache.peek(&1), Some(101), "{cache_wide:?}: the reload landed");
        // Written again at 2 s, it lives until 12 s.
        clock.advance(10 * s - Duration::from_nanos(1));
        assert_eq!(cache.peek(&1), Some(101), "{cache_wide:?}: alive until its TTL ends");
        clock.advance(Duration::from_nanos(1));
        assert_eq!(cache.peek(&1), None, "{cache_wide:?}: expired 10 s after the refresh");
        clock.advance(3600 * s);
        assert_eq!(cache.peek(&1), None, "{cache_wide:?}: still gone an hour later");
    }
}

/// `get_all_with` waits for the loads other callers have in flight for its keys before it
/// calls its loader, so that a key whose other load ends without a value (its caller was
/// cancelled, or its batch loader skipped the key) goes to this call's one loader call
/// instead of missing from the result.
///
/// The runtime is single-threaded: each caller runs only when the test yields.
#[tokio::test(flavor = "current_thread")]
async fn a_batch_load_includes_keys_whose_other_load_ended_without_a_value() {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tokio::sync::Notify;
    for cancelled in [true, false] {
        let case = if cancelled { "cancelled get_with" } else { "batch that skipped the key" };
        let cache: Cache<u32, u32> = Cache::builder().max_capacity(100).build().unwrap();
        let (started, finish) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        // The other caller leads key 1 and, when told, ends without a value for it.
        let other = {
            let (cache, started, finish) = (cache.clone(), started.clone(), finish.clone());
            tokio::spawn(async move {
                if cancelled {
                    let load = async {
                        started.notify_one();
                        std::future::pending::<u32>().await
                    };
                    cache.get_with(1, load).await;
                } else {
                    let got = cache
                        .get_all_with([1], |_| async move {
                            started.notify_one();
                            finish.notified().await;
                            Vec::new()
                        })
                        .await;
                    assert!(got.is_empty());
                }
            })
        };
        started.notified().await;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let ours = {
            let (cache, asked) = (cache.clone(), Arc::clone(&asked));
            tokio::spawn(async move {
                cache
                    .get_all_with([1, 2], |keys: Vec<u32>| {
                        asked.lock().unwrap().push(keys.clone());
                        async move { keys.into_iter().map(|k| (k, k * 10)).collect() }
                    })
                    .await
            })
        };
        // Let our caller get as far as it can while the other load is in flight.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        if cancelled {
            other.abort();
        } else {
            finish.notify_one();
        }
        let got =
            tokio::time::timeout(Duration::from_secs(5), ours).await.expect("no wedge").unwrap();
        assert_eq!(got, HashMap::from([(1, 10), (2, 20)]), "{case}: every key loaded");
        assert_eq!(*asked.lock().unwrap(), [vec![1, 2]], "{case}: one loader call, both keys");
        assert_eq!(cache.peek(&1), Some(10), "{case}: the value is cached");
        let _ = other.await;
    }
}

/// Two batches over the same keys in opposite orders, concurrently: a batch never waits
/// for another while it holds keys of its own, so neither waits for the other forever, and
/// each gets every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batch_loads_never_wait_for_each_other_forever() {
    for round in 0..20u32 {
        let cache: Cache<u32, u32> = Cache::builder().max_capacity(100).build().unwrap();
        let batch = |keys: [u32; 3]| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_all_with(keys, |keys: Vec<u32>| async move {
                        tokio::task::yield_now().await;
                        keys.into_iter().map(|k| (k, k + 1)).collect()
                    })
                    .await
            })
        };
        let (a, b) = (batch([1, 2, 3]), batch([3, 2, 1]));
        for t in [a, b] {
            let got =
                tokio::time::timeout(Duration::from_secs(5), t).await.expect("no wedge").unwrap();
            assert_eq!(got.len(), 3, "round {round}: {got:?}");
            assert!(got.iter().all(|(k, v)| *v == k + 1), "round {round}: {got:?}");
        }
    }
}
