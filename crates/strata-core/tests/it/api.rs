use std::sync::{Arc, Mutex};
use strata_core::{Cache, Compute, Error, PolicyConfig, RemovalCause};

type Events = Arc<Mutex<Vec<(u32, u32, RemovalCause)>>>;

fn recording(capacity: u64) -> (Cache<u32, u32>, Events) {
    let events: Events = Arc::default();
    let e = Arc::clone(&events);
    let cache = Cache::builder()
        .max_capacity(capacity)
        .removal_listener(move |k, v, c| e.lock().unwrap().push((k, v, c)))
        .build()
        .unwrap();
    (cache, events)
}

#[test]
fn builder_rejects_nonsense_with_clear_errors() {
    use std::time::Duration;
    type Built = Result<Cache<u32, u32>, Error>;
    let cases: Vec<(&str, Built)> = vec![
        ("nothing", Cache::builder().build()),
        ("zero capacity", Cache::builder().max_capacity(0).build()),
        ("zero ttl", Cache::builder().max_capacity(1).time_to_live(Duration::ZERO).build()),
        ("zero tti", Cache::builder().max_capacity(1).time_to_idle(Duration::ZERO).build()),
        ("both bounds", Cache::builder().max_capacity(1).max_weight(1).weigher(|_, _| 1).build()),
        ("weight w/o weigher", Cache::builder().max_weight(10).build()),
        ("weigher w/o weight", Cache::builder().max_capacity(10).weigher(|_, _| 1).build()),
        ("bad shards", Cache::builder().max_capacity(10).shards(3).build()),
        ("zero shards", Cache::builder().max_capacity(10).shards(0).build()),
        (
            "small queue over 100%",
            Cache::builder()
                .max_capacity(10)
                .eviction_policy(PolicyConfig::S3Fifo { small_percent: 250 })
                .build(),
        ),
        (
            "window over 100%",
            Cache::builder()
                .max_capacity(10)
                .eviction_policy(PolicyConfig::TinyLfu {
                    window_percent: 101,
                    adaptation: strata_evict::Adaptation::Fixed,
                    doorkeeper: false,
                })
                .build(),
        ),
    ];
    for (what, result) in cases {
        let err = result.expect_err(what);
        assert!(!err.to_string().is_empty(), "{what}: {err}");
    }
    assert_eq!(
        Cache::<u32, u32>::builder().max_capacity(0).build().unwrap_err(),
        Error::ZeroCapacity
    );
}

#[test]
fn absurd_capacities_build_and_work() {
    for cap in [1, u64::MAX, u64::MAX / 3] {
        let cache: Cache<u32, u32> = Cache::builder().max_capacity(cap).build().unwrap();
        cache.insert(1, 2);
        assert_eq!(cache.get(&1), Some(2), "capacity {cap}");
    }
}

#[test]
fn basic_operations_agree_with_their_documentation() {
    let (cache, events) = recording(100);
    assert_eq!(cache.get(&1), None);
    cache.insert(1, 10);
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.peek(&1), Some(10));
    assert!(cache.contains_key(&1));
    cache.insert(1, 11);
    assert_eq!(cache.get(&1), Some(11));
    assert_eq!(cache.remove(&1), Some(11));
    assert_eq!(cache.remove(&1), None);
    assert!(!cache.contains_key(&1));
    assert_eq!(
        *events.lock().unwrap(),
        vec![(1, 10, RemovalCause::Replaced), (1, 11, RemovalCause::Explicit)]
    );

    for k in 0..10 {
        cache.insert(k, k);
    }
    assert_eq!(cache.entry_count(), 10);
    assert_eq!(cache.invalidate_if(|k, _| k % 2 == 0), 5);
    let mut keys: Vec<u32> = cache.iter().map(|(k, _)| k).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec![1, 3, 5, 7, 9]);
    cache.invalidate_all();
    assert_eq!(cache.entry_count(), 0);
    assert_eq!(cache.iter().count(), 0);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.inserts, s.updates, s.removals), (2, 1, 11, 1, 11), "{s:?}");
}

#[test]
fn capacity_is_a_hard_bound_for_every_policy_and_listener_sees_size_evictions() {
    for policy in [PolicyConfig::default(), PolicyConfig::Lru] {
        let events: Events = Arc::default();
        let e = Arc::clone(&events);
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(50)
            .eviction_policy(policy.clone())
            .removal_listener(move |k, v, c| e.lock().unwrap().push((k, v, c)))
            .build()
            .unwrap();
        for k in 0..1000 {
            cache.insert(k, k);
            assert!(cache.entry_count() <= 50, "{policy:?}: {} entries", cache.entry_count());
        }
        let evicted =
            events.lock().unwrap().iter().filter(|(_, _, c)| *c == RemovalCause::Size).count();
        assert_eq!(
            evicted as u64 + cache.entry_count(),
            1000,
            "{policy:?}: every key is held or was evicted"
        );
    }
}

#[test]
fn weighted_capacity_and_oversized_entries() {
    let events: Arc<Mutex<Vec<(String, RemovalCause)>>> = Arc::default();
    let e = Arc::clone(&events);
    let cache: Cache<String, Vec<u8>> = Cache::builder()
        .max_weight(1000)
        .shards(1)
        .weigher(|_, v: &Vec<u8>| v.len() as u32)
        .removal_listener(move |k, _, c| e.lock().unwrap().push((k, c)))
        .build()
        .unwrap();
    cache.insert("small".into(), vec![0; 100]);
    cache.insert("huge".into(), vec![0; 5000]);
    assert_eq!(cache.get("huge"), None, "an entry heavier than the cache is not stored");
    assert_eq!(cache.get("small").map(|v| v.len()), Some(100));
    // Replacing a value with an oversized one must not leave the stale value behind.
    cache.insert("small".into(), vec![0; 5000]);
    assert_eq!(cache.get("small"), None);
    for i in 0..50 {
        cache.insert(format!("k{i}"), vec![0; 90]);
        assert!(cache.weighted_size() <= 1000);
    }
    let ev = events.lock().unwrap();
    assert!(ev.contains(&("huge".to_string(), RemovalCause::Size)));
    assert!(ev.iter().filter(|(_, c)| *c == RemovalCause::Size).count() > 30);
}

/// Replacing a value with one too heavy to keep is a write that replaced the old value and
/// an eviction of the new one, as in Caffeine and moka: the user removed nothing. The
/// listener and the statistics agree on it.
#[test]
fn an_oversized_replacement_reports_the_old_value_replaced_and_the_new_one_evicted() {
    use std::time::Duration;
    use strata_core::ManualClock;
    let clock = Arc::new(ManualClock::new());
    let events: Arc<Mutex<Vec<(u32, usize, RemovalCause)>>> = Arc::default();
    let e = Arc::clone(&events);
    let cache: Cache<u32, Vec<u8>> = Cache::builder()
        .max_weight(100)
        .weigher(|_, v: &Vec<u8>| v.len() as u32)
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .removal_listener(move |k, v: Vec<u8>, c| e.lock().unwrap().push((k, v.len(), c)))
        .build()
        .unwrap();
    cache.insert(1, vec![0; 10]);
    cache.insert(1, vec![0; 1000]);
    assert_eq!(cache.get(&1), None);
    // An expired old value is reported as expired, whatever replaces it.
    cache.insert(2, vec![0; 20]);
    clock.advance(Duration::from_secs(11));
    cache.insert(2, vec![0; 2000]);
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            (1, 10, RemovalCause::Replaced),
            (1, 1000, RemovalCause::Size),
            (2, 20, RemovalCause::Expired),
            (2, 2000, RemovalCause::Size),
        ]
    );
    let s = cache.stats();
    assert_eq!(
        (s.inserts, s.updates, s.removals, s.evictions, s.expirations, s.entry_count),
        (2, 1, 0, 2, 1, 0),
        "{s:?}"
    );
}

#[test]
fn set_capacity_shrinks_at_once() {
    let (cache, events) = recording(1000);
    for k in 0..1000 {
        cache.insert(k, k);
    }
    cache.set_capacity(10).unwrap();
    assert!(cache.entry_count() <= 10);
    assert_eq!(cache.capacity(), 10);
    assert!(events.lock().unwrap().len() >= 990);
    assert_eq!(cache.set_capacity(0), Err(Error::ZeroCapacity));
}

/// The capacity is split between the shards; a capacity below their number would give some
/// shards nothing, and every key of such a shard would be refused at once. The builder
/// never makes such shards, and `set_capacity` refuses to.
#[test]
fn set_capacity_never_leaves_a_shard_with_nothing() {
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(1024)
        .shards(16)
        .eviction_policy(PolicyConfig::Lru)
        .build()
        .unwrap();
    assert!(matches!(cache.set_capacity(4), Err(Error::InvalidConfig(_))));
    assert_eq!(cache.capacity(), 1024, "a refused capacity changes nothing");
    cache.set_capacity(16).unwrap();
    // Each shard now holds one entry; under LRU the entry just written is never the victim.
    for k in 0..1000 {
        cache.insert(k, k);
        assert_eq!(cache.get(&k), Some(k), "key {k} was refused right after its write");
    }
    assert!(cache.entry_count() <= 16);
}

/// The removal listener runs outside every lock, so it may call back into the cache (here:
/// `capacity`, `entry_count` and `get`) from whichever operation removed the entry.
#[test]
fn a_removal_listener_may_call_back_into_the_cache_from_every_operation() {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};
    type Op = fn(&Cache<u32, u32>);
    let ops: [(&str, Op); 6] = [
        ("insert", |c| c.insert(1000, 0)),
        ("remove", |c| {
            let _ = c.remove(&3);
        }),
        ("set_capacity", |c| c.set_capacity(4).unwrap()),
        ("invalidate_if", |c| {
            let _ = c.invalidate_if(|k, _| k % 2 == 0);
        }),
        ("invalidate_all", Cache::invalidate_all),
        ("atomically", |c| {
            let _ = c.atomically(&[5], |tx| tx.remove(&5));
        }),
    ];
    for (what, op) in ops {
        let handle: Arc<OnceLock<Cache<u32, u32>>> = Arc::new(OnceLock::new());
        let h = Arc::clone(&handle);
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(8)
            .shards(1)
            .eviction_policy(PolicyConfig::Lru)
            .removal_listener(move |k, _, _| {
                let c = h.get().expect("set before any removal");
                let _ = (c.capacity(), c.entry_count(), c.get(&k));
            })
            .build()
            .unwrap();
        handle.set(cache.clone()).unwrap();
        for k in 0..8 {
            cache.insert(k, k);
        }
        let worker = std::thread::spawn({
            let cache = cache.clone();
            move || op(&cache)
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !worker.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{what}: the listener's call into the cache deadlocked"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        worker.join().unwrap();
    }
}

/// A removal listener that panics loses only its own notification: the operation that
/// removed the entries completes, returns normally, and every other entry it removed still
/// reaches the listener (Caffeine catches and logs a listener's exception the same way).
/// Here the listener panics on every even key, after recording it.
#[test]
fn a_panicking_removal_listener_loses_no_other_notification_and_no_operation_stops() {
    use std::collections::BTreeSet;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    type Op = fn(&Cache<u32, u32>);
    /// The keys the operation must have removed (and reported), looked at after it.
    type Removed = fn(&Cache<u32, u32>) -> BTreeSet<u32>;
    let ops: [(&str, Op, Removed); 6] = [
        ("invalidate_all", Cache::invalidate_all, |_| (0..32).collect()),
        (
            "invalidate_if",
            |c| assert_eq!(c.invalidate_if(|k, _| *k < 16), 16),
            |_| (0..16).collect(),
        ),
        (
            "set_capacity",
            |c| c.set_capacity(8).unwrap(),
            |c| {
                assert!(c.entry_count() <= 8, "set_capacity: over the new capacity");
                (0..32).filter(|k| !c.contains_key(k)).collect()
            },
        ),
        (
            "insert",
            |c| c.insert(0, 100),
            |c| {
                assert_eq!(c.get(&0), Some(100), "insert: the new value is stored");
                BTreeSet::from([0])
            },
        ),
        ("remove", |c| assert_eq!(c.remove(&2), Some(2)), |_| BTreeSet::from([2])),
        (
            "atomically",
            |c| c.atomically(&[0, 1, 2, 3], |tx| (0..4).for_each(|k| drop(tx.remove(&k)))),
            |_| (0..4).collect(),
        ),
    ];
    for (what, op, removed) in ops {
        let events: Arc<Mutex<Vec<u32>>> = Arc::default();
        let e = Arc::clone(&events);
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(64)
            .shards(4)
            .eviction_policy(PolicyConfig::Lru)
            .removal_listener(move |k, _, _| {
                e.lock().unwrap().push(k);
                assert!(k % 2 == 1, "listener bug on key {k}");
            })
            .build()
            .unwrap();
        for k in 0..32 {
            cache.insert(k, k);
        }
        let returned = catch_unwind(AssertUnwindSafe(|| op(&cache)));
        assert!(returned.is_ok(), "{what}: the listener's panic escaped the operation");
        let expected = removed(&cache);
        assert!(!expected.is_empty(), "{what}: removed nothing");
        for k in &expected {
            assert!(!cache.contains_key(k) || what == "insert", "{what}: {k} left behind");
        }
        let mut seen = events.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, expected.into_iter().collect::<Vec<_>>(), "{what}: notifications");
    }
}

#[test]
fn entry_api_is_atomic_per_key() {
    let cache: Cache<u32, u64> = Cache::builder().max_capacity(100).build().unwrap();
    let calls = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..1000 {
                    cache.entry(1).and_compute(|v| Compute::Put(v.copied().unwrap_or(0) + 1));
                    cache.entry(2).or_insert_with(|| {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        7
                    });
                }
            });
        }
    });
    assert_eq!(cache.get(&1), Some(2000), "no lost update");
    assert_eq!(calls.into_inner(), 1, "or_insert_with ran once");
    assert_eq!(cache.entry(1).and_compute(|_| Compute::Remove), None);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.entry(2).and_compute(|_| Compute::Keep), Some(7));
}

#[test]
fn borrowed_lookups_work_with_string_keys() {
    let cache: Cache<String, u32> = Cache::builder().max_capacity(10).build().unwrap();
    cache.insert("a".to_string(), 1);
    assert_eq!(cache.get("a"), Some(1));
    assert!(cache.contains_key("a"));
    assert_eq!(cache.remove("a"), Some(1));
}

#[test]
fn stats_can_be_turned_off() {
    let cache: Cache<u32, u32> =
        Cache::builder().max_capacity(10).record_stats(false).build().unwrap();
    cache.insert(1, 1);
    cache.get(&1);
    cache.get(&2);
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.inserts), (0, 0, 0));
    assert_eq!(s.entry_count, 1);
}

#[test]
fn and_compute_with_returns_the_closures_result_and_applies_its_decision() {
    let (cache, events) = recording(100);
    cache.insert(1, 10);
    // A blind write never looks; a failed side effect keeps the entry as it was.
    let r: Result<u32, &str> =
        cache.entry(1).and_compute_with(|_| (Compute::Keep, Err("log refused the record")));
    assert_eq!(r, Err("log refused the record"));
    assert_eq!(cache.get(&1), Some(10));
    let seen = cache.entry(1).and_compute_with(|e| (Compute::Put(11), e.value().copied()));
    assert_eq!((seen, cache.get(&1)), (Some(10), Some(11)));
    assert_eq!(cache.entry(2).and_compute_with(|e| (Compute::Put(20), e.value().copied())), None);
    assert_eq!(cache.get(&2), Some(20));
    // A removal is reported to the listener, after the lock is released.
    cache.entry(1).and_compute_with(|_| (Compute::Remove, ()));
    assert_eq!(cache.get(&1), None);
    assert_eq!(
        events.lock().unwrap().as_slice(),
        &[(1, 10, RemovalCause::Replaced), (1, 11, RemovalCause::Explicit)]
    );
    // Concurrent read-modify-writes through it lose no update, and each closure runs once.
    let calls = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..1000 {
                    cache.entry(3).and_compute_with(|e| {
                        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        (Compute::Put(e.value().copied().unwrap_or(0) + 1), ())
                    });
                }
            });
        }
    });
    assert_eq!((cache.get(&3), calls.into_inner()), (Some(2000), 2000), "no lost update");
}
