//! A log-linear histogram in fixed memory, recorded lock-free and allocation-free.
//!
//! # Layout
//!
//! With precision `p` there are `P = 2^p` sub-buckets per power of two. Values below `2P` each
//! have a bucket of their own (exact). A value `v >= 2P` with `b` significant bits lies in the
//! range `[2^(b-1), 2^b)`, which is split into `P` linear sub-buckets of width
//! `2^(b-1-p)`; its index is `shift * P + (v >> shift)` with `shift = b - 1 - p`. The whole
//! `u64` range therefore needs `(65 - p) * P` buckets (976 buckets, 7.6 KiB, at the default
//! precision 4), allocated once at construction, plus a 2.1 KiB striped sum.
//!
//! # Error bound
//!
//! A bucket of width `w = 2^shift` (`shift >= 1`) starts at `low >= P * w`. Reporting its
//! midpoint `low + (w - 1) / 2` is off by at most `w / 2` from any value in it, hence by at most
//! `1 / (2P) = 2^-(p+1)` relative to the value: 3.125 % at precision 4. Buckets of width one
//! are exact. [`HistogramSnapshot::quantile`] returns that midpoint for the bucket holding the
//! nearest-rank sample, so a quantile is within `2^-(p+1)` of the true sample quantile.
//!
//! # Atomic invariants
//!
//! Each bucket only grows, by `Relaxed` `fetch_add`. The sum is a striped [`Counter`], so
//! adding to it is a plain load and store on the caller's own line (see the counter's
//! ownership protocol); it wraps after 2^64, i.e. 584 years of nanoseconds. The count is not
//! stored: it is the sum of the buckets, so it can never disagree with them. A snapshot taken while values are recorded may include a value's
//! bucket but not yet its sum (or the reverse); once writers stop, a snapshot is exact.

use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::sync::{AtomicU64, Ordering};
use std::time::Duration;

/// The smallest supported precision (two sub-buckets per power of two, 25 % error).
pub const MIN_PRECISION: u32 = 1;
/// The largest supported precision (1024 sub-buckets, 0.05 % error, 440 KiB per histogram).
pub const MAX_PRECISION: u32 = 10;
/// The default precision: 16 sub-buckets per power of two, 3.125 % error, 7.6 KiB.
pub const DEFAULT_PRECISION: u32 = 4;

/// The number of buckets needed to cover all of `u64` at precision `p`.
const fn bucket_count(p: u32) -> usize {
    (65 - p as usize) << p
}

/// The bucket holding `v`. Branch-free: `shift` is zero for the exact range.
#[inline]
fn bucket_index(v: u64, p: u32) -> usize {
    let bits = u64::BITS - v.leading_zeros();
    let shift = bits.saturating_sub(p + 1);
    ((u64::from(shift) << p) + (v >> shift)) as usize
}

/// The lowest value and the width of bucket `i` at precision `p`.
fn bucket_bounds(i: usize, p: u32) -> (u64, u64) {
    let sub = 1usize << p;
    if i < sub {
        return (i as u64, 1);
    }
    let shift = (i >> p) - 1;
    let mantissa = (i & (sub - 1)) + sub;
    ((mantissa as u64) << shift, 1u64 << shift)
}

/// The value reported for bucket `i`: its midpoint, rounded down.
fn bucket_midpoint(i: usize, p: u32) -> u64 {
    let (low, width) = bucket_bounds(i, p);
    low + (width - 1) / 2
}

/// The highest value bucket `i` holds.
fn bucket_high(i: usize, p: u32) -> u64 {
    let (low, width) = bucket_bounds(i, p);
    low + (width - 1)
}

fn check_precision(p: u32) -> Result<()> {
    if (MIN_PRECISION..=MAX_PRECISION).contains(&p) {
        Ok(())
    } else {
        Err(Error::InvalidPrecision { precision: p, min: MIN_PRECISION, max: MAX_PRECISION })
    }
}

/// A latency (or size) histogram with log-linear buckets over all of `u64`.
///
/// Durations are recorded in nanoseconds; the Prometheus renderer converts them to seconds for
/// families whose unit is [`Unit::Seconds`](crate::Unit::Seconds).
///
/// ```
/// use std::time::Duration;
/// let h = strata_metrics::Histogram::new();
/// for ms in 1..=100 {
///     h.record_duration(Duration::from_millis(ms));
/// }
/// let snap = h.snapshot();
/// assert_eq!(snap.count(), 100);
/// let p99 = snap.quantile(0.99)?.expect("not empty");
/// let exact = 99_000_000.0;
/// assert!((p99 as f64 - exact).abs() <= exact * snap.relative_error());
/// # Ok::<(), strata_metrics::Error>(())
/// ```
#[derive(Debug)]
pub struct Histogram {
    precision: u32,
    buckets: Box<[AtomicU64]>,
    sum: Counter,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// A histogram at the default precision ([`DEFAULT_PRECISION`]).
    pub fn new() -> Self {
        Self::build(DEFAULT_PRECISION)
    }

    /// A histogram with `2^precision` sub-buckets per power of two; fails outside
    /// [`MIN_PRECISION`]`..=`[`MAX_PRECISION`].
    pub fn with_precision(precision: u32) -> Result<Self> {
        check_precision(precision)?;
        Ok(Self::build(precision))
    }

    fn build(precision: u32) -> Self {
        let buckets = (0..bucket_count(precision)).map(|_| AtomicU64::new(0)).collect();
        Self { precision, buckets, sum: Counter::new() }
    }

    /// The precision `p`: `2^p` sub-buckets per power of two.
    pub fn precision(&self) -> u32 {
        self.precision
    }

    /// The largest relative error of a reported value: `2^-(p+1)`.
    pub fn relative_error(&self) -> f64 {
        relative_error(self.precision)
    }

    /// Records one value. Lock-free and allocation-free: one relaxed `fetch_add` on the bucket
    /// and a striped add to the sum.
    #[inline]
    pub fn record(&self, v: u64) {
        // The index is in range for every u64 by construction; `get` keeps a mistake from
        // ever becoming a panic on the hot path.
        if let Some(bucket) = self.buckets.get(bucket_index(v, self.precision)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.add(v);
    }

    /// Records a duration in nanoseconds, saturating at `u64::MAX` (584 years).
    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every bucket and the sum of `other` into `self`, as if its values had been recorded
    /// here. Fails if the precisions differ.
    pub fn merge(&self, other: &HistogramSnapshot) -> Result<()> {
        if other.precision != self.precision {
            return Err(Error::PrecisionMismatch { ours: self.precision, theirs: other.precision });
        }
        for (dst, &n) in self.buckets.iter().zip(other.counts.iter()) {
            if n != 0 {
                dst.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.sum.add(other.sum);
        Ok(())
    }

    /// A copy of the current figures. Allocates one vector of the bucket count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let count = counts.iter().fold(0u64, |a, &n| a.wrapping_add(n));
        HistogramSnapshot { precision: self.precision, counts, count, sum: self.sum.get() }
    }
}

fn relative_error(p: u32) -> f64 {
    1.0 / f64::from(1u32 << (p + 1))
}

/// A point-in-time copy of a [`Histogram`]: mergeable, queryable, renderable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    precision: u32,
    counts: Vec<u64>,
    count: u64,
    sum: u64,
}

/// One non-empty bucket of a snapshot: values in `low..=high` were seen `count` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// The lowest value the bucket holds.
    pub low: u64,
    /// The highest value the bucket holds.
    pub high: u64,
    /// How many values fell in it.
    pub count: u64,
}

impl HistogramSnapshot {
    /// An empty snapshot at `precision`, to merge others into.
    pub fn empty(precision: u32) -> Result<Self> {
        check_precision(precision)?;
        Ok(Self { precision, counts: vec![0; bucket_count(precision)], count: 0, sum: 0 })
    }

    /// The precision of the histogram it was taken from.
    pub fn precision(&self) -> u32 {
        self.precision
    }

    /// The largest relative error of a reported value: `2^-(p+1)`.
    pub fn relative_error(&self) -> f64 {
        relative_error(self.precision)
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The exact sum of the recorded values (wrapping after 2^64).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// The exact mean, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at quantile `q` (nearest rank: the `ceil(q * count)`-th smallest value, at
    /// least the first), reported as its bucket's midpoint, so within
    /// [`relative_error`](Self::relative_error) of the true sample. `None` when empty; an error
    /// when `q` is outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Result<Option<u64>> {
        if !(0.0..=1.0).contains(&q) {
            return Err(Error::InvalidQuantile(q));
        }
        if self.count == 0 {
            return Ok(None);
        }
        let rank = nearest_rank(q, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return Ok(Some(bucket_midpoint(i, self.precision)));
            }
        }
        // Only reachable if the buckets were read mid-update and sum to less than `count`,
        // which cannot happen since `count` is computed from them; the last bucket is the
        // honest answer anyway.
        Ok(self.counts.iter().rposition(|&n| n > 0).map(|i| bucket_midpoint(i, self.precision)))
    }

    /// How many values are certainly at most `bound`: the counts of every bucket whose highest
    /// value is at most `bound`. A bucket straddling `bound` is left out, so the result
    /// undercounts only values within one bucket width (`2^-p` relative) below `bound`.
    pub fn count_at_or_below(&self, bound: u64) -> u64 {
        let mut total = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if bucket_high(i, self.precision) > bound {
                break;
            }
            total = total.wrapping_add(n);
        }
        total
    }

    /// [`count_at_or_below`](Self::count_at_or_below) for each of `bounds` (ascending), in
    /// one pass over the buckets; an out-of-order bound gets the count of the bound before it.
    pub fn cumulative_counts(&self, bounds: &[u64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds.len());
        let mut total = 0u64;
        let mut i = 0;
        for &bound in bounds {
            while i < self.counts.len() && bucket_high(i, self.precision) <= bound {
                total = total.wrapping_add(self.counts[i]);
                i += 1;
            }
            out.push(total);
        }
        out
    }

    /// The non-empty buckets, lowest first.
    pub fn buckets(&self) -> impl Iterator<Item = Bucket> + '_ {
        self.counts.iter().enumerate().filter(|(_, &n)| n > 0).map(|(i, &n)| {
            let (low, width) = bucket_bounds(i, self.precision);
            Bucket { low, high: low + (width - 1), count: n }
        })
    }

    /// Adds `other` into `self`. Fails if the precisions differ.
    pub fn merge(&mut self, other: &HistogramSnapshot) -> Result<()> {
        if other.precision != self.precision {
            return Err(Error::PrecisionMismatch { ours: self.precision, theirs: other.precision });
        }
        for (dst, &n) in self.counts.iter_mut().zip(other.counts.iter()) {
            *dst = dst.wrapping_add(n);
        }
        self.count = self.count.wrapping_add(other.count);
        self.sum = self.sum.wrapping_add(other.sum);
        Ok(())
    }

    /// Whether `self` cannot continue `earlier`: the precisions differ or some bucket holds
    /// fewer values, so the histogram was re-created since (its series removed and registered
    /// again) and everything in `self` is new.
    #[cfg(feature = "metrics-facade")]
    pub(crate) fn is_reset_since(&self, earlier: &HistogramSnapshot) -> bool {
        self.precision != earlier.precision
            || self.counts.iter().zip(earlier.counts.iter()).any(|(now, then)| now < then)
    }

    /// What was recorded since `earlier` (a snapshot of the same histogram): bucket by bucket,
    /// saturating at zero. Used by push-style exporters that forward increments.
    pub fn delta_since(&self, earlier: &HistogramSnapshot) -> Result<HistogramSnapshot> {
        if earlier.precision != self.precision {
            return Err(Error::PrecisionMismatch {
                ours: self.precision,
                theirs: earlier.precision,
            });
        }
        let counts: Vec<u64> = self
            .counts
            .iter()
            .zip(earlier.counts.iter())
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let count = counts.iter().fold(0u64, |a, &n| a.wrapping_add(n));
        Ok(HistogramSnapshot {
            precision: self.precision,
            counts,
            count,
            sum: self.sum.wrapping_sub(earlier.sum),
        })
    }
}

/// The 1-based nearest rank for quantile `q` of `n` samples: `ceil(q * n)`, at least 1, that
/// is the smallest rank `r` with `r / n >= q`.
pub(crate) fn nearest_rank(q: f64, n: u64) -> u64 {
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    // The product can round up past an integer (0.07 * 100 is 7.000000000000001), which would
    // take the next rank; the rank below is the right one when it already reaches `q`.
    if rank > 1 && (rank - 1) as f64 / n as f64 >= q {
        rank - 1
    } else {
        rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_whole_range() {
        for p in MIN_PRECISION..=MAX_PRECISION {
            let n = bucket_count(p);
            let mut next = 0u64;
            for i in 0..n {
                let (low, width) = bucket_bounds(i, p);
                assert_eq!(low, next, "bucket {i} at precision {p} leaves a gap");
                assert_eq!(bucket_index(low, p), i);
                let high = low + (width - 1);
                assert_eq!(bucket_index(high, p), i);
                next = high.wrapping_add(1);
            }
            assert_eq!(next, 0, "precision {p} must end exactly at u64::MAX");
            assert_eq!(bucket_index(u64::MAX, p), n - 1);
        }
    }

    #[test]
    fn midpoint_error_is_within_bound() {
        let p = DEFAULT_PRECISION;
        for v in (0..200_000u64).chain([u64::MAX, u64::MAX / 3, 1 << 40, (1 << 40) - 1]) {
            let mid = bucket_midpoint(bucket_index(v, p), p);
            let err = mid.abs_diff(v) as f64;
            assert!(err <= v as f64 * relative_error(p), "v={v} mid={mid}");
        }
    }

    #[test]
    fn rejects_bad_precision_and_quantile() {
        assert!(matches!(Histogram::with_precision(0), Err(Error::InvalidPrecision { .. })));
        assert!(matches!(Histogram::with_precision(11), Err(Error::InvalidPrecision { .. })));
        let h = Histogram::new();
        h.record(5);
        let s = h.snapshot();
        for q in [-0.1, 1.1, f64::NAN] {
            assert!(matches!(s.quantile(q), Err(Error::InvalidQuantile(_))));
        }
        assert_eq!(Histogram::new().snapshot().quantile(0.5), Ok(None));
    }

    #[test]
    fn merge_matches_recording_everything_in_one() {
        let (a, b, all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in 0..5_000u64 {
            let v = v * v;
            if v % 3 == 0 { &a } else { &b }.record(v);
            all.record(v);
        }
        let merged = Histogram::new();
        merged.merge(&a.snapshot()).unwrap();
        merged.merge(&b.snapshot()).unwrap();
        assert_eq!(merged.snapshot(), all.snapshot());
        let mut s = a.snapshot();
        s.merge(&b.snapshot()).unwrap();
        assert_eq!(s, all.snapshot());
        let other = Histogram::with_precision(3).unwrap();
        assert!(matches!(merged.merge(&other.snapshot()), Err(Error::PrecisionMismatch { .. })));
    }

    #[test]
    fn delta_since_is_what_was_added() {
        let h = Histogram::new();
        h.record(10);
        let before = h.snapshot();
        h.record(1_000);
        h.record(1_000);
        let d = h.snapshot().delta_since(&before).unwrap();
        assert_eq!((d.count(), d.sum()), (2, 2_000));
        let buckets: Vec<Bucket> = d.buckets().collect();
        assert_eq!(buckets.len(), 1);
        assert!(buckets[0].low <= 1_000 && 1_000 <= buckets[0].high);
    }

    #[test]
    fn count_at_or_below_never_counts_values_above_the_bound() {
        let h = Histogram::new();
        for v in [1u64, 31, 32, 1_000, 1_023, 1_024, 5_000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count_at_or_below(0), 0);
        // 32 shares a bucket with 33, so a bound of 32 cannot vouch for it; 33 can.
        assert_eq!(s.count_at_or_below(32), 2);
        assert_eq!(s.count_at_or_below(33), 3);
        assert_eq!(s.count_at_or_below(1_023), 5);
        assert_eq!(s.count_at_or_below(u64::MAX), 7);
        let bounds = [0, 32, 33, 1_023, u64::MAX];
        let each: Vec<u64> = bounds.iter().map(|&b| s.count_at_or_below(b)).collect();
        assert_eq!(s.cumulative_counts(&bounds), each);
    }
}
