//! Per-slot state shared by the queue-based policies.
//!
//! Every queue-based policy keeps one [`Node`] per slot: two list links (8 bytes) and one
//! 32-bit word holding a 28-bit hash tag and 4 bits of policy metadata, 12 bytes per slot.
//! The metadata is zero exactly when the slot is not resident, so residency needs no
//! separate flag.
//!
//! Weights live beside the nodes in a second array that is only allocated once some entry
//! weighs other than 1. Most caches count entries, so they never pay for it; a weighted
//! cache pays 4 bytes more per slot (16 in all). Either way every policy supports weights.

use crate::list::{LinkStore, Links};
use crate::Slot;

/// The low bits of a node's word that hold the metadata; the rest hold the tag.
const META_MASK: u32 = 0xF;

/// The largest metadata value a node can hold.
pub(crate) const META_MAX: u8 = META_MASK as u8;

/// The tag a policy remembers for a key hash: 28 bits derived from its low 32.
///
/// Only the low 32 bits of a hash reach the policy reliably (the owner buffers 32 bits per
/// read), and 4 bits of the node's word hold the metadata. The 32 bits are first multiplied
/// by an odd constant (a bijection), so the 16 hashes that share a tag are scattered over
/// the range rather than neighbours: an owner whose "hashes" are small integers still gets
/// distinct tags. 28 bits tell a slot's occupant from an earlier one in all but one case
/// in 268 million, and as sketch keys they collide among a few thousand resident entries
/// about as rarely.
#[inline]
pub(crate) fn tag_of(hash: u64) -> u32 {
    (hash as u32).wrapping_mul(0x9E37_79B9) & !META_MASK
}

/// The state a policy keeps for one slot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Node {
    pub(crate) links: Links,
    /// The tag ([`tag_of`] the key hash) in the high 28 bits, the metadata in the low 4.
    word: u32,
}

impl Node {
    /// The tag of the resident key, to recognise stale access records and to key the sketch.
    #[inline]
    pub(crate) fn tag(&self) -> u32 {
        self.word & !META_MASK
    }

    /// Policy-defined, at most [`META_MAX`]; zero means "not resident".
    #[inline]
    pub(crate) fn meta(&self) -> u8 {
        (self.word & META_MASK) as u8
    }

    /// Changes the metadata and keeps the tag.
    #[inline]
    pub(crate) fn set_meta(&mut self, meta: u8) {
        debug_assert!(meta <= META_MAX, "metadata {meta} does not fit in 4 bits");
        self.word = (self.word & !META_MASK) | (u32::from(meta) & META_MASK);
    }

    /// Makes the node hold a new key with the given (non-zero) metadata.
    #[inline]
    fn occupy(&mut self, hash: u64, meta: u8) {
        debug_assert!(meta != 0 && meta <= META_MAX, "a resident node needs metadata 1..=15");
        self.word = tag_of(hash) | (u32::from(meta) & META_MASK);
    }
}

/// All nodes, indexed by slot and grown on demand, and the weights of slots once any
/// weight differs from 1.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    nodes: Vec<Node>,
    /// Empty while every weight seen is 1; slots beyond its end weigh 1.
    weights: Vec<u32>,
}

impl Nodes {
    /// The node of a resident slot.
    #[inline]
    pub(crate) fn resident(&self, slot: Slot) -> Option<&Node> {
        self.nodes.get(slot as usize).filter(|n| n.meta() != 0)
    }

    /// The node of a resident slot whose tag matches `hash`: the check every `on_access`
    /// makes so that a stale, buffered read of an earlier occupant is ignored.
    #[inline]
    pub(crate) fn resident_with_hash(&self, slot: Slot, hash: u64) -> Option<&Node> {
        self.resident(slot).filter(|n| n.tag() == tag_of(hash))
    }

    /// Records a new occupant of `slot` (growing the array if needed): its hash, weight and
    /// non-zero metadata. Returns `false`, changing nothing, if the slot is already resident.
    pub(crate) fn occupy(&mut self, slot: Slot, hash: u64, weight: u32, meta: u8) -> bool {
        let i = slot as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, Node::default());
        }
        if self.nodes[i].meta() != 0 {
            return false;
        }
        self.nodes[i].occupy(hash, meta);
        self.set_weight(slot, weight);
        true
    }

    /// The node of a slot known to be inside the array.
    #[inline]
    pub(crate) fn node(&self, slot: Slot) -> &Node {
        &self.nodes[slot as usize]
    }

    /// The metadata of a slot known to be inside the array.
    #[inline]
    pub(crate) fn meta(&self, slot: Slot) -> u8 {
        self.nodes[slot as usize].meta()
    }

    /// Changes the metadata of a slot known to be inside the array.
    #[inline]
    pub(crate) fn set_meta(&mut self, slot: Slot, meta: u8) {
        self.nodes[slot as usize].set_meta(meta);
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

    /// Makes room for `entries` slots in one allocation.
    pub(crate) fn reserve(&mut self, entries: usize) {
        self.nodes.reserve_exact(entries.saturating_sub(self.nodes.len()));
    }

    pub(crate) fn clear(&mut self) {
        self.nodes.clear();
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
    fn tag_and_metadata_do_not_overwrite_each_other() {
        let mut nodes = Nodes::default();
        let hash = 0xFFFF_FFFF_FFFF_FFF5;
        assert!(nodes.occupy(3, hash, 1, 2));
        assert!(!nodes.occupy(3, 0, 1, 1), "a resident slot must not be occupied again");
        nodes.set_meta(3, META_MAX);
        assert_eq!(nodes.meta(3), META_MAX);
        assert_eq!(nodes.node(3).tag(), tag_of(hash));
        assert!(nodes.resident_with_hash(3, hash).is_some());
        assert_eq!(tag_of(hash) & META_MASK, 0);
        // Neighbouring hashes get different tags.
        for other in [hash ^ 0x1, hash ^ 0x10, hash - 15] {
            assert!(nodes.resident_with_hash(3, other).is_none(), "{other:#x}");
        }
        // Bits above the low 32 do not matter: the owner may not pass them.
        assert!(nodes.resident_with_hash(3, hash & 0xFFFF_FFFF).is_some());
        nodes.set_meta(3, 0);
        assert!(nodes.resident(3).is_none());
        assert!(nodes.resident(0).is_none(), "slots grown past are vacant");
    }

    #[test]
    fn small_integer_hashes_get_distinct_tags() {
        // An owner that passes keys as their own hashes must not see neighbours share a tag.
        let tags: std::collections::HashSet<u32> = (0..1u64 << 16).map(tag_of).collect();
        assert_eq!(tags.len(), 1 << 16);
    }

    #[test]
    fn weights_are_stored_only_once_one_differs_from_one() {
        let mut nodes = Nodes::default();
        for s in 0..4 {
            assert!(nodes.occupy(s, u64::from(s) << 4, 1, 1));
        }
        assert!(nodes.weights.is_empty());
        nodes.set_weight(2, 7);
        assert_eq!((nodes.weight(0), nodes.weight(2), nodes.weight(3)), (1, 7, 1));
        // A later slot beyond the array's end weighs 1 until told otherwise.
        assert!(nodes.occupy(9, 9 << 4, 1, 1));
        assert_eq!(nodes.weight(9), 1);
        assert!(nodes.occupy(10, 10 << 4, 5, 1));
        assert_eq!(nodes.weight(10), 5);
        // A new occupant of a weighed slot gets its own weight, 1 included.
        nodes.set_meta(2, 0);
        assert!(nodes.occupy(2, 2 << 4, 1, 1));
        assert_eq!(nodes.weight(2), 1);
        nodes.clear();
        assert_eq!(nodes.weight(10), 1);
    }
}
