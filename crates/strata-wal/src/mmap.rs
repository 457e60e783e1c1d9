//! The one place that needs `unsafe`: mapping a log file read-only for recovery.
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
    // has written: segments only grow by appends past the mapped length, which the map does
    // not cover. The log's own truncations (torn-tail repair at open, `check_dir --repair`)
    // happen only after every map of that file is dropped: recovery maps, scans, drops the map,
    // and only then truncates. What remains is another program truncating the files behind
    // the log's back, which is outside the contract (as for any database's files).
    unsafe { memmap2::Mmap::map(file) }
}
