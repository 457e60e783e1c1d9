//! Random operation sequences against a reference model, with a manual clock.

use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_core::{Cache, ManualClock};

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u16),
    InsertTtl(u8, u16, u8),
    Get(u8),
    Peek(u8),
    Contains(u8),
    Remove(u8),
    Advance(u8),
    InvalidateIf(u8),
    InvalidateAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..32, any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
        1 => (0u8..32, any::<u16>(), 1u8..20).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        4 => (0u8..32).prop_map(Op::Get),
        1 => (0u8..32).prop_map(Op::Peek),
        1 => (0u8..32).prop_map(Op::Contains),
        2 => (0u8..32).prop_map(Op::Remove),
        2 => (0u8..8).prop_map(Op::Advance),
        1 => (1u8..5).prop_map(Op::InvalidateIf),
        1 => Just(Op::InvalidateAll),
    ]
}

/// The model: key -> (value, hard deadline, idle deadline), times in seconds.
#[derive(Default)]
struct Model {
    now: u64,
    map: HashMap<u8, (u16, u64, u64)>,
}

impl Model {
    fn live(&self, k: u8) -> Option<u16> {
        self.map.get(&k).filter(|(_, hard, idle)| self.now < *hard.min(idle)).map(|e| e.0)
    }
}

const TTL: u64 = 10;
const TTI: u64 = 4;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// With room for every key, every observable result agrees with the model, expiry
    /// (time to live, time to idle, per-entry TTL) included.
    #[test]
    fn agrees_with_the_reference_model(ops in proptest::collection::vec(op(), 1..200), tti in any::<bool>()) {
        let clock = Arc::new(ManualClock::new());
        let mut b = Cache::builder().max_capacity(64).time_to_live(Duration::from_secs(TTL)).clock(clock.clone());
        if tti {
            b = b.time_to_idle(Duration::from_secs(TTI));
        }
        let cache: Cache<u8, u16> = b.build().unwrap();
        let idle = if tti { TTI } else { u64::MAX / 2 };
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    cache.insert(k, v);
                    m.map.insert(k, (v, m.now + TTL, m.now + idle));
                }
                Op::InsertTtl(k, v, t) => {
                    cache.insert_with_ttl(k, v, Duration::from_secs(t.into()));
                    m.map.insert(k, (v, m.now + u64::from(t), m.now + idle));
                }
                Op::Get(k) => {
                    let want = m.live(k);
                    prop_assert_eq!(cache.get(&k), want, "get {}", k);
                    if want.is_some() {
                        let now = m.now;
                        let e = m.map.get_mut(&k).unwrap();
                        e.2 = now + idle;
                    }
                }
                Op::Peek(k) => prop_assert_eq!(cache.peek(&k), m.live(k)),
                Op::Contains(k) => prop_assert_eq!(cache.contains_key(&k), m.live(k).is_some()),
                Op::Remove(k) => {
                    let want = m.live(k);
                    m.map.remove(&k);
                    prop_assert_eq!(cache.remove(&k), want);
                }
                Op::Advance(s) => {
                    clock.advance(Duration::from_secs(s.into()));
                    m.now += u64::from(s);
                }
                Op::InvalidateIf(d) => {
                    let live: Vec<u8> = m.map.keys().copied().filter(|k| m.live(*k).is_some()).collect();
                    let want = live.iter().filter(|k| *k % d == 0).count() as u64;
                    prop_assert_eq!(cache.invalidate_if(|k, _| k % d == 0), want);
                    m.map.retain(|k, _| k % d != 0);
                }
                Op::InvalidateAll => {
                    cache.invalidate_all();
                    m.map.clear();
                }
            }
            let mut seen: Vec<(u8, u16)> = cache.iter().collect();
            seen.sort_unstable();
            let mut want: Vec<(u8, u16)> = m.map.keys().filter_map(|k| m.live(*k).map(|v| (*k, v))).collect();
            want.sort_unstable();
            prop_assert_eq!(seen, want);
        }
        cache.run_pending_tasks();
        let live = m.map.keys().filter(|k| m.live(**k).is_some()).count() as u64;
        prop_assert_eq!(cache.entry_count(), live, "expired entries are all reclaimed");
    }

    /// With a small capacity the cache may evict, but it never returns a value that was not
    /// the last one written for the key, and never holds more than its capacity.
    #[test]
    fn under_eviction_reads_are_never_stale(ops in proptest::collection::vec(op(), 1..300)) {
        let cache: Cache<u8, u16> = Cache::builder().max_capacity(8).build().unwrap();
        let mut last: HashMap<u8, u16> = HashMap::new();
        for op in ops {
            match op {
                Op::Insert(k, v) | Op::InsertTtl(k, v, _) => {
                    cache.insert(k, v);
                    last.insert(k, v);
                }
                Op::Get(k) | Op::Peek(k) => {
                    if let Some(v) = cache.get(&k) {
                        prop_assert_eq!(Some(&v), last.get(&k));
                    }
                }
                Op::Remove(k) => {
                    cache.remove(&k);
                    last.remove(&k);
                }
                Op::InvalidateAll => {
                    cache.invalidate_all();
                    last.clear();
                }
                _ => {}
            }
            prop_assert!(cache.entry_count() <= 8);
        }
    }
}
