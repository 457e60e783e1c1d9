//! A compact, approximate memory of the keys W-TinyLFU's admission filter recently turned
//! away: two generations of a Bloom filter over the keys' 32-bit tags.
//!
//! **Why.** The frequency duel keeps one-hit wonders out of the main region, but on
//! recency-friendly traces (P3, multi2, web07) it also rejects keys that come back soon after
//! they were turned away, because the victims they duel with carry popularity from further
//! back. S3-FIFO's ghost queue admits such a returning key at once; this is the same idea at a
//! fraction of the memory. A key found here when it is inserted again skips the window and
//! enters the main region's probation segment directly (see the `tinylfu` module).
//!
//! **How long it remembers.** Time is counted in requests (the policy calls
//! [`Rejected::tick`] for every insert and access). A generation lasts `span / 2` requests, or
//! until it holds its designed number of keys, whichever comes first; then the older
//! generation is cleared and becomes the current one. So a key is remembered for at most
//! `span` requests. W-TinyLFU uses a span of three quarters of its capacity: a key of a loop
//! larger than the cache returns only after about the whole loop, more than the capacity, so
//! loops (where returning keys must keep losing the duel for the main region to stay stable)
//! are never recognised, while recency-friendly reuse, which returns sooner, is. An earlier
//! version counted the span in rejections; on a loop a little larger than the cache nearly
//! every request is a rejection of a key that returns after a few other rejections, and it
//! churned the main region as LRU does.
//!
//! **Size.** A generation holds at most `keys` keys at 32 bits each, four bits set per key:
//! about one false positive in 5000 lookups when full (a false positive only admits a key that
//! would have dueled, but with 16 bits per key the false positives alone cost up to 2 points
//! on loop and search traces, where nearly every request is a miss that looks here).
//! W-TinyLFU allows an eighth of its capacity per generation: 1 byte per cache entry.

use crate::rng::mix64;

/// Bits per key per generation.
const BITS_PER_KEY: usize = 32;
/// Bit positions per key.
const HASHES: usize = 4;

/// Two generations of a Bloom filter of 32-bit tags.
#[derive(Debug, Default)]
pub(crate) struct Rejected {
    /// Both generations, `words` each; `current` (0 or 1) says which one takes insertions.
    bits: Vec<u64>,
    words: usize,
    current: usize,
    /// Requests and insertions in the current generation.
    requests: usize,
    keys: usize,
    /// The most requests and keys per generation.
    max_requests: usize,
    max_keys: usize,
    salt: u64,
}

impl Rejected {
    /// A filter that remembers insertions for at most `span` requests, with room for `keys`
    /// insertions per generation (half the span); `keys` of 0 remembers nothing.
    pub(crate) fn new(span: usize, keys: usize, salt: u64) -> Self {
        let words = if keys == 0 { 0 } else { (keys.saturating_mul(BITS_PER_KEY) / 64).max(1) };
        Rejected {
            bits: vec![0; words * 2],
            words,
            current: 0,
            requests: 0,
            keys: 0,
            max_requests: span.div_ceil(2).max(1),
            max_keys: keys,
            salt,
        }
    }

    /// The bit positions (within a generation) of `tag`, from double hashing.
    fn positions(&self, tag: u32) -> [usize; HASHES] {
        let h1 = mix64(u64::from(tag) ^ self.salt);
        // Both hashes are full 64-bit: the multiply-shift below reads the high bits, which a
        // small second hash would barely move.
        let h2 = mix64(h1 ^ 0x9E37_79B9_7F4A_7C15) | 1;
        let bits = (self.words * 64) as u128;
        // Lemire's multiply-shift maps a 64-bit hash onto 0..bits without a division, so the
        // generation need not be a power of two in size.
        std::array::from_fn(|i| {
            let g = h1.wrapping_add((i as u64).wrapping_mul(h2));
            ((u128::from(g) * bits) >> 64) as usize
        })
    }

    /// Clears the older generation and makes it the current one.
    fn rotate(&mut self) {
        self.current ^= 1;
        let start = self.current * self.words;
        self.bits[start..start + self.words].iter_mut().for_each(|w| *w = 0);
        self.requests = 0;
        self.keys = 0;
    }

    /// Counts one request of the policy's: the clock the span is measured in.
    #[inline]
    pub(crate) fn tick(&mut self) {
        self.requests += 1;
        if self.requests >= self.max_requests && self.words > 0 {
            self.rotate();
        }
    }

    /// Remembers `tag`.
    pub(crate) fn insert(&mut self, tag: u32) {
        if self.words == 0 {
            return;
        }
        if self.keys >= self.max_keys {
            self.rotate();
        }
        let base = self.current * self.words;
        for p in self.positions(tag) {
            self.bits[base + p / 64] |= 1 << (p % 64);
        }
        self.keys += 1;
    }

    /// Whether `tag` was (probably) inserted within the span.
    pub(crate) fn contains(&self, tag: u32) -> bool {
        if self.words == 0 {
            return false;
        }
        let positions = self.positions(tag);
        (0..2).any(|g| {
            let base = g * self.words;
            positions.iter().all(|&p| self.bits[base + p / 64] & (1 << (p % 64)) != 0)
        })
    }

    /// The salt of the index functions, to build a resized filter with.
    pub(crate) fn salt(&self) -> u64 {
        self.salt
    }

    /// The most keys a generation holds.
    pub(crate) fn keys_per_generation(&self) -> usize {
        self.max_keys
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.requests = 0;
        self.keys = 0;
    }

    /// The heap bytes of both generations.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bits.len() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> u32 {
        i.wrapping_mul(0x9E37_79B9)
    }

    #[test]
    fn remembers_for_the_span_of_requests_and_then_forgets() {
        let mut r = Rejected::new(1000, 1000, 7);
        for i in 0..100 {
            r.insert(key(i));
        }
        for _ in 0..499 {
            r.tick();
        }
        // A Bloom filter has no false negatives: within the span every key is there.
        assert!((0..100).all(|i| r.contains(key(i))));
        // After a full span of requests (two generations) they are gone.
        for _ in 0..501 {
            r.tick();
        }
        let stale = (0..100).filter(|&i| r.contains(key(i))).count();
        assert_eq!(stale, 0);
    }

    #[test]
    fn a_full_generation_rotates_early() {
        let mut r = Rejected::new(1_000_000, 100, 7);
        for i in 0..300 {
            r.insert(key(i));
        }
        // Three generations' worth of keys without a tick: the first hundred are forgotten,
        // the last hundred kept.
        assert!((200..300).all(|i| r.contains(key(i))));
        assert!((0..100).filter(|&i| r.contains(key(i))).count() < 5);
    }

    #[test]
    fn false_positives_are_rare_and_size_is_bounded() {
        let mut r = Rejected::new(8192, 4096, 3);
        for tag in 0..8192u32 {
            r.insert(tag);
        }
        let fp = (1_000_000..1_100_000u32).filter(|&t| r.contains(t)).count();
        // About 2 in 10 000 per full generation is expected; both generations are full.
        assert!(fp < 100, "{fp} false positives in 100 000");
        // 32 bits per key in each of two generations of 4096 keys.
        assert_eq!(r.heap_bytes(), 2 * 4096 * 4);
        r.clear();
        assert!(!(0..8192u32).any(|t| r.contains(t)));
    }

    proptest::proptest! {
        /// Against a model of what must be remembered: a tag is dropped only when the
        /// generation it went into is cleared, two rotations later, and a rotation needs
        /// `span / 2` ticks or `keys` insertions. So a tag inserted less than that many ticks
        /// and insertions ago is always found (a Bloom filter has no false negatives), and
        /// after a full span of ticks without insertions nothing is.
        #[test]
        fn never_forgets_within_the_span_and_forgets_everything_after(
            span in 2usize..200,
            keys in 1usize..64,
            ops in proptest::collection::vec((0u32..50, 0usize..4), 1..300),
        ) {
            let mut r = Rejected::new(span, keys, 11);
            let half = span.div_ceil(2);
            let (mut ticks, mut inserts) = (0usize, 0usize);
            // tag -> (ticks, inserts) at its latest insertion.
            let mut model = std::collections::HashMap::new();
            for (tag, ticks_after) in ops {
                r.insert(tag);
                inserts += 1;
                model.insert(tag, (ticks, inserts));
                for _ in 0..ticks_after {
                    r.tick();
                    ticks += 1;
                }
                for (&t, &(at_ticks, at_inserts)) in &model {
                    if ticks - at_ticks < half && inserts - at_inserts < keys {
                        proptest::prop_assert!(r.contains(t), "tag {} forgotten", t);
                    }
                }
            }
            for _ in 0..2 * half {
                r.tick();
            }
            proptest::prop_assert!(!(0..50).any(|t| r.contains(t)));
        }
    }

    #[test]
    fn room_for_no_keys_remembers_nothing() {
        let mut r = Rejected::new(100, 0, 1);
        r.insert(5);
        r.tick();
        assert!(!r.contains(5));
    }
}
