//! The crate's one error type.

/// What can go wrong when metrics are declared, merged or queried.
///
/// Recording a value never fails; only the slow paths (registration, merging, queries) return
/// errors, so that a misconfiguration is reported once, at start-up, instead of on every event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A metric name breaks the Prometheus rules or Strata's conventions.
    #[error("invalid metric name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A label name or the set of labels given for a series is not what the family declares.
    #[error("invalid labels for {metric:?}: {reason}")]
    InvalidLabels {
        /// The metric family the labels were given for.
        metric: String,
        /// Which rule they break.
        reason: String,
    },
    /// The same metric name was registered twice with different descriptions.
    #[error("metric {name:?} is already registered with a different description")]
    Conflict {
        /// The name registered twice.
        name: String,
    },
    /// A metric was asked for through the method of another kind (a gauge description passed
    /// to `Registry::counter`, say).
    #[error("metric {name:?} is a {actual}, not a {requested}")]
    WrongKind {
        /// The metric's name.
        name: String,
        /// The kind its description declares.
        actual: &'static str,
        /// The kind the caller asked for.
        requested: &'static str,
    },
    /// A histogram precision outside the supported range was asked for.
    #[error("histogram precision {precision} is outside {min}..={max}")]
    InvalidPrecision {
        /// The precision asked for.
        precision: u32,
        /// The smallest supported precision.
        min: u32,
        /// The largest supported precision.
        max: u32,
    },
    /// Two histograms with different precisions cannot be merged bucket by bucket.
    #[error("cannot merge a histogram of precision {theirs} into one of precision {ours}")]
    PrecisionMismatch {
        /// The precision of the histogram merged into.
        ours: u32,
        /// The precision of the histogram merged from.
        theirs: u32,
    },
    /// A quantile outside `[0, 1]` (or NaN) was asked for.
    #[error("quantile {0} is outside [0, 1]")]
    InvalidQuantile(f64),
    /// Histogram exposition bounds must be finite, non-negative and strictly increasing.
    #[error("invalid histogram bounds for {metric:?}: {reason}")]
    InvalidBounds {
        /// The metric family the bounds belong to.
        metric: String,
        /// Which rule they break.
        reason: &'static str,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
