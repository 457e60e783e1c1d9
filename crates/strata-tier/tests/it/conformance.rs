//! The conformance suite: the [`Tier`] contract of `src/tier.rs`, checked the same way against
//! every implementation.
//!
//! How to call it from another tier's test module (`tests/it/disk.rs`, `tests/it/redis.rs`):
//!
//! ```ignore
//! #[tokio::test]
//! async fn disk_tier_conforms() {
//!     let dir = tempfile::tempdir().unwrap();
//!     let n = std::sync::atomic::AtomicUsize::new(0);
//!     crate::conformance::run_suite(|| {
//!         // One fresh, empty tier per case: a new directory, a new key prefix, ...
//!         let path = dir.path().join(n.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string());
//!         async move { std::sync::Arc::new(DiskTier::open(path).await.unwrap()) as Arc<dyn Tier> }
//!     })
//!     .await;
//! }
//! ```
//!
//! `make` is called once per case and must return an empty tier that no other case sees.
//! The suite panics, naming the case, on the first broken rule. It sleeps about half a second
//! of real time in all (expiry is checked against the wall clock, as tiers keep it), and
//! needs a tier that accepts values of [`SuiteOptions::large_value_len`] bytes; pass other
//! options through [`run_suite_with`].

#![allow(dead_code, reason = "each tier's test module uses a different part of the suite")]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use strata_tier::memory::MemoryTier;
use strata_tier::{Error, ExpiresAt, Tier, TierEntry};

/// How the suite adapts to a tier's limits.
#[derive(Clone, Debug)]
pub(crate) struct SuiteOptions {
    /// The size of the value the large-value case writes (1 MiB by default).
    pub(crate) large_value_len: usize,
    /// The deadline given to every call (10 s by default: generous, since a slow CI machine
    /// must not fail a contract check).
    pub(crate) call_timeout: Duration,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions { large_value_len: 1 << 20, call_timeout: Duration::from_secs(10) }
    }
}

/// Runs every case of the suite with default options; `make` returns a fresh, empty tier.
pub(crate) async fn run_suite<F, Fut>(make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Tier>>,
{
    run_suite_with(SuiteOptions::default(), make).await;
}

/// Runs every case of the suite with `opts`; `make` returns a fresh, empty tier.
pub(crate) async fn run_suite_with<F, Fut>(opts: SuiteOptions, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Tier>>,
{
    let cases: [(&str, Case); 10] = [
        ("get_put_round_trip", get_put_round_trip),
        ("put_replaces", put_replaces),
        ("remove", remove),
        ("clear", clear),
        ("expiry_is_stored_unchanged_and_honoured", expiry_is_stored_unchanged_and_honoured),
        ("expired_put_stores_nothing_and_removes_old", expired_put_stores_nothing_and_removes_old),
        ("large_values", large_values),
        ("binary_and_empty_keys", binary_and_empty_keys),
        ("concurrent_writers", concurrent_writers),
        ("past_deadline_never_hangs", past_deadline_never_hangs),
    ];
    for (name, case) in cases {
        let tier = make().await;
        let ctx = Ctx { tier, opts: opts.clone(), case: name };
        case(ctx).await;
    }
}

type Case = fn(Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// One case's tier and options.
#[derive(Clone)]
struct Ctx {
    tier: Arc<dyn Tier>,
    opts: SuiteOptions,
    case: &'static str,
}

impl Ctx {
    fn deadline(&self) -> Instant {
        Instant::now() + self.opts.call_timeout
    }

    async fn get(&self, key: &[u8]) -> Option<TierEntry> {
        match self.tier.get(key, self.deadline()).await {
            Ok(found) => found,
            Err(e) => panic!("[{} on {}] get {key:?} failed: {e}", self.case, self.tier.name()),
        }
    }

    async fn put(&self, key: &[u8], entry: TierEntry) {
        if let Err(e) = self.tier.put(key, entry, self.deadline()).await {
            panic!("[{} on {}] put {key:?} failed: {e}", self.case, self.tier.name());
        }
    }

    async fn remove(&self, key: &[u8]) {
        if let Err(e) = self.tier.remove(key, self.deadline()).await {
            panic!("[{} on {}] remove {key:?} failed: {e}", self.case, self.tier.name());
        }
    }

    async fn clear(&self) {
        if let Err(e) = self.tier.clear(self.deadline()).await {
            panic!("[{} on {}] clear failed: {e}", self.case, self.tier.name());
        }
    }

    fn at(&self) -> String {
        format!("[{} on {}]", self.case, self.tier.name())
    }
}

fn forever(v: &[u8]) -> TierEntry {
    TierEntry { value: v.to_vec(), expires_at: None }
}

fn expiring(v: &[u8], ttl: Duration) -> TierEntry {
    TierEntry { value: v.to_vec(), expires_at: Some(ExpiresAt::after(SystemTime::now(), ttl)) }
}

fn get_put_round_trip(c: Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        assert_eq!(c.get(b"absent").await, None, "{} an empty tier misses", c.at());
        c.put(b"k", forever(b"value")).await;
        assert_eq!(c.get(b"k").await, Some(forever(b"value")), "{}", c.at());
        c.put(b"empty-value", forever(b"")).await;
        assert_eq!(c.get(b"empty-value").await, Some(forever(b"")), "{} empty value", c.at());
        assert_eq!(c.get(b"absent").await, None, "{} other keys still miss", c.at());
    })
}

fn put_replaces(c: Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        c.put(b"k", expiring(b"one", Duration::from_secs(600))).await;
        c.put(b"k", forever(b"two")).await;
        assert_eq!(c.get(b"k").await, Some(forever(b"two")), "{} expiry replaced too", c.at());
        let later = expiring(b"three", Duration::from_secs(900));
        c.put(b"k", later.clone()).await;
        assert_eq!(c.get(b"k").await, Some(later), "{}", c.at());
    })
}

fn remove(c: Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        c.remove(b"never-written").await;
        c.put(b"a", forever(b"1")).await;
        c.put(b"b", forever(b"2")).await;
        c.remove(b"a").await;
        assert_eq!(c.get(b"a").await, None, "{} removed", c.at());
        assert_eq!(c.get(b"b").await, Some(forever(b"2")), "{} neighbour kept", c.at());
        c.remove(b"a").await;
        c.put(b"a", forever(b"again")).await;
        assert_eq!(c.get(b"a").await, Some(forever(b"again")), "{} rewritten", c.at());
    })
}

fn clear(c: Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        c.clear().await;
        for i in 0..50u32 {
            c.put(format!("k{i}").as_bytes(), forever(&i.to_le_bytes())).await;
        }
        c.clear().await;
        for i in 0..50u32 {
            assert_eq!(c.get(format!("k{i}").as_bytes()).await, None, "{} k{i}", c.at());
        }
        c.put(b"after", forever(b"x")).await;
        assert_eq!(c.get(b"after").await, Some(forever(b"x")), "{} usable after", c.at());
    })
}

fn expiry_is_stored_unchanged_and_honoured(
    c: Ctx,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let long = expiring(b"long", Duration::from_secs(3600));
        c.put(b"long", long.clone()).await;
        assert_eq!(c.get(b"long").await, Some(long.clone()), "{} same expiry back", c.at());
        let short = expiring(b"short", Duration::from_millis(300));
        let Some(at) = short.expires_at else { unreachable!("expiring() sets an expiry") };
        c.put(b"short", short).await;
        // Wait on the wall clock (the clock tiers keep expiries on) until just past the
        // deadline; the loop is bounded because the deadline is at most 300 ms away.
        while !at.is_expired(SystemTime::now()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(c.get(b"short").await, None, "{} expired entry served", c.at());
        assert_eq!(c.get(b"long").await, Some(long), "{} live entry kept", c.at());
        // A TTL too large to represent saturates to `u64::MAX`, "never": it is stored as given.
        let never = TierEntry {
            value: b"far".to_vec(),
            expires_at: Some(ExpiresAt::after(SystemTime::now(), Duration::MAX)),
        };
        c.put(b"far", never.clone()).await;
        assert_eq!(c.get(b"far").await, Some(never), "{} far-future expiry", c.at());
    })
}

fn expired_put_stores_nothing_and_removes_old(
    c: Ctx,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let past = |v: &[u8]| TierEntry {
            value: v.to_vec(),
            expires_at: Some(ExpiresAt::after(
                SystemTime::now() - Duration::from_secs(60),
                Duration::from_secs(1),
            )),
        };
        c.put(b"k", past(b"stale")).await;
        assert_eq!(c.get(b"k").await, None, "{} expired put stored", c.at());
        c.put(b"k", forever(b"old")).await;
        c.put(b"k", past(b"new")).await;
        assert_eq!(c.get(b"k").await, None, "{} old value survived an expired put", c.at());
        let epoch = TierEntry { value: b"zero".to_vec(), expires_at: Some(ExpiresAt(0)) };
        c.put(b"z", epoch).await;
        assert_eq!(c.get(b"z").await, None, "{} ExpiresAt(0) is expired", c.at());
    })
}

fn large_values(c: Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        // Bytes that differ along the value, so a truncated or shifted copy is caught.
        let big: Vec<u8> = (0..c.opts.large_value_len).map(|i| (i * 31 % 251) as u8).collect();
        c.put(b"big", forever(&big)).await;
        let got = c.get(b"big").await;
        assert!(got.as_ref().is_some_and(|e| e.value == big), "{} large value differs", c.at());
        let mut other = big.clone();
        other.reverse();
        c.put(b"big", forever(&other)).await;
        let got = c.get(b"big").await;
        assert!(got.is_some_and(|e| e.value == other), "{} large replace differs", c.at());
    })
}

fn binary_and_empty_keys(c: Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        c.put(b"", forever(b"empty key")).await;
        assert_eq!(c.get(b"").await, Some(forever(b"empty key")), "{} empty key", c.at());
        let all: Vec<u8> = (0..=255u8).collect();
        c.put(&all, forever(b"all bytes")).await;
        c.put(&[0], forever(b"nul")).await;
        c.put(&[0, 0], forever(b"two nuls")).await;
        assert_eq!(c.get(&all).await, Some(forever(b"all bytes")), "{} binary key", c.at());
        assert_eq!(c.get(&[0]).await, Some(forever(b"nul")), "{}", c.at());
        assert_eq!(c.get(&[0, 0]).await, Some(forever(b"two nuls")), "{}", c.at());
        assert_eq!(c.get(b"").await, Some(forever(b"empty key")), "{} keys distinct", c.at());
        c.remove(b"").await;
        assert_eq!(c.get(b"").await, None, "{} empty key removed", c.at());
        assert_eq!(c.get(&[0]).await, Some(forever(b"nul")), "{}", c.at());
    })
}

fn concurrent_writers(c: Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..8u32 {
            let c = c.clone();
            tasks.spawn(async move {
                for i in 0..25u32 {
                    let key = format!("t{t}-{i}");
                    c.put(key.as_bytes(), forever(key.as_bytes())).await;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap_or_else(|e| panic!("{} writer task failed: {e}", c.at()));
        }
        for t in 0..8u32 {
            for i in 0..25u32 {
                let key = format!("t{t}-{i}");
                assert_eq!(
                    c.get(key.as_bytes()).await,
                    Some(forever(key.as_bytes())),
                    "{}",
                    c.at()
                );
            }
        }
    })
}

fn past_deadline_never_hangs(c: Ctx) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        // A call whose deadline has passed may still succeed (a fast tier finishes first) but
        // must come back, and when it fails it says why with an error, never a hang.
        let past =
            Instant::now().checked_sub(Duration::from_millis(1)).unwrap_or_else(Instant::now);
        let bound = c.opts.call_timeout;
        let ok_or_timeout = |r: Result<(), Error>| match r {
            Ok(()) | Err(Error::Timeout { .. }) => {}
            Err(e) => panic!("{} past deadline gave {e}, not Timeout", c.at()),
        };
        let r = tokio::time::timeout(bound, c.tier.put(b"d", forever(b"v"), past)).await;
        ok_or_timeout(r.unwrap_or_else(|_| panic!("{} put hung past its deadline", c.at())));
        let r = tokio::time::timeout(bound, c.tier.get(b"d", past)).await;
        let r = r.unwrap_or_else(|_| panic!("{} get hung past its deadline", c.at()));
        ok_or_timeout(r.map(|_| ()));
        let r = tokio::time::timeout(bound, c.tier.remove(b"d", past)).await;
        ok_or_timeout(r.unwrap_or_else(|_| panic!("{} remove hung past its deadline", c.at())));
    })
}

#[tokio::test]
async fn memory_tier_conforms() {
    run_suite(|| async {
        let tier = MemoryTier::builder().max_bytes(64 << 20).build().expect("memory tier");
        Arc::new(tier) as Arc<dyn Tier>
    })
    .await;
}

#[tokio::test]
async fn memory_tier_conforms_with_one_small_shard() {
    // One shard that holds the large value and little else, so eviction runs during the suite.
    let opts = SuiteOptions { large_value_len: 256 << 10, ..SuiteOptions::default() };
    run_suite_with(opts, || async {
        let tier = MemoryTier::builder().max_bytes(1 << 20).shards(1).name("memory-small");
        Arc::new(tier.build().expect("memory tier")) as Arc<dyn Tier>
    })
    .await;
}
