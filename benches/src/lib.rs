//! Shared workloads for the side-by-side benches of Strata against moka and quick_cache.
//!
//! Every contender runs the same pre-generated key stream in the same process, so the
//! ratios printed are comparable even on a noisy machine; absolute figures are not.

pub mod alloc;

use std::sync::Barrier;
use std::time::{Duration, Instant};
use strata_sim::synth::{generate, Pattern, Phase};

/// The capacity every contender gets in the throughput workload.
pub const CAPACITY: u64 = 100_000;
/// The number of distinct keys in the Zipf stream.
pub const KEYS: u64 = 1_000_000;

/// A cache as the benches see it: u64 keys and values.
pub trait Contender: Send + Sync {
    /// The name printed in tables.
    fn name(&self) -> &'static str;
    /// Looks a key up.
    fn get(&self, key: u64) -> Option<u64>;
    /// Inserts or replaces.
    fn insert(&self, key: u64, value: u64);
}

/// Strata's cache with its defaults (TTL support compiled in, statistics on).
pub struct Strata(pub strata_core::Cache<u64, u64>);

impl Strata {
    /// A cache of `capacity` entries with default settings.
    pub fn new(capacity: u64) -> Self {
        match strata_core::Cache::builder().max_capacity(capacity).build() {
            Ok(c) => Strata(c),
            Err(e) => panic!("a valid capacity was refused: {e}"),
        }
    }
}

impl Contender for Strata {
    fn name(&self) -> &'static str {
        "strata"
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
}

/// `moka::sync::Cache` with its defaults.
pub struct Moka(pub moka::sync::Cache<u64, u64>);

impl Contender for Moka {
    fn name(&self) -> &'static str {
        "moka"
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
}

/// `quick_cache::sync::Cache` with its defaults.
pub struct QuickCache(pub quick_cache::sync::Cache<u64, u64>);

impl Contender for QuickCache {
    fn name(&self) -> &'static str {
        "quick_cache"
    }
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
}

/// The three contenders, each with `capacity` entries.
pub fn contenders(capacity: u64) -> Vec<Box<dyn Contender>> {
    vec![
        Box::new(Strata::new(capacity)),
        Box::new(Moka(moka::sync::Cache::new(capacity))),
        Box::new(QuickCache(quick_cache::sync::Cache::new(capacity as usize))),
    ]
}

/// A Zipf(1.0) stream over [`KEYS`] keys; the same seed gives the same stream.
pub fn zipf_stream(len: usize, seed: u64) -> Vec<u64> {
    let phase = Phase {
        pattern: Pattern::Zipf { keys: KEYS, exponent: 1.0 },
        requests: len,
        key_offset: 0,
    };
    generate(&[phase], seed)
}

/// One operation of the mixed workload: 90% get (a miss inserts), 10% insert.
#[inline]
pub fn mixed_op(cache: &dyn Contender, i: usize, key: u64) -> bool {
    // Every tenth operation is a write; the choice is by position, so no RNG runs in the
    // measured loop.
    if i % 10 == 9 {
        cache.insert(key, key);
        false
    } else if cache.get(key).is_some() {
        true
    } else {
        cache.insert(key, key);
        false
    }
}

/// Runs the mixed workload on `threads` threads, each over its own slice of `keys`, and
/// returns the wall time from the moment all threads started to the last one's end, plus
/// the number of hits (so the work cannot be optimized away).
pub fn run_mixed(cache: &dyn Contender, keys: &[u64], threads: usize) -> (Duration, u64) {
    let per = keys.len() / threads;
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let part = &keys[t * per..(t + 1) * per];
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let mut hits = 0u64;
                    for (i, &k) in part.iter().enumerate() {
                        hits += u64::from(mixed_op(cache, i, k));
                    }
                    hits
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        // A worker's panic is the caller's: swallowed, it would leave a round that did
        // little work and took little time, and report an absurd rate.
        let hits = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .sum();
        (start.elapsed(), hits)
    })
}
