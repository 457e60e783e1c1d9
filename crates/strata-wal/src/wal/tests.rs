use super::*;
use crate::fault::FaultFs;

fn builder(fs: &FaultFs) -> WalBuilder {
    Wal::builder("/wal").file_system(Arc::new(fs.clone()))
}

#[test]
fn builder_rejects_nonsense() {
    let fs = FaultFs::new();
    let cases = [
        builder(&fs).max_record_size(0),
        builder(&fs).segment_size(10),
        builder(&fs).sync_policy(SyncPolicy::Interval(Duration::ZERO)),
        builder(&fs).max_record_size(usize::MAX),
    ];
    for b in cases {
        assert!(matches!(b.open(), Err(Error::InvalidConfig(_))));
    }
}

#[test]
fn wal_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Wal>();
    check::<Replay>();
}

#[test]
fn rotation_keeps_sequence_and_segments() {
    let fs = FaultFs::new();
    let wal = builder(&fs).segment_size(200).open().unwrap();
    for i in 0..50u32 {
        assert_eq!(wal.append(&i.to_le_bytes()).unwrap(), u64::from(i) + 1);
    }
    let segs = wal.shared.log.lock().segments.len();
    assert!(segs > 5, "only {segs} segments");
    let got: Vec<u64> = wal.replay().unwrap().map(|r| r.unwrap().seq).collect();
    assert_eq!(got, (1..=50).collect::<Vec<_>>());
}

#[test]
fn oversized_record_is_refused_without_writing() {
    let fs = FaultFs::new();
    let wal = builder(&fs).max_record_size(8).open().unwrap();
    assert!(matches!(wal.append(&[0; 9]), Err(Error::TooLarge { size: 9, max: 8 })));
    assert_eq!(wal.append(&[0; 8]).unwrap(), 1);
}

#[test]
fn failed_write_poisons() {
    let fs = FaultFs::new();
    let wal = builder(&fs).open().unwrap();
    wal.append(b"a").unwrap();
    fs.inject(fs.ops(), crate::fault::Fault::Tear { keep: 5 });
    assert!(matches!(wal.append(b"b"), Err(Error::Io { .. })));
    assert!(matches!(wal.append(b"c"), Err(Error::Poisoned)));
    drop(wal);
    let wal = builder(&fs).open().unwrap();
    assert_eq!(wal.recovery_report().bytes_truncated, 5);
    let got: Vec<_> = wal.replay().unwrap().map(|r| r.unwrap().payload).collect();
    assert_eq!(got, vec![b"a".to_vec()]);
    assert_eq!(wal.append(b"d").unwrap(), 2);
}
