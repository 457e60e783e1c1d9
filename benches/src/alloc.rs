//! A counting global allocator, to measure the heap a cache uses per entry.
//!
//! A binary opts in with `#[global_allocator] static A: Counting = Counting;`.

#![allow(unsafe_code)] // GlobalAlloc is an unsafe trait; this module only forwards to System.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// Forwards to the system allocator and keeps a running count of live heap bytes.
#[derive(Debug)]
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so this
// allocator upholds exactly the guarantees `System` does; the counter has no effect on them.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's obligations for `realloc` are passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Live heap bytes, if [`Counting`] is the global allocator (0 otherwise).
pub fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Heap bytes a value built by `build` holds (what it allocated and still holds when
/// `build` returns), and the value itself.
pub fn measure<C>(build: impl FnOnce() -> C) -> (isize, C) {
    let before = live_bytes();
    let value = build();
    (live_bytes() - before, value)
}
