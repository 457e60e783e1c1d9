//! An intrusive doubly linked list over slot numbers, the building block of the queue-based
//! policies. Nodes live in one `Vec` indexed by slot; a slot belongs to at most one list.

use crate::Slot;

/// "No slot": the end of a list.
pub(crate) const NIL: Slot = Slot::MAX;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Links {
    pub(crate) prev: Slot,
    pub(crate) next: Slot,
}

impl Default for Links {
    fn default() -> Self {
        Links { prev: NIL, next: NIL }
    }
}

/// A list's ends and length. The links themselves are stored by the policy, so that several
/// lists (window, probation, protected) share one node array.
#[derive(Clone, Copy, Debug)]
pub(crate) struct List {
    head: Slot,
    tail: Slot,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        List { head: NIL, tail: NIL, len: 0 }
    }
}

/// Read and write access to the links of every slot.
pub(crate) trait LinkStore {
    fn links(&self, slot: Slot) -> Links;
    fn links_mut(&mut self, slot: Slot) -> &mut Links;
}

impl List {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The least recently pushed slot.
    pub(crate) fn front(&self) -> Option<Slot> {
        (self.head != NIL).then_some(self.head)
    }

    /// The most recently pushed slot.
    pub(crate) fn back(&self) -> Option<Slot> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Appends `slot` at the back (most recent end).
    pub(crate) fn push_back(&mut self, store: &mut impl LinkStore, slot: Slot) {
        *store.links_mut(slot) = Links { prev: self.tail, next: NIL };
        if self.tail == NIL {
            self.head = slot;
        } else {
            store.links_mut(self.tail).next = slot;
        }
        self.tail = slot;
        self.len += 1;
    }

    /// Unlinks `slot`, which must be in this list.
    pub(crate) fn unlink(&mut self, store: &mut impl LinkStore, slot: Slot) {
        let Links { prev, next } = store.links(slot);
        if prev == NIL {
            self.head = next;
        } else {
            store.links_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            store.links_mut(next).prev = prev;
        }
        *store.links_mut(slot) = Links::default();
        self.len -= 1;
    }

    /// Moves `slot`, which must be in this list, to the back.
    pub(crate) fn move_to_back(&mut self, store: &mut impl LinkStore, slot: Slot) {
        if self.tail != slot {
            self.unlink(store, slot);
            self.push_back(store, slot);
        }
    }

    /// Removes and returns the front slot.
    pub(crate) fn pop_front(&mut self, store: &mut impl LinkStore) -> Option<Slot> {
        let slot = self.front()?;
        self.unlink(store, slot);
        Some(slot)
    }

    pub(crate) fn clear(&mut self) {
        *self = List::default();
    }
}
