//! Time, injectable: the cache reads time only through [`Clock`], so tests can drive expiry
//! with a [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A source of monotonic time.
///
/// The cache calls [`Clock::now`] on writes and, only when some time-based feature is
/// configured, on reads; it must be cheap and must never go backwards.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current monotonic instant.
    fn now(&self) -> Instant;

    /// The current wall-clock time, used where a deadline must outlive the process (for
    /// example when an expiry is written to disk).
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The operating system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: for deterministic tests of expiry and refresh.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use strata_core::{Cache, ManualClock};
///
/// let clock = Arc::new(ManualClock::new());
/// let cache: Cache<u32, &str> = Cache::builder()
///     .max_capacity(10)
///     .time_to_live(Duration::from_secs(5))
///     .clock(clock.clone())
///     .build()?;
/// cache.insert(1, "one");
/// clock.advance(Duration::from_secs(6));
/// assert_eq!(cache.get(&1), None);
/// # Ok::<(), strata_core::Error>(())
/// ```
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    wall_base: SystemTime,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the moment it was created.
    pub fn new() -> Self {
        ManualClock {
            base: Instant::now(),
            wall_base: SystemTime::now(),
            offset_nanos: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed is enough: readers need a value that never goes backwards, not an order
        // with other memory.
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| Some(o.saturating_add(nanos)));
    }

    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.offset()
    }

    fn wall(&self) -> SystemTime {
        self.wall_base + self.offset()
    }
}

/// Converts instants to the cache's internal time: nanoseconds since the cache was built.
///
/// Zero is a valid time; `NEVER` (u64::MAX) means "no deadline".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch {
    base: Instant,
}

pub(crate) const NEVER: u64 = u64::MAX;

impl Epoch {
    pub(crate) fn new(base: Instant) -> Self {
        Epoch { base }
    }

    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        // Saturates below `NEVER`: a time equal to it would be past every deadline, "no
        // deadline" included (a `ManualClock` advanced by `Duration::MAX` gets there).
        u64::try_from(at.saturating_duration_since(self.base).as_nanos())
            .map_or(NEVER - 1, |n| n.min(NEVER - 1))
    }

    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    /// `now + d`, saturating below `NEVER`.
    pub(crate) fn after(now: u64, d: Duration) -> u64 {
        let d = u64::try_from(d.as_nanos()).unwrap_or(NEVER - 1);
        now.saturating_add(d).min(NEVER - 1)
    }
}
