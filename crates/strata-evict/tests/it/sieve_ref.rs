//! SIEVE against a direct transcription of the paper's algorithm (evict before insert, a
//! hand moving from the oldest entry towards the newest), on random traces.

use proptest::prelude::*;
use std::collections::HashMap;
use strata_evict::{mix64, PolicyConfig, Slot};

/// The paper's SIEVE over a Vec ordered oldest first; returns the hits.
fn reference(trace: &[u64], capacity: usize) -> u64 {
    let mut queue: Vec<(u64, bool)> = Vec::new();
    let mut hand: Option<usize> = None;
    let mut hits = 0;
    for &key in trace {
        if let Some(e) = queue.iter_mut().find(|e| e.0 == key) {
            e.1 = true;
            hits += 1;
            continue;
        }
        if capacity == 0 {
            continue;
        }
        if queue.len() >= capacity {
            let mut i = hand.unwrap_or(0);
            while queue[i].1 {
                queue[i].1 = false;
                i = if i + 1 < queue.len() { i + 1 } else { 0 };
            }
            queue.remove(i);
            // The hand now points at the entry after the victim, which slid into index i.
            hand = (i < queue.len()).then_some(i);
        }
        queue.push((key, false));
    }
    hits
}

/// The policy behind the owner loop the `Policy` contract describes.
fn policy_hits(trace: &[u64], capacity: u64) -> u64 {
    let mut p = PolicyConfig::Sieve.build(capacity, 0);
    let mut slots: HashMap<u64, Slot> = HashMap::new();
    let mut keys: Vec<u64> = Vec::new();
    let mut free: Vec<Slot> = Vec::new();
    let mut hits = 0;
    for &key in trace {
        if let Some(&s) = slots.get(&key) {
            p.on_access(s, mix64(key));
            hits += 1;
            continue;
        }
        let s = free.pop().unwrap_or_else(|| {
            keys.push(0);
            (keys.len() - 1) as Slot
        });
        keys[s as usize] = key;
        slots.insert(key, s);
        p.on_insert(s, mix64(key), 1);
        while p.weighted_size() > p.capacity() {
            let v = p.evict().expect("over capacity");
            slots.remove(&keys[v as usize]);
            free.push(v);
        }
    }
    hits
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn sieve_matches_the_paper(trace in proptest::collection::vec(0u64..12, 0..200), capacity in 0u64..8) {
        prop_assert_eq!(policy_hits(&trace, capacity), reference(&trace, capacity as usize));
    }
}
