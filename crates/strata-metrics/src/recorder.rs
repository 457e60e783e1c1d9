//! The `Recorder` seam: where a snapshot's figures go.
//!
//! Strata records into its own atomics (a counter add is a thread-local stripe lookup and one
//! relaxed add) and *pulls* the figures out when asked: a Prometheus scrape, a periodic export,
//! `cache.stats()`. A `Recorder` receives those figures, family by family. The hot path never
//! calls a recorder, so the cost of exporting is paid per scrape, not per event, and the
//! [`NoopRecorder`] (or no recorder at all) costs nothing.
//!
//! Contract for implementations: [`Snapshot::report`](crate::Snapshot::report) calls
//! [`describe`](Recorder::describe) once per non-empty family, then one method per series of
//! that family. Counter values are *cumulative totals* since the process started (forward them
//! as absolute values, as the `metrics` facade's `Counter::absolute` and OpenTelemetry's
//! observable counters expect). Histogram snapshots are cumulative too; a push-style exporter
//! forwards [`HistogramSnapshot::delta_since`] its previous report. Histogram values are in
//! recorded units: nanoseconds when the family's unit is [`Unit::Seconds`](crate::Unit).

use crate::desc::MetricDesc;
use crate::histogram::HistogramSnapshot;
use crate::registry::Label;

/// A sink for the figures of a [`Snapshot`](crate::Snapshot).
pub trait Recorder {
    /// Called once per family before its series. The default ignores it.
    fn describe(&mut self, desc: &MetricDesc) {
        let _ = desc;
    }

    /// One counter series and its cumulative total.
    fn counter(&mut self, desc: &MetricDesc, labels: &[Label], total: u64);

    /// One gauge series and its value.
    fn gauge(&mut self, desc: &MetricDesc, labels: &[Label], value: i64);

    /// One histogram series and its cumulative buckets.
    fn histogram(&mut self, desc: &MetricDesc, labels: &[Label], histogram: &HistogramSnapshot);
}

/// A recorder that drops everything: statistics kept for `stats()` but exported nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopRecorder;

impl Recorder for NoopRecorder {
    #[inline]
    fn counter(&mut self, _: &MetricDesc, _: &[Label], _: u64) {}

    #[inline]
    fn gauge(&mut self, _: &MetricDesc, _: &[Label], _: i64) {}

    #[inline]
    fn histogram(&mut self, _: &MetricDesc, _: &[Label], _: &HistogramSnapshot) {}
}
