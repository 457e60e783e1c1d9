//! Histogram percentiles against a sorted reference, merging, and bucket bounds, by proptest.

use proptest::prelude::*;
use strata_metrics::{Histogram, HistogramSnapshot, MAX_PRECISION, MIN_PRECISION};

/// Values spread over many orders of magnitude: a random exponent, then a random mantissa, so
/// both the exact low buckets and the widest high ones are exercised.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..64,
        (0u32..64, any::<u64>()).prop_map(|(bits, m)| if bits == 0 { 0 } else { m >> (64 - bits) }),
        1_000u64..10_000_000,
    ]
}

/// The nearest-rank quantile of sorted `v`: the `r`-th smallest for the smallest `r` with
/// `r / n >= q`, at least the first (found by search, not by the formula the crate uses).
fn reference_quantile(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len();
    let rank = (1..=n).find(|&r| r as f64 / n as f64 >= q).unwrap_or(n);
    sorted[rank - 1]
}

fn record_all(precision: u32, values: &[u64]) -> HistogramSnapshot {
    let h = Histogram::with_precision(precision).expect("precision in range");
    for &v in values {
        h.record(v);
    }
    h.snapshot()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn quantiles_are_within_the_stated_error(
        values in prop::collection::vec(value(), 1..2_000),
        precision in MIN_PRECISION..=MAX_PRECISION,
        qs in prop::collection::vec(0.0f64..=1.0, 1..8),
    ) {
        let snap = record_all(precision, &values);
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let bound = snap.relative_error();
        prop_assert_eq!(bound, 1.0 / f64::from(1u32 << (precision + 1)));
        for q in qs.into_iter().chain([0.0, 0.5, 0.9, 0.99, 0.999, 1.0]) {
            let exact = reference_quantile(&sorted, q);
            let got = snap.quantile(q).expect("valid q").expect("not empty");
            let err = got.abs_diff(exact) as f64;
            prop_assert!(
                err <= exact as f64 * bound,
                "q={} exact={} got={} precision={}", q, exact, got, precision
            );
        }
        prop_assert_eq!(snap.count(), values.len() as u64);
        let exact_sum = values.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        prop_assert_eq!(snap.sum(), exact_sum);
    }

    #[test]
    fn merge_equals_recording_together(
        a in prop::collection::vec(value(), 0..500),
        b in prop::collection::vec(value(), 0..500),
    ) {
        let p = strata_metrics::DEFAULT_PRECISION;
        let mut merged = record_all(p, &a);
        merged.merge(&record_all(p, &b)).expect("same precision");
        let together: Vec<u64> = a.iter().chain(b.iter()).copied().collect();
        prop_assert_eq!(&merged, &record_all(p, &together));
        let live = Histogram::new();
        live.merge(&record_all(p, &a)).expect("same precision");
        live.merge(&record_all(p, &b)).expect("same precision");
        prop_assert_eq!(live.snapshot(), merged);
    }

    #[test]
    fn cumulative_counts_bracket_the_truth(
        values in prop::collection::vec(value(), 1..1_000),
        bound in value(),
    ) {
        let snap = record_all(strata_metrics::DEFAULT_PRECISION, &values);
        let reported = snap.count_at_or_below(bound);
        let truly_below = values.iter().filter(|&&v| v <= bound).count() as u64;
        // Never counts a value above the bound...
        prop_assert!(reported <= truly_below);
        // ...and misses only values within one bucket width (twice the quantile error) below it.
        let floor = bound as f64 * (1.0 - 2.0 * snap.relative_error());
        let certainly_below = values.iter().filter(|&&v| (v as f64) < floor).count() as u64;
        prop_assert!(reported >= certainly_below, "reported={} certain={}", reported, certainly_below);
    }
}

/// The nearest rank of `q` among `n` samples is the smallest `r` with `r / n >= q`. A product
/// `q * n` that rounds just above an integer (0.07 * 100 is 7.000000000000001 in floating
/// point) must not push the quantile one sample up.
#[test]
fn quantile_rank_survives_floating_point_rounding() {
    // Values below 2^11 have buckets of their own at precision 10, so quantiles are exact.
    let snap = record_all(MAX_PRECISION, &(1..=100).collect::<Vec<u64>>());
    for (q, expected) in [(0.07, 7), (0.14, 14), (0.28, 28), (0.55, 55), (0.56, 56), (0.5, 50)] {
        assert_eq!(snap.quantile(q).expect("q in range"), Some(expected), "q = {q}");
    }
}
