//! Striped, lossy buffers of read events (the BP-Wrapper technique Caffeine uses).
//!
//! A read must tell the eviction policy that an entry was used, but the policy is plain data
//! behind the shard's write lock. Instead of taking that lock on every read, a reader appends
//! a record to a small buffer and the records are replayed to the policy in a batch by
//! whoever next holds the write lock. Buffers are striped by thread so that two cores reading
//! the same shard do not write the same cache line; they are lossy: a record that finds its
//! stripe full is dropped, which only makes the policy's view of recency slightly coarser.
//!
//! # Protocol and invariants
//!
//! - `record` is called by readers, concurrently with each other and with a drain. Drains are
//!   serialized by the caller (the policy's mutex, or the shard's write lock).
//! - Records may be lost (a full stripe, two readers racing for one index, a reader writing
//!   an index a drain has just emptied); none is ever drained twice or seen torn.
//! - `head` is the next free index of a stripe. A reader that loads `i < STRIPE_LEN` stores
//!   `i + 1` and then a non-zero record at `i`. Two readers sharing a stripe may race and
//!   write the same index; one record is then lost, which the lossy design allows. Zero
//!   means "empty", and a record is one atomic store, so a drain never sees a torn record.
//! - Once `head >= STRIPE_LEN` the stripe is full; readers stop advancing it (so it never
//!   passes `STRIPE_LEN`) and report that a drain is due.
//! - `drain` takes every non-zero record, zeroes the slots and resets `head` to 0.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;
use std::cell::Cell;

/// Records per stripe: 15 records and the head fill two cache lines.
pub(crate) const STRIPE_LEN: usize = 15;

struct Stripe {
    head: AtomicUsize,
    slots: [AtomicU64; STRIPE_LEN],
}

impl Stripe {
    fn new() -> Self {
        Stripe { head: AtomicUsize::new(0), slots: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

pub(crate) struct ReadBuffer {
    stripes: Box<[CachePadded<Stripe>]>,
    mask: usize,
}

impl std::fmt::Debug for ReadBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuffer").field("stripes", &self.stripes.len()).finish()
    }
}

/// This thread's stripe number, assigned round-robin on first use.
fn thread_index() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|c| {
        let mut v = c.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            c.set(v);
        }
        v
    })
}

impl ReadBuffer {
    /// A buffer with `stripes` stripes (rounded up to a power of two).
    pub(crate) fn new(stripes: usize) -> Self {
        let n = stripes.max(1).next_power_of_two();
        ReadBuffer {
            stripes: (0..n).map(|_| CachePadded::new(Stripe::new())).collect(),
            mask: n - 1,
        }
    }

    /// Appends `record` (non-zero) to this thread's stripe. Returns `true` when the stripe is
    /// full and the caller should try to drain. Caller holds the shard's read lock.
    #[inline]
    pub(crate) fn record(&self, record: u64) -> bool {
        debug_assert_ne!(record, 0);
        let stripe = &self.stripes[thread_index() & self.mask];
        // A plain load and store, not a `fetch_add`: a locked instruction on every read
        // would cost as much as the rest of the bookkeeping. Stripes are per thread, so
        // races are rare, and a race only loses or overwrites a record: the buffer is lossy
        // by design, and every stored record is whole (a single atomic store).
        let i = stripe.head.load(Ordering::Relaxed);
        if i >= STRIPE_LEN {
            return true;
        }
        stripe.head.store(i + 1, Ordering::Relaxed);
        stripe.slots[i].store(record, Ordering::Relaxed);
        i + 1 >= STRIPE_LEN
    }

    /// Hands every buffered record to `f` and empties the buffer.
    ///
    /// Callers serialize drains (the policy's mutex, or the shard's write lock); readers may
    /// record concurrently. A record written during a drain is either drained now, drained
    /// next time, or overwritten (lost): the buffer is lossy. None is ever drained twice or
    /// torn, because a slot is emptied by the only drainer right after it is read, and a
    /// record is one atomic store.
    pub(crate) fn drain(&self, mut f: impl FnMut(u64)) {
        for stripe in self.stripes.iter() {
            let n = stripe.head.load(Ordering::Relaxed).min(STRIPE_LEN);
            for slot in &stripe.slots[..n] {
                let r = slot.load(Ordering::Relaxed);
                if r != 0 {
                    slot.store(0, Ordering::Relaxed);
                    f(r);
                }
            }
            stripe.head.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(strata_loom)))]
mod tests {
    use super::*;

    #[test]
    fn full_stripe_asks_for_a_drain_and_drain_returns_everything() {
        let buf = ReadBuffer::new(1);
        let mut full_at = None;
        for r in 1..=STRIPE_LEN as u64 + 3 {
            if buf.record(r) && full_at.is_none() {
                full_at = Some(r);
            }
        }
        assert_eq!(full_at, Some(STRIPE_LEN as u64));
        let mut seen = Vec::new();
        buf.drain(|r| seen.push(r));
        assert_eq!(seen, (1..=STRIPE_LEN as u64).collect::<Vec<_>>());
        let mut again = Vec::new();
        buf.drain(|r| again.push(r));
        assert!(again.is_empty(), "a drain empties the buffer");
        assert!(!buf.record(7), "an emptied stripe accepts records again");
    }
}

#[cfg(all(test, strata_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};

    /// Two readers record while a third thread drains concurrently (as a reader holding the
    /// policy's mutex does): every drained record is one that was written, whole, and none
    /// is drained twice; records may be lost, never invented.
    #[test]
    fn loom_records_are_drained_at_most_once() {
        loom::model(|| {
            let buf = Arc::new(ReadBuffer::new(1));
            let readers: Vec<_> = (0..2u64)
                .map(|t| {
                    let buf = Arc::clone(&buf);
                    loom::thread::spawn(move || {
                        for k in 0..2u64 {
                            buf.record(t * 10 + k + 1);
                        }
                    })
                })
                .collect();
            let drains = Arc::new(Mutex::new(Vec::new()));
            let drainer = {
                let (buf, drains) = (Arc::clone(&buf), Arc::clone(&drains));
                loom::thread::spawn(move || {
                    let mut d = drains.lock().unwrap();
                    buf.drain(|r| d.push(r));
                })
            };
            for r in readers {
                r.join().unwrap();
            }
            drainer.join().unwrap();
            let mut drained = drains.lock().unwrap().clone();
            buf.drain(|r| drained.push(r));
            drained.sort_unstable();
            let before = drained.len();
            drained.dedup();
            assert_eq!(before, drained.len(), "a record was drained twice");
            assert!(drained.iter().all(|r| [1, 2, 11, 12].contains(r)), "{drained:?}");
        });
    }
}
