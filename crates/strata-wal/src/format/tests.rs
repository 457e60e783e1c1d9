use super::*;
use proptest::prelude::*;

#[test]
fn header_round_trip_and_damage() {
    for (kind, id) in
        [(FileKind::Segment, 0), (FileKind::Snapshot, u64::MAX), (FileKind::Segment, 7)]
    {
        let h = encode_header(kind, id);
        assert_eq!(decode_header(&h), Ok(FileHeader { kind, id }));
        for bit in 0..HEADER_LEN * 8 {
            let mut bad = h;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_header(&bad).is_err(), "flip of bit {bit} went unnoticed");
        }
        for len in 0..HEADER_LEN {
            assert!(matches!(
                decode_header(&h[..len]),
                Err(HeaderError::Corrupt(CorruptionKind::Truncated { .. }))
            ));
        }
    }
}

#[test]
fn other_version_is_reported_as_version() {
    let mut h = encode_header(FileKind::Segment, 3);
    h[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode_header(&h), Err(HeaderError::Version(2)));
}

#[test]
fn length_is_checked_before_reading() {
    let mut buf = Vec::new();
    encode_frame(&mut buf, RecordType::Data, 1, &[7u8; 100]);
    assert!(matches!(
        decode_frame(&buf, 99),
        Err(CorruptionKind::LengthTooLarge { len: 100, max: 99 })
    ));
    assert!(decode_frame(&buf, 100).is_ok());
}

#[test]
fn resync_finds_the_next_frame() {
    let mut buf = Vec::new();
    encode_frame(&mut buf, RecordType::Data, 1, b"first");
    let second = buf.len();
    encode_frame(&mut buf, RecordType::Data, 2, b"second");
    buf[3] ^= 0xff;
    assert!(decode_frame(&buf, 64).is_err());
    assert_eq!(resync(&buf, 0, 64, |f| f.seq > 0), Some(second));
    assert_eq!(resync(&buf, 0, 64, |f| f.seq > 2), None);
}

proptest! {
    #[test]
    fn frames_round_trip(records in proptest::collection::vec(
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()), 0..20)) {
        let mut buf = Vec::new();
        for (seq, payload, end) in &records {
            let ty = if *end { RecordType::SnapshotEnd } else { RecordType::Data };
            encode_frame(&mut buf, ty, *seq, payload);
        }
        let decoded: Vec<_> = FrameIter::new(&buf, 0, 300).collect();
        prop_assert_eq!(decoded.len(), records.len());
        for (got, (seq, payload, end)) in decoded.iter().zip(&records) {
            let (_, frame) = got.as_ref().map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(frame.seq, *seq);
            prop_assert_eq!(frame.payload, &payload[..]);
            prop_assert_eq!(frame.ty == RecordType::SnapshotEnd, *end);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), max in 0usize..4096) {
        let _ = decode_header(&bytes);
        let n = FrameIter::new(&bytes, 0, max).count();
        prop_assert!(n <= bytes.len() / FRAME_OVERHEAD + 1);
        let _ = resync(&bytes, 0, max, |_| true);
    }
}
