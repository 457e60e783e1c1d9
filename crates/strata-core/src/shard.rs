//! One shard of the store: a hash table of slot numbers, a slab of entries, the shard's
//! eviction policy, its read buffer and its timer wheel.
//!
//! # Invariants (all under the shard's lock)
//!
//! - `table` holds exactly the occupied slots of `slab`, each under the hash of its key.
//! - A slot is occupied in `slab` if and only if the policy holds it as resident.
//! - `free` lists exactly the vacant slots below `slab.len()`.
//! - `timing` is empty, or exactly as long as `slab`; it is allocated on the first write
//!   that has a deadline, so caches without time-based features pay nothing for it.
//! - For an occupied slot with timing, `scheduled` is the deadline of the one wheel record
//!   that is live for it (matching generation and deadline), or `NEVER` if there is none;
//!   any other record for that slot is stale and is dropped when it comes due.
//! - `expire_at` is written by readers (time-to-idle) under the read lock; every other
//!   timing field is written only under the write lock.
//! - The policy is used by one thread at a time: through `Mutex::get_mut` under the write
//!   lock, or through `try_lock` by a reader draining the read buffer under the read lock.

use crate::clock::{Epoch, NEVER};
use crate::expiry::{Expiry, RemovalCause};
use crate::read_buffer::ReadBuffer;
// Deadlines use std's atomics even under loom: their only concurrent access is a relaxed
// load or store of a whole u64 by readers holding the shard's read lock, which needs no
// model; the read buffer's protocol is the piece loom checks.
use crate::wheel::{compaction_slack, Due, Rec, Wheel};
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_evict::Policy;

/// How many expired entries or stale records one call may process before it returns.
pub(crate) const EXPIRY_BUDGET: usize = 128;

pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
}

#[derive(Debug)]
pub(crate) struct Timing {
    /// When the entry stops being served (cache nanos; `NEVER` for no deadline).
    pub(crate) expire_at: AtomicU64,
    /// The deadline set at the last write (time to live); time-to-idle never extends past it.
    pub(crate) hard: u64,
    /// When the value was last written (for refresh-after-write).
    pub(crate) written: u64,
    /// The deadline of the live wheel record, or `NEVER`.
    pub(crate) scheduled: u64,
    /// The shard's write generation at the slot's last write (see `Shard::last_gen`):
    /// identifies wheel records and refreshes.
    pub(crate) gen: u32,
}

impl Timing {
    /// The time to live the value was written with (its own, or the cache-wide one), or
    /// `None` if it has none.
    ///
    /// It is not stored: `hard` is `written` plus that time to live, so the difference
    /// gives it back (a deadline saturated below `NEVER` gives a shorter one, which
    /// saturates again when added to a later time). Untimed entries have no `Timing`, and
    /// timed ones carry no field for it.
    pub(crate) fn ttl(&self) -> Option<Duration> {
        (self.hard != NEVER).then(|| Duration::from_nanos(self.hard - self.written))
    }

    fn vacant() -> Self {
        Timing {
            expire_at: AtomicU64::new(NEVER),
            hard: NEVER,
            written: 0,
            scheduled: NEVER,
            gen: 0,
        }
    }
}

/// Everything about time that the shard needs from the cache's configuration.
pub(crate) struct TimeSettings<K, V> {
    pub(crate) ttl: Option<Duration>,
    pub(crate) tti: Option<Duration>,
    pub(crate) expiry: Option<Box<dyn Expiry<K, V>>>,
    pub(crate) refresh: Option<Duration>,
    pub(crate) epoch: Epoch,
}

impl<K: 'static, V: 'static> TimeSettings<K, V> {
    /// Whether reads must look at the clock at all.
    pub(crate) fn reads_need_time(&self) -> bool {
        self.tti.is_some() || self.expiry.is_some() || self.refresh.is_some()
    }

    /// Whether every write gets a deadline or a write time.
    pub(crate) fn writes_need_time(&self) -> bool {
        self.ttl.is_some() || self.reads_need_time()
    }

    fn remaining(now: u64, expire_at: u64) -> Option<Duration> {
        (expire_at != NEVER).then(|| Duration::from_nanos(expire_at.saturating_sub(now)))
    }

    /// `(expire_at, hard)` for a value written at `now`. `previous` is the entry's current
    /// `expire_at` when this write replaces a value.
    fn on_write(
        &self,
        key: &K,
        value: &V,
        now: u64,
        ttl: Option<Duration>,
        previous: Option<u64>,
    ) -> (u64, u64) {
        let hard = ttl.or(self.ttl).map_or(NEVER, |d| Epoch::after(now, d));
        let variable = if let Some(exp) = &self.expiry {
            let at = self.epoch.instant(now);
            let d = match previous {
                None => exp.expire_after_create(key, value, at),
                Some(prev) => exp.expire_after_update(key, value, at, Self::remaining(now, prev)),
            };
            d.map_or(NEVER, |d| Epoch::after(now, d))
        } else {
            self.tti.map_or(NEVER, |d| Epoch::after(now, d))
        };
        (hard.min(variable), hard)
    }

    /// The new `expire_at` after a read at `now`, if the read changes it.
    pub(crate) fn on_read(&self, entry: &Entry<K, V>, timing: &Timing, now: u64) -> Option<u64> {
        let current = timing.expire_at.load(Ordering::Relaxed);
        let next = if let Some(exp) = &self.expiry {
            let d = exp.expire_after_read(
                &entry.key,
                &entry.value,
                self.epoch.instant(now),
                Self::remaining(now, current),
            );
            d.map_or(NEVER, |d| Epoch::after(now, d))
        } else if let Some(tti) = self.tti {
            Epoch::after(now, tti)
        } else {
            return None;
        };
        let next = next.min(timing.hard);
        (next != current).then_some(next)
    }
}

/// Entries taken out under the lock, handed to the listener (or dropped) after unlocking.
///
/// Almost every write removes at most one entry (the one it replaces or one victim), so the
/// first is kept inline: the common write allocates nothing here.
pub(crate) struct Removed<K, V> {
    first: Option<(K, V, RemovalCause)>,
    rest: Vec<(K, V, RemovalCause)>,
}

impl<K, V> Removed<K, V> {
    pub(crate) fn new() -> Self {
        Removed { first: None, rest: Vec::new() }
    }

    pub(crate) fn push(&mut self, key: K, value: V, cause: RemovalCause) {
        if self.first.is_none() {
            self.first = Some((key, value, cause));
        } else {
            self.rest.push((key, value, cause));
        }
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(crate) fn causes(&self) -> impl Iterator<Item = RemovalCause> + '_ {
        self.first.iter().chain(self.rest.iter()).map(|(_, _, c)| *c)
    }

    pub(crate) fn into_iter(self) -> impl Iterator<Item = (K, V, RemovalCause)> {
        self.first.into_iter().chain(self.rest)
    }
}

/// How a shard's policy takes part in sizing the window (W-TinyLFU's recency region) of the
/// whole cache.
///
/// The shards split one workload by hash, so they see statistically the same requests, and
/// one adaptation serves all: the first shard's policy adapts (with its miniature
/// simulations, which cost up to about 70 KiB per instance) and publishes the share it
/// chose in a cell shared by the shards; the others' policies were built as followers
/// ([`strata_evict::PolicyConfig::build_follower`]) and adopt the share at their next write.
/// The cell holds the share's `f64` bits. Its only accesses are relaxed loads and stores of
/// the whole word, made under the shard's write lock; a follower that reads an older value
/// adopts the newer one at a later write, so no ordering with other memory is needed (and,
/// like the deadlines, it needs no loom model).
pub(crate) enum WindowSync {
    /// The only shard: its policy adapts for itself.
    Alone,
    /// The shard whose policy adapts; `published` is what it last stored in the cell.
    Lead { cell: Arc<AtomicU64>, published: u64 },
    /// A shard whose policy follows; `applied` is the last value it adopted from the cell.
    Follow { cell: Arc<AtomicU64>, applied: u64 },
}

/// What an insert did, for statistics.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WriteOutcome {
    pub(crate) inserted: bool,
    pub(crate) updated: bool,
    pub(crate) rejected: bool,
    pub(crate) evicted: u64,
    pub(crate) expired: u64,
}

pub(crate) struct Shard<K, V> {
    pub(crate) reads: ReadBuffer,
    table: HashTable<u32>,
    /// The most entries the table's current allocation can hold (its `capacity()` when it
    /// has no tombstones); see `make_room`.
    table_room: usize,
    slab: Vec<Option<Entry<K, V>>>,
    free: Vec<u32>,
    timing: Vec<Timing>,
    /// Whether `timing` is in use (it then has one element per slab slot).
    timed: bool,
    /// Built by the first write with a deadline: an untimed shard does not carry one (and
    /// boxing it keeps the shard, padded to whole cache-line pairs, at 256 bytes, which
    /// matters with a hundred shards or more).
    wheel: Option<Box<Wheel>>,
    /// The policy. Writers, who hold the shard's write lock, reach it with `get_mut` at no
    /// cost; readers, who hold only the read lock, drain the read buffer into it with
    /// `try_lock`, so a drain never blocks another reader. Either way one thread at a time.
    policy: Mutex<Box<dyn Policy>>,
    capacity: u64,
    window: WindowSync,
    /// The generation given to the last timed write of this shard. Generations come from
    /// this one counter rather than from a counter per slot, so that a key removed and
    /// written again (into another slot, or after `clear` dropped the timing) never gets the
    /// generation an older write of it had: a refresh started before must not mistake the
    /// new value for the one it reloads. It wraps after 2^32 writes of one shard.
    last_gen: u32,
}

/// Packs a read into a buffer record: never zero.
#[inline]
pub(crate) fn read_record(slot: u32, hash: u64) -> u64 {
    ((u64::from(slot) + 1) << 32) | (hash & 0xffff_ffff)
}

impl<K: Hash + Eq + 'static, V: 'static> Shard<K, V> {
    pub(crate) fn new(
        mut policy: Box<dyn Policy>,
        capacity: u64,
        reserve: usize,
        stripes: usize,
        window: WindowSync,
    ) -> Self {
        policy.reserve(reserve);
        let table = HashTable::with_capacity(reserve);
        Shard {
            reads: ReadBuffer::new(stripes),
            table_room: table.capacity(),
            table,
            slab: Vec::with_capacity(reserve),
            free: Vec::new(),
            timing: Vec::new(),
            timed: false,
            wheel: None,
            policy: Mutex::new(policy),
            capacity,
            window,
            last_gen: 0,
        }
    }

    /// Publishes the leader's window share, or adopts the latest one published (see
    /// [`WindowSync`]). Called under the write lock after each write; costs one relaxed
    /// load and no store while the share stays put.
    fn sync_window(&mut self) {
        let policy = self.policy.get_mut();
        match &mut self.window {
            WindowSync::Alone => {}
            WindowSync::Lead { cell, published } => {
                let share = policy.window_share().map_or(0, f64::to_bits);
                if share != *published {
                    *published = share;
                    cell.store(share, Ordering::Relaxed);
                }
            }
            WindowSync::Follow { cell, applied } => {
                let share = cell.load(Ordering::Relaxed);
                if share != *applied {
                    *applied = share;
                    policy.set_window_share(f64::from_bits(share));
                }
            }
        }
    }

    #[inline]
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slab = &self.slab;
        self.table
            .find(hash, |&i| slab[i as usize].as_ref().is_some_and(|e| e.key.borrow() == key))
            .copied()
    }

    /// The entry in an occupied slot.
    #[inline]
    pub(crate) fn entry(&self, slot: u32) -> &Entry<K, V> {
        match &self.slab[slot as usize] {
            Some(e) => e,
            None => unreachable!("the table only holds occupied slots"),
        }
    }

    #[inline]
    pub(crate) fn timing(&self, slot: u32) -> Option<&Timing> {
        self.timing.get(slot as usize)
    }

    /// Whether the entry in `slot` must not be served at `now`.
    #[inline]
    pub(crate) fn is_expired(&self, slot: u32, now: u64) -> bool {
        self.timing(slot).is_some_and(|t| t.expire_at.load(Ordering::Relaxed) <= now)
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether entries here carry deadlines (then writes and reads need the time).
    #[inline]
    pub(crate) fn is_timed(&self) -> bool {
        self.timed
    }

    /// Slots the shard's table and slab hold room for now (for tests of the up-front reserve).
    #[cfg(test)]
    pub(crate) fn reserved_slots(&self) -> (usize, usize) {
        (self.table.capacity(), self.slab.capacity())
    }

    pub(crate) fn weighted_size(&self) -> u64 {
        self.policy.lock().weighted_size()
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn policy_name(&self) -> &'static str {
        self.policy.lock().name()
    }

    /// Replays buffered reads to the policy.
    pub(crate) fn drain_reads(&mut self) {
        // A read that moves a deadline earlier reschedules the wheel itself (`reschedule`,
        // called from `Cache::get`), so replaying reads only informs the policy.
        let policy = self.policy.get_mut();
        self.reads.drain(|r| policy.on_access(((r >> 32) - 1) as u32, r & 0xffff_ffff));
    }

    /// Replays buffered reads to the policy from a reader (holding only the read lock), if
    /// no other thread is draining; returns whether it drained.
    pub(crate) fn try_drain_shared(&self) -> bool {
        let Some(mut policy) = self.policy.try_lock() else { return false };
        self.reads.drain(|r| policy.on_access(((r >> 32) - 1) as u32, r & 0xffff_ffff));
        true
    }

    /// Makes the wheel look at `slot` by its current deadline, after a read moved that
    /// deadline earlier than the one scheduled (an `Expiry` decided so).
    pub(crate) fn reschedule(&mut self, slot: u32, gen: u32) {
        let Some(t) = self.timing.get_mut(slot as usize) else { return };
        let at = *t.expire_at.get_mut();
        if t.gen == gen && at < t.scheduled && self.slab[slot as usize].is_some() {
            t.scheduled = at;
            // A timed slot got its wheel record, and so the shard its wheel, when written.
            self.schedule(Rec { slot, gen, at }, 0);
        }
    }

    /// Bounded housekeeping: replay reads, reclaim up to `EXPIRY_BUDGET` expired entries.
    /// Returns `true` when no expired entry is known to be left.
    pub(crate) fn maintain<S: BuildHasher>(
        &mut self,
        hasher: &S,
        now: u64,
        out: &mut Removed<K, V>,
    ) -> (bool, u64) {
        self.drain_reads();
        self.expire(hasher, now, EXPIRY_BUDGET, out)
    }

    fn expire<S: BuildHasher>(
        &mut self,
        hasher: &S,
        now: u64,
        budget: usize,
        out: &mut Removed<K, V>,
    ) -> (bool, u64) {
        if !self.timed {
            return (true, 0);
        }
        let mut expired = Vec::new();
        let Shard { wheel: Some(wheel), timing, slab, .. } = self else { return (true, 0) };
        let done = wheel.advance(now, budget, |rec| {
            let i = rec.slot as usize;
            let Some(t) = timing.get_mut(i) else { return Due::Done };
            if slab[i].is_none() || t.gen != rec.gen || t.scheduled != rec.at {
                return Due::Done;
            }
            let at = *t.expire_at.get_mut();
            if at <= now {
                t.scheduled = NEVER;
                expired.push(rec.slot);
                Due::Done
            } else if at == NEVER {
                t.scheduled = NEVER;
                Due::Done
            } else {
                t.scheduled = at;
                Due::Reschedule(at)
            }
        });
        let n = expired.len() as u64;
        for slot in expired {
            self.policy.get_mut().on_remove(slot);
            let e = self.take_slot(hasher, slot);
            out.push(e.key, e.value, RemovalCause::Expired);
        }
        (done, n)
    }

    /// Removes `slot` from the table and the slab (the policy must already have forgotten it).
    fn take_slot<S: BuildHasher>(&mut self, hasher: &S, slot: u32) -> Entry<K, V> {
        let hash = match &self.slab[slot as usize] {
            Some(e) => hasher.hash_one(&e.key),
            None => unreachable!("take_slot on a vacant slot"),
        };
        if let Ok(found) = self.table.find_entry(hash, |&j| j == slot) {
            found.remove();
        }
        if let Some(t) = self.timing.get_mut(slot as usize) {
            t.scheduled = NEVER;
            *t.expire_at.get_mut() = NEVER;
        }
        self.free.push(slot);
        self.slab[slot as usize].take().unwrap_or_else(|| unreachable!("checked above"))
    }

    /// Before an insert: if tombstones have used up the table's room while live entries
    /// leave a sixteenth of it free, rebuilds the table at the same size.
    ///
    /// hashbrown marks some removed buckets as tombstones, and they count against its room
    /// until the next rehash. A full cache removes one entry per insert, so the room runs out
    /// sooner or later; hashbrown then rehashes in place only when at most half the room is
    /// live, and otherwise doubles the table. A shard at capacity holds well over half, so
    /// every full shard's table would double after a while (about 6 bytes per entry more,
    /// measured) and stay doubled. Rebuilding at the same size instead costs one pass over the
    /// live entries each time the tombstones fill the free sixteenth or more, an amortized
    /// constant per insert; when live entries fill more than that the table is allowed to grow.
    fn make_room<S: BuildHasher>(&mut self, hasher: &S) {
        let len = self.table.len();
        // (In this order: a tiny or empty table, where a sixteenth is nothing, just grows.)
        if len < self.table.capacity() || (self.table_room - len) * 16 <= self.table_room {
            return;
        }
        let old = std::mem::replace(&mut self.table, HashTable::with_capacity(self.table_room));
        let Shard { table, slab, .. } = self;
        let hash_of = |j: &u32| {
            hasher.hash_one(
                &slab[*j as usize].as_ref().unwrap_or_else(|| unreachable!("occupied")).key,
            )
        };
        for j in old {
            table.insert_unique(hash_of(&j), j, hash_of);
        }
    }

    fn alloc_slot(&mut self) -> u32 {
        if let Some(i) = self.free.pop() {
            return i;
        }
        self.slab.push(None);
        if self.timed {
            self.timing.push(Timing::vacant());
        }
        (self.slab.len() - 1) as u32
    }

    /// Evicts until the policy's weight fits the capacity. `candidate` is the slot just
    /// written: if the policy evicts it, the admission filter rejected it.
    fn evict_to_capacity<S: BuildHasher>(
        &mut self,
        hasher: &S,
        candidate: Option<u32>,
        out: &mut Removed<K, V>,
        outcome: &mut WriteOutcome,
    ) {
        while self.policy.get_mut().weighted_size() > self.capacity {
            let Some(victim) = self.policy.get_mut().evict() else { break };
            if self.slab.get(victim as usize).is_none_or(|s| s.is_none()) {
                // A policy that breaks its contract must not corrupt the map; stop evicting.
                debug_assert!(
                    false,
                    "policy {} evicted a vacant slot {victim}",
                    self.policy.get_mut().name()
                );
                break;
            }
            if Some(victim) == candidate {
                outcome.rejected = true;
            }
            outcome.evicted += 1;
            let e = self.take_slot(hasher, victim);
            out.push(e.key, e.value, RemovalCause::Size);
        }
    }

    fn ensure_timing(&mut self) {
        if !self.timed {
            self.timed = true;
            self.timing.reserve_exact(self.slab.capacity());
            self.timing.resize_with(self.slab.len(), Timing::vacant);
        }
    }

    /// Sets the deadlines of a freshly written slot and schedules its wheel record.
    fn stamp(&mut self, slot: u32, expire_at: u64, hard: u64, now: u64) {
        self.last_gen = self.last_gen.wrapping_add(1);
        let t = &mut self.timing[slot as usize];
        t.gen = self.last_gen;
        *t.expire_at.get_mut() = expire_at;
        t.hard = hard;
        t.written = now;
        t.scheduled = expire_at;
        if expire_at != NEVER {
            let rec = Rec { slot, gen: t.gen, at: expire_at };
            self.schedule(rec, now);
        }
    }

    /// Schedules a wheel record (building the wheel at its first one), and compacts the
    /// wheel when stale records have piled up.
    fn schedule(&mut self, rec: Rec, now: u64) {
        let wheel = self.wheel.get_or_insert_with(|| Box::new(Wheel::new(now)));
        wheel.schedule(rec);
        if wheel.needs_compaction(self.table.len(), compaction_slack(self.capacity)) {
            self.compact_wheel();
        }
    }

    /// Drops the wheel records that no longer stand for a live deadline (the same test
    /// `expire` applies when they come due), so that the wheel stays proportional to the
    /// entries however fast they are rewritten.
    fn compact_wheel(&mut self) {
        let Shard { wheel: Some(wheel), timing, slab, .. } = self else { return };
        wheel.retain(|rec| {
            let i = rec.slot as usize;
            slab.get(i).is_some_and(Option::is_some)
                && timing.get(i).is_some_and(|t| t.gen == rec.gen && t.scheduled == rec.at)
        });
    }

    /// Inserts or replaces. `weight` has been checked to fit the shard's capacity.
    #[allow(clippy::too_many_arguments)] // One call site; a struct would only rename these.
    pub(crate) fn insert<S: BuildHasher>(
        &mut self,
        hasher: &S,
        time: &TimeSettings<K, V>,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        ttl: Option<Duration>,
        now: u64,
        out: &mut Removed<K, V>,
    ) -> WriteOutcome {
        let mut outcome = WriteOutcome::default();
        // Buffered reads were replayed by the caller (`Cache::lock_for_write`).
        let (_, expired) = self.expire(hasher, now, EXPIRY_BUDGET, out);
        outcome.expired = expired;
        let timed = ttl.is_some() || time.writes_need_time() || self.timed;
        if timed {
            self.ensure_timing();
        }
        let slot = match self.find(hash, &key) {
            Some(slot) => {
                let previous = self.timing(slot).map(|t| t.expire_at.load(Ordering::Relaxed));
                let was_expired = previous.is_some_and(|p| p <= now);
                let (expire_at, hard) = if timed {
                    time.on_write(&key, &value, now, ttl, previous.filter(|_| !was_expired))
                } else {
                    (NEVER, NEVER)
                };
                let entry = self.slab[slot as usize]
                    .as_mut()
                    .unwrap_or_else(|| unreachable!("found in table"));
                let old = std::mem::replace(&mut entry.value, value);
                let old_key = std::mem::replace(&mut entry.key, key);
                let cause =
                    if was_expired { RemovalCause::Expired } else { RemovalCause::Replaced };
                out.push(old_key, old, cause);
                self.policy.get_mut().on_update(slot, weight);
                if timed {
                    self.stamp(slot, expire_at, hard, now);
                }
                outcome.updated = true;
                slot
            }
            None => {
                let (expire_at, hard) = if timed {
                    time.on_write(&key, &value, now, ttl, None)
                } else {
                    (NEVER, NEVER)
                };
                self.make_room(hasher);
                let slot = self.alloc_slot();
                self.slab[slot as usize] = Some(Entry { key, value });
                let Shard { table, slab, .. } = self;
                table.insert_unique(hash, slot, |&j| {
                    hasher.hash_one(
                        &slab[j as usize].as_ref().unwrap_or_else(|| unreachable!("occupied")).key,
                    )
                });
                self.table_room = self.table_room.max(self.table.capacity());
                self.policy.get_mut().on_insert(slot, hash, weight);
                if timed {
                    self.stamp(slot, expire_at, hard, now);
                }
                outcome.inserted = true;
                slot
            }
        };
        self.evict_to_capacity(hasher, Some(slot), out, &mut outcome);
        self.sync_window();
        outcome
    }

    /// Removes `key` if present. Returns the value if it was live, and whether an entry
    /// (live or expired) was taken out.
    pub(crate) fn remove<Q, S>(
        &mut self,
        hasher: &S,
        hash: u64,
        key: &Q,
        now: u64,
        out: &mut Removed<K, V>,
    ) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        S: BuildHasher,
        V: Clone,
    {
        // No replay of buffered reads: records of the removed slot are recognized as stale.
        let slot = self.find(hash, key)?;
        let expired = self.is_expired(slot, now);
        self.policy.get_mut().on_remove(slot);
        let e = self.take_slot(hasher, slot);
        if expired {
            out.push(e.key, e.value, RemovalCause::Expired);
            None
        } else {
            let v = e.value.clone();
            out.push(e.key, e.value, RemovalCause::Explicit);
            Some(v)
        }
    }

    /// Removes every entry `pred` selects (expired entries go regardless, as `Expired`).
    pub(crate) fn retain<S: BuildHasher>(
        &mut self,
        hasher: &S,
        now: u64,
        mut remove: impl FnMut(&K, &V) -> bool,
        out: &mut Removed<K, V>,
    ) -> (u64, u64) {
        self.drain_reads();
        let mut doomed = Vec::new();
        for (i, e) in self.slab.iter().enumerate() {
            if let Some(e) = e {
                let slot = i as u32;
                if self.is_expired(slot, now) {
                    doomed.push((slot, RemovalCause::Expired));
                } else if remove(&e.key, &e.value) {
                    doomed.push((slot, RemovalCause::Explicit));
                }
            }
        }
        let (mut explicit, mut expired) = (0, 0);
        for (slot, cause) in doomed {
            self.policy.get_mut().on_remove(slot);
            let e = self.take_slot(hasher, slot);
            match cause {
                RemovalCause::Expired => expired += 1,
                _ => explicit += 1,
            }
            out.push(e.key, e.value, cause);
        }
        (explicit, expired)
    }

    /// Empties the shard, handing every entry to `out` as `Explicit` (or `Expired`).
    pub(crate) fn clear(&mut self, now: u64, out: &mut Removed<K, V>) -> (u64, u64) {
        self.reads.drain(|_| {});
        let (mut explicit, mut expired) = (0, 0);
        for (i, e) in std::mem::take(&mut self.slab).into_iter().enumerate() {
            if let Some(e) = e {
                let cause = if self.is_expired(i as u32, now) {
                    expired += 1;
                    RemovalCause::Expired
                } else {
                    explicit += 1;
                    RemovalCause::Explicit
                };
                out.push(e.key, e.value, cause);
            }
        }
        self.table.clear();
        self.free.clear();
        self.timing.clear();
        self.timed = false;
        self.wheel = None;
        self.policy.get_mut().clear();
        (explicit, expired)
    }

    /// Changes the capacity and evicts down to it.
    pub(crate) fn set_capacity<S: BuildHasher>(
        &mut self,
        hasher: &S,
        capacity: u64,
        out: &mut Removed<K, V>,
    ) -> u64 {
        self.capacity = capacity;
        self.policy.get_mut().set_capacity(capacity);
        self.drain_reads();
        let mut outcome = WriteOutcome::default();
        self.evict_to_capacity(hasher, None, out, &mut outcome);
        outcome.evicted
    }

    /// Runs `f` on the live value of `key` (if any) with exclusive access, for the entry API.
    pub(crate) fn live_value<Q>(&self, hash: u64, key: &Q, now: u64) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slot = self.find(hash, key)?;
        (!self.is_expired(slot, now)).then(|| &self.entry(slot).value)
    }

    /// Clones up to `limit` live entries starting at slot `from`; returns the next slot to
    /// look at, or `None` at the end. For weakly consistent iteration.
    pub(crate) fn snapshot_from(
        &self,
        from: usize,
        limit: usize,
        now: u64,
        into: &mut Vec<(K, V)>,
    ) -> Option<usize>
    where
        K: Clone,
        V: Clone,
    {
        let mut i = from;
        while i < self.slab.len() {
            if into.len() >= limit {
                return Some(i);
            }
            if let Some(e) = &self.slab[i] {
                if !self.is_expired(i as u32, now) {
                    into.push((e.key.clone(), e.value.clone()));
                }
            }
            i += 1;
        }
        None
    }

    /// The write generation of the entry for `key` and the time to live its value was
    /// written with, for refresh: the refresh writes only over that generation, and gives
    /// its value the same time to live.
    pub(crate) fn generation_and_ttl<Q>(
        &self,
        hash: u64,
        key: &Q,
    ) -> Option<(u32, Option<Duration>)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slot = self.find(hash, key)?;
        self.timing(slot).map(|t| (t.gen, t.ttl()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use strata_evict::PolicyConfig;

    /// Time settings with no cache-wide expiry (a write may still carry its own TTL).
    fn no_cache_wide_expiry() -> TimeSettings<u64, u64> {
        TimeSettings {
            ttl: None,
            tti: None,
            expiry: None,
            refresh: None,
            epoch: Epoch::new(Instant::now()),
        }
    }

    #[test]
    fn a_full_shard_under_churn_keeps_its_table_size_and_finds_every_entry() {
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let capacity = 1000;
        let mut shard: Shard<u64, u64> =
            Shard::new(PolicyConfig::Lru.build(capacity, 1), capacity, 1001, 1, WindowSync::Alone);
        let time = no_cache_wide_expiry();
        let room = shard.table_room;
        // Every insert past the first thousand evicts one entry, so tombstones keep forming;
        // 200 inserts per slot is far more than the table's free room.
        for key in 0..200_000u64 {
            let mut out = Removed::new();
            let hash = hasher.hash_one(key);
            shard.insert(&hasher, &time, hash, key, key, 1, None, 0, &mut out);
        }
        assert_eq!(shard.len(), 1000);
        assert_eq!(shard.table_room, room, "the table grew instead of being rebuilt");
        // LRU under a sequential stream keeps the most recent thousand keys.
        for key in 199_000..200_000u64 {
            let slot = shard.find(hasher.hash_one(key), &key);
            assert!(slot.is_some_and(|s| shard.entry(s).value == key), "key {key} lost");
        }
        assert!(shard.find(hasher.hash_one(0u64), &0).is_none());
    }

    /// Rewriting a few keys with a long TTL leaves a stale wheel record per write; the wheel
    /// must stay proportional to the entries, not to the writes.
    #[test]
    fn rewrites_with_a_ttl_do_not_grow_the_wheel_without_bound() {
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let mut shard: Shard<u64, u64> =
            Shard::new(PolicyConfig::Lru.build(100, 1), 100, 101, 1, WindowSync::Alone);
        let time = no_cache_wide_expiry();
        let ttl = Some(std::time::Duration::from_secs(3600));
        let mut most = 0;
        for i in 0..100_000u64 {
            let key = i % 100;
            let mut out = Removed::new();
            shard.insert(&hasher, &time, hasher.hash_one(key), key, i, 1, ttl, 1, &mut out);
            most = most.max(shard.wheel.as_ref().map_or(0, |w| w.len()));
        }
        assert_eq!(shard.len(), 100);
        assert!(
            most <= 2 * 100 + compaction_slack(100) + 1,
            "the wheel held {most} records for 100 entries"
        );
        // Compaction keeps every live deadline: each entry still expires.
        let later = 3601 * 1_000_000_000;
        let mut out = Removed::new();
        for _ in 0..1000 {
            if shard.expire(&hasher, later, EXPIRY_BUDGET, &mut out).0 {
                break;
            }
        }
        assert_eq!(shard.len(), 0, "every entry expired");
    }

    #[test]
    fn the_first_shard_sizes_the_window_and_the_others_follow_at_their_next_write() {
        let cache = crate::Cache::<u64, u64>::builder()
            .max_capacity(40_000)
            .shards(4)
            .build()
            .expect("valid configuration");
        let share = |i: usize| cache.shard_at(i).write().policy.get_mut().window_share();
        for i in 0..4 {
            let (lead, follow) = {
                let shard = cache.shard_at(i).read();
                let sync = &shard.window;
                (matches!(sync, WindowSync::Lead { .. }), matches!(sync, WindowSync::Follow { .. }))
            };
            assert_eq!((lead, follow), (i == 0, i > 0), "shard {i}");
            assert_eq!(share(i), Some(0.01));
        }
        // Stand in for an adaptation of the leader; it is published at its next write.
        cache.shard_at(0).write().policy.get_mut().set_window_share(0.5);
        assert_eq!(share(1), Some(0.01), "followers adopt a share only when it is published");
        // Enough keys that every shard is written after the leader.
        for k in 0..1000 {
            cache.insert(k, k);
        }
        for i in 0..4 {
            assert_eq!(share(i), Some(0.5), "shard {i}");
        }
    }
}
