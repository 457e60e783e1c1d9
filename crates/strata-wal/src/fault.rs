//! A fault-injecting, in-memory [`FileSystem`] for tests.
//!
//! [`FaultFs`] models what a disk promises and no more: a file's bytes survive a crash only up
//! to its last [`WalFile::sync`], and a file's name only as of the last
//! [`FileSystem::sync_dir`] of its directory. Every mutating operation (create, append, sync,
//! truncate, rename, remove, sync_dir) gets a number, counted from 0, so a test can fail,
//! tear or crash exactly the n-th one and then walk n over a whole protocol.

use crate::fs::{FileBytes, FileSystem, LockGuard, WalFile};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What happens to the operation a fault is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with an IO error and changes nothing; later operations work.
    Fail,
    /// An append writes only its first `keep` bytes (all of them if it is shorter), then fails;
    /// any other operation simply fails.
    Tear {
        /// Bytes of the append that reach the file.
        keep: usize,
    },
    /// The machine dies: this operation and every later one fail until [`FaultFs::restart`].
    Crash,
}

#[derive(Debug, Default)]
struct Node {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<u64, Node>,
    next_node: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    generation: u64,
    ops: u64,
    faults: BTreeMap<u64, Fault>,
    crashed: bool,
}

impl State {
    /// Numbers the next mutating operation and says whether a fault hits it.
    fn begin_op(&mut self) -> io::Result<Option<Fault>> {
        if self.crashed {
            return Err(crashed());
        }
        let n = self.ops;
        self.ops += 1;
        match self.faults.remove(&n) {
            Some(Fault::Crash) => {
                self.crashed = true;
                Err(crashed())
            }
            other => Ok(other),
        }
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the disk is gone until restart")
}

fn injected() -> io::Error {
    io::Error::other("injected fault")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

/// The in-memory disk. Clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Aims `fault` at the mutating operation numbered `op` (see [`FaultFs::ops`]).
    pub fn inject(&self, op: u64, fault: Fault) {
        self.state.lock().faults.insert(op, fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// How many mutating operations have been numbered so far; the next one gets this number.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Whether a [`Fault::Crash`] (or [`FaultFs::crash`]) has hit and no restart followed.
    pub fn is_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Crashes the machine now: every later operation fails until [`FaultFs::restart`].
    pub fn crash(&self) {
        self.state.lock().crashed = true;
    }

    /// Reboots after a crash (or pulls the plug now, if there was none): every name goes back to
    /// its last directory sync, every file to its last sync, open handles and locks die, and
    /// pending faults are cleared.
    pub fn restart(&self) {
        self.restart_keeping(|_| 0);
    }

    /// Like [`FaultFs::restart`], but each file keeps the first `keep(unsynced)` bytes of what
    /// was appended after its last sync, as when the kernel wrote some dirty pages back before
    /// the power went: unsynced data may survive, in part, and a record may be torn.
    pub fn restart_keeping(&self, mut keep: impl FnMut(usize) -> usize) {
        let mut s = self.state.lock();
        s.names = s.durable_names.clone();
        for node in s.nodes.values_mut() {
            let kept = if node.data.starts_with(&node.synced) {
                let extra = node.data.len() - node.synced.len();
                node.synced.len() + keep(extra).min(extra)
            } else {
                node.synced.len()
            };
            if node.data.starts_with(&node.synced) {
                node.data.truncate(kept);
            } else {
                node.data = node.synced.clone();
            }
            node.synced.clone_from(&node.data);
        }
        let live: BTreeSet<u64> = s.names.values().copied().collect();
        s.nodes.retain(|id, _| live.contains(id));
        s.locks.clear();
        s.faults.clear();
        s.crashed = false;
        s.generation += 1;
    }

    /// The current bytes of a file (for tests to inspect), or `None` if it does not exist.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        let id = s.names.get(path)?;
        s.nodes.get(id).map(|n| n.data.clone())
    }

    /// Overwrites a file's bytes, durably, as bit rot or a hostile editor would; it does not
    /// count as an operation. Returns `false` if the file does not exist.
    pub fn set_contents(&self, path: &Path, bytes: Vec<u8>) -> bool {
        let mut s = self.state.lock();
        let Some(&id) = s.names.get(path) else { return false };
        match s.nodes.get_mut(&id) {
            Some(node) => {
                node.synced.clone_from(&bytes);
                node.data = bytes;
                true
            }
            None => false,
        }
    }

    /// The names of all files, with their current lengths.
    pub fn files(&self) -> Vec<(PathBuf, usize)> {
        let s = self.state.lock();
        s.names
            .iter()
            .map(|(p, id)| (p.clone(), s.nodes.get(id).map_or(0, |n| n.data.len())))
            .collect()
    }
}

#[derive(Debug)]
struct FaultFile {
    state: Arc<Mutex<State>>,
    node: u64,
    generation: u64,
}

impl FaultFile {
    fn check(&self, s: &State) -> io::Result<()> {
        if s.generation != self.generation {
            return Err(io::Error::other("file handle from before a restart"));
        }
        Ok(())
    }
}

impl WalFile for FaultFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock();
        self.check(&s)?;
        let fault = s.begin_op()?;
        let node = s.nodes.get_mut(&self.node).ok_or_else(|| io::Error::other("file removed"))?;
        match fault {
            None => {
                node.data.extend_from_slice(buf);
                Ok(())
            }
            Some(Fault::Tear { keep }) => {
                node.data.extend_from_slice(&buf[..keep.min(buf.len())]);
                Err(injected())
            }
            Some(_) => Err(injected()),
        }
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        self.check(&s)?;
        if s.begin_op()?.is_some() {
            return Err(injected());
        }
        let node = s.nodes.get_mut(&self.node).ok_or_else(|| io::Error::other("file removed"))?;
        if node.data.starts_with(&node.synced) {
            let from = node.synced.len();
            node.synced.extend_from_slice(&node.data[from..]);
        } else {
            node.synced.clone_from(&node.data);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FaultLock {
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    generation: u64,
}

impl Drop for FaultLock {
    fn drop(&mut self) {
        let mut s = self.state.lock();
        if s.generation == self.generation {
            s.locks.remove(&self.dir);
        }
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.crashed {
            return Err(crashed());
        }
        if s.names.contains_key(dir) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory"));
        }
        s.dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        if s.crashed {
            return Err(crashed());
        }
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut s = self.state.lock();
        if s.begin_op()?.is_some() {
            return Err(injected());
        }
        let id = s.next_node;
        s.next_node += 1;
        s.nodes.insert(id, Node::default());
        s.names.insert(path.to_path_buf(), id);
        Ok(Box::new(FaultFile {
            state: Arc::clone(&self.state),
            node: id,
            generation: s.generation,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let s = self.state.lock();
        if s.crashed {
            return Err(crashed());
        }
        let id = s.names.get(path).ok_or_else(|| not_found(path))?;
        let node = s.nodes.get(id).ok_or_else(|| not_found(path))?;
        Ok(FileBytes::from_vec(node.data.clone()))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.begin_op()?.is_some() {
            return Err(injected());
        }
        let id = *s.names.get(path).ok_or_else(|| not_found(path))?;
        let node = s.nodes.get_mut(&id).ok_or_else(|| not_found(path))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(node.data.len());
        node.data.truncate(len);
        node.synced.clone_from(&node.data);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.begin_op()?.is_some() {
            return Err(injected());
        }
        let id = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.begin_op()?.is_some() {
            return Err(injected());
        }
        s.names.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.begin_op()?.is_some() {
            return Err(injected());
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        let current: Vec<(PathBuf, u64)> =
            s.names.iter().filter(|(p, _)| in_dir(p)).map(|(p, id)| (p.clone(), *id)).collect();
        s.durable_names.retain(|p, _| !in_dir(p));
        s.durable_names.extend(current);
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<LockGuard> {
        let mut s = self.state.lock();
        if s.crashed {
            return Err(crashed());
        }
        if !s.locks.insert(dir.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "locked by another writer"));
        }
        Ok(LockGuard::new(FaultLock {
            state: Arc::clone(&self.state),
            dir: dir.to_path_buf(),
            generation: s.generation,
        }))
    }
}
