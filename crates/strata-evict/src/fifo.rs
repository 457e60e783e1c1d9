//! First in, first out: reads change nothing.

use crate::list::List;
use crate::nodes::Nodes;
use crate::{Policy, Slot};

const RESIDENT: u8 = 1;

/// First in, first out: evicts the entry inserted longest ago, whatever was read since.
///
/// Per slot: one 20-byte node (links, hash tag, weight, a residency byte).
#[derive(Debug)]
pub struct Fifo {
    nodes: Nodes,
    order: List,
    weight: u64,
    capacity: u64,
}

impl Fifo {
    /// An empty FIFO policy for `capacity` weight units.
    pub fn new(capacity: u64) -> Self {
        Fifo { nodes: Nodes::default(), order: List::default(), weight: 0, capacity }
    }
}

impl Policy for Fifo {
    fn reserve(&mut self, entries: usize) {
        self.nodes.reserve(entries);
    }

    fn name(&self) -> &'static str {
        "fifo"
    }

    fn on_insert(&mut self, slot: Slot, hash: u64, weight: u32) {
        let node = self.nodes.get_mut(slot);
        debug_assert!(node.meta == 0, "slot {slot} inserted twice");
        if node.meta != 0 {
            // Caller broke its guarantee; keep our accounting consistent rather than link twice.
            return;
        }
        node.tag = hash as u32;
        node.weight = weight;
        node.meta = RESIDENT;
        self.weight += u64::from(weight);
        self.order.push_back(&mut self.nodes, slot);
    }

    fn on_access(&mut self, _slot: Slot, _hash: u64) {}

    fn on_update(&mut self, slot: Slot, weight: u32) {
        if let Some(node) = self.nodes.resident(slot) {
            self.weight = self.weight - u64::from(node.weight) + u64::from(weight);
            self.nodes.get_mut(slot).weight = weight;
        }
    }

    fn on_remove(&mut self, slot: Slot) {
        if let Some(node) = self.nodes.resident(slot) {
            self.weight -= u64::from(node.weight);
            self.order.unlink(&mut self.nodes, slot);
            self.nodes.get_mut(slot).meta = 0;
        }
    }

    fn evict(&mut self) -> Option<Slot> {
        let slot = self.order.pop_front(&mut self.nodes)?;
        let node = self.nodes.get_mut(slot);
        node.meta = 0;
        self.weight -= u64::from(node.weight);
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
    fn reads_do_not_change_the_order() {
        let mut p = Fifo::new(3);
        for s in 0..3 {
            p.on_insert(s, u64::from(s), 1);
        }
        p.on_access(0, 0);
        assert_eq!(p.evict(), Some(0));
        assert_eq!(p.evict(), Some(1));
    }
}
