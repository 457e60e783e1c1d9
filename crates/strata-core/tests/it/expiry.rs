use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_core::{Cache, Compute, Expiry, ManualClock, RemovalCause};

const S: Duration = Duration::from_secs(1);

type Events = Arc<Mutex<Vec<(u32, RemovalCause)>>>;

fn clocked(b: strata_core::CacheBuilder<u32, u32>) -> (Cache<u32, u32>, Arc<ManualClock>, Events) {
    let clock = Arc::new(ManualClock::new());
    let events: Events = Arc::default();
    let e = Arc::clone(&events);
    let cache = b
        .clock(clock.clone())
        .removal_listener(move |k, _, c| e.lock().unwrap().push((k, c)))
        .build()
        .unwrap();
    (cache, clock, events)
}

#[test]
fn time_to_live_is_exact_at_the_boundary() {
    let (cache, clock, _) = clocked(Cache::builder().max_capacity(10).time_to_live(10 * S));
    cache.insert(1, 1);
    clock.advance(10 * S - Duration::from_nanos(1));
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(Duration::from_nanos(1));
    assert_eq!(cache.get(&1), None);
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.peek(&1), None);
}

#[test]
fn writes_reset_the_time_to_live() {
    let (cache, clock, events) = clocked(Cache::builder().max_capacity(10).time_to_live(10 * S));
    cache.insert(1, 1);
    clock.advance(8 * S);
    cache.insert(1, 2);
    clock.advance(8 * S);
    assert_eq!(cache.get(&1), Some(2));
    assert_eq!(events.lock().unwrap().as_slice(), &[(1, RemovalCause::Replaced)]);
}

#[test]
fn time_to_idle_extends_on_read_but_never_past_time_to_live() {
    let (cache, clock, _) =
        clocked(Cache::builder().max_capacity(10).time_to_idle(3 * S).time_to_live(10 * S));
    cache.insert(1, 1);
    for _ in 0..4 {
        clock.advance(2 * S);
        assert_eq!(cache.get(&1), Some(1), "read within the idle time keeps it");
    }
    clock.advance(2 * S); // 10 s since the write: the time to live wins
    assert_eq!(cache.get(&1), None);
    cache.insert(2, 2);
    clock.advance(3 * S);
    assert_eq!(cache.get(&2), None, "idle for the full time");
}

#[test]
fn expired_entries_are_reclaimed_without_reads_and_reported() {
    let (cache, clock, events) = clocked(Cache::builder().max_capacity(1000).time_to_live(5 * S));
    for k in 0..500 {
        cache.insert(k, k);
    }
    clock.advance(6 * S);
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 0);
    let ev = events.lock().unwrap();
    assert_eq!(ev.len(), 500);
    assert!(ev.iter().all(|(_, c)| *c == RemovalCause::Expired));
    assert_eq!(cache.stats().expirations, 500);
}

#[test]
fn writes_reclaim_expired_entries_a_bounded_number_at_a_time() {
    let (cache, clock, events) =
        clocked(Cache::builder().max_capacity(10_000).shards(1).time_to_live(S));
    for k in 0..1000 {
        cache.insert(k, k);
    }
    clock.advance(2 * S);
    cache.insert(5000, 0);
    let first = events.lock().unwrap().len();
    assert!(first > 0 && first < 1000, "one write reclaims some but not all: {first}");
    for k in 5001..5020 {
        cache.insert(k, 0);
    }
    assert_eq!(events.lock().unwrap().len(), 1000, "later writes finish the job");
}

#[test]
fn per_entry_ttl_overrides_the_cache_ttl() {
    let (cache, clock, _) = clocked(Cache::builder().max_capacity(10).time_to_live(100 * S));
    cache.insert_with_ttl(1, 1, 2 * S);
    cache.insert(2, 2);
    clock.advance(3 * S);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(2));
    cache.insert_with_ttl(2, 3, Duration::ZERO);
    assert_eq!(cache.get(&2), None, "a zero TTL stores nothing and drops the old value");
}

#[test]
fn per_entry_ttl_works_on_a_cache_without_time_settings() {
    let (cache, clock, _) = clocked(Cache::builder().max_capacity(10));
    cache.insert(1, 1);
    cache.insert_with_ttl(2, 2, S);
    clock.advance(2 * S);
    assert_eq!(cache.get(&1), Some(1));
    assert_eq!(cache.get(&2), None);
}

struct ByValue;
impl Expiry<u32, u32> for ByValue {
    fn expire_after_create(&self, _: &u32, v: &u32, _: Instant) -> Option<Duration> {
        (*v > 0).then(|| *v * S)
    }
    fn expire_after_read(
        &self,
        _: &u32,
        v: &u32,
        _: Instant,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        if *v == 7 {
            Some(S)
        } else {
            remaining
        }
    }
    fn expire_after_update(
        &self,
        _: &u32,
        v: &u32,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(*v * S)
    }
}

#[test]
fn expiry_is_consulted_on_create_read_and_update() {
    let (cache, clock, _) = clocked(Cache::builder().max_capacity(10).expire_after(ByValue));
    cache.insert(1, 2); // lives 2 s
    cache.insert(2, 0); // no deadline
    cache.insert(3, 7); // 7 s, but 1 s after any read
    clock.advance(S);
    assert_eq!(cache.get(&3), Some(7));
    clock.advance(Duration::from_millis(1500));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(0));
    assert_eq!(cache.get(&3), None, "the read shortened its life to 1 s");
    cache.insert(2, 1); // update: now 1 s
    clock.advance(2 * S);
    assert_eq!(cache.get(&2), None);
}

#[test]
fn expiry_and_idle_time_cannot_be_combined() {
    let r: Result<Cache<u32, u32>, _> =
        Cache::builder().max_capacity(1).expire_after(ByValue).time_to_idle(S).build();
    assert!(r.is_err());
}

#[test]
fn and_compute_with_sets_a_ttl_of_its_own_and_never_shows_an_expired_value() {
    let (cache, clock, events) = clocked(Cache::builder().max_capacity(10));
    cache.entry(1).and_compute_with(|_| (Compute::PutWithTtl(1, 10 * S), ()));
    clock.advance(9 * S);
    assert_eq!(cache.entry(1).and_compute_with(|e| (Compute::Keep, e.value().copied())), Some(1));
    clock.advance(S);
    assert_eq!(cache.entry(1).and_compute_with(|e| (Compute::Keep, e.value().copied())), None);
    assert_eq!(cache.get(&1), None);
    // A zero TTL stores nothing and drops the old value, as `insert_with_ttl` does.
    cache.insert(2, 2);
    let after = cache.entry(2).and_compute(|_| Compute::PutWithTtl(3, Duration::ZERO));
    assert_eq!((after, cache.get(&2)), (None, None));
    assert!(events.lock().unwrap().contains(&(2, RemovalCause::Explicit)));
}

/// A manual clock moved to the end of its range (`advance(Duration::MAX)` saturates) expires
/// every entry with a deadline, and none without one.
#[test]
fn the_end_of_time_expires_only_entries_with_a_deadline() {
    let (cache, clock, events) = clocked(Cache::builder().max_capacity(10));
    cache.insert(1, 1);
    cache.insert_with_ttl(2, 2, S);
    cache.insert_with_ttl(3, 3, Duration::MAX);
    clock.advance(Duration::MAX);
    assert_eq!((cache.get(&1), cache.get(&2), cache.get(&3)), (Some(1), None, None));
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 1);
    let mut seen = events.lock().unwrap().clone();
    seen.sort_unstable_by_key(|(k, _)| *k);
    assert_eq!(seen, vec![(2, RemovalCause::Expired), (3, RemovalCause::Expired)]);
}
