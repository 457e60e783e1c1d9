//! Forwarding to the [`metrics`] crate facade (feature `metrics-facade`).
//!
//! [`MetricsFacadeRecorder`] is a [`Recorder`]: report a snapshot to it on a timer (or before
//! each scrape of whatever exporter the application installed), and every Strata figure appears
//! under its canonical name and labels in the `metrics` recorder of the calling thread (the
//! global one, or a local one set with `metrics::with_local_recorder`).
//!
//! Mapping: counters are set with `Counter::absolute` (Strata's totals are cumulative); gauges
//! with `Gauge::set`; histograms forward what was recorded since the previous report, one
//! `record_many(midpoint, count)` per non-empty bucket, in exposed units (seconds for
//! durations), so each forwarded value is within the histogram's relative error of a recorded
//! one. Families are described once, on the first report, with their help text and unit.

use crate::desc::{MetricDesc, MetricKind, Unit};
use crate::histogram::HistogramSnapshot;
use crate::recorder::Recorder;
use crate::registry::Label;
use std::collections::{HashMap, HashSet};

/// A [`Recorder`] that forwards figures to the `metrics` facade.
///
/// ```
/// use strata_metrics::{facade::MetricsFacadeRecorder, CacheMetrics, Registry};
/// let registry = Registry::new();
/// let cache = CacheMetrics::register(&registry, "users")?;
/// cache.hits.incr();
/// let mut forward = MetricsFacadeRecorder::new();
/// // In a service, on a timer: figures go to whatever `metrics` recorder is installed.
/// registry.snapshot().report(&mut forward);
/// # Ok::<(), strata_metrics::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct MetricsFacadeRecorder {
    described: HashSet<&'static str>,
    /// The last histogram forwarded per series, so that only new values are forwarded.
    previous: HashMap<(&'static str, Vec<String>), HistogramSnapshot>,
}

impl MetricsFacadeRecorder {
    /// A recorder that has forwarded nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

fn facade_labels(labels: &[Label]) -> Vec<metrics::Label> {
    labels.iter().map(|l| metrics::Label::new(l.name, l.value.clone())).collect()
}

fn facade_unit(unit: Unit) -> metrics::Unit {
    match unit {
        Unit::None => metrics::Unit::Count,
        Unit::Seconds => metrics::Unit::Seconds,
        Unit::Bytes => metrics::Unit::Bytes,
    }
}

impl Recorder for MetricsFacadeRecorder {
    fn describe(&mut self, desc: &MetricDesc) {
        if !self.described.insert(desc.name) {
            return;
        }
        let unit = facade_unit(desc.unit);
        match desc.kind {
            MetricKind::Counter => metrics::describe_counter!(desc.name, unit, desc.help),
            MetricKind::Gauge => metrics::describe_gauge!(desc.name, unit, desc.help),
            MetricKind::Histogram => metrics::describe_histogram!(desc.name, unit, desc.help),
        }
    }

    fn counter(&mut self, desc: &MetricDesc, labels: &[Label], total: u64) {
        metrics::counter!(desc.name, facade_labels(labels)).absolute(total);
    }

    fn gauge(&mut self, desc: &MetricDesc, labels: &[Label], value: i64) {
        metrics::gauge!(desc.name, facade_labels(labels)).set(value as f64);
    }

    fn histogram(&mut self, desc: &MetricDesc, labels: &[Label], h: &HistogramSnapshot) {
        let key = (desc.name, labels.iter().map(|l| l.value.clone()).collect::<Vec<_>>());
        // A series re-created since the previous report (removed and registered again, at
        // the same or another precision) restarts from zero: all of it is new. A saturating
        // delta against the old series would drop those values.
        let delta = match self.previous.get(&key) {
            Some(prev) if !h.is_reset_since(prev) => {
                h.delta_since(prev).unwrap_or_else(|_| h.clone())
            }
            _ => h.clone(),
        };
        let handle = metrics::histogram!(desc.name, facade_labels(labels));
        let scale = desc.unit.recorded_per_exposed();
        for b in delta.buckets() {
            let midpoint = b.low + (b.high - b.low) / 2;
            handle.record_many(
                midpoint as f64 / scale,
                usize::try_from(b.count).unwrap_or(usize::MAX),
            );
        }
        self.previous.insert(key, h.clone());
    }
}
