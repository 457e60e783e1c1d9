//! Belady's OPT against exhaustive search on tiny traces.

use proptest::prelude::*;
use std::collections::BTreeSet;
use strata_evict::{next_uses, opt_hit_ratio, opt_with_next_uses};

/// The most hits any replacement choice achieves (demand paging, or with bypass).
fn brute_force(trace: &[u64], capacity: usize, bypass: bool) -> u64 {
    fn go(trace: &[u64], i: usize, cache: &BTreeSet<u64>, capacity: usize, bypass: bool) -> u64 {
        let Some(&key) = trace.get(i) else { return 0 };
        if cache.contains(&key) {
            return 1 + go(trace, i + 1, cache, capacity, bypass);
        }
        if cache.len() < capacity {
            let mut c = cache.clone();
            c.insert(key);
            return go(trace, i + 1, &c, capacity, bypass);
        }
        let mut best = if bypass { go(trace, i + 1, cache, capacity, bypass) } else { 0 };
        for &victim in cache {
            let mut c = cache.clone();
            c.remove(&victim);
            c.insert(key);
            best = best.max(go(trace, i + 1, &c, capacity, bypass));
        }
        best
    }
    if capacity == 0 {
        return 0;
    }
    go(trace, 0, &BTreeSet::new(), capacity, bypass)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn opt_matches_exhaustive_search(trace in proptest::collection::vec(0u64..5, 0..11), capacity in 0usize..4) {
        let next = next_uses(&trace);
        prop_assert_eq!(opt_hit_ratio(&trace, capacity).hits, brute_force(&trace, capacity, false));
        prop_assert_eq!(opt_with_next_uses(&trace, &next, capacity, true).hits, brute_force(&trace, capacity, true));
    }
}

#[test]
fn a_known_case() {
    // Capacity 2 over 1 2 3 1 2 3: demand paging keeps 1 then 2 (2 hits); no choice does better.
    let trace = [1, 2, 3, 1, 2, 3];
    assert_eq!(opt_hit_ratio(&trace, 2).hits, 2);
    assert_eq!(brute_force(&trace, 2, false), 2);
    assert_eq!(opt_hit_ratio(&trace, 2).requests, 6);
}
