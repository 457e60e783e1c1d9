//! A bounded FIFO of 32-bit key fingerprints with O(1) membership: the "ghost" queue that
//! remembers entries evicted recently so that S3-FIFO can recognise them when they return.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// The fingerprints are already hashes; hashing them again would only cost time.
#[derive(Default)]
pub(crate) struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        // Spread the 32-bit fingerprint over 64 bits so the table's control bytes vary too.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }
}

/// Costs about 4 bytes in the ring plus about 9 bytes in the map per remembered fingerprint
/// (at the map's load factor, a little more).
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    ring: VecDeque<u32>,
    /// How many times each fingerprint occurs in `ring`.
    counts: HashMap<u32, u32, BuildHasherDefault<FingerprintHasher>>,
}

impl Ghost {
    /// Remembers `fp`, forgetting the oldest fingerprints beyond `limit`.
    pub(crate) fn push(&mut self, fp: u32, limit: usize) {
        if limit == 0 {
            return;
        }
        // Each loop pops one element, so it runs at most `ring.len()` times.
        while self.ring.len() >= limit {
            self.pop_oldest();
        }
        self.ring.push_back(fp);
        *self.counts.entry(fp).or_insert(0) += 1;
    }

    fn pop_oldest(&mut self) {
        if let Some(old) = self.ring.pop_front() {
            if let Some(c) = self.counts.get_mut(&old) {
                *c -= 1;
                if *c == 0 {
                    self.counts.remove(&old);
                }
            }
        }
    }

    pub(crate) fn contains(&self, fp: u32) -> bool {
        self.counts.contains_key(&fp)
    }

    pub(crate) fn clear(&mut self) {
        self.ring.clear();
        self.counts.clear();
    }
}

impl std::fmt::Debug for FingerprintHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintHasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_the_limit() {
        let mut g = Ghost::default();
        for fp in 0..10 {
            g.push(fp, 4);
        }
        assert!(!g.contains(5));
        assert!(g.contains(6) && g.contains(9));
        g.push(9, 4);
        g.push(10, 4);
        g.push(11, 4);
        g.push(12, 4);
        // One copy of 9 left with the ring's oldest end, the newer copy is still there.
        assert!(g.contains(9));
        assert!(!g.contains(8));
    }
}
