//! One queue in insertion order: FIFO leaves it alone on reads, LRU moves a read entry to the
//! back. The two differ in nothing else, so they are one type with a const parameter.

use crate::list::List;
use crate::nodes::Nodes;
use crate::{Policy, Slot};

const RESIDENT: u8 = 1;

/// Evicts from the front of one queue. With `PROMOTE`, a read or an update moves the entry to
/// the back (least recently used); without, order is insertion order (first in, first out).
///
/// Per slot: one 12-byte node (links, hash tag) and 4 bits of residency flag, and 4 bytes of
/// weight once any entry weighs other than 1.
#[derive(Debug)]
pub struct Queue<const PROMOTE: bool> {
    nodes: Nodes,
    order: List,
    weight: u64,
    capacity: u64,
}

/// Least recently used: evicts the entry whose last read or write is oldest.
pub type Lru = Queue<true>;

/// First in, first out: evicts the entry inserted longest ago, whatever was read since.
pub type Fifo = Queue<false>;

impl<const PROMOTE: bool> Queue<PROMOTE> {
    /// An empty policy for `capacity` weight units.
    pub fn new(capacity: u64) -> Self {
        Queue { nodes: Nodes::default(), order: List::default(), weight: 0, capacity }
    }
}

impl<const PROMOTE: bool> Policy for Queue<PROMOTE> {
    fn reserve(&mut self, entries: usize) {
        self.nodes.reserve(entries);
    }

    fn name(&self) -> &'static str {
        if PROMOTE {
            "lru"
        } else {
            "fifo"
        }
    }

    fn on_insert(&mut self, slot: Slot, hash: u64, weight: u32) {
        if !self.nodes.occupy(slot, hash, weight, RESIDENT) {
            // Caller broke its guarantee; keep our accounting consistent rather than link twice.
            debug_assert!(false, "slot {slot} inserted twice");
            return;
        }
        self.weight += u64::from(weight);
        self.order.push_back(&mut self.nodes, slot);
    }

    fn on_access(&mut self, slot: Slot, hash: u64) {
        if PROMOTE && self.nodes.resident_with_hash(slot, hash).is_some() {
            self.order.move_to_back(&mut self.nodes, slot);
        }
    }

    fn on_update(&mut self, slot: Slot, weight: u32) {
        if self.nodes.resident(slot).is_some() {
            self.weight = self.weight - u64::from(self.nodes.weight(slot)) + u64::from(weight);
            self.nodes.set_weight(slot, weight);
            if PROMOTE {
                self.order.move_to_back(&mut self.nodes, slot);
            }
        }
    }

    fn on_remove(&mut self, slot: Slot) {
        if self.nodes.resident(slot).is_some() {
            self.weight -= u64::from(self.nodes.weight(slot));
            self.order.unlink(&mut self.nodes, slot);
            self.nodes.set_meta(slot, 0);
        }
    }

    fn evict(&mut self) -> Option<Slot> {
        let slot = self.order.pop_front(&mut self.nodes)?;
        self.nodes.set_meta(slot, 0);
        self.weight -= u64::from(self.nodes.weight(slot));
        Some(slot)
    }

    fn weighted_size(&self) -> u64 {
        self.weight
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.order.clear();
        self.weight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_reads_do_not_change_the_order() {
        let mut p = Fifo::new(3);
        for s in 0..3 {
            p.on_insert(s, u64::from(s), 1);
        }
        p.on_access(0, 0);
        assert_eq!(p.evict(), Some(0));
        assert_eq!(p.evict(), Some(1));
    }

    #[test]
    fn lru_evicts_least_recently_used_first() {
        let mut lru = Lru::new(3);
        for s in 0..3 {
            lru.on_insert(s, u64::from(s), 1);
        }
        lru.on_access(0, 0);
        assert_eq!(lru.evict(), Some(1));
        assert_eq!(lru.evict(), Some(2));
        assert_eq!(lru.evict(), Some(0));
        assert_eq!(lru.evict(), None);
        assert_eq!(lru.weighted_size(), 0);
    }

    #[test]
    fn lru_ignores_a_stale_access() {
        let mut lru = Lru::new(3);
        lru.on_insert(0, 10, 1);
        lru.on_insert(1, 11, 1);
        lru.on_access(0, 99); // hash does not match: a record from an earlier occupant
        assert_eq!(lru.evict(), Some(0));
    }
}
