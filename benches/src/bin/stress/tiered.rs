//! The tiered workload: memory over the disk tier (and Redis, when named), read-through with
//! promotion, TTL entries, and the redis-down fault.

use crate::args::Args;
use crate::redis_server::RedisServer;
use crate::run::Run;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_sim::synth::{generate, Pattern, Phase};
use strata_tier::disk::DiskTier;
use strata_tier::memory::MemoryTier;
use strata_tier::redis::RedisTier;
use strata_tier::tiered::TieredCache;
use strata_tier::Tier;

const KEYS: u64 = 100_000;
/// Small enough that a good share of reads go below the memory tier.
const MEMORY_BYTES: u64 = 2 << 20;
const DISK_BYTES: u64 = 64 << 20;
const TTL_BASE: u64 = 1 << 40;
/// How late (µs) a TTL read may be: expiries are wall-clock milliseconds.
const EXPIRY_GRACE_MICROS: u64 = 100_000;
/// Redis-down rhythm: up for this long, then down for `DOWN`.
const UP: Duration = Duration::from_secs(4);
const DOWN: Duration = Duration::from_secs(2);

pub(crate) fn run(run: &Run, args: &Args, dir: &Path) {
    let rt =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return run.violation(format!("tiered: tokio runtime: {e}")),
        };
    let (cache, server) = match rt.block_on(build(args, dir)) {
        Ok(built) => built,
        Err(e) => return run.violation(format!("tiered: {e}")),
    };
    let t0 = Instant::now();
    let handle = rt.handle();
    std::thread::scope(|s| {
        for t in 0..args.threads as u64 {
            let cache = &cache;
            // Each worker drives its own future; the runtime's threads drive IO and timers.
            s.spawn(move || handle.block_on(worker(run, cache, t0, t)));
        }
        if let (true, Some(server)) = (args.faults.redis_down, &server) {
            handle.block_on(redis_down(run, &cache, server));
        }
    });
    rt.block_on(cache.close());
}

type Built = (TieredCache<u64, u64>, Option<Mutex<RedisServer>>);

async fn build(args: &Args, dir: &Path) -> Result<Built, String> {
    let memory = MemoryTier::builder()
        .name("memory")
        .max_bytes(MEMORY_BYTES)
        .build()
        .map_err(|e| format!("memory tier: {e}"))?;
    let mut builder = TieredCache::<u64, u64>::builder().tier(Arc::new(memory));
    if args.tiers.disk {
        let disk = DiskTier::builder(dir.join("disk"))
            .capacity(DISK_BYTES)
            .build()
            .map_err(|e| format!("disk tier: {e}"))?;
        builder = builder.tier(Arc::new(disk));
    }
    let mut server = None;
    if args.tiers.redis {
        let s = RedisServer::start(&dir.join("redis"))?;
        let tier = RedisTier::builder(s.url())
            .prefix("strata-stress")
            .timeout(Duration::from_millis(200))
            .build()
            .await
            .map_err(|e| format!("redis tier: {e}"))?;
        builder = builder.tier(Arc::new(tier) as Arc<dyn Tier>);
        server = Some(Mutex::new(s));
    }
    let cache = builder
        .circuit_breaker(5, Duration::from_millis(500))
        .build()
        .map_err(|e| format!("tiered cache: {e}"))?;
    Ok((cache, server))
}

async fn worker(run: &Run, cache: &TieredCache<u64, u64>, t0: Instant, t: u64) {
    let tally = &run.tally;
    let phase = Phase {
        pattern: Pattern::Zipf { keys: KEYS, exponent: 0.9 },
        requests: 1 << 16,
        key_offset: 0,
    };
    let keys = generate(&[phase], 0x7137 + t);
    let mut i = 0u64;
    while !run.over() && i < u64::MAX / 2 {
        let key = keys[(i as usize) % keys.len()];
        let op_start = Instant::now();
        let outcome = match i % 20 {
            0..=13 => {
                tally.tiered_gets.fetch_add(1, Ordering::Relaxed);
                match cache.get(&key).await {
                    Ok(Some(v)) => {
                        tally.tiered_hits.fetch_add(1, Ordering::Relaxed);
                        tally.checks.fetch_add(1, Ordering::Relaxed);
                        if v >> 32 != key {
                            run.violation(format!(
                                "tiered: key {key} returned value {v:#x} of another key"
                            ));
                        }
                        Ok(true)
                    }
                    Ok(None) => cache
                        .insert(&key, &((key << 32) | (i & 0xffff_ffff)))
                        .await
                        .map(|r| r.is_complete()),
                    Err(e) => Err(e),
                }
            }
            14..=16 => cache
                .insert(&key, &((key << 32) | (i & 0xffff_ffff)))
                .await
                .map(|r| r.is_complete()),
            17 => cache.remove(&key).await.map(|r| r.is_complete()),
            _ => {
                // Short-lived entries whose value is their own deadline (µs since t0).
                let k = TTL_BASE + key % 1000;
                if i % 40 < 20 {
                    let ttl = Duration::from_millis(5 + i % 50);
                    let dl = (t0.elapsed() + ttl).as_micros() as u64;
                    cache.insert_with_ttl(&k, &dl, ttl).await.map(|r| r.is_complete())
                } else {
                    let before = t0.elapsed().as_micros() as u64;
                    match cache.get(&k).await {
                        Ok(Some(dl)) => {
                            tally.checks.fetch_add(1, Ordering::Relaxed);
                            if dl + EXPIRY_GRACE_MICROS < before {
                                run.violation(format!(
                                    "tiered: key {k} served {} µs after its deadline",
                                    before - dl
                                ));
                            }
                            Ok(true)
                        }
                        Ok(None) => Ok(true),
                        Err(e) => Err(e),
                    }
                }
            }
        };
        // An error or an incomplete write is expected while a tier is down; it is counted,
        // and correctness (no wrong or expired value served) is checked regardless.
        if !matches!(outcome, Ok(true)) {
            tally.errors.fetch_add(1, Ordering::Relaxed);
        }
        run.latency.record(op_start.elapsed().as_nanos() as u64);
        i += 1;
        if i % 256 == 0 {
            tally.ops.fetch_add(256, Ordering::Relaxed);
        }
    }
}

/// Kills redis-server for `DOWN` every `UP`, checking that reads go on being served from the
/// upper tiers meanwhile and that the Redis tier takes writes again after each restart.
async fn redis_down(run: &Run, cache: &TieredCache<u64, u64>, server: &Mutex<RedisServer>) {
    let lock = || server.lock().unwrap_or_else(|e| e.into_inner());
    while !run.over() {
        tokio::time::sleep(UP.min(run.deadline.saturating_duration_since(Instant::now()))).await;
        if run.over() {
            break;
        }
        lock().kill();
        Run::add(&run.tally.redis_outages, 1);
        // Reads that found a value in some tier: they must go on while Redis is down.
        let served_before = Run::get(&run.tally.tiered_hits);
        tokio::time::sleep(DOWN).await;
        let served = Run::get(&run.tally.tiered_hits) - served_before;
        if served == 0 {
            run.violation("tiered: no read was served while redis-server was down".into());
        }
        if let Err(e) = lock().restart() {
            run.violation(format!("tiered: {e}"));
            return;
        }
        // Service resumes: a write reaches every tier again within a bounded time.
        let until = Instant::now() + Duration::from_secs(15);
        let probe = (1u64 << 50) | Run::get(&run.tally.redis_outages);
        let mut resumed = false;
        while Instant::now() < until {
            if let Ok(report) = cache.insert(&probe, &(probe << 32)).await {
                if report.is_complete() {
                    resumed = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !resumed {
            run.violation(
                "tiered: the redis tier did not take writes within 15 s of its restart".into(),
            );
        }
    }
}
