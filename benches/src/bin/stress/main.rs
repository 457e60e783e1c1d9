//! `cargo xtask stress`: Strata under a mixed concurrent load and injected faults, checked as
//! it runs, ending in a summary table and a verdict (exit status 1 if any check failed or any
//! acknowledged write was lost).
//!
//! Workloads run side by side for the whole run:
//! - memory: strata-core alone, Zipf reads, writes, removes and TTL entries from every thread;
//! - durable (unless `--wal off`): a child process runs the durable cache (memory + WAL)
//!   with writes, removes and transactions, reporting each acknowledgement; the parent
//!   SIGKILLs it, tears the log's tail, reopens, and checks every acknowledged write and the
//!   transactions' invariant;
//! - tiered (with `--tiers` naming disk or redis): memory over the lower tiers, read-through
//!   and promotion, with redis-server killed and restarted under `--faults redis-down`.

mod args;
mod durable;
mod memory;
mod progress;
mod redis_server;
mod report;
mod run;
mod tiered;

use run::Run;
use std::sync::atomic::Ordering;

fn main() {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("stress: {e}");
            }
            eprintln!("{}", args::USAGE);
            std::process::exit(2);
        }
    };
    if let Some(dir) = &args.child {
        std::process::exit(durable::child(dir, &args));
    }
    let run = Run::new(args.secs);
    let cache = match memory::build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stress: {e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "stress: {} threads for {} s; tiers [{}], wal {}, faults [{}]",
        args.threads,
        args.secs,
        args.tier_names(),
        args.wal.name(),
        args.faults.names()
    );
    let tmp = match tempfile::Builder::new().prefix("strata-stress-").tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("stress: cannot create a temporary directory: {e}");
            std::process::exit(2);
        }
    };
    let timeline = std::thread::scope(|s| {
        s.spawn(|| memory::run(&run, &cache, args.threads));
        if args.tiers.disk || args.tiers.redis {
            s.spawn(|| tiered::run(&run, &args, &tmp.path().join("tiered")));
        }
        if args.wal != args::WalMode::Off {
            s.spawn(|| durable::run(&run, &args, &tmp.path().join("durable")));
        }
        let timeline = progress::watch(&run, args.secs);
        run.stop.store(true, Ordering::Relaxed);
        timeline
    });
    let loads = memory::single_flight(&run, &cache, args.threads);
    summarize(&args, &run, &timeline, loads, cache.stats());
}

fn summarize(
    args: &args::Args,
    run: &Run,
    timeline: &[report::Sample],
    loads: u64,
    stats: strata_core::CacheStats,
) {
    let t = &run.tally;
    let elapsed = run.started.elapsed().as_secs_f64();
    let snap = run.latency.snapshot();
    let q = |p: f64| snap.quantile(p).ok().flatten().unwrap_or(0);
    let ops = Run::get(&t.ops);
    let hit_ratio = Run::get(&t.hits) as f64 / Run::get(&t.gets).max(1) as f64;
    let faults = Run::get(&t.kills) + Run::get(&t.torn_tails) + Run::get(&t.redis_outages);
    let (violations, lost) = (Run::get(&t.violations), Run::get(&t.records_lost));
    println!("\n# stress summary");
    println!("| figure | value |\n|---|---|");
    println!(
        "| tiers / wal / faults | {} / {} / {} |",
        args.tier_names(),
        args.wal.name(),
        args.faults.names()
    );
    println!("| threads | {} |", args.threads);
    println!("| operations | {ops} |");
    println!("| throughput | {:.0} ops/s |", ops as f64 / elapsed);
    println!("| latency p50 / p99 / p999 | {} / {} / {} ns |", q(0.5), q(0.99), q(0.999));
    println!("| hit ratio (memory workload) | {hit_ratio:.3} |");
    if args.tiers.disk || args.tiers.redis {
        let ratio = Run::get(&t.tiered_hits) as f64 / Run::get(&t.tiered_gets).max(1) as f64;
        println!("| hit ratio (tiered workload, any tier) | {ratio:.3} |");
    }
    println!("| evictions / expirations (memory) | {} / {} |", stats.evictions, stats.expirations);
    println!(
        "| durable writes acknowledged (transactions) | {} ({}) |",
        Run::get(&t.durable_acks),
        Run::get(&t.transactions)
    );
    println!("| errors under faults | {} |", Run::get(&t.errors));
    println!(
        "| faults injected (kill / torn / redis-down) | {faults} ({} / {} / {}) |",
        Run::get(&t.kills),
        Run::get(&t.torn_tails),
        Run::get(&t.redis_outages)
    );
    println!("| invariant checks | {} |", Run::get(&t.checks));
    println!("| records verified after faults | {} |", Run::get(&t.records_verified));
    println!("| records lost | {lost} |");
    println!("| single-flight loads (200 keys) | {loads} |");
    println!("| violations | {violations} |");
    for f in run.failures() {
        println!("  failure: {f}");
    }
    if let Some(dir) = &args.report {
        let summary = serde_json::json!({
            "tiers": args.tier_names(), "wal": args.wal.name(), "faults": args.faults.names(),
            "threads": args.threads, "seconds": elapsed, "operations": ops,
            "ops_per_sec": ops as f64 / elapsed,
            "latency_ns": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999)},
            "hit_ratio": hit_ratio,
            "transactions": Run::get(&t.transactions),
            "durable_acks": Run::get(&t.durable_acks),
            "errors": Run::get(&t.errors),
            "faults_injected": {"kill": Run::get(&t.kills), "torn": Run::get(&t.torn_tails), "redis_down": Run::get(&t.redis_outages)},
            "records_verified": Run::get(&t.records_verified), "records_lost": lost,
            "violations": violations, "single_flight_loads": loads,
            "failures": run.failures(),
            "timeline": timeline,
        });
        if let Err(e) = report::write(dir, &summary, timeline, &snap) {
            eprintln!("stress: could not write the report: {e}");
            std::process::exit(2);
        }
        println!("\nreport: {}", dir.display());
    }
    if violations == 0 && lost == 0 {
        println!("\nverdict: PASS — no invariant was violated and no acknowledged write was lost");
    } else {
        println!("\nverdict: FAIL — {violations} violations, {lost} records lost");
        std::process::exit(1);
    }
}
