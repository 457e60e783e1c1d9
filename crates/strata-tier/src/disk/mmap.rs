//! The one place in this crate that needs `unsafe`: mapping a sealed region file read-only.
// Memory-mapping a file is unsafe in memmap2's API. This module is the crate's only exception
// to `unsafe_code = "deny"`, and the SAFETY comment below says why the map is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// Maps all of `file` read-only.
///
/// The caller must never write to, truncate or rewrite `file` while the map lives; see the
/// SAFETY comment for how the disk tier guarantees it.
pub(super) fn map_readonly(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the bytes behind the slice can change, or vanish,
    // if the file is modified while mapped: a concurrent write makes the `&[u8]` observe
    // changing memory, and a truncation below the mapped length makes an access past the new
    // end raise SIGBUS. The disk tier maps only region files it owns, in a directory it holds
    // an exclusive lock on (no second tier can write there), and only once it has stopped
    // writing to them: a region is written while it is the active region (read back then with
    // positioned reads, never through a map) and is mapped when it is sealed or recovered.
    // A mapped file is never written, truncated or renamed onto again: reclaiming a region
    // creates a new file and renames it over the old name, and `clear` unlinks files, so a
    // map that readers still hold keeps the old, unchanged inode alive. Recovery maps a file
    // only to scan it and drops that map before it resumes appending to the file. What
    // remains is another program modifying the files behind the tier's back, which is outside
    // the contract, as for any database's files.
    unsafe { memmap2::Mmap::map(file) }
}
