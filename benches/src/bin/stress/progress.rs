//! The live progress display: an indicatif bar on a terminal, a line every few seconds
//! otherwise (CI logs), and the per-second samples the throughput plot is drawn from.

use crate::report::Sample;
use crate::run::Run;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Samples the tallies once a second until the run is over; returns the samples.
pub(crate) fn watch(run: &Run, secs: u64) -> Vec<Sample> {
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal { ProgressBar::new(secs) } else { ProgressBar::hidden() };
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} s  {msg}",
    ) {
        bar.set_style(style);
    }
    let mut samples = Vec::new();
    let (mut last_ops, mut last_gets, mut last_hits) = (0, 0, 0);
    let mut last_at = run.started;
    // Bounded by the deadline (plus a margin for workloads that wind down late).
    while !run.over() && samples.len() as u64 <= secs + 5 {
        let wait =
            Duration::from_secs(1).min(run.deadline.saturating_duration_since(Instant::now()));
        std::thread::sleep(wait.max(Duration::from_millis(10)));
        let t = &run.tally;
        let (ops, gets, hits) = (Run::get(&t.ops), Run::get(&t.gets), Run::get(&t.hits));
        let now = Instant::now();
        let dt = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let sample = Sample {
            at: run.started.elapsed().as_secs_f64(),
            ops_per_sec: (ops - last_ops) as f64 / dt,
            hit_ratio: (hits - last_hits) as f64 / (gets - last_gets).max(1) as f64,
            errors: Run::get(&t.errors),
        };
        (last_ops, last_gets, last_hits, last_at) = (ops, gets, hits, now);
        let msg = format!(
            "{:>10.0} ops/s  hit ratio {:.3}  errors {}  faults {}  lost {}  violations {}",
            sample.ops_per_sec,
            sample.hit_ratio,
            sample.errors,
            Run::get(&t.kills) + Run::get(&t.torn_tails) + Run::get(&t.redis_outages),
            Run::get(&t.records_lost),
            Run::get(&t.violations),
        );
        bar.set_position(sample.at as u64);
        bar.set_message(msg.clone());
        if !terminal && samples.len() % 5 == 4 {
            eprintln!("  {:>4.0} s {msg}", sample.at);
        }
        samples.push(sample);
    }
    bar.finish_and_clear();
    samples
}
