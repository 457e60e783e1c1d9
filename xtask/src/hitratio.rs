//! `cargo xtask hitratio`: replays cache traces through every eviction policy, the real
//! strata-core cache, moka and quick_cache in one run, with LRU and Belady's OPT beside them.
//!
//! Without `--trace`, every trace in `../shared/traces` runs at its standard sizes, and the
//! parsed request and unique-key counts and the LRU and OPT hit ratios are checked against the
//! published figures (strata-sim's `reference` table): a mismatch fails the job. That is
//! where the large ARC traces (P3, P12), too slow for debug-build tests, are verified.
//!
//! The job re-executes itself in release mode when built without optimizations, since a
//! debug replay of P12 (13 million requests, ten caches) would take many minutes.

use anyhow::{bail, ensure, Context, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use strata_evict::{next_uses, opt_with_next_uses, PolicyConfig};
use strata_sim::reference::{self, TraceSpec};
use strata_sim::replay::{replay_policy, replay_with, Stats};

const USAGE: &str = "\
usage: cargo xtask hitratio [--trace PATH --sizes A,B,..] [--policy all|NAME,..] [--no-peers]
                            [--synced-moka] [--seed N] [--json OUT.json] [--plot OUT.svg]

Without --trace, runs every trace in ../shared/traces at its standard sizes and checks the
parsers and the LRU / OPT figures against the published reference numbers.
Policies: tinylfu (the default), tinylfu-static, s3fifo, sieve, lru, fifo.
--synced-moka adds a column `moka-synced`: moka with its pending writes applied after every
insert, so that it never holds more entries than its capacity (plain moka applies them every
64 writes and holds up to 64 entries more meanwhile); for caches of at most 4096 entries it
also prints how many entries plain moka held, on average and at most.";

/// The published LRU and OPT figures have two decimals.
const REFERENCE_TOLERANCE: f64 = 0.006;
/// Cells where OPT is within this many points of LRU have no gap to close and are left out
/// of the gap-closed average.
const MIN_GAP: f64 = 0.1;

struct Options {
    trace: Option<PathBuf>,
    sizes: Option<Vec<u64>>,
    policies: Vec<PolicyConfig>,
    peers: bool,
    synced_moka: bool,
    seed: u64,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        trace: None,
        sizes: None,
        policies: PolicyConfig::all(),
        peers: true,
        synced_moka: false,
        seed: 0x5EED,
        json: None,
        plot: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().cloned().with_context(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--trace" => o.trace = Some(PathBuf::from(value("--trace")?)),
            "--sizes" => {
                let v = value("--sizes")?;
                let sizes = v
                    .split(',')
                    .map(|s| s.trim().parse::<u64>().with_context(|| format!("bad size `{s}`")))
                    .collect::<Result<Vec<_>>>()?;
                ensure!(sizes.iter().all(|&s| s > 0), "sizes must be positive");
                o.sizes = Some(sizes);
            }
            "--policy" => {
                let v = value("--policy")?;
                if v != "all" {
                    o.policies = v
                        .split(',')
                        .map(|n| PolicyConfig::from_name(n.trim()).map_err(anyhow::Error::from))
                        .collect::<Result<Vec<_>>>()?;
                }
            }
            "--no-peers" => o.peers = false,
            "--synced-moka" => o.synced_moka = true,
            "--seed" => o.seed = value("--seed")?.parse().context("bad --seed")?,
            "--json" => o.json = Some(PathBuf::from(value("--json")?)),
            "--plot" => o.plot = Some(PathBuf::from(value("--plot")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    Ok(o)
}

/// Runs the job (see the module documentation).
pub(crate) fn run(args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) && std::env::var_os("STRATA_HITRATIO_DEBUG").is_none() {
        // Re-run optimized; relative paths stay valid because the working directory is kept.
        let mut cmd =
            std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(["run", "--release", "--quiet", "--package", "xtask", "--", "hitratio"])
            .args(args)
            .env("STRATA_HITRATIO_DEBUG", "0");
        return crate::run(cmd);
    }
    let opts = parse_options(args)?;
    let jobs: Vec<(PathBuf, Option<&'static TraceSpec>)> = match &opts.trace {
        Some(path) => vec![(path.clone(), reference::spec_for(path))],
        None => {
            let dir = reference::traces_dir(&crate::root());
            ensure!(dir.is_dir(), "{} does not exist; pass --trace PATH", dir.display());
            reference::TRACES.iter().map(|t| (dir.join(t.file), Some(t))).collect()
        }
    };
    let check_reference = opts.trace.is_none();
    let mut report = Report::default();
    let mut problems = Vec::new();
    for (path, spec) in jobs {
        let sizes = match (&opts.sizes, spec) {
            (Some(s), _) => s.clone(),
            (None, Some(spec)) => spec.sizes.to_vec(),
            (None, None) => bail!("{}: not a known trace, pass --sizes", path.display()),
        };
        let result = run_trace(&path, spec, &sizes, &opts, check_reference, &mut problems)?;
        report.traces.push(result);
    }
    report.print(&opts);
    if let Some(out) = &opts.json {
        std::fs::write(out, report.json(&opts)?)
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    if let Some(out) = &opts.plot {
        report.plot(out)?;
        eprintln!("wrote {}", out.display());
    }
    if !problems.is_empty() {
        bail!("reference mismatches:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// One trace's results: for each size, hit ratio (percent) by column name.
struct TraceResult {
    name: String,
    requests: usize,
    unique: usize,
    sizes: Vec<u64>,
    cells: Vec<BTreeMap<String, f64>>,
}

#[derive(Default)]
struct Report {
    traces: Vec<TraceResult>,
}

fn run_trace(
    path: &Path,
    spec: Option<&TraceSpec>,
    sizes: &[u64],
    opts: &Options,
    check_reference: bool,
    problems: &mut Vec<String>,
) -> Result<TraceResult> {
    let started = Instant::now();
    let trace =
        strata_sim::trace::read(path).with_context(|| format!("reading {}", path.display()))?;
    let unique = strata_sim::trace::unique_keys(&trace);
    let name = spec.map_or_else(
        || path.file_name().map_or_else(|| "trace".into(), |n| n.to_string_lossy().into_owned()),
        |s| s.name.to_owned(),
    );
    eprintln!("{name}: {} requests, {unique} unique keys ({:.1?})", trace.len(), started.elapsed());
    if let (true, Some(spec)) = (check_reference, spec) {
        if trace.len() != spec.requests || unique != spec.unique {
            problems.push(format!(
                "{name}: parsed {} requests / {unique} unique, expected {} / {}",
                trace.len(),
                spec.requests,
                spec.unique
            ));
        }
    }
    let next = next_uses(&trace);
    let mut cells = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let mut cell = BTreeMap::new();
        let cap = usize::try_from(size).context("size too large")?;
        cell.insert(
            "OPT".to_owned(),
            100.0 * opt_with_next_uses(&trace, &next, cap, false).hit_ratio(),
        );
        cell.insert(
            "LRU".to_owned(),
            replay_policy(&PolicyConfig::Lru, &trace, size, opts.seed).percent(),
        );
        for p in &opts.policies {
            if *p != PolicyConfig::Lru {
                cell.insert(
                    p.name().to_owned(),
                    replay_policy(p, &trace, size, opts.seed).percent(),
                );
            }
        }
        if opts.peers {
            if let Some(s) = strata_core_replay(&trace, size)? {
                cell.insert("strata".to_owned(), s.percent());
            }
            cell.insert("moka".to_owned(), moka_replay(&trace, size, false).percent());
            cell.insert("quick_cache".to_owned(), quick_cache_replay(&trace, size).percent());
        }
        if opts.synced_moka {
            cell.insert("moka-synced".to_owned(), moka_replay(&trace, size, true).percent());
            if size <= MOKA_AUDIT_MAX_SIZE {
                let (mean, max) = moka_residents(&trace, size);
                eprintln!(
                    "  {name}@{size}: plain moka held {mean:.1} entries on average, {max} at most"
                );
            }
        }
        if let (true, Some(spec)) = (check_reference, spec) {
            if let Some(j) = spec.sizes.iter().position(|&s| s == size) {
                for (col, want) in [("LRU", spec.lru[j]), ("OPT", spec.opt[j])] {
                    let got = cell[col];
                    if (got - want).abs() > REFERENCE_TOLERANCE {
                        problems
                            .push(format!("{name}@{size}: {col} {got:.2}, published {want:.2}"));
                    }
                }
            }
        }
        eprintln!(
            "  {name}@{size} done ({:.1?}, cell {}/{})",
            started.elapsed(),
            i + 1,
            sizes.len()
        );
        cells.push(cell);
    }
    Ok(TraceResult { name, requests: trace.len(), unique, sizes: sizes.to_vec(), cells })
}

/// Replays through the real, concurrent strata-core cache with its default configuration
/// (default policy, default shard count, keyed hashing), exactly as a user builds it.
fn strata_core_replay(trace: &[u64], size: u64) -> Result<Option<Stats>> {
    let cache = strata_core::Cache::<u64, u64>::builder().max_capacity(size).build()?;
    Ok(Some(replay_with(trace, |k| {
        let hit = cache.get(&k).is_some();
        if !hit {
            cache.insert(k, k);
        }
        hit
    })))
}

/// moka as configured by default, or `synced`: with its pending writes applied after every
/// insert, so that it holds at most its capacity at every request, as strata-core and
/// quick_cache do.
fn moka_replay(trace: &[u64], size: u64, synced: bool) -> Stats {
    let cache: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(size);
    replay_with(trace, |k| {
        let hit = cache.get(&k).is_some();
        if !hit {
            cache.insert(k, k);
            if synced {
                cache.run_pending_tasks();
            }
        }
        hit
    })
}

/// The largest cache whose plain-moka residents `--synced-moka` counts: each count walks the
/// whole cache.
const MOKA_AUDIT_MAX_SIZE: u64 = 4096;

/// `--synced-moka` counts plain moka's residents at every this many requests.
const AUDIT_EVERY: usize = 17;

/// Replays `trace` through plain moka and counts the entries it holds (readable ones, by
/// walking it) at every [`AUDIT_EVERY`]th request: the mean and the maximum.
fn moka_residents(trace: &[u64], size: u64) -> (f64, usize) {
    let cache: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(size);
    let (mut sum, mut max, mut counted) = (0usize, 0usize, 0usize);
    for (i, &k) in trace.iter().enumerate() {
        if cache.get(&k).is_none() {
            cache.insert(k, k);
        }
        // A count walks the whole cache: every 17th request (prime to moka's 64-write
        // cycle, so the samples fall at every point of it) keeps a full run to minutes.
        if i % AUDIT_EVERY == 0 {
            let held = cache.iter().count();
            sum += held;
            max = max.max(held);
            counted += 1;
        }
    }
    (sum as f64 / counted.max(1) as f64, max)
}

fn quick_cache_replay(trace: &[u64], size: u64) -> Stats {
    let cap = usize::try_from(size).unwrap_or(usize::MAX);
    let cache: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(cap);
    replay_with(trace, |k| {
        let hit = cache.get(&k).is_some();
        if !hit {
            cache.insert(k, k);
        }
        hit
    })
}

/// The columns in display order: the default policy, the other policies, the peers, then
/// the two references.
fn columns(opts: &Options, cells: &[BTreeMap<String, f64>]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    let mut push = |c: &str| {
        if !cols.iter().any(|x| x == c) && cells.iter().any(|cell| cell.contains_key(c)) {
            cols.push(c.to_owned());
        }
    };
    push("strata");
    for p in &opts.policies {
        if *p != PolicyConfig::Lru {
            push(p.name());
        }
    }
    push("moka");
    push("quick_cache");
    push("moka-synced");
    push("LRU");
    push("OPT");
    cols
}

/// (hit - LRU) / (OPT - LRU) in percent, or `None` where there is no gap to close.
fn gap_closed(cell: &BTreeMap<String, f64>, col: &str) -> Option<f64> {
    let (lru, opt, hit) = (cell.get("LRU")?, cell.get("OPT")?, cell.get(col)?);
    (opt - lru >= MIN_GAP).then(|| 100.0 * (hit - lru) / (opt - lru))
}

impl Report {
    fn all_cells(&self) -> Vec<BTreeMap<String, f64>> {
        self.traces.iter().flat_map(|t| t.cells.iter().cloned()).collect()
    }

    fn gap_averages(&self, cols: &[String]) -> Vec<(String, f64)> {
        let cells = self.all_cells();
        cols.iter()
            .filter(|c| *c != "LRU" && *c != "OPT")
            .map(|c| {
                let gaps: Vec<f64> = cells.iter().filter_map(|cell| gap_closed(cell, c)).collect();
                (c.clone(), gaps.iter().sum::<f64>() / gaps.len().max(1) as f64)
            })
            .collect()
    }

    /// Prints a Markdown table (it goes into docs/benchmarks.md unchanged): every column,
    /// then the better peer and how far the real cache ("strata") and the default policy
    /// alone are from it.
    fn print(&self, opts: &Options) {
        let cells = self.all_cells();
        let cols = columns(opts, &cells);
        let default = PolicyConfig::default().name().to_owned();
        let subjects = ["strata".to_owned(), default];
        println!(
            "| trace@size | {} | best peer | Δ {} | Δ {} |",
            cols.join(" | "),
            subjects[0],
            subjects[1]
        );
        println!("|---|{}---:|---:|---:|", "---:|".repeat(cols.len()));
        let mut worst: [Option<(String, f64)>; 2] = [None, None];
        let mut misses = [0usize; 2];
        for t in &self.traces {
            for (size, cell) in t.sizes.iter().zip(&t.cells) {
                let row: Vec<String> = cols
                    .iter()
                    .map(|c| cell.get(c).map_or("-".into(), |v| format!("{v:.2}")))
                    .collect();
                let peer = ["moka", "quick_cache"]
                    .iter()
                    .filter_map(|p| cell.get(*p))
                    .fold(f64::NAN, |a, &b| a.max(b));
                let mut deltas = [f64::NAN; 2];
                for (k, subject) in subjects.iter().enumerate() {
                    let delta = cell.get(subject).map_or(f64::NAN, |d| d - peer);
                    deltas[k] = delta;
                    if delta.is_nan() {
                        continue;
                    }
                    if delta < -1.0 {
                        misses[k] += 1;
                    }
                    if worst[k].as_ref().is_none_or(|(_, w)| delta < *w) {
                        worst[k] = Some((format!("{}@{size}", t.name), delta));
                    }
                }
                // Without peers (`--no-peers`) there is nothing to compare with: a dash.
                let shown = |v: f64, signed: bool| match (v.is_nan(), signed) {
                    (true, _) => "-".to_owned(),
                    (false, true) => format!("{v:+.2}"),
                    (false, false) => format!("{v:.2}"),
                };
                println!(
                    "| {}@{size} | {} | {} | {} | {} |",
                    t.name,
                    row.join(" | "),
                    shown(peer, false),
                    shown(deltas[0], true),
                    shown(deltas[1], true)
                );
            }
        }
        println!();
        println!(
            "Average share of the LRU→OPT gap closed (cells with OPT − LRU ≥ {MIN_GAP} points):"
        );
        for (c, g) in self.gap_averages(&cols) {
            println!("- {c}: {g:.1}%");
        }
        for (k, subject) in subjects.iter().enumerate() {
            if let Some((cell, d)) = &worst[k] {
                println!(
                    "\n{subject} vs the better peer: worst cell {cell} {d:+.2} points; {} cells more than 1 point below",
                    misses[k]
                );
            }
        }
    }

    fn json(&self, opts: &Options) -> Result<String> {
        let cells = self.all_cells();
        let cols = columns(opts, &cells);
        let traces: Vec<serde_json::Value> = self
            .traces
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "requests": t.requests,
                    "unique": t.unique,
                    "cells": t.sizes.iter().zip(&t.cells).map(|(s, c)| serde_json::json!({"size": s, "hit_ratio_percent": c})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let gaps: BTreeMap<String, f64> = self.gap_averages(&cols).into_iter().collect();
        Ok(serde_json::to_string_pretty(&serde_json::json!({
            "seed": opts.seed,
            "traces": traces,
            "gap_closed_percent": gaps,
        }))?)
    }

    /// One panel per trace: hit ratio against cache size, a line per column.
    fn plot(&self, out: &Path) -> Result<()> {
        let n = self.traces.len().max(1);
        let cols_n = n.min(3);
        let rows_n = n.div_ceil(cols_n);
        let root =
            SVGBackend::new(out, (420 * cols_n as u32, 320 * rows_n as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        let panels = root.split_evenly((rows_n, cols_n));
        let all = self.all_cells();
        let names: Vec<String> = {
            let mut v: Vec<String> = Vec::new();
            for c in &all {
                for k in c.keys() {
                    if !v.contains(k) {
                        v.push(k.clone());
                    }
                }
            }
            v
        };
        for (n, (t, panel)) in self.traces.iter().zip(panels).enumerate() {
            let k = t.sizes.len();
            let mut chart = ChartBuilder::on(&panel)
                .caption(&t.name, ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(40)
                .build_cartesian_2d(-0.3f64..(k as f64 - 0.7), 0f64..100f64)
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            let sizes = t.sizes.clone();
            chart
                .configure_mesh()
                .x_labels(k)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < sizes.len() {
                        sizes[i as usize].to_string()
                    } else {
                        String::new()
                    }
                })
                .max_light_lines(1)
                .y_desc("hit ratio %")
                .draw()
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            for (ci, name) in names.iter().enumerate() {
                let color = Palette99::pick(ci).to_rgba();
                let pts: Vec<(f64, f64)> = t
                    .cells
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| c.get(name).map(|v| (i as f64, *v)))
                    .collect();
                let style = if name == "OPT" || name == "LRU" {
                    color.stroke_width(1)
                } else {
                    color.stroke_width(2)
                };
                chart
                    .draw_series(LineSeries::new(pts.clone(), style))
                    .map_err(|e| anyhow::anyhow!("plot: {e}"))?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))
                    .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
            }
            // One legend, in the first panel: every panel draws the same series.
            if n > 0 {
                continue;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 10))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_parse_and_reject_nonsense() {
        let o = parse_options(&args(
            "--trace t.lis --sizes 10,20 --policy lru,sieve --no-peers --seed 3",
        ))
        .expect("valid");
        assert_eq!(o.sizes, Some(vec![10, 20]));
        assert_eq!(o.policies, vec![PolicyConfig::Lru, PolicyConfig::Sieve]);
        assert!(!o.peers);
        assert!(!o.synced_moka);
        assert!(parse_options(&args("--synced-moka")).expect("valid").synced_moka);
        assert_eq!(o.seed, 3);
        for bad in ["--sizes 10,x", "--sizes 0", "--policy clock", "--trace", "--frobnicate"] {
            assert!(parse_options(&args(bad)).is_err(), "{bad}");
        }
    }

    /// The synced moka never holds more than its capacity, where plain moka does: the reason
    /// the column exists.
    #[test]
    fn synced_moka_holds_its_capacity_and_plain_moka_more() {
        let trace: Vec<u64> = (0..4000u64).map(|i| (i * 7919) % 1000).collect();
        let cache: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(100);
        let mut max = 0;
        for &k in &trace {
            if cache.get(&k).is_none() {
                cache.insert(k, k);
                cache.run_pending_tasks();
            }
            max = max.max(cache.iter().count());
        }
        assert!(max <= 100, "synced moka held {max}");
        let (_, plain_max) = moka_residents(&trace, 100);
        assert!(plain_max > 100, "plain moka held at most {plain_max}");
    }

    #[test]
    fn gap_closed_is_relative_to_lru_and_opt() {
        let cell: BTreeMap<String, f64> = [("LRU", 10.0), ("OPT", 30.0), ("x", 25.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(gap_closed(&cell, "x"), Some(75.0));
        let flat: BTreeMap<String, f64> = [("LRU", 50.0), ("OPT", 50.0), ("x", 50.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(gap_closed(&flat, "x"), None);
    }
}
