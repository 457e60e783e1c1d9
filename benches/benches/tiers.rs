//! Get latency of the tiered cache for a hit in each tier: the memory tier alone, the disk
//! tier alone (its files in the page cache; the Redis tier's hit latency is printed by the
//! `redis_tier` bench, which starts its own server), a
//! `TieredCache` hit in its top tier, and a hit in its second tier (the top copy removed
//! before each read, so every read goes down, finds the entry and promotes it).
//!
//! Criterion gives the mean; a first pass records every read in a strata-metrics histogram
//! and prints p50 / p99 / p999, which a mean hides.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use strata_metrics::Histogram;
use strata_tier::disk::DiskTier;
use strata_tier::memory::MemoryTier;
use strata_tier::tiered::TieredCache;
use strata_tier::{Codec, Postcard, Tier};

const KEYS: u64 = 10_000;
const VALUE_LEN: usize = 256;

struct Setup {
    rt: tokio::runtime::Runtime,
    top: Arc<MemoryTier>,
    memory: Arc<MemoryTier>,
    cache: TieredCache<u64, Vec<u8>>,
    /// The disk tier alone, its files in `_dir` (in the page cache after the fill).
    disk: Arc<DiskTier>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let top = Arc::new(MemoryTier::builder().name("top").max_bytes(16 << 20).build().expect("top"));
    let below =
        Arc::new(MemoryTier::builder().name("below").max_bytes(16 << 20).build().expect("below"));
    let memory =
        Arc::new(MemoryTier::builder().name("alone").max_bytes(16 << 20).build().expect("alone"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let disk = Arc::new(
        DiskTier::builder(dir.path().join("disk")).capacity(64 << 20).build().expect("disk tier"),
    );
    let cache = rt.block_on(async {
        let cache: TieredCache<u64, Vec<u8>> =
            TieredCache::builder().tier(top.clone()).tier(below).build().expect("tiered cache");
        for k in 0..KEYS {
            cache.insert(&k, &vec![7; VALUE_LEN]).await.expect("insert");
            let entry = strata_tier::TierEntry { value: vec![7; VALUE_LEN], expires_at: None };
            memory.put(&k.to_le_bytes(), entry.clone(), far()).await.expect("put");
            disk.put(&k.to_le_bytes(), entry, far()).await.expect("put");
        }
        cache
    });
    Setup { rt, top, memory, cache, disk, _dir: dir }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn key_bytes(k: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Codec::<u64>::encode(&Postcard::keys(), &k, &mut out).expect("key");
    out
}

/// Records `n` reads made by `read(i)` and prints their percentiles.
fn percentiles(name: &str, n: u64, mut read: impl FnMut(u64) -> Duration) {
    let h = Histogram::new();
    for i in 0..n {
        h.record_duration(read(i));
    }
    let s = h.snapshot();
    let q = |q| s.quantile(q).ok().flatten().unwrap_or(0);
    println!(
        "{name:<28} p50 {:>7} ns  p99 {:>7} ns  p999 {:>7} ns  ({n} reads)",
        q(0.5),
        q(0.99),
        q(0.999)
    );
}

fn print_percentiles(s: &Setup) {
    const N: u64 = 200_000;
    percentiles("memory tier get (hit)", N, |i| {
        let k = (i % KEYS).to_le_bytes();
        let t = Instant::now();
        black_box(s.rt.block_on(s.memory.get(&k, far())).expect("get"));
        t.elapsed()
    });
    percentiles("disk tier get (hit)", N, |i| {
        let k = (i % KEYS).to_le_bytes();
        let t = Instant::now();
        black_box(s.rt.block_on(s.disk.get(&k, far())).expect("get"));
        t.elapsed()
    });
    percentiles("tiered get, top-tier hit", N, |i| {
        let k = i % KEYS;
        let t = Instant::now();
        black_box(s.rt.block_on(s.cache.get(&k)).expect("get"));
        t.elapsed()
    });
    percentiles("tiered get, second-tier hit", N / 4, |i| {
        let k = i % KEYS;
        s.rt.block_on(s.top.remove(&key_bytes(k), far())).expect("remove");
        let t = Instant::now();
        black_box(s.rt.block_on(s.cache.get(&k)).expect("get"));
        t.elapsed()
    });
}

fn benches(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group("tier_get_hit");
    let mut i = 0u64;
    g.bench_function("memory_tier", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(s.rt.block_on(s.memory.get(&i.to_le_bytes(), far())).expect("get"))
        });
    });
    g.bench_function("disk_tier", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(s.rt.block_on(s.disk.get(&i.to_le_bytes(), far())).expect("get"))
        });
    });
    g.bench_function("tiered_top", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(s.rt.block_on(s.cache.get(&i)).expect("get"))
        });
    });
    g.bench_function("tiered_second", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % KEYS;
                s.rt.block_on(s.top.remove(&key_bytes(i), far())).expect("remove");
                i
            },
            |k| black_box(s.rt.block_on(s.cache.get(&k)).expect("get")),
            // Fewer inputs per batch than keys, so no key repeats within a batch (a repeat would
            // hit the top tier).
            BatchSize::NumIterations(1024),
        );
    });
    g.finish();
}

fn main() {
    let s = setup();
    print_percentiles(&s);
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &s);
    c.final_summary();
}
