//! The prefault thread of a memory-mapped segment: it keeps the pages just ahead of the
//! appender faulted in and lets go of the pages behind it, so that the appending thread
//! stores into pages that are already there and nothing it has written needs its map again.
//!
//! Why, measured on the two-core development VM (durable inserts, `Interval(1s)`): without
//! it, the first store into each page of a fresh segment faulted on the appending thread,
//! and the kernel zeroed the page there; on a virtual machine the hypervisor also backs the
//! guest page then, which showed as waits of about 21 ms every 80 ms or so, 13-16% of the
//! wall time. And the flusher's fsync write-protected every written page still mapped, one
//! TLB shootdown (an interrupt of the appender's processor) per page. With the thread the
//! appender takes neither: stalls over 200 µs fell to 5-8% of the wall time (the rest is
//! the rotation to a new segment), and in the durable bench's interleaved summary durable
//! inserts went from 33-36% to 43-48% of the in-memory insert rate (in 25 of 27 runs;
//! 38% and 39% in the other two).
//!
//! The thread only ever calls `madvise` and `posix_fadvise`: it never reads or writes a byte
//! of the log, so it cannot change what the log holds, only when the kernel does its work.

use parking_lot::Mutex;
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How far ahead of the appender the thread keeps pages faulted in: at a few hundred MB/s
/// of appends, several milliseconds of them.
const AHEAD: usize = 2 << 20;

/// How many bytes the thread faults in per call (holding its lock, which sealing waits
/// for).
const CHUNK: usize = 64 << 10;

/// How often, in appended bytes, the appender tells the thread where it is. Each report
/// that finds the thread parked costs the appender a wake-up, about 10 µs on the
/// development VM (a cross-processor interrupt); every 64 KiB that was 6-8 ns per durable
/// insert. The thread still keeps at least `AHEAD - REPORT` bytes faulted in ahead.
const REPORT: usize = 512 << 10;

/// The thread lets go of the pages behind the appender in runs of this many bytes.
const RELEASE: usize = 2 << 20;

/// How long the thread sleeps when the appender has not moved: it only bounds how soon a
/// thread whose wake-up was missed looks again.
const IDLE: Duration = Duration::from_millis(100);

/// The handle the segment map keeps; dropping it stops the thread (see [`Drop`]).
pub(crate) struct Prefault {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The frame end at which the appender next tells the thread where it is.
    next_report: usize,
}

struct Shared {
    /// Where the appender was at its last report.
    written: AtomicUsize,
    /// `true` while the map lives. The thread holds the lock during each call into the
    /// kernel; dropping the handle takes it and sets `false` before the map is unmapped.
    live: Mutex<bool>,
}

impl Prefault {
    /// Starts the thread for `map`, a shared map of all of `file`; the caller drops the
    /// handle before it unmaps `map`. `None` if no thread could be started: the appender
    /// then faults its pages in itself.
    pub(crate) fn start(map: &memmap2::MmapMut, file: File) -> Option<Prefault> {
        // The thread gets the range as numbers: it only ever hands them to the kernel.
        let (addr, len) = (map.as_ptr() as usize, map.len());
        let shared = Arc::new(Shared { written: AtomicUsize::new(0), live: Mutex::new(true) });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("strata-wal-prefault".into())
                .spawn(move || run(&shared, &file, addr, len))
                .ok()?
        };
        Some(Prefault { shared, thread: Some(thread), next_report: REPORT })
    }

    /// Called by the appender with the end of each frame it writes (under the log lock);
    /// wakes the thread once every [`REPORT`] bytes.
    #[inline]
    pub(crate) fn report(&mut self, end: usize) {
        if end >= self.next_report {
            self.next_report = end.saturating_add(REPORT);
            self.shared.written.store(end, Ordering::Relaxed);
            if let Some(t) = &self.thread {
                t.thread().unpark();
            }
        }
    }
}

impl Drop for Prefault {
    /// Stops the thread and waits for it, so that it makes no call on the map's addresses
    /// once the map is unmapped (a call in progress ends first: the lock is held through it).
    fn drop(&mut self) {
        *self.shared.live.lock() = false;
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // The thread calls only fallible functions and ends at its next turn.
            let _ = t.join();
        }
    }
}

/// The thread's loop: faults in whole chunks up to [`AHEAD`] past the last report, lets go of
/// whole runs of [`RELEASE`] bytes the appender is at least a chunk past, and parks when both
/// are done. Bounded: every turn faults in or lets go of at least one chunk of the map (of
/// which there are finitely many) or parks, and it ends when the map goes or a call fails.
fn run(shared: &Shared, file: &File, addr: usize, len: usize) {
    // Faulted in below `ahead`; let go of below `behind`. Both stay inside the map (see
    // `bounds`): `behind` a whole number of release runs, `ahead` of chunks or the map's end.
    let (mut ahead, mut behind) = (0usize, 0usize);
    loop {
        let (target, passed) = bounds(shared.written.load(Ordering::Relaxed), len);
        if ahead >= target && behind >= passed {
            if !*shared.live.lock() {
                return;
            }
            std::thread::park_timeout(IDLE);
            continue;
        }
        let live = shared.live.lock();
        if !*live {
            return;
        }
        if behind < passed {
            // The appender writes at increasing offsets only, so it never stores below
            // `passed` again. A failure here stops the thread; the log is unaffected.
            if crate::mmap::release(addr + behind, passed - behind).is_err() {
                return;
            }
            // Starts writing those pages back now, without waiting for it, so that the fsync
            // that closes the segment finds little left to write; pages already clean leave
            // the page cache. A hint: an error changes nothing.
            let _ = rustix::fs::fadvise(
                file,
                behind as u64,
                std::num::NonZeroU64::new((passed - behind) as u64),
                rustix::fs::Advice::DontNeed,
            );
            behind = passed;
        }
        if ahead < target {
            let end = target.min(ahead + CHUNK);
            // A kernel without MADV_POPULATE_WRITE (before 5.14) refuses it: the appender
            // then faults its pages in itself, as it would without this thread.
            if crate::mmap::populate_write(addr + ahead, end - ahead).is_err() {
                return;
            }
            ahead = end;
        }
        drop(live);
    }
}

/// For the appender's last report `written`, in a map of `len` bytes: `(target, passed)`,
/// where the thread faults pages in below `target` and lets go of pages below `passed`.
///
/// Both stay inside the map whatever was reported: `madvise` takes raw addresses, and
/// `MADV_DONTNEED` past the map's end would reach whatever is mapped after it (anonymous
/// memory there would read back as zeros). The appender reports only ends inside the map
/// today, but `SegmentMap::frame_mut` reports before its bounds check, so this does not
/// rest on its callers. `passed` is a whole number of release runs at least a chunk below
/// `written`: the frame being copied at the report (under 2 KiB) lies above it.
fn bounds(written: usize, len: usize) -> (usize, usize) {
    let target = (written.saturating_add(AHEAD) / CHUNK * CHUNK).min(len);
    let passed = written.min(len).saturating_sub(CHUNK) / RELEASE * RELEASE;
    (target, passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_stay_inside_the_map_and_a_chunk_behind_the_appender() {
        // A length that is not a whole number of chunks, and reports from the start of the
        // map to far past its end (a frame end reported before the bounds check).
        let len = 3 * RELEASE + 5 * 4096;
        let reports = [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            RELEASE,
            RELEASE + CHUNK,
            2 * RELEASE + CHUNK + 1,
            len - 1,
            len,
            len + CHUNK,
            len + 4 * RELEASE,
            usize::MAX,
        ];
        for written in reports {
            let (target, passed) = bounds(written, len);
            assert!(target <= len, "faults in up to {target}, past the map ({len}), at {written}");
            assert!(passed <= len, "lets go up to {passed}, past the map ({len}), at {written}");
            assert_eq!(passed % RELEASE, 0, "a partial release run at {written}");
            assert!(
                passed == 0 || passed + CHUNK <= written,
                "lets go up to {passed}, within a chunk of the appender at {written}"
            );
            assert!(
                target == len || target % CHUNK == 0,
                "faults in to {target}, not a chunk boundary, at {written}"
            );
            // The thread keeps the next stretch faulted in (not only the current chunk).
            assert!(
                target >= written.saturating_add(AHEAD - CHUNK).min(len),
                "faults in only to {target} at {written}"
            );
        }
    }

    /// A segment-like file of `len` bytes, mapped shared and writable.
    fn mapped(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, File, memmap2::MmapMut) {
        let path = dir.join("seg");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .expect("create");
        file.set_len(len as u64).expect("size");
        let map = crate::mmap::map_shared_rw(&file).expect("map");
        (path, file, map)
    }

    /// Whether the page holding `addr` is mapped in this process's page tables (bit 63 of
    /// its `/proc/self/pagemap` entry), found without touching the page.
    fn present(addr: usize) -> bool {
        use std::os::unix::fs::FileExt;
        let pagemap = File::open("/proc/self/pagemap").expect("open /proc/self/pagemap");
        let mut entry = [0u8; 8];
        pagemap.read_exact_at(&mut entry, (addr / 4096 * 8) as u64).expect("read pagemap");
        u64::from_le_bytes(entry) >> 63 == 1
    }

    /// Waits (at most 10 s, polling) until `done` holds.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn maps_the_pages_ahead_and_lets_go_of_those_behind_keeping_their_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, file, mut map) = mapped(dir.path(), 8 << 20);
        let base = map.as_ptr() as usize;
        let mut p = Prefault::start(&map, file.try_clone().expect("dup")).expect("a thread");
        // Before any append: the first AHEAD bytes get mapped, nothing past them.
        eventually("the first pages mapped", || present(base) && present(base + AHEAD - 4096));
        assert!(!present(base + AHEAD + CHUNK), "mapped past the stretch ahead");
        // The appender writes 3 MiB: the first release run is behind it by more than a chunk,
        // so it is let go of, and the next stretch is mapped.
        let upto = 3 << 20;
        map[..upto].fill(0xA5);
        p.report(upto);
        eventually("the first run let go of", || !present(base) && !present(base + RELEASE - 4096));
        eventually("the next stretch mapped", || present(base + upto + AHEAD - 4096));
        // The run let go of keeps its bytes (read through the file, not the map), and the
        // pages above it, which the appender may still touch, stay mapped.
        assert!(present(base + RELEASE), "let go of a page less than a run behind");
        let bytes = std::fs::read(&path).expect("read back");
        assert!(bytes[..upto].iter().all(|&b| b == 0xA5), "a written byte changed");
        assert!(bytes[upto..].iter().all(|&b| b == 0), "the space ahead is not zeros");
        drop(p);
    }

    #[test]
    fn written_bytes_stay_and_the_thread_ends_with_its_handle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, file, mut map) = mapped(dir.path(), 8 << 20);
        let len = map.len();
        let mut p = Prefault::start(&map, file.try_clone().expect("dup")).expect("a thread");
        // The thread holds the other reference to its state until it ends.
        let shared = Arc::clone(&p.shared);
        // Walk the appender through the whole map, writing as it goes: the thread faults in
        // and lets go of pages meanwhile, and every byte written must stay as written.
        for (i, chunk) in map.chunks_mut(4096).enumerate() {
            chunk.fill((i % 251) as u8 + 1);
            p.report((i + 1) * 4096);
        }
        drop(p);
        assert_eq!(Arc::strong_count(&shared), 1, "the thread ends with its handle");
        for (i, chunk) in map.chunks(4096).enumerate() {
            assert!(chunk.iter().all(|&b| b == (i % 251) as u8 + 1), "page {i} changed");
        }
        drop(map);
        let bytes = std::fs::read(&path).expect("read back");
        assert_eq!(bytes.len(), len);
        for (i, chunk) in bytes.chunks(4096).enumerate() {
            assert!(chunk.iter().all(|&b| b == (i % 251) as u8 + 1), "page {i} on file");
        }
    }
}
