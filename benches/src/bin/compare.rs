//! `cargo xtask bench` runs this: every contender on the same key stream in one process,
//! printing Mops/s, ratios and heap bytes per entry.

use std::time::Duration;
use strata_benches::alloc::{measure, Counting};
use strata_benches::{
    contenders, run_mixed, zipf_stream, Contender, Moka, QuickCache, Strata, CAPACITY,
};

#[global_allocator]
static ALLOC: Counting = Counting;

struct Args {
    only: Option<String>,
    ops: usize,
    rounds: usize,
    threads: Vec<usize>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args { only: None, ops: 4_000_000, rounds: 5, threads: vec![1, 2] };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => {
                a.ops = 1_000_000;
                a.rounds = 3;
            }
            "--only" => a.only = Some(value()?),
            "--ops" => a.ops = value()?.parse().map_err(|e| format!("--ops: {e}"))?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--threads" => {
                a.threads = value()?
                    .split(',')
                    .map(|t| t.parse().map_err(|e| format!("--threads: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.rounds == 0 || a.ops == 0 || a.threads.contains(&0) {
        return Err("--ops, --rounds and every --threads value must be positive".into());
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mops(ops: usize, d: Duration) -> f64 {
    ops as f64 / d.as_secs_f64() / 1e6
}

fn strata_variant(ttl: bool, stats: bool) -> Strata {
    let mut b = strata_core::Cache::builder().max_capacity(CAPACITY).record_stats(stats);
    if ttl {
        b = b.time_to_live(Duration::from_secs(3600));
    }
    Strata(b.build().unwrap_or_else(|e| panic!("valid configuration refused: {e}")))
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "compare: {e}\nusage: compare [--quick] [--ops N] [--rounds R] [--threads 1,2]"
            );
            std::process::exit(2);
        }
    };
    let keys = zipf_stream(args.ops, 0x0574_7a7a);
    println!("# Throughput: Zipf(1.0) over 1M keys, capacity {CAPACITY}, 90% get (a miss inserts) / 10% insert");
    println!(
        "# {} ops per run, median of {} rounds, all contenders interleaved in one process\n",
        args.ops, args.rounds
    );
    println!(
        "{:>7} | {:>9} | {:>9} | {:>11} | {:>13} | {:>14} | {:>12} | {:>13}",
        "threads",
        "strata",
        "moka",
        "quick_cache",
        "strata/moka",
        "strata/quick",
        "strata+ttl",
        "strata-nostats"
    );
    println!("{}", "-".repeat(110));
    for &threads in &args.threads {
        let mut all: Vec<Box<dyn Contender>> = contenders(CAPACITY);
        all.push(Box::new(strata_variant(true, true)));
        all.push(Box::new(strata_variant(false, false)));
        if let Some(only) = &args.only {
            all.retain(|c| c.name() == only);
            for _ in 0..args.rounds {
                let (d, hits) = run_mixed(all[0].as_ref(), &keys, threads);
                println!(
                    "{only} {threads}t: {:.2} Mops/s, hit ratio {:.3}",
                    mops(keys.len(), d),
                    hits as f64 / keys.len() as f64
                );
            }
            continue;
        }
        // Warm every cache with one pass so the measured rounds see a full cache.
        for c in &all {
            run_mixed(c.as_ref(), &keys, threads);
        }
        let mut results = vec![Vec::new(); all.len()];
        for _ in 0..args.rounds {
            for (i, c) in all.iter().enumerate() {
                let (d, _) = run_mixed(c.as_ref(), &keys, threads);
                results[i].push(mops(keys.len() / threads * threads, d));
            }
        }
        let m: Vec<f64> = results.into_iter().map(median).collect();
        println!(
            "{threads:>7} | {:>9.2} | {:>9.2} | {:>11.2} | {:>12.2}x | {:>13.2}x | {:>12.2} | {:>13.2}",
            m[0],
            m[1],
            m[2],
            m[0] / m[1],
            m[0] / m[2],
            m[3],
            m[4]
        );
        println!(
            "        (statistics on/off: {:.3}x; TTL configured/none: {:.3}x)",
            m[0] / m[4],
            m[3] / m[0]
        );
    }

    if args.only.is_some() {
        // A single contender's run is for profiling: the memory table compares all of them.
        return;
    }
    println!("\n# Heap bytes per entry beyond the 16 bytes of key and value\n");
    println!("# filled: {CAPACITY} distinct keys inserted into an empty cache;");
    println!(
        "# after the workload: the same, then one pass of the mixed workload above (1 thread),"
    );
    println!(
        "# so that eviction churn, tombstones and adaptive state have reached a steady state.\n"
    );
    let strata = |c: &Strata| c.0.entry_count();
    let rows = [
        ("strata", bytes_per_entry(|| Strata::new(CAPACITY), strata, &keys)),
        ("strata+ttl", bytes_per_entry(|| strata_variant(true, true), strata, &keys)),
        (
            "moka",
            bytes_per_entry(
                || Moka(moka::sync::Cache::new(CAPACITY)),
                |c| {
                    c.0.run_pending_tasks();
                    c.0.entry_count()
                },
                &keys,
            ),
        ),
        (
            "quick_cache",
            bytes_per_entry(
                || QuickCache(quick_cache::sync::Cache::new(CAPACITY as usize)),
                |c| c.0.len() as u64,
                &keys,
            ),
        ),
    ];
    println!("{:>12} | {:>8} | {:>18}", "bytes/entry", "filled", "after the workload");
    for (name, (filled, churned)) in &rows {
        println!("{name:>12} | {filled:>8.1} | {churned:>18.1}");
    }
    println!(
        "\nstrata vs moka (filled): {:.2}x less overhead; vs quick_cache: {:.2}x",
        rows[2].1 .0 / rows[0].1 .0,
        rows[3].1 .0 / rows[0].1 .0
    );
}

/// Heap bytes per entry beyond key and value of a cache made by `build`: filled with
/// [`CAPACITY`] distinct keys, and filled then run once through `keys` (one thread).
/// `settle` finishes any deferred work (inside the measurement) and returns the entry count.
fn bytes_per_entry<C: Contender>(
    build: impl Fn() -> C,
    settle: impl Fn(&C) -> u64,
    keys: &[u64],
) -> (f64, f64) {
    let run = |churn: bool| {
        let (bytes, (_cache, entries)) = measure(|| {
            let c = build();
            for k in 0..CAPACITY {
                c.insert(k, k);
            }
            if churn {
                run_mixed(&c, keys, 1);
            }
            let n = settle(&c);
            (c, n)
        });
        bytes as f64 / entries as f64 - 16.0
    };
    (run(false), run(true))
}
