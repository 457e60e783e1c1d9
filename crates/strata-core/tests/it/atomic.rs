//! `Cache::atomically`: multi-key sections that other threads see as one instant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use strata_core::{Cache, Error, RemovalCause};

const ACCOUNTS: u64 = 16;
const TOTAL: i64 = 1_000 * ACCOUNTS as i64;

fn accounts(shards: usize) -> Cache<u64, i64> {
    let cache = Cache::builder().max_capacity(1_000).shards(shards).build().unwrap();
    for a in 0..ACCOUNTS {
        cache.insert(a, 1_000);
    }
    cache
}

/// Transfers between accounts from several threads, while auditors read every account in
/// one section: each audit sees the invariant sum, so no transfer is ever seen half done.
#[test]
fn transfers_are_never_seen_half_done() {
    let cache = accounts(8);
    let keys: Vec<u64> = (0..ACCOUNTS).collect();
    let writers_done = AtomicU64::new(0);
    let audits = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (cache, writers_done) = (cache.clone(), &writers_done);
            s.spawn(move || {
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..20_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (from, to) = (x % ACCOUNTS, (x >> 8) % ACCOUNTS);
                    let amount = (x >> 16) as i64 % 50;
                    cache
                        .atomically([&from, &to], |tx| -> strata_core::Result<()> {
                            let a = *tx.get(&from)?.expect("accounts are never evicted");
                            tx.insert(from, a - amount)?;
                            let b = *tx.get(&to)?.expect("accounts are never evicted");
                            tx.insert(to, b + amount)?;
                            Ok(())
                        })
                        .unwrap();
                    assert!(Instant::now() < deadline, "transfers took too long");
                }
                writers_done.fetch_add(1, Ordering::Release);
            });
        }
        for _ in 0..2 {
            let (cache, keys, done, audits) = (cache.clone(), &keys, &writers_done, &audits);
            s.spawn(move || {
                while done.load(Ordering::Acquire) < 3 && Instant::now() < deadline {
                    let sum = cache.atomically(keys, |tx| {
                        keys.iter().map(|k| *tx.get(k).unwrap().unwrap()).sum::<i64>()
                    });
                    assert_eq!(sum, TOTAL, "an audit saw a transfer half applied");
                    audits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let sum: i64 = keys.iter().map(|k| cache.get(k).unwrap()).sum();
    assert_eq!(sum, TOTAL);
    assert!(audits.load(Ordering::Relaxed) > 0, "the auditors ran");
}

#[test]
fn a_key_outside_the_locked_shards_is_refused() {
    let cache = accounts(64);
    // Some key lands in a shard other than key 0's; find one.
    let other = (1..10_000u64)
        .find(|&k| cache.atomically([&0], |tx| tx.get(&k).is_err()))
        .expect("64 shards: some key is in another shard");
    let refused = cache.atomically([&0], |tx| tx.insert(other, 5));
    assert_eq!(refused, Err(Error::NotLocked));
    assert_eq!(cache.get(&other), if other < ACCOUNTS { Some(1_000) } else { None });
    assert_eq!(cache.atomically([&0], |tx| tx.remove(&other)), Err(Error::NotLocked));
}

#[test]
fn removes_and_ttl_inside_a_section() {
    let cache = accounts(4);
    let removed = cache.atomically([&1, &2, &3], |tx| {
        tx.insert_with_ttl(2, 7, Duration::ZERO).unwrap();
        tx.insert_with_ttl(3, 9, Duration::from_secs(60)).unwrap();
        tx.remove(&1).unwrap()
    });
    assert_eq!(removed, Some(1_000));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), None, "a zero TTL removes");
    assert_eq!(cache.get(&3), Some(9));
    assert_eq!(cache.entry_count(), ACCOUNTS - 2);
}

/// Listeners run after the locks are released: one that reads the cache does not deadlock.
#[test]
fn listeners_run_outside_the_section() {
    let handle: Arc<OnceLock<Cache<u64, u64>>> = Arc::new(OnceLock::new());
    let seen = Arc::new(AtomicU64::new(0));
    let (h, n) = (Arc::clone(&handle), Arc::clone(&seen));
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(4)
        .shards(1)
        .removal_listener(move |k, _, cause| {
            assert!(matches!(cause, RemovalCause::Size | RemovalCause::Replaced));
            // Would deadlock if the section's write lock were still held.
            let _ = h.get().expect("set").get(&k);
            n.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    handle.set(cache.clone()).unwrap();
    let keys: Vec<u64> = (0..16).collect();
    cache.atomically(&keys, |tx| {
        for k in 0..16 {
            tx.insert(k, k).unwrap();
        }
        tx.insert(15, 0).unwrap();
    });
    assert!(cache.entry_count() <= 4, "capacity holds inside a section");
    assert!(seen.load(Ordering::Relaxed) >= 12, "evictions were reported after the section");
}

/// A section that panics keeps what it did (the locks do not poison), so the entries it
/// removed are still reported to the listener, after the locks are released; then the
/// panic reaches the caller.
#[test]
fn a_panicking_section_still_reports_what_it_removed() {
    let seen: Arc<std::sync::Mutex<Vec<(u64, RemovalCause)>>> = Arc::default();
    let s = Arc::clone(&seen);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .eviction_policy(strata_core::PolicyConfig::Lru)
        .removal_listener(move |k, _, cause| s.lock().unwrap().push((k, cause)))
        .build()
        .unwrap();
    cache.insert(1, 1);
    cache.insert(2, 2);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.atomically(&[3, 2], |tx| {
            tx.insert(3, 3).unwrap(); // evicts key 1
            tx.remove(&2).unwrap();
            panic!("a bug in the caller's section");
        });
    }));
    assert!(outcome.is_err(), "the panic reaches the caller");
    assert_eq!((cache.get(&1), cache.get(&2), cache.get(&3)), (None, None, Some(3)));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(1, RemovalCause::Size), (2, RemovalCause::Explicit)],
        "every removal the section made is reported"
    );
    // The locks were released: the cache is usable.
    cache.insert(4, 4);
    assert_eq!(cache.get(&4), Some(4));
}
