//! The `metrics` facade adapter forwards totals, gauges and histogram increments.

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
    SharedString, Unit,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_metrics::{facade::MetricsFacadeRecorder, CacheMetrics, Registry};

/// What the capture recorder saw for one key.
#[derive(Default)]
struct Cell {
    counter: AtomicU64,
    gauge: Mutex<f64>,
    samples: Mutex<Vec<f64>>,
}

impl CounterFn for Cell {
    fn increment(&self, n: u64) {
        self.counter.fetch_add(n, Ordering::Relaxed);
    }
    fn absolute(&self, n: u64) {
        self.counter.fetch_max(n, Ordering::Relaxed);
    }
}
impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        *self.gauge.lock().expect("not poisoned") += v;
    }
    fn decrement(&self, v: f64) {
        *self.gauge.lock().expect("not poisoned") -= v;
    }
    fn set(&self, v: f64) {
        *self.gauge.lock().expect("not poisoned") = v;
    }
}
impl HistogramFn for Cell {
    fn record(&self, v: f64) {
        self.samples.lock().expect("not poisoned").push(v);
    }
}

/// A minimal `metrics::Recorder` that keeps everything by rendered key.
#[derive(Default)]
struct Capture {
    cells: Mutex<HashMap<String, Arc<Cell>>>,
    described: Mutex<Vec<(String, Option<Unit>)>>,
}

impl Capture {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> =
            key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Arc::clone(self.cells.lock().expect("not poisoned").entry(name).or_default())
    }
    fn get(&self, name: &str) -> Arc<Cell> {
        let cells = self.cells.lock().expect("not poisoned");
        Arc::clone(
            cells.get(name).unwrap_or_else(|| panic!("{name} not forwarded: {:?}", cells.keys())),
        )
    }

    /// The values forwarded so far to the histogram series `name`.
    fn samples(&self, name: &str) -> Vec<f64> {
        self.get(name).samples.lock().expect("not poisoned").clone()
    }
}

impl metrics::Recorder for Capture {
    fn describe_counter(&self, k: KeyName, u: Option<Unit>, _: SharedString) {
        self.described.lock().expect("not poisoned").push((k.as_str().to_owned(), u));
    }
    fn describe_gauge(&self, k: KeyName, u: Option<Unit>, _: SharedString) {
        self.described.lock().expect("not poisoned").push((k.as_str().to_owned(), u));
    }
    fn describe_histogram(&self, k: KeyName, u: Option<Unit>, _: SharedString) {
        self.described.lock().expect("not poisoned").push((k.as_str().to_owned(), u));
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

#[test]
fn forwards_totals_gauges_and_histogram_increments() {
    let registry = Registry::new();
    let cache = CacheMetrics::register(&registry, "users").expect("valid");
    let capture = Capture::default();
    let mut forward = MetricsFacadeRecorder::new();
    cache.hits.add(4);
    CacheMetrics::register_size_gauges(&registry, "users", Arc::new(|| 9), Arc::new(|| 90))
        .expect("valid");
    cache.record_load(true, Duration::from_millis(2));
    metrics::with_local_recorder(&capture, || registry.snapshot().report(&mut forward));
    cache.hits.add(1);
    cache.record_load(true, Duration::from_millis(40));
    metrics::with_local_recorder(&capture, || registry.snapshot().report(&mut forward));

    let hits = capture.get("strata_cache_hits_total{cache=users}");
    assert_eq!(hits.counter.load(Ordering::Relaxed), 5);
    assert_eq!(*capture.get("strata_cache_entries{cache=users}").gauge.lock().expect("ok"), 9.0);
    let samples = capture.samples("strata_cache_load_duration_seconds{cache=users}");
    // Each load forwarded exactly once, in seconds, within the histogram's error.
    assert_eq!(samples.len(), 2, "{samples:?}");
    for (got, exact) in samples.iter().zip([0.002, 0.040]) {
        assert!((got - exact).abs() <= exact * 0.032, "{got} vs {exact}");
    }
    let described = capture.described.lock().expect("ok");
    let once = described.iter().filter(|(n, _)| n == "strata_cache_hits_total").count();
    assert_eq!(once, 1, "each family is described once");
    assert!(
        described.contains(&("strata_cache_load_duration_seconds".to_owned(), Some(Unit::Seconds)))
    );
}

/// A series removed with `remove_series` and created again (a cache rebuilt under the same
/// name) starts from zero; the values recorded into the new series must still be forwarded,
/// even while its buckets hold fewer values than the old series' did.
#[test]
fn a_recreated_histogram_series_is_forwarded_from_zero() {
    let registry = Registry::new();
    let capture = Capture::default();
    let mut forward = MetricsFacadeRecorder::new();
    let first = CacheMetrics::register(&registry, "users").expect("valid");
    for _ in 0..3 {
        first.record_load(true, Duration::from_millis(2));
    }
    metrics::with_local_recorder(&capture, || registry.snapshot().report(&mut forward));
    drop(first);
    assert!(registry.remove_series("cache", "users") > 0);
    let second = CacheMetrics::register(&registry, "users").expect("valid");
    for _ in 0..2 {
        second.record_load(true, Duration::from_millis(2));
    }
    metrics::with_local_recorder(&capture, || registry.snapshot().report(&mut forward));
    let samples = capture.samples("strata_cache_load_duration_seconds{cache=users}");
    assert_eq!(samples.len(), 5, "three loads before the rebuild, two after: {samples:?}");
}
