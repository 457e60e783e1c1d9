//! The fault filesystem: crashes drop unsynced data; no acknowledged append may be lost.

use crate::*;
use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;
use strata_wal::fault::Fault;
use strata_wal::{Error, WalFile};

/// Appends from `threads` threads until the disk fails; returns every acknowledged
/// `(seq, payload)`.
fn append_until_failure(wal: &Wal, threads: usize, per_thread: usize) -> BTreeMap<u64, Vec<u8>> {
    let acked = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let acked = &acked;
            s.spawn(move || {
                for i in 0..per_thread {
                    let payload = format!("thread {t} record {i}").into_bytes();
                    match wal.append(&payload) {
                        Ok(seq) => {
                            let prev = acked.lock().expect("no panics").insert(seq, payload);
                            assert!(prev.is_none(), "sequence number {seq} handed out twice");
                        }
                        Err(Error::Io { .. } | Error::Poisoned) => return,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            });
        }
    });
    acked.into_inner().expect("no panics")
}

#[test]
fn always_loses_no_acknowledged_append_when_unsynced_data_is_dropped() -> anyhow::Result<()> {
    let mut rng = Rng::from_time();
    eprintln!("seed {}", rng.0);
    for round in 0..60 {
        let fs = FaultFs::new();
        let wal =
            on(&fs).sync_policy(SyncPolicy::Always).segment_size(512 + rng.below(2048)).open()?;
        // Crash somewhere in the next few hundred disk operations: inside a write, a sync, a
        // rotation, or a group commit.
        let at = fs.ops() + rng.below(400);
        if round % 3 == 0 {
            fs.inject(at, Fault::Tear { keep: rng.below(40) as usize });
            fs.inject(at + 1 + rng.below(20), Fault::Crash);
        } else {
            fs.inject(at, Fault::Crash);
        }
        let acked = append_until_failure(&wal, 1 + (round % 8), 200);
        drop(wal);
        if round % 2 == 0 {
            fs.restart();
        } else {
            // Some unsynced bytes reached the disk before the power went.
            fs.restart_keeping(|unsynced| rng.below(unsynced as u64 + 1) as usize);
        }
        let (wal, records) = open_replay(&fs, RecoveryMode::TolerateTornTail)?;
        let got: BTreeMap<u64, Vec<u8>> = records.into_iter().map(|r| (r.seq, r.payload)).collect();
        for (seq, payload) in &acked {
            assert_eq!(
                got.get(seq),
                Some(payload),
                "round {round}: acknowledged record {seq} lost"
            );
        }
        // What came back is a contiguous prefix (unacknowledged records may be there or not).
        let seqs: Vec<u64> = got.keys().copied().collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "round {round}");
        assert!(wal.append(b"after restart").is_ok());
    }
    Ok(())
}

#[test]
fn never_and_interval_lose_only_unsynced_records() -> anyhow::Result<()> {
    for policy in [SyncPolicy::Never, SyncPolicy::Interval(std::time::Duration::from_secs(3600))] {
        let fs = FaultFs::new();
        let wal = on(&fs).sync_policy(policy).open()?;
        for i in 0..10u64 {
            wal.append(&payload_for(i + 1))?;
        }
        wal.flush_durable()?;
        assert_eq!(wal.durable_seq(), 10);
        for i in 10..15u64 {
            wal.append(&payload_for(i + 1))?;
        }
        // The machine dies with five records written but not synced: they are lost, the
        // synced ones are not.
        fs.crash();
        drop(wal);
        fs.restart();
        let (_, records) = open_replay(&fs, RecoveryMode::AbsoluteConsistency)?;
        assert_eq!(records.len(), 10, "{policy:?}");
    }
    Ok(())
}

#[test]
fn interval_flusher_makes_records_durable_and_stops_cleanly() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let wal =
        on(&fs).sync_policy(SyncPolicy::Interval(std::time::Duration::from_millis(5))).open()?;
    let seq = wal.append(b"x")?;
    // Bounded wait for the background thread (up to 10 s); the test asserts that it happens,
    // not how fast.
    let mut waited = 0;
    while wal.durable_seq() < seq && waited < 1000 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(wal.durable_seq(), seq, "the flusher never synced");
    wal.close()?;
    assert!(matches!(wal.append(b"y"), Err(Error::Closed)));
    Ok(())
}

#[test]
fn failed_fsync_poisons_and_reopen_recovers() -> anyhow::Result<()> {
    let fs = FaultFs::new();
    let wal = on(&fs).open()?;
    wal.append(b"one")?;
    // The next op is the append's write, the one after it the group-commit fsync.
    fs.inject(fs.ops() + 1, Fault::Fail);
    assert!(matches!(wal.append(b"two"), Err(Error::Io { .. })));
    assert!(matches!(wal.append(b"three"), Err(Error::Poisoned)));
    assert!(matches!(wal.flush_durable(), Err(Error::Poisoned)));
    drop(wal);
    let (_, records) = open_replay(&fs, RecoveryMode::TolerateTornTail)?;
    // "two" was written before its fsync failed, so it may be there; "one" must be.
    assert_eq!(records[0].payload, b"one");
    assert!(records.len() <= 2);
    Ok(())
}

#[test]
fn every_single_operation_failure_is_reported_never_swallowed() -> anyhow::Result<()> {
    // Walk a failure over every disk operation of open + 30 appends + a rotation-heavy
    // workload: each must surface as an error (or be recovered from at the next open).
    let total = {
        let fs = FaultFs::new();
        let wal = on(&fs).segment_size(200).open()?;
        for i in 0..30 {
            wal.append(&payload_for(i + 1))?;
        }
        wal.close()?;
        fs.ops()
    };
    for at in 0..total {
        let fs = FaultFs::new();
        fs.inject(at, Fault::Fail);
        let mut acked = 0;
        if let Ok(wal) = on(&fs).segment_size(200).open() {
            for i in 0..30 {
                match wal.append(&payload_for(i + 1)) {
                    Ok(seq) => {
                        assert_eq!(seq, i + 1);
                        acked = seq;
                    }
                    Err(_) => break,
                }
            }
        }
        let (_, records) = open_replay(&fs, RecoveryMode::TolerateTornTail)?;
        assert!(records.len() as u64 >= acked, "failure at op {at} lost acknowledged records");
        assert!(records.iter().all(|r| r.payload == payload_for(r.seq)));
    }
    Ok(())
}

mod group_commit {
    use super::SyncHookFs;
    use crate::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Condvar, Mutex};

    /// The state of a [`SyncHookFs`] hook whose first fsync once armed blocks until the test
    /// opens the gate, and which counts fsyncs: it makes "appenders arrive while a leader
    /// syncs" happen deterministically.
    #[derive(Debug, Default)]
    struct Gate {
        open: Mutex<bool>,
        cv: Condvar,
        armed: AtomicBool,
        in_sync: AtomicBool,
        syncs: AtomicU64,
    }

    /// Polls `cond` every millisecond for at most 10 s.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        for _ in 0..10_000 {
            if cond() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn appenders_arriving_during_a_sync_share_the_next_one() -> anyhow::Result<()> {
        let gate = Arc::new(Gate::default());
        let fs = {
            let gate = Arc::clone(&gate);
            SyncHookFs::new(FaultFs::new(), move |file| {
                let n = gate.syncs.fetch_add(1, Ordering::SeqCst);
                if n == 0 && gate.armed.load(Ordering::SeqCst) {
                    gate.in_sync.store(true, Ordering::SeqCst);
                    let mut open = gate.open.lock().expect("no panics");
                    while !*open {
                        open = gate.cv.wait(open).expect("no panics");
                    }
                }
                file.sync()
            })
        };
        // Segment creation fsyncs too; open first, then count from zero.
        let wal = Wal::builder(DIR).file_system(Arc::new(fs)).open()?;
        gate.syncs.store(0, Ordering::SeqCst);
        gate.armed.store(true, Ordering::SeqCst);
        std::thread::scope(|s| -> anyhow::Result<()> {
            let leader = s.spawn(|| wal.append(b"leader"));
            anyhow::ensure!(eventually(|| gate.in_sync.load(Ordering::SeqCst)), "no leader fsync");
            let followers: Vec<_> = (0..7)
                .map(|i| {
                    let wal = &wal;
                    s.spawn(move || wal.append(format!("follower {i}").as_bytes()))
                })
                .collect();
            // Every follower has written its record and waits for durability.
            anyhow::ensure!(eventually(|| wal.next_seq() == 9), "followers did not write");
            *gate.open.lock().expect("no panics") = true;
            gate.cv.notify_all();
            leader.join().expect("no panic")?;
            for f in followers {
                f.join().expect("no panic")?;
            }
            Ok(())
        })?;
        // One fsync for the leader's record, one shared by the seven that arrived meanwhile.
        assert_eq!(gate.syncs.load(Ordering::SeqCst), 2);
        assert_eq!(wal.durable_seq(), 8);
        Ok(())
    }
}

/// Runs a segment's fsync: given the file, it calls `sync` on it (or not) around its own work.
type SyncFn = dyn Fn(&dyn WalFile) -> io::Result<()> + Send + Sync;

/// A file system that forwards everything to a [`FaultFs`] but runs every segment fsync
/// through a hook: a deterministic way to make something happen while the log syncs.
#[derive(Clone)]
struct SyncHookFs {
    inner: FaultFs,
    sync: Arc<SyncFn>,
}

impl SyncHookFs {
    fn new(
        inner: FaultFs,
        sync: impl Fn(&dyn WalFile) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        SyncHookFs { inner, sync: Arc::new(sync) }
    }
}

impl std::fmt::Debug for SyncHookFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHookFs").field("inner", &self.inner).finish_non_exhaustive()
    }
}

struct SyncHookFile {
    inner: Box<dyn WalFile>,
    sync: Arc<SyncFn>,
}

impl std::fmt::Debug for SyncHookFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHookFile").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl WalFile for SyncHookFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.inner.append(buf)
    }

    fn sync(&self) -> io::Result<()> {
        (self.sync)(&*self.inner)
    }
}

impl FileSystem for SyncHookFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let inner = self.inner.create(path)?;
        Ok(Box::new(SyncHookFile { inner, sync: Arc::clone(&self.sync) }))
    }
    fn read(&self, path: &Path) -> io::Result<strata_wal::FileBytes> {
        self.inner.read(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<strata_wal::LockGuard> {
        self.inner.lock_dir(dir)
    }
}

/// The log the close test's hook appends to inside its next fsync, and what that append
/// returned.
#[derive(Debug, Default)]
struct SyncHook {
    wal: Option<Arc<Wal>>,
    appended: Option<strata_wal::Result<u64>>,
}

#[test]
fn an_append_acknowledged_while_close_syncs_is_durable_once_close_returns() -> anyhow::Result<()> {
    for policy in [SyncPolicy::Never, SyncPolicy::Interval(std::time::Duration::from_secs(3600))] {
        let fault = FaultFs::new();
        let hook = Arc::new(Mutex::new(SyncHook::default()));
        // Appends one record (once) inside the next segment fsync, while the log holds none
        // of its locks: a deterministic stand-in for another thread appending then.
        let fs = {
            let hook = Arc::clone(&hook);
            SyncHookFs::new(fault.clone(), move |file| {
                let res = file.sync();
                let wal = hook.lock().expect("no panics").wal.take();
                if let Some(wal) = wal {
                    let appended = wal.append(b"raced with close");
                    hook.lock().expect("no panics").appended = Some(appended);
                }
                res
            })
        };
        let wal = Arc::new(
            Wal::builder(DIR).file_system(Arc::new(fs.clone())).sync_policy(policy).open()?,
        );
        assert_eq!(wal.append(b"before close")?, 1);
        hook.lock().expect("no panics").wal = Some(Arc::clone(&wal));
        // An append racing with close's final fsync must either be refused or be covered by
        // that fsync: close returning `Ok` promises every acknowledged record is durable.
        wal.close()?;
        let appended = hook.lock().expect("no panics").appended.take();
        let expected = match appended {
            Some(Ok(seq)) => vec![1, seq],
            Some(Err(Error::Closed)) => vec![1],
            other => anyhow::bail!("{policy:?}: close did not fsync as expected: {other:?}"),
        };
        // The power goes after a clean close: everything acknowledged must be on disk.
        fault.crash();
        drop(wal);
        fault.restart();
        let seqs: Vec<u64> = replay_all(&on(&fault).open()?)?.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, expected, "{policy:?}: an acknowledged append was lost");
    }
    Ok(())
}
