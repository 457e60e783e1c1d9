//! strata-tier's disk tier: gets/s and puts/s of 1 KiB values beside the machine's raw
//! positioned-IO rate for the same sizes (`pread`/`pwrite` of 1 KiB on one preallocated
//! file), so the tier's cost can be stated as a ratio; and a put synced to the device beside
//! a raw `pwrite` + `fdatasync`.
//!
//! Run with `cargo bench -p strata-benches --bench disk_tier`. The working set (64 MiB) is
//! smaller than the page cache, so both sides measure the software path, not the device:
//! that is the ratio that says what the tier adds. A summary with the ratios is printed at the
//! end; it interleaves tier and raw runs in short slices so that drift affects both alike.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};
use strata_tier::disk::DiskTier;
use strata_tier::{Tier, TierEntry};

const VALUE: usize = 1024;
/// The bytes the working set spans: keys for the tier, the file length for raw IO.
const SPAN: u64 = 64 << 20;
/// The keys preloaded for gets: about 48 MiB of entries, in a 128 MiB tier.
const KEYS: u64 = 48 << 10;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn tier(dir: &std::path::Path, capacity: u64, sync: bool) -> DiskTier {
    DiskTier::builder(dir)
        .capacity(capacity)
        .region_size(4 << 20)
        .sync(sync)
        .build()
        .expect("open a disk tier in a fresh temporary directory")
}

/// A tier holding `KEYS` entries of `VALUE` bytes.
fn loaded(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> DiskTier {
    let t = tier(dir, 2 * SPAN, false);
    let value = vec![0xa5u8; VALUE];
    rt.block_on(async {
        for k in 0..KEYS {
            let e = TierEntry { value: value.clone(), expires_at: None };
            t.put(&k.to_le_bytes(), e, far()).await.expect("preload");
        }
    });
    t
}

/// A file of `SPAN` bytes, written once so that its pages exist and are cached.
fn raw_file(dir: &std::path::Path) -> File {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("raw"))
        .expect("create raw file");
    let chunk = vec![0x5au8; 1 << 20];
    for i in 0..SPAN / chunk.len() as u64 {
        f.write_all_at(&chunk, i * chunk.len() as u64).expect("fill raw file");
    }
    f
}

/// A cheap, well-spread sequence of indices below `n` (an LCG step modulo `n`).
fn next(i: u64, n: u64) -> u64 {
    (i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) >> 17) % n
}

fn tier_gets(rt: &tokio::runtime::Runtime, t: &DiskTier, iters: u64, seed: &mut u64) {
    rt.block_on(async {
        for _ in 0..iters {
            *seed = seed.wrapping_add(1);
            let k = next(*seed, KEYS);
            let got = t.get(&k.to_le_bytes(), far()).await.expect("get");
            assert!(got.is_some_and(|e| e.value.len() == VALUE), "preloaded key {k} missing");
        }
    });
}

fn tier_puts(rt: &tokio::runtime::Runtime, t: &DiskTier, iters: u64, seed: &mut u64) {
    let value = vec![0x3cu8; VALUE];
    rt.block_on(async {
        for _ in 0..iters {
            *seed = seed.wrapping_add(1);
            let e = TierEntry { value: value.clone(), expires_at: None };
            t.put(&seed.to_le_bytes(), e, far()).await.expect("put");
        }
    });
}

fn raw_reads(f: &File, iters: u64, seed: &mut u64) {
    let mut buf = vec![0u8; VALUE];
    let slots = SPAN / VALUE as u64;
    for _ in 0..iters {
        *seed = seed.wrapping_add(1);
        f.read_exact_at(&mut buf, next(*seed, slots) * VALUE as u64).expect("pread");
    }
}

fn raw_writes(f: &File, iters: u64, seed: &mut u64, sync: bool) {
    let buf = vec![0x3cu8; VALUE];
    let slots = SPAN / VALUE as u64;
    for _ in 0..iters {
        *seed = seed.wrapping_add(1);
        // Sequential, as the tier's appends are.
        f.write_all_at(&buf, (*seed % slots) * VALUE as u64).expect("pwrite");
        if sync {
            f.sync_data().expect("fdatasync");
        }
    }
}

fn reads(c: &mut Criterion) {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = loaded(&rt, tmp.path());
    let raw = raw_file(tmp.path());
    let mut group = c.benchmark_group("disk_read_1KiB");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let mut seed = 0;
    group.bench_function(BenchmarkId::new("tier_get", "hit"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            tier_gets(&rt, &t, iters, &mut seed);
            start.elapsed()
        });
    });
    group.bench_function(BenchmarkId::new("raw_pread", "cached"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            raw_reads(&raw, iters, &mut seed);
            start.elapsed()
        });
    });
    group.finish();
}

fn writes(c: &mut Criterion) {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tier(tmp.path(), SPAN, false);
    let raw = raw_file(tmp.path());
    let mut group = c.benchmark_group("disk_write_1KiB");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let mut seed = 0;
    group.bench_function(BenchmarkId::new("tier_put", "no-sync"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            tier_puts(&rt, &t, iters, &mut seed);
            start.elapsed()
        });
    });
    group.bench_function(BenchmarkId::new("raw_pwrite", "no-sync"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            raw_writes(&raw, iters, &mut seed, false);
            start.elapsed()
        });
    });
    group.finish();

    let synced_dir = tempfile::tempdir().expect("tempdir");
    let synced = tier(synced_dir.path(), SPAN, true);
    let mut group = c.benchmark_group("disk_write_1KiB_synced");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("tier_put", "sync"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            tier_puts(&rt, &synced, iters, &mut seed);
            start.elapsed()
        });
    });
    group.bench_function(BenchmarkId::new("raw_pwrite", "fdatasync"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            raw_writes(&raw, iters, &mut seed, true);
            start.elapsed()
        });
    });
    group.finish();
}

/// Runs `op` in batches of 256 until `slice` has passed; returns the operations done.
fn for_slice(slice: Duration, mut op: impl FnMut(u64)) -> u64 {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < slice {
        op(256);
        n += 256;
    }
    n
}

/// Tier and raw rates measured in interleaved 250 ms slices, eight rounds, with the ratios.
fn summary(_: &mut Criterion) {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = loaded(&rt, &tmp.path().join("gets"));
    // Puts go to a tier of their own, so that they never evict the keys the gets look up.
    let pt = tier(&tmp.path().join("puts"), SPAN, false);
    let raw = raw_file(tmp.path());
    let slice = Duration::from_millis(250);
    let rounds = 8;
    let mut seed = 1 << 40;
    let (mut gets, mut preads, mut puts, mut pwrites) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..rounds {
        gets += for_slice(slice, |n| tier_gets(&rt, &t, n, &mut seed));
        preads += for_slice(slice, |n| raw_reads(&raw, n, &mut seed));
        puts += for_slice(slice, |n| tier_puts(&rt, &pt, n, &mut seed));
        pwrites += for_slice(slice, |n| raw_writes(&raw, n, &mut seed, false));
    }
    let secs = slice.as_secs_f64() * f64::from(rounds);
    let rate = |n: u64| n as f64 / secs;
    let stats = pt.stats();
    println!(
        "\ndisk tier summary (1 KiB values, 64 MiB working set in the page cache, interleaved):\n  \
         get {:.0}/s vs raw pread {:.0}/s ({:.2}x of raw)\n  \
         put {:.0}/s vs raw pwrite {:.0}/s ({:.2}x of raw); {} regions reclaimed meanwhile",
        rate(gets),
        rate(preads),
        rate(gets) / rate(preads),
        rate(puts),
        rate(pwrites),
        rate(puts) / rate(pwrites),
        stats.reclaimed_regions,
    );
}

// `criterion_group!` defines an undocumented public function; it is not API.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, reads, writes, summary);
}
use group::benches;
criterion_main!(benches);
