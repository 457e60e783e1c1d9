//! The Recorder contract: describe once per family, then every series with cumulative totals.

use std::sync::Arc;
use std::time::Duration;
use strata_metrics::{
    CacheMetrics, HistogramSnapshot, Label, MetricDesc, NoopRecorder, Recorder, Registry,
};

#[derive(Default)]
struct Collect {
    events: Vec<String>,
}

fn labels(l: &[Label]) -> String {
    l.iter().map(|l| format!("{}={}", l.name, l.value)).collect::<Vec<_>>().join(",")
}

impl Recorder for Collect {
    fn describe(&mut self, desc: &MetricDesc) {
        self.events.push(format!("describe {}", desc.name));
    }
    fn counter(&mut self, desc: &MetricDesc, l: &[Label], total: u64) {
        self.events.push(format!("counter {}{{{}}} {total}", desc.name, labels(l)));
    }
    fn gauge(&mut self, desc: &MetricDesc, l: &[Label], value: i64) {
        self.events.push(format!("gauge {}{{{}}} {value}", desc.name, labels(l)));
    }
    fn histogram(&mut self, desc: &MetricDesc, l: &[Label], h: &HistogramSnapshot) {
        self.events.push(format!(
            "histogram {}{{{}}} {} {}",
            desc.name,
            labels(l),
            h.count(),
            h.sum()
        ));
    }
}

#[test]
fn report_describes_then_lists_series_with_totals() {
    let registry = Registry::new();
    let m = CacheMetrics::register(&registry, "c").expect("valid");
    m.hits.add(5);
    m.record_load(false, Duration::from_nanos(700));
    CacheMetrics::register_size_gauges(&registry, "c", Arc::new(|| 3), Arc::new(|| 30))
        .expect("valid");
    let mut rec = Collect::default();
    registry.snapshot().report(&mut rec);
    let ev = &rec.events;
    let pos = |s: &str| {
        ev.iter().position(|e| e == s).unwrap_or_else(|| panic!("{s} missing from {ev:#?}"))
    };
    assert!(
        pos("describe strata_cache_hits_total") + 1
            == pos("counter strata_cache_hits_total{cache=c} 5")
    );
    pos("counter strata_cache_loads_total{cache=c,result=failure} 1");
    pos("counter strata_cache_loads_total{cache=c,result=success} 0");
    pos("gauge strata_cache_entries{cache=c} 3");
    pos("histogram strata_cache_load_duration_seconds{cache=c} 1 700");
    // Every family is described exactly once, before its first series.
    let describes = ev.iter().filter(|e| e.starts_with("describe ")).count();
    assert_eq!(describes, registry.snapshot().families().len());
    // Reporting is a pure read: a second report sees the same figures.
    let mut again = Collect::default();
    registry.snapshot().report(&mut again);
    assert_eq!(&again.events, ev);
    // The no-op recorder accepts the same calls (and, dyn-dispatched, still compiles away to
    // nothing observable).
    let noop: &mut dyn Recorder = &mut NoopRecorder;
    registry.snapshot().report(noop);
}
