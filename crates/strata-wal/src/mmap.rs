//! The one place that needs `unsafe`: mapping log files, read-only for recovery and replay,
//! and read-write for the active segment of a log that does not fsync every append.
// Memory-mapping a file is unsafe in memmap2's API; this module is the only exception to the
// workspace's `unsafe_code = "deny"`, and the SAFETY comment below says why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// Maps all of `file` read-only.
///
/// Callers must not shrink or rewrite the mapped range of the file while the map lives; see the
/// SAFETY comment for how the log guarantees it.
pub(crate) fn map_readonly(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the bytes behind the slice can change, or vanish,
    // if the file is modified while mapped: a concurrent write makes the `&[u8]` observe changing
    // memory, and a truncation below the mapped length makes any access past the new end raise
    // SIGBUS and kill the process. The log only maps its own files, inside a directory it holds
    // an exclusive lock on (no second Strata writer can exist), and it never rewrites bytes it
    // has written: segments only grow by appends past the records a reader reads. (A segment
    // written through `map_shared_rw` is preallocated, so a read map of the active segment
    // also covers its zero tail, into which the writer keeps copying records; readers stop at
    // the last record that existed when they started, which the log lock ordered before
    // them, and never read the tail.) The log's own truncations (torn-tail repair at open,
    // `check_dir --repair`) happen only after every map of that file is dropped: recovery
    // maps, scans, drops the map, and only then truncates. `SegmentMap::seal` cuts a
    // segment's zero tail while a replay may still map it, but only past its last record,
    // which no reader reads. What remains is another program truncating the files behind
    // the log's back, which is outside the contract (as for any database's files).
    unsafe { memmap2::Mmap::map(file) }
}

/// Maps all of `file` (open for reading and writing) shared and writable: stores into the map
/// go to the page cache, as `write(2)` would put them.
#[cfg(target_os = "linux")]
pub(crate) fn map_shared_rw(file: &File) -> io::Result<memmap2::MmapMut> {
    // SAFETY: `MmapMut::map_mut` is unsafe for the reasons given in `map_readonly`, plus one:
    // the map is writable, so another writer of the same bytes would race with it. Only
    // `StdFs::create_mapped` calls this, for a log segment it has just created (under a
    // temporary name, in a directory the log holds the exclusive lock on) and reserved with
    // `fallocate`, so the file is at least as long as the map. The map becomes a `SegmentMap`
    // owned by the log, which stores into it only under its log lock and only past every
    // frame already written; nothing else writes those bytes (appends through the file start
    // only after the map is sealed), and read maps (replay) read only frames written before
    // they were created. The file is never truncated while this map lives:
    // `SegmentMap::seal` drops the map first. Positioned writes into the reserved space
    // (`SegmentMap::write_at`, for large frames) are stores of the same kind, under the same
    // lock, at the same logical end.
    unsafe { memmap2::MmapOptions::new().map_mut(file) }
}

/// Asks the processor to start loading the cache line holding `bytes[at]`, if there is one,
/// without waiting for it: the log calls it a few lines ahead of where it copies frames, so
/// that the copy does not stall on each fresh line of the map (a miss every couple of small
/// frames). Measured on a two-core VM: a 26-byte copy per insert into cold memory added
/// 50 ns to a 118 ns cache insert, 6-14 ns with the prefetch; durable inserts 5-10% faster.
#[inline]
pub(crate) fn prefetch(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(byte) = bytes.get(at) {
        // SAFETY: `_mm_prefetch` is unsafe only because it is a `target_feature` function;
        // SSE is part of the x86_64 baseline. A prefetch is a hint: it reads nothing the
        // program observes, never faults (a hint to a page not present is dropped), and the
        // address comes from a live shared reference.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                std::ptr::from_ref(byte).cast::<i8>(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}
