//! A striped counter: each thread adds to its own cache line, so concurrent increments do
//! not bounce one line between cores; reads sum the stripes.
//!
//! Atomic invariants: every stripe only ever grows by `fetch_add` (wrapping at `u64::MAX`, which
//! at one increment per nanosecond takes 584 years). All accesses are `Relaxed`: a counter orders
//! no other memory, and once the writers have stopped (joined), the sum of the stripes is exact.
//! A read that races with writers sees each stripe at some value it really held, so it never
//! reports more than has been added.

use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::cell::Cell;

/// The number of stripes. Sixteen lines (2 KiB with 128-byte padding) keep threads apart on
/// machines up to sixteen cores; beyond that threads share stripes, which stays exact and only
/// costs some contention.
const STRIPES: usize = 16;

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
    stripes: [CachePadded<AtomicU64>; STRIPES],
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// The calling thread's stripe, assigned round-robin on its first use and then fixed, so a
/// thread always writes the same line and two threads share a line only past `STRIPES` threads.
#[inline]
fn stripe() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
            s.set(v);
        }
        v
    })
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self { stripes: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))) }
    }

    /// Adds `n`. Never locks, never allocates.
    #[inline]
    pub fn add(&self, n: u64) {
        // Relaxed: the counter orders nothing else; the sum is exact once writers stop.
        self.stripes[stripe()].fetch_add(n, Ordering::Relaxed);
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
    fn add_sums_arbitrary_amounts() {
        let c = Counter::new();
        for n in [0, 1, 7, 1 << 40] {
            c.add(n);
        }
        assert_eq!(c.get(), 8 + (1 << 40));
    }
}
