//! The registry: named families of labelled series, and the snapshots taken from it.
//!
//! Registration (rare, at start-up) takes a write lock; recording never touches the registry,
//! because callers hold `Arc` handles to the metrics themselves. A snapshot takes the read lock
//! only to clone the handles, then reads the values (and calls gauge functions) outside it, so a
//! gauge function may itself use the registry without deadlocking.

use crate::counter::Counter;
use crate::desc::{MetricDesc, MetricKind};
use crate::error::{Error, Result};
use crate::gauge::Gauge;
use crate::histogram::{Histogram, HistogramSnapshot, DEFAULT_PRECISION};
use crate::prometheus::TextEncoder;
use crate::recorder::Recorder;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

/// A function read at snapshot time for a gauge that the owner already tracks (an entry count
/// kept per shard, a queue's length), so that the hot path pays nothing for it.
pub type GaugeFn = Arc<dyn Fn() -> i64 + Send + Sync>;

#[derive(Clone)]
enum Metric {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    GaugeFn(GaugeFn),
    Histogram(Arc<Histogram>),
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Counter(c) => f.debug_tuple("Counter").field(&c.get()).finish(),
            Self::Gauge(g) => f.debug_tuple("Gauge").field(&g.get()).finish(),
            Self::GaugeFn(_) => f.write_str("GaugeFn"),
            Self::Histogram(h) => f.debug_tuple("Histogram").field(&h.precision()).finish(),
        }
    }
}

#[derive(Debug, Clone)]
struct Series {
    /// Label values, in the order of the family's `desc.labels`.
    values: Vec<String>,
    metric: Metric,
}

#[derive(Debug)]
struct Family {
    desc: MetricDesc,
    series: Vec<Series>,
}

/// A set of metric families, each with labelled series; the thing a Prometheus endpoint renders.
///
/// ```
/// use strata_metrics::{names, Registry};
/// let registry = Registry::new();
/// let hits = registry.counter(&names::CACHE_HITS, &[("cache", "users")])?;
/// hits.add(3);
/// let text = registry.render_prometheus();
/// assert!(text.contains("strata_cache_hits_total{cache=\"users\"} 3\n"));
/// # Ok::<(), strata_metrics::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Registry {
    families: RwLock<BTreeMap<&'static str, Family>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter of family `desc` with these labels, created at zero on first use. Asking
    /// again for the same labels returns the same counter.
    pub fn counter(&self, desc: &MetricDesc, labels: &[(&str, &str)]) -> Result<Arc<Counter>> {
        let metric = self.get_or_insert(desc, MetricKind::Counter, labels, || {
            Metric::Counter(Arc::new(Counter::new()))
        })?;
        match metric {
            Metric::Counter(c) => Ok(c),
            _ => Err(conflict(desc)),
        }
    }

    /// The gauge of family `desc` with these labels, created at zero on first use.
    pub fn gauge(&self, desc: &MetricDesc, labels: &[(&str, &str)]) -> Result<Arc<Gauge>> {
        let metric = self.get_or_insert(desc, MetricKind::Gauge, labels, || {
            Metric::Gauge(Arc::new(Gauge::new()))
        })?;
        match metric {
            Metric::Gauge(g) => Ok(g),
            // The series exists as a gauge function: a second owner cannot also set it.
            _ => Err(conflict(desc)),
        }
    }

    /// Registers `f` as the value of the gauge series with these labels, read at each snapshot.
    /// Replaces an earlier function for the same series (a cache rebuilt under the same name).
    /// `f` should be cheap and must not panic; it may hold a `Weak` to its owner and return
    /// zero once the owner is gone.
    pub fn gauge_fn(&self, desc: &MetricDesc, labels: &[(&str, &str)], f: GaugeFn) -> Result<()> {
        check_kind(desc, MetricKind::Gauge)?;
        let values = self.prepare(desc, labels)?;
        let mut families = self.families.write().unwrap_or_else(PoisonError::into_inner);
        let family = entry(&mut families, desc)?;
        match family.series.iter_mut().find(|s| s.values == values) {
            Some(Series { metric: metric @ Metric::GaugeFn(_), .. }) => {
                *metric = Metric::GaugeFn(f);
            }
            Some(_) => return Err(conflict(desc)),
            None => family.series.push(Series { values, metric: Metric::GaugeFn(f) }),
        }
        Ok(())
    }

    /// The histogram of family `desc` with these labels, at the default precision.
    pub fn histogram(&self, desc: &MetricDesc, labels: &[(&str, &str)]) -> Result<Arc<Histogram>> {
        self.histogram_with_precision(desc, labels, DEFAULT_PRECISION)
    }

    /// The histogram of family `desc` with these labels, created at `precision` on first use;
    /// an existing series keeps the precision it was created with.
    pub fn histogram_with_precision(
        &self,
        desc: &MetricDesc,
        labels: &[(&str, &str)],
        precision: u32,
    ) -> Result<Arc<Histogram>> {
        // Build outside the lock: it allocates, and a bad precision is reported before any
        // state changes.
        let fresh = Histogram::with_precision(precision)?;
        let metric = self.get_or_insert(desc, MetricKind::Histogram, labels, || {
            Metric::Histogram(Arc::new(fresh))
        })?;
        match metric {
            Metric::Histogram(h) => Ok(h),
            _ => Err(conflict(desc)),
        }
    }

    /// Removes every series carrying label `name` with `value` (for example all series of a
    /// cache that was dropped), returning how many were removed. Families left empty stay
    /// registered, so their descriptions remain reserved.
    pub fn remove_series(&self, name: &str, value: &str) -> usize {
        let mut families = self.families.write().unwrap_or_else(PoisonError::into_inner);
        let mut removed = 0;
        for family in families.values_mut() {
            let Some(pos) = family.desc.labels.iter().position(|l| *l == name) else { continue };
            let before = family.series.len();
            family.series.retain(|s| s.values.get(pos).map(String::as_str) != Some(value));
            removed += before - family.series.len();
        }
        removed
    }

    /// A consistent-enough copy of every series: each value is read once, but series are read
    /// one after another, not at one instant.
    pub fn snapshot(&self) -> Snapshot {
        let captured: Vec<(MetricDesc, Vec<Series>)> = {
            let families = self.families.read().unwrap_or_else(PoisonError::into_inner);
            families.values().map(|f| (f.desc, f.series.clone())).collect()
        };
        let families = captured
            .into_iter()
            .map(|(desc, series)| FamilySnapshot {
                desc,
                series: series
                    .into_iter()
                    .map(|s| SeriesSnapshot {
                        labels: desc
                            .labels
                            .iter()
                            .zip(s.values)
                            .map(|(name, value)| Label { name, value })
                            .collect(),
                        value: match &s.metric {
                            Metric::Counter(c) => Value::Counter(c.get()),
                            Metric::Gauge(g) => Value::Gauge(g.get()),
                            Metric::GaugeFn(f) => Value::Gauge(f()),
                            Metric::Histogram(h) => Value::Histogram(h.snapshot()),
                        },
                    })
                    .collect(),
            })
            .collect();
        Snapshot { families }
    }

    /// Renders every series in the Prometheus text exposition format, version 0.0.4.
    pub fn render_prometheus(&self) -> String {
        self.snapshot().render_prometheus()
    }

    /// Checks `desc` and orders `labels` as the family declares them.
    fn prepare(&self, desc: &MetricDesc, labels: &[(&str, &str)]) -> Result<Vec<String>> {
        desc.validate()?;
        let bad = |reason: String| Error::InvalidLabels { metric: desc.name.to_owned(), reason };
        if labels.len() != desc.labels.len() {
            return Err(bad(format!(
                "expected labels {:?}, got {:?}",
                desc.labels,
                labels.iter().map(|(k, _)| *k).collect::<Vec<_>>()
            )));
        }
        desc.labels
            .iter()
            .map(|name| {
                let mut matching = labels.iter().filter(|(k, _)| k == name);
                match (matching.next(), matching.next()) {
                    (Some((_, v)), None) => Ok((*v).to_owned()),
                    (None, _) => Err(bad(format!("label {name:?} is missing"))),
                    (Some(_), Some(_)) => Err(bad(format!("label {name:?} is given twice"))),
                }
            })
            .collect()
    }

    fn get_or_insert(
        &self,
        desc: &MetricDesc,
        kind: MetricKind,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Metric,
    ) -> Result<Metric> {
        check_kind(desc, kind)?;
        let values = self.prepare(desc, labels)?;
        let mut families = self.families.write().unwrap_or_else(PoisonError::into_inner);
        let family = entry(&mut families, desc)?;
        if let Some(s) = family.series.iter().find(|s| s.values == values) {
            return Ok(s.metric.clone());
        }
        let metric = make();
        family.series.push(Series { values, metric: metric.clone() });
        Ok(metric)
    }
}

fn check_kind(desc: &MetricDesc, requested: MetricKind) -> Result<()> {
    if desc.kind == requested {
        Ok(())
    } else {
        Err(Error::WrongKind {
            name: desc.name.to_owned(),
            actual: desc.kind.as_str(),
            requested: requested.as_str(),
        })
    }
}

fn conflict(desc: &MetricDesc) -> Error {
    Error::Conflict { name: desc.name.to_owned() }
}

/// The series suffixes a histogram family writes besides its name.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// The family for `desc`, created if absent; an error if the name is taken by another
/// description, or if the new family's samples would share names with a histogram's
/// `_bucket`, `_sum` or `_count` series (the exposition would then hold duplicate series,
/// which a Prometheus server drops).
fn entry<'a>(
    families: &'a mut BTreeMap<&'static str, Family>,
    desc: &MetricDesc,
) -> Result<&'a mut Family> {
    if !families.contains_key(desc.name) {
        let shadows_a_histogram = HISTOGRAM_SUFFIXES.iter().any(|suffix| {
            desc.name
                .strip_suffix(suffix)
                .and_then(|stem| families.get(stem))
                .is_some_and(|f: &Family| f.desc.kind == MetricKind::Histogram)
        });
        let shadowed_by_a_family = desc.kind == MetricKind::Histogram
            && HISTOGRAM_SUFFIXES
                .iter()
                .any(|suffix| families.contains_key(format!("{}{suffix}", desc.name).as_str()));
        if shadows_a_histogram || shadowed_by_a_family {
            return Err(Error::InvalidName {
                name: desc.name.to_owned(),
                reason:
                    "its series would collide with a histogram's _bucket, _sum or _count series",
            });
        }
    }
    let family =
        families.entry(desc.name).or_insert_with(|| Family { desc: *desc, series: Vec::new() });
    if family.desc == *desc {
        Ok(family)
    } else {
        Err(conflict(desc))
    }
}

/// One label of a series in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The label's name, from the family's description.
    pub name: &'static str,
    /// The label's value.
    pub value: String,
}

/// The value of one series at snapshot time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter's total.
    Counter(u64),
    /// A gauge's value.
    Gauge(i64),
    /// A histogram's buckets, count and sum (in recorded units: nanoseconds for seconds).
    Histogram(HistogramSnapshot),
}

/// One series of a family in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSnapshot {
    /// The series' labels, in the family's declared order.
    pub labels: Vec<Label>,
    /// Its value.
    pub value: Value,
}

impl SeriesSnapshot {
    /// Whether the series carries every `(name, value)` pair in `filter`.
    pub fn matches(&self, filter: &[(&str, &str)]) -> bool {
        filter.iter().all(|(k, v)| self.labels.iter().any(|l| l.name == *k && l.value == *v))
    }
}

/// One family in a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    /// The family's description.
    pub desc: MetricDesc,
    /// Its series, in registration order.
    pub series: Vec<SeriesSnapshot>,
}

/// A copy of a registry's figures, sorted by family name: render it, query it, or report it
/// to a [`Recorder`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    families: Vec<FamilySnapshot>,
}

impl Snapshot {
    /// The families, sorted by name.
    pub fn families(&self) -> &[FamilySnapshot] {
        &self.families
    }

    /// The series of family `name` carrying every pair in `filter`.
    pub fn series(&self, name: &str, filter: &[(&str, &str)]) -> Vec<&SeriesSnapshot> {
        self.families
            .iter()
            .filter(|f| f.desc.name == name)
            .flat_map(|f| f.series.iter())
            .filter(|s| s.matches(filter))
            .collect()
    }

    /// The sum of the counters of family `name` carrying every pair in `filter` (zero if none).
    pub fn counter_sum(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        self.series(name, filter)
            .into_iter()
            .filter_map(|s| match s.value {
                Value::Counter(n) => Some(n),
                _ => None,
            })
            .fold(0u64, u64::wrapping_add)
    }

    /// The value of the first gauge of family `name` carrying every pair in `filter`.
    pub fn gauge(&self, name: &str, filter: &[(&str, &str)]) -> Option<i64> {
        self.series(name, filter).into_iter().find_map(|s| match s.value {
            Value::Gauge(v) => Some(v),
            _ => None,
        })
    }

    /// The first histogram of family `name` carrying every pair in `filter`.
    pub fn histogram(&self, name: &str, filter: &[(&str, &str)]) -> Option<&HistogramSnapshot> {
        self.series(name, filter).into_iter().find_map(|s| match &s.value {
            Value::Histogram(h) => Some(h),
            _ => None,
        })
    }

    /// Hands every non-empty family to `recorder`: `describe` once, then each series.
    pub fn report<R: Recorder + ?Sized>(&self, recorder: &mut R) {
        for family in self.families.iter().filter(|f| !f.series.is_empty()) {
            recorder.describe(&family.desc);
            for s in &family.series {
                match &s.value {
                    Value::Counter(n) => recorder.counter(&family.desc, &s.labels, *n),
                    Value::Gauge(v) => recorder.gauge(&family.desc, &s.labels, *v),
                    Value::Histogram(h) => recorder.histogram(&family.desc, &s.labels, h),
                }
            }
        }
    }

    /// Renders the snapshot in the Prometheus text exposition format, version 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut encoder = TextEncoder::new();
        self.report(&mut encoder);
        encoder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    #[test]
    fn same_labels_share_a_series_in_any_order() {
        let r = Registry::new();
        let a = r.counter(&names::CACHE_EVICTIONS, &[("cache", "c"), ("cause", "size")]).unwrap();
        let b = r.counter(&names::CACHE_EVICTIONS, &[("cause", "size"), ("cache", "c")]).unwrap();
        a.incr();
        b.incr();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(r.snapshot().counter_sum("strata_cache_evictions_total", &[]), 2);
    }

    #[test]
    fn registration_errors() {
        let r = Registry::new();
        let err = |res: Result<Arc<Counter>>| res.err().map(|e| std::mem::discriminant(&e));
        let invalid = Some(std::mem::discriminant(&Error::InvalidLabels {
            metric: String::new(),
            reason: String::new(),
        }));
        assert_eq!(err(r.counter(&names::CACHE_HITS, &[])), invalid);
        assert_eq!(err(r.counter(&names::CACHE_HITS, &[("tier", "x")])), invalid);
        assert_eq!(err(r.counter(&names::CACHE_HITS, &[("cache", "x"), ("cache", "y")])), invalid);
        assert!(matches!(
            r.counter(&names::CACHE_ENTRIES, &[("cache", "x")]),
            Err(Error::WrongKind { .. })
        ));
        let clash = MetricDesc { help: "another meaning", ..names::CACHE_HITS };
        r.counter(&names::CACHE_HITS, &[("cache", "x")]).unwrap();
        assert!(matches!(r.counter(&clash, &[("cache", "x")]), Err(Error::Conflict { .. })));
        assert!(matches!(
            r.histogram_with_precision(&names::CACHE_LOAD_DURATION, &[("cache", "x")], 0),
            Err(Error::InvalidPrecision { .. })
        ));
    }

    #[test]
    fn gauge_fn_is_read_at_snapshot_and_replaceable() {
        let r = Registry::new();
        let labels = [("cache", "c")];
        r.gauge_fn(&names::CACHE_ENTRIES, &labels, Arc::new(|| 7)).unwrap();
        assert_eq!(r.snapshot().gauge("strata_cache_entries", &labels), Some(7));
        r.gauge_fn(&names::CACHE_ENTRIES, &labels, Arc::new(|| 9)).unwrap();
        assert_eq!(r.snapshot().gauge("strata_cache_entries", &labels), Some(9));
        assert!(matches!(r.gauge(&names::CACHE_ENTRIES, &labels), Err(Error::Conflict { .. })));
        // A gauge function may use the registry: the snapshot calls it outside the lock.
        let r = Arc::new(Registry::new());
        let weak = Arc::downgrade(&r);
        r.gauge_fn(
            &names::CACHE_ENTRIES,
            &labels,
            Arc::new(move || {
                // Registration takes the write lock, so this would deadlock under the read lock.
                let hits = weak.upgrade().and_then(|r| r.counter(&names::CACHE_HITS, &labels).ok());
                hits.map_or(-1, |c| c.get() as i64)
            }),
        )
        .unwrap();
        r.counter(&names::CACHE_HITS, &labels).unwrap().add(4);
        assert_eq!(r.snapshot().gauge("strata_cache_entries", &labels), Some(4));
    }

    #[test]
    fn remove_series_drops_one_cache() {
        let r = Registry::new();
        for cache in ["a", "b"] {
            r.counter(&names::CACHE_HITS, &[("cache", cache)]).unwrap().incr();
            r.gauge(&names::CACHE_ENTRIES, &[("cache", cache)]).unwrap().set(1);
        }
        r.counter(&names::TIER_HITS, &[("tier", "a")]).unwrap();
        assert_eq!(r.remove_series("cache", "a"), 2);
        let snap = r.snapshot();
        assert_eq!(snap.counter_sum("strata_cache_hits_total", &[]), 1);
        assert_eq!(snap.series("strata_tier_hits_total", &[("tier", "a")]).len(), 1);
    }
}
