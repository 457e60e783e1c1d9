//! Recording never allocates: a counting global allocator sees no allocation on the recording
//! thread while counters, gauges and histograms are updated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;
use strata_metrics::{CacheMetrics, Registry};

thread_local! {
    // Const-initialised and without a destructor, so reading it never allocates itself.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts the allocations of each thread, then defers to the system allocator.
struct Counting;

// The one unsafe item of the crate's tests: a `GlobalAlloc` must be an `unsafe impl`.
#[allow(unsafe_code)]
// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// contract `System` fulfils is the one promised; the counter update does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` through `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn recording_does_not_allocate() {
    let registry = Registry::new();
    let m = CacheMetrics::register(&registry, "alloc").expect("valid");
    // The first add on a thread claims its stripe; that one-time step is allowed to allocate.
    m.hits.incr();
    let before = allocations();
    for i in 0..100_000u64 {
        m.hits.incr();
        m.misses.add(i & 3);
        m.record_load(i % 7 != 0, Duration::from_nanos(i * 977));
        m.load_duration.record(u64::MAX - i);
    }
    let after = allocations();
    assert_eq!(after - before, 0, "recording allocated {} times", after - before);
    // The counting is live: a snapshot does allocate, and is seen doing so.
    let snap = registry.snapshot();
    assert!(allocations() > after);
    assert_eq!(snap.counter_sum("strata_cache_hits_total", &[]), 100_001);
}
