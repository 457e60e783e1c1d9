//! Exact least-recently-used eviction.

use crate::list::{LinkStore, Links, List};
use crate::{Policy, Slot};

#[derive(Clone, Copy, Debug, Default)]
struct Node {
    links: Links,
    /// The low 32 bits of the key hash, to recognise stale access records.
    tag: u32,
    weight: u32,
    resident: bool,
}

#[derive(Debug, Default)]
struct Nodes(Vec<Node>);

impl Nodes {
    fn get(&self, slot: Slot) -> Option<&Node> {
        self.0.get(slot as usize).filter(|n| n.resident)
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut Node {
        let i = slot as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, Node::default());
        }
        &mut self.0[i]
    }
}

impl LinkStore for Nodes {
    fn links(&self, slot: Slot) -> Links {
        self.0[slot as usize].links
    }

    fn links_mut(&mut self, slot: Slot) -> &mut Links {
        &mut self.0[slot as usize].links
    }
}

/// Least recently used: evicts the entry whose last access is oldest.
#[derive(Debug)]
pub struct Lru {
    nodes: Nodes,
    order: List,
    weight: u64,
    capacity: u64,
}

impl Lru {
    /// An empty LRU policy for `capacity` weight units.
    pub fn new(capacity: u64) -> Self {
        Lru { nodes: Nodes::default(), order: List::default(), weight: 0, capacity }
    }
}

impl Policy for Lru {
    fn reserve(&mut self, entries: usize) {
        self.nodes.0.reserve_exact(entries.saturating_sub(self.nodes.0.len()));
    }

    fn name(&self) -> &'static str {
        "lru"
    }

    fn on_insert(&mut self, slot: Slot, hash: u64, weight: u32) {
        let node = self.nodes.slot_mut(slot);
        debug_assert!(!node.resident, "slot {slot} inserted twice");
        node.tag = hash as u32;
        node.weight = weight;
        node.resident = true;
        self.weight += u64::from(weight);
        self.order.push_back(&mut self.nodes, slot);
    }

    fn on_access(&mut self, slot: Slot, hash: u64) {
        if self.nodes.get(slot).is_some_and(|n| n.tag == hash as u32) {
            self.order.move_to_back(&mut self.nodes, slot);
        }
    }

    fn on_update(&mut self, slot: Slot, weight: u32) {
        if self.nodes.get(slot).is_none() {
            return;
        }
        let node = self.nodes.slot_mut(slot);
        self.weight = self.weight - u64::from(node.weight) + u64::from(weight);
        node.weight = weight;
        self.order.move_to_back(&mut self.nodes, slot);
    }

    fn on_remove(&mut self, slot: Slot) {
        if let Some(node) = self.nodes.get(slot) {
            self.weight -= u64::from(node.weight);
            self.order.unlink(&mut self.nodes, slot);
            self.nodes.slot_mut(slot).resident = false;
        }
    }

    fn evict(&mut self) -> Option<Slot> {
        let slot = self.order.pop_front(&mut self.nodes)?;
        let node = self.nodes.slot_mut(slot);
        node.resident = false;
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
        self.nodes.0.clear();
        self.order.clear();
        self.weight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first() {
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
    fn stale_access_is_ignored() {
        let mut lru = Lru::new(3);
        lru.on_insert(0, 10, 1);
        lru.on_insert(1, 11, 1);
        lru.on_access(0, 99); // hash does not match: a record from an earlier occupant
        assert_eq!(lru.evict(), Some(0));
    }
}
