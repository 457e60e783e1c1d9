//! Eviction and admission policies for Strata.
//!
//! A cache owns its entries; a [`Policy`] owns only the *order* in which they should leave.
//! The owner tells the policy what happened to each resident entry (identified by a dense
//! [`Slot`] number and the keyed hash of its key) and asks it which entry to evict when the
//! total weight is over capacity. Keeping the two apart lets the owner serve reads without
//! touching the policy: reads are recorded in buffers and replayed to the policy in batches.
//!
//! **Invariant: strata-evict never does IO and never locks.** A policy is plain data mutated
//! through `&mut self`; the owner provides the mutual exclusion.
//!
//! Policies are chosen by value with [`PolicyConfig`], so users never name a generic.

#![forbid(unsafe_code)]

mod list;
mod lru;

pub use lru::Lru;

use std::fmt;

/// The owner's number for a resident entry.
///
/// Slots are dense (the owner keeps them below the number of entries it has ever held at
/// once, plus a small constant) and are reused after an entry leaves, so a policy may keep
/// per-entry state in a `Vec` indexed by slot and grow it on demand.
pub type Slot = u32;

/// An eviction and admission policy.
///
/// # What the caller guarantees
///
/// - `on_insert` is called once for a slot that is not resident; after it the slot is
///   resident until the policy returns it from [`Policy::evict`] or the owner calls
///   [`Policy::on_remove`] for it.
/// - `on_update` and `on_remove` are only called for resident slots.
/// - `on_access` may be called late and for a slot that has been reused since the access
///   happened (reads are buffered); the low 32 bits of the `hash` passed are those of the
///   hash of the key that was read (the higher bits may be zero: the owner buffers only 32),
///   so a policy that remembers `hash as u32` can ignore a record that no longer matches. It
///   may also be called for a slot that is not resident at all, and must then do nothing.
/// - Calls are serialized: a policy is never used from two threads at once.
///
/// # What the policy must do
///
/// - Keep [`Policy::weighted_size`] equal to the sum of the weights of resident slots.
/// - From [`Policy::evict`], return a resident slot (and forget it) whenever any slot is
///   resident, so that the owner's loop `while weighted_size() > capacity() { evict() }`
///   always terminates. It may return the entry that was just inserted: that is how an
///   admission filter rejects a candidate.
/// - Never panic on any sequence of calls that respects the caller's guarantees, and never
///   allocate more than a constant amount per resident slot (plus a sketch sized by capacity).
pub trait Policy: Send + fmt::Debug {
    /// A short, stable name used in reports ("lru", "tinylfu", ...).
    fn name(&self) -> &'static str;

    /// A new entry became resident in `slot`.
    fn on_insert(&mut self, slot: Slot, hash: u64, weight: u32);

    /// A resident entry was read (see the caller's guarantees on staleness).
    fn on_access(&mut self, slot: Slot, hash: u64);

    /// A resident entry's value was replaced; its weight may have changed.
    fn on_update(&mut self, slot: Slot, weight: u32);

    /// The owner removed a resident entry (explicitly, or because it expired).
    fn on_remove(&mut self, slot: Slot);

    /// Picks a resident entry to evict, forgets it, and returns it; `None` only when nothing
    /// is resident.
    fn evict(&mut self) -> Option<Slot>;

    /// The sum of the weights of resident entries.
    fn weighted_size(&self) -> u64;

    /// The number of resident entries.
    fn len(&self) -> usize;

    /// Whether no entry is resident.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight the owner wants to stay under.
    fn capacity(&self) -> u64;

    /// Changes the capacity; the owner evicts afterwards until the size fits.
    fn set_capacity(&mut self, capacity: u64);

    /// Forgets every resident entry at once (the owner cleared its storage).
    fn clear(&mut self);
}

/// Which policy to use, chosen by value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PolicyConfig {
    /// Least recently used.
    #[default]
    Lru,
}

impl PolicyConfig {
    /// Builds the policy for a region of `capacity` weight units.
    ///
    /// `seed` keys any randomness (admission jitter); give each instance its own.
    pub fn build(&self, capacity: u64, seed: u64) -> Box<dyn Policy> {
        let _ = seed;
        match self {
            PolicyConfig::Lru => Box::new(Lru::new(capacity)),
        }
    }

    /// The policy's short name.
    pub fn name(&self) -> &'static str {
        match self {
            PolicyConfig::Lru => "lru",
        }
    }
}
