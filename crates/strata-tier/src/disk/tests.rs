use super::*;

#[test]
fn region_names_parse_only_when_exact() {
    let table = [
        ("region-00000.dat", Some(0)),
        ("region-00042.dat", Some(42)),
        ("region-65535.dat", Some(65535)),
        ("region-.dat", None),
        ("region-00001.tmp", None),
        ("region-+1.dat", None),
        ("region-1x.dat", None),
        ("LOCK", None),
        ("region-99999999999.dat", None),
    ];
    for (name, want) in table {
        assert_eq!(parse_region_name(name), want, "{name}");
    }
}

#[test]
fn default_region_size_follows_the_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |cap: u64| DiskTier::builder(dir.path()).capacity(cap).config().unwrap();
    // capacity / 16, clamped to 64 KiB ..= 16 MiB, and never more than half the capacity.
    assert_eq!(cfg(1 << 30).region_size, 16 << 20);
    assert_eq!(cfg(16 << 20).region_size, 1 << 20);
    assert_eq!(cfg(256 << 10).region_size, 64 << 10);
    assert_eq!(cfg(100 << 10).region_size, 50 << 10);
    assert_eq!(cfg(4 << 10).regions, 2);
    assert_eq!(cfg(1 << 30).max_entry_size, (16 << 20) - REGION_HEADER_LEN);
}

#[test]
fn sizes_are_checked_against_the_entry_limit() {
    let dir = tempfile::tempdir().unwrap();
    let tier = DiskTier::builder(dir.path())
        .capacity(8 << 10)
        .region_size(4 << 10)
        .max_entry_size(100)
        .build()
        .unwrap();
    let inner = &tier.inner;
    assert!(inner.check_size(b"k", &[0; 59]).is_ok(), "40 + 1 + 59 = 100 fits");
    assert!(matches!(
        inner.check_size(b"k", &[0; 60]),
        Err(Error::TooLarge { what: "value", len: 60, max: 59 })
    ));
    assert!(matches!(
        inner.check_size(&[0; 61], b""),
        Err(Error::TooLarge { what: "key", len: 61, max: 60 })
    ));
}

#[test]
fn the_index_hasher_passes_u64_keys_through() {
    let mut h = IdentityHasher::default();
    h.write_u64(0xdead_beef);
    assert_eq!(h.finish(), 0xdead_beef);
    let mut h = IdentityHasher::default();
    h.write(&[1, 2]);
    assert_ne!(h.finish(), 0, "other writes still mix");
}

#[test]
fn metric_families_are_valid() {
    for desc in [
        metrics::CORRUPT_ENTRIES,
        metrics::CORRUPT_REGIONS,
        metrics::RECLAIMED_REGIONS,
        metrics::RECOVERED_ENTRIES,
        metrics::EXPIRED_DROPPED,
        metrics::ENTRIES,
        metrics::REGIONS_IN_USE,
    ] {
        desc.validate().unwrap_or_else(|e| panic!("{}: {e}", desc.name));
    }
}
