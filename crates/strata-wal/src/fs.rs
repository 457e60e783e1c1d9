//! The `FileSystem` seam: everything the log does to the disk goes through it.

#[cfg(target_os = "linux")]
use crate::prefault::Prefault;
use std::any::Any;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// An open, append-only log file.
///
/// Contract: the log serializes calls to [`WalFile::append`] itself, but may call
/// [`WalFile::sync`] from another thread at the same time as an append (the group-commit
/// leader syncs while others append), so both take `&self`.
pub trait WalFile: Send + Sync + fmt::Debug {
    /// Appends all of `buf` at the end of the file. On error, any prefix of `buf` may have been
    /// written.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes every byte appended so far durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
}

/// The bytes of a whole file, memory-mapped or owned.
pub struct FileBytes(BytesInner);

enum BytesInner {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Wraps owned bytes (what an in-memory file system returns).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        FileBytes(BytesInner::Owned(bytes))
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            BytesInner::Mapped(m) => m,
            BytesInner::Owned(v) => v,
        }
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBytes").field("len", &self.len()).finish()
    }
}

/// Holds a directory lock; dropping it releases the lock.
// The field is never read: it is held only for its `Drop`, which releases the lock.
pub struct LockGuard(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl LockGuard {
    /// Wraps whatever object releases the lock when dropped.
    pub fn new(inner: impl Any + Send + Sync) -> Self {
        LockGuard(Box::new(inner))
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// The disk, as the log sees it.
///
/// Contract for implementations: [`FileSystem::create`] makes a new empty file readable and
/// writable by its owner only, replacing any file of that name; a file's bytes become durable
/// only through [`WalFile::sync`] or [`FileSystem::truncate`]; a file's *name* (after create,
/// rename or remove) becomes durable only through [`FileSystem::sync_dir`] on its directory;
/// [`FileSystem::rename`] is atomic. The log never holds a [`FileBytes`] of a file while
/// truncating it.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its parents; an error if `dir` exists and is not a directory.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir` (not paths, not sorted).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates (or replaces) `path` as an empty file open for appending, mode 0600.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Creates (or replaces) a log segment expected to grow to about `size` bytes, for a log
    /// that does not fsync every append. The default is [`FileSystem::create`] with no map.
    ///
    /// [`StdFs`] on Linux reserves the space with `fallocate` and also returns a
    /// [`SegmentMap`]: a shared, writable memory map of the file, into which the log then
    /// copies its frames instead of calling `write`. A copied frame is in the kernel's page
    /// cache as soon as the copy ends, exactly as after a `write`, so it survives a crash of
    /// the process, and [`WalFile::sync`] makes it durable. Until the log seals the map, the
    /// file holds zeros past the frames; recovery reads a run of zero bytes that reaches the
    /// end of the last segment as the end of the log when the file is exactly `size` bytes
    /// long (anywhere else such zeros are damage, which the recovery mode judges). A returned
    /// map must therefore cover exactly `size` bytes. Other implementations cannot create a
    /// map (its constructor is private), so they keep the default.
    ///
    /// [`StdFs`] creates a map only on file systems known to keep `fallocate`'s promise of
    /// room for the later stores (ext4, XFS, tmpfs); elsewhere (copy-on-write ZFS, btrfs,
    /// bcachefs, where a full disk would turn a store into the map into `SIGBUS`, and
    /// overlayfs, FUSE or network file systems, which may sit on one) the segment is an
    /// ordinary file.
    fn create_mapped(
        &self,
        path: &Path,
        size: u64,
    ) -> io::Result<(Box<dyn WalFile>, Option<SegmentMap>)> {
        let _ = size;
        Ok((self.create(path)?, None))
    }
    /// Reads the whole file.
    fn read(&self, path: &Path) -> io::Result<FileBytes>;
    /// Cuts `path` to `len` bytes and makes the new length durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `dir` against other writers. Returns an error of kind
    /// [`io::ErrorKind::WouldBlock`] if someone else holds it.
    fn lock_dir(&self, dir: &Path) -> io::Result<LockGuard>;
}

/// The real file system: `std::fs`, files read back through a read-only memory map, and the
/// directory lock taken with `flock` on a `LOCK` file (released by the kernel when the process
/// dies, so a crash never leaves a stale lock).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl WalFile for StdFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn sync(&self) -> io::Result<()> {
        // fdatasync also flushes the file size, which is all the metadata an appended file
        // needs to be read back.
        self.0.sync_data()
    }
}

fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// The reserved space of a log segment, mapped shared and writable; see
/// [`FileSystem::create_mapped`]. Owned by the log, which copies frames into it under its
/// own lock (so no lock of its own is needed), then seals it: unmaps it and cuts the file to
/// the bytes written.
///
/// Why writing through it keeps the log's guarantees:
///
/// - A `MAP_SHARED` file mapping *is* the page cache: a byte copied into it is where a
///   `write(2)` would have put it, so it survives the process and is written back by the
///   kernel. On Linux `fdatasync` of the file writes back pages dirtied through the map too
///   (the first store to a clean page faults and marks it dirty), so [`WalFile::sync`] keeps
///   its meaning.
/// - The space is reserved with `fallocate` before mapping, so a store never needs a block
///   the disk lacks (a sparse file would raise `SIGBUS` on a full disk); only ext4, XFS and
///   tmpfs, whose `fallocate` reserves the blocks for later writes, get a map: any other
///   file system (copy-on-write ones, overlayfs, FUSE, network ones) gets an ordinary file.
/// - The file is never shrunk while mapped: sealing unmaps first.
/// - A first store into a page faults, and the kernel zeroes the page then: about one fault
///   per hundred small frames. A prefault thread (`crate::prefault`) does that a little
///   ahead of the appender, and drops the map's hold on the pages behind it, so that
///   writing them back write-protects nothing the appender uses. Large frames, which fill
///   whole pages, are written with `pwrite` at their place instead, which needs no zeroing.
pub struct SegmentMap {
    #[cfg(target_os = "linux")]
    inner: MapInner,
}

impl fmt::Debug for SegmentMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentMap").field("len", &self.len()).finish_non_exhaustive()
    }
}

#[cfg(target_os = "linux")]
struct MapInner {
    /// The thread faulting pages in ahead of the appender, if it could be started. First, so
    /// that dropping the map stops the thread before the map is unmapped.
    prefault: Option<Prefault>,
    map: memmap2::MmapMut,
    file: File,
    /// The same file opened again without `O_APPEND`, for positioned writes into the
    /// reserved space (`pwrite` on an `O_APPEND` descriptor appends at the end on Linux).
    writer: File,
}

/// How far past the end of a frame the next line of the map is prefetched: far enough that
/// the line arrives before the frames in between are written (512 and 1024 measured alike).
#[cfg(target_os = "linux")]
const PREFETCH_AHEAD: usize = 512;

impl SegmentMap {
    /// The bytes the map covers.
    pub(crate) fn len(&self) -> usize {
        #[cfg(target_os = "linux")]
        {
            self.inner.map.len()
        }
        #[cfg(not(target_os = "linux"))]
        {
            0
        }
    }

    /// The `len` mapped bytes at `at`, to write a frame into, or `None` past the map.
    #[inline]
    pub(crate) fn frame_mut(&mut self, at: usize, len: usize) -> Option<&mut [u8]> {
        #[cfg(target_os = "linux")]
        {
            let end = at.checked_add(len)?;
            crate::mmap::prefetch(&self.inner.map, end.saturating_add(PREFETCH_AHEAD));
            if let Some(p) = self.inner.prefault.as_mut() {
                p.report(end);
            }
            self.inner.map.get_mut(at..end)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (at, len);
            None
        }
    }

    /// Whether `len` bytes at `at` lie inside the map.
    pub(crate) fn fits(&self, at: usize, len: usize) -> bool {
        at.checked_add(len).is_some_and(|end| end <= self.len())
    }

    /// Writes `bytes` at `at` inside the map with a positioned `write` (same page cache, so
    /// the map sees them); `at..at + bytes.len()` must lie inside the map (see
    /// [`SegmentMap::fits`]).
    pub(crate) fn write_at(&mut self, at: usize, bytes: &[u8]) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::FileExt;
            if !self.fits(at, bytes.len()) {
                return Err(io::Error::other("write past the reserved space"));
            }
            self.inner.writer.write_all_at(bytes, at as u64)?;
            if let Some(p) = self.inner.prefault.as_mut() {
                p.report(at + bytes.len());
            }
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (at, bytes);
            Err(io::Error::other("no memory map on this platform"))
        }
    }

    /// Unmaps the space and cuts the file to `len` bytes (the frames written), so that
    /// appends through the [`WalFile`] go on from there. The new length becomes durable with
    /// the next [`WalFile::sync`].
    pub(crate) fn seal(self, len: u64) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            let MapInner { prefault, map, file, writer } = self.inner;
            drop(prefault);
            drop(writer);
            // Unmapped before the cut: a store into a truncated range would raise SIGBUS.
            drop(map);
            file.set_len(len)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = len;
            Ok(())
        }
    }
}

/// File systems known to keep `fallocate`'s promise that every later write into the reserved
/// range finds a block, by their `statfs` magic number: ext2/3/4, XFS and tmpfs. Only these
/// get a memory-mapped segment. An allow-list, because what `statfs` names is not always
/// where the blocks come from: overlayfs (every container's root) reports its own magic over
/// any lower file system, and FUSE, 9p, CIFS and NFS pass `fallocate` on to something else.
/// The copy-on-write file systems do not keep the promise: ZFS accepts `fallocate` but
/// reserves no blocks; btrfs writes into a preallocated extent in place only once, and only
/// while the extent is neither shared (snapshot, reflink) nor compressed, so the second
/// write-back of a page (a page partly filled at one fsync and filled further before the
/// next) needs a new block; bcachefs is copy-on-write throughout. A store into a memory map
/// there must find a block when it dirties the page, and on a full disk the kernel can only
/// answer with `SIGBUS`, where a `write` would have returned `ENOSPC`.
#[cfg(target_os = "linux")]
const RESERVING_FS: [(u32, &str); 3] =
    [(0xEF53, "ext2/3/4"), (0x5846_5342, "xfs"), (0x0102_1994, "tmpfs")];

/// Whether a file system, by its `statfs` magic number (`f_type`), can hold a memory-mapped
/// segment: whether `fallocate` there guarantees that every store into the reserved range
/// finds a block. `None` (`statfs` failed) is treated as no.
#[cfg(target_os = "linux")]
pub(crate) fn fallocate_reserves(f_type: Option<u32>) -> bool {
    f_type.is_some_and(|t| RESERVING_FS.iter().any(|&(magic, _)| magic == t))
}

/// The `statfs` magic number of the file system holding `file`, or `None` if `fstatfs` fails.
#[cfg(target_os = "linux")]
fn fs_magic(file: &File) -> Option<u32> {
    // `f_type` is a C long (or a u32 on some targets) holding a 32-bit magic number; keeping
    // its low 32 bits gives the same number whether the long is signed or 32 bits wide.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(file).ok().map(|s| s.f_type as u32)
}

/// Reserves `size` bytes for the empty `file` with `fallocate`; `false` if it cannot, with
/// the file empty again.
#[cfg(target_os = "linux")]
fn reserve(file: &File, size: u64) -> io::Result<bool> {
    use fs4::fs_std::FileExt;
    if file.allocate(size).is_ok() {
        return Ok(true);
    }
    // A failed fallocate may still have grown the file: ext4 extends it as it allocates and
    // keeps what it got when the disk fills up. The ordinary file that replaces the map is
    // appended to through `O_APPEND`, so its header would land after those zeros, where
    // recovery never looks, and the space they hold would be missing for the appends.
    file.set_len(0)?;
    Ok(false)
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        if std::fs::metadata(dir)?.is_dir() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory"))
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = open_options().create(true).truncate(true).write(true).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    #[cfg(target_os = "linux")]
    fn create_mapped(
        &self,
        path: &Path,
        size: u64,
    ) -> io::Result<(Box<dyn WalFile>, Option<SegmentMap>)> {
        // Appends through the `WalFile` (after the map is sealed) go to the end of the file.
        // (`truncate` cannot be combined with `append` when opening, hence the `set_len`.)
        let file = open_options().create(true).read(true).append(true).open(path)?;
        file.set_len(0)?;
        // A file system without fallocate, or whose fallocate does not reserve blocks for
        // later writes, a disk without the room, or a size no map can hold: an ordinary file.
        let reserved = usize::try_from(size).is_ok_and(|n| n > 0)
            && fallocate_reserves(fs_magic(&file))
            && reserve(&file, size)?;
        if !reserved {
            return Ok((Box::new(StdFile(file)), None));
        }
        let map = crate::mmap::map_shared_rw(&file)?;
        let writer = open_options().write(true).open(path)?;
        // A thread faults the pages ahead of the appender in and lets go of those behind it.
        let prefault = Prefault::start(&map, file.try_clone()?);
        let seg = SegmentMap { inner: MapInner { prefault, map, file: file.try_clone()?, writer } };
        Ok((Box::new(StdFile(file)), Some(seg)))
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        // Mapping an empty file fails on some platforms; an empty file needs no map.
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::from_vec(Vec::new()));
        }
        Ok(FileBytes(BytesInner::Mapped(crate::mmap::map_readonly(&file)?)))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<LockGuard> {
        use fs4::fs_std::FileExt;
        let path: PathBuf = dir.join("LOCK");
        let file = open_options().create(true).truncate(false).write(true).open(&path)?;
        if file.try_lock_exclusive()? {
            Ok(LockGuard::new(DirLock(file)))
        } else {
            Err(io::Error::new(io::ErrorKind::WouldBlock, "locked by another writer"))
        }
    }
}

/// The `LOCK` file of a log directory, holding an exclusive `flock` until dropped.
#[derive(Debug)]
struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        // Unlock before the descriptor closes. An `flock` belongs to the open file
        // description, which a child process spawned meanwhile (by anyone in this process)
        // shares until its `exec` closes its copy; closing only our descriptor would leave
        // the directory locked for that moment, and a reopen in this process would fail
        // with `Locked`. A failed unlock leaves the close to release it, as before.
        let _ = fs4::fs_std::FileExt::unlock(&self.0);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_file_systems_whose_fallocate_reserves_blocks_get_a_map() {
        // The magic numbers of `linux/magic.h` (ZFS: its own `ZFS_SUPER_MAGIC`).
        let table: [(Option<u32>, bool); 11] = [
            (Some(0xEF53), true),       // ext2/3/4
            (Some(0x5846_5342), true),  // XFS
            (Some(0x0102_1994), true),  // tmpfs
            (Some(0x2FC1_2FC1), false), // ZFS
            (Some(0x9123_683E), false), // btrfs
            (Some(0xCA45_1A4E), false), // bcachefs
            (Some(0x794C_7630), false), // overlayfs: its own magic over any lower file system
            (Some(0x6573_5546), false), // FUSE
            (Some(0x6969), false),      // NFS
            (Some(0xFF53_4D42), false), // CIFS
            (None, false),              // statfs failed: no map, to be safe
        ];
        for (magic, expected) in table {
            assert_eq!(fallocate_reserves(magic), expected, "{magic:x?}");
        }
    }

    #[test]
    fn create_mapped_follows_the_file_system_decision() -> io::Result<()> {
        // Whatever file system the temporary directory is on, `create_mapped` maps exactly
        // when the decision says so (and fallocate works, which it does on every file
        // system the decision accepts that tests run on).
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("seg");
        let (_file, map) = StdFs.create_mapped(&path, 64 << 10)?;
        let magic = fs_magic(&File::open(&path)?);
        assert_eq!(map.is_some(), fallocate_reserves(magic), "file system magic {magic:x?}");
        let expected_len = if map.is_some() { 64 << 10 } else { 0 };
        assert_eq!(std::fs::metadata(&path)?.len(), expected_len);
        Ok(())
    }

    #[test]
    fn dropping_the_lock_releases_it_even_while_its_file_is_shared() -> io::Result<()> {
        use fs4::fs_std::FileExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("LOCK");
        let file = open_options().create(true).truncate(false).write(true).open(path)?;
        assert!(file.try_lock_exclusive()?);
        // A duplicate of the descriptor shares the open file description, and so the lock,
        // as a child process spawned at this moment does until its exec.
        let shared = file.try_clone()?;
        let guard = DirLock(file);
        let locked = StdFs.lock_dir(dir.path());
        assert!(locked.is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock));
        drop(guard);
        // Relocking succeeds although `shared` still refers to the locked description.
        drop(StdFs.lock_dir(dir.path())?);
        drop(shared);
        Ok(())
    }

    #[test]
    fn a_failed_reservation_leaves_the_file_empty() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file =
            open_options().create(true).read(true).append(true).open(dir.path().join("f"))?;
        // What ext4 leaves when fallocate runs out of space part of the way.
        file.set_len(8192)?;
        // No file system reserves 4 EiB: fallocate fails at once.
        assert!(!reserve(&file, 1 << 62)?);
        assert_eq!(file.metadata()?.len(), 0);
        Ok(())
    }
}
