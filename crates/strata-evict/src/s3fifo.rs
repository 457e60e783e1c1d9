//! S3-FIFO (Yang et al., SOSP'23): a small FIFO that filters one-hit wonders, a main FIFO
//! with reinsertion (a 2-bit frequency, like CLOCK with several hands' worth of credit), and a
//! ghost FIFO of fingerprints that sends returning keys straight to the main queue.

use crate::ghost::Ghost;
use crate::list::List;
use crate::nodes::Nodes;
use crate::{Policy, Slot};

/// Node metadata (4 bits): bit 3 = resident, bit 2 = in the main queue, bits 0-1 = frequency
/// (0..=3).
const RESIDENT: u8 = 0x08;
const IN_MAIN: u8 = 0x04;
const FREQ: u8 = 0x03;

/// S3-FIFO: three FIFO queues, no reordering on reads.
///
/// Per slot: one 12-byte node and 4 bits of metadata (the queue bit and a 2-bit frequency), and
/// 4 bytes of weight once any entry weighs other than 1, plus the ghost queue, which remembers up to one fingerprint per resident entry at
/// about 13 bytes each.
#[derive(Debug)]
pub struct S3Fifo {
    nodes: Nodes,
    small: List,
    main: List,
    small_weight: u64,
    main_weight: u64,
    ghost: Ghost,
    capacity: u64,
    small_percent: u8,
}

impl S3Fifo {
    /// An empty S3-FIFO policy for `capacity` weight units, whose small queue targets
    /// `small_percent` of it (the paper uses 10; values above 100 act as 100).
    pub fn new(capacity: u64, small_percent: u8) -> Self {
        S3Fifo {
            nodes: Nodes::default(),
            small: List::default(),
            main: List::default(),
            small_weight: 0,
            main_weight: 0,
            ghost: Ghost::default(),
            capacity,
            small_percent: small_percent.min(100),
        }
    }

    fn small_target(&self) -> u64 {
        self.capacity.saturating_mul(u64::from(self.small_percent)) / 100
    }

    fn unlink(&mut self, slot: Slot) {
        let weight = u64::from(self.nodes.weight(slot));
        if self.nodes.meta(slot) & IN_MAIN != 0 {
            self.main.unlink(&mut self.nodes, slot);
            self.main_weight -= weight;
        } else {
            self.small.unlink(&mut self.nodes, slot);
            self.small_weight -= weight;
        }
        self.nodes.set_meta(slot, 0);
    }

    fn len_total(&self) -> usize {
        self.small.len() + self.main.len()
    }
}

impl Policy for S3Fifo {
    fn reserve(&mut self, entries: usize) {
        self.nodes.reserve(entries);
    }

    fn name(&self) -> &'static str {
        "s3fifo"
    }

    fn on_insert(&mut self, slot: Slot, hash: u64, weight: u32) {
        if self.nodes.resident(slot).is_some() {
            debug_assert!(false, "slot {slot} inserted twice");
            return;
        }
        let to_main = self.ghost.contains(hash as u32);
        let meta = if to_main { RESIDENT | IN_MAIN } else { RESIDENT };
        self.nodes.occupy(slot, hash, weight, meta);
        if to_main {
            self.main.push_back(&mut self.nodes, slot);
            self.main_weight += u64::from(weight);
        } else {
            self.small.push_back(&mut self.nodes, slot);
            self.small_weight += u64::from(weight);
        }
    }

    fn on_access(&mut self, slot: Slot, hash: u64) {
        if self.nodes.resident_with_hash(slot, hash).is_some() {
            let meta = self.nodes.meta(slot);
            if meta & FREQ < FREQ {
                self.nodes.set_meta(slot, meta + 1);
            }
        }
    }

    fn on_update(&mut self, slot: Slot, weight: u32) {
        if self.nodes.resident(slot).is_none() {
            return;
        }
        let (old, meta) = (u64::from(self.nodes.weight(slot)), self.nodes.meta(slot));
        if meta & IN_MAIN != 0 {
            self.main_weight = self.main_weight - old + u64::from(weight);
        } else {
            self.small_weight = self.small_weight - old + u64::from(weight);
        }
        self.nodes.set_weight(slot, weight);
        if meta & FREQ < FREQ {
            self.nodes.set_meta(slot, meta + 1);
        }
    }

    fn on_remove(&mut self, slot: Slot) {
        if self.nodes.resident(slot).is_some() {
            self.unlink(slot);
        }
    }

    fn evict(&mut self) -> Option<Slot> {
        // Every step either evicts, moves an entry from small to main (at most once per
        // entry) or spends one unit of an entry's frequency (at most 3 per entry), so this
        // bound is never reached while the lists are consistent.
        let bound = 4 * self.len_total() + 2;
        for _ in 0..bound {
            if self.small_weight > self.small_target() || self.main.len() == 0 {
                let slot = self.small.front()?;
                let node = *self.nodes.node(slot);
                if self.nodes.meta(slot) & FREQ >= 1 {
                    // Read while in probation: promote to main with a fresh frequency.
                    let weight = u64::from(self.nodes.weight(slot));
                    self.small.unlink(&mut self.nodes, slot);
                    self.small_weight -= weight;
                    self.nodes.set_meta(slot, RESIDENT | IN_MAIN);
                    self.main.push_back(&mut self.nodes, slot);
                    self.main_weight += weight;
                } else {
                    let limit = self.len_total();
                    self.unlink(slot);
                    self.ghost.push(node.tag(), limit);
                    return Some(slot);
                }
            } else {
                let slot = self.main.front()?;
                let meta = self.nodes.meta(slot);
                if meta & FREQ > 0 {
                    self.nodes.set_meta(slot, meta - 1);
                    self.main.move_to_back(&mut self.nodes, slot);
                } else {
                    self.unlink(slot);
                    return Some(slot);
                }
            }
        }
        let slot = self.small.front().or_else(|| self.main.front())?;
        self.unlink(slot);
        Some(slot)
    }

    fn weighted_size(&self) -> u64 {
        self.small_weight + self.main_weight
    }

    fn len(&self) -> usize {
        self.len_total()
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.small.clear();
        self.main.clear();
        self.small_weight = 0;
        self.main_weight = 0;
        self.ghost.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hit_wonders_leave_first_and_ghosts_return_to_main() {
        let mut p = S3Fifo::new(10, 10);
        for s in 0..10 {
            p.on_insert(s, u64::from(s), 1);
        }
        p.on_access(0, 0);
        // Small is over its target (1): slot 0 was read and is promoted, slot 1 is evicted.
        assert_eq!(p.evict(), Some(1));
        // Key 1 comes back in a new slot and goes straight to main.
        p.on_insert(11, 1, 1);
        assert_ne!(p.nodes.meta(11) & IN_MAIN, 0);
    }
}
