//! A striped counter whose hot path is a plain load and store on a cache line the calling
//! thread owns; reads sum the stripes.
//!
//! # Ownership protocol
//!
//! There are [`STRIPES`] owned stripes and one shared stripe per counter, and one process-wide
//! table of [`STRIPES`] slot flags. A thread claims a free slot on its first add (a
//! compare-exchange, `Acquire`) and releases it when it exits (a store, `Release`, from its
//! thread-local destructor). While it holds slot `i`, it is the only writer of stripe `i` of
//! *every* counter, so it adds with a relaxed load and a relaxed store (plain moves on x86 and
//! ARM, no locked read-modify-write). A thread that finds no free slot, or adds while its
//! thread-locals are being destroyed, uses the shared stripe with `fetch_add`.
//!
//! # Atomic invariants
//!
//! - A stripe is written only by its slot's holder (owned stripes) or by `fetch_add` (the
//!   shared stripe), so no increment is ever lost: the sum is exact once writers stop.
//! - A slot's release happens-before the next claim of it (`Release` store, `Acquire`
//!   exchange), so the next holder's loads see the previous holder's final stores.
//! - Every access to a stripe is atomic, so a reader racing with writers sees each stripe at
//!   some value it really held and never reports more than has been added.
//! - Stripes wrap at `u64::MAX`, which at one increment per nanosecond takes 584 years.
//!
//! Under `cfg(strata_loom)` every add takes the shared `fetch_add` path (loom cannot follow a
//! process-wide table in a `static`), and the claim/release protocol is modelled separately.

use crate::sync::{AtomicBool, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// The number of owned stripes: threads beyond the sixteenth (at one time) share one stripe
/// through `fetch_add`, which stays exact and only costs contention. 17 padded lines make a
/// counter 2.1 KiB.
const STRIPES: usize = 16;

/// The index of the shared stripe.
const SHARED: usize = STRIPES;

/// A monotonically increasing counter, exact under concurrency.
///
/// ```
/// let hits = strata_metrics::Counter::new();
/// hits.incr();
/// hits.add(2);
/// assert_eq!(hits.get(), 3);
/// ```
#[derive(Debug)]
pub struct Counter {
    stripes: [CachePadded<AtomicU64>; STRIPES + 1],
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// Claims the first free slot in `slots`, or returns [`SHARED`] when all are taken.
// Under loom only the model calls the protocol functions; the counter itself never does.
#[cfg_attr(strata_loom, allow(dead_code))]
pub(crate) fn claim(slots: &[AtomicBool]) -> usize {
    slots
        .iter()
        .position(|s| s.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok())
        .unwrap_or(SHARED)
}

/// Releases slot `i`, publishing every store its holder made before.
#[cfg_attr(strata_loom, allow(dead_code))]
pub(crate) fn release(slots: &[AtomicBool], i: usize) {
    if let Some(s) = slots.get(i) {
        s.store(false, Ordering::Release);
    }
}

#[cfg(not(strata_loom))]
mod slot {
    use super::{claim, release, AtomicBool, SHARED, STRIPES};

    /// The process-wide slot table: `true` while some live thread holds the slot.
    static CLAIMED: [AtomicBool; STRIPES] = [const { AtomicBool::new(false) }; STRIPES];

    /// A thread's claim on one slot, released when the thread exits.
    struct Held(usize);

    impl Drop for Held {
        fn drop(&mut self) {
            release(&CLAIMED, self.0);
        }
    }

    thread_local! {
        static HELD: Held = Held(claim(&CLAIMED));
    }

    /// The calling thread's stripe: its own slot, or the shared stripe.
    #[inline]
    pub(super) fn current() -> usize {
        HELD.try_with(|h| h.0).unwrap_or(SHARED)
    }
}

#[cfg(strata_loom)]
mod slot {
    /// Under loom every add is a `fetch_add` on the shared stripe.
    #[inline]
    pub(super) fn current() -> usize {
        super::SHARED
    }
}

/// Adds `n` to `stripe`, as the holder of its slot (`owned`) or through `fetch_add`.
#[inline]
pub(crate) fn add_to(stripe: &AtomicU64, n: u64, owned: bool) {
    if owned {
        // Only this thread writes this stripe while it holds the slot, so the load cannot be
        // stale and no concurrent store can be overwritten.
        stripe.store(stripe.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    } else {
        stripe.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self { stripes: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))) }
    }

    /// Adds `n`. Never locks, never allocates; normally no locked instruction either.
    #[inline]
    pub fn add(&self, n: u64) {
        let i = slot::current();
        if let Some(stripe) = self.stripes.get(i) {
            add_to(stripe, n, i != SHARED);
        }
    }

    /// Adds one.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// The current total: exact when no thread is adding, otherwise a value between the totals
    /// before and after the concurrent adds.
    pub fn get(&self) -> u64 {
        self.stripes.iter().fold(0u64, |acc, s| acc.wrapping_add(s.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn exact_under_concurrency() {
        let c = Arc::new(Counter::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || (0..10_000).for_each(|_| c.incr()))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.get(), 40_000);
    }

    #[test]
    fn more_threads_than_slots_stay_exact() {
        // Twice as many threads as slots, all alive at once (the barriers keep every thread
        // from exiting before all have added), so at least half of them must take the shared
        // stripe; later rounds reuse the slots released by earlier threads.
        let c = Arc::new(Counter::new());
        let threads = 2 * STRIPES;
        for _round in 0..3 {
            let barrier = Arc::new(std::sync::Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (c, barrier) = (Arc::clone(&c), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        (0..1_000).for_each(|_| c.incr());
                        barrier.wait();
                    })
                })
                .collect();
            handles.into_iter().for_each(|h| h.join().unwrap());
        }
        assert_eq!(c.get(), 3 * threads as u64 * 1_000);
        let shared = c.stripes[SHARED].load(Ordering::Relaxed);
        assert!(shared >= 3 * STRIPES as u64 * 1_000, "shared stripe took {shared}");
    }

    #[test]
    fn add_sums_arbitrary_amounts() {
        let c = Counter::new();
        for n in [0, 1, 7, 1 << 40] {
            c.add(n);
        }
        assert_eq!(c.get(), 8 + (1 << 40));
    }
}
