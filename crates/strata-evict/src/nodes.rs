//! Per-slot state shared by the queue-based policies.
//!
//! Every queue-based policy keeps one [`Node`] per slot: two list links (8 bytes) and the low
//! 32 bits of the key hash (4 bytes), 12 bytes in all, plus 4 bits of policy metadata kept two
//! slots to a byte in a second array: 12.5 bytes per slot. The metadata is zero exactly when
//! the slot is not resident, so residency needs no separate flag.
//!
//! The metadata is not packed into the tag, though 28 bits of tag would tell keys apart just as
//! well: the tag is also the frequency sketch's key, and with 28-bit keys W-TinyLFU measured
//! about 2 points lower on P3@160000 (over ten seeds, for reasons not found), while 32-bit keys
//! reproduced the earlier figures exactly.
//!
//! Weights live in a third array that is only allocated once some entry weighs other than 1.
//! Most caches count entries, so they never pay for it; a weighted cache pays 4 bytes more per
//! slot. Either way every policy supports weights.

use crate::list::{LinkStore, Links};
use crate::Slot;

/// The largest metadata value a slot can hold (4 bits).
pub(crate) const META_MAX: u8 = 0xF;

/// The state a policy keeps for one slot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Node {
    pub(crate) links: Links,
    /// The low 32 bits of the key hash, to recognise stale access records and to key the
    /// frequency sketch.
    tag: u32,
}

impl Node {
    /// The tag of the key that occupies (or last occupied) the slot.
    #[inline]
    pub(crate) fn tag(&self) -> u32 {
        self.tag
    }
}

/// All nodes, indexed by slot and grown on demand, their metadata, and the weights of slots
/// once any weight differs from 1.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    nodes: Vec<Node>,
    /// Two slots per byte: slot `2i` in the low nibble of byte `i`, slot `2i + 1` in the high.
    /// Always `nodes.len().div_ceil(2)` long.
    meta: Vec<u8>,
    /// Empty while every weight seen is 1; slots beyond its end weigh 1.
    weights: Vec<u32>,
}

impl Nodes {
    /// The node of a resident slot.
    #[inline]
    pub(crate) fn resident(&self, slot: Slot) -> Option<&Node> {
        let node = self.nodes.get(slot as usize)?;
        (self.meta(slot) != 0).then_some(node)
    }

    /// The node of a resident slot whose tag matches `hash`: the check every `on_access`
    /// makes so that a stale, buffered read of an earlier occupant is ignored.
    #[inline]
    pub(crate) fn resident_with_hash(&self, slot: Slot, hash: u64) -> Option<&Node> {
        self.resident(slot).filter(|n| n.tag == hash as u32)
    }

    /// Records a new occupant of `slot` (growing the arrays if needed): its hash, weight and
    /// non-zero metadata. Returns `false`, changing nothing, if the slot is already resident.
    pub(crate) fn occupy(&mut self, slot: Slot, hash: u64, weight: u32, meta: u8) -> bool {
        debug_assert!(meta != 0 && meta <= META_MAX, "a resident slot needs metadata 1..=15");
        let i = slot as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, Node::default());
            self.meta.resize(self.nodes.len().div_ceil(2), 0);
        }
        if self.meta(slot) != 0 {
            return false;
        }
        self.nodes[i].tag = hash as u32;
        self.set_meta(slot, meta);
        self.set_weight(slot, weight);
        true
    }

    /// The node of a slot known to be inside the array.
    #[inline]
    pub(crate) fn node(&self, slot: Slot) -> &Node {
        &self.nodes[slot as usize]
    }

    /// The metadata of a slot: zero when it is not resident (or beyond the array).
    #[inline]
    pub(crate) fn meta(&self, slot: Slot) -> u8 {
        let byte = self.meta.get(slot as usize / 2).copied().unwrap_or(0);
        (byte >> ((slot & 1) * 4)) & META_MAX
    }

    /// Changes the metadata of a slot known to be inside the array.
    #[inline]
    pub(crate) fn set_meta(&mut self, slot: Slot, meta: u8) {
        debug_assert!(meta <= META_MAX, "metadata {meta} does not fit in 4 bits");
        let shift = (slot & 1) * 4;
        let byte = &mut self.meta[slot as usize / 2];
        *byte = (*byte & !(META_MAX << shift)) | ((meta & META_MAX) << shift);
    }

    /// The weight of a slot (1 unless a different weight was recorded for it).
    #[inline]
    pub(crate) fn weight(&self, slot: Slot) -> u32 {
        self.weights.get(slot as usize).copied().unwrap_or(1)
    }

    /// Records the weight of a slot. The weight array is only allocated (and then grown) for
    /// weights other than 1: a slot beyond its end weighs 1.
    pub(crate) fn set_weight(&mut self, slot: Slot, weight: u32) {
        let i = slot as usize;
        if let Some(w) = self.weights.get_mut(i) {
            *w = weight;
        } else if weight != 1 {
            // Sized like the nodes, so a weighted cache grows this array once, not per slot.
            let len = (i + 1).max(self.nodes.len());
            self.weights.reserve_exact(self.nodes.capacity().max(len) - self.weights.len());
            self.weights.resize(len, 1);
            self.weights[i] = weight;
        }
    }

    /// Makes room for `entries` slots in one allocation per array.
    pub(crate) fn reserve(&mut self, entries: usize) {
        self.nodes.reserve_exact(entries.saturating_sub(self.nodes.len()));
        self.meta.reserve_exact(entries.div_ceil(2).saturating_sub(self.meta.len()));
    }

    pub(crate) fn clear(&mut self) {
        self.nodes.clear();
        self.meta.clear();
        self.weights.clear();
    }
}

impl LinkStore for Nodes {
    #[inline]
    fn links(&self, slot: Slot) -> Links {
        self.nodes[slot as usize].links
    }

    #[inline]
    fn links_mut(&mut self, slot: Slot) -> &mut Links {
        &mut self.nodes[slot as usize].links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_is_twelve_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 12);
    }

    #[test]
    fn neighbouring_slots_keep_their_own_metadata_and_tags() {
        let mut nodes = Nodes::default();
        let hash = 0xFFFF_FFFF_FFFF_FFF5;
        assert!(nodes.occupy(3, hash, 1, 2));
        assert!(nodes.occupy(2, 7, 1, META_MAX));
        assert!(!nodes.occupy(3, 0, 1, 1), "a resident slot must not be occupied again");
        assert_eq!((nodes.meta(2), nodes.meta(3)), (META_MAX, 2));
        nodes.set_meta(3, 9);
        assert_eq!((nodes.meta(2), nodes.meta(3)), (META_MAX, 9));
        assert_eq!(nodes.node(3).tag(), hash as u32);
        assert!(nodes.resident_with_hash(3, hash).is_some());
        assert!(nodes.resident_with_hash(3, hash ^ 0x1).is_none());
        // Bits above the low 32 do not matter: the owner may not pass them.
        assert!(nodes.resident_with_hash(3, hash & 0xFFFF_FFFF).is_some());
        nodes.set_meta(3, 0);
        assert!(nodes.resident(3).is_none());
        assert_eq!(nodes.meta(2), META_MAX);
        assert!(nodes.resident(0).is_none(), "slots grown past are vacant");
        assert!(nodes.resident(4).is_none(), "slots beyond the array are vacant");
    }

    #[test]
    fn weights_are_stored_only_once_one_differs_from_one() {
        let mut nodes = Nodes::default();
        for s in 0..4 {
            assert!(nodes.occupy(s, u64::from(s), 1, 1));
        }
        assert!(nodes.weights.is_empty());
        nodes.set_weight(2, 7);
        assert_eq!((nodes.weight(0), nodes.weight(2), nodes.weight(3)), (1, 7, 1));
        // A later slot beyond the array's end weighs 1 until told otherwise.
        assert!(nodes.occupy(9, 9, 1, 1));
        assert_eq!(nodes.weight(9), 1);
        assert!(nodes.occupy(10, 10, 5, 1));
        assert_eq!(nodes.weight(10), 5);
        // A new occupant of a weighed slot gets its own weight, 1 included.
        nodes.set_meta(2, 0);
        assert!(nodes.occupy(2, 2, 1, 1));
        assert_eq!(nodes.weight(2), 1);
        nodes.clear();
        assert_eq!(nodes.weight(10), 1);
    }
}
