//! Every canonical name follows the Prometheus conventions and Strata's own.

use std::collections::HashSet;
use strata_metrics::{names, MetricKind, Unit};

/// `^strata_[a-z_]+$`, checked by hand to avoid a regex dependency for one pattern.
fn strata_shaped(name: &str) -> bool {
    name.strip_prefix("strata_").is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

#[test]
fn shape_matcher_rejects_what_it_should() {
    for bad in ["strata_", "Strata_x", "strata_X", "strata_a1", "other_x", "strata-x", "strata_x y"]
    {
        assert!(!strata_shaped(bad), "{bad}");
    }
    assert!(strata_shaped("strata_cache_hits_total"));
}

#[test]
fn every_canonical_name_follows_conventions() {
    let mut seen = HashSet::new();
    for d in names::ALL {
        let n = d.name;
        assert!(seen.insert(n), "{n} is declared twice");
        assert!(strata_shaped(n), "{n} must match ^strata_[a-z_]+$");
        assert!(!n.contains("__") && !n.ends_with('_'), "{n} has an empty word");
        d.validate().unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(
            d.kind == MetricKind::Counter,
            n.ends_with("_total"),
            "{n}: only counters end in _total"
        );
        let stem = n.strip_suffix("_total").unwrap_or(n);
        assert_eq!(
            d.unit == Unit::Seconds,
            stem.ends_with("_seconds"),
            "{n}: durations end in _seconds"
        );
        assert_eq!(
            d.unit == Unit::Bytes,
            stem.ends_with("_bytes"),
            "{n}: sizes in bytes end in _bytes"
        );
        if n.contains("duration") || n.contains("latency") {
            assert_eq!(d.unit, Unit::Seconds, "{n} measures time, so its unit is seconds");
        }
        if d.kind == MetricKind::Histogram {
            assert!(!d.bounds.is_empty(), "{n} needs exposition bounds");
        }
        assert!(d.help.ends_with('.') && d.help.len() > 10, "{n}: help is one full sentence");
        let family = if n.starts_with("strata_cache_") {
            names::labels::CACHE
        } else if n.starts_with("strata_wal_") {
            names::labels::WAL
        } else if n.starts_with("strata_tier_") {
            names::labels::TIER
        } else {
            panic!("{n} belongs to no known subsystem")
        };
        assert_eq!(d.labels.first(), Some(&family), "{n}: the owner's label comes first");
    }
}

#[test]
fn the_catalogue_covers_issue_seven() {
    // The figures issue 7 asks for, by the name that carries each.
    let required = [
        "strata_cache_hits_total",
        "strata_cache_misses_total",
        "strata_cache_inserts_total",
        "strata_cache_updates_total",
        "strata_cache_removals_total",
        "strata_cache_evictions_total",
        "strata_cache_loads_total",
        "strata_cache_load_duration_seconds",
        "strata_cache_refreshes_total",
        "strata_cache_admission_rejections_total",
        "strata_cache_entries",
        "strata_cache_weighted_size",
        "strata_wal_appends_total",
        "strata_wal_appended_bytes_total",
        "strata_wal_fsync_duration_seconds",
        "strata_wal_checkpoint_duration_seconds",
        "strata_wal_recovery_duration_seconds",
        "strata_wal_recovered_records_total",
        "strata_wal_recovered_bytes_total",
        "strata_tier_errors_total",
        "strata_tier_timeouts_total",
        "strata_tier_circuit_breaker_state",
        "strata_tier_promotions_total",
        "strata_tier_writeback_queue_depth",
    ];
    let all: HashSet<&str> = names::ALL.iter().map(|d| d.name).collect();
    for name in required {
        assert!(all.contains(name), "{name} is missing from names::ALL");
    }
    assert!(names::CACHE_EVICTIONS.labels.contains(&names::labels::CAUSE));
}

#[test]
fn docs_list_every_canonical_name() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    for d in names::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", d.name)),
            "docs/metrics.md lacks a row for {}",
            d.name
        );
    }
}
