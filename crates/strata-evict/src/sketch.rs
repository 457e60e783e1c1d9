//! A count-min sketch of 4-bit counters with periodic aging and an optional doorkeeper: the
//! frequency histogram TinyLFU admits by (Einziger, Friedman and Manes, "TinyLFU: A Highly
//! Efficient Cache Admission Policy", ACM TOS 2017).
//!
//! - Four counters per key, one per row, each 4 bits and saturating at 15; a key's estimate is
//!   the smallest of its four.
//! - After `sample_size` (30 times the expected entry count) recorded events every counter is
//!   halved, so old popularity fades and the sketch follows a changing workload. Caffeine ages
//!   after 10 times; with W-TinyLFU's memory of rejected candidates (which admits returning
//!   keys on recency, so the counters need to carry only the longer-term popularity) 30 closed
//!   1.8 points more of the LRU-to-OPT gap on the shared traces than 10 (three seeds), most on
//!   the short cs trace; 20 closed 0.3 less than 30 and lost 2 points on loop@512, 40 was no
//!   better. Counts read about three times higher than with 10, so W-TinyLFU's admission
//!   lottery starts at 14 rather than 10 (see the `tinylfu` module: at 10 every key of a loop
//!   trace reached it, and its random admissions churned the main region). Without that
//!   memory, 20 and 40 were worse than 10 (docs/benchmarks.md).
//! - The optional doorkeeper is a Bloom filter that absorbs a key's first occurrence in each
//!   sample period, so keys seen once never touch the counters; it is cleared at each aging.
//!
//! Size, for `n` expected entries: without a doorkeeper, 16 counters per entry (8 bytes,
//! Caffeine's sizing); with one, 8 counters (4 bytes) plus 32 doorkeeper bits (4 bytes) per
//! entry, the same 8 bytes. On the shared traces (docs/benchmarks.md) the plain sketch closed
//! about 2.5 points more of the LRU-to-OPT gap than the doorkeeper at equal memory, and a
//! doorkeeper of 1 bit per entry saturated and lost several points on loop and search traces;
//! halving the plain sketch to 4 bytes per entry cost about 3 points. Hence the default.

use crate::rng::mix64;

const RESET_MASK: u64 = 0x7777_7777_7777_7777;
const ONE_MASK: u64 = 0x1111_1111_1111_1111;
/// The largest sketch we size for, in entries; larger caches share counters.
pub(crate) const MAX_ENTRIES: usize = 1 << 26;
/// Recorded events per expected entry between two agings.
const SAMPLE_PER_ENTRY: u64 = 30;

#[derive(Debug)]
pub(crate) struct FrequencySketch {
    /// Exactly as many words as the sizing asks, not rounded up to a power of two (see
    /// `counter`).
    table: Vec<u64>,
    /// Empty when there is no doorkeeper.
    door: Vec<u64>,
    door_mask: u64,
    /// Events recorded in the current sample period.
    additions: u64,
    sample_size: u64,
    /// The entry count the sketch was sized for.
    entries: usize,
    /// The fewest entries the counters (and doorkeeper) are sized for, whatever `entries`.
    floor: usize,
    salt: u64,
}

impl FrequencySketch {
    /// A sketch for about `entries` resident keys, without a floor; `salt` keys the index
    /// functions. (The policies size theirs with [`FrequencySketch::with_floor`].)
    #[cfg(test)]
    pub(crate) fn new(entries: usize, salt: u64, doorkeeper: bool) -> Self {
        FrequencySketch::with_floor(entries, 0, salt, doorkeeper)
    }

    /// A sketch for about `entries` resident keys, with counters (and doorkeeper bits) for at
    /// least `floor` entries; the aging period still follows `entries` (see the `tinylfu`
    /// module for why a small cache wants more counters than its size gives). `salt` keys the
    /// index functions.
    pub(crate) fn with_floor(entries: usize, floor: usize, salt: u64, doorkeeper: bool) -> Self {
        let entries = entries.clamp(16, MAX_ENTRIES);
        let sized = entries.max(floor.min(MAX_ENTRIES));
        let (counters_per_entry, door_bits_per_entry) = if doorkeeper { (8, 32) } else { (16, 0) };
        let words = (sized * counters_per_entry / 16).max(8);
        let door_bits = (sized * door_bits_per_entry).next_power_of_two().max(64);
        FrequencySketch {
            table: vec![0; words],
            door: if doorkeeper { vec![0; door_bits / 64] } else { Vec::new() },
            door_mask: door_bits as u64 - 1,
            additions: 0,
            sample_size: SAMPLE_PER_ENTRY * entries as u64,
            entries,
            floor,
            salt,
        }
    }

    pub(crate) fn has_doorkeeper(&self) -> bool {
        !self.door.is_empty()
    }

    /// The entry count the sketch was sized for.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// Whether the floor gave the sketch more counters than its entry count asks for.
    #[inline]
    pub(crate) fn floored(&self) -> bool {
        self.floor > self.entries
    }

    /// The heap bytes of the counters and the doorkeeper.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.table.len() + self.door.len()) * std::mem::size_of::<u64>()
    }

    /// An empty sketch like this one (same salt, doorkeeper and floor), sized for `entries`.
    pub(crate) fn resized(&self, entries: usize) -> Self {
        FrequencySketch::with_floor(entries, self.floor, self.salt, !self.door.is_empty())
    }

    /// An empty sketch like this one with another floor.
    pub(crate) fn with_other_floor(&self, floor: usize) -> Self {
        FrequencySketch::with_floor(self.entries, floor, self.salt, !self.door.is_empty())
    }

    /// Grows the sketch (forgetting its counts) once the cache holds more than twice what it
    /// was sized for; weighted caches do not know their entry count in advance. (Growing at
    /// the first overshoot would wipe the counts of every unweighted cache as it fills.)
    pub(crate) fn ensure_capacity(&mut self, entries: usize) {
        if entries > 2 * self.entries && self.entries < MAX_ENTRIES {
            *self = self.resized(entries.saturating_mul(2));
        }
    }

    /// Two independent 64-bit hashes of a key's tag, keyed by the salt.
    fn hashes(&self, tag: u32) -> (u64, u64) {
        let h1 = mix64(u64::from(tag) ^ self.salt);
        let h2 = mix64(h1 ^ 0x5851_F42D_4C95_7F2D) | 1;
        (h1, h2)
    }

    /// Word index and bit shift of the counter for row `i`. The word is picked by
    /// multiplying a hash by the table's length (Lemire's fast range reduction), so the table
    /// need not be a power of two: rounding up made it 1.0 to 2.0 times the nominal size,
    /// about 2.5 bytes per entry more at the per-shard capacities of a 100,000-entry cache,
    /// and exact sizing cost 0.3 points of the LRU-to-OPT gap on the shared traces (tinylfu
    /// alone, mean of seeds 1 to 3: 54.1% to 53.8%).
    fn counter(&self, h1: u64, h2: u64, i: u64) -> (usize, u32) {
        let g = h1.wrapping_add(i.wrapping_mul(h2));
        let words = self.table.len() as u128;
        (((u128::from(g) * words) >> 64) as usize, ((g & 15) as u32) << 2)
    }

    fn door_bits(&self, h2: u64) -> [u64; 2] {
        [h2 & self.door_mask, (h2 >> 32) & self.door_mask]
    }

    /// Whether the doorkeeper has seen the key this period (always true without one).
    fn in_door(&self, h2: u64) -> bool {
        self.door.is_empty()
            || self
                .door_bits(h2)
                .iter()
                .all(|&b| self.door[(b >> 6) as usize] & (1 << (b & 63)) != 0)
    }

    /// The estimated number of events for `tag` in the recent past (0..=15, or 0..=16 with a
    /// doorkeeper).
    pub(crate) fn frequency(&self, tag: u32) -> u8 {
        let (h1, h2) = self.hashes(tag);
        let mut min = 15u64;
        for i in 0..4 {
            let (w, s) = self.counter(h1, h2, i);
            min = min.min((self.table[w] >> s) & 15);
        }
        let door = !self.door.is_empty() && self.in_door(h2);
        min as u8 + u8::from(door)
    }

    /// Records one event (a read or a write) for `tag`.
    pub(crate) fn increment(&mut self, tag: u32) {
        let (h1, h2) = self.hashes(tag);
        let mut added = false;
        if !self.in_door(h2) {
            for b in self.door_bits(h2) {
                self.door[(b >> 6) as usize] |= 1 << (b & 63);
            }
            added = true;
        } else {
            for i in 0..4 {
                let (w, s) = self.counter(h1, h2, i);
                if (self.table[w] >> s) & 15 < 15 {
                    self.table[w] += 1 << s;
                    added = true;
                }
            }
        }
        // Saturated keys do not advance the period, as in Caffeine: a few very hot keys
        // should not age everyone else's history.
        if added {
            self.additions += 1;
            if self.additions >= self.sample_size {
                self.age();
            }
        }
    }

    /// Halves every counter and clears the doorkeeper.
    fn age(&mut self) {
        let mut odd = 0u64;
        for w in &mut self.table {
            odd += u64::from((*w & ONE_MASK).count_ones());
            *w = (*w >> 1) & RESET_MASK;
        }
        self.door.iter_mut().for_each(|w| *w = 0);
        // Each key's four counters lose their halves; the odd ones lose a rounding unit too.
        self.additions = (self.additions / 2).saturating_sub(odd / 4);
    }

    pub(crate) fn clear(&mut self) {
        self.table.iter_mut().for_each(|w| *w = 0);
        self.door.iter_mut().for_each(|w| *w = 0);
        self.additions = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_grow_saturate_and_age() {
        for door in [false, true] {
            let mut s = FrequencySketch::new(1024, 7, door);
            assert_eq!(s.frequency(42), 0);
            s.increment(42);
            assert_eq!(s.frequency(42), 1);
            for _ in 0..40 {
                s.increment(42);
            }
            let top = 15 + u8::from(door);
            assert_eq!(s.frequency(42), top, "saturates (plus the doorkeeper bit)");
            s.age();
            assert_eq!(s.frequency(42), 7, "halved, and the doorkeeper cleared");
        }
    }

    #[test]
    fn the_doorkeeper_absorbs_first_occurrences() {
        let mut s = FrequencySketch::new(1024, 3, true);
        for k in 0..100 {
            s.increment(k);
        }
        // Every key was seen once: only doorkeeper bits are set, no counter moved.
        assert!(s.table.iter().all(|&w| w == 0));
        assert!((0..100).all(|k| s.frequency(k) == 1));
    }

    #[test]
    fn hot_keys_outrank_cold_ones_under_noise() {
        for door in [false, true] {
            let mut s = FrequencySketch::new(256, 1, door);
            for round in 0..20u32 {
                for k in 0..8 {
                    s.increment(k);
                }
                for k in 0..50 {
                    s.increment(1000 + round * 50 + k);
                }
            }
            let cold_max = (1000..2000).map(|k| s.frequency(k)).max().unwrap_or(0);
            let hot_min = (0..8).map(|k| s.frequency(k)).min().unwrap_or(0);
            assert!(hot_min > cold_max, "door {door}: hot {hot_min} vs cold {cold_max}");
        }
    }
}
