//! Integration tests of strata-wal: recovery against torn and flipped bytes, the fault
//! filesystem, checkpoints crashed at every step, a SIGKILL crash test in a subprocess, and a
//! bounded decoder fuzz.

mod checkpoint;
mod corruption;
mod crash;
mod faults;
mod fuzz;
mod mapped;
mod metrics;
mod misc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_wal::fault::FaultFs;
use strata_wal::{FileSystem, Record, RecoveryMode, SyncPolicy, Wal, WalBuilder};

/// The directory every in-memory log lives in.
pub(crate) const DIR: &str = "/wal";

pub(crate) fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

pub(crate) fn on(fs: &FaultFs) -> WalBuilder {
    Wal::builder(DIR).file_system(Arc::new(fs.clone()))
}

pub(crate) fn replay_all(wal: &Wal) -> anyhow::Result<Vec<Record>> {
    Ok(wal.replay()?.collect::<strata_wal::Result<Vec<_>>>()?)
}

/// The payload written for sequence number `seq` in tests that check payloads by number:
/// its length and bytes both depend on `seq`, so a record moved or mixed up is noticed.
pub(crate) fn payload_for(seq: u64) -> Vec<u8> {
    let len = (seq.wrapping_mul(2_654_435_761) % 97) as usize + 1;
    (0..len).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)).collect()
}

/// A small deterministic generator (xorshift64*), so tests need no extra dependency and a
/// failing seed can be replayed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn from_time() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Rng(nanos | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A fresh in-memory disk holding exactly `files`, all durable.
pub(crate) fn disk_with(files: &[(PathBuf, Vec<u8>)]) -> FaultFs {
    let fs = FaultFs::new();
    fs.create_dir_all(Path::new(DIR)).expect("fresh disk");
    for (path, bytes) in files {
        let f = fs.create(path).expect("fresh disk");
        f.append(bytes).expect("fresh disk");
        f.sync().expect("fresh disk");
    }
    fs.sync_dir(Path::new(DIR)).expect("fresh disk");
    fs
}

/// Writes `n` records with [`payload_for`] into a fresh in-memory log and returns the files.
pub(crate) fn written_log(n: u64, segment_size: u64) -> Vec<(PathBuf, Vec<u8>)> {
    let fs = FaultFs::new();
    let wal =
        on(&fs).segment_size(segment_size).sync_policy(SyncPolicy::Never).open().expect("open");
    for seq in 1..=n {
        assert_eq!(wal.append(&payload_for(seq)).expect("append"), seq);
    }
    wal.close().expect("close");
    drop(wal);
    fs.files()
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "wal"))
        .map(|(p, _)| {
            let bytes = fs.contents(&p).expect("listed");
            (p, bytes)
        })
        .collect()
}

/// Opens `fs` in `mode` and replays it.
pub(crate) fn open_replay(
    fs: &FaultFs,
    mode: RecoveryMode,
) -> strata_wal::Result<(Wal, Vec<Record>)> {
    let wal = on(fs).recovery_mode(mode).open()?;
    let records = wal.replay()?.collect::<strata_wal::Result<Vec<_>>>()?;
    Ok((wal, records))
}
