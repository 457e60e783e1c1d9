//! The `FileSystem` seam: everything the log does to the disk goes through it.

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
            Ok(LockGuard::new(file))
        } else {
            Err(io::Error::new(io::ErrorKind::WouldBlock, "locked by another writer"))
        }
    }
}
