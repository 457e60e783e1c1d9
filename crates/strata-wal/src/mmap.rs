//! Mapping log files, read-only for recovery and replay, and read-write for the active
//! segment of a log that does not fsync every append.
// Memory-mapping a file is unsafe in memmap2's API; this module and `crc` are the only
// exceptions to the workspace's `unsafe_code = "deny"`, and the SAFETY comments say why each
// use is sound.
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

/// Faults in the pages of the `len` bytes at address `addr` writable, as a first store into
/// each would (`MADV_POPULATE_WRITE`: the kernel allocates and zeroes each page, maps it and
/// marks it dirty), without storing anything. The prefault thread of a mapped segment calls
/// it ahead of the appender, which then finds its pages present.
#[cfg(target_os = "linux")]
pub(crate) fn populate_write(addr: usize, len: usize) -> std::io::Result<()> {
    // SAFETY: `madvise` is unsafe because it takes a raw address range. `MADV_POPULATE_WRITE`
    // changes no byte the program can observe: it only faults pages in as a write would,
    // without writing (a page of a file keeps its contents; a fresh one reads as the zeros
    // it would read as anyway). A range that is not mapped is refused with `ENOMEM`, and one
    // the kernel cannot back (past the end of the file) with `EFAULT`, both returned as
    // errors, never signals. The caller (`crate::prefault`) only passes ranges inside a live
    // segment map and holds the map's prefault lock while it does, which sealing takes before
    // it unmaps the segment.
    unsafe {
        rustix::mm::madvise(
            addr as *mut std::ffi::c_void,
            len,
            rustix::mm::Advice::LinuxPopulateWrite,
        )
    }
    .map_err(std::io::Error::from)
}

/// Drops this process's page-table entries for the `len` bytes at address `addr` of a shared
/// file map (`MADV_DONTNEED`), keeping the pages and their contents in the page cache, dirty
/// if they were: the prefault thread calls it behind the appender, so that writing those
/// pages back later (the flusher's fsync) has no mapping to write-protect, and so sends no
/// TLB shootdown to the appender's processor for every page.
#[cfg(target_os = "linux")]
pub(crate) fn release(addr: usize, len: usize) -> std::io::Result<()> {
    // SAFETY: `madvise` is unsafe because it takes a raw address range, and `MADV_DONTNEED`
    // in general because on private or anonymous memory it discards the contents. Here the
    // range lies in a `MAP_SHARED` map of a file: the kernel moves each entry's dirty bit to
    // its page in the page cache before dropping the entry, and a later access would fault
    // the same page back in, so no byte is lost or changed. The caller (`crate::prefault`)
    // passes only ranges inside a live segment map that the appender has moved past (it
    // writes at increasing offsets only), holding the map's prefault lock, which sealing
    // takes before it unmaps.
    unsafe {
        rustix::mm::madvise(addr as *mut std::ffi::c_void, len, rustix::mm::Advice::LinuxDontNeed)
    }
    .map_err(std::io::Error::from)
}
