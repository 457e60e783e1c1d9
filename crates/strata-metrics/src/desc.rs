//! Metric descriptions: the static facts about a family (name, help, kind, unit, label names,
//! exposition bounds) and the checks that keep them within Prometheus conventions.

use crate::error::{Error, Result};

/// The three kinds of metric Strata records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A monotonically increasing count; its name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of values, exposed as cumulative buckets, a sum and a count.
    Histogram,
}

impl MetricKind {
    /// The word Prometheus uses in `# TYPE` lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// The unit of a family's values, which its name must carry as a suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A plain number (entries, records, events, weight units).
    None,
    /// Time. Histograms record nanoseconds and are exposed in seconds; the name ends in
    /// `_seconds` (`_seconds_total` for a counter).
    Seconds,
    /// Bytes; the name ends in `_bytes` (`_bytes_total` for a counter).
    Bytes,
}

impl Unit {
    /// How many recorded units make one exposed unit: 1e9 for seconds (histograms record
    /// nanoseconds), 1 otherwise.
    pub fn recorded_per_exposed(self) -> f64 {
        match self {
            Self::Seconds => 1e9,
            Self::None | Self::Bytes => 1.0,
        }
    }

    fn suffix(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Seconds => Some("_seconds"),
            Self::Bytes => Some("_bytes"),
        }
    }
}

/// Everything static about one metric family. The canonical families are constants in
/// [`names`](crate::names); users may declare their own the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDesc {
    /// The exposed name, for example `strata_cache_hits_total`.
    pub name: &'static str,
    /// One sentence for the `# HELP` line.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The unit the name carries.
    pub unit: Unit,
    /// The label names every series of the family carries, in exposition order.
    pub labels: &'static [&'static str],
    /// For histograms, the upper bounds (in exposed units, e.g. seconds) of the `_bucket`
    /// series; `+Inf` is added. Empty for counters and gauges.
    pub bounds: &'static [f64],
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

/// Whether `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, no `__` prefix).
pub(crate) fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

impl MetricDesc {
    /// Checks the description against the Prometheus data model and naming conventions:
    /// a valid name; counters end in `_total` and nothing else does; the unit suffix is
    /// present exactly when a unit is declared; histogram names avoid the reserved suffixes;
    /// label names are valid, unique, and (for histograms) not `le`; histogram bounds are
    /// finite, non-negative and strictly increasing.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: &'static str| Error::InvalidName { name: self.name.to_owned(), reason };
        let mut chars = self.name.chars();
        if !matches!(chars.next(), Some(c) if is_name_start(c)) || !chars.all(is_name_char) {
            return Err(bad("must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
        }
        let is_total = self.name.ends_with("_total");
        match self.kind {
            MetricKind::Counter if !is_total => return Err(bad("a counter's name ends in _total")),
            MetricKind::Gauge | MetricKind::Histogram if is_total => {
                return Err(bad("only counters end in _total"));
            }
            _ => {}
        }
        if self.kind == MetricKind::Histogram
            && ["_bucket", "_sum", "_count"].iter().any(|s| self.name.ends_with(s))
        {
            return Err(bad("a histogram's name must not end in _bucket, _sum or _count"));
        }
        let stem = self.name.strip_suffix("_total").unwrap_or(self.name);
        match self.unit.suffix() {
            Some(suffix) if !stem.ends_with(suffix) => {
                return Err(bad("the name must end in its unit (_seconds, _bytes)"));
            }
            None if stem.ends_with("_seconds") || stem.ends_with("_bytes") => {
                return Err(bad("a name ending in a unit must declare that unit"));
            }
            _ => {}
        }
        self.validate_labels()?;
        self.validate_bounds()
    }

    fn validate_labels(&self) -> Result<()> {
        let bad = |reason: String| Error::InvalidLabels { metric: self.name.to_owned(), reason };
        for (i, l) in self.labels.iter().enumerate() {
            if !valid_label_name(l) {
                return Err(bad(format!("label name {l:?} is not [a-zA-Z_][a-zA-Z0-9_]*")));
            }
            if self.labels[..i].contains(l) {
                return Err(bad(format!("label {l:?} is declared twice")));
            }
            if self.kind == MetricKind::Histogram && *l == "le" {
                return Err(bad("a histogram cannot have a label named le".to_owned()));
            }
        }
        Ok(())
    }

    fn validate_bounds(&self) -> Result<()> {
        let bad =
            |reason: &'static str| Error::InvalidBounds { metric: self.name.to_owned(), reason };
        if self.kind != MetricKind::Histogram {
            return if self.bounds.is_empty() {
                Ok(())
            } else {
                Err(bad("only histograms have bounds"))
            };
        }
        if self.bounds.iter().any(|b| !b.is_finite() || *b < 0.0) {
            return Err(bad("bounds must be finite and non-negative"));
        }
        if self.bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("bounds must be strictly increasing"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn desc(name: &'static str, kind: MetricKind, unit: Unit) -> MetricDesc {
        MetricDesc { name, help: "h", kind, unit, labels: &[], bounds: &[] }
    }

    #[test]
    fn validation_table() {
        use MetricKind::*;
        let cases = [
            (desc("ok_total", Counter, Unit::None), true),
            (desc("ok_bytes_total", Counter, Unit::Bytes), true),
            (desc("ok_seconds", Histogram, Unit::Seconds), true),
            (desc("ok_entries", Gauge, Unit::None), true),
            (desc("no_suffix", Counter, Unit::None), false),
            (desc("gauge_total", Gauge, Unit::None), false),
            (desc("latency", Histogram, Unit::Seconds), false),
            (desc("size_bytes", Gauge, Unit::None), false),
            (desc("x_count", Histogram, Unit::None), false),
            (desc("9starts_with_digit", Gauge, Unit::None), false),
            (desc("has-dash", Gauge, Unit::None), false),
            (desc("", Gauge, Unit::None), false),
        ];
        for (d, ok) in cases {
            assert_eq!(d.validate().is_ok(), ok, "{d:?}");
        }
        let labels = |labels: &'static [&'static str]| MetricDesc {
            labels,
            ..desc("h_seconds", Histogram, Unit::Seconds)
        };
        assert!(labels(&["cache", "op"]).validate().is_ok());
        assert!(labels(&["le"]).validate().is_err());
        assert!(labels(&["a", "a"]).validate().is_err());
        assert!(labels(&["__reserved"]).validate().is_err());
        assert!(labels(&["bad-name"]).validate().is_err());
        let bounds = |bounds: &'static [f64]| MetricDesc {
            bounds,
            ..desc("h_seconds", Histogram, Unit::Seconds)
        };
        assert!(bounds(&[0.1, 1.0]).validate().is_ok());
        assert!(bounds(&[1.0, 1.0]).validate().is_err());
        assert!(bounds(&[f64::INFINITY]).validate().is_err());
        assert!(bounds(&[-1.0]).validate().is_err());
        let counter_with_bounds =
            MetricDesc { bounds: &[1.0], ..desc("c_total", Counter, Unit::None) };
        assert!(counter_with_bounds.validate().is_err());
    }
}
