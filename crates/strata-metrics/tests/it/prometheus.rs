//! The rendered text parses with an independent parser (`prometheus-parse`) and obeys the
//! 0.0.4 grammar line by line (checked here strictly, since that parser skips what it does not
//! understand).

use prometheus_parse::{LineInfo, Scrape, Value as Parsed};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_metrics::{
    CacheMetrics, CircuitState, EvictionCause, Registry, TierMetrics, WalMetrics, CONTENT_TYPE,
};

/// A registry with every canonical family populated by a small deterministic workload.
fn populated() -> (Registry, CacheMetrics) {
    let registry = Registry::new();
    let cache = CacheMetrics::register(&registry, "users").expect("valid");
    let tier = TierMetrics::register(&registry, "redis").expect("valid");
    let wal = WalMetrics::register(&registry, "main").expect("valid");
    for i in 0..1_000u64 {
        if i % 4 == 0 { &cache.misses } else { &cache.hits }.incr();
        if i % 10 == 0 {
            cache.record_load(i % 30 != 0, Duration::from_micros(i * 7 + 3));
        }
        if i % 50 == 0 {
            cache.record_eviction(if i % 100 == 0 {
                EvictionCause::Size
            } else {
                EvictionCause::Expired
            });
        }
        tier.get.duration.record_duration(Duration::from_micros(200 + i));
        wal.record_append(64 + i % 16);
    }
    wal.fsync_duration.record_duration(Duration::from_millis(3));
    tier.get.timeouts.incr();
    tier.set_circuit_state(CircuitState::HalfOpen);
    tier.writeback_queue_depth.set(12);
    CacheMetrics::register_size_gauges(&registry, "users", Arc::new(|| 750), Arc::new(|| 7_500))
        .expect("valid");
    (registry, cache)
}

/// The strict line-by-line check: HELP then TYPE before a family's samples, sample names that
/// belong to the declared family, label syntax, numeric values, and for histograms cumulative
/// buckets ending in `+Inf` equal to `_count`.
fn check_grammar(text: &str) {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut family: Option<(String, String)> = None; // (name, type)
    let mut help_for: Option<String> = None;
    let mut last_bucket: HashMap<String, (f64, f64)> = HashMap::new(); // labels -> (le, count)
    let mut inf_count: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a name and a text");
            assert!(!help.is_empty());
            help_for = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert_eq!(help_for.as_deref(), Some(name), "HELP precedes TYPE for {name}");
            assert!(["counter", "gauge", "histogram"].contains(&ty), "{ty}");
            family = Some((name.to_owned(), ty.to_owned()));
            last_bucket.clear();
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (fam, ty) = family.as_ref().expect("a sample follows a TYPE line");
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("numeric value in {line}"));
        assert!(value >= 0.0 || ty == "gauge", "{line}");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("labels close with }")),
            None => (series, ""),
        };
        let mut le = None;
        let mut other = Vec::new();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("label is k=v");
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{k}");
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).expect("quoted value");
            if k == "le" {
                le = Some(v.to_owned());
            } else {
                other.push(pair);
            }
        }
        let key = other.join(",");
        match ty.as_str() {
            "histogram" => {
                let suffix = name.strip_prefix(fam.as_str()).expect("sample of its family");
                match suffix {
                    "_bucket" => {
                        let le = le.expect("bucket has le");
                        let bound = if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().expect("le parses")
                        };
                        if let Some(&(prev_le, prev_count)) = last_bucket.get(&key) {
                            assert!(bound > prev_le, "le increases in {line}");
                            assert!(value >= prev_count, "buckets are cumulative in {line}");
                        }
                        last_bucket.insert(key.clone(), (bound, value));
                        if bound.is_infinite() {
                            inf_count.insert(format!("{fam}{{{key}}}"), value);
                        }
                    }
                    "_sum" => assert!(le.is_none()),
                    "_count" => {
                        let inf = inf_count
                            .get(&format!("{fam}{{{key}}}"))
                            .expect("+Inf bucket before _count");
                        assert_eq!(*inf, value, "+Inf bucket equals _count for {line}");
                    }
                    other => panic!("unexpected histogram sample suffix {other:?}"),
                }
            }
            _ => {
                assert_eq!(name, fam, "sample belongs to its family");
                assert!(le.is_none());
            }
        }
    }
}

#[test]
fn text_parses_with_prometheus_parse() {
    let (registry, _) = populated();
    let text = registry.render_prometheus();
    check_grammar(&text);
    for line in text.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty),
            "unparsed: {line}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let find = |metric: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && s.labels.get(label.0) == Some(label.1))
            .unwrap_or_else(|| panic!("{metric} missing"))
    };
    assert_eq!(find("strata_cache_hits_total", ("cache", "users")).value, Parsed::Counter(750.0));
    assert_eq!(find("strata_cache_misses_total", ("cache", "users")).value, Parsed::Counter(250.0));
    assert_eq!(
        find("strata_cache_evictions_total", ("cause", "expired")).value,
        Parsed::Counter(10.0)
    );
    assert_eq!(
        find("strata_tier_circuit_breaker_state", ("tier", "redis")).value,
        Parsed::Gauge(1.0)
    );
    assert_eq!(find("strata_cache_entries", ("cache", "users")).value, Parsed::Gauge(750.0));
    let Parsed::Histogram(buckets) =
        &find("strata_cache_load_duration_seconds", ("cache", "users")).value
    else {
        panic!("load duration is a histogram")
    };
    // 100 loads of 3 µs to 6.933 ms: none below 1 µs, all below 10 ms, all at +Inf.
    let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
    assert_eq!(at(0.000_001), Some(0.0));
    assert_eq!(at(0.01), Some(100.0));
    assert_eq!(at(f64::INFINITY), Some(100.0));
    assert!(scrape.docs.contains_key("strata_wal_fsync_duration_seconds"));
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
}

#[test]
fn figures_change_between_renders() {
    let (registry, cache) = populated();
    let before = registry.render_prometheus();
    cache.hits.add(10);
    let after = registry.render_prometheus();
    assert!(before.contains("strata_cache_hits_total{cache=\"users\"} 750\n"));
    assert!(after.contains("strata_cache_hits_total{cache=\"users\"} 760\n"));
}

/// A family whose name is a histogram's name plus `_bucket`, `_sum` or `_count` would write
/// the same series twice (a gauge `x_count{wal="main"}` beside histogram `x`'s own
/// `x_count{wal="main"}`), which a Prometheus server drops as duplicate samples. Registration
/// must refuse it, in either order.
#[test]
fn a_family_shadowing_a_histogram_series_is_refused() {
    use strata_metrics::{names, Error, MetricDesc, MetricKind, Unit};
    const SHADOW: MetricDesc = MetricDesc {
        name: "strata_wal_fsync_duration_seconds_count",
        help: "A gauge whose samples would collide with the histogram's _count series.",
        kind: MetricKind::Gauge,
        unit: Unit::None,
        labels: &["wal"],
        bounds: &[],
    };
    let labels = [("wal", "main")];
    let histogram_first = Registry::new();
    histogram_first.histogram(&names::WAL_FSYNC_DURATION, &labels).expect("valid");
    assert!(matches!(histogram_first.gauge(&SHADOW, &labels), Err(Error::InvalidName { .. })));
    let gauge_first = Registry::new();
    gauge_first.gauge(&SHADOW, &labels).expect("valid on its own");
    assert!(matches!(
        gauge_first.histogram(&names::WAL_FSYNC_DURATION, &labels),
        Err(Error::InvalidName { .. })
    ));
    // Neither registry renders a series twice.
    for r in [&histogram_first, &gauge_first] {
        let text = r.render_prometheus();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, _) = line.rsplit_once(' ').expect("sample has a value");
            assert!(seen.insert(series.to_owned()), "duplicate series {series} in\n{text}");
        }
    }
}
