//! The closing summary, the JSON report and the SVG plots of a stress run.

use plotters::prelude::*;
use std::path::Path;
use strata_metrics::HistogramSnapshot;

/// One second of the run, as the progress sampler saw it.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Sample {
    /// Seconds since the start.
    pub(crate) at: f64,
    pub(crate) ops_per_sec: f64,
    pub(crate) hit_ratio: f64,
    pub(crate) errors: u64,
}

/// Writes `stress.json`, `throughput.svg` and `latency.svg` into `dir`.
pub(crate) fn write(
    dir: &Path,
    summary: &serde_json::Value,
    timeline: &[Sample],
    latency: &HistogramSnapshot,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(summary).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("stress.json"), json)
        .map_err(|e| format!("write {}: {e}", dir.join("stress.json").display()))?;
    throughput_plot(&dir.join("throughput.svg"), timeline)?;
    latency_plot(&dir.join("latency.svg"), latency)?;
    Ok(())
}

fn throughput_plot(path: &Path, timeline: &[Sample]) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_t = timeline.last().map_or(1.0, |s| s.at).max(1.0);
    let max_ops = timeline.iter().map(|s| s.ops_per_sec).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("stress: throughput over time", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..max_t, 0.0..max_ops)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("operations per second")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(timeline.iter().map(|s| (s.at, s.ops_per_sec)), &BLUE))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| format!("write {}: {e}", path.display()))
}

/// The latency distribution: the share of operations in each power-of-two bucket of
/// nanoseconds, on a log2 axis.
fn latency_plot(path: &Path, latency: &HistogramSnapshot) -> Result<(), String> {
    let bounds: Vec<u64> = (0..40).map(|b| 1u64 << b).collect();
    let cumulative = latency.cumulative_counts(&bounds);
    let total = latency.count().max(1) as f64;
    let mut points = Vec::new();
    let mut below = 0;
    for (b, &c) in cumulative.iter().enumerate() {
        if c > below {
            points.push((b as f64, (c - below) as f64 / total * 100.0));
        }
        below = c;
    }
    let root = SVGBackend::new(path, (800, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_max = points.last().map_or(1.0, |p| p.0 + 1.0);
    let x_min = points.first().map_or(0.0, |p| p.0 - 1.0).max(0.0);
    let mut chart = ChartBuilder::on(&root)
        .caption("stress: latency distribution", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_min..x_max, 0.0..100.0)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("latency (log2 of nanoseconds)")
        .y_desc("% of operations")
        .draw()
        .map_err(|e| e.to_string())?;
    chart.draw_series(LineSeries::new(points.iter().copied(), &RED)).map_err(|e| e.to_string())?;
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 3, RED.filled())))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| format!("write {}: {e}", path.display()))
}
