//! A gauge: one signed value that is set or moved, such as an entry count or a queue depth.
//!
//! Atomic invariant: the value is one `AtomicI64` accessed `Relaxed`; a gauge orders no other
//! memory, and a reader sees some value the gauge really held.

use crate::sync::{AtomicI64, Ordering};

/// A value that goes up and down. Not striped: `set` needs one place to write, and gauges are
/// written far less often than counters (on maintenance, not on every lookup).
///
/// ```
/// let depth = strata_metrics::Gauge::new();
/// depth.set(10);
/// depth.add(-3);
/// assert_eq!(depth.get(), 7);
/// ```
#[derive(Debug)]
pub struct Gauge {
    value: AtomicI64,
}

impl Default for Gauge {
    fn default() -> Self {
        Self::new()
    }
}

impl Gauge {
    /// A gauge at zero.
    pub fn new() -> Self {
        Self { value: AtomicI64::new(0) }
    }

    /// Replaces the value.
    #[inline]
    pub fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
    }

    /// Adds `delta` (negative to subtract), wrapping on overflow.
    #[inline]
    pub fn add(&self, delta: i64) {
        self.value.fetch_add(delta, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// Subtracts one.
    #[inline]
    pub fn decr(&self) {
        self.add(-1);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_add_incr_decr() {
        let g = Gauge::new();
        g.set(5);
        g.add(10);
        g.incr();
        g.decr();
        g.decr();
        g.add(-20);
        assert_eq!(g.get(), -6);
    }
}
