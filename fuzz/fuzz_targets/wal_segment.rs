//! Fuzzes the WAL segment decoder: the input is taken as a segment file (its first byte picks
//! whether a valid header is prepended, so the fuzzer reaches the frame decoder quickly) and
//! run through the frame iterator, salvage resynchronisation, recovery in every mode, replay
//! and `check_dir --repair`. Any panic, or a frame claiming bytes the input does not have, is a
//! bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::Arc;
use strata_wal::fault::FaultFs;
use strata_wal::format::{self, FileKind, FrameIter};
use strata_wal::{check_dir, CheckOptions, FileSystem, RecoveryMode, Wal};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = Vec::with_capacity(rest.len() + format::HEADER_LEN);
    if mode & 1 == 1 {
        bytes.extend_from_slice(&format::encode_header(FileKind::Segment, 1));
    }
    bytes.extend_from_slice(rest);
    let max = if mode & 2 == 2 { 64 } else { 1 << 20 };

    let _ = format::decode_header(&bytes);
    let mut end = 0u64;
    for item in FrameIter::new(&bytes, 0, max) {
        match item {
            Ok((offset, frame)) => {
                assert!(offset >= end);
                end = offset + frame.encoded_len() as u64;
                assert!(end <= bytes.len() as u64);
                assert!(frame.payload.len() <= max);
            }
            Err((offset, _)) => {
                let _ = format::resync(&bytes, offset as usize, max, |_| true);
            }
        }
    }

    let dir = Path::new("/wal");
    for recovery in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::SkipCorrupt,
    ] {
        let fs = FaultFs::new();
        let setup = (|| {
            fs.create_dir_all(dir)?;
            let f = fs.create(&dir.join(format!("{:020}.wal", 1)))?;
            f.append(&bytes)?;
            f.sync()?;
            fs.sync_dir(dir)
        })();
        if setup.is_err() {
            return;
        }
        let opened = Wal::builder(dir)
            .file_system(Arc::new(fs.clone()))
            .max_record_size(max)
            .recovery_mode(recovery)
            .open();
        if let Ok(wal) = opened {
            if let Ok(replay) = wal.replay() {
                let mut last = 0;
                for record in replay.flatten() {
                    assert!(record.seq > last);
                    last = record.seq;
                    assert!(record.payload.len() <= max);
                }
            }
        }
    }
    let fs = FaultFs::new();
    if fs.create_dir_all(dir).is_ok() {
        if let Ok(f) = fs.create(&dir.join(format!("{:020}.wal", 1))) {
            if f.append(&bytes).is_ok() {
                let _ = check_dir(&fs, dir, CheckOptions { repair: true, max_record_size: max });
            }
        }
    }
});
