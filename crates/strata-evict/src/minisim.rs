//! Miniature simulations that size W-TinyLFU's window (after Waldspurger et al., "Cache
//! Modeling and Optimization using Miniature Simulations", USENIX ATC'17, and the mini-sim
//! climber of Caffeine's simulator).
//!
//! A few small static W-TinyLFU caches, each with a different window share, replay the same
//! spatially sampled subset of the requests (a key is sampled when a keyed hash of it falls
//! in the lowest 1/rate of the hash range, so a sampled key is always sampled). Every period the
//! policy adopts the window share of the mini whose decayed hit count is highest, if it beats
//! the current share's mini by more than the noise (see [`SWITCH_MARGIN_SIGMAS`]); the minis
//! share one seed, so that they differ by their window alone. Unlike a hill climber, which
//! compares one period with the previous and so mistakes a drift of the workload for the
//! effect of its last step, the minis see the same requests at the same time.
//!
//! Cost: each mini holds at most [`MINI_ENTRIES`] entries at about 34 bytes each (node,
//! sketch share, map entry, key tag, and each mini's memory of rejected candidates), so the
//! four cost at most about 70 KiB per policy
//! instance, whatever the cache's size (a sharded owner runs them in one instance only, see
//! [`crate::PolicyConfig::build_follower`]); a sampled request costs four small cache operations,
//! and at most one request in `rate` is sampled, from the first request on (the minis warm up
//! while the cache fills). The minis count entries, not weights: for a weighted cache they are
//! built when the cache first fills and model the entry count seen then.

use crate::ghost::FingerprintHasher;
use crate::rng::mix64;
use crate::tinylfu::{TinyLfu, SKETCH_FLOOR_ENTRIES};
use crate::{Adaptation, Policy, Slot};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// The window shares the minis try, smallest first (ties go to the smaller window).
const FRACTIONS: [f64; 4] = [0.01, 0.1, 0.3, 0.7];
/// The most entries one mini holds; larger caches are modelled by sampling.
pub(crate) const MINI_ENTRIES: usize = 512;
/// A period lasts this many sampled requests per mini entry.
const PERIOD_PER_ENTRY: u64 = 8;
/// Each period, earlier hit counts are multiplied by this before the new ones are added.
/// 0.8 (a memory of about five periods) closed a little more of the LRU-to-OPT gap than 0.5
/// once W-TinyLFU remembered its rejected candidates (53.4% against 53.1%, three seeds).
const DECAY: f64 = 0.8;
/// The policy keeps its current window unless the best mini's decayed hit count beats the
/// current window's mini by more than this many standard deviations of the difference
/// (taking hit counts as Poisson, the deviation of `a - b` is about `sqrt(a + b)`). Without
/// it a period's noise flips the window between minis that differ by a few hits, and every
/// flip moves entries between regions (tinylfu alone, mean of seeds 1 to 6: 54.5% of the
/// LRU-to-OPT gap closed without, 54.7% at 1, 54.7% at 0.5, 54.3% at 2).
const SWITCH_MARGIN_SIGMAS: f64 = 1.0;

/// One miniature cache and the map its owner would keep.
#[derive(Debug)]
struct Mini {
    policy: TinyLfu,
    slots: HashMap<u32, Slot, BuildHasherDefault<FingerprintHasher>>,
    tags: Vec<u32>,
    free: Vec<Slot>,
    hits: u64,
}

impl Mini {
    /// The replay step: a get, and an insert on a miss.
    fn access(&mut self, tag: u32) {
        if let Some(&slot) = self.slots.get(&tag) {
            self.policy.on_access(slot, u64::from(tag));
            self.hits += 1;
            return;
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.tags.push(0);
            (self.tags.len() - 1) as Slot
        });
        self.tags[slot as usize] = tag;
        self.slots.insert(tag, slot);
        self.policy.on_insert(slot, u64::from(tag), 1);
        // Each eviction removes one resident entry, so this ends.
        while self.policy.weighted_size() > self.policy.capacity() {
            let Some(victim) = self.policy.evict() else { break };
            self.slots.remove(&self.tags[victim as usize]);
            self.free.push(victim);
        }
    }
}

/// The minis and their scores.
#[derive(Debug)]
pub(crate) struct MiniSim {
    minis: Vec<Mini>,
    scores: [f64; FRACTIONS.len()],
    /// Hashes at or below this are sampled: `u64::MAX / rate`.
    threshold: u64,
    salt: u64,
    seen: u64,
    period: u64,
    /// The index of the window share last adopted (the policy starts at the first).
    current: usize,
}

impl MiniSim {
    /// Minis for a cache holding about `entries` entries.
    pub(crate) fn new(entries: usize, seed: u64) -> Self {
        let entries = entries.max(1);
        let rate = entries.div_ceil(MINI_ENTRIES).max(1);
        let mini_entries = (entries / rate).max(8) as u64;
        // Every mini gets the same seed, so their sketches collide on the same keys and their
        // tags are salted alike: their hit counts then differ by the window share alone
        // (common random numbers). With a seed of their own each, a mini could win on a lucky
        // salt, most on small caches where the sketch is crowded (cs@100: 4.1% hit ratio
        // against 4.5%, seeds 1 to 6; 54.2% of the gap closed on average against 54.5%).
        let minis = FRACTIONS
            .iter()
            .map(|&share| {
                let mut policy = TinyLfu::new(
                    mini_entries,
                    (share * 100.0) as u8,
                    Adaptation::Fixed,
                    false,
                    mix64(seed),
                );
                // A mini models the cache at a `rate`th of its keys, its sketch included.
                policy.set_sketch_floor(SKETCH_FLOOR_ENTRIES / rate);
                Mini {
                    policy,
                    slots: HashMap::default(),
                    tags: Vec::new(),
                    free: Vec::new(),
                    hits: 0,
                }
            })
            .collect();
        MiniSim {
            minis,
            scores: [0.0; FRACTIONS.len()],
            threshold: u64::MAX / rate as u64,
            salt: mix64(seed ^ 0x3C6E_F372_FE94_F82B),
            seen: 0,
            current: 0,
            period: PERIOD_PER_ENTRY * mini_entries,
        }
    }

    /// Feeds one request; at the end of a period returns the window share to adopt.
    pub(crate) fn observe(&mut self, tag: u32) -> Option<f64> {
        // One key in `rate` is sampled; a comparison instead of `% rate` keeps a division
        // (tens of cycles) off every access.
        if mix64(u64::from(tag) ^ self.salt) > self.threshold {
            return None;
        }
        for m in &mut self.minis {
            m.access(tag);
        }
        self.seen += 1;
        if self.seen % self.period != 0 {
            return None;
        }
        for (k, m) in self.minis.iter_mut().enumerate() {
            self.scores[k] = self.scores[k] * DECAY + m.hits as f64;
            m.hits = 0;
        }
        self.current = choose(&self.scores, self.current);
        Some(FRACTIONS[self.current])
    }
}

/// The mini to follow next: the one with the highest score if it beats `current`'s by more
/// than [`SWITCH_MARGIN_SIGMAS`] standard deviations, otherwise `current` (ties go to the
/// smaller window, the lower index).
fn choose(scores: &[f64], current: usize) -> usize {
    let mut best = 0;
    for (k, &score) in scores.iter().enumerate() {
        if score > scores[best] {
            best = k;
        }
    }
    let (b, c) = (scores[best], scores[current]);
    if b - c > SWITCH_MARGIN_SIGMAS * (b + c).sqrt() {
        best
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_moves_only_when_another_mini_wins_clearly() {
        // 1000 against 1040: a difference of 40 is below one deviation (about 64).
        assert_eq!(choose(&[1000.0, 1040.0, 900.0, 800.0], 0), 0);
        // 1000 against 1100: 100 is more than one deviation (about 67).
        assert_eq!(choose(&[1000.0, 1100.0, 900.0, 800.0], 0), 1);
        // From another current share, the best is measured against it, not against the first.
        assert_eq!(choose(&[1100.0, 1000.0, 1060.0, 800.0], 2), 2);
        assert_eq!(choose(&[1100.0, 1000.0, 900.0, 800.0], 2), 0);
        // Ties go to the smaller window.
        assert_eq!(choose(&[0.0, 0.0, 0.0, 0.0], 3), 3);
        assert_eq!(choose(&[50.0, 50.0, 0.0, 0.0], 3), 0);
    }

    /// Keys drawn uniformly from a set four times the cache: every window share hits about a
    /// quarter of the time, so no mini wins clearly and the window must stay where it
    /// started instead of following the noise.
    #[test]
    fn noise_alone_does_not_move_the_window() {
        let mut sim = MiniSim::new(200, 3);
        let mut rng = crate::rng::SplitMix64::new(9);
        let mut decisions = Vec::new();
        for _ in 0..40_000 {
            let key = rng.next_u64() % 800;
            if let Some(share) = sim.observe(mix64(key) as u32) {
                decisions.push(share);
            }
        }
        assert!(decisions.len() >= 20, "{} periods", decisions.len());
        assert!(decisions.iter().all(|&s| s == FRACTIONS[0]), "the window moved: {decisions:?}");
    }

    #[test]
    fn a_recency_workload_picks_a_large_window_and_a_loop_a_small_one() {
        // Recency: each key is read again 20 steps after it first appears and then never.
        // About 40 distinct keys are touched in between, so only a window of 40 or more
        // entries catches the second read; frequency cannot tell the keys apart.
        let mut sim = MiniSim::new(100, 1);
        let mut last = None;
        for k in 0u32..40_000 {
            for key in [k, k.saturating_sub(20)] {
                last = sim.observe(mix64(u64::from(key)) as u32).or(last);
            }
        }
        assert_eq!(last, Some(0.7));
        // A loop slightly larger than the cache: frequency keeps a stable subset, a large
        // window churns.
        let mut sim = MiniSim::new(100, 1);
        let mut last = None;
        for k in 0u32..40_000 {
            last = sim.observe(mix64(u64::from(k % 120)) as u32).or(last);
        }
        assert_eq!(last, Some(0.01));
    }
}
