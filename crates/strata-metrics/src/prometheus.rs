//! The Prometheus text exposition format, version 0.0.4, written by a [`Recorder`].
//!
//! Rules followed: one `# HELP` and one `# TYPE` line per family before its samples; label
//! values escape `\`, `"` and newline, help text escapes `\` and newline; histograms expose
//! cumulative `_bucket{le="…"}` series ending in `le="+Inf"` (equal to `_count`), then `_sum` and
//! `_count`; durations are converted from recorded nanoseconds to seconds. A `le` bucket counts
//! the values whose fine bucket lies wholly at or below the bound, so it never includes a value
//! above the bound and misses only values within one fine bucket (`2^-p` relative) below it.

use crate::desc::{MetricDesc, Unit};
use crate::histogram::HistogramSnapshot;
use crate::recorder::Recorder;
use crate::registry::Label;
use std::fmt::Write as _;

/// The `Content-Type` an HTTP endpoint serving this text should send.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A [`Recorder`] that appends Prometheus text to a string.
#[derive(Debug, Default)]
pub struct TextEncoder {
    out: String,
}

impl TextEncoder {
    /// An encoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }

    /// Writes `name{labels[,le="…"]} ` (with the trailing space).
    fn series_head(&mut self, name: &str, suffix: &str, labels: &[Label], le: Option<&str>) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            self.out.push('{');
            let mut first = true;
            let extra = le.map(|v| ("le", v));
            for (k, v) in labels.iter().map(|l| (l.name, l.value.as_str())).chain(extra) {
                if !first {
                    self.out.push(',');
                }
                first = false;
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_into(&mut self.out, v, true);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

/// Escapes `\` and newline, and `"` too inside label values.
fn escape_into(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Formats a float as Prometheus expects: plain decimal (Rust's `Display` never uses an
/// exponent), and `+Inf`, `-Inf`, `NaN` spelled the Go way.
fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

impl Recorder for TextEncoder {
    fn describe(&mut self, desc: &MetricDesc) {
        self.out.push_str("# HELP ");
        self.out.push_str(desc.name);
        self.out.push(' ');
        escape_into(&mut self.out, desc.help, false);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(desc.name);
        self.out.push(' ');
        self.out.push_str(desc.kind.as_str());
        self.out.push('\n');
    }

    fn counter(&mut self, desc: &MetricDesc, labels: &[Label], total: u64) {
        self.series_head(desc.name, "", labels, None);
        let _ = writeln!(self.out, "{total}");
    }

    fn gauge(&mut self, desc: &MetricDesc, labels: &[Label], value: i64) {
        self.series_head(desc.name, "", labels, None);
        let _ = writeln!(self.out, "{value}");
    }

    fn histogram(&mut self, desc: &MetricDesc, labels: &[Label], h: &HistogramSnapshot) {
        let scale = desc.unit.recorded_per_exposed();
        // `as` saturates, so a bound beyond u64 in recorded units covers everything.
        let recorded: Vec<u64> = desc.bounds.iter().map(|b| (b * scale).floor() as u64).collect();
        let mut le = String::new();
        for (&bound, count) in desc.bounds.iter().zip(h.cumulative_counts(&recorded)) {
            le.clear();
            write_f64(&mut le, bound);
            self.series_head(desc.name, "_bucket", labels, Some(&le));
            let _ = writeln!(self.out, "{count}");
        }
        self.series_head(desc.name, "_bucket", labels, Some("+Inf"));
        let _ = writeln!(self.out, "{}", h.count());
        self.series_head(desc.name, "_sum", labels, None);
        match desc.unit {
            Unit::Seconds => write_f64(&mut self.out, h.sum() as f64 / scale),
            Unit::None | Unit::Bytes => {
                let _ = write!(self.out, "{}", h.sum());
            }
        }
        self.out.push('\n');
        self.series_head(desc.name, "_count", labels, None);
        let _ = writeln!(self.out, "{}", h.count());
    }
}

#[cfg(test)]
mod tests {
    use crate::{names, Registry};
    use std::time::Duration;

    #[test]
    fn renders_the_exact_text() {
        let r = Registry::new();
        r.counter(&names::CACHE_HITS, &[("cache", "a\"b\\c\nd")]).unwrap().add(5);
        r.gauge(&names::CACHE_ENTRIES, &[("cache", "x")]).unwrap().set(-2);
        let h = r.histogram(&names::WAL_CHECKPOINT_DURATION, &[("wal", "w")]).unwrap();
        h.record_duration(Duration::from_millis(2));
        h.record_duration(Duration::from_secs(2));
        let text = r.render_prometheus();
        let expected_start = "\
# HELP strata_cache_entries Entries held, as of the last maintenance.
# TYPE strata_cache_entries gauge
strata_cache_entries{cache=\"x\"} -2
# HELP strata_cache_hits_total Lookups that found a live entry.
# TYPE strata_cache_hits_total counter
strata_cache_hits_total{cache=\"a\\\"b\\\\c\\nd\"} 5
# HELP strata_wal_checkpoint_duration_seconds Time each checkpoint took; the _count series is the number of checkpoints.
# TYPE strata_wal_checkpoint_duration_seconds histogram
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"0.001\"} 0
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"0.005\"} 1
";
        assert!(text.starts_with(expected_start), "{text}");
        let expected_end = "\
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"1\"} 1
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"5\"} 2
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"10\"} 2
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"30\"} 2
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"60\"} 2
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"300\"} 2
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"600\"} 2
strata_wal_checkpoint_duration_seconds_bucket{wal=\"w\",le=\"+Inf\"} 2
strata_wal_checkpoint_duration_seconds_sum{wal=\"w\"} 2.002
strata_wal_checkpoint_duration_seconds_count{wal=\"w\"} 2
";
        assert!(text.ends_with(expected_end), "{text}");
    }
}
