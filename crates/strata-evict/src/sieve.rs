//! SIEVE (Zhang et al., NSDI'24): a FIFO queue with one "visited" bit per entry and a hand
//! that sweeps from the oldest entry towards the newest, sparing visited entries once.

use crate::list::{LinkStore, List, NIL};
use crate::nodes::Nodes;
use crate::{Policy, Slot};

/// Resident, not visited since the hand last passed.
const COLD: u8 = 1;
/// Resident and read since the hand last passed.
const VISITED: u8 = 2;

/// SIEVE: lazy promotion (a read sets a bit, nothing moves) and quick demotion (new entries
/// that are never read leave at the hand's next pass).
///
/// Per slot: one 12-byte node and 4 bits of metadata (where the visited bit lives), and 4
/// bytes of weight once any entry weighs other than 1.
#[derive(Debug)]
pub struct Sieve {
    nodes: Nodes,
    /// Front is the oldest entry; the hand walks from front to back and wraps.
    order: List,
    hand: Slot,
    weight: u64,
    capacity: u64,
}

impl Sieve {
    /// An empty SIEVE policy for `capacity` weight units.
    pub fn new(capacity: u64) -> Self {
        Sieve { nodes: Nodes::default(), order: List::default(), hand: NIL, weight: 0, capacity }
    }

    /// Where the hand goes after `slot`: the next newer entry, except that reaching the
    /// newest one wraps to the oldest. SIEVE evicts before it inserts, so the newcomer is
    /// never a candidate; our owner inserts first, so the newest entry is the newcomer.
    fn after(&self, slot: Slot) -> Slot {
        let next = self.nodes.links(slot).next;
        if Some(next) == self.order.back() {
            NIL
        } else {
            next
        }
    }

    /// Unlinks `slot`, moving the hand past it first if the hand points at it.
    fn unlink(&mut self, slot: Slot) {
        if self.hand == slot {
            self.hand = self.after(slot);
        }
        self.order.unlink(&mut self.nodes, slot);
        self.nodes.set_meta(slot, 0);
        self.weight -= u64::from(self.nodes.weight(slot));
    }
}

impl Policy for Sieve {
    fn reserve(&mut self, entries: usize) {
        self.nodes.reserve(entries);
    }

    fn name(&self) -> &'static str {
        "sieve"
    }

    fn on_insert(&mut self, slot: Slot, hash: u64, weight: u32) {
        if !self.nodes.occupy(slot, hash, weight, COLD) {
            debug_assert!(false, "slot {slot} inserted twice");
            return;
        }
        self.weight += u64::from(weight);
        self.order.push_back(&mut self.nodes, slot);
    }

    fn on_access(&mut self, slot: Slot, hash: u64) {
        if self.nodes.resident_with_hash(slot, hash).is_some() {
            self.nodes.set_meta(slot, VISITED);
        }
    }

    fn on_update(&mut self, slot: Slot, weight: u32) {
        if self.nodes.resident(slot).is_some() {
            self.weight = self.weight - u64::from(self.nodes.weight(slot)) + u64::from(weight);
            self.nodes.set_weight(slot, weight);
            self.nodes.set_meta(slot, VISITED);
        }
    }

    fn on_remove(&mut self, slot: Slot) {
        if self.nodes.resident(slot).is_some() {
            self.unlink(slot);
        }
    }

    fn evict(&mut self) -> Option<Slot> {
        // Each step either evicts, clears one visited bit, or wraps past the newest entry,
        // so three passes over the queue always find a victim.
        let bound = 3 * self.order.len() + 2;
        for _ in 0..bound {
            if self.hand == NIL {
                self.hand = self.order.front()?;
            }
            let slot = self.hand;
            // The newcomer is not a candidate unless it is alone (see `after`).
            if Some(slot) == self.order.back() && self.order.len() > 1 {
                self.hand = NIL;
                continue;
            }
            if self.nodes.meta(slot) == VISITED {
                self.nodes.set_meta(slot, COLD);
                self.hand = self.after(slot);
            } else {
                self.unlink(slot);
                return Some(slot);
            }
        }
        // Unreachable while the list is consistent; fall back to the oldest entry.
        let slot = self.order.front()?;
        self.unlink(slot);
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
        self.hand = NIL;
        self.weight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visited_entries_survive_one_pass() {
        let mut p = Sieve::new(3);
        for s in 0..3 {
            p.on_insert(s, u64::from(s), 1);
        }
        p.on_access(0, 0);
        p.on_access(2, 2);
        // The hand spares 0 (clearing its bit), evicts 1, then 2 is spared, 0 is evicted.
        assert_eq!(p.evict(), Some(1));
        assert_eq!(p.evict(), Some(0));
        assert_eq!(p.evict(), Some(2));
        assert_eq!(p.evict(), None);
    }
}
