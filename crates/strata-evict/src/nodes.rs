//! Per-slot state shared by the queue-based policies.
//!
//! Every queue-based policy keeps one [`Node`] per slot: two list links (8 bytes),
//! a 32-bit hash tag (4 bytes), the weight (4 bytes) and one byte of policy metadata, which
//! rounds up to 20 bytes per slot. The metadata byte is zero exactly when the slot is not
//! resident, so residency needs no separate flag.

use crate::list::{LinkStore, Links};
use crate::Slot;

/// The state a policy keeps for one slot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Node {
    pub(crate) links: Links,
    /// The low 32 bits of the key hash, to recognise stale access records.
    pub(crate) tag: u32,
    pub(crate) weight: u32,
    /// Policy-defined; zero means "not resident".
    pub(crate) meta: u8,
}

/// All nodes, indexed by slot and grown on demand.
#[derive(Debug, Default)]
pub(crate) struct Nodes(Vec<Node>);

impl Nodes {
    /// The node of a resident slot.
    pub(crate) fn resident(&self, slot: Slot) -> Option<&Node> {
        self.0.get(slot as usize).filter(|n| n.meta != 0)
    }

    /// The node of a resident slot whose tag matches `hash`: the check every `on_access`
    /// makes so that a stale, buffered read of an earlier occupant is ignored.
    pub(crate) fn resident_with_hash(&self, slot: Slot, hash: u64) -> Option<&Node> {
        self.resident(slot).filter(|n| n.tag == hash as u32)
    }

    /// The node for `slot`, growing the array if needed.
    pub(crate) fn get_mut(&mut self, slot: Slot) -> &mut Node {
        let i = slot as usize;
        if i >= self.0.len() {
            self.0.resize(i + 1, Node::default());
        }
        &mut self.0[i]
    }

    /// The node of a slot known to be inside the array.
    pub(crate) fn node(&self, slot: Slot) -> &Node {
        &self.0[slot as usize]
    }

    /// Makes room for `entries` slots in one allocation.
    pub(crate) fn reserve(&mut self, entries: usize) {
        self.0.reserve_exact(entries.saturating_sub(self.0.len()));
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_is_twenty_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 20);
    }
}
