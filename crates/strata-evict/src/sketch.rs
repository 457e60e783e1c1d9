//! A count-min sketch of 4-bit counters with a doorkeeper and periodic aging: the frequency
//! histogram TinyLFU admits by (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient
//! Cache Admission Policy", ACM TOS 2017).
//!
//! - Four counters per key, one per row, each 4 bits and saturating at 15; a key's estimate is
//!   the smallest of its four.
//! - The doorkeeper is a Bloom filter that absorbs a key's first occurrence in each sample
//!   period, so the many keys seen once never touch the counters, which therefore can be few.
//! - After `sample_size` recorded events every counter is halved and the doorkeeper cleared,
//!   so old popularity fades and the sketch follows a changing workload.
//!
//! Size: for `n` expected entries, `n / 2` rounded up to a power of two of 64-bit words
//! (8 counters, 4 bytes, per entry) plus a doorkeeper of `8 n` bits rounded up to a power of
//! two (1 byte per entry): about 5 bytes per entry.

use crate::rng::mix64;

const RESET_MASK: u64 = 0x7777_7777_7777_7777;
/// Counters per expected entry (4 bits each): 8 gives 4 bytes per entry, and measured hit
/// ratios on the shared traces were within noise of Caffeine's 16.
const COUNTERS_PER_ENTRY: usize = 8;
/// Doorkeeper bits per expected entry: at 8, a sample period's worth of one-time keys
/// (up to 10 per entry) leaves the two-hash Bloom filter mostly unsaturated; at 1 bit per
/// entry it saturated and measurably hurt loop and search traces.
const DOOR_BITS_PER_ENTRY: usize = 8;
/// The largest sketch we size for, in entries; larger caches share counters.
const MAX_ENTRIES: usize = 1 << 26;

#[derive(Debug)]
pub(crate) struct FrequencySketch {
    table: Vec<u64>,
    table_mask: u64,
    door: Vec<u64>,
    door_mask: u64,
    /// Events recorded in the current sample period.
    additions: u64,
    sample_size: u64,
    /// The entry count the sketch was sized for.
    entries: usize,
    salt: u64,
}

impl FrequencySketch {
    /// A sketch for about `entries` resident keys; `salt` keys the index functions.
    pub(crate) fn new(entries: usize, salt: u64) -> Self {
        let entries = entries.clamp(16, MAX_ENTRIES);
        let words = (entries * COUNTERS_PER_ENTRY / 16).next_power_of_two();
        let door_bits = (entries * DOOR_BITS_PER_ENTRY).next_power_of_two().max(64);
        FrequencySketch {
            table: vec![0; words],
            table_mask: words as u64 - 1,
            door: vec![0; door_bits / 64],
            door_mask: door_bits as u64 - 1,
            additions: 0,
            sample_size: 10 * entries as u64,
            entries,
            salt,
        }
    }

    /// The number of events between two agings.
    pub(crate) fn sample_size(&self) -> u64 {
        self.sample_size
    }

    /// Grows the sketch (forgetting its counts) once the cache holds more than twice what it
    /// was sized for; weighted caches do not know their entry count in advance. (Growing at
    /// the first overshoot would wipe the counts of every unweighted cache as it fills.)
    pub(crate) fn ensure_capacity(&mut self, entries: usize) {
        if entries > 2 * self.entries && self.entries < MAX_ENTRIES {
            *self = FrequencySketch::new(entries.saturating_mul(2), self.salt);
        }
    }

    /// Two independent 64-bit hashes of a key's tag, keyed by the salt.
    fn hashes(&self, tag: u32) -> (u64, u64) {
        let h1 = mix64(u64::from(tag) ^ self.salt);
        let h2 = mix64(h1 ^ 0x5851_F42D_4C95_7F2D) | 1;
        (h1, h2)
    }

    /// Word index and bit shift of the counter for row `i`.
    fn counter(&self, h1: u64, h2: u64, i: u64) -> (usize, u32) {
        let g = h1.wrapping_add(i.wrapping_mul(h2));
        (((g >> 8) & self.table_mask) as usize, ((g & 15) as u32) << 2)
    }

    fn door_bits(&self, h2: u64) -> [u64; 2] {
        [h2 & self.door_mask, (h2 >> 32) & self.door_mask]
    }

    fn in_door(&self, h2: u64) -> bool {
        self.door_bits(h2).iter().all(|&b| self.door[(b >> 6) as usize] & (1 << (b & 63)) != 0)
    }

    /// The estimated number of events for `tag` in the recent past (0..=16).
    pub(crate) fn frequency(&self, tag: u32) -> u8 {
        let (h1, h2) = self.hashes(tag);
        let mut min = 15u64;
        for i in 0..4 {
            let (w, s) = self.counter(h1, h2, i);
            min = min.min((self.table[w] >> s) & 15);
        }
        min as u8 + u8::from(self.in_door(h2))
    }

    /// Records one event (a read or a write) for `tag`.
    pub(crate) fn increment(&mut self, tag: u32) {
        let (h1, h2) = self.hashes(tag);
        if !self.in_door(h2) {
            for b in self.door_bits(h2) {
                self.door[(b >> 6) as usize] |= 1 << (b & 63);
            }
        } else {
            // Conservative update: raise only the counters at the current minimum, which
            // keeps collisions from inflating the estimates of cold keys.
            let mut cells = [(0usize, 0u32); 4];
            let mut min = 15u64;
            for (i, cell) in cells.iter_mut().enumerate() {
                *cell = self.counter(h1, h2, i as u64);
                min = min.min((self.table[cell.0] >> cell.1) & 15);
            }
            if min < 15 {
                for (w, s) in cells {
                    if (self.table[w] >> s) & 15 == min {
                        self.table[w] += 1 << s;
                    }
                }
            }
        }
        self.additions += 1;
        if self.additions >= self.sample_size {
            self.age();
        }
    }

    /// Halves every counter and clears the doorkeeper.
    fn age(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & RESET_MASK;
        }
        self.door.iter_mut().for_each(|w| *w = 0);
        self.additions /= 2;
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
        let mut s = FrequencySketch::new(1024, 7);
        assert_eq!(s.frequency(42), 0);
        s.increment(42);
        assert_eq!(s.frequency(42), 1, "the doorkeeper absorbs the first event");
        for _ in 0..40 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), 16, "15 in the counters plus the doorkeeper bit");
        s.age();
        assert_eq!(s.frequency(42), 7);
    }

    #[test]
    fn hot_keys_outrank_cold_ones_under_noise() {
        let mut s = FrequencySketch::new(256, 1);
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
        assert!(hot_min > cold_max, "hot {hot_min} vs cold {cold_max}");
    }
}
