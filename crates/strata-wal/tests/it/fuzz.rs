//! A bounded, seeded fuzz of the decoders, run with every test: arbitrary bytes and mutated
//! valid logs, through the frame decoder, recovery in every mode, replay and `check_dir`.
//! (The open-ended fuzzer is the cargo-fuzz target in `fuzz/`.)

use crate::*;
use proptest::prelude::*;
use strata_wal::format::{decode_frame, decode_header, FrameIter, HEADER_LEN};
use strata_wal::{check_dir, CheckOptions};

fn mutate(mut bytes: Vec<u8>, ops: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(op, at, val) in ops {
        if bytes.is_empty() {
            bytes.push(val);
            continue;
        }
        let at = at % bytes.len();
        match op % 5 {
            0 => bytes[at] ^= 1 << (val % 8),
            1 => bytes[at] = val,
            2 => bytes.truncate(at),
            3 => {
                let end = (at + usize::from(val)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                bytes.extend_from_slice(&chunk);
            }
            _ => bytes.insert(at, val),
        }
    }
    bytes
}

/// Recovery in every mode must not panic, and whatever it returns must be authentic: the
/// payload written for that sequence number, in increasing order.
fn check_all_modes(files: &[(std::path::PathBuf, Vec<u8>)]) -> Result<(), TestCaseError> {
    for mode in [
        RecoveryMode::TolerateTornTail,
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::SkipCorrupt,
    ] {
        let fs = disk_with(files);
        if let Ok((_, records)) = open_replay(&fs, mode) {
            for w in records.windows(2) {
                prop_assert!(w[0].seq < w[1].seq);
            }
            for r in &records {
                prop_assert_eq!(&r.payload, &payload_for(r.seq), "mode {:?}", mode);
            }
            if mode != RecoveryMode::SkipCorrupt {
                let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
                prop_assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
            }
        }
        let fs = disk_with(files);
        let _ = check_dir(&fs, &dir(), CheckOptions { repair: true, ..CheckOptions::default() });
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_a_segment(body in proptest::collection::vec(any::<u8>(), 0..600), header in any::<bool>()) {
        let mut bytes = if header { strata_wal::format::encode_header(strata_wal::format::FileKind::Segment, 1).to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&body);
        let _ = decode_header(&bytes);
        let _ = decode_frame(&bytes, 1 << 20);
        prop_assert!(FrameIter::new(&bytes, 0, usize::MAX).count() <= bytes.len() / 17 + 1);
        check_all_modes(&[(dir().join(format!("{:020}.wal", 1)), bytes)])?;
    }

    #[test]
    fn mutated_valid_logs(n in 1u64..25, seg in 120u64..600, ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6), which in any::<usize>()) {
        let mut files = written_log(n, seg);
        let i = which % files.len();
        let bytes = std::mem::take(&mut files[i].1);
        files[i].1 = mutate(bytes, &ops);
        check_all_modes(&files)?;
    }

    #[test]
    fn frame_decoder_never_reads_past_its_input(bytes in proptest::collection::vec(any::<u8>(), HEADER_LEN..400), max in 0usize..1000) {
        for at in 0..bytes.len() {
            if let Ok(f) = decode_frame(&bytes[at..], max) {
                prop_assert!(f.encoded_len() <= bytes.len() - at);
                prop_assert!(f.payload.len() <= max);
            }
        }
    }
}
