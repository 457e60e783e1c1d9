//! The tiered cache: read-through and promotion, write modes, TTL across tiers, per-key
//! ordering, negative caching, degraded mode and invalidation streams.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use strata_core::{Clock, ManualClock};
use strata_metrics::{CircuitState, Registry};
use strata_tier::memory::MemoryTier;
use strata_tier::tiered::{OnFull, TieredCache, WriteMode};
use strata_tier::{Codec, Error, ExpiresAt, Invalidation, Postcard, Tier, TierEntry, TierFuture};
use tokio::sync::{broadcast, watch};

// ---- Test tiers ----

const HEALTHY: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;
/// Puts, removes and clears fail; gets still read the inner tier.
const FAIL_WRITES: u8 = 3;
/// Every call fails at once with an IO error: a health failure, which write-back retries.
const FAIL_IO: u8 = 4;

/// A tier wrapper that fails, hangs, blocks writes or yields on command, counts its calls,
/// and (optionally) publishes an invalidation stream the test controls.
struct FaultyTier {
    inner: Arc<dyn Tier>,
    name: String,
    mode: AtomicU8,
    calls: AtomicU64,
    gets: AtomicU64,
    /// While true, puts and removes wait (without a timer) until it turns false.
    blocked: watch::Sender<bool>,
    /// While true, gets wait after reading, before returning what they read.
    reads_blocked: watch::Sender<bool>,
    /// Yield to the scheduler before every call, to shuffle interleavings.
    yields: bool,
    /// The stream handed to the cache (taken by its one call to `invalidations`); the test
    /// holds the only sender, so dropping it ends the stream.
    invalidations: std::sync::Mutex<Option<broadcast::Receiver<Invalidation>>>,
}

impl FaultyTier {
    fn new(name: &str) -> Self {
        FaultyTier {
            inner: mem(&format!("{name}-inner")),
            name: name.to_owned(),
            mode: AtomicU8::new(HEALTHY),
            calls: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            blocked: watch::channel(false).0,
            reads_blocked: watch::channel(false).0,
            yields: false,
            invalidations: std::sync::Mutex::new(None),
        }
    }

    fn over(inner: Arc<dyn Tier>, name: &str) -> Self {
        FaultyTier { inner, ..FaultyTier::new(name) }
    }

    fn yielding(mut self) -> Self {
        self.yields = true;
        self
    }

    fn shared(self) -> (Self, broadcast::Sender<Invalidation>) {
        let (tx, rx) = broadcast::channel(64);
        *self.invalidations.lock().expect("not poisoned") = Some(rx);
        (self, tx)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn block(&self, on: bool) {
        self.blocked.send_replace(on);
    }

    async fn enter(&self, write: bool) -> Result<(), Error> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.yields {
            // Zero, one or two yields, varying from call to call, to shuffle interleavings.
            for _ in 0..n % 3 {
                tokio::task::yield_now().await;
            }
        }
        match self.mode.load(Ordering::SeqCst) {
            FAIL_WRITES if !write => {}
            FAIL | FAIL_WRITES => {
                return Err(Error::Unavailable {
                    tier: self.name.clone(),
                    reason: "injected".into(),
                })
            }
            FAIL_IO => {
                let injected = std::io::Error::other("injected");
                return Err(Error::io("write", format!("/{}", self.name), injected));
            }
            HANG => {
                // Far beyond any timeout the tests set; the orchestrator gives up first.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Err(Error::Timeout { tier: self.name.clone(), op: "hang" });
            }
            _ => {}
        }
        if write {
            let mut rx = self.blocked.subscribe();
            let _ = rx.wait_for(|blocked| !*blocked).await;
        }
        Ok(())
    }
}

impl Tier for FaultyTier {
    fn name(&self) -> &str {
        &self.name
    }

    fn get<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, Option<TierEntry>> {
        Box::pin(async move {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.enter(false).await?;
            let found = self.inner.get(key, deadline).await;
            // Blocked after the read: the value is on its way back while the test acts.
            let mut rx = self.reads_blocked.subscribe();
            let _ = rx.wait_for(|blocked| !*blocked).await;
            found
        })
    }

    fn put<'a>(&'a self, key: &'a [u8], entry: TierEntry, deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(async move {
            self.enter(true).await?;
            self.inner.put(key, entry, deadline).await
        })
    }

    fn remove<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(async move {
            self.enter(true).await?;
            self.inner.remove(key, deadline).await
        })
    }

    fn clear<'a>(&'a self, deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(async move {
            self.enter(true).await?;
            self.inner.clear(deadline).await
        })
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        self.invalidations.lock().ok()?.take()
    }
}

// ---- Helpers ----

fn mem(name: &str) -> Arc<dyn Tier> {
    // Small: the tests hold a few entries, and a weighted strata-core cache sizes its
    // frequency sketch by its byte budget, so a large budget costs milliseconds per build and
    // per clear.
    Arc::new(MemoryTier::builder().name(name).max_bytes(64 << 10).build().expect("memory tier"))
}

fn mem_with_clock(name: &str, clock: &Arc<ManualClock>) -> Arc<dyn Tier> {
    let tier = MemoryTier::builder().name(name).max_bytes(64 << 10).clock(clock.clone()).build();
    Arc::new(tier.expect("memory tier"))
}

fn key(k: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Codec::<String>::encode(&Postcard::keys(), &k.to_owned(), &mut out).expect("key encodes");
    out
}

fn value_bytes(v: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Codec::<String>::encode(&Postcard::values(), &v.to_owned(), &mut out).expect("value encodes");
    out
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// What `tier` holds for the string key `k`, decoded.
async fn peek(tier: &dyn Tier, k: &str) -> Option<(String, Option<ExpiresAt>)> {
    let entry = tier.get(&key(k), far()).await.expect("direct tier read")?;
    let v = Codec::<String>::decode(&Postcard::values(), &entry.value).expect("value decodes");
    Some((v, entry.expires_at))
}

async fn peek_value(tier: &dyn Tier, k: &str) -> Option<String> {
    peek(tier, k).await.map(|(v, _)| v)
}

async fn plant(tier: &dyn Tier, k: &str, v: &str, expires_at: Option<ExpiresAt>) {
    let entry = TierEntry { value: value_bytes(v), expires_at };
    tier.put(&key(k), entry, far()).await.expect("direct tier write");
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn counter(registry: &Registry, name: &str, filter: &[(&str, &str)]) -> u64 {
    registry.snapshot().counter_sum(name, filter)
}

/// Waits (bounded) until `cond` holds, yielding to the invalidation task between checks.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out waiting for: {what}");
}

type Cache = TieredCache<String, String>;

// ---- Read-through, promotion, write-through ----

#[tokio::test]
async fn read_through_promotes_with_the_same_expiry() {
    let (top, mid, bottom) = (mem("top"), mem("mid"), mem("bottom"));
    let registry = Arc::new(Registry::new());
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(mid.clone())
        .tier(bottom.clone())
        .metrics(registry.clone(), "c")
        .build()
        .unwrap();
    let at = ExpiresAt::after(SystemTime::now(), Duration::from_secs(600));
    plant(&*bottom, "k", "deep", Some(at)).await;
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("deep")));
    assert_eq!(peek(&*top, "k").await, Some((s("deep"), Some(at))), "promoted to the top");
    assert_eq!(peek(&*mid, "k").await, Some((s("deep"), Some(at))), "and to the middle");
    assert_eq!(counter(&registry, "strata_tier_promotions_total", &[("tier", "c/bottom")]), 1);
    // The next read is a top-tier hit: nothing below is asked.
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("deep")));
    assert_eq!(counter(&registry, "strata_tier_hits_total", &[("tier", "c/top")]), 1);
    assert_eq!(counter(&registry, "strata_tier_misses_total", &[("tier", "c/top")]), 1);
    assert_eq!(counter(&registry, "strata_tier_hits_total", &[("tier", "c/bottom")]), 1);
    assert_eq!(cache.get(&s("absent")).await.unwrap(), None);
    assert_eq!(counter(&registry, "strata_tier_misses_total", &[("tier", "c/bottom")]), 1);
}

#[tokio::test]
async fn write_through_reaches_every_tier_and_so_do_remove_and_clear() {
    let (top, bottom) = (mem("top"), mem("bottom"));
    let cache: Cache =
        TieredCache::builder().tier(top.clone()).tier(bottom.clone()).build().unwrap();
    let report = cache.insert(&s("a"), &s("1")).await.unwrap();
    assert!(report.is_complete());
    cache.insert(&s("b"), &s("2")).await.unwrap();
    for t in [&top, &bottom] {
        assert_eq!(peek_value(&**t, "a").await, Some(s("1")), "{}", t.name());
    }
    cache.remove(&s("a")).await.unwrap();
    for t in [&top, &bottom] {
        assert_eq!(peek_value(&**t, "a").await, None, "{}", t.name());
        assert_eq!(peek_value(&**t, "b").await, Some(s("2")), "{}", t.name());
    }
    cache.invalidate_all().await.unwrap();
    for t in [&top, &bottom] {
        assert_eq!(peek_value(&**t, "b").await, None, "{}", t.name());
    }
    assert_eq!(cache.get(&s("b")).await.unwrap(), None);
}

#[tokio::test]
async fn get_with_loads_once_for_concurrent_callers() {
    let (top, bottom) = (mem("top"), mem("bottom"));
    let cache: Cache =
        TieredCache::builder().tier(top.clone()).tier(bottom.clone()).build().unwrap();
    let loads = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (cache, loads) = (cache.clone(), loads.clone());
        tasks.spawn(async move {
            cache
                .get_with(&s("k"), || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok(s("loaded"))
                })
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap(), "loaded");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(peek_value(&*bottom, "k").await, Some(s("loaded")), "stored through");
    let err = cache.get_with(&s("x"), || async { Err(Error::Codec("no".into())) }).await;
    assert!(matches!(err, Err(Error::Codec(_))), "the loader's error comes back");
    assert_eq!(peek_value(&*top, "x").await, None);
}

/// A loader may read the cache, other keys included: with the default 1024 lock stripes one
/// key in 1024 shares the loading key's stripe, which the load holds while it runs. One
/// stripe here makes every key share it, so any read from inside a load would wait for it.
#[tokio::test]
async fn a_loader_may_read_other_keys_of_the_cache() {
    let (top, bottom) = (mem("top"), mem("bottom"));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .lock_stripes(1)
        .build()
        .unwrap();
    plant(&*bottom, "other", "below", None).await;
    let (inner, k) = (cache.clone(), s("k"));
    let load = cache.get_with(&k, || async move {
        let other = inner.get(&s("other")).await?.unwrap_or_default();
        let nested = inner.get_with(&s("nested"), || async { Ok(s("n")) }).await?;
        let same = inner.get(&s("k")).await?;
        Ok(format!("{other}+{nested}+{same:?}"))
    });
    let got = tokio::time::timeout(Duration::from_secs(10), load)
        .await
        .expect("a read inside a load deadlocked on the load's lock stripe")
        .unwrap();
    assert_eq!(got, "below+n+None");
    assert_eq!(peek_value(&*top, "other").await, Some(s("below")), "promoted");
    assert_eq!(peek_value(&*bottom, "nested").await, Some(s("n")), "nested load stored");
    assert_eq!(peek_value(&*bottom, "k").await, Some(got), "outer load stored");
}

/// `close` waits for loads in flight; a load that reads the cache meanwhile must not queue
/// behind that waiting `close` for a gate its own task already holds.
#[tokio::test]
async fn a_loader_may_read_the_cache_while_close_waits() {
    let (top, bottom) = (mem("top"), mem("bottom"));
    let cache: Cache = TieredCache::builder().tier(top).tier(bottom.clone()).build().unwrap();
    let (inner, k) = (cache.clone(), s("k"));
    let load = cache.get_with(&k, || async move {
        let closer = {
            let cache = inner.clone();
            tokio::spawn(async move { cache.close().await })
        };
        // Let `close` run until it waits for this load.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!closer.is_finished(), "close waits for the load in flight");
        inner.get_with(&s("nested"), || async { Ok(s("n")) }).await
    });
    let got = tokio::time::timeout(Duration::from_secs(10), load)
        .await
        .expect("a read inside a load deadlocked behind close")
        .unwrap();
    assert_eq!(got, "n");
    assert_eq!(peek_value(&*bottom, "k").await, Some(s("n")), "the load was stored");
    cache.close().await;
    assert!(matches!(cache.get(&s("k")).await, Err(Error::Closed)), "then the cache closed");
}

// ---- Time ----

#[tokio::test]
async fn ttl_is_one_absolute_expiry_in_every_tier() {
    let clock = Arc::new(ManualClock::new());
    let (top, bottom) = (mem_with_clock("top", &clock), mem_with_clock("bottom", &clock));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(&s("k"), &s("v"), Duration::from_secs(10)).await.unwrap();
    let expected = ExpiresAt::after(clock.wall(), Duration::from_secs(10));
    assert_eq!(peek(&*top, "k").await, Some((s("v"), Some(expected))));
    assert_eq!(peek(&*bottom, "k").await, Some((s("v"), Some(expected))));
    // Promotion carries the expiry from below unchanged.
    top.remove(&key("k"), far()).await.unwrap();
    clock.advance(Duration::from_secs(5));
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("v")));
    assert_eq!(peek(&*top, "k").await, Some((s("v"), Some(expected))), "not restarted");
    clock.advance(Duration::from_secs(5));
    assert_eq!(cache.get(&s("k")).await.unwrap(), None, "expired everywhere at once");
    assert_eq!(peek(&*bottom, "k").await, None);

    // A past expiry is never written down: it removes the old value from every tier.
    cache.insert(&s("p"), &s("old")).await.unwrap();
    let past = ExpiresAt::after(clock.wall() - Duration::from_secs(60), Duration::from_secs(1));
    cache.insert_until(&s("p"), &s("new"), past).await.unwrap();
    assert_eq!(peek(&*top, "p").await, None);
    assert_eq!(peek(&*bottom, "p").await, None);
    cache.insert(&s("z"), &s("old")).await.unwrap();
    cache.insert_with_ttl(&s("z"), &s("new"), Duration::ZERO).await.unwrap();
    assert_eq!(peek(&*bottom, "z").await, None, "a zero TTL removes");

    // An entry that expires in a lower tier is not served from there either.
    plant(&*bottom, "e", "short", Some(ExpiresAt::after(clock.wall(), Duration::from_secs(1))))
        .await;
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&s("e")).await.unwrap(), None);
    assert_eq!(peek(&*top, "e").await, None, "an expired entry is not promoted");
}

#[tokio::test]
async fn default_ttl_applies_to_insert_and_loads() {
    let clock = Arc::new(ManualClock::new());
    let top = mem_with_clock("top", &clock);
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .clock(clock.clone())
        .time_to_live(Duration::from_secs(30))
        .build()
        .unwrap();
    cache.insert(&s("k"), &s("v")).await.unwrap();
    let v = cache.get_with(&s("l"), || async { Ok(s("loaded")) }).await.unwrap();
    assert_eq!(v, "loaded");
    let expected = Some(ExpiresAt::after(clock.wall(), Duration::from_secs(30)));
    assert_eq!(peek(&*top, "k").await.map(|(_, e)| e), Some(expected));
    assert_eq!(peek(&*top, "l").await.map(|(_, e)| e), Some(expected));
}

// ---- Write-back ----

#[tokio::test]
async fn write_back_orders_writes_serves_pending_ones_and_close_drains() {
    let top = mem("top");
    let bottom = Arc::new(FaultyTier::new("bottom"));
    let registry = Arc::new(Registry::new());
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .timeout(Duration::from_secs(30))
        .write_mode(WriteMode::Back { capacity: 64, on_full: OnFull::Wait })
        .metrics(registry.clone(), "wb")
        .build()
        .unwrap();
    plant(&*bottom, "gone", "old", None).await;
    plant(&*bottom, "k", "v0", None).await;
    bottom.block(true);
    for i in 1..=10 {
        cache.insert(&s("k"), &s(&format!("v{i}"))).await.unwrap();
    }
    cache.remove(&s("gone")).await.unwrap();
    assert_eq!(peek_value(&*top, "k").await, Some(s("v10")), "top written at once");
    assert_eq!(peek_value(&*bottom.inner, "k").await, Some(s("v0")), "bottom not yet");
    assert_eq!(cache.writeback_len(), 11);
    let depth =
        registry.snapshot().gauge("strata_tier_writeback_queue_depth", &[("tier", "wb/bottom")]);
    assert_eq!(depth, Some(11));
    // The top tier loses its copies (eviction): readers see the queued writes, never the
    // older values still in the bottom tier.
    top.clear(far()).await.unwrap();
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("v10")));
    assert_eq!(peek_value(&*top, "k").await, Some(s("v10")), "queued value back on top");
    assert_eq!(cache.get(&s("gone")).await.unwrap(), None);
    bottom.block(false);
    cache.close().await;
    assert_eq!(peek_value(&*bottom.inner, "k").await, Some(s("v10")), "newest write last");
    assert_eq!(peek_value(&*bottom.inner, "gone").await, None);
    assert_eq!(cache.writeback_len(), 0);
    assert!(matches!(cache.insert(&s("k"), &s("late")).await, Err(Error::Closed)));
    assert!(matches!(cache.get(&s("k")).await, Err(Error::Closed)));
}

#[tokio::test]
async fn write_back_full_queue_errors_without_writing_anything() {
    let top = mem("top");
    let bottom = Arc::new(FaultyTier::new("bottom"));
    let registry = Arc::new(Registry::new());
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .timeout(Duration::from_secs(30))
        .write_mode(WriteMode::Back { capacity: 2, on_full: OnFull::Error })
        .metrics(registry.clone(), "f")
        .build()
        .unwrap();
    bottom.block(true);
    cache.insert(&s("a"), &s("1")).await.unwrap();
    cache.insert(&s("b"), &s("2")).await.unwrap();
    let err = cache.insert(&s("c"), &s("3")).await.unwrap_err();
    assert!(matches!(err, Error::Full { capacity: 2, .. }), "{err}");
    assert!(matches!(cache.remove(&s("a")).await, Err(Error::Full { .. })));
    assert_eq!(peek_value(&*top, "c").await, None, "a refused write touches no tier");
    assert_eq!(peek_value(&*top, "a").await, Some(s("1")), "a refused remove neither");
    assert_eq!(
        counter(&registry, "strata_tier_writeback_rejections_total", &[("tier", "f/bottom")]),
        2
    );
    bottom.block(false);
    cache.flush().await.unwrap();
    assert_eq!(peek_value(&*bottom.inner, "b").await, Some(s("2")));
    cache.insert(&s("c"), &s("3")).await.unwrap();
    cache.close().await;
    assert_eq!(peek_value(&*bottom.inner, "c").await, Some(s("3")));
}

#[tokio::test]
async fn write_back_full_queue_makes_the_caller_wait() {
    let top = mem("top");
    let bottom = Arc::new(FaultyTier::new("bottom"));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .timeout(Duration::from_secs(30))
        .write_mode(WriteMode::Back { capacity: 1, on_full: OnFull::Wait })
        .build()
        .unwrap();
    bottom.block(true);
    cache.insert(&s("a"), &s("1")).await.unwrap();
    let waiting = tokio::spawn({
        let cache = cache.clone();
        async move { cache.insert(&s("b"), &s("2")).await }
    });
    // The bottom tier is blocked with no timer, so the second write cannot have a place yet
    // however long this takes.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "a write went past a full queue");
    assert_eq!(peek_value(&*top, "b").await, None, "nothing written while waiting");
    bottom.block(false);
    waiting.await.unwrap().unwrap();
    cache.close().await;
    assert_eq!(peek_value(&*bottom.inner, "a").await, Some(s("1")));
    assert_eq!(peek_value(&*bottom.inner, "b").await, Some(s("2")));
}

#[tokio::test]
async fn write_back_invalidate_all_hides_lower_copies_until_applied() {
    let top = mem("top");
    let bottom = Arc::new(FaultyTier::new("bottom"));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .timeout(Duration::from_secs(30))
        .write_mode(WriteMode::Back { capacity: 8, on_full: OnFull::Error })
        .build()
        .unwrap();
    plant(&*bottom, "old", "stale", None).await;
    bottom.block(true);
    cache.insert(&s("before"), &s("1")).await.unwrap();
    cache.invalidate_all().await.unwrap();
    cache.insert(&s("after"), &s("2")).await.unwrap();
    assert_eq!(cache.get(&s("old")).await.unwrap(), None, "cleared lower tier not read");
    assert_eq!(cache.get(&s("before")).await.unwrap(), None, "write before the clear is gone");
    assert_eq!(cache.get(&s("after")).await.unwrap(), Some(s("2")));
    bottom.block(false);
    cache.close().await;
    assert_eq!(peek_value(&*bottom.inner, "old").await, None);
    assert_eq!(peek_value(&*bottom.inner, "before").await, None);
    assert_eq!(peek_value(&*bottom.inner, "after").await, Some(s("2")));
}

// ---- Per-key ordering ----

/// A small deterministic generator, so a failing interleaving can be replayed by its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn ordering_round(seed: u64, mode: WriteMode) {
    let tiers: Vec<Arc<FaultyTier>> =
        ["t0", "t1", "t2"].iter().map(|n| Arc::new(FaultyTier::new(n).yielding())).collect();
    let mut builder = TieredCache::<String, String>::builder()
        .write_mode(mode)
        .writeback_workers(1 + (seed % 4) as usize)
        .lock_stripes(4);
    for t in &tiers {
        builder = builder.tier(t.clone());
    }
    let cache = builder.build().unwrap();
    let keys = ["a", "b"];
    let serial = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4u64 {
        let (cache, tiers, serial) = (cache.clone(), tiers.clone(), serial.clone());
        tasks.spawn(async move {
            let mut rng = XorShift(seed.wrapping_mul(31).wrapping_add(worker) | 1);
            for _ in 0..12 {
                let k = s(keys[rng.below(2) as usize]);
                match rng.below(20) {
                    0..=7 => {
                        let v = format!("v{}", serial.fetch_add(1, Ordering::SeqCst));
                        cache.insert(&k, &v).await.unwrap();
                    }
                    8..=10 => {
                        cache.remove(&k).await.unwrap();
                    }
                    11..=16 => {
                        cache.get(&k).await.unwrap();
                    }
                    17 => {
                        cache.invalidate_all().await.unwrap();
                    }
                    // An eviction from an upper tier, so later reads promote from below.
                    _ => {
                        let t = &tiers[rng.below(2) as usize];
                        t.inner.remove(&key(&k), far()).await.unwrap();
                    }
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    cache.close().await;
    for k in keys {
        // The bottom tier takes every write (it never evicts here), so it holds the key's
        // last write; any other value above it is a stale copy.
        let bottom = peek_value(&*tiers[2].inner, k).await;
        for t in &tiers[..2] {
            let above = peek_value(&*t.inner, k).await;
            assert!(
                above.is_none() || above == bottom,
                "seed {seed} {mode:?}: key {k}: {} holds {above:?}, bottom {bottom:?}",
                t.name
            );
        }
    }
}

#[tokio::test]
async fn a_read_cannot_promote_over_a_concurrent_write() {
    let top = mem("top");
    let bottom = Arc::new(FaultyTier::new("bottom"));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    plant(&*bottom.inner, "k", "old", None).await;
    bottom.reads_blocked.send_replace(true);
    let reader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get(&s("k")).await }
    });
    // The reader is inside the bottom tier's get, about to find "old".
    eventually("reader in the bottom tier", || async { bottom.gets.load(Ordering::SeqCst) == 1 })
        .await;
    let writer = tokio::spawn({
        let cache = cache.clone();
        async move { cache.insert(&s("k"), &s("new")).await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    bottom.reads_blocked.send_replace(false);
    let read = reader.await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
    assert!(read == Some(s("old")) || read == Some(s("new")), "{read:?}");
    assert_eq!(peek_value(&*bottom.inner, "k").await, Some(s("new")));
    assert_eq!(peek_value(&*top, "k").await, Some(s("new")), "the promotion of old won");
}

#[tokio::test]
async fn a_read_cannot_promote_over_a_concurrent_clear() {
    let top = mem("top");
    let bottom = Arc::new(FaultyTier::new("bottom"));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    plant(&*bottom.inner, "k", "old", None).await;
    bottom.reads_blocked.send_replace(true);
    let reader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get(&s("k")).await }
    });
    eventually("reader in the bottom tier", || async { bottom.gets.load(Ordering::SeqCst) == 1 })
        .await;
    let clear = tokio::spawn({
        let cache = cache.clone();
        async move { cache.invalidate_all().await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    bottom.reads_blocked.send_replace(false);
    reader.await.unwrap().unwrap();
    assert!(clear.await.unwrap().unwrap().is_complete());
    assert_eq!(peek_value(&*top, "k").await, None, "a promotion outlived the clear");
    assert_eq!(cache.get(&s("k")).await.unwrap(), None);
}

// One thread: the interleavings come from the tiers' varying yields, so a seed replays the
// same schedule, and the test does not depend on how busy the machine is.
#[tokio::test]
async fn concurrent_puts_and_removes_leave_no_stale_copy() {
    // Many short rounds: what is checked is the state each round ends in, so the more rounds
    // end with racing writes, the more interleavings are judged.
    for seed in 1..=150 {
        ordering_round(seed, WriteMode::Through).await;
        ordering_round(seed, WriteMode::Back { capacity: 16, on_full: OnFull::Wait }).await;
    }
}

// ---- Negative caching ----

#[tokio::test]
async fn negative_caching_remembers_misses_until_a_write_or_its_ttl() {
    let clock = Arc::new(ManualClock::new());
    let top = mem_with_clock("top", &clock);
    let bottom = Arc::new(FaultyTier::over(mem_with_clock("bottom-inner", &clock), "bottom"));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .clock(clock.clone())
        .negative_caching(Duration::from_secs(5), 100)
        .build()
        .unwrap();
    assert_eq!(cache.get(&s("k")).await.unwrap(), None);
    assert_eq!(cache.get(&s("k")).await.unwrap(), None);
    assert_eq!(bottom.gets.load(Ordering::SeqCst), 1, "the second miss stops above");
    cache.insert(&s("k"), &s("v")).await.unwrap();
    // Read from below, so the remembered miss would be consulted if the write had not
    // forgotten it.
    top.clear(far()).await.unwrap();
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("v")), "a write forgets the miss");
    assert_eq!(cache.get(&s("n")).await.unwrap(), None);
    clock.advance(Duration::from_secs(5));
    plant(&*bottom.inner, "n", "arrived", None).await;
    assert_eq!(cache.get(&s("n")).await.unwrap(), Some(s("arrived")), "forgotten after its TTL");
    // A miss with a failed tier proves nothing and is not remembered.
    bottom.set(FAIL);
    assert_eq!(cache.get(&s("m")).await.unwrap(), None);
    bottom.set(HEALTHY);
    plant(&*bottom.inner, "m", "there", None).await;
    assert_eq!(cache.get(&s("m")).await.unwrap(), Some(s("there")));
}

// ---- Degraded mode ----

#[tokio::test(start_paused = true)]
async fn a_failing_tier_is_routed_around_and_its_breaker_recovers() {
    let top = mem("top");
    let mid = Arc::new(FaultyTier::new("mid"));
    let bottom = mem("bottom");
    let registry = Arc::new(Registry::new());
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(mid.clone())
        .tier(bottom.clone())
        .timeout(Duration::from_millis(100))
        .circuit_breaker(3, Duration::from_secs(10))
        .metrics(registry.clone(), "d")
        .build()
        .unwrap();
    for i in 0..6 {
        cache.insert(&s(&format!("k{i}")), &s("v")).await.unwrap();
    }
    top.clear(far()).await.unwrap();
    mid.set(FAIL);
    // Reads skip the failing tier and find the bottom one.
    assert_eq!(cache.get(&s("k0")).await.unwrap(), Some(s("v")));
    let errors =
        |op| counter(&registry, "strata_tier_errors_total", &[("tier", "d/mid"), ("op", op)]);
    assert_eq!(errors("get"), 1);
    mid.set(HANG);
    assert_eq!(cache.get(&s("k1")).await.unwrap(), Some(s("v")), "a hang times out");
    assert_eq!(counter(&registry, "strata_tier_timeouts_total", &[("tier", "d/mid")]), 1);
    assert_eq!(cache.get(&s("k2")).await.unwrap(), Some(s("v")));
    assert_eq!(cache.circuit_state("mid"), Some(CircuitState::Open), "3 failures open it");
    let gauge =
        registry.snapshot().gauge("strata_tier_circuit_breaker_state", &[("tier", "d/mid")]);
    assert_eq!(gauge, Some(2));
    // While open, the tier is not called at all.
    let calls = mid.calls.load(Ordering::SeqCst);
    assert_eq!(cache.get(&s("k3")).await.unwrap(), Some(s("v")));
    assert_eq!(mid.calls.load(Ordering::SeqCst), calls, "an open breaker stops the calls");

    // A write while the tier is out: accepted by the others, the failure reported, and the
    // tier's old copy never served again.
    plant(&*mid.inner, "w", "old", None).await;
    let report = cache.insert(&s("w"), &s("new")).await.unwrap();
    assert_eq!(report.failures().len(), 1);
    assert_eq!(report.failures()[0].tier, "mid");
    assert!(matches!(report.failures()[0].error, Error::Unavailable { .. }));
    let removed = cache.remove(&s("k4")).await.unwrap();
    assert_eq!(removed.failures().len(), 1, "a removal the tier missed is reported too");

    // Recovery: after the cool-down one probe goes through and closes the breaker.
    mid.set(HEALTHY);
    tokio::time::advance(Duration::from_secs(10)).await;
    top.clear(far()).await.unwrap();
    assert_eq!(cache.get(&s("k5")).await.unwrap(), Some(s("v")));
    assert_eq!(cache.circuit_state("mid"), Some(CircuitState::Closed));
    assert_eq!(cache.get(&s("w")).await.unwrap(), Some(s("new")), "stale copy skipped");
    assert_eq!(cache.get(&s("k4")).await.unwrap(), None, "removed copy skipped");
    // The promotion from below rewrote the tier, so it serves the key again.
    assert_eq!(peek_value(&*mid.inner, "w").await, Some(s("new")));
}

#[tokio::test(start_paused = true)]
async fn a_write_no_tier_takes_is_an_error() {
    let only = Arc::new(FaultyTier::new("only"));
    let cache: Cache = TieredCache::builder()
        .tier(only.clone())
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    only.set(HANG);
    let err = cache.insert(&s("k"), &s("v")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { op: "put", .. }), "{err}");
    assert_eq!(cache.get(&s("k")).await.unwrap(), None, "a failed read is a miss");
    only.set(HEALTHY);
    // The failed put may have left anything behind, so the key stays unreadable there until
    // it is written again.
    plant(&*only.inner, "k", "ghost", None).await;
    assert_eq!(cache.get(&s("k")).await.unwrap(), None);
    cache.insert(&s("k"), &s("v")).await.unwrap();
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("v")));
}

#[tokio::test(start_paused = true)]
async fn too_many_failed_writes_distrust_the_tier_until_it_is_cleared() {
    let top = mem("top");
    let bottom = Arc::new(FaultyTier::new("bottom"));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .circuit_breaker(1000, Duration::from_secs(1))
        .dirty_key_limit(2)
        .build()
        .unwrap();
    plant(&*bottom.inner, "keep", "old", None).await;
    bottom.set(FAIL);
    for i in 0..3 {
        cache.insert(&s(&format!("k{i}")), &s("v")).await.unwrap();
    }
    bottom.set(HEALTHY);
    top.clear(far()).await.unwrap();
    // The first read clears the distrusted tier, then reads it again.
    assert_eq!(cache.get(&s("keep")).await.unwrap(), None);
    assert_eq!(peek_value(&*bottom.inner, "keep").await, None, "repaired by a clear");
    cache.insert(&s("keep"), &s("new")).await.unwrap();
    top.clear(far()).await.unwrap();
    assert_eq!(cache.get(&s("keep")).await.unwrap(), Some(s("new")));
}

/// A tier whose `clear` empties it and then waits until the test lets it return, as a clear
/// that walks a large tier (Redis's `SCAN`) is still running after it passed most keys.
struct SlowClearTier {
    inner: Arc<FaultyTier>,
    /// While true, a clear that has emptied the tier waits before returning.
    held: watch::Sender<bool>,
    /// Set once a clear has emptied the tier and is waiting.
    cleared: watch::Sender<bool>,
}

impl Tier for SlowClearTier {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn get<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, Option<TierEntry>> {
        self.inner.get(key, deadline)
    }

    fn put<'a>(&'a self, key: &'a [u8], entry: TierEntry, deadline: Instant) -> TierFuture<'a, ()> {
        self.inner.put(key, entry, deadline)
    }

    fn remove<'a>(&'a self, key: &'a [u8], deadline: Instant) -> TierFuture<'a, ()> {
        self.inner.remove(key, deadline)
    }

    fn clear<'a>(&'a self, deadline: Instant) -> TierFuture<'a, ()> {
        Box::pin(async move {
            self.inner.clear(deadline).await?;
            self.cleared.send_replace(true);
            let _ = self.held.subscribe().wait_for(|held| !*held).await;
            Ok(())
        })
    }
}

/// A cache over a memory tier and a `SlowClearTier` whose dirty set (of one key) two failed
/// writes have overflowed, and a read that, missing the top tier, has started the repairing
/// clear of the bottom tier, which waits until `bottom.held` is released.
struct Repairing {
    top: Arc<dyn Tier>,
    faulty: Arc<FaultyTier>,
    bottom: Arc<SlowClearTier>,
    cache: Cache,
    reader: tokio::task::JoinHandle<strata_tier::Result<Option<String>>>,
}

async fn repairing() -> Repairing {
    let top = mem("top");
    let faulty = Arc::new(FaultyTier::new("bottom"));
    let bottom = Arc::new(SlowClearTier {
        inner: faulty.clone(),
        held: watch::channel(true).0,
        cleared: watch::channel(false).0,
    });
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .timeout(Duration::from_secs(30))
        .circuit_breaker(1000, Duration::from_secs(1))
        .dirty_key_limit(1)
        .build()
        .unwrap();
    // Two failed writes overflow the dirty set of one: the tier must be cleared before use.
    faulty.set(FAIL);
    cache.insert(&s("a"), &s("1")).await.unwrap();
    cache.insert(&s("b"), &s("1")).await.unwrap();
    faulty.set(HEALTHY);
    // A read that misses the top tier starts the repair; its clear empties the tier and waits.
    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get(&s("x")).await })
    };
    let mut cleared = bottom.cleared.subscribe();
    tokio::time::timeout(Duration::from_secs(10), cleared.wait_for(|c| *c))
        .await
        .expect("the repairing clear started")
        .expect("watch alive");
    Repairing { top, faulty, bottom, cache, reader }
}

/// A tier distrusted after too many failed writes is repaired by a clear; writes that fail
/// while that clear runs, after it passed their keys, must keep the tier distrusted (or their
/// keys marked), or the repair ends by trusting the stale values they left behind.
#[tokio::test]
async fn failed_writes_during_a_repairing_clear_are_not_forgotten() {
    let Repairing { top, faulty, bottom, cache, reader } = repairing().await;
    // Meanwhile: "k" is written (reaching the bottom tier), then rewritten while the bottom
    // tier fails, which leaves "old" there; one more failed write overflows the dirty set.
    cache.insert(&s("k"), &s("old")).await.unwrap();
    faulty.set(FAIL);
    cache.insert(&s("k"), &s("new")).await.unwrap();
    cache.insert(&s("c"), &s("1")).await.unwrap();
    faulty.set(HEALTHY);
    bottom.held.send_replace(false);
    assert_eq!(reader.await.expect("reader task").unwrap(), None);
    assert_eq!(peek_value(&*faulty.inner, "k").await, Some(s("old")), "the stale copy");
    // The top tier loses its copy (evicted): the bottom tier's stale copy must not be served.
    top.remove(&key("k"), far()).await.unwrap();
    assert_eq!(cache.get(&s("k")).await.unwrap(), None, "a stale value must not be served");
    cache.close().await;
}

/// A read that repairs a distrusted tier may be cancelled by its caller (a timeout around
/// `get`) while the clear runs; the tier must still be repaired by a later read, not skipped
/// for reads forever.
#[tokio::test]
async fn a_cancelled_repair_does_not_disable_the_tier_for_good() {
    let Repairing { top, faulty: _, bottom, cache, reader } = repairing().await;
    // The caller gives up on its read while the repair's clear is still running.
    reader.abort();
    assert!(reader.await.is_err_and(|e| e.is_cancelled()));
    bottom.held.send_replace(false);
    // A later read repairs the tier; then values written to it are read from it again.
    assert_eq!(cache.get(&s("y")).await.unwrap(), None);
    cache.insert(&s("k"), &s("v")).await.unwrap();
    top.remove(&key("k"), far()).await.unwrap();
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("v")), "the bottom tier is read again");
    cache.close().await;
}

/// A read racing the overflow of the dirty set (another key's failed write) must see the key
/// either still marked or the tier distrusted, never neither. Each round leaves a stale value
/// of a fresh key in the bottom tier, marks the key, and overflows the set from this task
/// while a reader on its own thread reads the key; the rounds stop at the first stale read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_racing_a_dirty_set_overflow_never_serves_a_stale_value() {
    use std::sync::atomic::AtomicBool;
    const ROUNDS: u64 = 20_000;
    let top = mem("top");
    let bottom = Arc::new(FaultyTier::new("bottom"));
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(bottom.clone())
        .circuit_breaker(u32::MAX, Duration::from_secs(1))
        .dirty_key_limit(1)
        .build()
        .unwrap();
    // The round whose key is marked dirty over a stale bottom copy (0: none).
    let armed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (cache, armed, done) = (cache.clone(), armed.clone(), done.clone());
        // Its own thread and runtime, so that it runs truly in parallel with the writes.
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        std::thread::spawn(move || {
            rt.block_on(async move {
                while !done.load(Ordering::SeqCst) {
                    let round = armed.load(Ordering::SeqCst);
                    if round == 0 {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    let got = cache.get(&format!("k{round}")).await.expect("get");
                    if got.as_deref() == Some("old") {
                        return Some(round);
                    }
                }
                None
            })
        })
    };
    for round in 1..=ROUNDS {
        let k = format!("k{round}");
        plant(&*bottom.inner, &k, "old", None).await;
        bottom.set(FAIL_WRITES);
        cache.insert(&k, &s("new")).await.unwrap();
        top.remove(&key(&k), far()).await.unwrap();
        armed.store(round, Ordering::SeqCst);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        cache.insert(&format!("z{round}"), &s("x")).await.unwrap();
        armed.store(0, Ordering::SeqCst);
        bottom.set(HEALTHY);
        if reader.is_finished() {
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    let stale = reader.join().expect("reader thread");
    assert_eq!(stale, None, "the stale bottom copy was served");
    cache.close().await;
}

// ---- Coherence ----

#[tokio::test]
async fn invalidations_drop_copies_above_the_shared_tier() {
    let top = mem("top");
    let (shared, tx) = FaultyTier::new("shared").shared();
    let shared = Arc::new(shared);
    let cache: Cache = TieredCache::builder()
        .tier(top.clone())
        .tier(shared.clone())
        .near_cache_max_ttl(Duration::from_secs(30))
        .negative_caching(Duration::from_secs(60), 100)
        .build()
        .unwrap();
    cache.insert(&s("a"), &s("1")).await.unwrap();
    cache.insert(&s("b"), &s("2")).await.unwrap();
    // The near copy is capped; the shared one keeps the entry's own (absent) expiry.
    let (_, near_expiry) = peek(&*top, "a").await.unwrap();
    let cap = ExpiresAt::after(SystemTime::now(), Duration::from_secs(30));
    assert!(near_expiry.is_some_and(|e| e <= cap), "{near_expiry:?}");
    assert_eq!(peek(&*shared.inner, "a").await, Some((s("1"), None)));

    // Another process writes `a` in the shared tier and says so.
    plant(&*shared.inner, "a", "1b", None).await;
    tx.send(Invalidation::Key(key("a"))).unwrap();
    eventually("a dropped above", || async { peek(&*top, "a").await.is_none() }).await;
    assert_eq!(peek_value(&*top, "b").await, Some(s("2")), "other keys kept");
    assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1b")), "the new value is read");

    // A remembered miss is dropped too.
    assert_eq!(cache.get(&s("n")).await.unwrap(), None);
    plant(&*shared.inner, "n", "new", None).await;
    tx.send(Invalidation::Key(key("n"))).unwrap();
    eventually("negative entry dropped", || async { cache.get(&s("n")).await.unwrap().is_some() })
        .await;

    // Lost notices: everything above is dropped.
    tx.send(Invalidation::All).unwrap();
    eventually("all dropped above", || async {
        peek(&*top, "b").await.is_none() && peek(&*top, "a").await.is_none()
    })
    .await;
    assert_eq!(peek_value(&*shared.inner, "b").await, Some(s("2")), "shared tier untouched");

    // The stream ends (the connection is gone for good): the near copies are dropped once.
    assert_eq!(cache.get(&s("b")).await.unwrap(), Some(s("2")));
    assert!(peek(&*top, "b").await.is_some());
    drop(tx);
    eventually("near tier flushed", || async { peek(&*top, "b").await.is_none() }).await;
    assert_eq!(cache.get(&s("b")).await.unwrap(), Some(s("2")), "still read from below");
    cache.close().await;
}

// ---- Configuration ----

#[tokio::test]
async fn the_builder_rejects_nonsense() {
    let m = || mem("m");
    let b = || TieredCache::<String, String>::builder();
    let cases: Vec<(&str, Result<Cache, Error>)> = vec![
        ("no tiers", b().build()),
        ("same name twice", b().tier(m()).tier(m()).build()),
        ("zero timeout", b().tier(m()).timeout(Duration::ZERO).build()),
        (
            "zero breaker threshold",
            b().tier(m()).circuit_breaker(0, Duration::from_secs(1)).build(),
        ),
        ("zero cool-down", b().tier(m()).circuit_breaker(1, Duration::ZERO).build()),
        ("zero negative ttl", b().tier(m()).negative_caching(Duration::ZERO, 1).build()),
        (
            "zero negative capacity",
            b().tier(m()).negative_caching(Duration::from_secs(1), 0).build(),
        ),
        ("zero ttl", b().tier(m()).time_to_live(Duration::ZERO).build()),
        ("zero near cap", b().tier(m()).near_cache_max_ttl(Duration::ZERO).build()),
        ("stripes not a power of two", b().tier(m()).lock_stripes(3).build()),
        ("too many stripes", b().tier(m()).lock_stripes(1 << 20).build()),
        (
            "write-back with one tier",
            b().tier(m())
                .write_mode(WriteMode::Back { capacity: 1, on_full: OnFull::Wait })
                .build(),
        ),
        (
            "zero write-back workers",
            b().tier(m())
                .tier(mem("n"))
                .write_mode(WriteMode::Back { capacity: 1, on_full: OnFull::Wait })
                .writeback_workers(0)
                .build(),
        ),
        (
            "zero queue",
            b().tier(m())
                .tier(mem("n"))
                .write_mode(WriteMode::Back { capacity: 0, on_full: OnFull::Wait })
                .build(),
        ),
    ];
    for (what, built) in cases {
        assert!(matches!(built, Err(Error::InvalidConfig(_))), "{what} was accepted");
    }
}

#[tokio::test(start_paused = true)]
async fn huge_durations_are_accepted_without_overflow() {
    let only = Arc::new(FaultyTier::new("only"));
    let cache: Cache = TieredCache::builder()
        .tier(only.clone())
        .timeout(Duration::MAX)
        .circuit_breaker(1, Duration::MAX)
        .time_to_live(Duration::MAX)
        .build()
        .unwrap();
    cache.insert(&s("k"), &s("v")).await.unwrap();
    assert_eq!(
        peek(&*only.inner, "k").await,
        Some((s("v"), None)),
        "a TTL past the clock's range is forever"
    );
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("v")));
    only.set(FAIL);
    assert_eq!(cache.get(&s("k")).await.unwrap(), None);
    assert_eq!(cache.circuit_state("only"), Some(CircuitState::Open));
}

#[test]
fn write_back_without_a_runtime_is_refused_not_a_panic() {
    let built = TieredCache::<String, String>::builder()
        .tier(mem("a"))
        .tier(mem("b"))
        .write_mode(WriteMode::Back { capacity: 4, on_full: OnFull::Wait })
        .build();
    assert!(matches!(built, Err(Error::InvalidConfig(_))));
}

// ---- Against a reference model ----

mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16, Option<u8>),
        Remove(u8),
        Get(u8),
        /// The top tier drops the key on its own (eviction).
        EvictTop(u8),
        Advance(u8),
        Clear,
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..4u8, any::<u16>(), proptest::option::of(1..5u8))
                .prop_map(|(k, v, t)| Op::Insert(k, v, t)),
            2 => (0..4u8).prop_map(Op::Remove),
            4 => (0..4u8).prop_map(Op::Get),
            3 => (0..4u8).prop_map(Op::EvictTop),
            1 => (1..4u8).prop_map(Op::Advance),
            1 => Just(Op::Clear),
            1 => Just(Op::Flush),
        ]
    }

    /// Runs `ops` against a three-tier cache and a map; every read must agree with the map.
    fn check(ops: &[Op], back: bool, negative: bool) -> Result<(), TestCaseError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let clock = Arc::new(ManualClock::new());
            // The lower tiers yield on every call, so the write-back workers lag behind and
            // reads meet writes still queued.
            let lower = |n: &str| -> Arc<dyn Tier> {
                Arc::new(
                    FaultyTier::over(mem_with_clock(&format!("{n}-inner"), &clock), n).yielding(),
                )
            };
            let tiers: Vec<Arc<dyn Tier>> =
                vec![mem_with_clock("t0", &clock), lower("t1"), lower("t2")];
            let mut b = TieredCache::<u8, u16>::builder().clock(clock.clone());
            for t in &tiers {
                b = b.tier(t.clone());
            }
            if back {
                b = b.write_mode(WriteMode::Back { capacity: 8, on_full: OnFull::Wait });
            }
            if negative {
                b = b.negative_caching(Duration::from_secs(2), 64);
            }
            let cache = b.build().unwrap();
            // Key -> (value, expiry in whole seconds of the manual clock since the start).
            let mut model: HashMap<u8, (u16, Option<u64>)> = HashMap::new();
            let mut now = 0u64;
            for op in ops {
                match *op {
                    Op::Insert(k, v, ttl) => {
                        match ttl {
                            Some(t) => {
                                let ttl = Duration::from_secs(u64::from(t));
                                cache.insert_with_ttl(&k, &v, ttl).await.unwrap()
                            }
                            None => cache.insert(&k, &v).await.unwrap(),
                        };
                        model.insert(k, (v, ttl.map(|t| now + u64::from(t))));
                    }
                    Op::Remove(k) => {
                        cache.remove(&k).await.unwrap();
                        model.remove(&k);
                    }
                    Op::Get(k) => {
                        let want = model
                            .get(&k)
                            .filter(|(_, exp)| exp.is_none_or(|e| now < e))
                            .map(|(v, _)| *v);
                        let got = cache.get(&k).await.unwrap();
                        prop_assert_eq!(got, want, "get {} at {}s", k, now);
                    }
                    Op::EvictTop(k) => {
                        let mut key = Vec::new();
                        Codec::<u8>::encode(&Postcard::keys(), &k, &mut key).unwrap();
                        tiers[0].remove(&key, far()).await.unwrap();
                    }
                    Op::Advance(s) => {
                        clock.advance(Duration::from_secs(u64::from(s)));
                        now += u64::from(s);
                    }
                    Op::Clear => {
                        cache.invalidate_all().await.unwrap();
                        model.clear();
                    }
                    Op::Flush => cache.flush().await.unwrap(),
                }
            }
            cache.close().await;
            Ok(())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn reads_agree_with_a_map(
            ops in proptest::collection::vec(op(), 1..80),
            back in any::<bool>(),
            negative in any::<bool>(),
        ) {
            check(&ops, back, negative)?;
        }
    }
}

// ---- With a real lower tier ----

/// Memory over the disk tier in write-back mode: `close` drains the queue to disk, and a new
/// cache over the reopened directory reads every write back (and promotes it).
#[cfg(feature = "disk")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_back_to_disk_survives_close_and_reopen() {
    use strata_tier::disk::DiskTier;
    let dir = tempfile::tempdir().unwrap();
    let open = || DiskTier::builder(dir.path()).capacity(4 << 20).region_size(1 << 20).open();
    let disk = Arc::new(open().await.unwrap());
    let top = mem("top");
    let cache: TieredCache<u32, String> = TieredCache::builder()
        .tier(top)
        .tier(disk.clone())
        .write_mode(WriteMode::Back { capacity: 32, on_full: OnFull::Wait })
        .build()
        .unwrap();
    for i in 0..200u32 {
        cache.insert(&i, &format!("value {i}")).await.unwrap();
    }
    for i in (0..200u32).step_by(3) {
        cache.remove(&i).await.unwrap();
    }
    cache.close().await;
    disk.close().await.unwrap();
    drop(cache);
    drop(disk);

    let disk = Arc::new(open().await.unwrap());
    let top = mem("top");
    let cache: TieredCache<u32, String> =
        TieredCache::builder().tier(top.clone()).tier(disk).build().unwrap();
    for i in 0..200u32 {
        let want = (i % 3 != 0).then(|| format!("value {i}"));
        assert_eq!(cache.get(&i).await.unwrap(), want, "key {i}");
    }
    let mut key = Vec::new();
    Codec::<u32>::encode(&Postcard::keys(), &1, &mut key).unwrap();
    assert!(top.get(&key, far()).await.unwrap().is_some(), "promoted from disk");
    cache.close().await;
}

/// Waits up to `limit` of real time, in steps of 20 ms, until `cond` holds.
#[cfg(feature = "redis")]
async fn within<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within {limit:?}: {what}");
}

/// A Redis tier over the test server at `url`, with short timeouts and reconnects.
#[cfg(feature = "redis")]
async fn redis_tier(url: String) -> strata_tier::redis::RedisTier {
    strata_tier::redis::RedisTier::builder(url)
        .prefix("tiered-test")
        .timeout(Duration::from_millis(300))
        .max_reconnect_delay(Duration::from_millis(200))
        .liveness_interval(Duration::from_millis(200))
        .build()
        .await
        .expect("redis tier")
}

#[cfg(feature = "redis")]
async fn near_over_redis(
    url: String,
    near: Arc<dyn Tier>,
    registry: Option<Arc<Registry>>,
) -> TieredCache<String, String> {
    let redis = redis_tier(url).await;
    let mut b = TieredCache::builder()
        .tier(near)
        .tier(Arc::new(redis))
        .timeout(Duration::from_millis(500))
        .circuit_breaker(3, Duration::from_millis(300));
    if let Some(r) = registry {
        b = b.metrics(r, "svc");
    }
    b.build().expect("tiered cache")
}

/// Two caches (two "processes") share one Redis: a write or removal through one drops the
/// other's memory copy within a bounded time.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_sharing_redis_stay_coherent() {
    let Some(server) = crate::redis_server::RedisServer::start("two_caches_sharing_redis") else {
        return;
    };
    let (near_a, near_b) = (mem("near-a"), mem("near-b"));
    let a = near_over_redis(server.url(), near_a.clone(), None).await;
    let b = near_over_redis(server.url(), near_b.clone(), None).await;
    a.insert(&s("k"), &s("v1")).await.unwrap();
    assert_eq!(b.get(&s("k")).await.unwrap(), Some(s("v1")), "read through from Redis");
    // a's insert also sent b a notice, which may arrive after b's read promoted the value and
    // drop that copy again (dropping is always safe); b's next read promotes it once more.
    within(Duration::from_secs(5), "promoted into b's memory", || async {
        b.get(&s("k")).await.unwrap() == Some(s("v1"))
            && peek_value(&*near_b, "k").await == Some(s("v1"))
    })
    .await;

    a.insert(&s("k"), &s("v2")).await.unwrap();
    within(Duration::from_secs(5), "b's copy dropped after a's write", || async {
        peek(&*near_b, "k").await.is_none()
    })
    .await;
    assert_eq!(b.get(&s("k")).await.unwrap(), Some(s("v2")));

    a.remove(&s("k")).await.unwrap();
    within(Duration::from_secs(5), "b's copy dropped after a's removal", || async {
        peek(&*near_b, "k").await.is_none()
    })
    .await;
    assert_eq!(b.get(&s("k")).await.unwrap(), None);
    // a's own writes do not bounce back to drop a's copy.
    a.insert(&s("own"), &s("x")).await.unwrap();
    assert_eq!(peek_value(&*near_a, "own").await, Some(s("x")));
    a.close().await;
    b.close().await;
}

/// redis-server killed mid-run: the near tier keeps serving, errors are counted, the breaker
/// opens, and the service comes back after a restart.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_degrades_then_recovers() {
    let Some(mut server) = crate::redis_server::RedisServer::start("redis_killed_mid_run") else {
        return;
    };
    let registry = Arc::new(Registry::new());
    let near = mem("near");
    let cache = near_over_redis(server.url(), near.clone(), Some(registry.clone())).await;
    cache.insert(&s("before"), &s("1")).await.unwrap();

    server.kill();
    // The lost connection flushes the near tier once (notices may have been missed).
    within(Duration::from_secs(5), "near tier flushed on connection loss", || async {
        peek(&*near, "before").await.is_none()
    })
    .await;
    // Writes still land in memory and report Redis; reads are served from memory.
    let report = cache.insert(&s("during"), &s("2")).await.unwrap();
    assert_eq!(report.failures().len(), 1, "{report:?}");
    assert_eq!(report.failures()[0].tier, "redis");
    assert_eq!(cache.get(&s("during")).await.unwrap(), Some(s("2")));
    for i in 0..5 {
        assert_eq!(cache.get(&s(&format!("absent{i}"))).await.unwrap(), None);
    }
    let errors = counter(&registry, "strata_tier_errors_total", &[("tier", "svc/redis")]);
    assert!(errors >= 3, "errors counted: {errors}");
    assert_eq!(cache.circuit_state("redis"), Some(CircuitState::Open));

    server.restart();
    // Service resumes: after the cool-down a probe closes the breaker and writes reach Redis.
    within(Duration::from_secs(10), "writes reach Redis again", || async {
        cache.insert(&s("after"), &s("3")).await.is_ok_and(|r| r.is_complete())
    })
    .await;
    assert_eq!(cache.circuit_state("redis"), Some(CircuitState::Closed));
    near.remove(&key("after"), far()).await.unwrap();
    assert_eq!(cache.get(&s("after")).await.unwrap(), Some(s("3")), "read from Redis");
    cache.close().await;
}

/// A key of another Redis type (a list) under the prefix is one bad key, like foreign bytes:
/// reading it again and again must not open the Redis tier's breaker for every other key.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_redis_type_under_the_prefix_does_not_open_the_breaker() {
    let Some(server) = crate::redis_server::RedisServer::start("a_foreign_redis_type") else {
        return;
    };
    let near = mem("near");
    let cache = near_over_redis(server.url(), near.clone(), None).await;
    cache.insert(&s("good"), &s("v")).await.unwrap();
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("raw connection");
    let mut list_key = b"tiered-test:".to_vec();
    list_key.extend_from_slice(&key("list"));
    let _: i64 =
        redis::cmd("RPUSH").arg(&list_key).arg("x").query_async(&mut conn).await.expect("rpush");
    for _ in 0..10 {
        assert_eq!(cache.get(&s("list")).await.unwrap(), None, "a foreign value is not served");
    }
    assert_eq!(cache.circuit_state("redis"), Some(CircuitState::Closed));
    near.remove(&key("good"), far()).await.unwrap();
    assert_eq!(cache.get(&s("good")).await.unwrap(), Some(s("v")), "Redis still read");
    cache.close().await;
}

/// A write-back job that a tier refuses for good (a value larger than the disk tier takes)
/// fails at once: retrying it cannot succeed, and a lane that backs off between retries
/// (10 ms doubling) holds every later write of its keys behind it meanwhile.
#[cfg(feature = "disk")]
#[tokio::test(start_paused = true)]
async fn write_back_does_not_retry_a_write_the_tier_refuses() {
    use strata_tier::disk::DiskTier;
    let dir = tempfile::tempdir().unwrap();
    let disk = DiskTier::builder(dir.path()).capacity(64 << 10).region_size(4 << 10);
    let disk = Arc::new(disk.max_entry_size(256).build().unwrap());
    let cache: Cache = TieredCache::builder()
        .tier(mem("top"))
        .tier(disk.clone())
        .write_mode(WriteMode::Back { capacity: 16, on_full: OnFull::Wait })
        .writeback_workers(1)
        .writeback_retries(20)
        .build()
        .unwrap();
    cache.insert(&s("big"), &"x".repeat(1000)).await.unwrap();
    cache.insert(&s("small"), &s("v")).await.unwrap();
    // Paused time: the flush's duration is the backoff the worker slept, read off tokio's clock.
    let started = tokio::time::Instant::now();
    cache.flush().await.unwrap();
    let slept = started.elapsed();
    assert!(slept < Duration::from_secs(1), "the lane backed off {slept:?} on a refused write");
    assert_eq!(peek_value(&*disk, "small").await, Some(s("v")));
    cache.close().await;
}

/// A value that outgrows what the disk tier takes is refused there, and the disk's older
/// value must not outlive the refusal: the report says the disk tier "does not serve the key
/// until a later write of it succeeds there", and after a restart (the top tier empty, the
/// in-memory marks gone) the older value would otherwise be served as current.
#[cfg(feature = "disk")]
#[tokio::test]
async fn a_value_the_disk_refuses_does_not_leave_an_older_one_for_a_restart() {
    use strata_tier::disk::DiskTier;
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let disk = DiskTier::builder(dir.path()).capacity(64 << 10).region_size(4 << 10);
        Arc::new(disk.max_entry_size(256).build().unwrap())
    };
    let disk = open();
    let cache: Cache = TieredCache::builder().tier(mem("top")).tier(disk.clone()).build().unwrap();
    cache.insert(&s("k"), &s("small")).await.unwrap();
    let report = cache.insert(&s("k"), &"x".repeat(1000)).await.unwrap();
    assert_eq!(report.failures().len(), 1, "the disk tier refused the value: {report:?}");
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some("x".repeat(1000)));
    cache.close().await;
    disk.close().await.unwrap();
    drop((cache, disk));

    let cache: Cache = TieredCache::builder().tier(mem("top")).tier(open()).build().unwrap();
    assert_eq!(cache.get(&s("k")).await.unwrap(), None, "an older value came back");
}

// ---- The runtime a call runs on ----

/// Polls `fut` to completion on this thread with no runtime at all, as a non-tokio executor
/// would; the calls under test never wait, so a bounded number of polls is plenty.
fn poll_without_runtime<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    for _ in 0..1000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("the call did not finish in 1000 polls without a runtime");
}

/// Every call of a cache made on a runtime built without the time driver, or outside any
/// runtime, fails with a clear `InvalidConfig` naming the driver, instead of panicking in
/// tokio's timers; and nothing is written or marked, so the same cache works afterwards on a
/// runtime that has timers.
#[test]
fn calls_without_a_time_driver_are_clear_errors_not_panics() {
    fn names_the_driver<T: std::fmt::Debug>(what: &str, outcome: Result<T, Error>) {
        match outcome {
            Err(Error::InvalidConfig(msg)) if msg.contains("enable_time") => {}
            other => panic!("{what}: expected an InvalidConfig naming enable_time, got {other:?}"),
        }
    }
    let top = mem("top");
    let cache: Cache =
        TieredCache::builder().tier(top.clone()).tier(mem("bottom")).build().unwrap();
    let calls = |cache: Cache| async move {
        names_the_driver("get", cache.get(&s("k")).await);
        names_the_driver("get_with", cache.get_with(&s("k"), || async { Ok(s("loaded")) }).await);
        names_the_driver("insert", cache.insert(&s("k"), &s("v")).await);
        names_the_driver("insert_with_ttl", {
            cache.insert_with_ttl(&s("k"), &s("v"), Duration::from_secs(9)).await
        });
        names_the_driver("remove", cache.remove(&s("k")).await);
        names_the_driver("invalidate_all", cache.invalidate_all().await);
    };
    let bare = tokio::runtime::Builder::new_current_thread().build().unwrap();
    bare.block_on(calls(cache.clone()));
    poll_without_runtime(calls(cache.clone()));
    // Write-back starts workers whose retries sleep: refused at build on such a runtime.
    names_the_driver(
        "build with write-back",
        bare.block_on(async {
            TieredCache::<String, String>::builder()
                .tier(mem("a"))
                .tier(mem("b"))
                .write_mode(WriteMode::Back { capacity: 4, on_full: OnFull::Wait })
                .build()
        }),
    );

    let timed = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    timed.block_on(async {
        assert_eq!(peek(&*top, "k").await, None, "a refused call wrote nothing");
        cache.insert(&s("k"), &s("v")).await.unwrap();
        assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("v")));
        assert_eq!(cache.circuit_state("top"), Some(CircuitState::Closed));
        assert_eq!(cache.circuit_state("bottom"), Some(CircuitState::Closed));
    });
}

/// A Redis at its `maxmemory` under `noeviction` answers writes with `OOM`: it refuses those
/// writes but is healthy, and still serves reads. The refusals must not open its breaker
/// (which would also stop the reads), and, as for any refused put, the key's older value in
/// Redis must go, so that it is not served as current later.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_writes_without_opening_its_breaker() {
    let args = ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"];
    let Some(server) = crate::redis_server::RedisServer::start_with("a_full_redis", &args) else {
        return;
    };
    // Large enough for the 64 KiB values below (the other tests' near tier is 64 KiB).
    let near: Arc<dyn Tier> =
        Arc::new(MemoryTier::builder().name("near").max_bytes(4 << 20).build().unwrap());
    let cache = near_over_redis(server.url(), near.clone(), None).await;
    assert!(cache.insert(&s("k"), &s("old")).await.unwrap().is_complete());
    assert!(cache.insert(&s("good"), &s("g")).await.unwrap().is_complete());
    // Fill Redis until it refuses a 64 KiB value, then a 16 KiB and a 4 KiB one. A command's
    // bytes count toward Redis's used memory while it runs, so the memory left is now below
    // 4 KiB, and every 64 KiB write below is refused by a wide margin.
    let mut fills = 0;
    for size in [64 << 10, 16 << 10, 4 << 10] {
        let filler = "x".repeat(size);
        let refused = loop {
            fills += 1;
            assert!(fills < 1000, "Redis never refused a write at its maxmemory");
            let report = cache.insert(&format!("fill{fills}"), &filler).await.unwrap();
            if !report.is_complete() {
                break report;
            }
        };
        assert!(refused.failures()[0].error.to_string().contains("OOM"), "{refused:?}");
    }
    // More refusals than the breaker's threshold (3).
    let value = |i: usize| format!("{i}{}", "y".repeat(64 << 10));
    for i in 0..6 {
        let report = cache.insert(&s("k"), &value(i)).await.unwrap();
        let failures = report.failures();
        assert_eq!(failures.len(), 1, "{report:?}");
        assert!(matches!(failures[0].error, Error::Refused { .. }), "{report:?}");
        assert!(failures[0].error.to_string().contains("OOM"), "{}", failures[0].error);
    }
    assert_eq!(cache.circuit_state("redis"), Some(CircuitState::Closed));
    let served = cache.get(&s("k")).await.unwrap();
    assert!(
        served == Some(value(5)),
        "not the last value from memory: {:?}",
        served.map(|v| v.len())
    );
    // The refused put removed the older value from Redis.
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("raw connection");
    let mut rkey = b"tiered-test:".to_vec();
    rkey.extend_from_slice(&key("k"));
    let held: Option<Vec<u8>> =
        redis::cmd("GET").arg(&rkey).query_async(&mut conn).await.expect("raw get");
    assert_eq!(held, None, "the older value outlived the refused write in Redis");
    // Reads still reach Redis.
    near.remove(&key("good"), far()).await.unwrap();
    assert_eq!(cache.get(&s("good")).await.unwrap(), Some(s("g")), "read from Redis");
    cache.close().await;
}

/// Write-back retries back off, doubling from 10 ms, but never more than 2 s per retry: with
/// a breaker that opens late and many retries, an uncapped doubling (10 ms * 2^20, about
/// three hours for 20 retries) would hold the lane, and every later write of its keys, for
/// hours. Paused time: the flush's duration is the backoff the worker slept.
#[tokio::test(start_paused = true)]
async fn write_back_retry_backoff_is_capped() {
    let bottom = Arc::new(FaultyTier::new("bottom"));
    bottom.set(FAIL_IO);
    let cache: Cache = TieredCache::builder()
        .tier(mem("top"))
        .tier(bottom.clone())
        .write_mode(WriteMode::Back { capacity: 16, on_full: OnFull::Wait })
        .writeback_workers(1)
        .writeback_retries(20)
        .circuit_breaker(1000, Duration::from_secs(5))
        .build()
        .unwrap();
    cache.insert(&s("k"), &s("v")).await.unwrap();
    let started = tokio::time::Instant::now();
    cache.flush().await.unwrap();
    let slept = started.elapsed();
    assert_eq!(bottom.calls.load(Ordering::SeqCst), 21, "one try and 20 retries");
    // 10 ms doubling to 1.28 s (2.55 s in all), then 12 retries of 2 s each: 26.55 s.
    let expected = Duration::from_millis(26_550);
    assert!(
        slept >= expected && slept < expected + Duration::from_secs(1),
        "the lane backed off {slept:?}, expected about {expected:?}"
    );
    assert_eq!(cache.circuit_state("bottom"), Some(CircuitState::Closed));
    bottom.set(HEALTHY);
    cache.insert(&s("k2"), &s("v2")).await.unwrap();
    cache.flush().await.unwrap();
    assert_eq!(peek_value(&*bottom, "k2").await, Some(s("v2")), "the lane is free again");
    cache.close().await;
}

/// A shared tier skips the invalidation notices of its own writes, so two caches over one
/// `RedisTier` instance would never hear each other's writes: the second would serve a
/// stale value until its near-cache cap. Such a second cache is refused at build, and the
/// instance can be attached again once the first cache is closed.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shared_tier_instance_serves_one_cache_at_a_time() {
    let Some(server) = crate::redis_server::RedisServer::start("one_shared_tier_instance") else {
        return;
    };
    let redis: Arc<dyn Tier> = Arc::new(redis_tier(server.url()).await);
    let build =
        || TieredCache::<String, String>::builder().tier(mem("near")).tier(redis.clone()).build();
    let a = build().expect("the first cache over the tier");
    match build() {
        Err(Error::InvalidConfig(msg)) => {
            assert!(msg.contains("redis") && msg.contains("another"), "{msg}");
        }
        Ok(b) => {
            // What the refusal prevents: b never hears of a's write and serves its old copy.
            a.insert(&s("k"), &s("v1")).await.unwrap();
            assert_eq!(b.get(&s("k")).await.unwrap(), Some(s("v1")));
            a.insert(&s("k"), &s("v2")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let served = b.get(&s("k")).await.unwrap();
            panic!("a second cache over one shared tier was built; after a's write it served {served:?}");
        }
        Err(e) => panic!("expected InvalidConfig, got {e}"),
    }
    a.insert(&s("k"), &s("v")).await.unwrap();
    a.close().await;
    let b = build().expect("attachable again once the first cache is closed");
    assert_eq!(b.get(&s("k")).await.unwrap(), Some(s("v")), "read through the shared tier");
    drop(b);
    let c = build().expect("attachable again once the cache is dropped");
    c.close().await;
}
