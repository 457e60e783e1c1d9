//! The durable cache: restarts against a reference model (with checkpoints in between), TTLs
//! across restarts, transactions (rollback, conflicts, serializability checks), bad input, and
//! checkpoints. The SIGKILL crash test is in `durable_crash`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use strata_core::{Clock, ManualClock};
use strata_tier::durable::{DurableCache, DurableOptions};
use strata_tier::{Error, Postcard};
use strata_wal::SyncPolicy;

type Db = DurableCache<String, u64>;

fn opts() -> DurableOptions<String, u64> {
    // `Never` keeps the tests fast; what they check does not depend on fsyncs (the crash test
    // covers `Always`).
    DurableOptions::new().sync_policy(SyncPolicy::Never).capacity(100_000)
}

fn open(dir: &Path) -> Db {
    DurableCache::open(dir, opts()).expect("open the durable cache")
}

fn contents(db: &Db) -> HashMap<String, u64> {
    db.iter().collect()
}

/// Total bytes of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// A small deterministic generator (xorshift64*), so the tests need no extra dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn seeded(seed: u64) -> Self {
        Rng(seed.max(1))
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

#[test]
fn random_operations_survive_restarts_and_checkpoints() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut model: HashMap<String, u64> = HashMap::new();
    let mut rng = Rng::seeded(0x5eed);
    let mut db = open(tmp.path());
    for step in 0..3_000u64 {
        let key = format!("k{}", rng.below(200));
        match rng.below(100) {
            0..=54 => {
                db.insert(key.clone(), step)?;
                model.insert(key, step);
            }
            55..=74 => {
                assert_eq!(db.remove(&key)?, model.remove(&key), "remove {key} at {step}");
            }
            75..=89 => {
                let other = format!("k{}", rng.below(200));
                db.transaction(|tx| -> strata_tier::Result<()> {
                    let a = tx.get(&key)?.unwrap_or(0);
                    tx.insert(other.clone(), a + 1)?;
                    tx.remove(&key)?;
                    Ok(())
                })?;
                let a = model.get(&key).copied().unwrap_or(0);
                model.insert(other, a + 1);
                // When both keys are the same, the later buffered write wins: the removal.
                model.remove(&key);
            }
            90..=92 => {
                db.checkpoint()?;
            }
            93 if step % 7 == 0 => {
                db.clear()?;
                model.clear();
            }
            _ => {
                db.close_blocking()?;
                drop(db);
                db = open(tmp.path());
                assert_eq!(contents(&db), model, "after a restart at step {step}");
            }
        }
    }
    db.close_blocking()?;
    drop(db);
    let db = open(tmp.path());
    assert_eq!(contents(&db), model);
    Ok(())
}

/// Plain inserts do not wait for a concurrent clear: whatever mix of cleared and kept
/// entries memory ends with, recovery must rebuild exactly it, also through checkpoints taken
/// during the clears (a clear may still be removing entries while a snapshot is written).
#[test]
fn inserts_racing_with_clears_and_checkpoints_recover_what_memory_held() -> anyhow::Result<()> {
    for round in 0..4u64 {
        let tmp = tempfile::tempdir()?;
        let db = DurableCache::open(tmp.path(), opts().checkpoint_bytes(None))?;
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (db, stop) = (&db, &stop);
                s.spawn(move || {
                    let mut rng = Rng::seeded(round * 10 + t + 1);
                    let started = Instant::now();
                    for n in 0..20_000u64 {
                        if stop.load(Ordering::Relaxed)
                            || started.elapsed() > Duration::from_secs(5)
                        {
                            break;
                        }
                        let key = format!("k{}", rng.below(300));
                        db.insert(key, n * 10 + t).expect("insert");
                    }
                });
            }
            let (db, stop) = (&db, &stop);
            s.spawn(move || {
                for i in 0..30 {
                    db.clear().expect("clear");
                    if i % 3 == round % 3 {
                        // Checkpoints right after a clear catch it still removing entries.
                        db.checkpoint().expect("checkpoint");
                    }
                    std::thread::yield_now();
                }
                stop.store(true, Ordering::Relaxed);
            });
        });
        let before = contents(&db);
        db.close_blocking()?;
        drop(db);
        let db = open(tmp.path());
        anyhow::ensure!(contents(&db) == before, "round {round}: recovery differs from memory");
        db.close_blocking()?;
    }
    Ok(())
}

#[test]
fn versions_and_compare_and_swap() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = open(tmp.path());
    let k = "k".to_string();
    assert_eq!(db.compare_and_swap(k.clone(), 5, 1)?, Err(0), "absent is version 0");
    let v1 = db.compare_and_swap(k.clone(), 0, 1)?.map_err(|c| anyhow::anyhow!("{c}"))?;
    assert_eq!(db.get_versioned(&k), Some((1, v1)));
    assert_eq!(db.compare_and_swap(k.clone(), 0, 2)?, Err(v1), "present: 0 no longer matches");
    let v2 = db.insert(k.clone(), 3)?;
    assert!(v2 > v1);
    assert_eq!(db.compare_and_swap(k.clone(), v1, 4)?, Err(v2), "a stale version is refused");
    let v3 = db.compare_and_swap(k.clone(), v2, 5)?.map_err(|c| anyhow::anyhow!("{c}"))?;
    db.remove(&k)?;
    assert_eq!(db.get_versioned(&k), None);
    db.close_blocking()?;
    drop(db);
    // Versions are never reused across a restart, even once the key holding the highest is
    // gone: a client holding an old version cannot swap over a newer write.
    let db = open(tmp.path());
    let v4 = db.insert(k.clone(), 6)?;
    assert!(v4 > v3, "{v4} > {v3}");
    db.checkpoint()?;
    db.remove(&k)?;
    db.checkpoint()?;
    db.close_blocking()?;
    drop(db);
    let db = open(tmp.path());
    let v5 = db.insert("other".into(), 7)?;
    assert!(v5 > v4 + 1, "{v5} > {v4} and the removal's version");
    Ok(())
}

#[test]
fn ttl_is_absolute_across_restarts_with_a_manual_clock() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new());
    let with_clock = || opts().clock(clock.clone() as Arc<dyn Clock>);
    let db = DurableCache::open(tmp.path(), with_clock())?;
    db.insert_with_ttl("short".into(), 1, Duration::from_secs(10))?;
    db.insert_with_ttl("long".into(), 2, Duration::from_secs(100))?;
    db.insert("forever".into(), 3)?;
    db.transaction(|tx| -> strata_tier::Result<()> {
        tx.insert_with_ttl("txn-short".into(), 4, Duration::from_secs(10))?;
        tx.insert_with_ttl("txn-long".into(), 5, Duration::from_secs(100))
    })?;
    db.checkpoint()?;
    db.insert_with_ttl("after-checkpoint".into(), 6, Duration::from_secs(10))?;
    db.close_blocking()?;
    drop(db);

    clock.advance(Duration::from_secs(5));
    let db = DurableCache::open(tmp.path(), with_clock())?;
    assert_eq!(db.recovery_stats().expired, 0);
    assert_eq!(db.get(&"short".into()), Some(1));
    // The in-memory copy expires at the same absolute instant.
    clock.advance(Duration::from_secs(6));
    assert_eq!(db.get(&"short".into()), None);
    assert_eq!(db.get(&"txn-short".into()), None);
    assert_eq!(db.get(&"long".into()), Some(2));
    db.close_blocking()?;
    drop(db);

    clock.advance(Duration::from_secs(1));
    let db = DurableCache::open(tmp.path(), with_clock())?;
    assert_eq!(db.recovery_stats().expired, 3, "short, txn-short, after-checkpoint");
    let mut got: Vec<(String, u64)> = db.iter().collect();
    got.sort();
    let want = [("forever", 3), ("long", 2), ("txn-long", 5)];
    assert_eq!(got, want.map(|(k, v)| (k.to_string(), v)));
    Ok(())
}

#[test]
fn ttl_is_honoured_across_a_restart_in_real_time() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = open(tmp.path());
    db.insert_with_ttl("short".into(), 1, Duration::from_millis(300))?;
    db.insert_with_ttl("long".into(), 2, Duration::from_secs(600))?;
    db.close_blocking()?;
    drop(db);
    std::thread::sleep(Duration::from_millis(400));
    let db = open(tmp.path());
    assert_eq!(db.get(&"short".into()), None);
    assert_eq!(db.get(&"long".into()), Some(2));
    assert_eq!(db.recovery_stats().expired, 1);
    Ok(())
}

#[test]
fn a_value_that_cannot_be_encoded_changes_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let small = || {
        DurableOptions::<String, String>::with_codecs(
            Postcard::keys().with_max_len(16),
            Postcard::values().with_max_len(32),
        )
        .sync_policy(SyncPolicy::Never)
    };
    let db = DurableCache::open(tmp.path(), small())?;
    db.insert("k".into(), "fits".into())?;
    let big = "x".repeat(100);
    assert!(matches!(
        db.insert("k".into(), big.clone()),
        Err(Error::TooLarge { what: "value", .. })
    ));
    assert!(matches!(
        db.insert("a key that is far too long".into(), "v".into()),
        Err(Error::TooLarge { what: "key", .. })
    ));
    let r = db.transaction(|tx| -> strata_tier::Result<()> {
        tx.insert("other".into(), "fine".into())?;
        tx.insert("k".into(), big.clone())
    });
    assert!(matches!(r, Err(Error::TooLarge { .. })), "{r:?}");
    assert_eq!(db.get(&"k".into()).as_deref(), Some("fits"));
    assert_eq!(db.get(&"other".into()), None, "the failed transaction applied nothing");
    db.close_blocking()?;
    drop(db);
    let db = DurableCache::open(tmp.path(), small())?;
    assert_eq!(db.iter().collect::<Vec<_>>(), vec![("k".to_string(), "fits".to_string())]);
    Ok(())
}

#[test]
fn transactions_roll_back_on_error_and_panic() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = open(tmp.path());
    db.insert("a".into(), 1)?;
    let r: anyhow::Result<()> = db.transaction(|tx| {
        tx.insert("a".into(), 100)?;
        tx.insert("b".into(), 100)?;
        Err(anyhow::anyhow!("changed my mind"))
    });
    assert_eq!(r.map_err(|e| e.to_string()), Err("changed my mind".to_string()));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = db.transaction(|tx| -> strata_tier::Result<()> {
            tx.insert("a".into(), 200)?;
            tx.remove(&"a".into())?;
            panic!("inside the transaction");
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(contents(&db), HashMap::from([("a".to_string(), 1)]));
    // The cache is still usable, and nothing was logged.
    db.transaction(|tx| -> strata_tier::Result<()> { tx.insert("c".into(), 3) })?;
    db.close_blocking()?;
    drop(db);
    let db = open(tmp.path());
    assert_eq!(contents(&db), HashMap::from([("a".to_string(), 1), ("c".to_string(), 3)]));
    Ok(())
}

#[test]
fn reads_see_own_writes_and_repeat() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = open(tmp.path());
    db.insert("a".into(), 1)?;
    db.transaction(|tx| -> strata_tier::Result<()> {
        assert_eq!(tx.get(&"a".into())?, Some(1));
        tx.insert("a".into(), 2)?;
        assert_eq!(tx.get(&"a".into())?, Some(2));
        tx.remove(&"a".into())?;
        assert_eq!(tx.get(&"a".into())?, None);
        assert_eq!(tx.get(&"fresh".into())?, None);
        tx.insert("fresh".into(), 9)?;
        Ok(())
    })?;
    assert_eq!(contents(&db), HashMap::from([("fresh".to_string(), 9)]));
    Ok(())
}

#[test]
fn a_transaction_that_always_conflicts_gives_up() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = DurableCache::open(tmp.path(), opts().max_attempts(5))?;
    let runs = AtomicU64::new(0);
    let r = db.transaction(|tx| -> strata_tier::Result<()> {
        runs.fetch_add(1, Ordering::Relaxed);
        let v = tx.get(&"k".into())?.unwrap_or(0);
        // A plain write between the read and the commit: the read is stale at commit.
        db.insert("k".into(), v + 1)?;
        tx.insert("k".into(), 1000)
    });
    assert!(matches!(r, Err(Error::Conflict { attempts: 5 })), "{r:?}");
    assert_eq!(runs.load(Ordering::Relaxed), 5);
    assert_eq!(db.get(&"k".into()), Some(5), "only the plain writes were applied");
    Ok(())
}

#[test]
fn concurrent_increments_are_never_lost() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = DurableCache::open(tmp.path(), opts().max_attempts(10_000))?;
    let (threads, per) = (4u64, 150u64);
    std::thread::scope(|s| {
        for t in 0..threads {
            let db = &db;
            s.spawn(move || {
                for i in 0..per {
                    db.transaction(|tx| -> strata_tier::Result<()> {
                        let n = tx.get(&"counter".into())?.unwrap_or(0);
                        tx.insert("counter".into(), n + 1)?;
                        tx.insert(format!("thread{t}"), i + 1)
                    })
                    .expect("an increment commits within the attempt limit");
                    // Plain operations interleave with the transactions.
                    db.insert(format!("plain{t}"), i).expect("plain insert");
                }
            });
        }
    });
    assert_eq!(db.get(&"counter".into()), Some(threads * per));
    db.close_blocking()?;
    drop(db);
    let db = open(tmp.path());
    assert_eq!(db.get(&"counter".into()), Some(threads * per));
    for t in 0..threads {
        assert_eq!(db.get(&format!("thread{t}")), Some(per));
    }
    Ok(())
}

/// Write skew: two doctors on call, each may go off call only if the other is still on. Under
/// snapshot isolation both can go; under serializability at least one stays.
#[test]
fn write_skew_is_prevented() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = DurableCache::open(tmp.path(), opts().max_attempts(1_000))?;
    let (x, y) = ("x".to_string(), "y".to_string());
    for round in 0..100 {
        db.insert(x.clone(), 1)?;
        db.insert(y.clone(), 1)?;
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            for (me, other) in [(&x, &y), (&y, &x)] {
                let (db, barrier) = (&db, &barrier);
                s.spawn(move || {
                    db.transaction(|tx| -> strata_tier::Result<()> {
                        let mine = tx.get(me)?.unwrap_or(0);
                        if tx.attempt() == 1 {
                            // Both read before either commits, on the first attempt.
                            barrier.wait();
                        }
                        let theirs = tx.get(other)?.unwrap_or(0);
                        if mine + theirs >= 2 {
                            tx.insert(me.clone(), 0)?;
                        }
                        Ok(())
                    })
                    .expect("commits");
                });
            }
        });
        let (a, b) = (db.get(&x).unwrap_or(0), db.get(&y).unwrap_or(0));
        assert_eq!(a + b, 1, "round {round}: exactly one doctor stays on call, got {a} + {b}");
    }
    Ok(())
}

/// Transfers between accounts run concurrently with read-only transactions that sum every
/// account: every sum must be the invariant total (no torn or mixed state is ever seen).
#[test]
fn readers_never_see_a_partial_transfer() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = DurableCache::open(tmp.path(), opts().max_attempts(100_000))?;
    let accounts: Vec<String> = (0..6).map(|i| format!("acct{i}")).collect();
    for a in &accounts {
        db.insert(a.clone(), 1_000)?;
    }
    let total = 1_000 * accounts.len() as u64;
    let stop = AtomicBool::new(false);
    let sums = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (db, accounts, stop, sums) = (&db, &accounts, &stop, &sums);
            s.spawn(move || {
                let mut rng = Rng::seeded(t + 7);
                let started = Instant::now();
                // At least 400 transfers, and on until the reader has summed a few times
                // (transfers can be fast enough to finish before it is first scheduled).
                for n in 0.. {
                    let read = sums.load(Ordering::Relaxed) >= 20;
                    if n >= 400 && (read || started.elapsed() > Duration::from_secs(10)) {
                        break;
                    }
                    let (i, j) = (rng.below(6) as usize, rng.below(6) as usize);
                    let amount = rng.below(50);
                    db.transaction(|tx| -> strata_tier::Result<()> {
                        let a = tx.get(&accounts[i])?.unwrap_or(0);
                        let moved = amount.min(a);
                        tx.insert(accounts[i].clone(), a - moved)?;
                        let b = tx.get(&accounts[j])?.unwrap_or(0);
                        tx.insert(accounts[j].clone(), b + moved)
                    })
                    .expect("transfer commits");
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
        let (db, accounts, stop, sums) = (&db, &accounts, &stop, &sums);
        s.spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                let sum = db
                    .transaction(|tx| -> strata_tier::Result<u64> {
                        let mut sum = 0;
                        for a in accounts {
                            sum += tx.get(a)?.unwrap_or(0);
                        }
                        Ok(sum)
                    })
                    .expect("a read-only transaction commits");
                assert_eq!(sum, total, "a reader saw a partial transfer");
                sums.fetch_add(1, Ordering::Relaxed);
            }
        });
    });
    assert!(sums.load(Ordering::Relaxed) > 0);
    let final_sum: u64 = accounts.iter().map(|a| db.get(a).unwrap_or(0)).sum();
    assert_eq!(final_sum, total);
    Ok(())
}

#[test]
fn async_transactions_commit_and_conflict_like_sync_ones() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().to_path_buf();
    rt.block_on(async move {
        let db: Db = DurableCache::open(
            &path,
            DurableOptions::new().sync_policy(SyncPolicy::Always).max_attempts(10_000),
        )?;
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    db.transaction_async(async |tx| -> strata_tier::Result<()> {
                        let n = tx.get(&"n".into())?.unwrap_or(0);
                        tokio::task::yield_now().await;
                        tx.insert("n".into(), n + 1)
                    })
                    .await?;
                }
                Ok::<(), Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        assert_eq!(db.get(&"n".into()), Some(100));
        let r: Result<(), Error> = db
            .transaction_async(async |tx| {
                tx.insert("n".into(), 0)?;
                Err(Error::Closed)
            })
            .await;
        assert!(matches!(r, Err(Error::Closed)));
        db.close().await?;
        assert!(matches!(db.insert("n".into(), 1), Err(Error::Closed)));
        drop(db);
        let db: Db = DurableCache::open(&path, DurableOptions::new())?;
        assert_eq!(db.get(&"n".into()), Some(100));
        db.close().await?;
        Ok::<(), anyhow::Error>(())
    })
}

#[test]
fn a_checkpoint_shrinks_the_log_and_recovers_the_same_state() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // Small segments: the new active segment reserves its whole size on disk at once (it is
    // memory-mapped under `Never`), which counts in the bytes compared below.
    let small = || opts().segment_size(16 << 10).checkpoint_bytes(None);
    let db = DurableCache::open(tmp.path(), small())?;
    // Much history, little live data: 200 keys overwritten 100 times each.
    for round in 0..100u64 {
        for k in 0..200u64 {
            db.insert(format!("k{k}"), round * 1000 + k)?;
        }
    }
    let before = contents(&db);
    let bytes_before = dir_bytes(tmp.path());
    db.checkpoint()?;
    let bytes_after = dir_bytes(tmp.path());
    assert!(
        bytes_after * 10 < bytes_before,
        "the log should shrink at least tenfold: {bytes_before} -> {bytes_after} bytes"
    );
    // Writes after the checkpoint land in the tail.
    db.insert("k0".into(), 7)?;
    db.remove(&"k1".into())?;
    let mut want = before.clone();
    want.insert("k0".into(), 7);
    want.remove("k1");
    db.close_blocking()?;
    drop(db);
    let db = DurableCache::open(tmp.path(), small())?;
    assert_eq!(contents(&db), want);
    let stats = db.recovery_stats();
    assert_eq!(stats.snapshot_records, 201, "200 entries and the version floor");
    assert_eq!(stats.log_records, 2);
    Ok(())
}

#[test]
fn background_checkpoints_run_while_writers_write() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let small = || opts().segment_size(32 << 10).checkpoint_bytes(Some(64 << 10));
    let db = DurableCache::open(tmp.path(), small())?;
    let mut model = HashMap::new();
    let started = Instant::now();
    let mut i = 0u64;
    // Keep writing until at least two background checkpoints finished (bounded in time).
    while db.checkpoint_counts().0 < 2 && started.elapsed() < Duration::from_secs(20) {
        let key = format!("k{}", i % 500);
        if i % 5 == 4 {
            db.remove(&key)?;
            model.remove(&key);
        } else {
            db.insert(key.clone(), i)?;
            model.insert(key, i);
        }
        i += 1;
    }
    let (done, failed) = db.checkpoint_counts();
    assert!(done >= 2, "{done} background checkpoints after {i} writes");
    assert_eq!(failed, 0);
    assert_eq!(contents(&db), model);
    db.close_blocking()?;
    drop(db);
    let db = DurableCache::open(tmp.path(), small())?;
    assert!(db.recovery_stats().snapshot_records > 0);
    assert_eq!(contents(&db), model);
    Ok(())
}

/// The checkpoint trigger looks at the log's size every 64th record, and also at every record
/// of a 64th of the threshold or more: a few large values must not carry the log far past it.
#[test]
fn a_few_large_values_start_a_checkpoint() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let options = DurableOptions::<String, Vec<u8>>::new()
        .sync_policy(SyncPolicy::Never)
        .capacity(1_000)
        .checkpoint_bytes(Some(64 << 10));
    let db = DurableCache::open(tmp.path(), options)?;
    // Twenty records of 8 KiB: 160 KiB of log, far fewer than 64 records.
    for i in 0..20u8 {
        db.insert(format!("k{i}"), vec![i; 8 << 10])?;
    }
    let started = Instant::now();
    while db.checkpoint_counts().0 == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(db.checkpoint_counts().0 >= 1, "no checkpoint after 160 KiB of 64 KiB allowed");
    db.close_blocking()?;
    Ok(())
}

#[test]
fn a_directory_that_is_a_file_is_a_clear_error() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a directory")?;
    // The path itself is a file, and a path below a file: both refused, the file untouched.
    for path in [file.clone(), file.join("below")] {
        let err = DurableCache::open(&path, opts()).expect_err("a file is not a log directory");
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                Error::Wal(strata_wal::Error::InvalidConfig(_) | strata_wal::Error::Io { .. })
            ),
            "{msg}"
        );
        assert!(msg.contains(&file.display().to_string()), "the message names the path: {msg}");
    }
    assert_eq!(std::fs::read(&file)?, b"not a directory");
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_directory_without_permission_is_a_clear_error() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("locked-out");
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500))?;
    // Permission bits do not bind a privileged user (root, CAP_DAC_OVERRIDE): probe first.
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"x").is_ok() {
        eprintln!(
            "a_directory_without_permission_is_a_clear_error: this process may write into a \
             read-only directory (it runs as root or with CAP_DAC_OVERRIDE), so permission \
             bits cannot be tested here; a_directory_that_is_a_file_is_a_clear_error covers \
             an unusable path"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        return Ok(());
    }
    let err = DurableCache::open(dir.join("db"), opts()).expect_err("no permission");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    match &err {
        Error::Wal(strata_wal::Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
        }
        other => panic!("expected a permission error, got {other:?}"),
    }
    Ok(())
}

/// CRC32C (Castagnoli), bitwise: the tests rewrite a header without another dependency.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

fn segments(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    Ok(out)
}

#[test]
fn a_log_of_a_newer_format_is_refused_and_left_alone() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = open(tmp.path());
    db.insert("a".into(), 1)?;
    db.close_blocking()?;
    drop(db);
    let seg = segments(tmp.path())?
        .into_iter()
        .find(|p| std::fs::metadata(p).map(|m| m.len() > 24).unwrap_or(false))
        .ok_or_else(|| anyhow::anyhow!("no segment with records"))?;
    let mut bytes = std::fs::read(&seg)?;
    // The header: magic (8), version (4, little endian), id (8), CRC32C of the first 20.
    assert_eq!(&bytes[8..12], &1u32.to_le_bytes(), "this test knows format version 1");
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c(&bytes[..20]);
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes)?;
    let err = DurableCache::open(tmp.path(), opts()).expect_err("a newer format");
    assert!(
        matches!(
            err,
            Error::Wal(strata_wal::Error::UnsupportedVersion { found: 2, supported: 1, .. })
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&seg)?, bytes, "the newer log is left as it was");
    Ok(())
}

#[test]
fn a_second_opener_of_the_same_directory_is_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = open(tmp.path());
    db.insert("a".into(), 1)?;
    // flock is per open file, so a second open in this process is refused exactly as one in
    // another process would be (the crash test's parent and child rely on the same lock).
    let err = DurableCache::open(tmp.path(), opts()).expect_err("locked");
    assert!(matches!(err, Error::Wal(strata_wal::Error::Locked { .. })), "{err}");
    assert!(err.to_string().contains("locked"), "{err}");
    assert_eq!(db.get(&"a".into()), Some(1), "the first opener is unaffected");
    db.insert("b".into(), 2)?;
    db.close_blocking()?;
    drop(db);
    let db = open(tmp.path());
    assert_eq!(contents(&db).len(), 2);
    Ok(())
}

#[test]
fn a_record_that_is_not_a_cache_record_is_reported_as_corrupt() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    {
        let wal = strata_wal::Wal::builder(tmp.path()).open()?;
        wal.append(&[250, 1, 2, 3])?;
        wal.close()?;
    }
    let err = DurableCache::open(tmp.path(), opts()).expect_err("a foreign record");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("record 1"), "{err}");
    Ok(())
}

#[test]
fn closed_caches_refuse_writes_but_serve_reads() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = open(tmp.path());
    db.insert("a".into(), 1)?;
    db.close_blocking()?;
    db.close_blocking()?;
    assert!(matches!(db.insert("b".into(), 2), Err(Error::Closed)));
    assert!(matches!(db.remove(&"a".into()), Err(Error::Closed)));
    assert!(matches!(
        db.transaction(|tx| -> strata_tier::Result<()> { tx.insert("c".into(), 3) }),
        Err(Error::Closed)
    ));
    assert_eq!(db.get(&"a".into()), Some(1));
    Ok(())
}

#[test]
fn a_write_buffer_loses_nothing_on_close_or_drop() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let buffered =
        || opts().sync_policy(SyncPolicy::Interval(Duration::from_secs(60))).write_buffer(1 << 20);
    let db = DurableCache::open(tmp.path(), buffered())?;
    for k in 0..100u64 {
        db.insert(format!("k{k}"), k)?;
    }
    // Dropping hands the buffer to the OS (without an fsync): a process that exits normally
    // keeps every write even without close.
    drop(db);
    let db = DurableCache::open(tmp.path(), buffered())?;
    assert_eq!(contents(&db).len(), 100);
    for k in 100..200u64 {
        db.insert(format!("k{k}"), k)?;
    }
    db.close_blocking()?;
    drop(db);
    let db = open(tmp.path());
    assert_eq!(contents(&db).len(), 200);
    db.close_blocking()?;
    drop(db);
    let err =
        DurableCache::open(tmp.path(), opts().sync_policy(SyncPolicy::Always).write_buffer(1))
            .expect_err("Always with a write buffer");
    assert!(matches!(err, Error::Wal(strata_wal::Error::InvalidConfig(_))), "{err}");
    Ok(())
}

/// One committed transaction of the serializability check: which writer's value it read for
/// each key, and for each key it wrote, whose value it replaced.
struct Observed {
    id: u64,
    reads: Vec<(u64, u64)>,
    writes: Vec<(u64, u64)>,
}

/// Concurrent read-modify-write transactions over three keys, each writing its own id: the
/// values read name the writer read from, so the whole history is known. It must be
/// serializable: the graph of write-read, write-write and read-write (anti-)dependencies has no
/// cycle, and no two transactions replaced the same value (no lost update).
#[test]
fn the_observed_history_is_serializable() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db: DurableCache<u64, u64> = DurableCache::open(
        tmp.path(),
        DurableOptions::new().sync_policy(SyncPolicy::Never).max_attempts(100_000),
    )?;
    let next_id = AtomicU64::new(1);
    let history = parking_lot::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (db, next_id, history) = (&db, &next_id, &history);
            s.spawn(move || {
                let mut rng = Rng::seeded(t * 7919 + 1);
                for _ in 0..500 {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let a = rng.below(3);
                    let b = (a + 1 + rng.below(2)) % 3;
                    // Read two keys, write one or both of them (or neither, read-only).
                    let write_mode = rng.below(4);
                    let seen = db
                        .transaction(|tx| -> strata_tier::Result<Observed> {
                            let ra = tx.get(&a)?.unwrap_or(0);
                            let rb = tx.get(&b)?.unwrap_or(0);
                            let mut writes = Vec::new();
                            if write_mode != 3 {
                                tx.insert(a, id)?;
                                writes.push((a, ra));
                            }
                            if write_mode == 1 {
                                tx.insert(b, id)?;
                                writes.push((b, rb));
                            }
                            Ok(Observed { id, reads: vec![(a, ra), (b, rb)], writes })
                        })
                        .expect("commits");
                    history.lock().push(seen);
                }
            });
        }
    });
    let history = history.into_inner();
    // Every value replaced was replaced once: each key's writers form one chain.
    let mut replaced = HashMap::new();
    for t in &history {
        for &(key, prev) in &t.writes {
            if let Some(other) = replaced.insert((key, prev), t.id) {
                panic!("lost update: {other} and {} both replaced {prev}'s value of {key}", t.id);
            }
        }
    }
    // Edges: W -> T when T read or replaced W's value; T -> T' when T read a value that T'
    // replaced (T must come first). Node 0 is the initial state.
    let mut edges: HashMap<u64, Vec<u64>> = HashMap::new();
    for t in &history {
        for &(key, from) in t.reads.iter().chain(&t.writes) {
            edges.entry(from).or_default().push(t.id);
            if let Some(&next) = replaced.get(&(key, from)) {
                if next != t.id {
                    edges.entry(t.id).or_default().push(next);
                }
            }
        }
    }
    // Kahn's algorithm: a serial order exists iff every node can be taken.
    let nodes: Vec<u64> = std::iter::once(0).chain(history.iter().map(|t| t.id)).collect();
    let mut indegree: HashMap<u64, usize> = nodes.iter().map(|&n| (n, 0)).collect();
    for targets in edges.values() {
        for n in targets {
            *indegree.get_mut(n).expect("an edge to a committed transaction") += 1;
        }
    }
    let mut ready: Vec<u64> = indegree.iter().filter(|(_, &d)| d == 0).map(|(&n, _)| n).collect();
    let mut taken = 0;
    while let Some(n) = ready.pop() {
        taken += 1;
        for m in edges.get(&n).map(Vec::as_slice).unwrap_or_default() {
            let d = indegree.get_mut(m).expect("known node");
            *d -= 1;
            if *d == 0 {
                ready.push(*m);
            }
        }
    }
    assert_eq!(taken, nodes.len(), "the dependency graph has a cycle: not serializable");
    assert_eq!(history.len(), 2_000);
    Ok(())
}

/// The durable cache's statistics and its log's reach a registry: a write, a read and a
/// restart show up in the Prometheus text under the names the catalogue gives them.
#[test]
fn statistics_and_log_metrics_reach_the_registry() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains("orders"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    {
        let registry = Arc::new(strata_metrics::Registry::new());
        let db = DurableCache::open(dir.path(), opts().metrics(Arc::clone(&registry), "orders"))?;
        db.insert("a".to_string(), 1)?;
        db.insert("b".to_string(), 2)?;
        assert_eq!(db.get(&"a".to_string()), Some(1));
        db.close_blocking()?;
        let text = registry.render_prometheus();
        assert!(metric(&text, "strata_cache_inserts_total") >= 2.0, "{text}");
        assert!(metric(&text, "strata_cache_hits_total") >= 1.0, "{text}");
        assert!(metric(&text, "strata_wal_appends_total") >= 2.0, "{text}");
    }
    let registry = Arc::new(strata_metrics::Registry::new());
    let db = DurableCache::open(dir.path(), opts().metrics(Arc::clone(&registry), "orders"))?;
    let text = registry.render_prometheus();
    assert!(metric(&text, "strata_wal_recovered_records_total") >= 2.0, "{text}");
    db.close_blocking()?;
    Ok(())
}

#[test]
fn a_logged_version_at_the_top_of_the_range_does_not_wrap_the_counter() -> anyhow::Result<()> {
    // A log whose one record (checksum intact: a damaged or hand-made file) puts "k" with
    // version u64::MAX. Opening must not leave the version counter wrapped to 0, where every
    // later write of "k" would lose to the logged one at the next restart.
    let dir = tempfile::tempdir()?;
    {
        let wal = strata_wal::Wal::builder(dir.path()).open()?;
        // LogRecord::Put (variant 0): key bytes, value bytes, version, no expiry, postcard.
        let key = postcard::to_stdvec("k")?;
        let value = postcard::to_stdvec(&7u64)?;
        let mut rec = vec![0u8, key.len() as u8];
        rec.extend_from_slice(&key);
        rec.push(value.len() as u8);
        rec.extend_from_slice(&value);
        rec.extend_from_slice(&postcard::to_stdvec(&u64::MAX)?);
        rec.push(0);
        wal.append(&rec)?;
        wal.close()?;
    }
    let db = match DurableCache::open(dir.path(), opts()) {
        Ok(db) => db,
        // Refusing the log as corrupt is a correct answer too.
        Err(Error::Corrupt { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    assert_eq!(db.get(&"k".to_string()), Some(7));
    db.insert("k".into(), 8)?;
    db.close_blocking()?;
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.get(&"k".to_string()), Some(8), "an acknowledged write was lost");
    Ok(())
}
