//! Replaying a trace: for each key a `get`; on a miss an `insert` (mokabench's and Caffeine's
//! simulator's semantics). Hit ratio = hits / requests.

use std::collections::HashMap;
use strata_evict::{mix64, Policy, PolicyConfig, Slot};

/// Hits and requests of one replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests whose key was resident.
    pub hits: u64,
    /// All requests.
    pub requests: u64,
}

impl Stats {
    /// Hits over requests, or zero when there were none.
    pub fn hit_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        }
    }

    /// The hit ratio in percent.
    pub fn percent(&self) -> f64 {
        100.0 * self.hit_ratio()
    }
}

/// The hash a simulated owner gives a key: the owner's keyed hash is out of reach here, so a
/// fixed bijective mixer stands in; policies salt it with their own seed.
pub fn key_hash(key: u64) -> u64 {
    mix64(key ^ 0x2545_F491_4F6C_DD1D)
}

/// A minimal single-threaded owner around a [`Policy`]: the map from keys to slots, the free
/// list, and the eviction loop, exactly as the contract in strata-evict describes them.
#[derive(Debug)]
pub struct PolicyCache {
    policy: Box<dyn Policy>,
    slots: HashMap<u64, Slot>,
    keys: Vec<u64>,
    free: Vec<Slot>,
}

impl PolicyCache {
    /// A cache of `capacity` entries (unit weights) governed by `config`.
    pub fn new(config: &PolicyConfig, capacity: u64, seed: u64) -> Self {
        PolicyCache {
            policy: config.build(capacity, seed),
            slots: HashMap::new(),
            keys: Vec::new(),
            free: Vec::new(),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &'static str {
        self.policy.name()
    }

    /// Looks `key` up, telling the policy about a hit. Returns whether it was resident.
    pub fn get(&mut self, key: u64) -> bool {
        match self.slots.get(&key) {
            Some(&slot) => {
                self.policy.on_access(slot, key_hash(key));
                true
            }
            None => false,
        }
    }

    /// Inserts `key` (which must not be resident) with `weight`, then evicts until the policy
    /// is within its capacity. Returns the evicted keys' count.
    pub fn insert(&mut self, key: u64, weight: u32) -> usize {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.keys.push(0);
            (self.keys.len() - 1) as Slot
        });
        self.keys[slot as usize] = key;
        self.slots.insert(key, slot);
        self.policy.on_insert(slot, key_hash(key), weight);
        let mut evicted = 0;
        while self.policy.weighted_size() > self.policy.capacity() {
            let Some(victim) = self.policy.evict() else { break };
            self.slots.remove(&self.keys[victim as usize]);
            self.free.push(victim);
            evicted += 1;
        }
        evicted
    }

    /// The number of resident keys.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no key is resident.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Replays `trace` through a policy with `capacity` unit-weight entries.
pub fn replay_policy(config: &PolicyConfig, trace: &[u64], capacity: u64, seed: u64) -> Stats {
    let mut cache = PolicyCache::new(config, capacity, seed);
    replay_with(trace, |key| {
        let hit = cache.get(key);
        if !hit {
            cache.insert(key, 1);
        }
        hit
    })
}

/// Replays `trace` through any cache: `access(key)` must do the get (and the insert on a
/// miss) and say whether the get hit.
pub fn replay_with(trace: &[u64], mut access: impl FnMut(u64) -> bool) -> Stats {
    let mut stats = Stats::default();
    for &key in trace {
        stats.requests += 1;
        stats.hits += u64::from(access(key));
    }
    stats
}
