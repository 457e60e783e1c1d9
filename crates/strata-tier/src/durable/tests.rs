use super::record::{Put, Remove};
use super::*;

fn put<'a>(key: &'a [u8], value: &'a [u8], version: u64) -> Put<'a> {
    Put { key, value, version, expires_at: None }
}

#[test]
fn replay_keeps_the_highest_version_whatever_the_order() -> Result<()> {
    // A snapshot may already reflect writes that the log tail replays after it: the older
    // tail writes must not win.
    let (kc, vc) = (Postcard::keys(), Postcard::values());
    let codecs: Codecs<'_, String, String> = Codecs { keys: &kc, values: &vc };
    let mut k = Vec::new();
    codecs.keys.encode(&"k".to_string(), &mut k)?;
    let value = |v: &str| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        codecs.values.encode(&v.to_string(), &mut out)?;
        Ok(out)
    };
    let (new, old, again) = (value("new")?, value("old")?, value("again")?);
    let mut state = ReplayMap::default();
    replay_put(&mut state, &codecs, &put(&k, &new, 20), 0)?;
    // A superseded value is not even decoded: garbage bytes in it are no error.
    replay_put(&mut state, &codecs, &put(&k, &[0xff; 3], 12), 0)?;
    replay_put(&mut state, &codecs, &put(&k, &old, 12), 0)?;
    replay_remove(&mut state, codecs.keys, &Remove { key: &k, version: 15 })?;
    assert_eq!(state.get("k").map(|s| (s.value.as_str(), s.version)), Some(("new", 20)));
    // Later writes apply in order; a newer removal removes.
    replay_remove(&mut state, codecs.keys, &Remove { key: &k, version: 21 })?;
    assert!(state.is_empty());
    replay_put(&mut state, &codecs, &put(&k, &again, 22), 0)?;
    assert_eq!(state.get("k").map(|s| s.version), Some(22));
    Ok(())
}

#[test]
fn options_reject_nonsense() {
    let dir = std::env::temp_dir().join("strata-durable-never-created");
    for (opts, what) in [
        (DurableOptions::<u32, u32>::new().capacity(0), "capacity"),
        (DurableOptions::new().max_attempts(0), "max_attempts"),
        (DurableOptions::new().checkpoint_bytes(Some(0)), "checkpoint_bytes"),
    ] {
        match DurableCache::open(&dir, opts) {
            Err(Error::InvalidConfig(msg)) => assert!(msg.contains(what), "{msg}"),
            other => panic!("{what}: expected InvalidConfig, got {other:?}"),
        }
        assert!(!dir.exists(), "a rejected configuration must not create the directory");
    }
}

#[test]
fn stored_values_pack_into_a_tagless_slot_and_keep_their_fields() {
    // The in-memory cache keeps `Option<(key, value)>`-like slots: the version's niche must
    // stand in for the tag (32 bytes with a u64 key and value, not 40).
    assert_eq!(std::mem::size_of::<Option<(u64, Stored<u64>)>>(), 32);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let cases = [
        (7, None, true),
        (8, Some(ExpiresAt(2_000_000)), true),
        (9, Some(ExpiresAt(500_000)), false),
        // A deadline of 0 ms is kept apart from "none": it has passed.
        (10, Some(ExpiresAt(0)), false),
        // Version 0 (only a damaged log could claim it) reads as the lowest version.
        (0, None, true),
    ];
    for (version, expires_at, live) in cases {
        let s = Stored::new(1u64, version, expires_at);
        assert_eq!(s.version(), version.max(1));
        assert_eq!(s.expires_at().is_some(), expires_at.is_some());
        assert_eq!(s.is_live(now), live, "{version} {expires_at:?}");
    }
}

/// Appends `rec` to `wal` as the durable cache would.
fn log(wal: &Wal, rec: LogRecord<'_>) -> Result<()> {
    let mut buf = Vec::new();
    rec.encode(&mut buf);
    wal.append(&buf)?;
    Ok(())
}

#[test]
fn a_put_logged_after_a_clear_with_a_lower_version_stays_cleared() -> Result<()> {
    // A plain insert that took its version before a clear may log its record after the
    // clear's; the clear removed it from memory, so recovery must skip it too. Also through
    // a snapshot, which starts with the latest clear's record.
    let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
    let (kc, vc) = (Postcard::keys(), Postcard::values());
    let enc = |s: &str, c: &Postcard| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        Codec::<String>::encode(c, &s.to_string(), &mut out)?;
        Ok(out)
    };
    let (a, b, c, v) = (enc("a", &kc)?, enc("b", &kc)?, enc("c", &kc)?, enc("v", &vc)?);
    let wal = Wal::builder(tmp.path()).sync_policy(SyncPolicy::Never).open()?;
    log(&wal, LogRecord::Put(put(&a, &v, 3)))?;
    log(&wal, LogRecord::Clear { version: 5 })?;
    log(&wal, LogRecord::Put(put(&b, &v, 4)))?;
    log(&wal, LogRecord::Put(put(&c, &v, 6)))?;
    wal.close()?;
    drop(wal);
    let opts = || DurableOptions::<String, String>::new().sync_policy(SyncPolicy::Never);
    let cache = DurableCache::open(tmp.path(), opts())?;
    let present = |cache: &DurableCache<String, String>| {
        ["a", "b", "c"].map(|k| cache.contains_key(&k.to_string()))
    };
    assert_eq!(present(&cache), [false, false, true]);
    // A checkpoint now carries the clear's version forward: a late record below it, logged
    // after the snapshot, is still skipped.
    cache.checkpoint()?;
    cache.close_blocking()?;
    drop(cache);
    let wal = Wal::builder(tmp.path()).sync_policy(SyncPolicy::Never).open()?;
    log(&wal, LogRecord::Put(put(&b, &v, 2)))?;
    wal.close()?;
    drop(wal);
    let cache = DurableCache::open(tmp.path(), opts())?;
    assert_eq!(present(&cache), [false, false, true]);
    cache.close_blocking()?;
    Ok(())
}
